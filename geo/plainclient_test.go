package geo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

// rawUpstream is a hand-written upstream proxy: it reads requests off each
// connection in turn and answers what handle says, so tests see the wire
// format and control keep-alive exactly.
type rawUpstream struct {
	ln      net.Listener
	accepts atomic.Int64
	handle  func(conn, n int, req *http.Request, body string) (resp string, hangup bool)
	eof     chan int // a connection the forwarder closed (by index)

	mu   sync.Mutex
	reqs []rawReq
}

type rawReq struct {
	conn   int
	uri    string
	host   string
	header http.Header
	te     []string
	body   string
}

func newRawUpstream(t *testing.T, handle func(conn, n int, req *http.Request, body string) (string, bool)) *rawUpstream {
	t.Helper()
	u := &rawUpstream{handle: handle, eof: make(chan int, 16)}
	u.ln = serveTCP(t, func(c net.Conn) { u.serve(int(u.accepts.Add(1))-1, c) })
	return u
}

func (u *rawUpstream) URL() string { return "http://" + u.ln.Addr().String() }

func (u *rawUpstream) serve(ci int, c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for n := 0; ; n++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			if err == io.EOF {
				u.eof <- ci
			}
			return
		}
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, rawReq{conn: ci, uri: req.RequestURI, host: req.Host, header: req.Header, te: req.TransferEncoding, body: string(b)})
		u.mu.Unlock()
		resp, hangup := u.handle(ci, n, req, string(b))
		if hangup {
			return
		}
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
	}
}

func (u *rawUpstream) requests() []rawReq {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]rawReq(nil), u.reqs...)
}

func okResp(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// rawExchange sends one request over a new connection to the forwarder and
// returns the status and body.
func rawExchange(t *testing.T, f *Forwarder, request string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Several plain requests share one connection to the upstream.
func TestPlainKeepAliveReusesUpstreamConnection(t *testing.T) {
	t.Parallel()
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			t.Parallel()
			s := newSite(t, false)
			u0 := newTestUpstream(t, "u0", user(0), pw(0), useTLS)
			pools, secrets := poolOf(u0.URL())
			e := newEnv(t, pools, secrets, func(o *Options) {
				if useTLS {
					o.RootCAs = certPool(u0.srv)
				}
			})
			f := e.open(t, "de")
			c := client(f, nil)
			for i := range 5 {
				if code, body, h := get(t, c, s.url("acme.test")); code != 200 || !strings.Contains(body, "hello") || h.Get("X-Upstream") != "u0" {
					t.Fatalf("GET %d: %d %q", i, code, body)
				}
			}
			if code, body, _ := post(t, c, s.url("acme.test"), strings.NewReader("a=1")); code != 200 {
				t.Fatalf("POST: %d %q", code, body)
			}
			if got := u0.accepts.Load(); got != 1 {
				t.Fatalf("upstream accepted %d connections for 6 requests, want 1", got)
			}
			if u0.bad.Load() != 0 || len(u0.Plain()) != 6 {
				t.Fatalf("bad auth %d, plain %v", u0.bad.Load(), u0.Plain())
			}
			wantCounter(t, e, "failures", "de", 0, 0)
		})
	}
}

// The head the upstream gets: absolute form, one Proxy-Authorization (ours),
// no hop-by-hop header of the browser's.
func TestPlainRequestWireFormat(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(_, _ int, _ *http.Request, _ string) (string, bool) { return okResp("ok"), false })
	_, f := openPool(t, up.URL())
	code, body := rawExchange(t, f, "GET http://acme.test:8080/p/a?q=1 HTTP/1.1\r\nHost: acme.test:8080\r\n"+
		"Proxy-Authorization: "+basic("chrome", "chrome-own-pass")+"\r\nProxy-Connection: keep-alive\r\n"+
		"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: h2c\r\n"+
		"X-Keep: 2\r\nAccept-Encoding: gzip\r\n\r\n")
	if code != 200 || body != "ok" {
		t.Fatalf("got %d %q", code, body)
	}
	reqs := up.requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream got %d requests", len(reqs))
	}
	r := reqs[0]
	if r.uri != "http://acme.test:8080/p/a?q=1" || r.host != "acme.test:8080" {
		t.Fatalf("request-target %q host %q", r.uri, r.host)
	}
	if got := r.header.Values("Proxy-Authorization"); len(got) != 1 || got[0] != basic(user(0), pw(0)) {
		t.Fatalf("Proxy-Authorization: %d values", len(got))
	}
	for _, k := range []string{"Proxy-Connection", "Connection", "X-Hop", "Keep-Alive", "Te", "Upgrade"} {
		if v := r.header.Get(k); v != "" {
			t.Errorf("hop-by-hop %s: %q reached the upstream", k, v)
		}
	}
	if r.header.Get("X-Keep") != "2" || r.header.Get("Accept-Encoding") != "gzip" {
		t.Fatalf("end-to-end headers lost: %v", r.header)
	}
	if r.header.Get("Content-Length") != "" || len(r.te) != 0 {
		t.Fatalf("a GET got framing headers: %v %v", r.header, r.te)
	}
}

