package inject

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// Tests from a red-team round against the presumed-origin write path: a
// write on a page whose main document a granted secret allows skips the
// separate focus check and lets writeFn decide in the write's own task.
// Two of them found holes, since fixed (they described the attack; the
// comments say what held it).

// addRoutes puts extra pages in front of the env's site (the rest still
// goes to the site's own mux).
func addRoutes(e *browserEnv, routes map[string]string) {
	base := e.site.srv.Config.Handler
	mux := http.NewServeMux()
	for p, body := range routes {
		body := body
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			b := strings.ReplaceAll(body, "{PORT}", e.site.port)
			b = strings.ReplaceAll(b, "{HOST}", r.URL.Query().Get("host"))
			fmt.Fprint(w, b)
		})
	}
	mux.Handle("/", base)
	e.site.srv.Config.Handler = mux
}

// clickAt sends a left click at page coordinates.
func (e *browserEnv) clickAt(x, y float64) {
	for _, typ := range []string{"mousePressed", "mouseReleased"} {
		e.cl.must(e.sid, "Input.dispatchMouseEvent", map[string]any{"type": typ, "x": x, "y": y, "button": "left", "clickCount": 1})
	}
}

// An allowed page (acme.test) hosts another origin's iframe inside a closed
// shadow root (a third-party widget in a web component), and focus is in
// that iframe's field. acme's activeElement is the shadow host; the walk
// cannot enter the closed root, and window.frames does not list iframes in
// shadow trees (window.length is 0 here), so the walk finds focus in acme's
// own document. It used to write there: execCommand took nothing (the host
// is not editable) and an Input.insertText fallback typed the value where
// focus really was, the other origin's frame, audited as injected on acme.
// Now a focused element that takes no text is "inert": nothing is typed and
// nothing else is sent, and key typing stops the same way. With auto-attach
// an out-of-process evil.test reports focus through its own session.
func TestChromiumClosedShadowFrameGetsNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		attach, listing bool
		host            string
	}{{false, true, "evil.test"}, {false, false, "evil.test"}, {true, true, "evil.test"}, {true, true, "login.acme.test"}, {true, false, "login.acme.test"}} {
		attach, host := tc.attach, tc.host
		t.Run(fmt.Sprintf("%s,autoAttach=%t,listing=%t", host, tc.attach, tc.listing), func(t *testing.T) {
			t.Parallel()
			e := newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw"}, envConfig{autoAttach: attach, listing: tc.listing})
			acme := e.site.origin("acme.test")
			e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{acme}}
			addRoutes(e, map[string]string{"/widget": `<!doctype html><meta charset=utf-8><input id=outer>
<div id=host style="position:absolute;left:0;top:100px"></div>
<script>const r = document.getElementById('host').attachShadow({mode: 'closed'});
r.innerHTML = '<iframe src="http://{HOST}:{PORT}/login?autofocus" width=600 height=300 style="border:0"></iframe>';
window.__fr = r.querySelector('iframe'); window.__fr.onload = () => { window.__loaded = true; };</script>`})
			e.navigate(e.site.url("acme.test", "/widget?host="+host))
			in := e.conn.in.(*interceptor)
			e.cl.waitEval(e.sid, `window.__loaded === true`)
			child := ""
			if attach && host == "evil.test" {
				child = e.childSession()
			}
			// The agent moves focus into the widget's field.
			if host == "evil.test" {
				obs := child
				if obs == "" {
					obs = observeFrame(t, e)
				}
				e.focusFrameField(obs)
			} else {
				e.cl.eval(e.sid, `window.__fr.focus()`)
			}
			e.cl.waitEval(e.sid, `document.activeElement && document.activeElement.id === 'host'`)
			in.prep.Wait()
			t.Logf("presumed origin: %q", in.presumedOrigin(e.conn, e.sid).origin)
			e.conn.mu.Lock()
			e.conn.calls = nil
			e.conn.mu.Unlock()
			_, err := e.cl.send(e.sid, methodInsertText, map[string]any{"text": "<<secret:pw>>"})
			e.conn.mu.Lock()
			t.Logf("insertText: err=%v; the daemon's calls: %v", err, e.conn.calls)
			e.conn.mu.Unlock()
			for _, r := range e.audit.all() {
				t.Logf("audit %+v", r)
			}
			if e.waitReceived(host, plainValue, 3*time.Second) {
				t.Errorf("the value was typed into the "+host+" frame (beacon received); insertText error %v; audit %+v", err, e.audit.all())
			}
		})
	}
}

