package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
	"github.com/gorilla/websocket"
	"github.com/mafredri/cdp"
	"github.com/mafredri/cdp/devtool"
	"github.com/mafredri/cdp/protocol/page"
	"github.com/mafredri/cdp/protocol/runtime"
	"github.com/mafredri/cdp/rpcc"
)

// TestProxyClients: every client, unchanged except for its endpoint, opens a
// page, navigates, evaluates, takes a screenshot, opens a second page and
// closes, through one daemon, each in its own session.
func TestProxyClients(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "info")
	acme := f.Site.Origin("acme")
	t.Run("playwright", func(t *testing.T) {
		t.Parallel()
		s := f.D.NewSession(t, f.Token, SessionOpts{})
		checkBasicResult(t, "pw-basic.mjs", runNode(t, "pw-basic.mjs", map[string]string{"CDP_URL": s.CDPURL, "SITE_URL": acme}))
	})
	t.Run("puppeteer", func(t *testing.T) {
		t.Parallel()
		s := f.D.NewSession(t, f.Token, SessionOpts{})
		checkBasicResult(t, "pptr-basic.mjs", runNode(t, "pptr-basic.mjs", map[string]string{"WS_URL": s.WSURL, "SITE_URL": acme}))
	})
	t.Run("chromedp", func(t *testing.T) {
		t.Parallel()
		s := f.D.NewSession(t, f.Token, SessionOpts{})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		actx, acancel := remote.NewAllocator(ctx, s.WSURL)
		defer acancel()
		cctx, ccancel := chromedp.NewContext(actx)
		defer ccancel()
		if err := chromedp.Do(cctx, chromedp.Navigate(acme+"/blank")); err != nil {
			t.Fatalf("chromedp navigate: %v", err)
		}
		title, err := chromedp.Run(cctx, chromedp.Title())
		if err != nil || title != "blank" {
			t.Errorf("chromedp title = %q, %v; want blank", title, err)
		}
		sum, err := chromedp.Run(cctx, chromedp.Evaluate[int]("6*7"))
		if err != nil || sum != 42 {
			t.Errorf("chromedp evaluate = %d, %v; want 42", sum, err)
		}
		png, err := chromedp.Run(cctx, chromedp.CaptureScreenshot())
		if err != nil || len(png) < 100 || string(png[1:4]) != "PNG" {
			t.Errorf("chromedp screenshot: %d bytes, %v", len(png), err)
		}
		tab2, cancel2 := chromedp.NewContext(cctx)
		if err := chromedp.Do(tab2, chromedp.Navigate(acme+"/login")); err != nil {
			t.Fatalf("chromedp second tab: %v", err)
		}
		heading, err := chromedp.Run(tab2, chromedp.Text(chromedp.ID("heading")))
		if err != nil || heading != "Login at acme.test" {
			t.Errorf("chromedp second tab heading = %q, %v", heading, err)
		}
		cancel2()
		if err := chromedp.Cancel(cctx); err != nil {
			t.Errorf("chromedp close: %v", err)
		}
	})
	t.Run("mafredri-cdp", func(t *testing.T) {
		t.Parallel()
		s := f.D.NewSession(t, f.Token, SessionOpts{})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		devt := devtool.New(s.CDPURL)
		for i, path := range []string{"/blank", "/login"} {
			pt, err := devt.Create(ctx)
			if err != nil {
				t.Fatalf("devtool create page %d: %v", i, err)
			}
			conn, err := rpcc.DialContext(ctx, pt.WebSocketDebuggerURL)
			if err != nil {
				t.Fatalf("rpcc dial %s: %v", pt.WebSocketDebuggerURL, err)
			}
			c := cdp.NewClient(conn)
			load, err := c.Page.LoadEventFired(ctx)
			if err != nil {
				t.Fatalf("load events: %v", err)
			}
			if err := c.Page.Enable(ctx); err != nil {
				t.Fatalf("Page.enable: %v", err)
			}
			if _, err := c.Page.Navigate(ctx, page.NewNavigateArgs(acme+path)); err != nil {
				t.Fatalf("Page.navigate: %v", err)
			}
			if _, err := load.Recv(); err != nil {
				t.Fatalf("load event: %v", err)
			}
			load.Close()
			ev, err := c.Runtime.Evaluate(ctx, runtime.NewEvaluateArgs("document.title + ':' + (6*7)"))
			if err != nil {
				t.Fatalf("Runtime.evaluate: %v", err)
			}
			want := map[string]string{"/blank": `"blank:42"`, "/login": `"Login at acme.test:42"`}[path]
			if string(ev.Result.Value) != want {
				t.Errorf("evaluate = %s, want %s", ev.Result.Value, want)
			}
			shot, err := c.Page.CaptureScreenshot(ctx, page.NewCaptureScreenshotArgs())
			if err != nil || len(shot.Data) < 100 {
				t.Errorf("screenshot: %v", err)
			}
			conn.Close()
			if err := devt.Close(ctx, pt); err != nil {
				t.Errorf("devtool close: %v", err)
			}
		}
	})
	t.Run("raw-page-socket", func(t *testing.T) {
		t.Parallel()
		s := f.D.NewSession(t, f.Token, SessionOpts{})
		// As chrome-remote-interface does: list targets, open a page socket.
		code, body := httpDo(t, http.MethodPut, s.CDPURL+"/json/new?about:blank", nil)
		if code != http.StatusOK {
			t.Fatalf("PUT /json/new = %d %s", code, body)
		}
		code, body = httpDo(t, http.MethodGet, s.CDPURL+"/json/list", nil)
		var list []discoveryTarget
		if code != http.StatusOK || json.Unmarshal(body, &list) != nil {
			t.Fatalf("GET /json/list = %d %s", code, body)
		}
		var ws string
		for _, tg := range list {
			if tg.Type == "page" && strings.Contains(tg.WebSocketDebuggerURL, "/devtools/page/") {
				ws = tg.WebSocketDebuggerURL
			}
		}
		if ws == "" {
			t.Fatalf("no page target with a page socket in %s", body)
		}
		r := DialRaw(t, ws)
		r.Navigate("", acme+"/login")
		if got := string(r.Evaluate("", "document.title + ':' + (6*7)")); got != `"Login at acme.test:42"` {
			t.Errorf("evaluate over the page socket = %s", got)
		}
		var shot struct {
			Data string `json:"data"`
		}
		r.MustCall("", "Page.captureScreenshot", nil, &shot)
		if len(shot.Data) < 100 {
			t.Errorf("screenshot over the page socket: %d base64 bytes", len(shot.Data))
		}
		if len(f.Site.Received("acme.test", "/login")) == 0 {
			t.Errorf("the site never saw the page socket's navigation")
		}
	})
}