// An idle pooled connection the upstream closed is replaced without a
// failure being counted.
func TestPlainStaleIdleConnectionReplaced(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	u0 := newTestUpstream(t, "u0", user(0), pw(0), false)
	e, f := openPool(t, u0.URL())
	c := client(f, nil)
	if code, _, _ := get(t, c, s.url("acme.test")); code != 200 {
		t.Fatalf("first GET: %d", code)
	}
	u0.srv.CloseClientConnections() // the upstream drops its idle connections
	if code, _, h := get(t, c, s.url("acme.test")); code != 200 || h.Get("X-Upstream") != "u0" {
		t.Fatalf("GET after the upstream closed the idle connection: %d", code)
	}
	if got := u0.accepts.Load(); got != 2 {
		t.Fatalf("accepts = %d, want 2", got)
	}
	wantCounter(t, e, "failures", "de", 0, 0)
	wantCounter(t, e, "up", "de", 0, 1)
}

// A pooled connection that looks alive but dies once the request is on it
// (the upstream closed it at that moment): an idempotent request is sent
// again on a new connection, and that is no failure.
func TestPlainStaleConnectionRetriedOnce(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(conn, n int, _ *http.Request, _ string) (string, bool) {
		if conn == 0 && n == 1 {
			return "", true // read the second request, then hang up
		}
		return okResp(fmt.Sprintf("c%d", conn)), false
	})
	e, f := openPool(t, up.URL())
	req := "GET http://acme.test/ HTTP/1.1\r\nHost: acme.test\r\n\r\n"
	if code, body := rawExchange(t, f, req); code != 200 || body != "c0" {
		t.Fatalf("first: %d %q", code, body)
	}
	if code, body := rawExchange(t, f, req); code != 200 || body != "c1" {
		t.Fatalf("second: %d %q", code, body)
	}
	if got := up.accepts.Load(); got != 2 {
		t.Fatalf("accepts = %d, want 2", got)
	}
	wantCounter(t, e, "failures", "de", 0, 0)
	wantCounter(t, e, "requests", "de", 0, 2)
	// A POST whose body went out on the dying connection is not sent twice.
	up2 := newRawUpstream(t, func(conn, n int, _ *http.Request, _ string) (string, bool) {
		if conn == 0 && n == 1 {
			return "", true
		}
		return okResp("ok"), false
	})
	_, f2 := openPool(t, up2.URL())
	if code, _ := rawExchange(t, f2, req); code != 200 {
		t.Fatalf("first: %d", code)
	}
	post := "POST http://acme.test/ HTTP/1.1\r\nHost: acme.test\r\nContent-Length: 3\r\n\r\na=1"
	if code, body := rawExchange(t, f2, post); code != http.StatusBadGateway || body != unavailableBody {
		t.Fatalf("POST on a dying connection: %d %q", code, body)
	}
	if n := len(up2.requests()); n != 2 {
		t.Fatalf("upstream got %d requests, want 2 (the POST once)", n)
	}
}