// observeFrame attaches a separate observer connection (its own
// interceptor, so the tested one learns nothing) to the page's evil.test
// iframe and returns its session id there (focusFrameField finds the
// connection through observers).
func observeFrame(t *testing.T, e *browserEnv) string {
	c2 := dialCDP(t, e.wsURL, e.interceptor())
	cl2 := &cdpClient{c: c2}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var ts struct {
			TargetInfos []struct{ TargetID, Type, URL string }
		}
		_ = json.Unmarshal(cl2.must("", "Target.getTargets", nil), &ts)
		for _, ti := range ts.TargetInfos {
			if ti.Type == "iframe" && strings.Contains(ti.URL, "evil.test") {
				var at struct{ SessionID string }
				_ = json.Unmarshal(cl2.must("", "Target.attachToTarget", map[string]any{"targetId": ti.TargetID, "flatten": true}), &at)
				observers.Store(at.SessionID, cl2)
				return at.SessionID
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no iframe target")
		}
		time.Sleep(10 * time.Millisecond) // polling the browser with a deadline
	}
}

var observers sync.Map // session id -> *cdpClient of an observer connection

// focusFrameField clicks into the out-of-process iframe until its document
// has focus on a field (obs: a session on it, of e's connection or of an
// observer connection).
func (e *browserEnv) focusFrameField(obs string) {
	e.t.Helper()
	cl := e.cl
	if o, ok := observers.Load(obs); ok {
		cl = o.(*cdpClient)
	}
	cl.waitEval(obs, `document.readyState === 'complete' && !!document.getElementById('pass')`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var box, in []float64
		_ = json.Unmarshal(e.cl.eval(e.sid, `(() => { const r = window.__fr.getBoundingClientRect(); return [r.x, r.y]; })()`), &box)
		_ = json.Unmarshal(cl.eval(obs, `(() => { const r = document.getElementById('pass').getBoundingClientRect(); return [r.x + 5, r.y + 5]; })()`), &in)
		e.clickAt(box[0]+in[0]+2, box[1]+in[1]+2)
		if string(cl.evalNoFail(obs, `document.hasFocus() && document.activeElement.id === 'pass'`)) == "true" {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatal("could not focus the iframe's field")
		}
		time.Sleep(50 * time.Millisecond) // polling the browser with a deadline
	}
}

// historyGo moves the page by delta entries in its history (without waiting).
func (e *browserEnv) historyGo(delta int) {
	var h struct {
		CurrentIndex int
		Entries      []struct{ ID int64 }
	}
	_ = json.Unmarshal(e.cl.must(e.sid, "Page.getNavigationHistory", nil), &h)
	e.cl.must(e.sid, "Page.navigateToHistoryEntry", map[string]any{"entryId": h.Entries[h.CurrentIndex+delta].ID})
}

// The back/forward cache keeps acme's document (and the check's world in
// it) alive while evil.test is shown, and brings it back: the presumption
// must never come from the hidden document, and a write racing a history
// navigation must land in acme's document or nowhere.
func TestChromiumBackForwardCacheNoStalePresumption(t *testing.T) {
	t.Parallel()
	// evil.test: another site (another process); login.acme.test: same
	// site, another origin (the renderer process may be reused).
	for _, host := range []string{"evil.test", "login.acme.test"} {
		t.Run(host, func(t *testing.T) {
			t.Parallel()
			testBackForwardCache(t, host)
		})
	}
}

