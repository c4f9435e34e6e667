package geo

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awnumar/memguard"
	"github.com/prometheus/client_golang/prometheus"
)

// failKind classifies why an attempt through an upstream failed.
type failKind int

const (
	// failUpstream: the upstream itself is unreachable or broken (dial, TLS,
	// protocol, timeout). The upstream is marked down.
	failUpstream failKind = iota + 1
	// failAuth: the upstream refused our credentials (407, SOCKS auth). The
	// cached credential is dropped and the upstream marked down.
	failAuth
	// failTarget: the upstream works but could not reach the target. The
	// session still tries another upstream, but this one stays up.
	failTarget
)

// attemptError is the error of one attempt through one upstream. Its text
// names the pool, the upstream index and host:port, never a credential.
type attemptError struct {
	kind failKind
	what string
	err  error
}

func (e *attemptError) Error() string {
	if e.err == nil {
		return e.what
	}
	return e.what + ": " + e.err.Error()
}

func (e *attemptError) Unwrap() error { return e.err }

// errUnavailable is returned when no upstream of the pool could carry a
// connection. Its text is the constant error body.
var errUnavailable = errors.New(unavailableBody)

const unavailableBody = "cdpvault: upstream unavailable"

// upstream is one upstream proxy of a pool, with its health, its cached
// credential and its connections for plain HTTP.
type upstream struct {
	r     *Router
	pool  string
	index int
	cfg   UpstreamConfig
	p     parsedUpstream

	up atomic.Bool

	// health scheduling, guarded by hmu
	hmu      sync.Mutex
	fails    int
	next     time.Time
	checking bool

	// credential, guarded by cmu. For http/https it holds the whole
	// Proxy-Authorization value ("Basic ..."), for socks5 and for a
	// username with {session} (templated) the password.
	cmu       sync.RWMutex
	cred      *memguard.LockedBuffer
	retired   bool
	templated bool
	healthID  string // {session} of health checks, which belong to no session

	conns connPool        // http/https: idle connections for plain HTTP
	tr    *http.Transport // socks5: plain HTTP through tunnels to the targets

	// this upstream's metric children (labels resolved once)
	mUp                    prometheus.Gauge
	mReq, mFail, mFailover prometheus.Counter

	refs int // open forwarders whose pool holds this upstream; guarded by Router.mu
}

func newUpstream(r *Router, pool string, index int, cfg UpstreamConfig) (*upstream, error) {
	p, err := parseUpstreamURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("geo pool %q upstream %d: %w", pool, index, err)
	}
	u := &upstream{r: r, pool: pool, index: index, cfg: cfg, p: p}
	if templated(cfg.Username) {
		if p.scheme == schemeSOCKS5 {
			return nil, fmt.Errorf("geo pool %q upstream %d: username: %s is supported on http and https upstreams only", pool, index, SessionPlaceholder)
		}
		u.templated = true
		if u.healthID, err = newSessionID(); err != nil {
			return nil, fmt.Errorf("geo pool %q upstream %d: %w", pool, index, err)
		}
	}
	u.up.Store(true) // assumed up until a check or a connection says otherwise
	if p.scheme == schemeSOCKS5 {
		u.tr = u.newTransport()
	}
	l := u.labels()
	u.mUp, u.mReq = r.metrics.up.With(l), r.metrics.requests.With(l)
	u.mFail, u.mFailover = r.metrics.failures.With(l), r.metrics.failovers.With(l)
	u.mUp.Set(1)
	return u, nil
}

// same reports whether u was built from exactly this configuration.
func (u *upstream) same(pool string, index int, cfg UpstreamConfig) bool {
	return u.pool == pool && u.index == index && u.cfg == cfg
}

func (u *upstream) String() string {
	return fmt.Sprintf("geo upstream %s/%d (%s)", u.pool, u.index, u.p.addr)
}

func (u *upstream) fail(kind failKind, what string, err error) *attemptError {
	return &attemptError{kind: kind, what: u.String() + ": " + what, err: err}
}

