package geo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
)

// errDirect is what every direct path of the forwarder returns. It is never
// shown to the browser (the body is always unavailableBody).
var errDirect = errors.New("geo: direct connection refused (fail closed)")

// Forwarder is one geo session's local forward proxy on 127.0.0.1. All of
// its traffic goes through one upstream of its pool or nowhere.
type Forwarder struct {
	r    *Router
	pool *pool
	ln   net.Listener
	srv  *http.Server
	gp   *goproxy.ProxyHttpServer

	sticky  atomic.Pointer[upstream]
	gate    peerGate
	session string // expands {session} in upstream usernames

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool

	closeOnce sync.Once
	served    chan struct{}
}

func newForwarder(r *Router, p *pool, o SessionOptions) (*Forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("geo: listen for session forwarder: %w", err)
	}
	id, err := newSessionID()
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("geo: session forwarder: %w", err)
	}
	f := &Forwarder{r: r, pool: p, session: id, conns: map[*trackedConn]struct{}{}, served: make(chan struct{})}
	f.gate.on = o.RestrictPeers
	f.ln = &trackingListener{Listener: ln, f: f}
	f.gp = f.newGoproxy()
	f.srv = &http.Server{
		Handler:           f.gp,
		ReadHeaderTimeout: r.opts.HandshakeTimeout,
		IdleTimeout:       r.opts.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(f.served)
		_ = f.srv.Serve(f.ln)
	}()
	return f, nil
}

// refuseDial is wired into every dialer goproxy could fall back to.
func refuseDial(context.Context, string, string) (net.Conn, error) { return nil, errDirect }

func (f *Forwarder) newGoproxy() *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = printfLogger{f.r.log.With("pool", f.pool.name)}
	gp.Verbose = false
	gp.KeepHeader = false // strip Chrome's Proxy-Authorization / Proxy-Connection (contract-tested)
	gp.KeepAcceptEncoding = true
	gp.AllowHTTP2 = false
	// Fail closed: no path of goproxy may dial anything but our upstreams.
	gp.Tr = &http.Transport{
		Proxy:          func(*http.Request) (*url.URL, error) { return nil, errDirect },
		DialContext:    refuseDial,
		DialTLSContext: refuseDial,
	}
	gp.ConnectDial = func(string, string) (net.Conn, error) { return nil, errDirect }
	gp.ConnectDialWithReq = func(req *http.Request, _ string, addr string) (net.Conn, error) {
		return f.dialTunnel(req.Context(), addr)
	}
	gp.ConnectionErrHandler = f.connectionErr
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "cdpvault: not a proxy request", http.StatusBadRequest)
	})
	gp.OnRequest().DoFunc(func(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		// Before goproxy drops the Connection header (and with it the
		// names of the browser's other hop-by-hop headers).
		dropConnectionListed(req.Header)
		ctx.RoundTripper = goproxy.RoundTripperFunc(f.roundTrip)
		ctx.Dialer = refuseDial
		return req, nil
	})
	gp.OnResponse().DoFunc(func(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
		if resp == nil {
			return unavailableResponse(ctx.Req)
		}
		return resp
	})
	return gp
}

// Addr is the forwarder's "127.0.0.1:port"; the browser gets
// --proxy-server=http://<Addr>.
func (f *Forwarder) Addr() string { return f.ln.Addr().String() }

// ProxyURL is "http://<Addr>", for --proxy-server or, in attach mode, the
// proxyServer of Target.createBrowserContext (with ProxyBypassList).
func (f *Forwarder) ProxyURL() string { return "http://" + f.Addr() }

// ProxyBypassList removes Chromium's implicit localhost bypass so loopback
// traffic goes through the forwarder as well (and so through the pool).
const ProxyBypassList = "<-loopback>"

// Pool is the name of the pool this forwarder routes through.
func (f *Forwarder) Pool() string { return f.pool.name }

// Close stops the forwarder and closes every connection it carries.
func (f *Forwarder) Close() error {
	f.closeOnce.Do(func() {
		f.mu.Lock()
		f.closed = true
		conns := make([]*trackedConn, 0, len(f.conns))
		for c := range f.conns {
			conns = append(conns, c)
		}
		f.mu.Unlock()
		_ = f.srv.Close()
		for _, c := range conns {
			_ = c.Close()
		}
		<-f.served
		f.r.release(f)
	})
	return nil
}

