package cdpproxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// DefaultMaxMessage is Chrome's own limit for a DevTools message.
const DefaultMaxMessage = 256 << 20

// Options configure a Proxy.
type Options struct {
	// AllowOrigins lists the Origin header values allowed to use discovery
	// and WebSockets ("*" allows any). A request without Origin is allowed.
	AllowOrigins []string
	// Logger receives the proxy's logs (never a message payload); nil
	// discards them.
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	// MaxMessage is the largest message accepted in either direction
	// (default 256 MiB).
	MaxMessage int64
	// Discovery, when set, is applied to every discovery response body
	// after the URLs were rewritten (the daemon scrubs it). It owns body and
	// returns the body to send.
	Discovery func(s *Session, body []byte) ([]byte, error)
	// DialTimeout bounds the upstream WebSocket dial and discovery requests
	// (default 10s).
	DialTimeout time.Duration
}

// Proxy serves the discovery endpoints and WebSockets of registered
// sessions under /session/{token}/.
type Proxy struct {
	o   Options
	log *slog.Logger

	// base is cancelled by Shutdown: it aborts upstream dials in progress.
	base       context.Context
	cancelBase context.CancelFunc

	mu       sync.Mutex
	sessions map[string]*sessionEntry
	closed   bool
	wg       sync.WaitGroup
}

type sessionEntry struct {
	s     *Session
	conns map[*proxyConn]struct{}
}

// New creates a Proxy. It starts nothing.
func New(o Options) *Proxy {
	if o.MaxMessage <= 0 {
		o.MaxMessage = DefaultMaxMessage
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base, cancel := context.WithCancel(context.Background())
	return &Proxy{
		o:          o,
		log:        log,
		base:       base,
		cancelBase: cancel,
		sessions:   make(map[string]*sessionEntry),
	}
}

// Register makes /session/<s.Token>/... live. Registering a token again
// replaces the session (its open sockets stay with the old one).
func (p *Proxy) Register(s *Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.sessions[s.Token]; ok {
		old.s = s
		return
	}
	p.sessions[s.Token] = &sessionEntry{s: s, conns: make(map[*proxyConn]struct{})}
	p.o.Metrics.sessionDelta(1)
}

// Unregister removes a session: new requests for it get 404 and each of its
// sockets is sent a close frame (1001 going away) on both legs.
func (p *Proxy) Unregister(token string) {
	p.mu.Lock()
	e, ok := p.sessions[token]
	if ok {
		delete(p.sessions, token)
		p.o.Metrics.sessionDelta(-1)
	}
	var conns []*proxyConn
	if ok {
		for c := range e.conns {
			conns = append(conns, c)
		}
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.goAway(ws.StatusGoingAway, "cdpvault: session ended")
	}
}

// SessionConns returns the number of open WebSocket connections of a session.
func (p *Proxy) SessionConns(token string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.sessions[token]; ok {
		return len(e.conns)
	}
	return 0
}

// Shutdown refuses new connections, sends a close frame (1001) to every
// proxied connection on both legs and waits for them to end. When ctx ends
// first the remaining connections are closed hard and ctx's error returned.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.cancelBase()
	var conns []*proxyConn
	for _, e := range p.sessions {
		for c := range e.conns {
			conns = append(conns, c)
		}
	}
	p.mu.Unlock()
	var cw sync.WaitGroup
	for _, c := range conns {
		cw.Add(1)
		go func() {
			defer cw.Done()
			c.goAway(ws.StatusGoingAway, "cdpvault: shutting down")
		}()
	}
	cw.Wait()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			c.client.Close()
			c.upstream.Close()
		}
		<-done
		return fmt.Errorf("cdp proxy shutdown: %w", ctx.Err())
	}
}

// ServeHTTP serves /session/{token}/json... and /session/{token}/devtools/...
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/session/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	if !hostAllowed(r.Host) {
		http.Error(w, "cdpvault: Host header is not an IP address or localhost", http.StatusBadRequest)
		return
	}
	if o := r.Header.Get("Origin"); o != "" && !p.originAllowed(o) {
		http.Error(w, "cdpvault: Origin "+strconvQuote(o)+" is not allowed (allow_origins)", http.StatusForbidden)
		return
	}
	token, sub, _ := strings.Cut(rest, "/")
	s := p.lookup(token)
	if s == nil {
		http.Error(w, "cdpvault: unknown or expired session", http.StatusNotFound)
		return
	}
	sub = "/" + sub
	switch {
	case sub == "/json" || strings.HasPrefix(sub, "/json/"):
		p.serveDiscovery(w, r, s, token, sub)
	case strings.HasPrefix(sub, "/devtools/browser/"), strings.HasPrefix(sub, "/devtools/page/"):
		p.serveWS(w, r, s, token, sub)
	default:
		http.NotFound(w, r)
	}
}

func strconvQuote(s string) string {
	if len(s) > 100 {
		s = s[:100]
	}
	return fmt.Sprintf("%q", s)
}