func testBackForwardCache(t *testing.T, host string) {
	e := newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw"}, envConfig{autoAttach: true, listing: true})
	acme, evil := e.site.origin("acme.test"), e.site.origin(host)
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{acme}}
	in := e.conn.in.(*interceptor)
	e.navigate(e.site.url("acme.test", "/login?autofocus"))
	in.prep.Wait()
	if got := in.presumedOrigin(e.conn, e.sid).origin; got != acme {
		t.Fatalf("presumed %q", got)
	}
	e.cl.eval(e.sid, `window.__marker = 1`)
	e.navigate(e.site.url(host, "/login?autofocus"))
	in.prep.Wait()
	t.Logf("on %s: presumed %q", host, in.presumedOrigin(e.conn, e.sid).origin)
	want := fmt.Sprintf("cdpvault: origin %s is not allowed for secret pw", evil)
	if _, err := e.cl.send(e.sid, methodInsertText, map[string]any{"text": "<<secret:pw>>"}); err == nil || err.Error() != want {
		t.Errorf("on evil: %v, want %q", err, want)
	}
	for i := 0; i < 6; i++ {
		// Back to acme (restored from the cache), then forward to evil with
		// the write sent right behind the navigation.
		e.historyGo(-1)
		e.cl.waitEval(e.sid, `location.hostname === 'acme.test' && document.readyState === 'complete'`)
		restored := string(e.cl.eval(e.sid, `window.__marker === 1`)) == "true"
		in.prep.Wait()
		e.cl.eval(e.sid, `document.getElementById('pass').focus(); document.getElementById('pass').value = ''`)
		t.Logf("round %d: acme restored from the cache %t, presumed %q", i, restored, in.presumedOrigin(e.conn, e.sid).origin)
		if _, err := e.cl.send(e.sid, methodInsertText, map[string]any{"text": "<<secret:pw>>"}); err != nil {
			t.Errorf("round %d: write on acme: %v", i, err)
		}
		e.cl.eval(e.sid, `document.getElementById('pass').value = ''`)
		e.historyGo(+1)
		_, err := e.cl.send(e.sid, methodInsertText, map[string]any{"text": "<<secret:pw>>"})
		t.Logf("round %d: write racing forward: %v", i, err)
		e.cl.waitEval(e.sid, "location.hostname === '"+host+"' && document.readyState === 'complete'")
		in.prep.Wait()
		if _, err := e.cl.send(e.sid, methodInsertText, map[string]any{"text": "<<secret:pw>>"}); err == nil || err.Error() != want {
			t.Errorf("round %d: on evil after forward: %v, want %q", i, err, want)
		}
	}
	if e.waitReceived(host, plainValue, 2*time.Second) {
		t.Error(host + " received the value")
	}
	for _, r := range e.audit.all() {
		if r.Result == AuditInjected && r.Origin != acme {
			t.Errorf("audit %+v", r)
		}
	}
}

// gatedVault is a listing vault whose Resolve of one name waits for the
// test (a vault that decrypts remotely, or under load).
type gatedVault struct {
	listingVault
	name     string
	entered  chan struct{}
	release  chan struct{}
	gateOnce sync.Once
}

func (v *gatedVault) Resolve(ctx context.Context, name string) (Secret, error) {
	if name == v.name {
		v.gateOnce.Do(func() {
			close(v.entered)
			<-v.release
		})
	}
	return v.listingVault.Resolve(ctx, name)
}

// spyConn records the interceptor's writeFn calls and their answers.
type spyConn struct {
	*cdpConn
	mu     sync.Mutex
	writes []string // objectId -> answer, one per writeFn call
}

func (s *spyConn) Call(ctx context.Context, sid, method string, params any) (json.RawMessage, error) {
	var p []byte
	if raw, ok := params.(json.RawMessage); ok {
		p = append([]byte(nil), raw...) // copied before the caller wipes it
	}
	res, err := s.cdpConn.Call(ctx, sid, method, params)
	if method == "Runtime.callFunctionOn" && strings.Contains(string(p), "execCommand") {
		var q struct{ ObjectID string }
		_ = json.Unmarshal(p, &q)
		s.mu.Lock()
		s.writes = append(s.writes, fmt.Sprintf("world %s, value sent: %t, answer %s %v", q.ObjectID, strings.Contains(string(p), plainValue), res, err))
		s.mu.Unlock()
	}
	return res, err
}

