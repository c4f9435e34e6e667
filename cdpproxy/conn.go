package cdpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Ids of the daemon's own commands (Conn.Call) come from the top of the
// int32 range, counting down; Chrome only accepts ids below 2^31. A client
// command with an id in this range is refused.
const (
	callIDTop = 1<<31 - 1
	callIDLow = 1<<31 - 1<<24
)

// ErrCallInEvent is returned by Call on the Conn handed to Interceptor.Event.
var ErrCallInEvent = errors.New("cdpvault: Conn.Call cannot be used from Event")

// ErrConnClosed is returned by Call and WriteClient once the connection ended.
var ErrConnClosed = errors.New("cdpvault: connection closed")

const (
	clientReadBuf  = 4 << 10
	browserReadBuf = 8 << 10
	closeGrace     = 2 * time.Second
	maxPending     = 1 << 16
)

type pendKey struct {
	sid string
	id  int64
}

type callResult struct {
	result json.RawMessage
	err    error
}

// proxyConn is one client WebSocket and its upstream WebSocket to Chrome.
type proxyConn struct {
	p   *Proxy
	s   *Session
	log *slog.Logger

	client, upstream net.Conn
	cr, br           *frameReader
	cw, bw           *frameWriter

	ics     []Interceptor
	tr      *tracker
	ctx     context.Context
	cancel  context.CancelFunc
	closing atomic.Bool
	done    chan struct{}

	pmu     sync.Mutex
	pending map[pendKey]string

	cmu      sync.Mutex
	calls    map[int64]chan callResult
	nextCall atomic.Int64

	cIntern, bIntern interner
	bHold, cHold     bool   // gathering writes to browser / client
	cSeq, bSeq       uint32 // messages read from client / browser
	cmsg, bmsg       Message
	evConn           eventConn
}

// eventConn is the Conn handed to Event: Call is refused there.
type eventConn struct{ *proxyConn }

func (e eventConn) Call(context.Context, string, string, any) (json.RawMessage, error) {
	return nil, ErrCallInEvent
}

// Async implements Asyncer: the connection itself, whose Call works from
// any goroutine but the one running Event.
func (e eventConn) Async() Conn { return e.proxyConn }

// Asyncer is implemented by the Conn handed to Event. Async returns a Conn
// of the same connection whose Call works from another goroutine (one
// Event starts; Event itself must not wait for it).
type Asyncer interface {
	Async() Conn
}

// Caller returns the Conn a goroutine started from Event calls with: c's
// Async when c is Event's Conn, else c.
func Caller(c Conn) Conn {
	if a, ok := c.(Asyncer); ok {
		return a.Async()
	}
	return c
}

// Session implements Conn.
func (c *proxyConn) Session() *Session { return c.s }

// Target implements Conn.
func (c *proxyConn) Target(sessionID string) (TargetInfo, bool) { return c.tr.get(sessionID) }

// WriteClient implements Conn.
func (c *proxyConn) WriteClient(data []byte) error {
	defer wipe(data)
	if err := c.cw.write(ws.OpText, data); err != nil {
		return fmt.Errorf("write to client: %w", err)
	}
	c.p.o.Metrics.count(false)
	return nil
}

