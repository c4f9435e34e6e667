package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// This file drives a real Chromium. The interceptor sits on a minimal
// adapter (cdpConn) that plays the proxy's part over a direct browser
// WebSocket: client commands pass Command before they are written, browser
// events pass Event, daemon Calls use ids the client never uses. The client
// side (cdpClient) sends the exact command sequences Playwright, Puppeteer
// and chromedp send for fill/type/SendKeys (see typists in fake_test.go).

const chromiumPath = "/usr/bin/chromium"

// launchChromium starts a headless Chromium and returns its browser
// WebSocket URL; the whole process group is killed in t.Cleanup.
func launchChromium(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no Chromium at %s", chromiumPath)
	}
	dir := t.TempDir()
	cmd := exec.Command(chromiumPath, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
		"--user-data-dir="+dir, "--remote-debugging-port=0", "--host-resolver-rules=MAP *.test 127.0.0.1",
		"--no-proxy-server", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "DevToolsActivePort"))
		if lines := strings.Split(string(b), "\n"); err == nil && len(lines) >= 2 && lines[1] != "" {
			return "ws://127.0.0.1:" + strings.TrimSpace(lines[0]) + strings.TrimSpace(lines[1])
		}
		select {
		case <-exited:
			t.Fatal("chromium exited during start")
		case <-time.After(20 * time.Millisecond): // polling an external process, with a deadline
		}
		if time.Now().After(deadline) {
			t.Fatal("chromium did not write DevToolsActivePort")
		}
	}
}

// cdpConn is the proxy stand-in: it implements cdpproxy.Conn over one
// browser WebSocket and runs the interceptor on both directions.
type cdpConn struct {
	t       testing.TB
	ws      *websocket.Conn
	wmu     sync.Mutex
	in      cdpproxy.Interceptor
	sess    *cdpproxy.Session
	daemon  atomic.Int64
	mu      sync.Mutex
	pending map[int64]chan json.RawMessage // responses by id (client and daemon)
	targets map[string]cdpproxy.TargetInfo
	subs    []chan event
	seen    []string       // every event method+params the client received
	calls   map[string]int // the interceptor's own calls by method
	closed  chan struct{}
	// toClient, when set, makes cdpConn a proxy: responses to client ids
	// and events (after Event) are written to the client with it.
	toClient func([]byte)
}

type event struct {
	method, sid string
	params      json.RawMessage
}

func dialCDP(t testing.TB, wsURL string, in cdpproxy.Interceptor) *cdpConn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL, err)
	}
	ws.SetReadLimit(256 << 20)
	c := &cdpConn{t: t, ws: ws, in: in, sess: &cdpproxy.Session{ID: "it-session", Tenant: "acme"},
		pending: map[int64]chan json.RawMessage{}, targets: map[string]cdpproxy.TargetInfo{}, closed: make(chan struct{})}
	c.daemon.Store(1 << 30)
	go c.readLoop()
	t.Cleanup(func() { in.Close(); _ = ws.Close(); <-c.closed })
	return c
}

func (c *cdpConn) readLoop() {
	defer close(c.closed)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.mu.Lock()
			for id, ch := range c.pending {
				close(ch)
				delete(c.pending, id)
			}
			c.mu.Unlock()
			return
		}
		var hdr struct {
			ID        int64           `json:"id"`
			Method    string          `json:"method"`
			SessionID string          `json:"sessionId"`
			Params    json.RawMessage `json:"params"`
		}
		if json.Unmarshal(data, &hdr) != nil {
			continue
		}
		if hdr.Method == "" {
			c.mu.Lock()
			ch := c.pending[hdr.ID]
			delete(c.pending, hdr.ID)
			toClient := c.toClient
			c.mu.Unlock()
			if ch != nil {
				ch <- data
			} else if toClient != nil && hdr.ID < 1<<30 {
				toClient(data)
			}
			continue
		}
		m := &cdpproxy.Message{Raw: data, Method: hdr.Method, SessionID: hdr.SessionID}
		c.track(m, hdr.Params)
		v, err := c.in.Event(context.Background(), eventConn{c}, m)
		if err != nil || v.Kind == cdpproxy.Drop {
			continue
		}
		c.mu.Lock()
		c.seen = append(c.seen, hdr.Method+" "+string(hdr.Params))
		subs := append([]chan event(nil), c.subs...)
		toClient := c.toClient
		c.mu.Unlock()
		if toClient != nil {
			toClient(data)
		}
		for _, s := range subs {
			select {
			case s <- event{hdr.Method, hdr.SessionID, hdr.Params}:
			default:
			}
		}
	}
}

// eventConn is the Conn the harness hands to Event: as the proxy's, its
// Call is refused (the caller would wait for a response only this
// goroutine can read) and Async gives the working one.
type eventConn struct{ *cdpConn }

func (eventConn) Call(context.Context, string, string, any) (json.RawMessage, error) {
	return nil, cdpproxy.ErrCallInEvent
}

func (e eventConn) Async() cdpproxy.Conn { return e.cdpConn }

