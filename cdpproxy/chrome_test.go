package cdpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
	"github.com/gobwas/ws"
	"github.com/mafredri/cdp"
	"github.com/mafredri/cdp/devtool"
	"github.com/mafredri/cdp/protocol/page"
	"github.com/mafredri/cdp/protocol/runtime"
	"github.com/mafredri/cdp/rpcc"
	"github.com/prometheus/client_golang/prometheus"
)

// testSite serves two small pages; reach it as http://acme.test:<port>/
// (Chromium maps *.test to 127.0.0.1).
func testSite(t testing.TB) string {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><html><head><title>Home</title></head><body><h1 id="h">hello</h1><a href="/two">two</a></body></html>`)
	})
	mux.HandleFunc("/two", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><html><head><title>Two</title></head><body>second</body></html>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	return "http://acme.test:" + port
}

// originRecorder remembers, per command, what the proxy knew of the
// command's CDP session.
type originRecorder struct {
	mu   sync.Mutex
	seen map[string]TargetInfo // method -> target at that time
	miss []string
}

func (o *originRecorder) factory() Factory {
	return func(*Session) []Interceptor {
		return []Interceptor{&funcInterceptor{cmd: func(ctx context.Context, c Conn, m *Message) (Verdict, error) {
			ti, ok := c.Target(m.SessionID)
			o.mu.Lock()
			defer o.mu.Unlock()
			if !ok {
				o.miss = append(o.miss, m.Method+"@"+m.SessionID)
			}
			if o.seen == nil {
				o.seen = map[string]TargetInfo{}
			}
			o.seen[m.Method] = ti
			return Verdict{}, nil
		}}}
	}
}

func (o *originRecorder) get(method string) TargetInfo {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[method]
}

func TestChromeDiscovery(t *testing.T) {
	t.Parallel()
	ch := sharedChrome(t)
	site := testSite(t)
	h := newHarness(t, ch.base, nil, Options{})
	proxyHost := strings.TrimPrefix(h.srv.URL, "http://")
	prefix := proxyHost + "/session/" + h.sess.Token + "/devtools/"
	chromeHost := strings.TrimPrefix(ch.base, "http://")

	read := func(method, path string) (int, []byte) {
		req, _ := http.NewRequest(method, h.base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if bytes.Contains(b, []byte(chromeHost)) {
			t.Errorf("%s %s leaks the browser's address: %s", method, path, b)
		}
		return resp.StatusCode, b
	}
	for _, p := range []string{"/json/version", "/json/version/"} {
		st, b := read("GET", p)
		var v map[string]string
		if st != 200 || json.Unmarshal(b, &v) != nil {
			t.Fatalf("%s: %d %s", p, st, b)
		}
		if v["webSocketDebuggerUrl"] != "ws://"+prefix+strings.TrimPrefix(ch.wsPath, "/devtools/") || v["Browser"] == "" {
			t.Fatalf("%s: %v", p, v)
		}
	}
	st, b := read("PUT", "/json/new?"+site+"/two")
	var nt map[string]string
	if st != 200 || json.Unmarshal(b, &nt) != nil {
		t.Fatalf("/json/new: %d %s", st, b)
	}
	if nt["webSocketDebuggerUrl"] != "ws://"+prefix+"page/"+nt["id"] || !strings.Contains(nt["devtoolsFrontendUrl"], "ws="+prefix+"page/"+nt["id"]) {
		t.Fatalf("/json/new urls not rewritten: %v", nt)
	}
	if st, _ := read("GET", "/json/new?about:blank"); st != http.StatusMethodNotAllowed {
		t.Fatalf("GET /json/new: Chrome's 405 expected, got %d", st)
	}
	for _, p := range []string{"/json", "/json/list", "/json/list/"} {
		st, b := read("GET", p)
		var l []map[string]string
		if st != 200 || json.Unmarshal(b, &l) != nil {
			t.Fatalf("%s: %d %s", p, st, b)
		}
		found := false
		for _, e := range l {
			if e["id"] == nt["id"] {
				found = e["webSocketDebuggerUrl"] == nt["webSocketDebuggerUrl"]
			}
		}
		if !found {
			t.Fatalf("%s: new target missing or not rewritten: %s", p, b)
		}
	}
	if st, b := read("GET", "/json/protocol"); st != 200 || !bytes.Contains(b, []byte(`"domains"`)) {
		t.Fatalf("/json/protocol: %d %.200s", st, b)
	}
	// the rewritten page URL is usable
	c := dialWS(t, nt["webSocketDebuggerUrl"], nil)
	for i := 1; ; i++ {
		r := c.call(t, i, "Runtime.evaluate", `{"expression":"location.href"}`, "")
		if strings.Contains(string(r["result"]), site+"/two") {
			break
		}
		if i == 200 {
			t.Fatalf("evaluate on rewritten page URL: %s", r["result"])
		}
		time.Sleep(20 * time.Millisecond) // page load in the external browser
	}
	if st, b := read("GET", "/json/activate/"+nt["id"]); st != 200 {
		t.Fatalf("/json/activate: %d %s", st, b)
	}
	if st, b := read("GET", "/json/close/"+nt["id"]); st != 200 {
		t.Fatalf("/json/close: %d %s", st, b)
	}
	if code, _ := c.readClose(t); code == 0 {
		t.Log("page socket closed without a status code")
	}
	if st, _ := read("GET", "/json/unknown"); st != 404 {
		t.Fatalf("/json/unknown: %d", st)
	}
}

func TestChromeMafredriCDP(t *testing.T) {
	t.Parallel()
	ch := sharedChrome(t)
	site := testSite(t)
	var rec originRecorder
	h := newHarness(t, ch.base, rec.factory(), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// browser-level socket
	bconn, err := rpcc.DialContext(ctx, h.browserWS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer bconn.Close()
	bv, err := cdp.NewClient(bconn).Browser.GetVersion(ctx)
	if err != nil || !strings.Contains(bv.Product, "Chrome") {
		t.Fatalf("Browser.getVersion: %v %+v", err, bv)
	}

	dt := devtool.New(h.base)
	open := func(u string) (*devtool.Target, *cdp.Client, *rpcc.Conn) {
		pt, err := dt.CreateURL(ctx, u)
		if err != nil {
			t.Fatalf("devtool create: %v", err)
		}
		if !strings.Contains(pt.WebSocketDebuggerURL, "/session/"+h.sess.Token+"/") {
			t.Fatalf("target ws url not rewritten: %s", pt.WebSocketDebuggerURL)
		}
		conn, err := rpcc.DialContext(ctx, pt.WebSocketDebuggerURL)
		if err != nil {
			t.Fatal(err)
		}
		return pt, cdp.NewClient(conn), conn
	}
	pt, c, conn := open("about:blank")
	defer conn.Close()
	if err := c.Page.Enable(ctx); err != nil {
		t.Fatal(err)
	}
	loaded, err := c.Page.LoadEventFired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Page.Navigate(ctx, page.NewNavigateArgs(site+"/")); err != nil {
		t.Fatal(err)
	}
	if _, err := loaded.Recv(); err != nil {
		t.Fatal(err)
	}
	loaded.Close()
	ev, err := c.Runtime.Evaluate(ctx, runtime.NewEvaluateArgs(`document.title + ":" + document.getElementById("h").textContent`))
	if err != nil || string(ev.Result.Value) != `"Home:hello"` {
		t.Fatalf("evaluate: %v %s", err, ev.Result.Value)
	}
	if ti := rec.get("Runtime.evaluate"); ti.Origin != site || ti.TargetID != pt.ID {
		t.Fatalf("page root not tracked through navigation: %+v", ti)
	}
	shot, err := c.Page.CaptureScreenshot(ctx, page.NewCaptureScreenshotArgs().SetFormat("png"))
	if err != nil || !bytes.HasPrefix(shot.Data, []byte("\x89PNG")) {
		t.Fatalf("screenshot: %v (%d bytes)", err, len(shot.Data))
	}
	pt2, c2, conn2 := open(site + "/two")
	defer conn2.Close()
	var title string
	for i := 0; i < 100 && title != "Two"; i++ {
		ev, err := c2.Runtime.Evaluate(ctx, runtime.NewEvaluateArgs(`document.title`))
		if err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(ev.Result.Value, &title)
		if title != "Two" {
			time.Sleep(20 * time.Millisecond) // page load in the external browser
		}
	}
	if title != "Two" {
		t.Fatalf("second page title %q", title)
	}
	for _, p := range []*devtool.Target{pt, pt2} {
		if err := dt.Close(ctx, p); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
}

func TestChromedpRemoteAllocator(t *testing.T) {
	t.Parallel()
	ch := sharedChrome(t)
	site := testSite(t)
	var rec originRecorder
	h := newHarness(t, ch.base, rec.factory(), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	actx, acancel := remote.NewAllocator(ctx, h.browserWS(t))
	defer acancel()
	ctx1, cancel1 := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx1, chromedp.Navigate(site+"/")); err != nil {
		t.Fatal(err)
	}
	title, err := chromedp.Run(ctx1, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	sum, err := chromedp.Run(ctx1, chromedp.Evaluate[int](`1+2`))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx1, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if title != "Home" || sum != 3 || !bytes.HasPrefix(shot, []byte("\x89PNG")) {
		t.Fatalf("title %q sum %d shot %d bytes", title, sum, len(shot))
	}
	// flattened session tracked: the evaluate ran on a page session whose
	// origin is the site
	if ti := rec.get("Runtime.evaluate"); ti.Type != "page" || ti.Origin != site || ti.SessionID == "" {
		t.Fatalf("flattened session not tracked: %+v", ti)
	}
	ctx2, cancel2 := chromedp.NewContext(ctx1)
	if err := chromedp.Do(ctx2, chromedp.Navigate(site+"/two")); err != nil {
		t.Fatal(err)
	}
	title2, err := chromedp.Run(ctx2, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	if title2 != "Two" {
		t.Fatalf("second tab title %q", title2)
	}
	cancel2()
	cancel1()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, m := range rec.miss {
		if !strings.HasSuffix(m, "@") { // commands on an unknown flattened session
			t.Errorf("command on untracked session: %s", m)
		}
	}
}

func TestChromeRawPageSocket(t *testing.T) {
	t.Parallel()
	ch := sharedChrome(t)
	site := testSite(t)
	var rec originRecorder
	h := newHarness(t, ch.base, rec.factory(), Options{})
	// as chrome-remote-interface: PUT /json/new, then the page's own socket
	req, _ := http.NewRequest("PUT", h.base+"/json/new?about:blank", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var nt map[string]string
	json.NewDecoder(resp.Body).Decode(&nt)
	resp.Body.Close()
	c := dialWS(t, nt["webSocketDebuggerUrl"], nil)
	c.call(t, 1, "Page.enable", "", "")
	c.call(t, 2, "Page.navigate", fmt.Sprintf(`{"url":%q}`, site+"/"), "")
	for {
		var m struct{ Method string }
		json.Unmarshal([]byte(c.readText(t)), &m)
		if m.Method == "Page.loadEventFired" {
			break
		}
	}
	r := c.call(t, 3, "Runtime.evaluate", `{"expression":"document.title","returnByValue":true}`, "")
	if !strings.Contains(string(r["result"]), `"value":"Home"`) {
		t.Fatalf("evaluate: %s", r["result"])
	}
	if ti := rec.get("Runtime.evaluate"); ti.Origin != site || ti.TargetID != nt["id"] {
		t.Fatalf("root page not tracked: %+v", ti)
	}
	// ping reaches Chrome and its pong comes back
	c.writeFrame(ws.NewPingFrame([]byte("p1")))
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := c.read()
		if err != nil {
			t.Fatalf("waiting for pong: %v", err)
		}
		if f.Header.OpCode == ws.OpPong {
			if string(f.Payload) != "p1" {
				t.Fatalf("pong payload %q", f.Payload)
			}
			break
		}
	}
	http.Get(h.base + "/json/close/" + nt["id"])
}

func TestChromeGuardsAndLifecycle(t *testing.T) {
	t.Parallel()
	ch := sharedChrome(t)
	h := newHarness(t, ch.base, nil, Options{})
	u := h.browserWS(t)
	req, _ := http.NewRequest("GET", h.base+"/json/version", nil)
	req.Header.Set("Origin", "https://evil.test")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("origin: %v %v", err, resp)
	}
	req, _ = http.NewRequest("GET", h.base+"/json/list", nil)
	req.Host = "rebind.evil.test"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
		t.Fatalf("host: %v %v", err, resp)
	}
	if _, err := tryDialWS(u, http.Header{"Origin": {"https://evil.test"}}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("ws origin: %v", err)
	}
	if _, err := tryDialWS(strings.Replace(u, h.sess.Token, "bogus", 1), nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("ws token: %v", err)
	}
	c1, c2 := dialWS(t, u, nil), dialWS(t, u, nil)
	c1.call(t, 1, "Browser.getVersion", "", "")
	c2.call(t, 1, "Browser.getVersion", "", "")
	other := h.addSession(ch.base, nil)
	c3 := dialWS(t, strings.Replace(u, h.sess.Token, other.Token, 1), nil)
	h.p.Unregister(h.sess.Token)
	for _, c := range []*wsClient{c1, c2} {
		if code, _ := c.readClose(t); code != ws.StatusGoingAway {
			t.Fatalf("unregister: close code %d", code)
		}
	}
	c3.call(t, 2, "Browser.getVersion", "", "") // the other session never noticed
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go h.p.Shutdown(ctx)
	if code, _ := c3.readClose(t); code != ws.StatusGoingAway {
		t.Fatalf("shutdown: close code %d", code)
	}
}

// Puppeteer relies on Target.attachedToTarget arriving before the response
// that created or attached the target; the proxy must keep Chrome's order and
// know the new session by the time the response passes.
func TestChromeAutoAttachOrderAsPuppeteer(t *testing.T) {
	t.Parallel()
	ch := sharedChrome(t)
	site := testSite(t)
	known := make(chan bool, 1)
	var newSID atomic.Value
	ic := func() Interceptor {
		var lastSID string // per-connection interceptor state
		return &funcInterceptor{ev: func(ctx context.Context, c Conn, m *Message) (Verdict, error) {
			if m.Method == "Target.attachedToTarget" {
				var e struct {
					Params struct {
						SessionID string `json:"sessionId"`
					}
				}
				json.Unmarshal(m.Raw, &e)
				lastSID = e.Params.SessionID
			}
			if m.ReplyTo == "Target.createTarget" {
				ti, ok := c.Target(lastSID)
				known <- ok && ti.Type == "page"
			}
			return Verdict{}, nil
		}}
	}
	h := newHarness(t, ch.base, factory(ic), Options{})
	c := dialWS(t, h.browserWS(t), nil)
	c.call(t, 1, "Target.setDiscoverTargets", `{"discover":true}`, "")
	c.call(t, 2, "Target.setAutoAttach", `{"autoAttach":true,"waitForDebuggerOnStart":true,"flatten":true}`, "")
	c.send(fmt.Sprintf(`{"id":3,"method":"Target.createTarget","params":{"url":%q}}`, site+"/"))
	var targetID string
	attached := false
	for {
		var m struct {
			ID     int
			Method string
			Params struct {
				SessionID  string `json:"sessionId"`
				TargetInfo struct {
					TargetID string `json:"targetId"`
					Type     string `json:"type"`
				} `json:"targetInfo"`
			}
			Result struct {
				TargetID string `json:"targetId"`
			}
		}
		json.Unmarshal([]byte(c.readText(t)), &m)
		if m.Method == "Target.attachedToTarget" && m.Params.TargetInfo.Type == "page" {
			attached = true
			targetID = m.Params.TargetInfo.TargetID
			newSID.Store(m.Params.SessionID)
		}
		if m.ID == 3 {
			if !attached || m.Result.TargetID != targetID {
				t.Fatalf("createTarget response before its attachedToTarget (attached=%v)", attached)
			}
			break
		}
	}
	if !<-known {
		t.Fatal("the new session was not tracked when the createTarget response passed")
	}
	sid, _ := newSID.Load().(string)
	c.call(t, 4, "Runtime.runIfWaitingForDebugger", "", sid)
	c.call(t, 5, "Target.closeTarget", fmt.Sprintf(`{"targetId":%q}`, targetID), "")
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	fp := newFakePeer(t, nil)
	h := newHarness(t, fp.srv.URL, nil, Options{Metrics: m})
	h.addSession(fp.srv.URL, nil)
	c := dialWS(t, h.browserWS(t), nil)
	// overheadEvery+1 messages each way: the overhead of the first and the
	// last is timed
	const n = overheadEvery + 1
	for i := 1; i <= n; i++ {
		c.call(t, i, "A.b", "", "")
	}
	gather := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, mm := range mf.GetMetric() {
				key := mf.GetName()
				for _, l := range mm.GetLabel() {
					key += "{" + l.GetValue() + "}"
				}
				switch {
				case mm.Counter != nil:
					got[key] = mm.Counter.GetValue()
				case mm.Gauge != nil:
					got[key] = mm.Gauge.GetValue()
				case mm.Histogram != nil:
					got[key] = float64(mm.Histogram.GetSampleCount())
				}
			}
		}
		return got
	}
	// a message is counted, then its overhead observed, just after it was
	// written, so the last ones may still be on their way to the metrics:
	// the last message's observation comes last in each direction
	waitFor(t, func() bool {
		g := gather()
		return g["cdpvault_cdp_proxy_overhead_seconds{to_browser}"] >= 2 && g["cdpvault_cdp_proxy_overhead_seconds{to_client}"] >= 2
	})
	got := gather()
	want := map[string]float64{
		"cdpvault_cdp_messages_total{to_browser}":         n,
		"cdpvault_cdp_messages_total{to_client}":          n,
		"cdpvault_cdp_sessions_active":                    2,
		"cdpvault_cdp_connections_active":                 1,
		"cdpvault_cdp_proxy_overhead_seconds{to_browser}": 2,
		"cdpvault_cdp_proxy_overhead_seconds{to_client}":  2,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	var nilMetrics *Metrics
	nilMetrics.message(true, time.Now())
	nilMetrics.message(false, time.Time{})
	nilMetrics.sessionDelta(1)
}
