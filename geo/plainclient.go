package geo

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/awnumar/memguard"
	"golang.org/x/net/http/httpguts"
)

// The plain-HTTP client of http:// and https:// upstreams: a small HTTP/1.1
// proxy client over a pool of persistent connections to the upstream.
// net/http's Transport is not used for them because it would carry the
// credential as a header string (never wiped), and because of its
// per-request hand-offs between goroutines (readLoop/writeLoop). Here the
// request head, credential included, is built in one byte buffer that is
// wiped once written, and a request runs on the caller's goroutine.
// (What a plain request still costs over the upstream alone is mostly the
// forwarder's own http.Server hop: ~30 µs per exchange on loopback here.)

// maxIdleConns bounds the idle connections kept to one upstream (as
// MaxIdleConnsPerHost did for the Transport).
const maxIdleConns = 16

// errUpgradeRefused is returned for an Upgrade that is not a websocket one.
var errUpgradeRefused = errors.New("geo: protocol upgrade refused")

// pconn is one persistent connection to an upstream proxy.
type pconn struct {
	u      *upstream
	raw    net.Conn // the TCP connection, for liveness checks
	c      net.Conn // raw (or TLS over raw) with the idle timeout
	br     *bufio.Reader
	reused bool
	// session: the geo session whose id the upstream's templated username
	// carried on this connection ("" when the username is fixed); only
	// that session's requests reuse it, so two sessions never share a
	// connection to a gateway that pins the exit per connection.
	session string

	// guarded by u.conns.mu while pooled
	idleAt time.Time
	timer  *time.Timer
}

func (pc *pconn) close() { _ = pc.c.Close() }

// connPool holds an upstream's idle connections, most recently used last.
type connPool struct {
	mu     sync.Mutex
	idle   []*pconn
	closed bool
}

// getConn returns an idle connection to u that still looks alive, or a new
// one (always a new one when fresh).
func (u *upstream) getConn(ctx context.Context, fresh bool) (*pconn, error) {
	session := u.sessionOf(ctx)
	for !fresh {
		pc := u.popIdle(session)
		if pc == nil {
			break
		}
		if connAlive(pc.raw) {
			pc.reused = true
			return pc, nil
		}
		pc.close()
	}
	c, err := u.dialProxy(ctx)
	if err != nil {
		return nil, err
	}
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	pc := &pconn{u: u, raw: raw, c: newIdleConn(c, u.r.opts.IdleTimeout), session: session}
	pc.br = bufio.NewReaderSize(pc.c, 4096)
	return pc, nil
}

// popIdle takes the most recently used idle connection of session (see
// pconn.session), closing the expired ones it passes.
func (u *upstream) popIdle(session string) *pconn {
	p := &u.conns
	idle := u.r.opts.IdleTimeout
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.idle) - 1; i >= 0; i-- {
		pc := p.idle[i]
		expired := time.Since(pc.idleAt) >= idle
		if !expired && pc.session != session {
			continue
		}
		p.idle = slices.Delete(p.idle, i, i+1)
		pc.timer.Stop()
		if expired {
			pc.close()
			continue
		}
		return pc
	}
	return nil
}

// putIdle keeps pc for the next request, or closes it if the pool is full
// or closed. An idle connection is closed after the idle timeout.
func (u *upstream) putIdle(pc *pconn) {
	p := &u.conns
	idle := u.r.opts.IdleTimeout
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdleConns {
		p.mu.Unlock()
		pc.close()
		return
	}
	pc.reused = false
	pc.idleAt = time.Now()
	if pc.timer == nil {
		pc.timer = time.AfterFunc(idle, func() { u.expireIdle(pc) })
	} else {
		pc.timer.Reset(idle)
	}
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

// expireIdle closes pc if it is still in the pool and has been idle for the
// idle timeout (it may have been taken and put back since the timer fired).
func (u *upstream) expireIdle(pc *pconn) {
	p := &u.conns
	p.mu.Lock()
	i := slices.Index(p.idle, pc)
	if i < 0 || time.Since(pc.idleAt) < u.r.opts.IdleTimeout {
		p.mu.Unlock()
		return
	}
	p.idle = slices.Delete(p.idle, i, i+1)
	p.mu.Unlock()
	pc.close()
}

// closeConns closes u's idle connections and keeps none from now on (u is
// retired or its router closed). Its Transport (socks5) does the same.
func (u *upstream) closeConns() {
	p := &u.conns
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, pc := range idle {
		pc.timer.Stop()
		pc.close()
	}
	if u.tr != nil {
		u.tr.CloseIdleConnections()
	}
}

// plainRoundTrip sends req (an http:// URL, already without the browser's
// Proxy-* headers) through u, an http or https upstream, with u's
// credential. body is req's body (nil: none). A pooled connection the
// upstream had closed is replaced by a new one, once, when the request can
// be sent again; that is no failure of u.
func (u *upstream) plainRoundTrip(ctx context.Context, req *http.Request, body *onceBody) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		head, err := u.requestHead(ctx, req, body)
		if err != nil {
			return nil, err
		}
		pc, err := u.getConn(ctx, attempt > 0)
		if err != nil {
			wipeHead(head)
			return nil, err
		}
		resp, wrote, answered, err := pc.roundTrip(ctx, req, head, body)
		if err == nil {
			return resp, nil
		}
		pc.close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if attempt == 0 && pc.reused && !answered && (!wrote || (body == nil && idempotent(req.Method))) {
			continue
		}
		if !wrote {
			return nil, u.fail(failUpstream, "write request", err)
		}
		return nil, fmt.Errorf("%s: %w", u, err)
	}
}

