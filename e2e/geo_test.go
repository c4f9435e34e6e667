package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/gorilla/websocket"
)

// Geo routing through the daemon (issue 6): real Chromium, real goproxy
// upstreams on loopback that require Proxy-Authorization and stamp what they
// carried, passwords only in the vault.

// stampUpstream is a goproxy-based upstream proxy. It requires Basic
// Proxy-Authorization user:pass, resolves *.test itself (as a real exit
// would, mapping it to loopback), records every request it carried and
// stamps plain-HTTP responses with X-Upstream: <name>.
type stampUpstream struct {
	name     string
	srv      *httptest.Server
	wantAuth string

	mu      sync.Mutex
	carried []string // "CONNECT host:port" or "GET http://host:port/path?query"
	badAuth int
}

// upstreamDial is the upstream's own name resolution: *.test and loopback
// only, so nothing ever leaves the machine (Chromium's background requests
// end here).
func upstreamDial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasSuffix(host, ".test"), strings.HasSuffix(host, ".invalid"):
		// .invalid never resolves anywhere else: a page on such a name loads
		// only if the upstream did the name resolution.
		addr = net.JoinHostPort("127.0.0.1", port)
	case host == "127.0.0.1" || host == "localhost":
	default:
		return nil, errors.New("test upstream: only *.test and loopback are reachable")
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func newStampUpstream(t testing.TB, name, user, pass string) *stampUpstream {
	t.Helper()
	u := &stampUpstream{name: name, wantAuth: "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = log.New(io.Discard, "", 0)
	gp.Tr = &http.Transport{Proxy: nil, DialContext: upstreamDial}
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = func(req *http.Request, network, addr string) (net.Conn, error) {
		return upstreamDial(req.Context(), network, addr)
	}
	gp.OnRequest().HandleConnectFunc(func(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		if ctx.Req.Header.Get("Proxy-Authorization") != u.wantAuth {
			u.mu.Lock()
			u.badAuth++
			u.mu.Unlock()
			ctx.Resp = goproxy.NewResponse(ctx.Req, "text/plain", http.StatusProxyAuthRequired, "auth required by "+name)
			return goproxy.RejectConnect, host
		}
		u.record("CONNECT " + host)
		return goproxy.OkConnect, host
	})
	gp.OnRequest().DoFunc(func(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		if req.Header.Get("Proxy-Authorization") != u.wantAuth {
			u.mu.Lock()
			u.badAuth++
			u.mu.Unlock()
			return req, goproxy.NewResponse(req, "text/plain", http.StatusProxyAuthRequired, "auth required by "+name)
		}
		u.record(req.Method + " " + req.URL.String())
		return req, nil
	})
	gp.OnResponse().DoFunc(func(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
		if resp != nil {
			resp.Header.Set("X-Upstream", name)
		}
		return resp
	})
	u.srv = httptest.NewServer(gp)
	t.Cleanup(u.srv.Close)
	return u
}

func (u *stampUpstream) record(s string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.carried = append(u.carried, s)
}

// Carried returns the requests that contain sub.
func (u *stampUpstream) Carried(sub string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, c := range u.carried {
		if strings.Contains(c, sub) {
			out = append(out, c)
		}
	}
	return out
}

func (u *stampUpstream) BadAuth() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.badAuth
}

// deadProxyURL is http:// on a loopback port nobody listens on.
func deadProxyURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// tlsSite is an HTTPS site (reached through CONNECT tunnels) that records
// the query string of each request.
type tlsSite struct {
	srv     *httptest.Server
	Port    string
	mu      sync.Mutex
	queries []string
}

