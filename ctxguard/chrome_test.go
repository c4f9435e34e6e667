package ctxguard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cdpvault/cdpvault/cdpproxy"
	"github.com/elazarl/goproxy"
	"github.com/gorilla/websocket"
)

// ---- a real Chromium, the "shared" browser of attach mode ----

type chrome struct {
	base string // http://127.0.0.1:port
}

func chromePath(t testing.TB) string {
	if p := os.Getenv("CDPVAULT_CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("no chromium found (set CDPVAULT_CHROMIUM)")
	return ""
}

// startChrome launches a headless Chromium with one page in its default
// context, killed (whole process group) at cleanup.
func startChrome(t *testing.T) *chrome {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(chromePath(t), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
		"--user-data-dir="+dir, "--remote-debugging-port=0", "--host-resolver-rules=MAP *.test 127.0.0.1",
		"--disable-dev-shm-usage", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "DevToolsActivePort"))
		if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); err == nil && len(lines) == 2 {
			return &chrome{base: "http://127.0.0.1:" + lines[0]}
		}
		if time.Now().After(deadline) {
			t.Fatal("chromium did not write DevToolsActivePort")
		}
		time.Sleep(20 * time.Millisecond) // polling an external process
	}
}

// ---- the site and the recording forward proxy (the geo pool) ----

const viaHeader = "X-Ctxguard-Test-Proxy"

type hit struct {
	path     string
	viaProxy bool
}

type site struct {
	mu   sync.Mutex
	hits []hit
	url  string // http://acme.test:port
}

func newSite(t *testing.T) *site {
	s := &site{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits = append(s.hits, hit{r.URL.Path, r.Header.Get(viaHeader) != ""})
		s.mu.Unlock()
		fmt.Fprint(w, `<!doctype html><title>site</title><p>hello</p>`)
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	s.url = "http://acme.test:" + port
	return s
}

func (s *site) all() []hit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]hit(nil), s.hits...)
}

func (s *site) got(path string) []hit {
	var out []hit
	for _, h := range s.all() {
		if h.path == path {
			out = append(out, h)
		}
	}
	return out
}

type recProxy struct {
	mu   sync.Mutex
	urls []string
	addr string
}

// newRecProxy is a goproxy forward proxy that records every request and
// stamps it so the site can tell proxied from direct requests.
func newRecProxy(t *testing.T) *recProxy {
	p := &recProxy{}
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = log.New(io.Discard, "", 0)
	gp.Tr = &http.Transport{Proxy: nil, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if strings.HasSuffix(host, ".test") { // as Chromium's --host-resolver-rules
			host = "127.0.0.1"
		}
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(host, port))
	}}
	gp.OnRequest().DoFunc(func(r *http.Request, _ *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		p.mu.Lock()
		p.urls = append(p.urls, r.URL.String())
		p.mu.Unlock()
		r.Header.Set(viaHeader, "1")
		return r, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: gp}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	p.addr = ln.Addr().String()
	return p
}

func (p *recProxy) saw(u string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, x := range p.urls {
		if x == u {
			return true
		}
	}
	return false
}

// ---- cdpvault's proxy with the guard in front of the shared Chrome ----

func serveProxy(t *testing.T, upstream string, f cdpproxy.Factory) string {
	p := cdpproxy.New(cdpproxy.Options{})
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
		srv.Close()
	})
	tok := fmt.Sprintf("tok%p", t)
	tok = strings.NewReplacer("0x", "").Replace(tok) + "0123456789"
	p.Register(&cdpproxy.Session{ID: "geo-" + t.Name(), Token: tok, Tenant: "t1", Upstream: upstream, Interceptors: f})
	return srv.URL + "/session/" + tok
}

// ---- a raw CDP client ----

type cdpErr struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type wireMsg struct {
	ID        int64           `json:"id"`
	Method    string          `json:"method"`
	Params    json.RawMessage `json:"params"`
	Result    json.RawMessage `json:"result"`
	Error     *cdpErr         `json:"error"`
	SessionID string          `json:"sessionId"`
}