// Call implements Conn.
func (c *proxyConn) Call(ctx context.Context, sessionID, method string, params any) (json.RawMessage, error) {
	select {
	case <-c.done:
		return nil, ErrConnClosed
	default:
	}
	id := c.nextCall.Add(-1)
	if id < callIDLow {
		// wrap around inside the reserved range; 16M outstanding calls cannot happen
		c.nextCall.CompareAndSwap(id, callIDTop)
		id = c.nextCall.Add(-1)
	}
	var ps []byte
	switch p := params.(type) {
	case nil:
	case json.RawMessage:
		// Used as is: json.Marshal would compact it through encoding/json's
		// pooled buffer, leaving an unwiped copy of params that may hold a
		// value (injection). The caller vouches for its validity.
		ps = append(make([]byte, 0, len(p)), p...)
	default:
		var err error
		if ps, err = json.Marshal(params); err != nil {
			return nil, fmt.Errorf("cdp call %s: encode params: %w", method, err)
		}
	}
	msg := make([]byte, 0, 64+len(method)+len(sessionID)+len(ps))
	msg = append(msg, `{"id":`...)
	msg = strconv.AppendInt(msg, id, 10)
	msg = append(msg, `,"method":`...)
	msg = strconv.AppendQuote(msg, method)
	if ps != nil {
		msg = append(msg, `,"params":`...)
		msg = append(msg, ps...)
		wipe(ps)
	}
	if sessionID != "" {
		msg = append(msg, `,"sessionId":`...)
		msg = strconv.AppendQuote(msg, sessionID)
	}
	msg = append(msg, '}')
	ch := make(chan callResult, 1)
	c.cmu.Lock()
	if c.calls == nil {
		c.calls = make(map[int64]chan callResult)
	}
	c.calls[id] = ch
	c.cmu.Unlock()
	err := c.bw.write(ws.OpText, msg)
	wipe(msg)
	if err != nil {
		c.dropCall(id)
		return nil, fmt.Errorf("cdp call %s: %w", method, err)
	}
	c.p.o.Metrics.count(true)
	select {
	case r := <-ch:
		return r.result, r.err
	case <-ctx.Done():
		c.dropCall(id)
		return nil, fmt.Errorf("cdp call %s: %w", method, ctx.Err())
	case <-c.done:
		c.dropCall(id)
		return nil, ErrConnClosed
	}
}

func (c *proxyConn) dropCall(id int64) {
	c.cmu.Lock()
	delete(c.calls, id)
	c.cmu.Unlock()
}

// serve runs the client-read pump on the calling goroutine and the
// browser-read pump on a new one, and tears both down.
func (c *proxyConn) serve() {
	bdone := make(chan struct{})
	go func() {
		defer close(bdone)
		c.browserPump()
	}()
	c.clientPump()
	<-bdone
	close(c.done)
	c.cancel()
	c.client.Close()
	c.upstream.Close()
	for _, ic := range c.ics {
		func() {
			defer func() {
				if r := recover(); r != nil {
					c.log.Error("cdp interceptor Close panicked", "panic", fmt.Sprint(r))
				}
			}()
			ic.Close()
		}()
	}
	c.cmu.Lock()
	for id, ch := range c.calls {
		ch <- callResult{err: ErrConnClosed}
		delete(c.calls, id)
	}
	c.cmu.Unlock()
	c.cr.close()
	c.br.close()
	c.cw.close()
	c.bw.close()
	c.tr.close()

}

// goAway sends close frames to both sides and bounds the closing handshake.
func (c *proxyConn) goAway(code ws.StatusCode, reason string) {
	c.closing.Store(true)
	dl := time.Now().Add(closeGrace)
	c.client.SetWriteDeadline(dl)
	c.upstream.SetWriteDeadline(dl)
	c.cw.writeClose(code, reason)
	c.bw.writeClose(code, reason)
	c.client.SetReadDeadline(dl)
	c.upstream.SetReadDeadline(dl)
}

// linger bounds how long the other leg may take to finish.
func (c *proxyConn) linger(conn net.Conn) {
	c.closing.Store(true)
	conn.SetReadDeadline(time.Now().Add(closeGrace))
}

// validClose checks a close frame body: empty, or a code that may be sent
// on the wire and a UTF-8 reason.
func validClose(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	if len(p) == 1 || !utf8.Valid(p[2:]) {
		return false
	}
	code := int(p[0])<<8 | int(p[1])
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1011, code >= 3000 && code <= 4999:
		return true
	}
	return false
}

func closeCode(payload []byte) (ws.StatusCode, string) {
	if len(payload) < 2 {
		return 0, ""
	}
	return ws.StatusCode(uint16(payload[0])<<8 | uint16(payload[1])), string(payload[2:])
}