// TestProxyDiscoveryURLsPointBackThroughDaemon: Chrome's discovery endpoints
// under the session prefix, every URL in them rewritten to the daemon.
func TestProxyDiscoveryURLsPointBackThroughDaemon(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "info")
	s := f.D.NewSession(t, f.Token, SessionOpts{})
	host, prefix := sessionPrefix(t, s.CDPURL)
	if host != f.D.Addr {
		t.Errorf("cdp_url host %s, want the daemon's %s", host, f.D.Addr)
	}
	wsPrefix := "ws://" + f.D.Addr + prefix + "/devtools/"
	if !strings.HasPrefix(s.WSURL, wsPrefix+"browser/") {
		t.Errorf("ws_url %s does not start with %sbrowser/", s.WSURL, wsPrefix)
	}
	checkURLs := func(what string, tg discoveryTarget) {
		t.Helper()
		if !strings.HasPrefix(tg.WebSocketDebuggerURL, wsPrefix) {
			t.Errorf("%s: webSocketDebuggerUrl %q does not point through the daemon (%s...)", what, tg.WebSocketDebuggerURL, wsPrefix)
		}
		if tg.DevtoolsFrontendURL != "" {
			fu, err := url.Parse(tg.DevtoolsFrontendURL)
			if err != nil {
				t.Errorf("%s: devtoolsFrontendUrl %q: %v", what, tg.DevtoolsFrontendURL, err)
			} else if ws := fu.Query().Get("ws"); !strings.HasPrefix(ws, f.D.Addr+prefix+"/devtools/") {
				t.Errorf("%s: ws= of devtoolsFrontendUrl is %q, want %s%s/devtools/...", what, ws, f.D.Addr, prefix)
			}
		}
	}
	for _, p := range []string{"/json/version", "/json/version/"} {
		code, body := httpDo(t, http.MethodGet, s.CDPURL+p, nil)
		var v struct {
			Browser              string `json:"Browser"`
			WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &v) != nil {
			t.Fatalf("GET %s = %d %s", p, code, body)
		}
		if !strings.HasPrefix(v.WebSocketDebuggerURL, wsPrefix+"browser/") || v.Browser == "" {
			t.Errorf("GET %s: Browser %q, webSocketDebuggerUrl %q, want a browser URL through the daemon (%sbrowser/...)", p, v.Browser, v.WebSocketDebuggerURL, wsPrefix)
			continue
		}
		// What clients that start from /json/version dial must work.
		DialRaw(t, v.WebSocketDebuggerURL).MustCall("", "Browser.getVersion", nil, nil)
	}
	target := f.Site.URL("acme", "/blank?from=json-new")
	code, body := httpDo(t, http.MethodPut, s.CDPURL+"/json/new?"+target, nil)
	var nt discoveryTarget
	if code != http.StatusOK || json.Unmarshal(body, &nt) != nil || nt.ID == "" {
		t.Fatalf("PUT /json/new = %d %s", code, body)
	}
	checkURLs("/json/new", nt)
	if !strings.HasSuffix(nt.WebSocketDebuggerURL, "/devtools/page/"+nt.ID) {
		t.Errorf("/json/new webSocketDebuggerUrl %q does not end in /devtools/page/%s", nt.WebSocketDebuggerURL, nt.ID)
	}
	for _, p := range []string{"/json", "/json/list"} {
		code, body := httpDo(t, http.MethodGet, s.CDPURL+p, nil)
		var list []discoveryTarget
		if code != http.StatusOK || json.Unmarshal(body, &list) != nil {
			t.Fatalf("GET %s = %d %s", p, code, body)
		}
		found := false
		for _, tg := range list {
			if tg.WebSocketDebuggerURL != "" {
				checkURLs(p, tg)
			}
			found = found || tg.ID == nt.ID
		}
		if !found {
			t.Errorf("GET %s does not list the new target %s", p, nt.ID)
		}
	}
	// The new page is live through its rewritten URL.
	r := DialRaw(t, nt.WebSocketDebuggerURL)
	deadline := time.Now().Add(waitTimeout)
	for string(r.Evaluate("", "location.href")) != `"`+target+`"` || len(f.Site.Received("acme.test", "/blank")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the page opened by /json/new never loaded %s", target)
		}
		time.Sleep(50 * time.Millisecond) // polling the browser's page load
	}
	code, body = httpDo(t, http.MethodGet, s.CDPURL+"/json/protocol", nil)
	var proto struct {
		Domains []json.RawMessage `json:"domains"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &proto) != nil || len(proto.Domains) == 0 {
		t.Errorf("GET /json/protocol = %d, %d domains", code, len(proto.Domains))
	}
	if code, body := httpDo(t, http.MethodGet, s.CDPURL+"/json/activate/"+nt.ID, nil); code != http.StatusOK {
		t.Errorf("GET /json/activate/<id> = %d %s", code, body)
	}
	if code, body := httpDo(t, http.MethodGet, s.CDPURL+"/json/close/"+nt.ID, nil); code != http.StatusOK {
		t.Errorf("GET /json/close/<id> = %d %s", code, body)
	}
	// Chrome itself drops a closed page's socket without a close frame, so
	// only the end of the socket is required here.
	if _, _, err := r.WaitClosed(waitTimeout); err != nil && strings.Contains(err.Error(), "still open") {
		t.Errorf("page socket after /json/close: %v", err)
	}
}

// TestProxyGuards: Chrome's own port guards, applied by the daemon: an Origin
// header gets 403, a Host that is not an IP or localhost gets 400, a wrong
// session token gets 401/404, and none of them is upgraded.
func TestProxyGuards(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "info")
	s := f.D.NewSession(t, f.Token, SessionOpts{})
	_, prefix := sessionPrefix(t, s.CDPURL)
	badCDP := strings.Replace(s.CDPURL, prefix, "/session/"+randomHex(16), 1)
	badWS := strings.Replace(s.WSURL, prefix, "/session/"+randomHex(16), 1)
	if badCDP == s.CDPURL || badWS == s.WSURL {
		t.Fatalf("cannot build a wrong-token URL from %s", s.CDPURL)
	}
	okStatus := func(code int, want ...int) bool {
		for _, w := range want {
			if code == w {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		name string
		url  string
		hdr  map[string]string
		want []int
	}{
		{"origin", s.CDPURL + "/json/version", map[string]string{"Origin": f.Site.Origin("evil")}, []int{403}},
		{"origin-list", s.CDPURL + "/json/list", map[string]string{"Origin": "http://localhost:3000"}, []int{403}},
		{"host", s.CDPURL + "/json/version", map[string]string{"Host": "evil.example"}, []int{400}},
		{"host-with-port", s.CDPURL + "/json/list", map[string]string{"Host": "evil.example:" + strings.Split(f.D.Addr, ":")[1]}, []int{400}},
		{"bad-token", badCDP + "/json/version", nil, []int{401, 404}},
	} {
		if code, body := httpDo(t, http.MethodGet, tc.url, tc.hdr); !okStatus(code, tc.want...) {
			t.Errorf("discovery %s: %d %s, want %v", tc.name, code, body, tc.want)
		}
		wsURL := s.WSURL
		if tc.name == "bad-token" {
			wsURL = badWS
		}
		h := http.Header{}
		for k, v := range tc.hdr {
			h.Set(k, v)
		}
		c, resp, err := websocket.DefaultDialer.Dial(wsURL, h)
		if err == nil {
			c.Close()
			t.Errorf("websocket %s: upgraded, want refused", tc.name)
			continue
		}
		if resp == nil || !okStatus(resp.StatusCode, tc.want...) {
			got := 0
			if resp != nil {
				got = resp.StatusCode
			}
			t.Errorf("websocket %s: status %d (%v), want %v", tc.name, got, err, tc.want)
		}
	}
	// The same requests without the bad parts work.
	if code, body := httpDo(t, http.MethodGet, s.CDPURL+"/json/version", map[string]string{"Host": "localhost:" + strings.Split(f.D.Addr, ":")[1]}); code != http.StatusOK {
		t.Errorf("discovery with Host localhost: %d %s", code, body)
	}
	r := DialRaw(t, s.WSURL)
	r.MustCall("", "Browser.getVersion", nil, nil)
}

// TestSessionDeleteClosesSocketsAndStopsBrowser: DELETE ends the session:
// close frames on its sockets, its browser processes gone, its URLs dead.
func TestSessionDeleteClosesSocketsAndStopsBrowser(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "info")
	base := f.Env.BrowserProcs()
	s := f.D.NewSession(t, f.Token, SessionOpts{})
	browser := DialRaw(t, s.WSURL)
	browser.MustCall("", "Browser.getVersion", nil, nil)
	_, sid := browser.NewPageSession(f.Site.URL("acme", "/blank"))
	code, body := httpDo(t, http.MethodPut, s.CDPURL+"/json/new?about:blank", nil)
	var nt discoveryTarget
	if code != http.StatusOK || json.Unmarshal(body, &nt) != nil {
		t.Fatalf("PUT /json/new = %d %s", code, body)
	}
	pageSock := DialRaw(t, nt.WebSocketDebuggerURL)
	pageSock.Evaluate("", "1")
	browser.Evaluate(sid, "1")
	if n := f.Env.BrowserProcs(); n <= base {
		t.Fatalf("%d browser processes with an open session (%d before): the test cannot see the session's browser", n, base)
	}
	// Another tenant cannot see or end it: exactly like a missing session.
	if code, body := f.D.API(t, http.MethodDelete, "/api/v1/sessions/"+s.ID, f.BetaToken, nil); code != http.StatusNotFound {
		t.Errorf("DELETE with another tenant's token = %d %s, want 404", code, body)
	}
	if code, body := f.D.API(t, http.MethodGet, "/api/v1/sessions", f.BetaToken, nil); strings.Contains(string(body), s.ID) {
		t.Errorf("another tenant lists the session: %d %s", code, body)
	}
	browser.Evaluate(sid, "1")
	if v := metricValue(f.D.Metrics(), "cdpvault_cdp_sessions_active"); v != 1 {
		t.Errorf("cdpvault_cdp_sessions_active = %v with one session, want 1", v)
	}
	if code, body := f.D.API(t, http.MethodDelete, "/api/v1/sessions/"+s.ID, f.Token, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE session = %d %s", code, body)
	}
	for name, r := range map[string]*RawCDP{"browser socket": browser, "page socket": pageSock} {
		if closed, _, err := r.WaitClosed(15 * time.Second); !closed {
			t.Errorf("%s after DELETE: no close frame: %v", name, err)
		}
	}
	if err := f.Env.WaitBrowserProcs(base, 15*time.Second); err != nil {
		t.Errorf("after DELETE: %v", err)
	}
	assertSessionGone(t, f, s)
	if v := metricValue(f.D.Metrics(), "cdpvault_cdp_sessions_active"); v != 0 {
		t.Errorf("cdpvault_cdp_sessions_active = %v after DELETE, want 0", v)
	}
	if code, _ := f.D.API(t, http.MethodDelete, "/api/v1/sessions/"+s.ID, f.Token, nil); code != http.StatusNotFound {
		t.Errorf("second DELETE = %d, want 404", code)
	}
}

func assertSessionGone(t *testing.T, f *Fixture, s Session) {
	t.Helper()
	code, body := f.D.API(t, http.MethodGet, "/api/v1/sessions", f.Token, nil)
	if code != http.StatusOK {
		t.Errorf("GET /api/v1/sessions = %d %s", code, body)
	} else if strings.Contains(string(body), s.ID) {
		t.Errorf("ended session %s still listed: %s", s.ID, body)
	}
	if code, _ := httpDo(t, http.MethodGet, s.CDPURL+"/json/version", nil); code != http.StatusNotFound && code != http.StatusUnauthorized {
		t.Errorf("discovery of an ended session = %d, want 401/404", code)
	}
	if c, resp, err := websocket.DefaultDialer.Dial(s.WSURL, nil); err == nil {
		c.Close()
		t.Errorf("websocket of an ended session upgraded")
	} else if resp == nil || (resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusUnauthorized) {
		t.Errorf("websocket of an ended session: %v, want 401/404", err)
	}
}

// TestSessionTTLExpiry: a session with ttl_seconds ends by itself.
func TestSessionTTLExpiry(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "info")
	base := f.Env.BrowserProcs()
	start := time.Now()
	s := f.D.NewSession(t, f.Token, SessionOpts{TTLSeconds: 2})
	exp, err := time.Parse(time.RFC3339Nano, s.ExpiresAt)
	if err != nil {
		t.Errorf("expires_at %q is not RFC 3339: %v", s.ExpiresAt, err)
	} else if d := exp.Sub(start); d < time.Second || d > 5*time.Second {
		t.Errorf("expires_at %s is %v after creation, want about 2s", s.ExpiresAt, d)
	}
	r := DialRaw(t, s.WSURL)
	r.MustCall("", "Browser.getVersion", nil, nil)
	if closed, _, err := r.WaitClosed(20 * time.Second); !closed {
		t.Fatalf("session socket at TTL: no close frame: %v", err)
	}
	if el := time.Since(start); el < 1500*time.Millisecond {
		t.Errorf("session ended after %v, before its 2s TTL", el)
	}
	if err := f.Env.WaitBrowserProcs(base, 15*time.Second); err != nil {
		t.Errorf("after TTL: %v", err)
	}
	assertSessionGone(t, f, s)
}