// track is the proxy's session tracking, reduced to what inject reads.
func (c *cdpConn) track(m *cdpproxy.Message, params json.RawMessage) {
	var p struct {
		SessionID  string `json:"sessionId"`
		TargetInfo struct {
			TargetID, Type, URL string
		} `json:"targetInfo"`
	}
	_ = json.Unmarshal(params, &p)
	origin := func(u string) string {
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" {
			return ""
		}
		return pu.Scheme + "://" + pu.Host
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch m.Method {
	case "Target.attachedToTarget":
		c.targets[p.SessionID] = cdpproxy.TargetInfo{SessionID: p.SessionID, TargetID: p.TargetInfo.TargetID, Type: p.TargetInfo.Type,
			URL: p.TargetInfo.URL, Origin: origin(p.TargetInfo.URL), ParentSessionID: m.SessionID}
	case "Target.detachedFromTarget":
		delete(c.targets, p.SessionID)
	case "Target.targetInfoChanged":
		for k, ti := range c.targets {
			if ti.TargetID == p.TargetInfo.TargetID {
				ti.URL, ti.Origin = p.TargetInfo.URL, origin(p.TargetInfo.URL)
				c.targets[k] = ti
			}
		}
	}
}

func (c *cdpConn) Session() *cdpproxy.Session { return c.sess }

func (c *cdpConn) Target(sid string) (cdpproxy.TargetInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ti, ok := c.targets[sid]
	return ti, ok
}

func (c *cdpConn) roundTrip(ctx context.Context, id int64, data []byte) (json.RawMessage, error) {
	ch := make(chan json.RawMessage, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	c.wmu.Lock()
	err := c.ws.WriteMessage(websocket.TextMessage, data)
	c.wmu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, errors.New("connection closed")
		}
		return r, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

// Call implements cdpproxy.Conn; safe for concurrent use. The outgoing
// frame is wiped after the write, as the proxy does.
func (c *cdpConn) Call(ctx context.Context, sid, method string, params any) (json.RawMessage, error) {
	id := c.daemon.Add(1)
	c.mu.Lock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[method]++
	c.mu.Unlock()
	var pb []byte
	switch p := params.(type) {
	case json.RawMessage:
		pb = p
	default:
		var err error
		if pb, err = json.Marshal(p); err != nil {
			return nil, err
		}
	}
	frame := fmt.Appendf(make([]byte, 0, len(pb)+len(method)+len(sid)+64), `{"id":%d,"method":%q,"params":%s`, id, method, pb)
	if sid != "" {
		frame = fmt.Appendf(frame, `,"sessionId":%q`, sid)
	}
	frame = append(frame, '}')
	resp, err := c.roundTrip(ctx, id, frame)
	wipe(frame)
	if err != nil {
		return nil, err
	}
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		return nil, err
	}
	if r.Error != nil {
		return nil, fmt.Errorf("%s: %w", method, &cdpproxy.CDPError{Code: r.Error.Code, Message: r.Error.Message})
	}
	return r.Result, nil
}

func (c *cdpConn) WriteClient(data []byte) error {
	c.mu.Lock()
	toClient := c.toClient
	c.mu.Unlock()
	if toClient != nil {
		toClient(data)
	}
	return nil
}

func (c *cdpConn) subscribe() chan event {
	ch := make(chan event, 1024)
	c.mu.Lock()
	c.subs = append(c.subs, ch)
	c.mu.Unlock()
	return ch
}

// cdpClient plays the agent's CDP client through the interceptor.
type cdpClient struct {
	c  *cdpConn
	id int64
}

type cdpError struct{ msg string }

func (e *cdpError) Error() string { return e.msg }

// send runs a client command through the interceptor and returns Chrome's
// (or the interceptor's) answer.
func (cl *cdpClient) send(sid, method string, params any) (json.RawMessage, error) {
	cl.id++
	pb, _ := json.Marshal(params)
	if params == nil {
		pb = []byte("{}")
	}
	raw := fmt.Appendf(nil, `{"id":%d,"method":%q,"params":%s`, cl.id, method, pb)
	if sid != "" {
		raw = fmt.Appendf(raw, `,"sessionId":%q`, sid)
	}
	raw = append(raw, '}')
	return cl.sendRaw(&cdpproxy.Message{Raw: raw, ID: cl.id, HasID: true, Method: method, SessionID: sid})
}

func (cl *cdpClient) sendRaw(m *cdpproxy.Message) (json.RawMessage, error) {
	v, err := cl.c.in.Command(context.Background(), cl.c, m)
	if err != nil {
		return nil, err
	}
	var resp []byte
	switch v.Kind {
	case cdpproxy.Forward, cdpproxy.Replace:
		data := m.Raw
		if v.Kind == cdpproxy.Replace {
			data = v.Data
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if resp, err = cl.c.roundTrip(ctx, m.ID, data); err != nil {
			return nil, err
		}
	case cdpproxy.Reply:
		resp = v.Data
	default:
		return nil, fmt.Errorf("verdict %v", v.Kind)
	}
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		return nil, err
	}
	if r.Error != nil {
		return nil, &cdpError{r.Error.Message}
	}
	return r.Result, nil
}

func (cl *cdpClient) must(sid, method string, params any) json.RawMessage {
	cl.c.t.Helper()
	r, err := cl.send(sid, method, params)
	if err != nil {
		cl.c.t.Fatalf("%s: %v", method, err)
	}
	return r
}