// order is the sequence of upstreams to try: the sticky one if it is up,
// the other up ones in config order, then those marked down (a health
// check may be stale). Never another pool, never direct.
func (f *Forwarder) order() []*upstream {
	ups := f.pool.ups
	out := make([]*upstream, 0, len(ups))
	cur := f.sticky.Load()
	if cur != nil && cur.up.Load() {
		out = append(out, cur)
	}
	for _, u := range ups {
		if u != cur && u.up.Load() {
			out = append(out, u)
		}
	}
	for _, u := range ups {
		if !u.up.Load() {
			out = append(out, u)
		}
	}
	return out
}

func (f *Forwarder) succeeded(u *upstream) {
	f.sticky.Store(u)
	if !u.up.Load() {
		u.markUp()
	}
}

// failed records a failed attempt through u.
func (f *Forwarder) failed(u *upstream, err error, peerIsUpstream bool) {
	u.mFail.Inc()
	kind := failUpstream
	var ae *attemptError
	if errors.As(err, &ae) {
		kind = ae.kind
	} else if !peerIsUpstream {
		kind = failTarget
	}
	f.r.log.Warn("geo attempt failed", "pool", u.pool, "upstream", u.index, "addr", u.p.addr, "kind", kindName(kind), "error", errText(err))
	if kind != failTarget {
		u.markDown(err)
	}
}

func kindName(k failKind) string {
	switch k {
	case failUpstream:
		return "upstream"
	case failAuth:
		return "auth"
	case failTarget:
		return "target"
	}
	return "unknown"
}

// dialTunnel is goproxy's CONNECT dialer: a tunnel to target through the
// pool, failing over inside the pool before the tunnel is up.
func (f *Forwarder) dialTunnel(ctx context.Context, target string) (net.Conn, error) {
	ctx = withSession(ctx, f.session)
	var prev *upstream
	for _, u := range f.order() {
		if ctx.Err() != nil {
			break
		}
		if prev != nil {
			prev.mFailover.Inc()
		}
		u.mReq.Inc()
		c, err := u.dialTunnel(ctx, target)
		if err == nil {
			f.succeeded(u)
			return newIdleConn(c, f.r.opts.IdleTimeout), nil
		}
		if ctx.Err() != nil {
			break // the browser gave up: no failure of u
		}
		f.failed(u, err, true)
		var ae *attemptError
		if errors.As(err, &ae) && ae.what == "invalid tunnel target" {
			break
		}
		prev = u
	}
	return nil, errUnavailable
}

// connectionErr answers a CONNECT that no upstream could carry with the
// constant 502. goproxy also calls it for copy errors inside an established
// tunnel; those get nothing written (it would corrupt the stream).
func (f *Forwarder) connectionErr(w io.Writer, _ *goproxy.ProxyCtx, err error) {
	if !errors.Is(err, errUnavailable) {
		return
	}
	_, _ = io.WriteString(w, fmt.Sprintf("HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(unavailableBody), unavailableBody))
}

func unavailableResponse(req *http.Request) *http.Response {
	h := http.Header{}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	return &http.Response{
		Status:        "502 Bad Gateway",
		StatusCode:    http.StatusBadGateway,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(strings.NewReader(unavailableBody)),
		ContentLength: int64(len(unavailableBody)),
		Request:       req,
	}
}

var proxyHeaders = []string{"Proxy-Authorization", "Proxy-Authenticate", "Proxy-Connection"}

func stripProxyHeaders(h http.Header) {
	for _, k := range proxyHeaders {
		h.Del(k)
	}
}

// dropConnectionListed deletes the headers the Connection header names:
// they are for this hop only. "Upgrade" stays (a websocket handshake).
func dropConnectionListed(h http.Header) {
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok != "" && !strings.EqualFold(tok, "Upgrade") && !strings.EqualFold(tok, "Connection") {
				h.Del(tok)
			}
		}
	}
}

// roundTrip carries one plain-HTTP request through the pool. Only http://
// URLs: anything else would send our Proxy-Authorization to a target.
func (f *Forwarder) roundTrip(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
	if req.URL.Scheme != "http" || req.URL.Host == "" {
		return nil, errUnavailable
	}
	stripProxyHeaders(req.Header)
	if err := checkPlainRequest(req); err != nil {
		f.r.log.Debug("geo plain request refused", "pool", f.pool.name, "error", err.Error())
		return nil, errUnavailable
	}
	var body *onceBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &onceBody{rc: req.Body}
		defer req.Body.Close()
	}
	ctx := withSession(req.Context(), f.session)
	var prev *upstream
	for _, u := range f.order() {
		if ctx.Err() != nil {
			break
		}
		if prev != nil {
			prev.mFailover.Inc()
		}
		u.mReq.Inc()
		var resp *http.Response
		var err error
		if u.p.scheme == schemeSOCKS5 {
			r2 := req.WithContext(ctx)
			r2.Header = req.Header.Clone()
			if body != nil {
				r2.Body = body
			}
			resp, err = u.tr.RoundTrip(r2)
		} else {
			// The credential goes from its buffer into a wiped request head.
			resp, err = u.plainRoundTrip(ctx, req, body)
			if err == nil && resp.StatusCode == http.StatusProxyAuthRequired {
				_ = resp.Body.Close()
				u.dropCred(false)
				err = u.fail(failAuth, "request refused: 407", nil)
			}
		}
		if err == nil {
			f.succeeded(u)
			stripProxyHeaders(resp.Header)
			return resp, nil
		}
		if ctx.Err() != nil {
			break // the browser gave up: no failure of u
		}
		f.failed(u, err, u.p.scheme != schemeSOCKS5)
		var ae *attemptError
		retry := errors.As(err, &ae) || idempotent(req.Method)
		if !retry || (body != nil && body.touched.Load()) {
			break
		}
		prev = u
	}
	return nil, errUnavailable
}

func idempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// onceBody lets a request body be offered to several upstreams as long as
// none has read from it; closing is left to roundTrip.
type onceBody struct {
	rc      io.ReadCloser
	touched atomic.Bool
}

func (b *onceBody) Read(p []byte) (int, error) {
	b.touched.Store(true)
	return b.rc.Read(p)
}

func (b *onceBody) Close() error { return nil }

// ---- connections ----

type trackingListener struct {
	net.Listener
	f *Forwarder
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, f: l.f}
	if !l.f.gate.on {
		tc.admit.Do(func() {})
	}
	l.f.mu.Lock()
	if l.f.closed {
		l.f.mu.Unlock()
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.f.conns[tc] = struct{}{}
	l.f.mu.Unlock()
	return tc, nil
}

// trackedConn is a browser connection; the forwarder closes all of them
// (hijacked CONNECT tunnels included) on Close.
//
// With RestrictPeers the peer check runs on the connection's first Read or
// Write, that is on the server's goroutine for this connection, not on the
// accept loop: a check walks /proc (up to about a millisecond when the
// holder is not the last one seen), and a local process that keeps
// connecting must not hold up the browser's own connections behind its
// refusals. Nothing is read or written before the check has passed; a
// refused connection is closed unanswered and counted.
type trackedConn struct {
	net.Conn
	f       *Forwarder
	once    sync.Once
	admit   sync.Once
	refused error
}

// admitted runs the peer check once and reports its verdict.
func (c *trackedConn) admitted() error {
	c.admit.Do(func() {
		perr := c.f.gate.allowed(c.Conn)
		if perr == nil {
			return
		}
		c.f.r.metrics.refused.WithLabelValues(c.f.pool.name).Inc()
		_ = c.Close() // before a byte is read: nothing to answer
		c.f.r.log.Debug("geo forwarder refused a connection from outside the session's browser", "pool", c.f.pool.name, "error", perr.Error())
		// a read error http.Server drops without answering
		c.refused = &net.OpError{Op: "read", Net: "tcp", Source: c.RemoteAddr(), Addr: c.LocalAddr(), Err: perr}
	})
	return c.refused
}

func (c *trackedConn) Read(p []byte) (int, error) {
	if err := c.admitted(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *trackedConn) Write(p []byte) (int, error) {
	if err := c.admitted(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.f.mu.Lock()
		delete(c.f.conns, c)
		c.f.mu.Unlock()
	})
	return c.Conn.Close()
}

// idleConn closes a tunnel once no byte moved either way for idle.
type idleConn struct {
	net.Conn
	idle time.Duration
	last atomic.Int64 // unix nanos of the last read or write
}

func newIdleConn(c net.Conn, idle time.Duration) net.Conn {
	ic := &idleConn{Conn: c, idle: idle}
	ic.last.Store(time.Now().UnixNano())
	return ic
}

func (c *idleConn) Read(p []byte) (int, error) {
	for {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
		n, err := c.Conn.Read(p)
		if n > 0 {
			c.last.Store(time.Now().UnixNano())
		}
		var ne net.Error
		if err != nil && n == 0 && errors.As(err, &ne) && ne.Timeout() &&
			time.Since(time.Unix(0, c.last.Load())) < c.idle {
			continue // the other direction is busy: not idle
		}
		return n, err
	}
}

func (c *idleConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// printfLogger sends goproxy's own messages to slog at debug level. They
// name targets and network errors; our dial errors never hold credentials.
type printfLogger struct{ l *slog.Logger }

func (p printfLogger) Printf(format string, v ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug("goproxy", "detail", strings.TrimSpace(fmt.Sprintf(format, v...)))
	}
}