func (c *proxyConn) clientPump() {
	for {
		if c.bHold && !c.cr.buffered() {
			// about to wait for input: write what was gathered
			c.bHold = false
			c.bw.setHold(false)
		}
		op, p, err := c.cr.next()
		if err != nil {
			c.clientReadError(err)
			return
		}
		switch op {
		case ws.OpPing, ws.OpPong:
			c.bw.write(op, p)
			wipe(p)
			continue
		case ws.OpClose:
			// forward the client's close (code and reason) to the browser;
			// the browser's answer comes back through browserPump.
			if !validClose(p) {
				c.cw.writeClose(ws.StatusProtocolError, "cdpvault: invalid close frame")
				c.bw.writeClose(ws.StatusGoingAway, "")
			} else {
				c.bw.write(ws.OpClose, p)
			}
			wipe(p)
			c.linger(c.upstream)
			return
		case ws.OpBinary:
			c.cr.release(p)
			c.log.Info("cdp client sent a binary frame; closing", "session", c.s.ID)
			c.cw.writeClose(ws.StatusUnsupportedData, "cdpvault: binary frames are not CDP")
			c.bw.writeClose(ws.StatusGoingAway, "")
			c.linger(c.upstream)
			return
		}
		start := c.timeSample(&c.cSeq)
		if !c.bHold && c.cr.buffered() {
			c.bHold = true
			c.bw.setHold(true)
		}
		ok := c.command(p)
		c.cr.release(p)
		if !ok {
			c.bw.setHold(false)
			return
		}
		c.p.o.Metrics.message(true, start)
	}
}

// overheadEvery: one message in overheadEvery per connection and
// direction (the first one included) is timed for the overhead histogram.
// Reading the clock twice and observing cost about a fifth of the proxy's
// own user-space work on a small message; every message is still counted.
const overheadEvery = 8

// timeSample returns the time now when this message is to be timed, else
// the zero Time. seq belongs to the calling pump.
func (c *proxyConn) timeSample(seq *uint32) time.Time {
	n := *seq
	*seq = n + 1
	if n%overheadEvery != 0 || c.p.o.Metrics == nil {
		return time.Time{}
	}
	return time.Now()
}

func (c *proxyConn) clientReadError(err error) {
	if c.closing.Load() {
		return
	}
	switch {
	case errors.Is(err, errTooBig):
		c.log.Info("cdp client message over the limit; closing", "session", c.s.ID)
		c.cw.writeClose(ws.StatusMessageTooBig, "cdpvault: message too big")
	case errors.Is(err, errProtocol):
		c.cw.writeClose(ws.StatusProtocolError, "cdpvault: protocol error")
	default:
		// client vanished
		c.log.Debug("cdp client connection ended", "session", c.s.ID, "err", err)
	}
	c.bw.writeClose(ws.StatusGoingAway, "")
	c.linger(c.upstream)
}

// command runs one client message through the pipeline; false ends the
// connection.
func (c *proxyConn) command(p []byte) bool {
	m := &c.cmsg
	*m = Message{Raw: p}
	if !utf8.Valid(p) {
		c.cw.writeClose(ws.StatusInvalidFramePayloadData, "cdpvault: text frame is not UTF-8")
		c.bw.writeClose(ws.StatusGoingAway, "")
		c.linger(c.upstream)
		return false
	}
	h, err := scanHeader(p, true)
	if err != nil {
		return c.replyParseError(err)
	}
	if h.idBad {
		return c.replyClient([]byte(`{"error":{"code":-32600,"message":"cdpvault: message must have an integer 'id'"}}`))
	}
	c.fillHeader(m, &h, &c.cIntern)
	if m.HasID && m.ID >= callIDLow && m.ID <= callIDTop {
		return c.replyClient(ErrorReply(m, "cdpvault: command ids from "+strconv.Itoa(callIDLow)+" up are reserved"))
	}
	orig := header{id: m.ID, hasID: m.HasID}
	origSID := m.SessionID
	if m.Method == "Target.sendMessageToTarget" {
		if refusal := c.nested(m, h.params); refusal != "" {
			return c.replyClient(ErrorReply(m, refusal))
		}
	}
	kind, data, err := c.runCommand(m)
	if err != nil {
		c.log.Warn("cdp command interceptor failed; refusing the command", "session", c.s.ID, "method", m.Method, "err", err)
		em := Message{ID: orig.id, HasID: orig.hasID, SessionID: origSID}
		return c.replyClient(ErrorReply(&em, "cdpvault: command refused (interceptor error)"))
	}
	switch kind {
	case Reply:
		return c.replyClient(data)
	case Drop:
		return true
	}
	out := p
	if kind == Replace {
		out = data
	}
	if m.HasID && len(c.ics) > 0 {
		c.pmu.Lock()
		if len(c.pending) >= maxPending {
			c.pmu.Unlock()
			if kind == Replace {
				wipe(data)
			}
			return c.replyClient(ErrorReply(m, "cdpvault: too many commands awaiting a response"))
		}
		if c.pending == nil {
			c.pending = make(map[pendKey]string)
		}
		c.pending[pendKey{m.SessionID, m.ID}] = m.Method
		c.pmu.Unlock()
	}
	err = c.bw.gather(ws.OpText, out)
	if kind == Replace {
		wipe(data)
	}
	if err != nil {
		if !c.closing.Load() {
			c.cw.writeClose(ws.StatusInternalServerError, "cdpvault: browser connection lost")
			c.linger(c.client)
		}
		return false
	}
	return true
}

