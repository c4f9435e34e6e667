package ctxguard

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// probe is what a page, an iframe or a worker reports of where it lives.
const probeJS = `[Intl.DateTimeFormat().resolvedOptions().timeZone, navigator.language, Intl.DateTimeFormat().resolvedOptions().locale].join("|")`

// langSite serves a page with an inline script that records the time zone
// and language at its very first run, a cross-site iframe (an
// out-of-process frame) and a dedicated worker, and records the
// Accept-Language of every request.
type langSite struct {
	mu   sync.Mutex
	lang map[string][]string // path -> Accept-Language values
	port string
}

func newLangSite(t *testing.T) *langSite {
	s := &langSite{lang: map[string][]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.lang[r.URL.Path] = append(s.lang[r.URL.Path], r.Header.Get("Accept-Language"))
		s.mu.Unlock()
		switch r.URL.Path {
		case "/frame":
			fmt.Fprintf(w, `<!doctype html><script>window.early = %s;</script><p>frame</p>`, probeJS)
		case "/worker.js":
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprintf(w, `postMessage(%s); fetch("/from-worker");`, probeJS)
		default:
			fmt.Fprintf(w, `<!doctype html><title>geo</title><script>window.early = %s;
window.worker = new Promise(r => { const w = new Worker("/worker.js"); w.onmessage = e => r(e.data); });
</script><iframe src="http://evil.test:%s/frame"></iframe>`, probeJS, s.port)
		}
	}))
	t.Cleanup(srv.Close)
	_, s.port, _ = net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	return s
}

func (s *langSite) acceptLanguage(path string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lang[path]...)
}

type geoView struct {
	early, late, frame, worker string
	docLang, frameLang         []string
	workerFetchLang            []string
	b                          *client
	sid                        string // the page's session
}