func (cl *cdpClient) eval(sid, expr string) json.RawMessage {
	cl.c.t.Helper()
	r := cl.must(sid, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true})
	var out struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails json.RawMessage `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(r, &out); err != nil || out.ExceptionDetails != nil {
		cl.c.t.Fatalf("eval %q: %s", expr, r)
	}
	return out.Result.Value
}

// waitEval polls a page condition (the page is an external process) until
// it is true or the deadline passes.
func (cl *cdpClient) waitEval(sid, expr string) {
	cl.c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for string(cl.evalNoFail(sid, expr)) != "true" {
		if time.Now().After(deadline) {
			cl.c.t.Fatalf("timed out waiting for %s", expr)
		}
		time.Sleep(10 * time.Millisecond) // polling the browser with a deadline
	}
}

func (cl *cdpClient) evalNoFail(sid, expr string) json.RawMessage {
	r, err := cl.send(sid, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	if err != nil {
		return nil
	}
	var out struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
	}
	_ = json.Unmarshal(r, &out)
	return out.Result.Value
}

// site is the local multi-origin test site: acme.test, login.acme.test and
// evil.test all resolve to one loopback server; it records every form
// submission and every input-event beacon per host.
type site struct {
	srv  *httptest.Server
	port string
	mu   sync.Mutex
	got  map[string][]string // host -> bodies received (submits and beacons)
	subs chan string         // submitted pass values, "host pass"
}

const loginPage = `<!doctype html><meta charset=utf-8><title>login</title>
<form id=f method=post action=/submit><input id=user name=user><input id=pass name=pass type=password><button>go</button></form>
<script>
window.__ev = {keydown: 0, keypress: 0, input: 0, keyup: 0, untrusted: 0, keys: ''};
for (const t of ['keydown', 'keypress', 'input', 'keyup']) document.addEventListener(t, e => { window.__ev[t]++; if (!e.isTrusted) window.__ev.untrusted++; if (t === 'keydown') window.__ev.keys += e.key; }, true);
document.addEventListener('input', e => navigator.sendBeacon('/beacon', e.target.value), true);
if (location.search.includes('autofocus')) document.getElementById('pass').focus();
if (location.search.includes('spoof')) {
  Object.defineProperty(Document.prototype, 'activeElement', {get() { return null; }});
  Document.prototype.hasFocus = () => false;
}
</script>`

func newSite(t testing.TB) *site {
	s := &site{got: map[string][]string{}, subs: make(chan string, 100)}
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, loginPage)
	})
	mux.HandleFunc("/formto", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		method, fm := "post", ""
		if m := r.URL.Query().Get("method"); m != "" {
			method = m
		}
		if m := r.URL.Query().Get("formmethod"); m != "" {
			fm = " formmethod=" + m
		}
		fmt.Fprintf(w, `<!doctype html><meta charset=utf-8><form id=f action=%q method=%s accept-charset=%q><input id=pass name=pass><button formaction=%q%s>go</button></form>%s`,
			r.URL.Query().Get("action"), method, r.URL.Query().Get("cs"), r.URL.Query().Get("formaction"), fm, r.URL.Query().Get("extra"))
	})
	mux.HandleFunc("/ta", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><meta charset=utf-8><input id=pass><textarea id=ta></textarea>`)
	})
	mux.HandleFunc("/many", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><meta charset=utf-8><input id=pass>`+strings.Repeat(`<input>`, 120))
	})
	mux.HandleFunc("/fields", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><meta charset=utf-8><input id=pat pattern=".{3}[a-z].*"><input id=minl minlength=3>`+
			`<input id=maxl maxlength=4><input id=big maxlength=100><input id=next>`)
	})
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><meta charset=utf-8><input id=pass>`)
	})
	mux.HandleFunc("/framed", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><input id=outer><iframe id=fr src=%q width=600 height=300></iframe>`, r.URL.Query().Get("src"))
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><input id=pass><script>document.getElementById('pass').addEventListener('focus', () => { location.href = %q; });</script>`, r.URL.Query().Get("to"))
	})
	record := func(r *http.Request, body string) {
		s.mu.Lock()
		s.got[hostOnly(r.Host)] = append(s.got[hostOnly(r.Host)], body)
		s.mu.Unlock()
	}
	mux.HandleFunc("/beacon", func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 1<<16)
		n, _ := r.Body.Read(b)
		record(r, string(b[:n]))
	})
	mux.HandleFunc("/submit", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		record(r, r.PostForm.Get("user")+"\x00"+r.PostForm.Get("pass"))
		s.subs <- hostOnly(r.Host) + " " + r.PostForm.Get("user") + "\x00" + r.PostForm.Get("pass")
		fmt.Fprint(w, "ok")
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	_, s.port, _ = net.SplitHostPort(s.srv.Listener.Addr().String())
	return s
}

func hostOnly(hp string) string {
	h, _, err := net.SplitHostPort(hp)
	if err != nil {
		return hp
	}
	return h
}

func (s *site) url(host, path string) string { return "http://" + host + ":" + s.port + path }
func (s *site) origin(host string) string    { return "http://" + host + ":" + s.port }

// received reports whether any body the host received contains v.
func (s *site) received(host, v string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.got[host] {
		if strings.Contains(b, v) {
			return true
		}
	}
	return false
}

type browserEnv struct {
	t     testing.TB
	site  *site
	conn  *cdpConn
	cl    *cdpClient
	sid   string
	vault *fakeVault
	audit *memAudit
	ev    chan event

	wsURL   string
	listing bool // the vault also implements Lister
	taints  *Taints
	granted []string
	m       *Metrics
}

func (e *browserEnv) metrics() *Metrics {
	if e.m == nil {
		e.m = NewMetrics(nil)
	}
	return e.m
}

// newBrowserEnv launches Chromium, opens a page with auto-attach to its
// iframes (as Playwright and Puppeteer do) and puts the interceptor on it.
func newBrowserEnv(t testing.TB, secrets map[string]fakeSecret, granted []string) *browserEnv {
	return newBrowserEnvOpts(t, secrets, granted, true)
}

func newBrowserEnvOpts(t testing.TB, secrets map[string]fakeSecret, granted []string, autoAttach bool) *browserEnv {
	return newBrowserEnvWith(t, secrets, granted, envConfig{autoAttach: autoAttach})
}

// envConfig selects how a browserEnv's interceptors are made.
type envConfig struct {
	autoAttach bool
	taints     *Taints // the session's taint set; nil: taint off
	listing    bool    // the vault also implements Lister
}

func newBrowserEnvWith(t testing.TB, secrets map[string]fakeSecret, granted []string, cfg envConfig) *browserEnv {
	autoAttach := cfg.autoAttach
	s := newSite(t)
	e := &browserEnv{t: t, site: s, vault: &fakeVault{secrets: secrets}, audit: &memAudit{}, taints: cfg.taints, granted: granted, listing: cfg.listing}
	e.wsURL = launchChromium(t)
	e.conn = dialCDP(t, e.wsURL, e.interceptor())
	e.ev = e.conn.subscribe()
	e.cl = &cdpClient{c: e.conn}
	e.openPage()
	if autoAttach {
		e.cl.must(e.sid, "Target.setAutoAttach", map[string]any{"autoAttach": true, "waitForDebuggerOnStart": false, "flatten": true})
	}
	return e
}

// openPage opens a blank page, attaches to it (flat session e.sid),
// enables Page and Runtime, and returns its target id.
func (e *browserEnv) openPage() string {
	var ct struct{ TargetID string }
	_ = json.Unmarshal(e.cl.must("", "Target.createTarget", map[string]any{"url": "about:blank"}), &ct)
	var at struct{ SessionID string }
	_ = json.Unmarshal(e.cl.must("", "Target.attachToTarget", map[string]any{"targetId": ct.TargetID, "flatten": true}), &at)
	e.sid = at.SessionID
	e.cl.must(e.sid, "Page.enable", nil)
	e.cl.must(e.sid, "Runtime.enable", nil)
	return ct.TargetID
}

// waitReceived polls the site's beacons for v at host.
func (e *browserEnv) waitReceived(host, v string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !e.site.received(host, v) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond) // polling the browser's requests with a deadline
	}
	return true
}

// interceptor returns a new injection interceptor on the env's vault,
// audit and taints, as the daemon makes one per client connection.
func (e *browserEnv) interceptor() cdpproxy.Interceptor {
	logger := newTestLogger(testWriter{e.t})
	if _, bench := e.t.(*testing.B); bench {
		logger = newTestLogger(io.Discard)
	}
	var v Vault = e.vault
	if e.listing {
		v = listingVault{e.vault}
	}
	return New(Options{Vault: v, Granted: e.granted, Audit: e.audit, Metrics: e.metrics(), IdleFlush: 5 * time.Second,
		Logger: logger, Taints: e.taints})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// navigate loads url in the page and waits for its load event.
func (e *browserEnv) navigate(u string) {
	e.t.Helper()
	for {
		select {
		case <-e.ev:
			continue
		default:
		}
		break
	}
	r := e.cl.must(e.sid, "Page.navigate", map[string]any{"url": u})
	var nav struct {
		LoaderID string `json:"loaderId"`
	}
	_ = json.Unmarshal(r, &nav)
	// A load of the previous navigation (a form submitted just before) can
	// still arrive: wait for the main frame to commit this navigation's
	// loader (kept across server redirects), then for its load event.
	committed := nav.LoaderID == ""
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev := <-e.ev:
			if ev.sid != e.sid {
				continue
			}
			if ev.method == "Page.frameNavigated" {
				var fn struct {
					Frame struct {
						ParentID string `json:"parentId"`
						LoaderID string `json:"loaderId"`
					} `json:"frame"`
				}
				if json.Unmarshal(ev.params, &fn) == nil && fn.Frame.ParentID == "" && fn.Frame.LoaderID == nav.LoaderID {
					committed = true
				}
			}
			if ev.method == "Page.loadEventFired" && committed {
				return
			}
		case <-deadline:
			e.t.Fatalf("no load event for %s", u)
		}
	}
}

// childSession waits for the attached iframe target and returns its session.
func (e *browserEnv) childSession() string {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		e.conn.mu.Lock()
		for k, ti := range e.conn.targets {
			if ti.Type == "iframe" && ti.ParentSessionID == e.sid {
				e.conn.mu.Unlock()
				e.cl.waitEval(k, `document.readyState === 'complete' && !!document.getElementById('pass')`)
				return k
			}
		}
		e.conn.mu.Unlock()
		time.Sleep(10 * time.Millisecond) // polling the browser with a deadline
	}
	e.t.Fatal("no iframe target attached")
	return ""
}

// typeText sends text the way the named client does.
func (e *browserEnv) typeText(style, text string) error {
	var firstErr error
	note := func(_ json.RawMessage, err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for _, r := range text {
		k := string(r)
		switch style {
		case "insertText-per-char":
			note(e.cl.send(e.sid, methodInsertText, map[string]any{"text": k}))
		case "keys-puppeteer":
			note(e.cl.send(e.sid, methodKeyEvent, map[string]any{"type": "keyDown", "key": k, "text": k, "unmodifiedText": k}))
			note(e.cl.send(e.sid, methodKeyEvent, map[string]any{"type": "keyUp", "key": k}))
		case "keys-chromedp":
			note(e.cl.send(e.sid, methodKeyEvent, map[string]any{"type": "keyDown", "key": k}))
			note(e.cl.send(e.sid, methodKeyEvent, map[string]any{"type": "char", "key": k, "text": k, "unmodifiedText": k}))
			note(e.cl.send(e.sid, methodKeyEvent, map[string]any{"type": "keyUp", "key": k}))
		case "fill":
			// Playwright fill(): the text goes to its injected helper as a
			// callFunctionOn argument, then is typed with one insertText.
			var res struct {
				Result struct{ ObjectID string } `json:"result"`
			}
			_ = json.Unmarshal(e.cl.must(e.sid, "Runtime.evaluate", map[string]any{"expression": "document.body"}), &res)
			e.cl.must(e.sid, "Runtime.callFunctionOn", map[string]any{"objectId": res.Result.ObjectID,
				"functionDeclaration": "function(v) { return v.length; }", "arguments": []any{map[string]any{"value": text}}})
			note(e.cl.send(e.sid, methodInsertText, map[string]any{"text": text}))
			return firstErr
		}
	}
	return firstErr
}

var chromiumStyles = []string{"fill", "insertText-per-char", "keys-puppeteer", "keys-chromedp"}

const trickyValue = `p"a\ss <x> & 100% a+b  ünï 😀`