func (c *proxyConn) replyParseError(err error) bool {
	c.log.Debug("cdp client message is not valid JSON", "session", c.s.ID, "err", err)
	msg := `{"error":{"code":-32700,"message":"cdpvault: ` + err.Error() + `"}}`
	return c.replyClient([]byte(msg))
}

func (c *proxyConn) replyClient(data []byte) bool {
	err := c.cw.write(ws.OpText, data)
	wipe(data)
	if err != nil {
		return false
	}
	c.p.o.Metrics.count(false)
	return true
}

func (c *proxyConn) fillHeader(m *Message, h *header, in *interner) {
	m.ID, m.HasID = h.id, h.hasID && !h.idBad
	if h.escaped {
		m.Method, m.SessionID = string(h.method), string(h.sid)
	} else {
		m.Method, m.SessionID = in.get(h.method), in.get(h.sid)
	}
}

// nested runs the message carried by a legacy Target.sendMessageToTarget
// through the interceptors; anything but Forward from any of them refuses
// the outer command. It returns the refusal message or "".
func (c *proxyConn) nested(outer *Message, params []byte) string {
	msg, esc := strField(params, "message")
	if msg == nil {
		return "cdpvault: Target.sendMessageToTarget needs a string 'message'"
	}
	raw := append(make([]byte, 0, len(msg)), msg...)
	if esc {
		wipe(raw)
		var err error
		if raw, err = unescape(make([]byte, 0, len(msg)), msg); err != nil {
			wipe(raw)
			return "cdpvault: Target.sendMessageToTarget needs a string 'message'"
		}
	}
	defer wipe(raw)
	sid := idField(params, "sessionId")
	if sid == "" {
		tid := idField(params, "targetId")
		var ok bool
		if sid, ok = c.tr.sessionForTarget(tid); !ok || tid == "" {
			return "cdpvault: Target.sendMessageToTarget to an unknown session or target"
		}
	}
	h, err := scanHeader(raw, true)
	if err != nil || h.idBad {
		return "cdpvault: nested message is not a valid CDP command"
	}
	nm := &Message{Raw: raw, Nested: true}
	c.fillHeader(nm, &h, &c.cIntern)
	nm.SessionID = sid
	if nm.Method == "Target.sendMessageToTarget" {
		return "cdpvault: nested Target.sendMessageToTarget is not supported"
	}
	for _, ic := range c.ics {
		v, err := c.callCommand(ic, nm)
		if err != nil {
			c.log.Warn("cdp nested command interceptor failed", "session", c.s.ID, "err", err)
			return "cdpvault: nested command refused (interceptor error)"
		}
		if v.Kind != Forward {
			if v.Kind == Reply {
				var e struct {
					Error struct {
						Message string `json:"message"`
					} `json:"error"`
				}
				if json.Unmarshal(v.Data, &e) == nil && e.Error.Message != "" && len(e.Error.Message) < 512 {
					wipe(v.Data)
					return e.Error.Message
				}
			}
			wipe(v.Data)
			return "cdpvault: nested command refused: legacy Target.sendMessageToTarget may only carry commands cdpvault forwards unchanged"
		}
	}
	return ""
}