type client struct {
	t      *testing.T
	ws     *websocket.Conn
	wmu    sync.Mutex
	mu     sync.Mutex
	next   int64
	wait   map[int64]chan wireMsg
	events chan wireMsg
}

func dial(t *testing.T, u string) *client {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	c := &client{t: t, ws: ws, wait: map[int64]chan wireMsg{}, events: make(chan wireMsg, 4096)}
	t.Cleanup(func() { ws.Close() })
	go func() {
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var m wireMsg
			if json.Unmarshal(b, &m) != nil {
				continue
			}
			if m.Method != "" {
				select {
				case c.events <- m:
				default:
				}
				continue
			}
			c.mu.Lock()
			ch := c.wait[m.ID]
			delete(c.wait, m.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		}
	}()
	return c
}

// call sends a command and returns its result or its error.
func (c *client) call(method string, params any, sid string) (json.RawMessage, *cdpErr) {
	c.t.Helper()
	c.mu.Lock()
	c.next++
	id := c.next
	ch := make(chan wireMsg, 1)
	c.wait[id] = ch
	c.mu.Unlock()
	cmd := map[string]any{"id": id, "method": method}
	if params != nil {
		cmd["params"] = params
	}
	if sid != "" {
		cmd["sessionId"] = sid
	}
	c.wmu.Lock()
	err := c.ws.WriteJSON(cmd)
	c.wmu.Unlock()
	if err != nil {
		c.t.Fatalf("%s: write: %v", method, err)
	}
	select {
	case m := <-ch:
		return m.Result, m.Error
	case <-time.After(30 * time.Second):
		c.t.Fatalf("%s: no response", method)
	}
	return nil, nil
}

func (c *client) ok(method string, params any, sid string) json.RawMessage {
	c.t.Helper()
	r, e := c.call(method, params, sid)
	if e != nil {
		c.t.Fatalf("%s: %s", method, e.Message)
	}
	return r
}

func (c *client) refused(method string, params any, sid, want string) {
	c.t.Helper()
	_, e := c.call(method, params, sid)
	if e == nil || e.Message != want {
		c.t.Fatalf("%s: want refusal %q, got %+v", method, want, e)
	}
}

// event waits for an event matching pred.
func (c *client) event(pred func(wireMsg) bool) wireMsg {
	c.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-c.events:
			if pred(m) {
				return m
			}
		case <-timeout:
			c.t.Fatal("event not received")
		}
	}
}

func field[T any](t *testing.T, raw json.RawMessage, name string) T {
	t.Helper()
	var m map[string]json.RawMessage
	var v T
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	if err := json.Unmarshal(m[name], &v); err != nil {
		t.Fatalf("decode %s of %s: %v", name, raw, err)
	}
	return v
}

func browserWS(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/json/version")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		WS string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.WS == "" {
		t.Fatalf("/json/version: %v", err)
	}
	return v.WS
}

type targetInfo struct {
	TargetID         string `json:"targetId"`
	Type             string `json:"type"`
	URL              string `json:"url"`
	BrowserContextID string `json:"browserContextId"`
}