func TestChromiumLoginReceivesExactValue(t *testing.T) {
	t.Parallel()
	e := newBrowserEnv(t, map[string]fakeSecret{}, []string{"pw"})
	e.vault.secrets["pw"] = fakeSecret{value: trickyValue, origins: []string{e.site.origin("acme.test")}}
	for _, style := range chromiumStyles {
		e.navigate(e.site.url("acme.test", "/login"))
		e.cl.eval(e.sid, `document.getElementById('user').focus()`)
		user := "bob<<x>> <<sec " + style
		if err := e.typeText(style, user); err != nil {
			t.Fatalf("%s: typing user: %v", style, err)
		}
		e.cl.eval(e.sid, `document.getElementById('pass').focus()`)
		before := e.cl.eval(e.sid, `JSON.stringify(window.__ev)`)
		if err := e.typeText(style, "<<secret:pw>>"); err != nil {
			t.Fatalf("%s: typing placeholder: %v", style, err)
		}
		ev := e.cl.eval(e.sid, `JSON.stringify(window.__ev)`)
		var b0, b1 struct {
			Keydown, Input, Untrusted int
			Keys                      string
		}
		var s0, s1 string
		_ = json.Unmarshal(before, &s0)
		_ = json.Unmarshal(ev, &s1)
		_ = json.Unmarshal([]byte(s0), &b0)
		_ = json.Unmarshal([]byte(s1), &b1)
		if b1.Input-b0.Input < 1 || b1.Untrusted != 0 {
			t.Errorf("%s: typing the value fired %d input events (%d untrusted events in all)", style, b1.Input-b0.Input, b1.Untrusted)
		}
		if keys := strings.TrimPrefix(b1.Keys, b0.Keys); strings.HasPrefix(style, "keys-") && keys != trickyValue {
			// No key of the placeholder itself (chromedp's text-less
			// keyDown of the first '<' included) reached the page.
			t.Errorf("%s: the page saw keydown keys %q while the placeholder was typed, want the value's", style, keys)
		}
		e.cl.eval(e.sid, `document.getElementById('f').submit()`)
		select {
		case got := <-e.site.subs:
			if want := "acme.test " + user + "\x00" + trickyValue; got != want {
				t.Errorf("%s: site received %q\nwant %q", style, got, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: no submission", style)
		}
		var evs struct{ Keydown, Input int }
		var s string
		_ = json.Unmarshal(ev, &s)
		_ = json.Unmarshal([]byte(s), &evs)
		nUser, nVal := len([]rune(user)), len([]rune(trickyValue))
		switch style {
		case "keys-puppeteer", "keys-chromedp":
			// keydown fired for every typed character and every value
			// character.
			if evs.Keydown < nUser+nVal || evs.Input < nUser+nVal {
				t.Errorf("%s: page events %s", style, s)
			}
		case "insertText-per-char":
			if evs.Input < nUser+1 {
				t.Errorf("%s: page events %s", style, s)
			}
		}
	}
	for _, r := range e.audit.all() {
		if r.Result != AuditInjected || r.Origin != e.site.origin("acme.test") || r.Sink == "" {
			t.Errorf("audit %+v", r)
		}
	}
	if n := len(e.audit.all()); n != len(chromiumStyles) {
		t.Errorf("%d audit records, want %d", n, len(chromiumStyles))
	}
	e.conn.mu.Lock()
	defer e.conn.mu.Unlock()
	for _, s := range e.conn.seen {
		if strings.Contains(s, worldPrefix) || strings.Contains(s, "hunter") {
			t.Fatalf("client saw the check's world: %s", s)
		}
	}
}

// refused types the placeholder in every style and checks the CDP error and
// that the page and the site never got the value.
func (e *browserEnv) refused(sid, host, wantErr string) {
	e.t.Helper()
	for _, style := range chromiumStyles {
		err := e.typeText(style, "<<secret:pw>>")
		var ce *cdpError
		if !errors.As(err, &ce) || ce.msg != wantErr {
			e.t.Errorf("%s: error %v, want %q", style, err, wantErr)
		}
	}
	if v := string(e.cl.eval(sid, `document.getElementById('pass').value`)); strings.Contains(v, "s3cr") {
		e.t.Errorf("value reached the field: %s", v)
	}
	e.cl.eval(sid, `document.getElementById('f').submit()`)
	select {
	case <-e.site.subs:
	case <-time.After(20 * time.Second):
		e.t.Fatal("no submission")
	}
	for _, h := range []string{"acme.test", "evil.test", "login.acme.test"} {
		if e.site.received(h, "s3cr") {
			e.t.Errorf("%s received the value", h)
		}
	}
	if host == "" {
		return
	}
	for _, r := range e.audit.all() {
		if r.Result != AuditRefused || !strings.HasPrefix(r.Reason, "origin") {
			e.t.Errorf("audit %+v", r)
		}
	}
}

const plainValue = "s3cr3t-Value"

func TestChromiumCrossOriginIframeRefused(t *testing.T) {
	t.Parallel()
	e := newBrowserEnv(t, map[string]fakeSecret{}, []string{"pw"})
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test")}}
	e.navigate(e.site.url("acme.test", "/framed?src="+url.QueryEscape(e.site.url("evil.test", "/login?autofocus"))))
	child := e.childSession()
	e.cl.eval(child, `document.getElementById('pass').focus()`)
	e.cl.waitEval(child, `document.hasFocus()`)
	e.refused(child, "evil.test", fmt.Sprintf("cdpvault: origin %s is not allowed for secret pw", e.site.origin("evil.test")))
}

func TestChromiumUnattachedIframeFailsClosed(t *testing.T) {
	t.Parallel()
	// A client that did not attach to the out-of-process iframe: its origin
	// cannot be determined from the page's target, so the injection is
	// refused (fail closed).
	e := newBrowserEnvOpts(t, map[string]fakeSecret{}, []string{"pw"}, false)
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test"), e.site.origin("evil.test")}}
	e.navigate(e.site.url("acme.test", "/framed?src="+url.QueryEscape(e.site.url("evil.test", "/login"))))
	// Click into the iframe's first field (the client cannot script the
	// unattached frame).
	var box []float64
	_ = json.Unmarshal(e.cl.eval(e.sid, `(() => { const r = document.getElementById('fr').getBoundingClientRect(); return [r.x, r.y]; })()`), &box)
	for _, typ := range []string{"mousePressed", "mouseReleased"} {
		e.cl.must(e.sid, "Input.dispatchMouseEvent", map[string]any{"type": typ, "x": box[0] + 30, "y": box[1] + 18, "button": "left", "clickCount": 1})
	}
	e.cl.waitEval(e.sid, `document.activeElement && document.activeElement.id === 'fr'`)
	want := "cdpvault: origin of the focused frame could not be verified for secret pw (focus is in a cross-origin frame that cannot be verified)"
	for _, style := range chromiumStyles {
		err := e.typeText(style, "<<secret:pw>>")
		var ce *cdpError
		if !errors.As(err, &ce) || ce.msg != want {
			t.Errorf("%s: error %v, want %q", style, err, want)
		}
	}
	if e.site.received("evil.test", plainValue) {
		t.Fatal("value received")
	}
}

func TestChromiumCrossOriginIframeRefusedByItsOrigin(t *testing.T) {
	t.Parallel()
	// Same test, but the focused frame's origin is determined (the attached
	// iframe target reports focus), so the refusal names it; and a secret
	// allowed for the iframe's origin is typed into the iframe.
	e := newBrowserEnv(t, map[string]fakeSecret{}, []string{"pw", "framepw"})
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test")}}
	e.vault.secrets["framepw"] = fakeSecret{value: "frame-ok", origins: []string{e.site.origin("evil.test")}}
	e.navigate(e.site.url("acme.test", "/framed?src="+url.QueryEscape(e.site.url("evil.test", "/login"))))
	child := e.childSession()
	// Focus the iframe's field the way a user (and Playwright click) does;
	// the browser is an external process: click again until it took.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var box, in []float64
		_ = json.Unmarshal(e.cl.eval(e.sid, `(() => { const r = document.getElementById('fr').getBoundingClientRect(); return [r.x, r.y]; })()`), &box)
		_ = json.Unmarshal(e.cl.eval(child, `(() => { const r = document.getElementById('pass').getBoundingClientRect(); return [r.x + 5, r.y + 5]; })()`), &in)
		for _, typ := range []string{"mousePressed", "mouseReleased"} {
			e.cl.must(e.sid, "Input.dispatchMouseEvent", map[string]any{"type": typ, "x": box[0] + in[0] + 2, "y": box[1] + in[1] + 2, "button": "left", "clickCount": 1})
		}
		if string(e.cl.evalNoFail(child, `document.hasFocus() && document.activeElement.id === 'pass'`)) == "true" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("could not focus the iframe's field")
		}
		time.Sleep(50 * time.Millisecond) // polling the browser with a deadline
	}
	want := fmt.Sprintf("cdpvault: origin %s is not allowed for secret pw", e.site.origin("evil.test"))
	for _, style := range chromiumStyles {
		err := e.typeText(style, "<<secret:pw>>")
		var ce *cdpError
		if !errors.As(err, &ce) || ce.msg != want {
			t.Errorf("%s: error %v, want %q", style, err, want)
		}
	}
	for _, style := range chromiumStyles {
		e.cl.eval(child, `document.getElementById('pass').value = ''`)
		if err := e.typeText(style, "<<secret:framepw>>"); err != nil {
			t.Fatalf("%s: allowed secret in the iframe: %v", style, err)
		}
		if v := string(e.cl.eval(child, `document.getElementById('pass').value`)); v != `"frame-ok"` {
			t.Fatalf("%s: iframe field holds %s", style, v)
		}
	}
	if e.site.received("evil.test", plainValue) || e.site.received("acme.test", plainValue) {
		t.Fatal("the refused value reached a site")
	}
}