func (c *proxyConn) callCommand(ic Interceptor, m *Message) (v Verdict, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("interceptor panic: %v", r)
		}
	}()
	return ic.Command(c.ctx, c, m)
}

func (c *proxyConn) callEvent(ic Interceptor, m *Message) (v Verdict, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("interceptor panic: %v", r)
		}
	}()
	return ic.Event(c.ctx, c.evConn, m)
}

// runChain applies the interceptors; it returns what to do and, for
// Replace and Reply, the data (owned by the caller, to be wiped).
func (c *proxyConn) runChain(m *Message, event bool) (VerdictKind, []byte, error) {
	var owned []byte
	for _, ic := range c.ics {
		var v Verdict
		var err error
		if event {
			v, err = c.callEvent(ic, m)
		} else {
			v, err = c.callCommand(ic, m)
		}
		if err != nil {
			wipeOwned(owned, v.Data)
			return Forward, nil, err
		}
		switch v.Kind {
		case Forward:
		case Replace:
			if owned != nil && !sameBuf(owned, v.Data) {
				wipe(owned)
			}
			owned = v.Data
			m.Raw = v.Data
			if h, err := scanHeader(v.Data, !event); err == nil {
				in := &c.cIntern
				if event {
					in = &c.bIntern
				}
				c.fillHeader(m, &h, in)
			} else if !event {
				wipe(owned)
				return Forward, nil, fmt.Errorf("replacement is not a valid CDP message: %w", err)
			}
		case Reply:
			if owned != nil && !sameBuf(owned, v.Data) {
				wipe(owned)
			}
			return Reply, v.Data, nil
		case Drop:
			wipeOwned(owned, v.Data)
			return Drop, nil, nil
		default:
			wipeOwned(owned, v.Data)
			return Forward, nil, fmt.Errorf("unknown verdict %d", v.Kind)
		}
	}
	if owned != nil {
		return Replace, owned, nil
	}
	return Forward, nil, nil
}

func (c *proxyConn) runCommand(m *Message) (VerdictKind, []byte, error) {
	if len(c.ics) == 0 {
		return Forward, nil, nil
	}
	return c.runChain(m, false)
}

func wipeOwned(owned, data []byte) {
	if owned != nil {
		wipe(owned)
	}
	if data != nil && !sameBuf(owned, data) {
		wipe(data)
	}
}

func sameBuf(a, b []byte) bool {
	return len(a) > 0 && len(b) > 0 && &a[0] == &b[0]
}

func (c *proxyConn) browserPump() {
	for {
		if c.cHold && !c.br.buffered() {
			c.cHold = false
			c.cw.setHold(false)
		}
		op, p, err := c.br.next()
		if err != nil {
			c.browserReadError(err)
			return
		}
		switch op {
		case ws.OpPing, ws.OpPong:
			c.cw.write(op, p)
			wipe(p)
			continue
		case ws.OpClose:
			code, _ := closeCode(p)
			if code == 0 || code == 1005 || code == 1006 || code == 1015 {
				c.cw.write(ws.OpClose, p[:0])
			} else {
				c.cw.write(ws.OpClose, p)
			}
			wipe(p)
			c.linger(c.client)
			return
		case ws.OpBinary:
			// Chrome speaks text; a binary frame cannot be checked by the
			// interceptors, so it never reaches the client.
			c.br.release(p)
			c.log.Warn("cdp browser sent a binary frame; dropped", "session", c.s.ID)
			continue
		}
		start := c.timeSample(&c.bSeq)
		if !c.cHold && c.br.buffered() {
			c.cHold = true
			c.cw.setHold(true)
		}
		ok := c.event(p)
		c.br.release(p)
		if !ok {
			c.cw.setHold(false)
			return
		}
		c.p.o.Metrics.message(false, start)
	}
}

func (c *proxyConn) browserReadError(err error) {
	if c.closing.Load() {
		return
	}
	if errors.Is(err, errTooBig) {
		c.log.Warn("cdp browser message over the limit; closing", "session", c.s.ID)
		c.cw.writeClose(ws.StatusMessageTooBig, "cdpvault: browser message too big")
		c.bw.writeClose(ws.StatusMessageTooBig, "")
	} else {
		if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
			c.log.Info("cdp browser connection lost", "session", c.s.ID, "err", err)
		}
		c.cw.writeClose(ws.StatusInternalServerError, "cdpvault: browser connection lost")
	}
	c.linger(c.client)
}