// hasWorldOf reports whether the interceptor caches a check world whose
// document reported origin, for the main frame of sid.
func (in *interceptor) hasWorldOf(origin, sid string) bool {
	in.cacheMu.Lock()
	defer in.cacheMu.Unlock()
	w, ok := in.worlds[worldKey(sid, "")]
	return ok && w.origin == origin
}

// The write presumes acme.test's document; while the vault resolves the
// value, the page navigates to login.acme.test (an origin another granted
// secret allows), and the background preparation caches the check's world
// in that document. The write used to read the world from the cache, not
// the one its presumption (or check) saw, and sent the value into the next
// document's renderer (where writeFn refused it). Now the write runs only on
// the handle its check saw, while that is still the cached one.
func TestChromiumWriteOnlyInCheckedWorld(t *testing.T) {
	t.Parallel()
	// login.acme.test: same site; evil.test: another site, so another
	// renderer process gets the value in its memory.
	// With an attached out-of-process iframe in the page there is no
	// presumption: the full check runs, and the write still reads the
	// world from the cache.
	for _, host := range []string{"login.acme.test", "evil.test"} {
		for _, presumed := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s,presumed=%t", host, presumed), func(t *testing.T) {
				t.Parallel()
				testWriteOnlyInCheckedWorld(t, host, presumed)
			})
		}
	}
}

func testWriteOnlyInCheckedWorld(t *testing.T, host string, presumed bool) {
	e := newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw", "other"}, envConfig{autoAttach: true, listing: true})
	acme, login := e.site.origin("acme.test"), e.site.origin(host)
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{acme}}
	// A second granted secret, for an account on the other origin.
	e.vault.secrets["other"] = fakeSecret{value: "other-value", origins: []string{login}}
	gv := &gatedVault{listingVault: listingVault{e.vault}, name: "pw", entered: make(chan struct{}), release: make(chan struct{})}
	in2 := New(Options{Vault: gv, Granted: []string{"pw", "other"}, Audit: e.audit, Metrics: e.metrics(), IdleFlush: 5 * time.Second,
		Logger: newTestLogger(testWriter{t})})
	c2 := dialCDP(t, e.wsURL, in2)
	e2 := &browserEnv{t: t, site: e.site, conn: c2, cl: &cdpClient{c: c2}, vault: e.vault, audit: e.audit, ev: c2.subscribe()}
	targetID := e2.openPage()
	in := in2.(*interceptor)
	if presumed {
		e2.navigate(e.site.url("acme.test", "/login?autofocus"))
	} else {
		e2.cl.must(e2.sid, "Target.setAutoAttach", map[string]any{"autoAttach": true, "waitForDebuggerOnStart": false, "flatten": true})
		e2.navigate(e.site.url("acme.test", "/framed?src="+url.QueryEscape(e.site.url("evil.test", "/plain"))))
		e2.childSession()
		e2.cl.eval(e2.sid, `document.getElementById('outer').focus()`)
	}
	in.prep.Wait()
	if got := in.presumedOrigin(c2, e2.sid).origin; (got == acme) != presumed {
		t.Fatalf("presumed %q", got)
	}

	// Another connection (the agent's, or the page itself) navigates.
	c3 := dialCDP(t, e.wsURL, e.interceptor())
	cl3 := &cdpClient{c: c3}
	var at3 struct{ SessionID string }
	_ = json.Unmarshal(cl3.must("", "Target.attachToTarget", map[string]any{"targetId": targetID, "flatten": true}), &at3)

	spy := &spyConn{cdpConn: c2}
	done := make(chan string, 1)
	go func() {
		id := int64(1 << 20)
		raw := fmt.Appendf(nil, `{"id":%d,"method":%q,"params":{"text":"<<secret:pw>>"},"sessionId":%q}`, id, methodInsertText, e2.sid)
		v, err := in2.Command(context.Background(), spy, &cdpproxy.Message{Raw: raw, ID: id, HasID: true, Method: methodInsertText, SessionID: e2.sid})
		done <- fmt.Sprintf("%s %v", v.Data, err)
	}()
	select {
	case <-gv.entered: // the write presumed acme's document and is resolving
	case r := <-done:
		t.Fatalf("the write did not presume acme's document (was its world readied?): %s", r)
	case <-time.After(15 * time.Second):
		t.Fatal("the write never reached the vault")
	}
	cl3.must(at3.SessionID, "Page.navigate", map[string]any{"url": e.site.url(host, "/login?autofocus")})
	deadline := time.Now().Add(15 * time.Second)
	for !in.hasWorldOf(login, e2.sid) {
		if time.Now().After(deadline) {
			t.Fatal(host + "'s world was not readied")
		}
		time.Sleep(10 * time.Millisecond) // polling the interceptor's cache with a deadline
	}
	close(gv.release)
	t.Logf("insertText: %s", <-done)
	spy.mu.Lock()
	defer spy.mu.Unlock()
	for _, w := range spy.writes {
		t.Logf("writeFn call: %s", w)
		if strings.Contains(w, "value sent: true") && strings.Contains(w, `"self":"`+login+`"`) {
			t.Errorf("the value was sent into %s's document (a world the write never checked): %s", host, w)
		}
	}
}

