package ctxguard

import (
	"strings"
	"testing"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// TestPageSocketContextLookup: with nothing learned yet, a page-level
// socket's context is asked from the real Chrome (Target.getTargetInfo on
// the page's own session): the own page works, the shared one is refused.
func TestPageSocketContextLookup(t *testing.T) {
	t.Parallel()
	ch := startChrome(t)
	g := NewGuard(Options{ProxyServer: "http://127.0.0.1:1", BypassList: "<-loopback>"})
	base := serveProxy(t, ch.base, func(*cdpproxy.Session) []cdpproxy.Interceptor {
		return []cdpproxy.Interceptor{g.Interceptor()}
	})
	b := dial(t, browserWS(t, base))
	bc := field[string](t, b.ok("Target.createBrowserContext", nil, ""), "browserContextId")
	tid := field[string](t, b.ok("Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": bc}, ""), "targetId")
	shared := sharedPage(t, ch.base, bc)
	b.ws.Close()
	g.mu.Lock()
	clear(g.targets) // forget what createTarget taught: force the lookup
	g.mu.Unlock()
	ps := dial(t, pageWS(t, base, tid))
	if v := ps.ok("Runtime.evaluate", map[string]any{"expression": "1+1", "returnByValue": true}, ""); !strings.Contains(string(v), `"value":2`) {
		t.Fatalf("evaluate on own page socket: %s", v)
	}
	if got, ok := g.targetContext(tid); !ok || got != bc {
		t.Fatalf("looked-up context of own page: %q %v, want %q", got, ok, bc)
	}
	dial(t, pageWS(t, base, shared.TargetID)).refused("Runtime.evaluate", map[string]any{"expression": "1"}, "", MsgForeignTarget)
}