// TestGeoSessionInAttachMode drives a real Chromium through the real proxy
// with the Guard first in the chain, the way the daemon runs a geo session
// attached to a shared Chrome.
func TestGeoSessionInAttachMode(t *testing.T) {
	t.Parallel()
	ch := startChrome(t)
	st := newSite(t)
	pool := newRecProxy(t)
	g := NewGuard(Options{ProxyServer: "http://" + pool.addr, BypassList: "<-loopback>"})
	base := serveProxy(t, ch.base, func(*cdpproxy.Session) []cdpproxy.Interceptor {
		return []cdpproxy.Interceptor{g.Interceptor()}
	})
	b := dial(t, browserWS(t, base))

	// the agent's own context gets the pool's proxy; its page goes through it
	bc := field[string](t, b.ok("Target.createBrowserContext", map[string]any{"disposeOnDetach": false}, ""), "browserContextId")
	if !g.Allowed(bc) {
		t.Fatalf("context %s not allowed", bc)
	}
	tid := field[string](t, b.ok("Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": bc}, ""), "targetId")
	sid := field[string](t, b.ok("Target.attachToTarget", map[string]any{"targetId": tid, "flatten": true}, ""), "sessionId")
	nav := b.ok("Page.navigate", map[string]any{"url": st.url + "/geo"}, sid)
	if e := field[string](t, json.RawMessage(strings.Replace(string(nav), "{", `{"errorText":"",`, 1)), "errorText"); e != "" {
		t.Fatalf("navigate in own context: %s", e)
	}
	if hs := st.got("/geo"); len(hs) != 1 || !hs[0].viaProxy || !pool.saw(st.url+"/geo") {
		t.Fatalf("/geo: site saw %v; pool saw it: %v", hs, pool.saw(st.url+"/geo"))
	}

	// loopback too (Chrome's implicit loopback bypass is removed)
	loop := strings.Replace(st.url, "acme.test", "127.0.0.1", 1) + "/loopback"
	b.ok("Page.navigate", map[string]any{"url": loop}, sid)
	if hs := st.got("/loopback"); len(hs) != 1 || !hs[0].viaProxy || !pool.saw(loop) {
		t.Fatalf("/loopback: site saw %v; pool saw it: %v", hs, pool.saw(loop))
	}

	// refusals
	b.refused("Target.createTarget", map[string]any{"url": st.url + "/nocontext"}, "", MsgCreateTarget)
	b.refused("Target.createBrowserContext", map[string]any{"proxyServer": "direct://"}, "", MsgProxyServer)
	b.refused("Target.createBrowserContext", map[string]any{"proxyBypassList": "*"}, "", MsgProxyServer)
	b.refused("Browser.close", nil, "", MsgBrowserClose)
	b.refused("Storage.getCookies", nil, "", MsgForeignCtx)

	// the default (shared) context's page, as Chrome itself lists it: the
	// session's getTargets does not show it
	shared := sharedPage(t, ch.base, bc)
	var targets struct {
		TargetInfos []targetInfo `json:"targetInfos"`
	}
	json.Unmarshal(b.ok("Target.getTargets", nil, ""), &targets)
	for _, ti := range targets.TargetInfos {
		if ti.BrowserContextID != bc {
			t.Errorf("getTargets lists a target outside the session's context: %+v", ti)
		}
	}
	if !strings.Contains(string(b.ok("Target.getTargets", nil, "")), tid) {
		t.Errorf("getTargets does not list the session's own page")
	}
	if ctxs := field[[]string](t, b.ok("Target.getBrowserContexts", nil, ""), "browserContextIds"); len(ctxs) != 1 || ctxs[0] != bc {
		t.Errorf("getBrowserContexts = %v: want the own context %s only", ctxs, bc)
	}
	b.refused("Target.getTargetInfo", map[string]any{"targetId": shared.TargetID}, "", MsgForeignTarget)
	b.refused("Target.attachToTarget", map[string]any{"targetId": shared.TargetID, "flatten": true}, "", MsgForeignTarget)
	b.refused("Target.activateTarget", map[string]any{"targetId": shared.TargetID}, "", MsgForeignTarget)
	b.refused("Target.closeTarget", map[string]any{"targetId": shared.TargetID}, "", MsgForeignTarget)
	b.refused("Target.createTarget", map[string]any{"url": st.url + "/shared-ctx", "browserContextId": shared.BrowserContextID}, "", MsgCreateTarget)

	// browser-level auto-attach with waitForDebuggerOnStart: Chrome attaches
	// the connection to foreign pages too; the guard hides them and the
	// daemon resumes and detaches them, so another client's new page is
	// not left paused
	b.ok("Target.setDiscoverTargets", map[string]any{"discover": true}, "")
	b.ok("Target.setAutoAttach", map[string]any{"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}, "")
	other := dial(t, browserWS(t, ch.base))
	ftid := field[string](t, other.ok("Target.createTarget", map[string]any{"url": "about:blank"}, ""), "targetId")
	fsid := field[string](t, other.ok("Target.attachToTarget", map[string]any{"targetId": ftid, "flatten": true}, ""), "sessionId")
	other.ok("Page.navigate", map[string]any{"url": "data:text/html,<title>foreign</title>"}, fsid)
	if v := other.ok("Runtime.evaluate", map[string]any{"expression": loadedTitle, "awaitPromise": true, "returnByValue": true}, fsid); !strings.Contains(string(v), `"foreign"`) {
		t.Errorf("the foreign page did not load while the session auto-attached with waitForDebuggerOnStart: %s", v)
	}
	// an own page created now is shown (and paused for this client)
	tid3 := field[string](t, b.ok("Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": bc}, ""), "targetId")
	att := b.event(func(m wireMsg) bool {
		return m.Method == "Target.attachedToTarget" && strings.Contains(string(m.Params), tid3)
	})
	b.ok("Runtime.runIfWaitingForDebugger", nil, field[string](t, att.Params, "sessionId"))
	b.ok("Browser.getVersion", nil, "") // ordered after every event above
	for len(b.events) > 0 {
		m := <-b.events
		if strings.Contains(string(m.Params), ftid) || strings.Contains(string(m.Params), shared.TargetID) || (m.SessionID != "" && m.SessionID == fsid) {
			t.Errorf("the session received an event about a foreign target: %s %s", m.Method, m.Params)
		}
	}
	// the foreign pages' session ids are never revealed; a guessed one is refused
	for _, s := range []string{fsid, "0123456789ABCDEF0123456789ABCDEF"} {
		b.refused("Runtime.evaluate", map[string]any{"expression": "fetch('" + st.url + "/fetch')"}, s, MsgForeignTarget)
	}
	b.refused("Page.navigate", map[string]any{"url": st.url + "/autoattached"}, fsid, MsgForeignTarget)

	// page-level sockets: the shared page's is refused, ours works
	ps := dial(t, pageWS(t, base, shared.TargetID))
	ps.refused("Page.navigate", map[string]any{"url": st.url + "/pagesocket"}, "", MsgForeignTarget)
	ours := dial(t, pageWS(t, base, tid))
	if v := ours.ok("Runtime.evaluate", map[string]any{"expression": "location.pathname", "returnByValue": true}, ""); !strings.Contains(string(v), `"/loopback"`) {
		t.Fatalf("evaluate on own page socket: %s", v)
	}

	// legacy (non-flattened) sessions, on a second browser connection: to a
	// shared page refused; nested commands on the own page pass
	b2 := dial(t, browserWS(t, base))
	b2.refused("Target.attachToTarget", map[string]any{"targetId": shared.TargetID, "flatten": false}, "", MsgForeignTarget)
	lsid := field[string](t, b2.ok("Target.attachToTarget", map[string]any{"targetId": tid, "flatten": false}, ""), "sessionId")
	inner, _ := json.Marshal(map[string]any{"id": 7, "method": "Page.navigate", "params": map[string]string{"url": st.url + "/legacy"}})
	b2.ok("Target.sendMessageToTarget", map[string]any{"sessionId": lsid, "message": string(inner)}, "")
	b2.event(func(m wireMsg) bool {
		return m.Method == "Target.receivedMessageFromTarget" && strings.Contains(string(m.Params), `\"id\":7`)
	})
	if hs := st.got("/legacy"); len(hs) != 1 || !hs[0].viaProxy {
		t.Fatalf("/legacy: site saw %v", hs)
	}
	inner, _ = json.Marshal(map[string]any{"id": 8, "method": "Target.createBrowserContext"})
	b2.refused("Target.sendMessageToTarget", map[string]any{"sessionId": lsid, "message": string(inner)}, "", MsgNested)
	// the second connection shares the session's contexts
	t2 := field[string](t, b2.ok("Target.createTarget", map[string]any{"url": st.url + "/second", "browserContextId": bc}, ""), "targetId")
	if t2 == "" {
		t.Fatal("no target")
	}

	// nothing reached the site directly; every refused path never reached it
	b.ok("Browser.getVersion", nil, "") // the browser is still there, and orders the checks after the work above
	for _, p := range []string{"/nocontext", "/shared-ctx", "/autoattached", "/fetch", "/pagesocket"} {
		if hs := st.got(p); len(hs) != 0 {
			t.Errorf("refused path %s reached the site: %v", p, hs)
		}
	}
	for _, h := range st.all() {
		if !h.viaProxy {
			t.Errorf("direct request to the site: %s", h.path)
		}
	}

	// at session end the daemon disposes the session's contexts
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.Dispose(ctx, ch.base); err != nil {
		t.Fatal(err)
	}
	if len(g.Contexts()) != 0 {
		t.Fatalf("contexts after Dispose: %v", g.Contexts())
	}
	left := b.ok("Target.getBrowserContexts", nil, "")
	if strings.Contains(string(left), bc) {
		t.Fatalf("context %s still exists after Dispose: %s", bc, left)
	}
	b.refused("Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": bc}, "", MsgCreateTarget)
}