// ---- credentials ----

// withCred calls fn with the credential bytes (nil when the upstream needs
// none). fn must copy what it needs and not keep b. A templated username
// is expanded with the geo session of ctx (see withSession); the
// Proxy-Authorization value is then built for this call in a buffer wiped
// when fn returns.
func (u *upstream) withCred(ctx context.Context, fn func(b []byte)) error {
	if u.cfg.Username == "" {
		fn(nil)
		return nil
	}
	for range 2 {
		u.cmu.RLock()
		if u.cred != nil {
			if u.templated {
				b := basicAuth(expandUsername(u.cfg.Username, u.sessionOf(ctx)), u.cred.Bytes())
				u.cmu.RUnlock()
				fn(b)
				memguard.WipeBytes(b)
				return nil
			}
			fn(u.cred.Bytes())
			u.cmu.RUnlock()
			return nil
		}
		retired := u.retired
		u.cmu.RUnlock()
		if retired {
			return u.fail(failUpstream, "upstream retired", nil)
		}
		if err := u.loadCred(ctx); err != nil {
			return err
		}
	}
	return u.fail(failAuth, "credential unavailable", nil)
}

// basicAuth returns "Basic " and the base64 of user:pw in a new slice that
// the caller wipes; the plain user:pw is wiped before it returns.
func basicAuth(user string, pw []byte) []byte {
	n := len(user) + 1 + len(pw)
	plain := make([]byte, n)
	copy(plain, user)
	plain[len(user)] = ':'
	copy(plain[len(user)+1:], pw)
	const prefix = "Basic "
	b := make([]byte, len(prefix)+base64.StdEncoding.EncodedLen(n))
	copy(b, prefix)
	base64.StdEncoding.Encode(b[len(prefix):], plain)
	memguard.WipeBytes(plain)
	return b
}

func (u *upstream) loadCred(ctx context.Context) error {
	u.cmu.Lock()
	defer u.cmu.Unlock()
	if u.cred != nil || u.retired {
		return nil
	}
	if u.r.opts.Credentials == nil {
		return u.fail(failAuth, "no credentials resolver configured", nil)
	}
	pw, err := u.r.opts.Credentials(ctx, u.cfg.PasswordSecret)
	if err != nil {
		return u.fail(failAuth, "resolve password_secret", err)
	}
	if pw == nil {
		return u.fail(failAuth, "password_secret resolved to nothing", nil)
	}
	defer pw.Destroy()
	if !pw.IsAlive() || pw.Size() == 0 {
		return u.fail(failAuth, "password_secret is empty", nil)
	}
	if u.p.scheme == schemeSOCKS5 && pw.Size() > 255 {
		return u.fail(failAuth, "password longer than SOCKS5 allows (255 bytes)", nil)
	}
	var b *memguard.LockedBuffer
	if u.p.scheme == schemeSOCKS5 || u.templated {
		b = memguard.NewBuffer(pw.Size()) // the password alone
		b.Copy(pw.Bytes())
	} else {
		v := basicAuth(u.cfg.Username, pw.Bytes())
		b = memguard.NewBuffer(len(v))
		b.Move(v) // wipes v
	}
	b.Freeze()
	u.cred = b
	return nil
}

// sessionKey carries a geo session's id in a context (withSession).
type sessionKey struct{}

// withSession returns ctx carrying the geo session id that expands a
// templated username.
func withSession(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, sessionKey{}, id)
}

func sessionFrom(ctx context.Context) string {
	id, _ := ctx.Value(sessionKey{}).(string)
	return id
}

// sessionOf is the id that expands u's templated username for a request
// with ctx: the geo session's, or the health checks' own when ctx has none
// ("" when u's username is fixed).
func (u *upstream) sessionOf(ctx context.Context) string {
	if !u.templated {
		return ""
	}
	if id := sessionFrom(ctx); id != "" {
		return id
	}
	return u.healthID
}