// A request body of unknown length goes chunked, whole, in several chunks.
func TestPlainChunkedPOSTBody(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("0123456789abcdef", 8<<10) // 128 KiB: several chunks
	t.Run("wire", func(t *testing.T) {
		t.Parallel()
		up := newRawUpstream(t, func(_, _ int, _ *http.Request, body string) (string, bool) {
			return okResp(fmt.Sprint(len(body))), false
		})
		_, f := openPool(t, up.URL())
		code, body := rawExchange(t, f, "POST http://acme.test/ HTTP/1.1\r\nHost: acme.test\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
		if code != 200 || body != "11" {
			t.Fatalf("got %d %q", code, body)
		}
		r := up.requests()[0]
		if r.body != "hello world" || len(r.te) != 1 || r.te[0] != "chunked" {
			t.Fatalf("upstream got body %q te %v", r.body, r.te)
		}
	})
	t.Run("through goproxy", func(t *testing.T) {
		t.Parallel()
		s := newSite(t, false)
		u0 := newTestUpstream(t, "u0", user(0), pw(0), false)
		_, f := openPool(t, u0.URL())
		c := client(f, nil)
		// An io.MultiReader has no known length: the client sends it chunked.
		if code, body, _ := post(t, c, s.url("acme.test"), io.MultiReader(strings.NewReader(big))); code != 200 {
			t.Fatalf("POST: %d %.200q", code, body)
		}
		// And the connection is reused afterwards.
		if code, _, _ := get(t, c, s.url("acme.test")); code != 200 {
			t.Fatalf("GET after POST: %d", code)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.bodies) != 2 || s.bodies[0] != big {
			t.Fatalf("site got %d bodies, first %d bytes", len(s.bodies), len(s.bodies[0]))
		}
		if got := u0.accepts.Load(); got != 1 {
			t.Fatalf("accepts = %d", got)
		}
	})
}

// A response with Connection: close ends its connection, even if the
// upstream keeps it open; one that did not say so is reused.
func TestPlainConnectionCloseNotReused(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(conn, n int, req *http.Request, _ string) (string, bool) {
		if req.URL.Path == "/close" {
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", false
		}
		if req.URL.Path == "/chunked" {
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false
		}
		return okResp("ok"), false
	})
	_, f := openPool(t, up.URL())
	for _, p := range []string{"/close", "/chunked", "/", "/close", "/"} {
		if code, body := rawExchange(t, f, "GET http://acme.test"+p+" HTTP/1.1\r\nHost: acme.test\r\n\r\n"); code != 200 || body != "ok" {
			t.Fatalf("%s: %d %q", p, code, body)
		}
	}
	conns := []int{}
	for _, r := range up.requests() {
		conns = append(conns, r.conn)
	}
	if want := []int{0, 1, 1, 1, 2}; fmt.Sprint(conns) != fmt.Sprint(want) {
		t.Fatalf("requests went over connections %v, want %v", conns, want)
	}
	// Both connections that answered Connection: close were closed by the
	// forwarder (the upstream left them open).
	seen := map[int]bool{}
	for range 2 {
		select {
		case ci := <-up.eof:
			seen[ci] = true
		case <-time.After(10 * time.Second):
			t.Fatal("a Connection: close connection stayed open")
		}
	}
	if !seen[0] || !seen[1] {
		t.Fatalf("closed connections %v, want 0 and 1", seen)
	}
}

// Closing the router closes the idle connections to upstreams.
func TestPlainIdleConnectionsClosedWithRouter(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(_, _ int, _ *http.Request, _ string) (string, bool) { return okResp("ok"), false })
	e, f := openPool(t, up.URL())
	if code, _ := rawExchange(t, f, "GET http://acme.test/ HTTP/1.1\r\nHost: acme.test\r\n\r\n"); code != 200 {
		t.Fatalf("GET: %d", code)
	}
	if err := e.r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-up.eof:
	case <-time.After(10 * time.Second):
		t.Fatal("idle upstream connection still open after Router.Close")
	}
}

// An idle connection is closed after the idle timeout.
func TestPlainIdleConnectionExpires(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(_, _ int, _ *http.Request, _ string) (string, bool) { return okResp("ok"), false })
	pools, secrets := poolOf(up.URL())
	e := newEnv(t, pools, secrets, func(o *Options) { o.IdleTimeout = 200 * time.Millisecond })
	f := e.open(t, "de")
	start := time.Now()
	if code, _ := rawExchange(t, f, "GET http://acme.test/ HTTP/1.1\r\nHost: acme.test\r\n\r\n"); code != 200 {
		t.Fatalf("GET: %d", code)
	}
	select {
	case <-up.eof:
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Fatalf("closed after %v, before the idle timeout", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("idle upstream connection never closed")
	}
}

// A websocket handshake over plain HTTP goes through (the connection is
// then a relay), as it did through the Transport.
func TestPlainWebsocketUpgrade(t *testing.T) {
	t.Parallel()
	s := newWSSite(t)
	u0 := newTestUpstream(t, "u0", user(0), pw(0), false)
	_, f := openPool(t, u0.URL())
	c, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET http://acme.test:%s/ws HTTP/1.1\r\nHost: acme.test:%s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", s, s)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %d", resp.StatusCode)
	}
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(br, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q %v", b, err)
	}
}