func TestChromiumSameProcessCrossOriginIframeRefused(t *testing.T) {
	t.Parallel()
	// login.acme.test inside acme.test: same site, so the same renderer
	// process, but a different origin; the walk enters it with universal
	// access and names its origin.
	e := newBrowserEnv(t, map[string]fakeSecret{}, []string{"pw", "loginpw"})
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test")}}
	e.vault.secrets["loginpw"] = fakeSecret{value: "login-ok", origins: []string{e.site.origin("login.acme.test")}}
	e.navigate(e.site.url("acme.test", "/framed?src="+url.QueryEscape(e.site.url("login.acme.test", "/login?autofocus"))))
	e.cl.waitEval(e.sid, `document.activeElement && document.activeElement.id === 'fr'`)
	want := fmt.Sprintf("cdpvault: origin %s is not allowed for secret pw", e.site.origin("login.acme.test"))
	for _, style := range chromiumStyles {
		err := e.typeText(style, "<<secret:pw>>")
		var ce *cdpError
		if !errors.As(err, &ce) || ce.msg != want {
			t.Errorf("%s: error %v, want %q", style, err, want)
		}
	}
	if e.site.received("login.acme.test", plainValue) {
		t.Fatal("value received")
	}
	// The secret of the iframe's own origin is typed into the iframe.
	for _, style := range chromiumStyles {
		if err := e.typeText(style, "<<secret:loginpw>>"); err != nil {
			t.Fatalf("%s: %v", style, err)
		}
	}
	if !e.waitReceived("login.acme.test", "login-ok", 15*time.Second) { // beacons are asynchronous
		t.Fatal("the iframe's own secret did not arrive there (beacon)")
	}
}