func newTLSSite(t testing.TB) *tlsSite {
	t.Helper()
	s := &tlsSite{}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.queries = append(s.queries, r.URL.Path+"?"+r.URL.RawQuery)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><html><head><title>secure</title></head><body>secure page</body></html>`)
	}))
	t.Cleanup(s.srv.Close)
	_, s.Port, _ = net.SplitHostPort(s.srv.Listener.Addr().String())
	return s
}

func (s *tlsSite) Received(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.queries {
		if strings.Contains(q, sub) {
			n++
		}
	}
	return n
}

// recorder keeps every byte a client read from the daemon.
type recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) {
	r.mu.Lock()
	r.buf.Write(p)
	r.mu.Unlock()
}

func (r *recorder) Bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.buf.Bytes()...)
}

type recordingConn struct {
	net.Conn
	rec *recorder
}

func (c recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.rec.Write(p[:n])
	return n, err
}

// DialRawRecorded is DialRaw whose socket records every byte received
// (uncompressed frames: the dialer offers no permessage-deflate).
func DialRawRecorded(t testing.TB, wsURL string, rec *recorder) *RawCDP {
	t.Helper()
	dialer := websocket.Dialer{
		HandshakeTimeout: waitTimeout,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return recordingConn{Conn: c, rec: rec}, nil
		},
	}
	c, resp, err := dialer.Dial(wsURL, nil)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial %s: %v %s", wsURL, err, status)
	}
	c.SetReadLimit(512 << 20)
	t.Cleanup(func() { c.Close() })
	return &RawCDP{t: t, c: c, nextID: 1000}
}

// geoSessionOpts is the body of POST /api/v1/sessions with a geo pool.
type geoSessionOpts struct {
	Secrets []string `json:"secrets"`
	Geo     string   `json:"geo,omitempty"`
}

// newGeoSession creates a session on pool ("" = none) and deletes it at the
// end of the test.
func newGeoSession(t *testing.T, d *Daemon, token, pool string) Session {
	t.Helper()
	code, body := d.API(t, http.MethodPost, "/api/v1/sessions", token, geoSessionOpts{Secrets: []string{}, Geo: pool})
	if code != http.StatusCreated {
		t.Fatalf("POST /api/v1/sessions geo=%q = %d %s, want 201", pool, code, body)
	}
	var s Session
	if err := json.Unmarshal(body, &s); err != nil || s.ID == "" || s.WSURL == "" || s.CDPURL == "" {
		t.Fatalf("POST /api/v1/sessions body %s: want id, cdp_url, ws_url (%v)", body, err)
	}
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.API(t, http.MethodDelete, "/api/v1/sessions/"+s.ID, token, nil)
		}
	})
	return s
}

// navigateResult is Page.navigate's answer plus the document's status.
type navigateResult struct {
	ErrorText string
	Status    int    // response status of the navigation (0: none)
	Text      string // document.body.innerText after the load
}

// navigateTry navigates sessionID to u and waits for the load (of the page
// or of Chrome's error page); it does not fail on a navigation error.
func navigateTry(r *RawCDP, sessionID, u string) navigateResult {
	r.t.Helper()
	r.MustCall(sessionID, "Page.enable", nil, nil)
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	r.MustCall(sessionID, "Page.navigate", map[string]any{"url": u}, &nav)
	res := navigateResult{ErrorText: nav.ErrorText}
	if nav.ErrorText == "" {
		r.WaitEvent(sessionID, "Page.loadEventFired")
		var st int
		json.Unmarshal(r.Evaluate(sessionID, `(performance.getEntriesByType('navigation')[0] || {}).responseStatus || 0`), &st)
		res.Status = st
	}
	json.Unmarshal(r.Evaluate(sessionID, `document.body ? document.body.innerText : ''`), &res.Text)
	return res
}

// rtcProbe gathers a page's WebRTC ICE candidates (bounded to 3 s).
const rtcProbe = `(async () => {
  const pc = new RTCPeerConnection({iceServers: []});
  pc.createDataChannel('x');
  const cands = [];
  const done = new Promise(res => {
    pc.onicecandidate = e => { if (e.candidate) cands.push(e.candidate.candidate); else res(); };
    setTimeout(res, 3000);
  });
  await pc.setLocalDescription(await pc.createOffer());
  await done;
  pc.close();
  return cands;
})()`

func rtcCandidates(r *RawCDP, sessionID string) []string {
	r.t.Helper()
	var c []string
	if raw := r.Evaluate(sessionID, rtcProbe); json.Unmarshal(raw, &c) != nil {
		r.t.Fatalf("WebRTC probe returned %s", raw)
	}
	return c
}

// geoMetric returns the value of metric for pool/upstream index, -1 if absent.
func geoMetric(body []byte, metric, pool string, idx int) float64 {
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric+"{") || !strings.Contains(line, `pool="`+pool+`"`) ||
			!strings.Contains(line, `upstream="`+strconv.Itoa(idx)+`"`) {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			return v
		}
	}
	return -1
}

// procsHolding lists the env's browser processes whose command line or
// environment holds value in any common form.
func procsHolding(e *Env, value []byte) []string {
	var out []string
	for _, pid := range e.browserPids() {
		for _, f := range []string{"cmdline", "environ"} {
			b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), f))
			if hits := bytesHits(b, value); len(hits) > 0 {
				out = append(out, fmt.Sprintf("pid %d %s: %v", pid, f, hits))
			}
		}
	}
	return out
}

// TestGeoRouting drives a geo session, an all-down pool, a direct session and
// an unknown pool through one daemon, then checks the daemon's own output.
func TestGeoRouting(t *testing.T) {
	t.Parallel()
	site := NewSite(t)
	secure := newTLSSite(t)
	// Distinctive passwords with characters that change under every encoding.
	pwLive := []byte("Geo-pw<2>&\"x " + randomHex(8) + " ß")
	pwDead := []byte("Geo-pw-dead-" + randomHex(8))
	pwXX := []byte("Geo-pw-xx-" + randomHex(8))
	passwords := map[string][]byte{"proxy_de_2": pwLive, "proxy_de_1": pwDead, "proxy_xx_1": pwXX}

	live := newStampUpstream(t, "second", "geo-user-2", string(pwLive))
	deadDE, deadXX1, deadXX2 := deadProxyURL(t), deadProxyURL(t), deadProxyURL(t)

	env := NewEnv(t, "debug")
	env.Tenant("ops")
	for name, v := range passwords {
		env.SetSecret("ops", name, v)
	}
	token := env.Tenant("acme")
	cfg := fmt.Sprintf(`log: {level: debug, format: json}
chrome:
  args: ["--host-resolver-rules=MAP *.test 127.0.0.1", "--ignore-certificate-errors"]
geo:
  credentials_tenant: ops
  pools:
    de:
      timezone: Europe/Berlin
      locale: de-DE
      upstreams:
        - {url: %q, username: geo-user-1, password_secret: proxy_de_1}
        - {url: %q, username: geo-user-2, password_secret: proxy_de_2}
    xx:
      timezone: America/New_York
      locale: en-US
      upstreams:
        - {url: %q, username: geo-user-x, password_secret: proxy_xx_1}
        - {url: %q, username: geo-user-x, password_secret: proxy_xx_1}
`, deadDE, live.srv.URL, deadXX1, deadXX2)
	if err := os.WriteFile(env.Config, []byte(cfg), 0o600); err != nil {
		t.Fatalf("write config: %v", err)
	}
	d := env.Start()
	// The page shows the live upstream's password: proxy credentials are in
	// every session's scrub scope, so the agent must still never read it.
	site.SetEchoValues(pwLive)

	t.Run("group", func(t *testing.T) {
		t.Run("pool-de", func(t *testing.T) {
			t.Parallel()
			testGeoPoolDE(t, d, env, token, site, secure, live, passwords)
		})
		t.Run("pool-all-down", func(t *testing.T) {
			t.Parallel()
			testGeoPoolAllDown(t, d, token, site, secure, live, []string{deadXX1, deadXX2}, passwords)
		})
		t.Run("direct", func(t *testing.T) {
			t.Parallel()
			s := newGeoSession(t, d, token, "")
			r := DialRaw(t, s.WSURL)
			_, sid := r.NewPageSession("about:blank")
			r.Navigate(sid, site.URL("acme", "/blank?route=direct"))
			n := 0
			for _, rq := range site.Received("acme.test", "/blank") {
				if rq.RawQuery == "route=direct" {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("the site saw %d requests of the direct session's navigation, want 1", n)
			}
			if c := live.Carried("route=direct"); len(c) > 0 {
				t.Errorf("a session without geo went through an upstream: %v", c)
			}
			var stamp string
			json.Unmarshal(r.Evaluate(sid, `fetch(location.href + '&probe=1').then(r => r.headers.get('X-Upstream') || '')`), &stamp)
			if stamp != "" {
				t.Errorf("a session without geo got a response stamped by upstream %q", stamp)
			}
			// Controls for the geo checks: without a pool the page has WebRTC
			// candidates, and a .invalid name does not resolve.
			if c := rtcCandidates(r, sid); len(c) == 0 {
				t.Errorf("a direct session gathered no WebRTC candidates; the geo session's WebRTC check would be vacuous")
			}
			if res := navigateTry(r, sid, "http://acme.invalid:"+site.Port+"/blank?route=direct-dns"); res.ErrorText == "" {
				t.Errorf("acme.invalid resolved in a direct session (%+v); the geo session's upstream DNS check would be vacuous", res)
			}
			r.Navigate(sid, "https://acme.test:"+secure.Port+"/?route=direct-tls")
			if n := secure.Received("route=direct-tls"); n != 1 {
				t.Errorf("the TLS site saw %d direct https navigations, want 1", n)
			}
		})
		t.Run("agent-supplied-proxy", func(t *testing.T) {
			t.Parallel()
			testGeoAgentProxy(t, d, token, site, live)
		})
		t.Run("unknown-pool", func(t *testing.T) {
			t.Parallel()
			code, body := d.API(t, http.MethodPost, "/api/v1/sessions", token, geoSessionOpts{Secrets: []string{}, Geo: "nowhere"})
			if code < 400 || code > 499 {
				t.Fatalf("POST /api/v1/sessions geo=nowhere = %d %s, want a 4xx", code, body)
			}
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Errorf("unknown pool error body %s: want {\"error\":{\"code\",\"message\"}} (%v)", body, err)
			}
			if !regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`).MatchString(e.Error.Code) {
				t.Errorf("error code %q is not snake_case", e.Error.Code)
			}
		})
	})

	// The daemon's own output after all of it: log at debug level, metrics,
	// API answers.
	_, sessions := d.API(t, http.MethodGet, "/api/v1/sessions", token, nil)
	sources := map[string][]byte{"daemon log (debug)": d.Log(), "/metrics": d.Metrics(), "GET /api/v1/sessions": sessions}
	for src, data := range sources {
		for name, v := range passwords {
			if hits := bytesHits(data, v); len(hits) > 0 {
				t.Errorf("%s holds the upstream password %s: %v", src, name, hits)
			}
		}
	}
	if live.BadAuth() != 0 {
		t.Errorf("the live upstream refused %d requests for bad Proxy-Authorization", live.BadAuth())
	}
}