// Opaque-origin and about:blank frames in an allowed page: the presumed
// write finds focus in a frame whose location has an opaque origin
// (about:blank, though the document has acme's origin), writes nothing, and
// the full check refuses; a sandboxed srcdoc frame (its own process here, so
// an attached target: no presumption) is refused too. Nothing lands in the
// frames, and a refusal is recorded once per attempt.
func TestChromiumPresumedOpaqueFramesRefused(t *testing.T) {
	t.Parallel()
	e := newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw"}, envConfig{autoAttach: true, listing: true})
	acme := e.site.origin("acme.test")
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{acme}}
	addRoutes(e, map[string]string{
		"/blank": `<!doctype html><meta charset=utf-8><input id=outer><iframe id=blank></iframe>
<script>document.getElementById('blank').contentDocument.body.innerHTML = '<input id=pass>';</script>`,
		"/sb": `<!doctype html><meta charset=utf-8><input id=outer>
<iframe id=sb sandbox="allow-scripts" srcdoc="<input id=pass autofocus><script>document.getElementById('pass').addEventListener('input', e => parent.postMessage(e.target.value, '*'))</script>"></iframe>
<script>window.__got = []; addEventListener('message', e => window.__got.push(String(e.data)));</script>`,
	})
	in := e.conn.in.(*interceptor)

	e.navigate(e.site.url("acme.test", "/blank"))
	in.prep.Wait()
	if got := in.presumedOrigin(e.conn, e.sid).origin; got != acme {
		t.Fatalf("presumed %q", got)
	}
	e.cl.eval(e.sid, `document.getElementById('blank').contentDocument.getElementById('pass').focus()`)
	e.cl.waitEval(e.sid, `document.getElementById('blank').contentDocument.hasFocus()`)
	if _, err := e.cl.send(e.sid, methodInsertText, map[string]any{"text": "<<secret:pw>>"}); err == nil {
		t.Error("about:blank frame: the write was not refused")
	}
	if got := string(e.cl.eval(e.sid, `document.getElementById('blank').contentDocument.getElementById('pass').value + document.getElementById('outer').value`)); got != `""` {
		t.Errorf("about:blank page holds %s", got)
	}

	e.navigate(e.site.url("acme.test", "/sb"))
	in.prep.Wait()
	e.cl.eval(e.sid, `document.getElementById('sb').focus()`)
	e.cl.waitEval(e.sid, `document.activeElement.id === 'sb'`)
	if _, err := e.cl.send(e.sid, methodInsertText, map[string]any{"text": "<<secret:pw>>"}); err == nil {
		t.Error("sandboxed frame: the write was not refused")
	}
	if got := string(e.cl.eval(e.sid, `JSON.stringify([window.__got, document.getElementById('outer').value])`)); strings.Contains(got, plainValue) {
		t.Errorf("the value landed: %s", got)
	}
	recs := e.audit.all()
	if len(recs) != 2 {
		t.Errorf("%d audit records, want 2 refusals", len(recs))
	}
	for _, r := range recs {
		if r.Result != AuditRefused || !strings.HasPrefix(r.Reason, "origin") {
			t.Errorf("audit %+v", r)
		}
	}
}