// openGeoPage drives one session the way Playwright and Puppeteer do:
// browser-level and page-level auto-attach with waitForDebuggerOnStart, a
// page created directly on the site's URL, every attached target resumed
// by the client. It returns what the page, its out-of-process iframe and
// its worker saw.
func openGeoPage(t *testing.T, base string, st *langSite, path string) geoView {
	t.Helper()
	b := dial(t, browserWS(t, base))
	bc := field[string](t, b.ok("Target.createBrowserContext", nil, ""), "browserContextId")
	b.ok("Target.setAutoAttach", map[string]any{"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}, "")
	url := "http://acme.test:" + st.port + path
	tid := field[string](t, b.ok("Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": bc}, ""), "targetId")
	type att struct {
		SessionID  string     `json:"sessionId"`
		TargetInfo targetInfo `json:"targetInfo"`
		Waiting    bool       `json:"waitingForDebugger"`
	}
	var page, frame att
	for page.SessionID == "" {
		m := b.event(func(m wireMsg) bool { return m.Method == "Target.attachedToTarget" })
		var a att
		json.Unmarshal(m.Params, &a)
		if a.TargetInfo.TargetID == tid {
			page = a
		}
	}
	if !page.Waiting {
		t.Fatalf("the page was not paused for the client: %+v", page)
	}
	b.ok("Target.setAutoAttach", map[string]any{"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}, page.SessionID)
	b.ok("Runtime.runIfWaitingForDebugger", nil, page.SessionID)
	b.ok("Page.navigate", map[string]any{"url": url}, page.SessionID)
	// the iframe and the worker attach to the page's session, paused
	for frame.SessionID == "" {
		m := b.event(func(m wireMsg) bool { return m.Method == "Target.attachedToTarget" })
		var a att
		json.Unmarshal(m.Params, &a)
		if a.Waiting {
			b.ok("Runtime.runIfWaitingForDebugger", nil, a.SessionID)
		}
		if a.TargetInfo.Type == "iframe" {
			frame = a
		}
	}
	eval := func(sid, expr string) string {
		var r struct {
			Result struct {
				Value string `json:"value"`
			} `json:"result"`
			ExceptionDetails any `json:"exceptionDetails"`
		}
		raw := b.ok("Runtime.evaluate", map[string]any{"expression": expr, "awaitPromise": true, "returnByValue": true}, sid)
		if json.Unmarshal(raw, &r) != nil || r.ExceptionDetails != nil {
			t.Fatalf("evaluate %s: %s", expr, raw)
		}
		return r.Result.Value
	}
	// the worker may attach after the frame: keep resuming until its
	// answer arrives (evaluate waits for it)
	done := make(chan string, 1)
	go func() {
		var r struct {
			Result struct {
				Value string `json:"value"`
			} `json:"result"`
		}
		raw, _ := b.call("Runtime.evaluate", map[string]any{"expression": `worker.then(v => fetch("/after-worker").then(() => v))`, "awaitPromise": true, "returnByValue": true}, page.SessionID)
		json.Unmarshal(raw, &r)
		done <- r.Result.Value
	}()
	var v geoView
	for v.worker == "" {
		select {
		case v.worker = <-done:
		case m := <-b.events:
			if m.Method == "Target.attachedToTarget" {
				var a att
				json.Unmarshal(m.Params, &a)
				if a.Waiting {
					b.ok("Runtime.runIfWaitingForDebugger", nil, a.SessionID)
				}
			}
		}
	}
	v.b, v.sid = b, page.SessionID
	v.early = eval(page.SessionID, "window.early")
	v.late = eval(page.SessionID, probeJS)
	v.frame = eval(frame.SessionID, `new Promise(r => window.early ? r(window.early) : addEventListener("load", () => r(window.early)))`)
	v.docLang = st.acceptLanguage(path)
	v.frameLang = st.acceptLanguage("/frame")
	v.workerFetchLang = st.acceptLanguage("/from-worker")
	return v
}

// TestGeoTimezoneAndLanguageInAttachMode: in attach mode the pool's time
// zone and language reach a geo session's page from its first script on,
// its out-of-process iframe, its worker and the Accept-Language of their
// requests, while a session without geo on the same Chrome keeps the
// host's.
func TestGeoTimezoneAndLanguageInAttachMode(t *testing.T) {
	t.Parallel()
	ch := startChrome(t)
	pool := newRecProxy(t)
	st := newLangSite(t)

	direct := NewGuard(Options{Direct: true, Timezone: "Asia/Tokyo", Locale: "de-DE"}) // Direct ignores the pool's
	dbase := serveProxy(t, ch.base, func(*cdpproxy.Session) []cdpproxy.Interceptor {
		return []cdpproxy.Interceptor{direct.Interceptor()}
	})
	host := openGeoPage(t, dbase, newLangSite(t), "/direct")
	hostTZ := strings.Split(host.late, "|")[0]
	if hostTZ == "Asia/Tokyo" || strings.HasPrefix(host.late, "Asia/Tokyo|de") {
		t.Fatalf("control: the host already looks like the pool (%s); pick another pool", host.late)
	}
	for name, got := range map[string]string{"early": host.early, "frame": host.frame, "worker": host.worker} {
		if got != host.late {
			t.Errorf("direct session: %s sees %q, the page %q", name, got, host.late)
		}
	}
	if len(host.docLang) != 1 || strings.HasPrefix(host.docLang[0], "de-DE") {
		t.Errorf("direct session's Accept-Language: %q", host.docLang)
	}

	g := NewGuard(Options{ProxyServer: "http://" + pool.addr, BypassList: "<-loopback>", Timezone: "Asia/Tokyo", Locale: "de-DE", AcceptLanguage: "de-DE,de"})
	base := serveProxy(t, ch.base, func(*cdpproxy.Session) []cdpproxy.Interceptor {
		return []cdpproxy.Interceptor{g.Interceptor()}
	})
	v := openGeoPage(t, base, st, "/geo")
	want := "Asia/Tokyo|de-DE|de-DE"
	// an agent clearing the overrides (empty values) gets the pool's back
	v.b.ok("Emulation.setTimezoneOverride", map[string]any{"timezoneId": ""}, v.sid)
	v.b.ok("Emulation.setLocaleOverride", map[string]any{}, v.sid)
	v.b.ok("Network.setUserAgentOverride", map[string]any{"userAgent": ""}, v.sid)
	v.b.ok("Emulation.setUserAgentOverride", map[string]any{"userAgent": "", "acceptLanguage": ""}, v.sid)
	var r struct {
		Result struct {
			Value string `json:"value"`
		} `json:"result"`
	}
	json.Unmarshal(v.b.ok("Runtime.evaluate", map[string]any{"expression": probeJS, "returnByValue": true}, v.sid), &r)
	if r.Result.Value != want {
		t.Errorf("after the agent cleared the overrides the page sees %q, want %q", r.Result.Value, want)
	}
	// the agent's own explicit values are its choice
	v.b.ok("Emulation.setTimezoneOverride", map[string]any{"timezoneId": "Europe/Paris"}, v.sid)
	json.Unmarshal(v.b.ok("Runtime.evaluate", map[string]any{"expression": probeJS, "returnByValue": true}, v.sid), &r)
	if !strings.HasPrefix(r.Result.Value, "Europe/Paris|") {
		t.Errorf("the agent's own time zone was not applied: %q", r.Result.Value)
	}
	// a page created on a URL would send its first request before the
	// overrides: refused (about:blank, then Page.navigate, is the way)
	b := dial(t, browserWS(t, base))
	bc := field[string](t, b.ok("Target.createBrowserContext", nil, ""), "browserContextId")
	b.refused("Target.createTarget", map[string]any{"url": "http://acme.test:" + st.port + "/created-on-url", "browserContextId": bc}, "", MsgCreateTargetURL)
	b.ok("Target.createTarget", map[string]any{"url": "", "browserContextId": bc}, "")
	if got := st.acceptLanguage("/created-on-url"); len(got) != 0 {
		t.Errorf("a refused createTarget reached the site: %q", got)
	}
	for name, got := range map[string]string{"page (first script)": v.early, "page": v.late, "out-of-process iframe": v.frame, "worker": v.worker} {
		if got != want {
			t.Errorf("geo session: %s sees %q, want %q", name, got, want)
		}
	}
	for name, got := range map[string][]string{"document": v.docLang, "iframe document": v.frameLang, "worker fetch": v.workerFetchLang} {
		if len(got) == 0 {
			t.Errorf("geo session: no %s request reached the site", name)
		}
		for _, l := range got {
			if l != "de-DE,de" && !strings.HasPrefix(l, "de-DE,de;") {
				t.Errorf("geo session: %s Accept-Language %q, want de-DE,de", name, l)
			}
		}
	}
	if !pool.saw("http://acme.test:" + st.port + "/geo") {
		t.Errorf("the geo page did not go through the pool")
	}
}

// TestGeoRefusesLegacySessions: the daemon cannot send its overrides on a
// legacy (non-flattened) session, so a geo session with a time zone or
// locale refuses to open one rather than let its target run with the
// host's.
func TestGeoRefusesLegacySessions(t *testing.T) {
	t.Parallel()
	ch := startChrome(t)
	pool := newRecProxy(t)
	g := NewGuard(Options{ProxyServer: "http://" + pool.addr, BypassList: "<-loopback>", Timezone: "Asia/Tokyo", Locale: "de-DE"})
	base := serveProxy(t, ch.base, func(*cdpproxy.Session) []cdpproxy.Interceptor {
		return []cdpproxy.Interceptor{g.Interceptor()}
	})
	b := dial(t, browserWS(t, base))
	bc := field[string](t, b.ok("Target.createBrowserContext", nil, ""), "browserContextId")
	tid := field[string](t, b.ok("Target.createTarget", map[string]any{"url": "", "browserContextId": bc}, ""), "targetId")
	b.refused("Target.attachToTarget", map[string]any{"targetId": tid, "flatten": false}, "", MsgLegacyGeo)
	b.refused("Target.attachToTarget", map[string]any{"targetId": tid}, "", MsgLegacyGeo)
	b.refused("Target.setAutoAttach", map[string]any{"autoAttach": true, "waitForDebuggerOnStart": false}, "", MsgLegacyGeo)
	sid := field[string](t, b.ok("Target.attachToTarget", map[string]any{"targetId": tid, "flatten": true}, ""), "sessionId")
	b.refused("Target.setAutoAttach", map[string]any{"autoAttach": true, "waitForDebuggerOnStart": false, "flatten": false}, sid, MsgLegacyGeo)
	var r struct {
		Result struct {
			Value string `json:"value"`
		} `json:"result"`
	}
	json.Unmarshal(b.ok("Runtime.evaluate", map[string]any{"expression": probeJS, "returnByValue": true}, sid), &r)
	if r.Result.Value != "Asia/Tokyo|de-DE|de-DE" {
		t.Fatalf("flattened session sees %q", r.Result.Value)
	}
	// a page socket is a session of its own: the overrides land before its
	// first command
	ps := dial(t, pageWS(t, base, tid))
	json.Unmarshal(ps.ok("Runtime.evaluate", map[string]any{"expression": probeJS, "returnByValue": true}, ""), &r)
	if r.Result.Value != "Asia/Tokyo|de-DE|de-DE" {
		t.Fatalf("page socket sees %q", r.Result.Value)
	}
}