// headPool recycles request-head buffers. A buffer is wiped before it goes
// back: it held a credential.
var headPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func wipeHead(b *[]byte) {
	memguard.WipeBytes(*b)
	*b = (*b)[:0]
	headPool.Put(b)
}

// checkPlainRequest refuses, before any upstream is tried, a request whose
// head could not be written safely, and upgrades other than websocket.
func checkPlainRequest(req *http.Request) error {
	if !httpguts.ValidHeaderFieldName(req.Method) || (req.Host != "" && !validURIPart(req.Host)) || !validURIPart(req.URL.Host) || !validURIPart(req.URL.RequestURI()) {
		return errors.New("invalid request line")
	}
	for k, vs := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return errors.New("invalid request header")
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return errors.New("invalid request header")
			}
		}
	}
	up := req.Header.Get("Upgrade")
	if up != "" && httpguts.HeaderValuesContainsToken(req.Header["Connection"], "Upgrade") && !strings.EqualFold(up, "websocket") {
		return errUpgradeRefused
	}
	return nil
}

// requestHead builds req's head in absolute form, ending with u's
// Proxy-Authorization. req passed checkPlainRequest, and the headers its
// Connection header named were dropped on arrival (dropConnectionListed),
// so they are not looked up again here, per header and per attempt. The
// caller must hand the head to wipeHead.
func (u *upstream) requestHead(ctx context.Context, req *http.Request, body *onceBody) (*[]byte, error) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	upgrade := ""
	if httpguts.HeaderValuesContainsToken(req.Header["Connection"], "Upgrade") {
		upgrade = req.Header.Get("Upgrade")
	}
	bp := headPool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, req.Method...)
	b = append(b, " http://"...)
	b = append(b, req.URL.Host...)
	b = append(b, req.URL.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	for k, vs := range req.Header {
		if hopHeader(k) {
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if upgrade != "" {
		b = append(b, "Connection: Upgrade\r\nUpgrade: "...)
		b = append(b, upgrade...)
		b = append(b, "\r\n"...)
	}
	switch {
	case body != nil && req.ContentLength > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, req.ContentLength, 10)
		b = append(b, "\r\n"...)
	case body != nil:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		b = append(b, "Content-Length: 0\r\n"...)
	}
	*bp = b
	err := u.withCred(ctx, func(cred []byte) {
		const name = "Proxy-Authorization: "
		// Room for the rest first: an append that grew the buffer would
		// leave a copy of the credential behind in the old one.
		b = slices.Grow(b, len(name)+len(cred)+4)
		if cred != nil {
			b = append(b, name...)
			b = append(b, cred...)
			b = append(b, "\r\n"...)
		}
		b = append(b, "\r\n"...)
		*bp = b
	})
	if err != nil {
		wipeHead(bp)
		return nil, err
	}
	return bp, nil
}

// roundTrip writes head (and wipes it), then req's body, and reads the
// response. wrote: a byte may have reached the upstream; answered: a byte
// of a response came back. On error the caller closes pc.
func (pc *pconn) roundTrip(ctx context.Context, req *http.Request, head *[]byte, body *onceBody) (resp *http.Response, wrote, answered bool, err error) {
	// A request the browser gave up on ends here (the Transport did so too).
	stop := context.AfterFunc(ctx, pc.close)
	defer stop()
	n, err := pc.c.Write(*head)
	wipeHead(head)
	if err != nil {
		return nil, n > 0, false, err
	}
	if body != nil {
		if err := writeBody(pc.c, body, req.ContentLength); err != nil {
			return nil, true, false, err
		}
	}
	if _, err := pc.br.Peek(1); err != nil {
		return nil, true, false, err
	}
	for range 10 {
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			return nil, true, true, err
		}
		// Interim responses (100 Continue, 103 Early Hints) are skipped,
		// as the Transport did.
		if resp.StatusCode < 100 || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		resp = nil
	}
	if resp == nil {
		return nil, true, true, errors.New("too many interim responses")
	}
	if resp.StatusCode == http.StatusSwitchingProtocols && req.Header.Get("Upgrade") == "" {
		return nil, true, true, errors.New("101 to a request without Upgrade")
	}
	if !stop() {
		return nil, true, true, ctx.Err() // pc is closed
	}
	switch {
	case resp.StatusCode == http.StatusSwitchingProtocols:
		resp.Body = &upgradedBody{pc: pc}
	case resp.Body == http.NoBody:
		pc.release(!resp.Close)
	default:
		resp.Body = &respBody{pc: pc, rc: resp.Body, keep: !resp.Close}
	}
	return resp, true, true, nil
}