func testGeoPoolDE(t *testing.T, d *Daemon, env *Env, token string, site *Site, secure *tlsSite, live *stampUpstream, passwords map[string][]byte) {
	s := newGeoSession(t, d, token, "de")
	rec := &recorder{}
	r := DialRawRecorded(t, s.WSURL, rec)
	_, sid := r.NewPageSession("about:blank")
	r.MustCall(sid, "Runtime.enable", nil, nil)
	r.MustCall(sid, "Network.enable", nil, nil)

	// Plain HTTP: absolute-URI requests through the forwarder.
	res := navigateTry(r, sid, site.URL("acme", "/blank?route=geo"))
	if res.ErrorText != "" || res.Status != 200 || res.Text != "blank" {
		t.Fatalf("geo session: navigation to the site: %+v, want status 200 and the blank page", res)
	}
	if c := live.Carried("/blank?route=geo"); len(c) != 1 {
		t.Errorf("the live upstream carried %v for the navigation, want exactly one request", c)
	}
	var stamp string
	json.Unmarshal(r.Evaluate(sid, `fetch(location.href + '&probe=1').then(r => r.headers.get('X-Upstream') || '')`), &stamp)
	if stamp != live.name {
		t.Errorf("a same-origin fetch in the geo page came back stamped %q, want %q", stamp, live.name)
	}
	var recs []Recorded
	for _, rq := range site.Received("acme.test", "/blank") {
		if rq.RawQuery == "route=geo" || rq.RawQuery == "route=geo&probe=1" {
			recs = append(recs, rq)
		}
	}
	if len(recs) != 2 {
		t.Fatalf("the site saw %d geo requests, want 2 (navigation and fetch)", len(recs))
	}
	for _, rq := range recs {
		if al := rq.Header.Get("Accept-Language"); !strings.HasPrefix(al, "de-DE") {
			t.Errorf("the site saw Accept-Language %q on %s?%s, want de-DE first", al, rq.Path, rq.RawQuery)
		}
		for k := range rq.Header {
			if strings.HasPrefix(strings.ToLower(k), "proxy-") {
				t.Errorf("the site received the proxy header %s", k)
			}
		}
	}

	// Names are resolved by the upstream: .invalid resolves nowhere else.
	res = navigateTry(r, sid, "http://acme.invalid:"+site.Port+"/blank?route=geo-dns")
	if res.ErrorText != "" || res.Text != "blank" {
		t.Errorf("geo session: a name only the upstream resolves did not load: %+v", res)
	}
	if c := live.Carried("GET http://acme.invalid:" + site.Port + "/blank?route=geo-dns"); len(c) != 1 {
		t.Errorf("the upstream was not asked for acme.invalid by name: %v", live.Carried("geo-dns"))
	}
	if c := live.Carried("http://acme.test:" + site.Port + "/blank?route=geo"); len(c) == 0 {
		t.Errorf("the upstream got the navigation without its host name (resolved locally?): %v", live.Carried("route=geo"))
	}

	// WebRTC reveals no host address: no non-proxied UDP candidates.
	for _, c := range rtcCandidates(r, sid) {
		if strings.Contains(c, " udp ") || strings.Contains(c, " UDP ") {
			t.Errorf("geo session page gathered a non-proxied UDP WebRTC candidate: %s", c)
		}
	}

	// HTTPS: a CONNECT tunnel through the forwarder and the upstream.
	res = navigateTry(r, sid, "https://acme.test:"+secure.Port+"/?route=geo-tls")
	if res.ErrorText != "" || res.Text != "secure page" {
		t.Errorf("geo session: https navigation: %+v", res)
	}
	if c := live.Carried("CONNECT acme.test:" + secure.Port); len(c) == 0 {
		t.Errorf("the https navigation did not go through a CONNECT on the live upstream")
	}
	if secure.Received("route=geo-tls") != 1 {
		t.Errorf("the TLS site saw %d geo requests, want 1", secure.Received("route=geo-tls"))
	}

	// The pool's time zone and language, in the page and in a worker.
	r.Navigate(sid, site.URL("acme", "/blank?route=geo-tz"))
	var page struct {
		TZ     string `json:"tz"`
		Lang   string `json:"lang"`
		Langs  []string
		Offset int `json:"offset"`
		Worker []string
	}
	raw := r.Evaluate(sid, `(async () => {
	  const w = new Worker(URL.createObjectURL(new Blob(
	    ["postMessage([Intl.DateTimeFormat().resolvedOptions().timeZone, navigator.language])"], {type: 'text/javascript'})));
	  const worker = await new Promise(res => { w.onmessage = e => res(e.data); w.onerror = e => res(['error', String(e.message)]); });
	  return {tz: Intl.DateTimeFormat().resolvedOptions().timeZone, lang: navigator.language,
	    Langs: navigator.languages, offset: new Date(Date.UTC(2026, 0, 15, 12)).getTimezoneOffset(), Worker: worker};
	})()`)
	if err := json.Unmarshal(raw, &page); err != nil {
		t.Fatalf("page locale probe %s: %v", raw, err)
	}
	if page.TZ != "Europe/Berlin" || page.Offset != -60 {
		t.Errorf("page time zone %q (offset %d in January), want Europe/Berlin (-60)", page.TZ, page.Offset)
	}
	if !strings.HasPrefix(page.Lang, "de") {
		t.Errorf("navigator.language = %q (languages %v), want de...", page.Lang, page.Langs)
	}
	if len(page.Worker) != 2 || page.Worker[0] != "Europe/Berlin" || !strings.HasPrefix(page.Worker[1], "de") {
		t.Errorf("worker time zone and language = %v, want Europe/Berlin and de...", page.Worker)
	}

	// A page that shows the proxy password: the agent reads placeholders.
	r.Navigate(sid, site.URL("acme", "/echo"))
	deadline := time.Now().Add(waitTimeout)
	var text string
	for {
		json.Unmarshal(r.Evaluate(sid, `document.getElementById('loaded').textContent`), &text)
		if text == "ECHO DONE" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the page's own fetches
	}
	if text != "ECHO DONE" {
		t.Errorf("the echo page never finished its fetches (%q)", text)
	}
	if len(site.Received("acme.test", "/echo")) == 0 || len(live.Carried("/echo")) == 0 {
		t.Fatalf("the echo page was not served through the live upstream; the leak check below would be vacuous")
	}
	content := r.Evaluate(sid, `document.documentElement.outerHTML + '\n' + document.body.innerText`)
	if hits := valueHits(content, passwords["proxy_de_2"]); len(hits) > 0 {
		t.Errorf("the page content the agent reads holds the proxy password: %v", hits)
	}
	if !bytes.Contains(content, []byte("<<secret:")) && !bytes.Contains(content, []byte(`\u003c\u003csecret:`)) {
		t.Errorf("the echo page shows no placeholder where the proxy password was: %.300s", content)
	}

	// Discovery JSON, and everything the agent's socket received.
	var disc bytes.Buffer
	for _, p := range []string{"/json/version", "/json/list", "/json"} {
		code, body := httpDo(t, http.MethodGet, s.CDPURL+p, nil)
		if code != http.StatusOK {
			t.Errorf("GET %s = %d", p, code)
		}
		disc.Write(body)
	}
	for name, v := range passwords {
		if hits := valueHits(disc.Bytes(), v); len(hits) > 0 {
			t.Errorf("discovery JSON holds the upstream password %s: %v", name, hits)
		}
		if hits := bytesHits(rec.Bytes(), v); len(hits) > 0 {
			t.Errorf("the CDP traffic the agent received (%d bytes) holds the upstream password %s: %v", len(rec.Bytes()), name, hits)
		}
		if p := procsHolding(env, v); len(p) > 0 {
			t.Errorf("a browser process's arguments or environment hold the upstream password %s: %v", name, p)
		}
	}
	if all := rec.Bytes(); len(all) < 10000 || !bytes.Contains(all, []byte("ECHO DONE")) {
		t.Errorf("the recorder holds %d bytes and not the evaluate result seen above; the leak check is too weak", len(all))
	}

	// The pool's first upstream is down, the second up and carrying.
	deadline = time.Now().Add(10 * time.Second)
	for {
		m := d.Metrics()
		up0, up1 := geoMetric(m, "cdpvault_geo_upstream_up", "de", 0), geoMetric(m, "cdpvault_geo_upstream_up", "de", 1)
		req1 := geoMetric(m, "cdpvault_geo_requests_total", "de", 1)
		if up0 == 0 && up1 == 1 && req1 > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("geo metrics: de/0 up %v, de/1 up %v, de/1 requests %v; want 0, 1 and > 0", up0, up1, req1)
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the daemon's health checks
	}
}

