package geo

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/awnumar/memguard"
	"github.com/elazarl/goproxy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// testDial is how test upstreams reach targets: *.test names map to loopback
// (the upstream resolves hostnames, as a real exit would).
func testDial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasSuffix(host, ".test"):
		addr = net.JoinHostPort("127.0.0.1", port)
	case host == "127.0.0.1" || host == "localhost":
	default:
		// Tests never leave loopback (Chromium's own background requests end here).
		return nil, errors.New("test upstream: only *.test and loopback are reachable")
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// site is a local test site that records every request it gets.
type site struct {
	srv      *httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	headers  []http.Header
	bodies   []string
}

func newSite(t testing.TB, useTLS bool) *site {
	t.Helper()
	s := &site{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		s.headers = append(s.headers, r.Header.Clone())
		body, _ := io.ReadAll(r.Body)
		s.bodies = append(s.bodies, string(body))
		s.mu.Unlock()
		if r.URL.Path == "/favicon.ico" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "<!doctype html><title>acme</title><p id=x>hello from site</p>")
	})
	if useTLS {
		s.srv = httptest.NewTLSServer(h)
	} else {
		s.srv = httptest.NewServer(h)
	}
	t.Cleanup(s.srv.Close)
	return s
}

func (s *site) port() string {
	_, p, _ := net.SplitHostPort(s.srv.Listener.Addr().String())
	return p
}

// url returns the site's URL under host (e.g. "acme.test").
func (s *site) url(host string) string {
	scheme := "http"
	if s.srv.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + host + ":" + s.port() + "/"
}

func (s *site) allHeaders() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, h := range s.headers {
		_ = h.Write(&b)
	}
	return b.String()
}

func (s *site) header(i int) http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < 0 {
		i = len(s.headers) + i
	}
	return s.headers[i]
}

// testUpstream is a goproxy-based upstream proxy that requires
// Proxy-Authorization and stamps what it carried.
type testUpstream struct {
	name     string
	srv      *httptest.Server
	authOK   func(proxyAuthorization string) bool // nil: no authentication
	mu       sync.Mutex
	auths    []string // Proxy-Authorization of every request it carried
	remotes  []string // and the client address of its connection
	connects []string // CONNECT targets, as received
	connHdrs []http.Header
	plain    []string // plain request hosts, as received
	bad      atomic.Int64
	accepts  atomic.Int64 // connections accepted
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func newTestUpstream(t testing.TB, name, user, pass string, useTLS bool) *testUpstream {
	t.Helper()
	var ok func(string) bool
	if user != "" {
		want := basic(user, pass)
		ok = func(h string) bool { return h == want }
	}
	return newTestUpstreamAuth(t, name, ok, useTLS)
}

// newTestUpstreamAuth is newTestUpstream with the credential check given:
// authOK says which Proxy-Authorization values it takes (nil: none needed).
func newTestUpstreamAuth(t testing.TB, name string, authOK func(string) bool, useTLS bool) *testUpstream {
	t.Helper()
	u := &testUpstream{name: name, authOK: authOK}
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = log.New(io.Discard, "", 0)
	gp.Tr = &http.Transport{Proxy: nil, DialContext: testDial}
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = func(req *http.Request, network, addr string) (net.Conn, error) {
		return testDial(req.Context(), network, addr)
	}
	gp.OnRequest().HandleConnectFunc(func(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		if u.authOK != nil && !u.authOK(ctx.Req.Header.Get("Proxy-Authorization")) {
			u.bad.Add(1)
			ctx.Resp = goproxy.NewResponse(ctx.Req, "text/plain", http.StatusProxyAuthRequired, "auth required by "+name)
			ctx.Resp.Header.Set("Proxy-Authenticate", `Basic realm="test"`)
			return goproxy.RejectConnect, host
		}
		u.mu.Lock()
		u.connects = append(u.connects, host)
		u.connHdrs = append(u.connHdrs, ctx.Req.Header.Clone())
		u.auths = append(u.auths, ctx.Req.Header.Get("Proxy-Authorization"))
		u.remotes = append(u.remotes, ctx.Req.RemoteAddr)
		u.mu.Unlock()
		return goproxy.OkConnect, host
	})
	gp.OnRequest().DoFunc(func(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		if u.authOK != nil && !u.authOK(req.Header.Get("Proxy-Authorization")) {
			u.bad.Add(1)
			resp := goproxy.NewResponse(req, "text/plain", http.StatusProxyAuthRequired, "auth required by "+name)
			resp.Header.Set("Proxy-Authenticate", `Basic realm="test"`)
			return req, resp
		}
		u.mu.Lock()
		u.plain = append(u.plain, req.URL.Host)
		u.auths = append(u.auths, req.Header.Get("Proxy-Authorization"))
		u.remotes = append(u.remotes, req.RemoteAddr)
		u.mu.Unlock()
		return req, nil
	})
	gp.OnResponse().DoFunc(func(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
		if resp != nil {
			resp.Header.Set("X-Upstream", name)
		}
		return resp
	})
	u.srv = httptest.NewUnstartedServer(gp)
	u.srv.Listener = countingListener{Listener: u.srv.Listener, n: &u.accepts}
	if useTLS {
		u.srv.StartTLS()
	} else {
		u.srv.Start()
	}
	t.Cleanup(u.srv.Close)
	return u
}

func (u *testUpstream) URL() string { return u.srv.URL }

func (u *testUpstream) Connects() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.connects...)
}