// release gives pc back to the pool once a response is wholly read, if
// keep and nothing more came; else closes it.
func (pc *pconn) release(keep bool) {
	if !keep || pc.br.Buffered() > 0 {
		pc.close()
		return
	}
	pc.u.putIdle(pc)
}

// writeBody sends the request body: n bytes, or chunked when n is unknown.
func writeBody(w io.Writer, body *onceBody, n int64) error {
	if n > 0 {
		m, err := io.Copy(w, io.LimitReader(body, n))
		if err == nil && m != n {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	// Each chunk is written whole: its size line, data and CRLF.
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	const pre = 6 // up to "8000\r\n" for the largest chunk
	for {
		m, rerr := body.Read(buf[pre : len(buf)-2])
		if m > 0 {
			size := strconv.AppendInt(buf[:0:pre], int64(m), 16)
			start := pre - len(size) - 2
			copy(buf[start:], size)
			copy(buf[pre-2:], "\r\n")
			copy(buf[pre+m:], "\r\n")
			if _, err := w.Write(buf[start : pre+m+2]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	_, err := io.WriteString(w, "0\r\n\r\n")
	return err
}

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 6+16<<10+2); return &b }}

// respBody is a response body; once read to its end it gives its
// connection back to the pool (if the response allows), else closes it.
type respBody struct {
	pc    *pconn
	rc    io.ReadCloser
	keep  bool
	state atomic.Int32 // bodyOpen, bodyEOF or bodyClosed; once not open, pc is not ours
}

const (
	bodyOpen int32 = iota
	bodyEOF
	bodyClosed
)

func (b *respBody) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyEOF:
		return 0, io.EOF
	case bodyClosed:
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.rc.Read(p)
	if err == io.EOF && b.state.CompareAndSwap(bodyOpen, bodyEOF) {
		b.pc.release(b.keep)
	} else if err != nil && b.state.CompareAndSwap(bodyOpen, bodyClosed) {
		b.pc.close()
	}
	return n, err
}

func (b *respBody) Close() error {
	if b.state.CompareAndSwap(bodyOpen, bodyClosed) {
		b.pc.close()
	}
	return nil
}

// upgradedBody is the connection after a 101: goproxy relays a websocket
// over it (it reads and writes the body). It is never pooled.
type upgradedBody struct{ pc *pconn }

func (b *upgradedBody) Read(p []byte) (int, error)  { return b.pc.br.Read(p) }
func (b *upgradedBody) Write(p []byte) (int, error) { return b.pc.c.Write(p) }
func (b *upgradedBody) Close() error                { return b.pc.c.Close() }

// hopHeader reports the headers never forwarded as they are: hop-by-hop
// ones, framing (written from the body), Host (written from req.Host) and
// proxy credentials.
func hopHeader(k string) bool {
	switch textproto.CanonicalMIMEHeaderKey(k) {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Content-Length", "Host", "Proxy-Authorization", "Proxy-Authenticate":
		return true
	}
	return false
}

// validURIPart: no byte that could end or split the request line.
func validURIPart(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// connAlive reports whether an idle connection can still carry a request:
// nothing is waiting to be read on it (no EOF from an upstream that closed
// it, no unsolicited bytes). It never blocks: one non-blocking MSG_PEEK.
// (geo is Linux-only already; see peer.go.)
func connAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = rerr == syscall.EAGAIN
		return true
	})
	return err == nil && alive
}