// newSessionID returns SessionIDLen random lowercase letters and digits.
func newSessionID() (string, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var raw [SessionIDLen]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("session id: %w", err)
	}
	var id [SessionIDLen]byte
	for i, r := range raw {
		id[i] = alphabet[int(r)%len(alphabet)] // 256 % 36: a slight bias, harmless for an id
	}
	return string(id[:]), nil
}

// dropCred destroys the cached credential (after a 407, or on retirement).
func (u *upstream) dropCred(retire bool) {
	u.cmu.Lock()
	if u.cred != nil {
		u.cred.Destroy()
		u.cred = nil
	}
	if retire {
		u.retired = true
	}
	u.cmu.Unlock()
}

// ---- dialing ----

func (u *upstream) tlsConfig() *tls.Config {
	return &tls.Config{
		ServerName: u.p.host,
		RootCAs:    u.r.opts.RootCAs, // nil: system roots. Never InsecureSkipVerify.
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
	}
}

// dialProxy opens a connection to the upstream itself (TCP, plus TLS for https).
func (u *upstream) dialProxy(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: u.r.opts.DialTimeout, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", u.p.addr)
	if err != nil {
		return nil, u.fail(failUpstream, "dial", err)
	}
	if u.p.scheme != schemeHTTPS {
		return c, nil
	}
	tc := tls.Client(c, u.tlsConfig())
	hctx, cancel := context.WithTimeout(ctx, u.r.opts.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = c.Close()
		return nil, u.fail(failUpstream, "tls handshake", err)
	}
	return tc, nil
}

// handshakeDeadline bounds a tunnel handshake on c by the handshake
// timeout and by ctx; the returned func stops watching ctx.
func (u *upstream) handshakeDeadline(ctx context.Context, c net.Conn) func() bool {
	_ = c.SetDeadline(time.Now().Add(u.r.opts.HandshakeTimeout))
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}

// validTarget reports whether target is a host:port fit for a CONNECT line.
func validTarget(target string) bool {
	if target == "" || len(target) > 1024 || strings.IndexFunc(target, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return false
	}
	h, p, err := net.SplitHostPort(target)
	return err == nil && h != "" && p != ""
}

// dialTunnel opens a tunnel to target (host:port) through u. The hostname is
// passed to the upstream as is: it is never resolved locally.
func (u *upstream) dialTunnel(ctx context.Context, target string) (net.Conn, error) {
	if !validTarget(target) {
		return nil, &attemptError{kind: failTarget, what: "invalid tunnel target"}
	}
	if u.p.scheme == schemeSOCKS5 {
		return u.dialSOCKS(ctx, target)
	}
	return u.dialCONNECT(ctx, target)
}

// dialHandshake connects to u and runs handshake (a tunnel's) on the
// connection, bounded by the handshake timeout and ctx. The connection is
// closed if handshake fails; else handshake's conn is returned without a
// deadline.
func (u *upstream) dialHandshake(ctx context.Context, handshake func(c net.Conn) (net.Conn, error)) (net.Conn, error) {
	c, err := u.dialProxy(ctx)
	if err != nil {
		return nil, err
	}
	stop := u.handshakeDeadline(ctx, c)
	out, err := handshake(c)
	stop()
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return out, nil
}

func (u *upstream) dialCONNECT(ctx context.Context, target string) (net.Conn, error) {
	return u.dialHandshake(ctx, func(c net.Conn) (net.Conn, error) { return u.connectHandshake(ctx, c, target) })
}