// newWSSite answers any upgrade with 101 and then echoes bytes; it returns
// its port.
func newWSSite(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "no upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		_, _ = io.Copy(conn, brw)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// A browser that goes away ends the request to the upstream.
func TestPlainRequestCancelled(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan struct{})
	closed := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			closed <- err
			return
		}
		close(got)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1)) // never answered: only a close ends this
		closed <- err
	}()
	_, f := openPool(t, "http://"+ln.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://acme.test/", nil)
	done := make(chan error, 1)
	go func() {
		resp, err := client(f, nil).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-got
	cancel()
	if err := <-done; err == nil {
		t.Fatal("request succeeded after cancel")
	}
	if err := <-closed; err != io.EOF {
		t.Fatalf("upstream connection: %v, want EOF (closed by the forwarder)", err)
	}
}

// TestCancelledAttemptBlamesNoUpstream: when the browser gives up while the
// upstream still holds its plain request or CONNECT, the upstream is not
// counted as failed nor marked down (a tab navigating away mid-load must
// not move the session's exit). The forwarder's entry points are called
// directly, so the counters are read once they have returned.
func TestCancelledAttemptBlamesNoUpstream(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context, f *Forwarder) error
	}{
		{"plain", func(ctx context.Context, f *Forwarder) error {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://acme.test/", nil)
			resp, err := f.roundTrip(req, nil)
			if err == nil {
				resp.Body.Close()
			}
			return err
		}},
		{"connect", func(ctx context.Context, f *Forwarder) error {
			c, err := f.dialTunnel(ctx, "acme.test:443")
			if err == nil {
				c.Close()
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := make(chan struct{}, 1)
			ln := serveTCP(t, func(c net.Conn) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					got <- struct{}{}
				}
				_, _ = io.Copy(io.Discard, c) // never answered: only a close ends this
			})
			e, f := openPool(t, "http://"+ln.Addr().String())
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- tc.run(ctx, f) }()
			<-got
			cancel()
			if err := <-errc; err == nil {
				t.Fatal("succeeded after the cancel")
			}
			wantCounter(t, e, "failures", "de", 0, 0)
			wantCounter(t, e, "up", "de", 0, 1)
		})
	}
}

// connAlive tells an idle connection from one the peer closed or wrote
// unsolicited bytes on, without blocking.
func TestConnAlive(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := func() (client, server net.Conn) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(); _ = s.Close() })
		return c, s
	}
	// until polls connAlive (it never blocks) until it reports false.
	until := func(c net.Conn) bool {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if !connAlive(c) {
				return true
			}
		}
		return false
	}
	c, s := peer()
	if !connAlive(c) {
		t.Fatal("an idle open connection is not alive")
	}
	_ = s.Close()
	if !until(c) {
		t.Fatal("a connection the peer closed stays alive")
	}
	c2, s2 := peer()
	_, _ = s2.Write([]byte("x"))
	if !until(c2) {
		t.Fatal("a connection with unsolicited bytes stays alive")
	}
	// The peek consumed nothing.
	b := make([]byte, 1)
	if _, err := c2.Read(b); err != nil || b[0] != 'x' {
		t.Fatalf("read after peek: %q %v", b, err)
	}
}

// The pool keeps at most maxIdleConns idle connections per upstream, and
// none once closed.
func TestPlainPoolBounded(t *testing.T) {
	t.Parallel()
	pools, secrets := poolOf("http://127.0.0.1:1")
	e := newEnv(t, pools, secrets, nil)
	u := e.upstreamAt(t, "de", 0)
	closed := func(c net.Conn) bool {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second)) // no reader: an open pipe blocks
		_, err := c.Write([]byte("x"))
		return errors.Is(err, io.ErrClosedPipe)
	}
	var conns []net.Conn
	for range maxIdleConns + 2 {
		a, b := net.Pipe()
		conns = append(conns, a)
		defer b.Close()
		u.putIdle(&pconn{u: u, raw: a, c: a})
	}
	if n := len(u.conns.idle); n != maxIdleConns {
		t.Fatalf("%d idle connections kept", n)
	}
	// The ones over the bound were closed.
	for _, c := range conns[maxIdleConns:] {
		if !closed(c) {
			t.Fatal("a connection over the bound was kept open")
		}
	}
	u.closeConns()
	if n := len(u.conns.idle); n != 0 {
		t.Fatalf("%d idle connections after closeConns", n)
	}
	for _, c := range conns[:maxIdleConns] {
		if !closed(c) {
			t.Fatal("an idle connection stayed open after closeConns")
		}
	}
	a, b := net.Pipe()
	defer b.Close()
	u.putIdle(&pconn{u: u, raw: a, c: a})
	if n := len(u.conns.idle); n != 0 || !closed(a) {
		t.Fatal("a closed pool kept a connection")
	}
}