func testGeoPoolAllDown(t *testing.T, d *Daemon, token string, site *Site, secure *tlsSite, live *stampUpstream, deadURLs []string, passwords map[string][]byte) {
	s := newGeoSession(t, d, token, "xx")
	r := DialRaw(t, s.WSURL)
	_, sid := r.NewPageSession("about:blank")
	for _, u := range []string{site.URL("acme", "/blank?route=xx"), "https://acme.test:" + secure.Port + "/?route=xx-tls"} {
		res := navigateTry(r, sid, u)
		// Chrome shows a proxy's answer to a plain-HTTP request as the
		// page; a failed tunnel is a navigation error.
		if res.ErrorText == "" && (res.Status < 500 || res.Text == "blank" || res.Text == "secure page") {
			t.Errorf("pool with every upstream down: %s loaded: %+v", u, res)
		}
		for _, dead := range deadURLs {
			addr := strings.TrimPrefix(dead, "http://")
			_, port, _ := net.SplitHostPort(addr)
			if strings.Contains(res.Text, addr) || strings.Contains(res.Text, ":"+port) {
				t.Errorf("the error page names an upstream (%s): %q", addr, res.Text)
			}
		}
		for name, v := range passwords {
			if hits := bytesHits([]byte(res.Text), v); len(hits) > 0 {
				t.Errorf("the error page holds the password %s", name)
			}
		}
		t.Logf("all-down pool, %s: %+v", u, res)
	}
	for _, rq := range site.Requests() {
		if strings.Contains(rq.RawQuery, "route=xx") {
			t.Errorf("the site received a request of the all-down session: %s %s?%s", rq.Method, rq.Path, rq.RawQuery)
		}
	}
	if n := secure.Received("route=xx"); n != 0 {
		t.Errorf("the TLS site received %d requests of the all-down session", n)
	}
	if c := live.Carried("route=xx"); len(c) != 0 {
		t.Errorf("another pool's upstream carried the xx session's requests: %v", c)
	}
}

