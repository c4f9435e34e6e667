package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mafredri/cdp"
	"github.com/mafredri/cdp/devtool"
	"github.com/mafredri/cdp/protocol/page"
	"github.com/mafredri/cdp/protocol/runtime"
	"github.com/mafredri/cdp/rpcc"
)

// Attach mode (issue 3): chrome.url points sessions at a Chromium the
// operator runs; the daemon proxies it and never stops it.

// attachEnv launches a Chromium itself and an env whose config attaches to it.
func attachEnv(t *testing.T, logLevel string) (*Env, *DirectChrome) {
	t.Helper()
	chrome := StartDirectChrome(t)
	env := NewEnv(t, logLevel)
	cfg := "log: {level: " + logLevel + ", format: json}\nchrome:\n  url: " + chrome.CDPURL + "\n"
	if err := os.WriteFile(env.Config, []byte(cfg), 0o600); err != nil {
		t.Fatalf("write config: %v", err)
	}
	return env, chrome
}

// ownPageSession is what an agent does in attach mode: a browser context of
// its own (the shared default context is refused), a page in it, and a
// flattened session on that page. It returns the context, target and
// session ids.
func ownPageSession(r *RawCDP, startURL string) (contextID, targetID, sessionID string) {
	r.t.Helper()
	var bc struct {
		ID string `json:"browserContextId"`
	}
	r.MustCall("", "Target.createBrowserContext", map[string]any{}, &bc)
	var ct struct {
		TargetID string `json:"targetId"`
	}
	r.MustCall("", "Target.createTarget", map[string]any{"url": startURL, "browserContextId": bc.ID}, &ct)
	var at struct {
		SessionID string `json:"sessionId"`
	}
	r.MustCall("", "Target.attachToTarget", map[string]any{"targetId": ct.TargetID, "flatten": true}, &at)
	return bc.ID, ct.TargetID, at.SessionID
}

// refusedByCdpvault asserts that resp is a cdpvault CDP error.
func refusedByCdpvault(t *testing.T, what string, resp CDPResponse) {
	t.Helper()
	if resp.Error == nil || !strings.HasPrefix(resp.Error.Message, "cdpvault:") {
		t.Errorf("%s: want a cdpvault CDP error, got result %s error %+v", what, resp.Result, resp.Error)
	}
}

// chromeLists reports whether the attached Chrome's own /json/list holds
// targetID.
func chromeLists(t *testing.T, chrome *DirectChrome, targetID string) bool {
	t.Helper()
	code, body := httpDo(t, http.MethodGet, chrome.CDPURL+"/json/list", nil)
	if code != http.StatusOK {
		t.Fatalf("the attached Chrome's /json/list = %d", code)
	}
	return strings.Contains(string(body), targetID)
}

// readyzStatus is the status of GET /readyz.
func readyzStatus(t *testing.T, d *Daemon) (int, []byte) {
	t.Helper()
	return httpDo(t, http.MethodGet, "http://"+d.Addr+"/readyz", nil)
}