func (u *upstream) connectHandshake(ctx context.Context, c net.Conn, target string) (net.Conn, error) {
	var req []byte
	err := u.withCred(ctx, func(cred []byte) {
		req = make([]byte, 0, 64+2*len(target)+len(cred))
		req = append(req, "CONNECT "...)
		req = append(req, target...)
		req = append(req, " HTTP/1.1\r\nHost: "...)
		req = append(req, target...)
		req = append(req, "\r\n"...)
		if cred != nil {
			req = append(req, "Proxy-Authorization: "...)
			req = append(req, cred...)
			req = append(req, "\r\n"...)
		}
		req = append(req, "\r\n"...)
	})
	if err != nil {
		return nil, err
	}
	_, err = c.Write(req)
	memguard.WipeBytes(req)
	if err != nil {
		return nil, u.fail(failUpstream, "write CONNECT", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, u.fail(failUpstream, "read CONNECT response", err)
	}
	switch {
	case resp.StatusCode == http.StatusProxyAuthRequired:
		u.dropCred(false)
		return nil, u.fail(failAuth, "CONNECT refused: 407", nil)
	case resp.StatusCode/100 != 2:
		return nil, u.fail(failTarget, fmt.Sprintf("CONNECT refused: %d", resp.StatusCode), nil)
	}
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: c, r: io.MultiReader(io.LimitReader(br, int64(br.Buffered())), c)}, nil
	}
	return c, nil
}

type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// newTransport builds the transport carrying plain-HTTP requests through u,
// a socks5 upstream: every dial is a tunnel through u, and there is no
// proxy (no credential header: the SOCKS5 handshake carries it).
// http/https upstreams use plainRoundTrip instead.
func (u *upstream) newTransport() *http.Transport {
	tr := &http.Transport{
		DisableCompression:    true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       u.r.opts.IdleTimeout,
		TLSHandshakeTimeout:   u.r.opts.HandshakeTimeout,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     false,
		Proxy:                 nil,
	}
	// Connections idle (no byte either way) for IdleTimeout are closed, so a
	// hung upstream cannot hold a request for ever.
	tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
		c, err := u.dialSOCKS(ctx, addr)
		if err != nil {
			return nil, err
		}
		return newIdleConn(c, u.r.opts.IdleTimeout), nil
	}
	tr.DialTLSContext = func(context.Context, string, string) (net.Conn, error) {
		return nil, u.fail(failTarget, "direct dial refused", nil)
	}
	return tr
}

// ---- health ----

// probe checks that u answers: TCP (http), TLS with a verified certificate
// (https), a SOCKS5 greeting (socks5); or, when Options.HealthTarget is set,
// a full authenticated tunnel to it.
func (u *upstream) probe(ctx context.Context) error {
	if t := u.r.opts.HealthTarget; t != "" {
		c, err := u.dialTunnel(ctx, t)
		if err != nil {
			return err
		}
		return c.Close()
	}
	c, err := u.dialProxy(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if u.p.scheme != schemeSOCKS5 {
		return nil
	}
	defer u.handshakeDeadline(ctx, c)()
	if err := socksGreet(c, u.cfg.Username != ""); err != nil {
		return u.fail(failUpstream, "socks5 greeting", err)
	}
	return nil
}

// healthDelay is the wait before the next check of an upstream that failed
// its last fails checks in a row (0: healthy). Healthy upstreams are checked
// every interval; a down one first after interval/8, then twice as long
// each time, at most 4x interval.
func healthDelay(interval time.Duration, fails int) time.Duration {
	if fails <= 0 {
		return interval
	}
	d := interval / 8
	if d <= 0 {
		d = time.Millisecond
	}
	maxD := 4 * interval
	for i := 1; i < fails && d < maxD; i++ {
		d *= 2
	}
	return min(d, maxD)
}

func (u *upstream) markUp() {
	u.hmu.Lock()
	u.fails = 0
	u.next = time.Now().Add(u.r.opts.HealthInterval)
	u.hmu.Unlock()
	if !u.up.Swap(true) {
		u.r.log.Info("geo upstream up", "pool", u.pool, "upstream", u.index, "addr", u.p.addr)
	}
	u.mUp.Set(1)
}

func (u *upstream) markDown(err error) {
	u.hmu.Lock()
	u.fails++
	u.next = time.Now().Add(healthDelay(u.r.opts.HealthInterval, u.fails))
	u.hmu.Unlock()
	if u.up.Swap(false) {
		u.r.log.Warn("geo upstream down", "pool", u.pool, "upstream", u.index, "addr", u.p.addr, "error", errText(err))
	}
	u.mUp.Set(0)
	u.r.wakeHealth()
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