// testGeoAgentProxy: the agent of a geo session tries to leave the pool with
// a browser context of its own proxy ("direct://"). Issue 6: traffic goes
// through the pool or nowhere, and an agent-supplied proxyServer is refused.
func testGeoAgentProxy(t *testing.T, d *Daemon, token string, site *Site, live *stampUpstream) {
	s := newGeoSession(t, d, token, "de")
	r := DialRaw(t, s.WSURL)
	// A browser context without a proxy of its own (Playwright's
	// browser.newContext()) is fine, and its pages stay in the pool.
	var bc struct {
		BrowserContextID string `json:"browserContextId"`
	}
	r.MustCall("", "Target.createBrowserContext", map[string]any{}, &bc)
	var ct struct {
		TargetID string `json:"targetId"`
	}
	r.MustCall("", "Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": bc.BrowserContextID}, &ct)
	var at struct {
		SessionID string `json:"sessionId"`
	}
	r.MustCall("", "Target.attachToTarget", map[string]any{"targetId": ct.TargetID, "flatten": true}, &at)
	res := navigateTry(r, at.SessionID, site.URL("acme", "/blank?route=agent-context"))
	if res.Text != "blank" || len(live.Carried("route=agent-context")) != 1 {
		t.Errorf("a page in an agent-made browser context (no proxy of its own): %+v, carried by the pool %v; want it loaded through the pool",
			res, live.Carried("route=agent-context"))
	}
	for i, params := range []map[string]any{
		{"proxyServer": "direct://"},
		{"proxyServer": "http://127.0.0.1:1", "proxyBypassList": "*"},
	} {
		route := fmt.Sprintf("route=agent-proxy-%d", i)
		resp := r.Call("", "Target.createBrowserContext", params)
		if resp.Error != nil {
			if !strings.HasPrefix(resp.Error.Message, "cdpvault:") {
				t.Logf("Target.createBrowserContext %v refused by Chrome, not cdpvault: %s", params, resp.Error.Message)
			}
			continue
		}
		t.Errorf("Target.createBrowserContext with agent-supplied %v was forwarded (want a cdpvault: CDP error): %s", params, resp.Result)
		var bc struct {
			BrowserContextID string `json:"browserContextId"`
		}
		json.Unmarshal(resp.Result, &bc)
		var ct struct {
			TargetID string `json:"targetId"`
		}
		r.MustCall("", "Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": bc.BrowserContextID}, &ct)
		var at struct {
			SessionID string `json:"sessionId"`
		}
		r.MustCall("", "Target.attachToTarget", map[string]any{"targetId": ct.TargetID, "flatten": true}, &at)
		res := navigateTry(r, at.SessionID, site.URL("acme", "/blank?"+route))
		var direct int
		for _, rq := range site.Received("acme.test", "/blank") {
			if strings.Contains(rq.RawQuery, route) {
				direct++
			}
		}
		if carried := len(live.Carried(route)); direct > carried {
			t.Errorf("geo session left its pool through an agent-made browser context %v: the site got %d request(s), the pool carried %d (navigation: %+v)",
				params, direct, carried, res)
		}
	}
}