func TestChromiumNavigationBeforeTypingRefused(t *testing.T) {
	t.Parallel()
	e := newBrowserEnv(t, map[string]fakeSecret{}, []string{"pw"})
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test")}}
	want := fmt.Sprintf("cdpvault: origin %s is not allowed for secret pw", e.site.origin("evil.test"))

	// 1. The agent focused acme's field, then the page went to evil.test
	// (here: a client navigation; evil autofocuses its own field).
	e.navigate(e.site.url("acme.test", "/login"))
	e.cl.eval(e.sid, `document.getElementById('pass').focus()`)
	e.navigate(e.site.url("evil.test", "/login?autofocus"))
	e.refused(e.sid, "evil.test", want)

	// 2. The page itself navigates away as the field gets focus.
	e.navigate(e.site.url("acme.test", "/redirect?to="+url.QueryEscape(e.site.url("evil.test", "/login?autofocus"))))
	e.cl.send(e.sid, "Runtime.evaluate", map[string]any{"expression": `document.getElementById('pass').focus()`})
	e.cl.waitEval(e.sid, `location.hostname === 'evil.test' && document.readyState === 'complete' && document.activeElement.id === 'pass'`)
	e.refused(e.sid, "evil.test", want)

	// 3. evil.test spoofs activeElement and hasFocus in its own world
	// (location is unforgeable): the isolated world of the check does not see it.
	e.navigate(e.site.url("evil.test", "/login?autofocus&spoof"))
	if got := string(e.cl.eval(e.sid, `document.activeElement === null && !document.hasFocus()`)); got != "true" {
		t.Fatalf("spoof did not take effect in the main world: %s", got)
	}
	e.refused(e.sid, "evil.test", want)
}