// checkPlainRequest refuses what requestHead could not write safely (a
// byte that would end or split a line) and upgrades other than websocket.
func TestCheckPlainRequestRefusals(t *testing.T) {
	t.Parallel()
	mk := func(mod func(r *http.Request)) *http.Request {
		r, err := http.NewRequest(http.MethodGet, "http://acme.test/a?b=c", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("X-Ok", "v")
		if mod != nil {
			mod(r)
		}
		return r
	}
	if err := checkPlainRequest(mk(nil)); err != nil {
		t.Fatalf("a plain GET refused: %v", err)
	}
	ws := mk(func(r *http.Request) { r.Header.Set("Connection", "Upgrade"); r.Header.Set("Upgrade", "websocket") })
	if err := checkPlainRequest(ws); err != nil {
		t.Fatalf("a websocket upgrade refused: %v", err)
	}
	for name, mod := range map[string]func(r *http.Request){
		"method":       func(r *http.Request) { r.Method = "GET /x" },
		"host":         func(r *http.Request) { r.Host = "acme.test\r\nX: y" },
		"url host":     func(r *http.Request) { r.URL.Host = "acme test" },
		"header name":  func(r *http.Request) { r.Header["X Bad"] = []string{"v"} },
		"header value": func(r *http.Request) { r.Header["X-Bad"] = []string{"v\r\nX-Injected: 1"} },
	} {
		if err := checkPlainRequest(mk(mod)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := checkPlainRequest(mk(func(r *http.Request) { r.Header.Set("Connection", "upgrade"); r.Header.Set("Upgrade", "h2c") })); !errors.Is(err, errUpgradeRefused) {
		t.Errorf("h2c upgrade: %v, want errUpgradeRefused", err)
	}
}

// Through the forwarder an upgrade other than websocket never reaches the
// upstream: goproxy drops the Connection header of every request that is
// not a websocket handshake, and the Upgrade header is a hop header, so
// the upstream gets the request without them.
func TestPlainNonWebsocketUpgradeNotForwarded(t *testing.T) {
	t.Parallel()
	up := newRawUpstream(t, func(_, _ int, _ *http.Request, _ string) (string, bool) { return okResp("ok"), false })
	_, f := openPool(t, up.URL())
	req := "GET http://acme.test/ HTTP/1.1\r\nHost: acme.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
	if code, body := rawExchange(t, f, req); code != 200 || body != "ok" {
		t.Fatalf("h2c upgrade: %d %q", code, body)
	}
	got := up.requests()
	if len(got) != 1 {
		t.Fatalf("the upstream got %d requests", len(got))
	}
	if h := got[0].header; h.Get("Upgrade") != "" || httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		t.Fatalf("the upgrade reached the upstream: %v", h)
	}
}

// Interim responses are skipped; an upstream that sends only interim
// responses, or a 101 to a request that asked for no upgrade, is answered
// 502 and counted as a failure.
func TestPlainInterimAndUnaskedUpgradeResponses(t *testing.T) {
	t.Parallel()
	req := "GET http://acme.test/ HTTP/1.1\r\nHost: acme.test\r\n\r\n"
	for _, c := range []struct {
		name, resp string
		code       int
		body       string
	}{
		{"100 and 103, then 200", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + okResp("ok"), 200, "ok"},
		{"only interim responses", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 11) + okResp("late"), http.StatusBadGateway, unavailableBody},
		{"101 unasked", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", http.StatusBadGateway, unavailableBody},
	} {
		up := newRawUpstream(t, func(_, _ int, _ *http.Request, _ string) (string, bool) { return c.resp, false })
		e, f := openPool(t, up.URL())
		if code, body := rawExchange(t, f, req); code != c.code || body != c.body {
			t.Errorf("%s: %d %q, want %d %q", c.name, code, body, c.code, c.body)
		}
		want := 0.0
		if c.code != 200 {
			want = 1
		}
		wantCounter(t, e, "failures", "de", 0, want)
	}
}