// startGeo starts a daemon on env whose config has one pool "de" over
// upstreams (url, user, secret name), with the named passwords stored in
// credentials tenant ops; it returns the daemon and tenant acme's token.
func startGeo(t *testing.T, env *Env, passwords map[string][]byte, upstreams ...[3]string) (*Daemon, string) {
	t.Helper()
	env.Tenant("ops")
	for name, v := range passwords {
		env.SetSecret("ops", name, v)
	}
	token := env.Tenant("acme")
	if err := os.WriteFile(env.Config, []byte(geoConfig(upstreams...)), 0o600); err != nil {
		t.Fatal(err)
	}
	return env.Start(), token
}

// geoConfig is a config with one pool "de" over upstreams (url, user, secret).
func geoConfig(upstreams ...[3]string) string {
	var b strings.Builder
	b.WriteString("log: {level: debug, format: json}\nchrome:\n  args: [\"--host-resolver-rules=MAP *.test 127.0.0.1\"]\n" +
		"geo:\n  credentials_tenant: ops\n  pools:\n    de:\n      timezone: Europe/Berlin\n      locale: de-DE\n      upstreams:\n")
	for _, u := range upstreams {
		fmt.Fprintf(&b, "        - {url: %q, username: %s, password_secret: %s}\n", u[0], u[1], u[2])
	}
	return b.String()
}