func TestChromiumOrdinaryTypingByteForByte(t *testing.T) {
	t.Parallel()
	e := newBrowserEnv(t, map[string]fakeSecret{}, nil)
	text := "a<<b <<sec <<secret <<secret: <<secret:!x>> <<secret:ok> ünï"
	for _, style := range chromiumStyles[1:] {
		e.navigate(e.site.url("acme.test", "/login"))
		e.cl.eval(e.sid, `document.getElementById('user').focus()`)
		if err := e.typeText(style, text); err != nil {
			t.Fatalf("%s: %v", style, err)
		}
		e.cl.send(e.sid, "Runtime.evaluate", map[string]any{"expression": "0"}) // any other command flushes a hold
		got := e.cl.eval(e.sid, `document.getElementById('user').value`)
		var s string
		_ = json.Unmarshal(got, &s)
		if s != text {
			t.Errorf("%s: field holds %q, want %q", style, s, text)
		}
	}
}

func TestChromiumPresumedOrigin(t *testing.T) {
	t.Parallel()
	// A page of an origin a granted secret allows gets the check's world
	// readied in the background; a write there then presumes the focused
	// element is in that document, which writeFn verifies in the write's
	// own task. When focus is elsewhere (here a same-process cross-origin
	// iframe), nothing is written and the full check decides.
	e := newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw", "both", "loginonly"}, envConfig{autoAttach: true, listing: true})
	acme, login := e.site.origin("acme.test"), e.site.origin("login.acme.test")
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{acme}}
	e.vault.secrets["both"] = fakeSecret{value: "both-ok", origins: []string{acme, login}}
	e.vault.secrets["loginonly"] = fakeSecret{value: "login-only", origins: []string{login}}
	e.navigate(e.site.url("acme.test", "/framed?src="+url.QueryEscape(e.site.url("login.acme.test", "/login?autofocus"))))
	in := e.conn.in.(*interceptor)
	in.prep.Wait()
	if got := in.presumedOrigin(e.conn, e.sid).origin; got != acme {
		t.Fatalf("presumed origin %q after the page loaded, want %q", got, acme)
	}
	calls := func() map[string]int {
		e.conn.mu.Lock()
		defer e.conn.mu.Unlock()
		c := e.conn.calls
		e.conn.calls = nil
		return c
	}

	// Focus in the iframe's field (autofocus): the presumption fails, the
	// full check names the iframe's origin.
	e.cl.waitEval(e.sid, `document.activeElement && document.activeElement.id === 'fr'`)
	want := fmt.Sprintf("cdpvault: origin %s is not allowed for secret pw", login)
	_, err := e.cl.send(e.sid, methodInsertText, map[string]any{"text": "<<secret:pw>>"})
	var ce *cdpError
	if !errors.As(err, &ce) || ce.msg != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	// A secret allowed on both: the presumed write finds focus in the
	// iframe, writes nothing, and the full check types it there.
	if _, err := e.cl.send(e.sid, methodInsertText, map[string]any{"text": "<<secret:both>>"}); err != nil {
		t.Fatal(err)
	}
	recs := e.audit.all()
	if last := recs[len(recs)-1]; last.Secret != "both" || last.Result != AuditInjected || last.Origin != login {
		t.Fatalf("last audit %+v, want both injected on %s", last, login)
	}
	if !e.waitReceived("login.acme.test", "both-ok", 15*time.Second) { // beacons are asynchronous
		t.Fatal("the value did not arrive in the iframe (beacon)")
	}
	// Two secrets in one text, the first allowed on the presumed origin,
	// the second not (only on the iframe's): the presumption is dropped
	// before anything is refused, and the full check types both into the
	// iframe.
	if _, err := e.cl.send(e.sid, methodInsertText, map[string]any{"text": "<<secret:both>><<secret:loginonly>>"}); err != nil {
		t.Fatal(err)
	}
	if !e.waitReceived("login.acme.test", "both-oklogin-only", 15*time.Second) {
		t.Fatal("the two values did not arrive in the iframe (beacon)")
	}
	if e.site.received("login.acme.test", plainValue) {
		t.Fatal("the refused value reached the iframe")
	}
	n := 0
	for _, r := range recs {
		if r.Secret == "pw" && r.Result == AuditRefused {
			n++
			if r.Origin != login {
				t.Errorf("refusal recorded on %q, want %q", r.Origin, login)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d refusals of pw recorded, want 1 (a failed presumption records nothing)", n)
	}

	// Focus in the page's own field: one call, the write.
	e.cl.eval(e.sid, `document.getElementById('outer').focus()`)
	calls()
	if _, err := e.cl.send(e.sid, methodInsertText, map[string]any{"text": "<<secret:pw>>"}); err != nil {
		t.Fatal(err)
	}
	if c := calls(); c["Runtime.callFunctionOn"] != 1 || len(c) != 1 {
		t.Errorf("calls for a presumed write: %v, want one Runtime.callFunctionOn", c)
	}
	if v := string(e.cl.eval(e.sid, `document.getElementById('outer').value`)); v != `"`+plainValue+`"` {
		t.Fatalf("outer field holds %s", v)
	}
}