func (u *testUpstream) Plain() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.plain...)
}

// Users returns the username of every request it carried, in order.
func (u *testUpstream) Users() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, h := range u.auths {
		user, _, _ := parseBasic(h)
		out = append(out, user)
	}
	return out
}

// Remotes returns the client address of the connection of every request
// it carried, in order (as Users).
func (u *testUpstream) Remotes() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.remotes...)
}

// parseBasic splits a Basic Proxy-Authorization value.
func parseBasic(h string) (user, pass string, ok bool) {
	r := &http.Request{Header: http.Header{"Authorization": {h}}}
	return r.BasicAuth()
}

func (u *testUpstream) carried() int { return len(u.Connects()) + len(u.Plain()) }

// deadURL is the URL of a loopback port nobody listens on.
func deadURL(t *testing.T, scheme string) string {
	t.Helper()
	return scheme + "://" + deadAddr(t)
}

// deadAddr is a loopback host:port nobody listens on: a TCP socket bound
// to it (not listening, so a connection is refused) holds it until the
// test ends, so no listener of a parallel test can take it meanwhile.
func deadAddr(t *testing.T) string {
	t.Helper()
	addr, _ := revivableAddr(t)
	return addr
}

// revivableAddr is deadAddr with a way to bring the address up: listen
// turns the socket that holds the port into a listener (closed when the
// test ends), so the same host:port goes from refusing to accepting with
// no moment at which another test could take it.
func revivableAddr(t *testing.T) (addr string, listen func() net.Listener) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	revived := false
	t.Cleanup(func() {
		if !revived {
			_ = syscall.Close(fd)
		}
	})
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	listen = func() net.Listener {
		t.Helper()
		if revived {
			t.Fatal("revivableAddr: listen called twice")
		}
		if err := syscall.Listen(fd, 16); err != nil {
			t.Fatalf("listen on the held port: %v", err)
		}
		revived = true
		f := os.NewFile(uintptr(fd), "held port")
		ln, err := net.FileListener(f) // a dup of fd
		_ = f.Close()
		if err != nil {
			t.Fatalf("listener on the held port: %v", err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		return ln
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)), listen
}

// serveTCP listens on loopback and runs handle on every accepted
// connection in a goroutine of its own. At cleanup the listener and every
// accepted connection are closed, and the handlers (which must return once
// their connection is closed) are waited for.
func serveTCP(tb testing.TB, handle func(c net.Conn)) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
	tb.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln
}

// stallURL is an upstream that accepts TCP and never answers.
func stallURL(t *testing.T) string {
	t.Helper()
	return "http://" + serveTCP(t, func(net.Conn) {}).Addr().String()
}

// socksServer is a tiny SOCKS5 server (RFC 1928/1929) that requires
// username/password and records the address type and host it was asked for.
type socksServer struct {
	ln       net.Listener
	user     string
	pass     string
	mu       sync.Mutex
	requests []string // "fqdn:host:port" or "ip:addr:port"
	badAuth  atomic.Int64
}

func newSOCKS5(t *testing.T, user, pass string) *socksServer {
	t.Helper()
	s := &socksServer{user: user, pass: pass}
	s.ln = serveTCP(t, func(c net.Conn) { s.serve(c) })
	return s
}

func (s *socksServer) URL() string { return "socks5://" + s.ln.Addr().String() }

func (s *socksServer) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