func (p *Proxy) lookup(token string) *Session {
	if token == "" {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.sessions[token]; ok {
		return e.s
	}
	return nil
}

// hostAllowed is Chrome's DNS-rebinding guard: the Host must be an IP
// address or localhost.
func hostAllowed(host string) bool {
	if host == "" {
		return false
	}
	h := host
	if sh, _, err := net.SplitHostPort(host); err == nil {
		h = sh
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return strings.EqualFold(h, "localhost") || net.ParseIP(h) != nil
}

func (p *Proxy) originAllowed(o string) bool {
	for _, a := range p.o.AllowOrigins {
		if a == "*" || strings.EqualFold(strings.TrimSuffix(a, "/"), o) {
			return true
		}
	}
	return false
}

// upstreamHost returns the host:port to dial and the Host header Chrome will
// accept for the session's upstream.
func upstreamHost(s *Session) (addr, hostHeader, scheme string, err error) {
	u, err := url.Parse(s.Upstream)
	if err != nil || u.Host == "" {
		return "", "", "", fmt.Errorf("session upstream %q is not a URL", s.Upstream)
	}
	scheme = u.Scheme
	addr = u.Host
	if u.Port() == "" {
		if scheme == "https" {
			addr = net.JoinHostPort(u.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	hostHeader = addr
	if h := u.Hostname(); net.ParseIP(h) == nil && !strings.EqualFold(h, "localhost") {
		hostHeader = net.JoinHostPort("localhost", u.Port())
		if u.Port() == "" {
			hostHeader = "localhost"
		}
	}
	return addr, hostHeader, scheme, nil
}

func (p *Proxy) serveWS(w http.ResponseWriter, r *http.Request, s *Session, token, sub string) {
	if r.Method != http.MethodGet || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "cdpvault: WebSocket upgrade expected", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.wg.Add(1)
	}
	p.mu.Unlock()
	if closed {
		http.Error(w, "cdpvault: shutting down", http.StatusServiceUnavailable)
		return
	}
	defer p.wg.Done()

	addr, hostHeader, scheme, err := upstreamHost(s)
	if err != nil {
		p.log.Error("cdp upstream misconfigured", "session", s.ID, "err", err)
		http.Error(w, "cdpvault: browser unavailable", http.StatusBadGateway)
		return
	}
	tr := newTracker(TargetInfo{Type: "browser", TargetID: strings.TrimPrefix(sub, "/devtools/browser/")})
	if id, ok := strings.CutPrefix(sub, "/devtools/page/"); ok {
		tr.root = TargetInfo{Type: "page", TargetID: id}
		p.pageInfo(r.Context(), s, id, tr)
	}

	wsScheme := "ws"
	if scheme == "https" {
		wsScheme = "wss"
	}
	var status int
	d := ws.Dialer{
		Timeout:       p.o.DialTimeout,
		Host:          hostHeader,
		OnStatusError: func(st int, _ []byte, _ io.Reader) { status = st },
		NetDial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	dctx, dcancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(p.base, dcancel)
	up, ubr, _, err := d.Dial(dctx, wsScheme+"://"+addr+sub)
	stop()
	dcancel()
	if err != nil {
		tr.close()
		p.log.Info("cdp upstream dial failed", "session", s.ID, "status", status, "err", err)
		if status == http.StatusNotFound {
			http.Error(w, "cdpvault: no such target", http.StatusNotFound)
		} else {
			http.Error(w, "cdpvault: browser unavailable", http.StatusBadGateway)
		}
		return
	}
	cl, crw, _, err := ws.HTTPUpgrader{Timeout: 10 * time.Second}.Upgrade(r, w)
	if err != nil {
		tr.close()
		up.Close()
		if ubr != nil {
			ws.PutReader(ubr)
		}
		if cl != nil {
			cl.Close()
		}
		return
	}
	setNoDelay(cl)
	setNoDelay(up)

	ctx, cancel := context.WithCancel(context.Background())
	// one sysIO per socket, for its reader and its writer
	csys, usys := newSysIO(cl), newSysIO(up)
	c := &proxyConn{
		p: p, s: s, log: p.log,
		client: cl, upstream: up,
		cr:  newFrameReader(cl, csys, clientReadBuf, p.o.MaxMessage, true),
		br:  newFrameReader(up, usys, browserReadBuf, p.o.MaxMessage, false),
		cw:  &frameWriter{conn: cl, sys: csys},
		bw:  &frameWriter{conn: up, sys: usys, mask: true},
		tr:  tr,
		ctx: ctx, cancel: cancel,
		done: make(chan struct{}),
	}
	c.evConn = eventConn{c}
	c.nextCall.Store(callIDTop + 1)
	if n := crw.Reader.Buffered(); n > 0 {
		b, _ := crw.Reader.Peek(n)
		c.cr.preload(b)
		clear(b)
		crw.Reader.Discard(n)
	}
	if ubr != nil {
		if n := ubr.Buffered(); n > 0 {
			b, _ := ubr.Peek(n)
			c.br.preload(b)
			clear(b)
			ubr.Discard(n)
		}
		ws.PutReader(ubr)
	}

	p.mu.Lock()
	e, ok := p.sessions[token]
	if ok && !p.closed {
		e.conns[c] = struct{}{}
	}
	p.mu.Unlock()
	if !ok || p.isClosed() {
		c.goAway(ws.StatusGoingAway, "cdpvault: session ended")
		cl.Close()
		up.Close()
		cancel()
		c.cr.close()
		c.br.close()
		tr.close()
		return
	}
	p.o.Metrics.connDelta(1)
	if s.Interceptors != nil {
		c.ics = s.Interceptors(s)
	}
	c.serve()
	p.o.Metrics.connDelta(-1)
	p.mu.Lock()
	if e, ok := p.sessions[token]; ok {
		delete(e.conns, c)
	}
	p.mu.Unlock()
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func setNoDelay(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
}