// TestGeoReloadKeepsSessions: SIGHUP swaps pool de's upstream. The running
// geo session keeps its socket and still never goes direct; a new session
// goes through the new upstream with the new vault password, and that
// password is scrubbed from what its agent reads.
func TestGeoReloadKeepsSessions(t *testing.T) {
	t.Parallel()
	site := NewSite(t)
	pwA := []byte("Reload-pw-A-" + randomHex(8))
	pwB := []byte("Reload-pw-B<&> " + randomHex(8))
	upA := newStampUpstream(t, "first", "user-a", string(pwA))
	upB := newStampUpstream(t, "second", "user-b", string(pwB))
	env := NewEnv(t, "debug")
	d, token := startGeo(t, env, map[string][]byte{"proxy_a": pwA, "proxy_b": pwB}, [3]string{upA.srv.URL, "user-a", "proxy_a"})

	s1 := newGeoSession(t, d, token, "de")
	r1 := DialRaw(t, s1.WSURL)
	_, sid1 := r1.NewPageSession("about:blank")
	r1.Navigate(sid1, site.URL("acme", "/blank?route=before"))
	if len(upA.Carried("route=before")) != 1 {
		t.Fatalf("before the reload the session did not go through upstream A: %v", upA.Carried(""))
	}

	if err := os.WriteFile(env.Config, []byte(geoConfig([3]string{upB.srv.URL, "user-b", "proxy_b"})), 0o600); err != nil {
		t.Fatal(err)
	}
	reloads := bytes.Count(d.Log(), []byte(`"msg":"reloaded"`))
	d.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(waitTimeout)
	for bytes.Count(d.Log(), []byte(`"msg":"reloaded"`)) == reloads {
		if time.Now().After(deadline) {
			t.Fatalf("no \"reloaded\" log line after SIGHUP:\n%s", tail(string(d.Log()), 4<<10))
		}
		time.Sleep(20 * time.Millisecond) // polling the daemon's log
	}

	// The running session survived and still goes through the pool.
	if got := string(r1.Evaluate(sid1, "6*7")); got != "42" {
		t.Errorf("running session after SIGHUP: evaluate = %s", got)
	}
	r1.Navigate(sid1, site.URL("acme", "/blank?route=during"))
	var direct int
	for _, rq := range site.Received("acme.test", "/blank") {
		if strings.Contains(rq.RawQuery, "route=during") {
			direct++
		}
	}
	if carried := len(upA.Carried("route=during")) + len(upB.Carried("route=during")); carried != direct || direct != 1 {
		t.Errorf("running session after SIGHUP: the site got %d request(s), the upstreams carried %d; want 1 and 1", direct, carried)
	}

	// A new session uses the new upstream, and its password is scrubbed.
	site.SetEchoValues(pwB)
	s2 := newGeoSession(t, d, token, "de")
	rec := &recorder{}
	r2 := DialRawRecorded(t, s2.WSURL, rec)
	_, sid2 := r2.NewPageSession("about:blank")
	r2.Navigate(sid2, site.URL("acme", "/echo?route=after"))
	if len(upB.Carried("route=after")) != 1 || len(upA.Carried("route=after")) != 0 {
		t.Errorf("a session created after the reload: upstream B carried %v, A carried %v; want B only", upB.Carried("route=after"), upA.Carried("route=after"))
	}
	content := r2.Evaluate(sid2, `document.documentElement.outerHTML`)
	if !bytes.Contains(content, []byte(`id=\"loaded\"`)) || len(site.Received("acme.test", "/echo")) != 1 {
		t.Fatalf("the echo page did not load: %.200s", content)
	}
	for name, v := range map[string][]byte{"proxy_a": pwA, "proxy_b": pwB} {
		if hits := bytesHits(rec.Bytes(), v); len(hits) > 0 {
			t.Errorf("the agent of the new session received the upstream password %s: %v", name, hits)
		}
		if hits := bytesHits(d.Log(), v); len(hits) > 0 {
			t.Errorf("the daemon log holds the upstream password %s: %v", name, hits)
		}
	}
	if upA.BadAuth()+upB.BadAuth() != 0 {
		t.Errorf("upstreams refused %d requests for bad credentials", upA.BadAuth()+upB.BadAuth())
	}
}