func (s *socksServer) serve(c net.Conn) {
	defer c.Close()
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[0] != 5 {
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return
	}
	if bytes.IndexByte(methods, 2) < 0 {
		_, _ = c.Write([]byte{5, 0xff})
		return
	}
	_, _ = c.Write([]byte{5, 2})
	var v [2]byte
	if _, err := io.ReadFull(c, v[:]); err != nil || v[0] != 1 {
		return
	}
	user := make([]byte, v[1])
	if _, err := io.ReadFull(c, user); err != nil {
		return
	}
	var pl [1]byte
	if _, err := io.ReadFull(c, pl[:]); err != nil {
		return
	}
	pass := make([]byte, pl[0])
	if _, err := io.ReadFull(c, pass); err != nil {
		return
	}
	if string(user) != s.user || string(pass) != s.pass {
		s.badAuth.Add(1)
		_, _ = c.Write([]byte{1, 1})
		return
	}
	_, _ = c.Write([]byte{1, 0})
	var req [4]byte
	if _, err := io.ReadFull(c, req[:]); err != nil || req[0] != 5 || req[1] != 1 {
		return
	}
	var host, kind string
	switch req[3] {
	case 1:
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		host, kind = net.IP(b).String(), "ip"
	case 4:
		b := make([]byte, 16)
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		host, kind = net.IP(b).String(), "ip"
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		b := make([]byte, l[0])
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		host, kind = string(b), "fqdn"
	default:
		return
	}
	var pb [2]byte
	if _, err := io.ReadFull(c, pb[:]); err != nil {
		return
	}
	port := strconv.Itoa(int(binary.BigEndian.Uint16(pb[:])))
	s.mu.Lock()
	s.requests = append(s.requests, kind+":"+host+":"+port)
	s.mu.Unlock()
	t, err := testDial(context.Background(), "tcp", net.JoinHostPort(host, port))
	if err != nil {
		_, _ = c.Write([]byte{5, 4, 0, 1, 0, 0, 0, 0, 0, 0}) // host unreachable
		return
	}
	defer t.Close()
	_, _ = c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(t, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, t); done <- struct{}{} }()
	<-done
}

// testCreds is a Credentials resolver over a fixed map that counts calls.
type testCreds struct {
	m     map[string]string
	calls atomic.Int64
}

func (c *testCreds) resolve(_ context.Context, name string) (*memguard.LockedBuffer, error) {
	c.calls.Add(1)
	v, ok := c.m[name]
	if !ok {
		return nil, errors.New("secret not found")
	}
	return memguard.NewBufferFromBytes([]byte(v)), nil // wipes the fresh copy
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	r    *Router
	reg  *prometheus.Registry
	logs *syncBuffer
	cred *testCreds
}

func newEnv(t *testing.T, pools map[string]PoolConfig, secrets map[string]string, mod func(*Options)) *env {
	t.Helper()
	e := &env{reg: prometheus.NewRegistry(), logs: &syncBuffer{}, cred: &testCreds{m: secrets}}
	o := Options{
		Pools:            pools,
		Credentials:      e.cred.resolve,
		Logger:           slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:          NewMetrics(e.reg),
		DialTimeout:      2 * time.Second,
		HandshakeTimeout: 2 * time.Second,
		IdleTimeout:      30 * time.Second,
		HealthInterval:   time.Hour,
	}
	if mod != nil {
		mod(&o)
	}
	r, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.r = r
	t.Cleanup(func() { _ = r.Close() })
	return e
}

// openPool opens a session of pool "de" made of upstreams (their URLs),
// with the test credentials.
func openPool(t *testing.T, upstreams ...string) (*env, *Forwarder) {
	t.Helper()
	pools, secrets := poolOf(upstreams...)
	e := newEnv(t, pools, secrets, nil)
	return e, e.open(t, "de")
}

func (e *env) open(t *testing.T, pool string) *Forwarder {
	t.Helper()
	return e.openWith(t, pool, SessionOptions{})
}

func (e *env) openWith(t *testing.T, pool string, o SessionOptions) *Forwarder {
	t.Helper()
	f, err := e.r.OpenSessionWith(context.Background(), pool, o)
	if err != nil {
		t.Fatalf("OpenSessionWith: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func (e *env) metricsText(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// client returns an http.Client using f as its proxy. rootCAs verifies TLS
// sites (nil: none). It never shares connections with other tests.
func client(f *Forwarder, rootCAs *x509.CertPool) *http.Client {
	pu, _ := url.Parse("http://" + f.Addr())
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			Proxy: http.ProxyURL(pu),
			// httptest certificates name example.com, not acme.test.
			TLSClientConfig:    &tls.Config{RootCAs: rootCAs, ServerName: "example.com"},
			DisableCompression: true,
		},
	}
}

func get(t *testing.T, c *http.Client, u string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// post is get for a text/plain POST of body.
func post(t *testing.T, c *http.Client, u string, body io.Reader) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Post(u, "text/plain", body)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func certPool(srv *httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(srv.Certificate())
	return p
}
