package ctxguard

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cdpvault/cdpvault/cdpproxy"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
)

// TestChromedpGeoSession drives the Guard with the real chromedp library:
// its default (a tab in the shared default context) is refused, and with
// WithNewBrowserContext it works and its traffic goes through the pool.
func TestChromedpGeoSession(t *testing.T) {
	t.Parallel()
	ch := startChrome(t)
	st := newSite(t)
	pool := newRecProxy(t)
	g := NewGuard(Options{ProxyServer: "http://" + pool.addr, BypassList: "<-loopback>"})
	base := serveProxy(t, ch.base, func(*cdpproxy.Session) []cdpproxy.Interceptor {
		return []cdpproxy.Interceptor{g.Interceptor()}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	actx, acancel := remote.NewAllocator(ctx, browserWS(t, base), remote.NoModifyURL)
	defer acancel()

	dctx, dcancel := chromedp.NewContext(actx)
	_, err := chromedp.Run(dctx, chromedp.Navigate(st.url+"/default-context"))
	dcancel()
	if err == nil || !strings.Contains(err.Error(), MsgCreateTarget) {
		t.Fatalf("chromedp tab in the default context: err %v, want the guard's refusal", err)
	}

	gctx, gcancel := chromedp.NewContext(actx, chromedp.WithNewBrowserContext())
	defer gcancel()
	if _, err := chromedp.Run(gctx, chromedp.Navigate(st.url+"/chromedp")); err != nil {
		t.Fatalf("chromedp in a new browser context: %v", err)
	}
	text, err := chromedp.Run(gctx, chromedp.Text("p"))
	if err != nil {
		t.Fatalf("chromedp text: %v", err)
	}
	if text != "hello" {
		t.Fatalf("page text %q", text)
	}
	if hs := st.got("/chromedp"); len(hs) != 1 || !hs[0].viaProxy || !pool.saw(st.url+"/chromedp") {
		t.Fatalf("/chromedp: site saw %v", hs)
	}
	for _, h := range st.all() {
		if !h.viaProxy {
			t.Errorf("direct request to the site: %s", h.path)
		}
	}
}