// directAlive reports whether the externally launched Chromium still answers
// on its own DevTools port, over HTTP and over its browser socket.
func directAlive(t *testing.T, chrome *DirectChrome) bool {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(chrome.CDPURL + "/json/version")
	if err != nil {
		return false
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	ws, _, err := websocket.DefaultDialer.Dial(chrome.WSURL, nil)
	if err != nil {
		return false
	}
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"id":1,"method":"Browser.getVersion"}`)); err != nil {
		return false
	}
	_, b, err := ws.ReadMessage()
	return err == nil && strings.Contains(string(b), `"product"`)
}

func TestAttachMode(t *testing.T) {
	t.Parallel()
	site := NewSite(t)
	env, chrome := attachEnv(t, "info")
	token := env.Tenant("acme")
	d := env.Start()
	if code, body := readyzStatus(t, d); code != http.StatusOK {
		t.Fatalf("/readyz in attach mode with Chrome up = %d %s, want 200", code, body)
	}

	s := d.NewSession(t, token, SessionOpts{})
	// ws_url is the attached browser's own socket, through the daemon.
	browserID := path.Base(chrome.WSURL)
	if want := "ws://" + d.Addr + "/session/"; !strings.HasPrefix(s.WSURL, want) || !strings.HasSuffix(s.WSURL, "/devtools/browser/"+browserID) {
		t.Errorf("ws_url %s: want %s<token>/devtools/browser/%s (the attached browser, through the daemon)", s.WSURL, want, browserID)
	}

	// Raw client on ws_url: the shared default context is refused; in a
	// context of its own a page, a navigation, an evaluation work.
	r := DialRaw(t, s.WSURL)
	refusedByCdpvault(t, "a page in the shared default context", r.Call("", "Target.createTarget", map[string]any{"url": "about:blank"}))
	_, tid, sid := ownPageSession(r, "about:blank")
	r.Navigate(sid, site.URL("acme", "/login?client=raw"))
	if got := string(r.Evaluate(sid, "document.title + ':' + (6*7)")); got != `"Login at acme.test:42"` {
		t.Errorf("evaluate through ws_url = %s", got)
	}
	if len(site.Received("acme.test", "/login")) != 1 {
		t.Errorf("the site saw %d logins pages, want 1", len(site.Received("acme.test", "/login")))
	}
	// The page lives in the externally launched browser.
	code, body := httpDo(t, http.MethodGet, chrome.CDPURL+"/json/list", nil)
	if code != http.StatusOK || !strings.Contains(string(body), tid) {
		t.Errorf("the attached Chrome's own /json/list (%d) does not list the session's page %s", code, tid)
	}

	// mafredri/cdp through cdp_url: discovery lists the session's own page,
	// its page socket works (navigate, evaluate). PUT /json/new would open a
	// page in the shared default context: refused.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	devt := devtool.New(s.CDPURL)
	if _, err := devt.Create(ctx); err == nil {
		t.Errorf("PUT /json/new (a page in the shared default context) was served in attach mode")
	}
	pt, err := devt.Get(ctx, devtool.Page)
	if err != nil {
		t.Fatalf("devtool list: %v", err)
	}
	if pt.ID != tid {
		t.Errorf("the session's discovery shows page %s, want its own page %s", pt.ID, tid)
	}
	if !strings.HasPrefix(pt.WebSocketDebuggerURL, "ws://"+d.Addr+"/session/") {
		t.Errorf("page socket URL %s does not point through the daemon", pt.WebSocketDebuggerURL)
	}
	conn, err := rpcc.DialContext(ctx, pt.WebSocketDebuggerURL)
	if err != nil {
		t.Fatalf("rpcc dial: %v", err)
	}
	defer conn.Close()
	c := cdp.NewClient(conn)
	load, err := c.Page.LoadEventFired(ctx)
	if err != nil {
		t.Fatalf("load events: %v", err)
	}
	if err := c.Page.Enable(ctx); err != nil {
		t.Fatalf("Page.enable: %v", err)
	}
	if _, err := c.Page.Navigate(ctx, page.NewNavigateArgs(site.URL("acme", "/blank?client=mafredri"))); err != nil {
		t.Fatalf("Page.navigate: %v", err)
	}
	if _, err := load.Recv(); err != nil {
		t.Fatalf("load event: %v", err)
	}
	load.Close()
	ev, err := c.Runtime.Evaluate(ctx, runtime.NewEvaluateArgs("document.title + ':' + location.search"))
	if err != nil || string(ev.Result.Value) != `"blank:?client=mafredri"` {
		t.Errorf("mafredri/cdp evaluate = %v, %v", ev, err)
	}

	// Attach mode launches nothing.
	if n := env.BrowserProcs(); n != 0 {
		t.Errorf("%d browser processes belong to the daemon in attach mode, want 0", n)
	}

	// DELETE: the session's sockets close, the attached Chrome lives on.
	if code, body := d.API(t, http.MethodDelete, "/api/v1/sessions/"+s.ID, token, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE session = %d %s", code, body)
	}
	if closed, _, err := r.WaitClosed(15 * time.Second); !closed {
		t.Errorf("browser socket after DELETE: no close frame: %v", err)
	}
	if code, _ := httpDo(t, http.MethodGet, s.CDPURL+"/json/version", nil); code != http.StatusNotFound && code != http.StatusUnauthorized {
		t.Errorf("discovery of the deleted session = %d, want 401/404", code)
	}
	if !directAlive(t, chrome) {
		t.Fatalf("the externally launched Chromium no longer answers after DELETE: attach mode must never stop it")
	}
	if code, body := readyzStatus(t, d); code != http.StatusOK {
		t.Errorf("/readyz after DELETE = %d %s, want 200", code, body)
	}

	// A second session is open when the attached Chrome goes away.
	s2 := d.NewSession(t, token, SessionOpts{})
	r2 := DialRaw(t, s2.WSURL)
	r2.MustCall("", "Browser.getVersion", nil, nil)
	direct := DialRaw(t, chrome.WSURL)
	direct.Send("", "Browser.close", nil) // Chrome may exit before it answers
	if _, _, err := direct.WaitClosed(waitTimeout); err != nil && strings.Contains(err.Error(), "still open") {
		t.Fatalf("Chrome did not close: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := readyzStatus(t, d)
		if code == http.StatusServiceUnavailable {
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" {
				t.Errorf("/readyz 503 body %s: want the JSON error form", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %s 15 s after the attached Chrome exited, want 503", code, body)
		}
		time.Sleep(50 * time.Millisecond) // polling the daemon's view of an external process
	}
	// The open session's socket ends with a close frame, not a hang.
	if closed, code, err := r2.WaitClosed(15 * time.Second); !closed {
		t.Errorf("session socket when the attached Chrome died: no close frame: %v", err)
	} else {
		t.Logf("session socket closed with code %d when Chrome died", code)
	}
	// New sessions fail with a clear JSON error while no Chrome is there.
	code, body = d.API(t, http.MethodPost, "/api/v1/sessions", token, SessionOpts{})
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if code < 500 || json.Unmarshal(body, &e) != nil || e.Error.Code == "" {
		t.Errorf("POST /api/v1/sessions with the attached Chrome gone = %d %s, want a 5xx JSON error", code, body)
	}
	// The daemon itself keeps running.
	if code, _ := httpDo(t, http.MethodGet, "http://"+d.Addr+"/healthz", nil); code != http.StatusOK {
		t.Errorf("/healthz with the attached Chrome gone = %d, want 200 (alive, not ready)", code)
	}
}

// TestAttachModeIsolatesTenants: sessions of two tenants attached to one
// Chrome. Tenant beta's page shows beta's secret; tenant acme's agent must
// not see that page or read the value, neither while beta's session runs
// nor after it ended (the attached browser outlives sessions). Every
// cross-tenant attempt must look like "not found" (issue 2) and no secret
// may reach an agent (issue 5); a shared browser must not be a way around
// both.
func TestAttachModeIsolatesTenants(t *testing.T) {
	t.Parallel()
	site := NewSite(t)
	env, chrome := attachEnv(t, "info")
	acme := env.Tenant("acme")
	beta := env.Tenant("beta")
	betaValue := []byte("Beta attach secret " + randomHex(8))
	env.SetSecret("beta", "beta_attach", betaValue, site.Origin("acme"))
	d := env.Start()
	site.SetEchoValues(betaValue)

	sb := d.NewSession(t, beta, SessionOpts{Secrets: []string{"beta_attach"}})
	rb := DialRaw(t, sb.WSURL)
	_, betaTarget, betaSID := ownPageSession(rb, "about:blank")
	rb.Navigate(betaSID, site.URL("acme", "/echo?tenant=beta"))
	// Control: the page really shows the value, and beta's own agent reads
	// the placeholder.
	if len(site.Received("acme.test", "/echo")) != 1 {
		t.Fatalf("beta's echo page was not served")
	}
	if got := string(rb.Evaluate(betaSID, "document.getElementById('raw0').textContent")); got != `"`+placeholder("beta_attach")+`"` {
		t.Errorf("beta's own agent reads %s, want its placeholder", got)
	}

	probe := func(what string) {
		t.Helper()
		sa := d.NewSession(t, acme, SessionOpts{})
		rec := &recorder{}
		ra := DialRawRecorded(t, sa.WSURL, rec)
		var ts struct {
			TargetInfos []struct {
				TargetID string `json:"targetId"`
				Type     string `json:"type"`
				URL      string `json:"url"`
			} `json:"targetInfos"`
		}
		// acme works normally in a context of its own
		_, _, acmeSID := ownPageSession(ra, "about:blank")
		ra.Navigate(acmeSID, site.URL("acme", "/blank?tenant=acme"))
		if got := string(ra.Evaluate(acmeSID, "location.search")); got != `"?tenant=acme"` {
			t.Errorf("%s: acme's own page evaluates to %s", what, got)
		}
		// Chrome would attach a browser-level auto-attacher to every page
		// and announce every target to a discoverer: beta's must not reach
		// acme
		ra.MustCall("", "Target.setDiscoverTargets", map[string]any{"discover": true}, nil)
		ra.MustCall("", "Target.setAutoAttach", map[string]any{"autoAttach": true, "waitForDebuggerOnStart": false, "flatten": true}, nil)
		refusedByCdpvault(t, what+": acme attaches to beta's page", ra.Call("", "Target.attachToTarget", map[string]any{"targetId": betaTarget, "flatten": true}))
		// refused while it exists, unknown to Chrome once it is gone
		if resp := ra.Call("", "Target.getTargetInfo", map[string]any{"targetId": betaTarget}); resp.Error == nil {
			t.Errorf("%s: acme reads the info of beta's page: %s", what, resp.Result)
		}
		refusedByCdpvault(t, what+": acme closes beta's page", ra.Call("", "Target.closeTarget", map[string]any{"targetId": betaTarget}))
		ra.MustCall("", "Target.getTargets", nil, &ts)
		for _, ti := range ts.TargetInfos {
			if ti.TargetID == betaTarget {
				t.Errorf("%s: tenant acme's session lists tenant beta's page %s (%s)", what, ti.TargetID, ti.URL)
			}
			if ti.Type != "page" {
				continue
			}
			// Read every page the session can reach, as an attacker would.
			resp := ra.Call("", "Target.attachToTarget", map[string]any{"targetId": ti.TargetID, "flatten": true})
			var at struct {
				SessionID string `json:"sessionId"`
			}
			if resp.Error != nil || json.Unmarshal(resp.Result, &at) != nil {
				continue
			}
			ra.Call(at.SessionID, "Runtime.evaluate", map[string]any{"expression": "document.documentElement.outerHTML", "returnByValue": true})
		}
		_, disc := httpDo(t, http.MethodGet, sa.CDPURL+"/json/list", nil)
		if hits := valueHits(disc, betaValue); len(hits) > 0 {
			t.Errorf("%s: tenant acme's /json/list holds tenant beta's secret: %v", what, hits)
		}
		if strings.Contains(string(disc), betaTarget) {
			t.Errorf("%s: tenant acme's /json/list lists tenant beta's page %s", what, betaTarget)
		}
		ra.MustCall("", "Browser.getVersion", nil, nil) // after every event above
		if hits := bytesHits(rec.Bytes(), betaValue); len(hits) > 0 {
			t.Errorf("%s: tenant acme's agent read tenant beta's secret value over CDP: %v", what, hits)
		}
		if strings.Contains(string(rec.Bytes()), betaTarget) {
			t.Errorf("%s: tenant acme's agent received tenant beta's target id over CDP", what)
		}
	}
	probe("while beta's session runs")
	if !chromeLists(t, chrome, betaTarget) {
		t.Fatalf("control: the attached Chrome does not list beta's page %s", betaTarget)
	}
	if code, body := d.API(t, http.MethodDelete, "/api/v1/sessions/"+sb.ID, beta, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE beta's session = %d %s", code, body)
	}
	// beta's contexts are disposed with its session: no page of beta's
	// outlives it in the shared browser
	for deadline := time.Now().Add(10 * time.Second); chromeLists(t, chrome, betaTarget); {
		if time.Now().After(deadline) {
			t.Fatalf("beta's page %s is still open in the attached Chrome after beta's session ended", betaTarget)
		}
		time.Sleep(50 * time.Millisecond) // polling the external browser
	}
	probe("after beta's session ended")
}

// TestAttachModeGeo: issue 6 says "In attach mode, the daemon sets
// proxyServer on the session's Target.createBrowserContext and refuses an
// agent-supplied one." A geo session on an attached Chrome sends its pages
// through the pool, never directly, and the agent cannot set its own proxy.
func TestAttachModeGeo(t *testing.T) {
	t.Parallel()
	site := NewSite(t)
	pw := []byte("Attach-geo-pw-" + randomHex(8))
	live := newStampUpstream(t, "attach-live", "geo-user", string(pw))
	env, chrome := attachEnv(t, "info")
	env.Tenant("ops")
	env.SetSecret("ops", "proxy_de_1", pw)
	token := env.Tenant("acme")
	cfg := "log: {level: info, format: json}\nchrome:\n  url: " + chrome.CDPURL + "\n" +
		"geo:\n  credentials_tenant: ops\n  pools:\n    de:\n      timezone: Europe/Berlin\n      locale: de-DE\n" +
		"      upstreams:\n        - {url: \"" + live.srv.URL + "\", username: geo-user, password_secret: proxy_de_1}\n"
	if err := os.WriteFile(env.Config, []byte(cfg), 0o600); err != nil {
		t.Fatalf("write config: %v", err)
	}
	d := env.Start()
	code, body := d.API(t, http.MethodPost, "/api/v1/sessions", token, geoSessionOpts{Secrets: []string{}, Geo: "de"})
	if code != http.StatusCreated {
		t.Fatalf("POST /api/v1/sessions geo=de in attach mode = %d %s, want 201 (issue 6: the daemon sets proxyServer on the session's browser context)", code, body)
	}
	var s Session
	if err := json.Unmarshal(body, &s); err != nil || s.WSURL == "" {
		t.Fatalf("session body %s: %v", body, err)
	}
	t.Cleanup(func() { d.API(t, http.MethodDelete, "/api/v1/sessions/"+s.ID, token, nil) })
	r := DialRaw(t, s.WSURL)
	// The shared default context goes direct, so a geo session in attach
	// mode works in a browser context of its own, which the daemon gives the
	// pool's proxy; a page in the default context is refused.
	if resp := r.Call("", "Target.createTarget", map[string]any{"url": "about:blank"}); resp.Error == nil || !strings.HasPrefix(resp.Error.Message, "cdpvault:") {
		t.Errorf("a page in the shared default context was not refused: %s %+v", resp.Result, resp.Error)
	}
	var bc struct {
		ID string `json:"browserContextId"`
	}
	r.MustCall("", "Target.createBrowserContext", map[string]any{"disposeOnDetach": true}, &bc)
	var ct struct {
		TargetID string `json:"targetId"`
	}
	r.MustCall("", "Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": bc.ID}, &ct)
	var at struct {
		SessionID string `json:"sessionId"`
	}
	r.MustCall("", "Target.attachToTarget", map[string]any{"targetId": ct.TargetID, "flatten": true}, &at)
	sid := at.SessionID
	r.Navigate(sid, site.URL("acme", "/blank?route=attach-geo"))
	if n := len(site.Received("acme.test", "/blank")); n != 1 {
		t.Errorf("the site saw %d requests, want 1", n)
	}
	if c := live.Carried("route=attach-geo"); len(c) != 1 {
		t.Errorf("the pool's upstream carried %v, want the navigation (a geo session never goes direct)", c)
	}
	resp := r.Call("", "Target.createBrowserContext", map[string]any{"proxyServer": "http://127.0.0.1:1"})
	if resp.Error == nil || !strings.HasPrefix(resp.Error.Message, "cdpvault:") {
		t.Errorf("an agent-supplied proxyServer was not refused with a cdpvault CDP error: %s %+v", resp.Result, resp.Error)
	}

	// The pool's time zone and language (issue 6: "the pool's timezone and
	// locale apply to the session's browser"), applied by the daemon through
	// CDP in attach mode; a session without geo on the same Chrome keeps
	// the host's.
	const probe = `[Intl.DateTimeFormat().resolvedOptions().timeZone, navigator.language].join("|")`
	if got := string(r.Evaluate(sid, probe)); got != `"Europe/Berlin|de-DE"` {
		t.Errorf("the geo session's page sees %s, want Europe/Berlin|de-DE", got)
	}
	if hs := site.Received("acme.test", "/blank"); len(hs) != 1 || !strings.HasPrefix(hs[0].Header.Get("Accept-Language"), "de-DE,de") {
		t.Errorf("the geo session's request reached the site with Accept-Language %v, want de-DE,de", acceptLanguages(hs))
	}
	plain := d.NewSession(t, token, SessionOpts{Secrets: []string{}})
	pr := DialRaw(t, plain.WSURL)
	_, _, psid := ownPageSession(pr, "about:blank")
	pr.Navigate(psid, site.URL("acme", "/blank?route=attach-plain"))
	host := string(pr.Evaluate(psid, probe))
	if strings.Contains(host, "Europe/Berlin") || strings.Contains(host, "|de") {
		t.Errorf("a session without geo on the same Chrome sees %s, want the host's time zone and language", host)
	}
	for _, h := range site.Received("acme.test", "/blank") {
		if h.RawQuery == "route=attach-plain" && strings.HasPrefix(h.Header.Get("Accept-Language"), "de") {
			t.Errorf("a session without geo sent Accept-Language %q", h.Header.Get("Accept-Language"))
		}
	}
	if c := live.Carried("route=attach-plain"); len(c) != 0 {
		t.Errorf("the pool carried a session without geo: %v", c)
	}
}

func acceptLanguages(hs []Recorded) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Header.Get("Accept-Language"))
	}
	return out
}

// TestAttachModeDaemonStopLeavesBrowser: SIGTERM ends the daemon cleanly,
// its sockets get close frames, and the attached Chrome keeps running.
func TestAttachModeDaemonStopLeavesBrowser(t *testing.T) {
	t.Parallel()
	site := NewSite(t)
	env, chrome := attachEnv(t, "info")
	token := env.Tenant("acme")
	d := env.Start()
	s := d.NewSession(t, token, SessionOpts{})
	r := DialRaw(t, s.WSURL)
	_, _, sid := ownPageSession(r, "about:blank")
	r.Navigate(sid, site.URL("acme", "/blank?attach=stop"))
	d.Signal(syscall.SIGTERM)
	if closed, _, err := r.WaitClosed(15 * time.Second); !closed {
		t.Errorf("session socket at daemon SIGTERM: no close frame: %v", err)
	}
	if code := d.Wait(15 * time.Second); code != 0 {
		t.Errorf("daemon exit code %d after SIGTERM, want 0\nlog:\n%s", code, tail(string(d.Log()), 4<<10))
	}
	if !directAlive(t, chrome) {
		t.Errorf("the attached Chromium no longer answers after the daemon stopped: attach mode must never stop it")
	}
}