// loadedTitle evaluates to the page's title once it has loaded.
const loadedTitle = `new Promise(r => document.readyState === "complete" && document.title ? r(document.title) : addEventListener("load", () => r(document.title)))`

// sharedPage returns a page outside context own, asking Chrome directly.
func sharedPage(t *testing.T, chromeBase, own string) targetInfo {
	t.Helper()
	d := dial(t, browserWS(t, chromeBase))
	var targets struct {
		TargetInfos []targetInfo `json:"targetInfos"`
	}
	json.Unmarshal(d.ok("Target.getTargets", nil, ""), &targets)
	for _, ti := range targets.TargetInfos {
		if ti.Type == "page" && ti.BrowserContextID != own {
			return ti
		}
	}
	t.Fatalf("no page outside context %s among %+v", own, targets.TargetInfos)
	return targetInfo{}
}

func pageWS(t *testing.T, base, targetID string) string {
	t.Helper()
	resp, err := http.Get(base + "/json/list")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l []struct {
		ID string `json:"id"`
		WS string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	for _, e := range l {
		if e.ID == targetID && e.WS != "" {
			return e.WS
		}
	}
	t.Fatalf("target %s not in /json/list", targetID)
	return ""
}

// TestGeoSessionFailsClosed: when the pool's forwarder is gone, the page of
// the session's context fails to load and the site receives nothing: Chrome
// never falls back to a direct connection.
func TestGeoSessionFailsClosed(t *testing.T) {
	t.Parallel()
	ch := startChrome(t)
	st := newSite(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	g := NewGuard(Options{ProxyServer: "http://" + dead, BypassList: "<-loopback>"})
	base := serveProxy(t, ch.base, func(*cdpproxy.Session) []cdpproxy.Interceptor {
		return []cdpproxy.Interceptor{g.Interceptor()}
	})
	b := dial(t, browserWS(t, base))
	bc := field[string](t, b.ok("Target.createBrowserContext", nil, ""), "browserContextId")
	tid := field[string](t, b.ok("Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": bc}, ""), "targetId")
	sid := field[string](t, b.ok("Target.attachToTarget", map[string]any{"targetId": tid, "flatten": true}, ""), "sessionId")
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	json.Unmarshal(b.ok("Page.navigate", map[string]any{"url": st.url + "/x"}, sid), &nav)
	if !strings.Contains(nav.ErrorText, "PROXY") {
		t.Fatalf("navigate with the forwarder down: errorText %q, want a proxy error", nav.ErrorText)
	}
	if hs := st.all(); len(hs) != 0 {
		t.Fatalf("the site was reached with the forwarder down: %v", hs)
	}
}

// TestSharedKeepsBrowser: a non-geo attach-mode session cannot close the
// shared Chrome.
func TestSharedKeepsBrowser(t *testing.T) {
	t.Parallel()
	ch := startChrome(t)
	base := serveProxy(t, ch.base, func(*cdpproxy.Session) []cdpproxy.Interceptor {
		return []cdpproxy.Interceptor{NewShared(Options{})}
	})
	b := dial(t, browserWS(t, base))
	b.refused("Browser.close", nil, "", MsgBrowserClose)
	b.refused("Browser.crash", nil, "", MsgBrowserClose)
	if v := b.ok("Browser.getVersion", nil, ""); !strings.Contains(string(v), "product") {
		t.Fatalf("Browser.getVersion: %s", v)
	}
	b.ok("Target.createTarget", map[string]any{"url": "about:blank"}, "")
}