// event runs one browser message through tracking and the interceptors;
// false ends the pump.
func (c *proxyConn) event(p []byte) bool {
	m := &c.bmsg
	*m = Message{Raw: p}
	h, perr := scanHeader(p, false)
	if perr == nil {
		c.fillHeader(m, &h, &c.bIntern)
		if m.HasID && len(h.method) == 0 {
			if m.ID >= callIDLow && m.ID <= callIDTop {
				c.callDone(m.ID, &h)
				return true
			}
			if len(c.ics) > 0 {
				k := pendKey{m.SessionID, m.ID}
				c.pmu.Lock()
				if meth, ok := c.pending[k]; ok {
					m.ReplyTo = meth
					delete(c.pending, k)
				}
				c.pmu.Unlock()
			}
		} else if len(h.method) > 0 && tracked(h.method) {
			c.track(m.SessionID, m.Method, h.params)
		}
	}
	if len(c.ics) == 0 {
		return c.toClient(p)
	}
	hasID, id, sid := m.HasID, m.ID, m.SessionID
	kind, data, err := c.runChain(m, true)
	if err != nil {
		c.log.Warn("cdp event interceptor failed; message withheld", "session", c.s.ID, "method", m.Method, "err", err)
		if hasID {
			em := Message{ID: id, HasID: true, SessionID: sid}
			return c.toClient(ErrorReply(&em, "cdpvault: response withheld (interceptor error)"))
		}
		return true
	}
	switch kind {
	case Drop:
		return true
	case Reply:
		err := c.bw.write(ws.OpText, data)
		wipe(data)
		if err == nil {
			c.p.o.Metrics.count(true)
		}
		return true
	case Replace:
		ok := c.toClient(data)
		wipe(data)
		return ok
	}
	return c.toClient(p)
}

func (c *proxyConn) toClient(p []byte) bool {
	if err := c.cw.gather(ws.OpText, p); err != nil {
		if !c.closing.Load() {
			// client vanished: tell the browser and finish.
			c.bw.writeClose(ws.StatusGoingAway, "")
			c.linger(c.upstream)
		}
		return false
	}
	return true
}

func (c *proxyConn) track(sid, method string, params []byte) {
	if method == "Target.receivedMessageFromTarget" {
		s := idField(params, "sessionId")
		m, esc := strField(params, "message")
		if s == "" || m == nil {
			return
		}
		raw := m
		if esc {
			var err error
			if raw, err = unescape(nil, m); err != nil {
				return
			}
			defer wipe(raw)
		}
		h, err := scanHeader(raw, false)
		if err != nil || len(h.method) == 0 || !tracked(h.method) || string(h.method) == "Target.receivedMessageFromTarget" {
			return
		}
		c.track(s, string(h.method), h.params)
		return
	}
	if detached := c.tr.event(sid, method, params); detached != "" && len(c.ics) > 0 {
		c.pmu.Lock()
		for k := range c.pending {
			if k.sid == detached {
				delete(c.pending, k)
			}
		}
		c.pmu.Unlock()
	}
}

func (c *proxyConn) callDone(id int64, h *header) {
	c.cmu.Lock()
	ch, ok := c.calls[id]
	delete(c.calls, id)
	c.cmu.Unlock()
	if !ok {
		return
	}
	var r callResult
	if h.errv != nil {
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(h.errv, &e)
		r.err = &CDPError{Code: e.Code, Message: e.Message}
	} else {
		r.result = append(json.RawMessage(nil), h.result...)
		if r.result == nil {
			r.result = json.RawMessage("{}")
		}
	}
	ch <- r
}

// CDPError is the error the browser answered a Conn.Call with.
type CDPError struct {
	Code    int
	Message string
}

func (e *CDPError) Error() string {
	return fmt.Sprintf("cdp error %d: %s", e.Code, e.Message)
}