// TestGeoFailoverMidSession: the session's upstream dies while it runs; the
// next page goes through the pool's other upstream (never direct), and the
// failover shows in the metrics.
func TestGeoFailoverMidSession(t *testing.T) {
	t.Parallel()
	site := NewSite(t)
	pw1 := []byte("Failover-pw-1-" + randomHex(8))
	pw2 := []byte("Failover-pw-2-" + randomHex(8))
	up1 := newStampUpstream(t, "first", "user-1", string(pw1))
	up2 := newStampUpstream(t, "second", "user-2", string(pw2))
	d, token := startGeo(t, NewEnv(t, "info"), map[string][]byte{"proxy_1": pw1, "proxy_2": pw2},
		[3]string{up1.srv.URL, "user-1", "proxy_1"}, [3]string{up2.srv.URL, "user-2", "proxy_2"})
	s := newGeoSession(t, d, token, "de")
	r := DialRaw(t, s.WSURL)
	_, sid := r.NewPageSession("about:blank")
	res := navigateTry(r, sid, site.URL("acme", "/blank?route=one"))
	first, other := up1, up2
	if len(up2.Carried("route=one")) == 1 {
		first, other = up2, up1
	}
	if res.Text != "blank" || len(first.Carried("route=one")) != 1 {
		t.Fatalf("first navigation: %+v, carried by first %v second %v", res, up1.Carried("route=one"), up2.Carried("route=one"))
	}
	// The session's upstream goes away.
	first.srv.CloseClientConnections()
	first.srv.Close()
	res = navigateTry(r, sid, site.URL("acme", "/blank?route=two"))
	if res.ErrorText != "" || res.Status != 200 || res.Text != "blank" {
		t.Errorf("navigation after the session's upstream died: %+v, want the page through the other upstream", res)
	}
	if c := other.Carried("route=two"); len(c) != 1 {
		t.Errorf("after failover upstream %s carried %v, want the navigation", other.name, c)
	}
	var direct int
	for _, rq := range site.Received("acme.test", "/blank") {
		if rq.RawQuery == "route=two" {
			direct++
		}
	}
	if direct != len(other.Carried("route=two")) {
		t.Errorf("the site got %d requests for route=two, the surviving upstream carried %d: traffic left the pool", direct, len(other.Carried("route=two")))
	}
	idx := 0
	if first == up2 {
		idx = 1
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := d.Metrics()
		fo, up := geoMetric(m, "cdpvault_geo_failovers_total", "de", idx), geoMetric(m, "cdpvault_geo_upstream_up", "de", idx)
		if fo >= 1 && up == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("metrics for the dead upstream de/%d: failovers %v, up %v; want >= 1 and 0", idx, fo, up)
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the daemon's metrics
	}
}
