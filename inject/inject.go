package inject

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/awnumar/memguard"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// ErrUnknownSecret is what a Vault's error wraps when the session's tenant
// has no secret of that name.
var ErrUnknownSecret = errors.New("unknown secret")

// Secret is a resolved secret: its value in a memguard buffer (inject
// destroys it right after the write), the origins it may be typed into
// (exact "scheme://host[:port]" strings, or "*" for any) and its version.
type Secret struct {
	Value   *memguard.LockedBuffer
	Origins []string
	Version int
}

// Vault resolves a secret name for the session's tenant. It must be
// tenant-scoped; a name the tenant lacks gives an error wrapping
// ErrUnknownSecret. It is called from the proxy's client-read goroutine.
type Vault interface {
	Resolve(ctx context.Context, name string) (Secret, error)
}

// Lister is what a Vault may also implement: a secret's origins and
// version without decrypting it. When the Vault has it, a placeholder whose
// origin check fails is refused before any value is decrypted; the origins
// Resolve returns are checked again after decryption (a secret may change
// in between).
type Lister interface {
	Origins(ctx context.Context, name string) (origins []string, version int, err error)
}

// Record is one audit record: one injection attempt. It never holds a value.
type Record struct {
	Time    time.Time
	Session string // daemon session id
	Secret  string // secret name
	Version int    // secret version, 0 when not resolved
	Origin  string // origin of the focused frame, "" when not determined
	Sink    string // CDP method that carried the placeholder
	Result  string // "injected" or "refused"
	Reason  string // for refusals: unlisted, unknown, origin, sink, error (with a value-free detail)
}

// Audit results.
const (
	AuditInjected = "injected"
	AuditRefused  = "refused"
)

// Auditor stores audit records (per tenant). Audit must not block for long:
// it is called on the command path.
type Auditor interface {
	Audit(ctx context.Context, r Record)
}

// Options configure the interceptor of one client connection.
type Options struct {
	// Vault resolves names for the session's tenant. Required for injection;
	// without it every placeholder is refused as unknown.
	Vault Vault
	// Granted lists the secret names the session may inject.
	Granted []string
	// Audit receives one record per attempt; nil drops them.
	Audit Auditor
	// Logger gets value-free diagnostics; nil means slog.Default().
	Logger *slog.Logger
	// Metrics counts attempts; nil counts nothing.
	Metrics *Metrics
	// IdleFlush is how long held keystrokes wait for the rest of a
	// placeholder before they are sent on as typed; default 2s.
	IdleFlush time.Duration
	// Taints, shared by every connection of the daemon session, records
	// the documents a value was typed into and refuses the client's
	// script and DOM changes while one lives (see Taints). nil turns the
	// taint off: a client can then read a typed value back through script.
	Taints *Taints
}

const (
	methodInsertText = "Input.insertText"
	methodKeyEvent   = "Input.dispatchKeyEvent"
	methodIME        = "Input.imeSetComposition"

	defaultIdleFlush = 2 * time.Second
	// maxHeld bounds the commands held per CDP session.
	maxHeld = 1024
	// callTimeout bounds every command the interceptor sends itself, so a
	// stuck page cannot hang the connection.
	callTimeout = 10 * time.Second
)

// worldPrefix names the isolated worlds the origin check runs in. It is
// random per process so no page or client can guess it; events announcing
// such a world are dropped before they reach a client.
var worldPrefix = func() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("inject: no randomness: " + err.Error())
	}
	return "__cdpvault_" + hex.EncodeToString(b[:])
}()

var worldSeq struct {
	sync.Mutex
	n uint64
}

// New returns the injection interceptor for one client connection.
//
// Concurrency: Command is called from the connection's client-read
// goroutine and Event from its browser-read goroutine (cdpproxy contract).
// Held keystrokes are also flushed from a timer goroutine after IdleFlush;
// that path takes the same mutex as Command, so flushes and commands are
// serialised, and it calls Conn.Call from the timer goroutine, which the
// proxy's Conn must allow (Call is safe for concurrent use). Event never
// takes the mutex Command holds across Conn.Call, so a Call waiting for its
// response cannot deadlock the browser-read goroutine.
func New(o Options) cdpproxy.Interceptor {
	if o.IdleFlush <= 0 {
		o.IdleFlush = defaultIdleFlush
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	granted := make(map[string]bool, len(o.Granted))
	for _, n := range o.Granted {
		granted[n] = true
	}
	worldSeq.Lock()
	worldSeq.n++
	world := fmt.Sprintf("%s_%d", worldPrefix, worldSeq.n)
	worldSeq.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	return &interceptor{
		o:         o,
		granted:   granted,
		world:     world,
		held:      map[string]*hold{},
		swallow:   map[string]string{},
		children:  map[string]child{},
		worlds:    map[string]worldRef{},
		preparing: map[string]bool{},
		baseCtx:   ctx,
		cancel:    cancel,
	}
}

type interceptor struct {
	o       Options
	granted map[string]bool
	world   string
	baseCtx context.Context
	cancel  context.CancelFunc

	mu      sync.Mutex // serialises Command and the idle-flush timer
	conn    cdpproxy.Conn
	held    map[string]*hold  // CDP session id -> held input
	swallow map[string]string // CDP session id -> key whose keyUp is answered, not sent
	closed  bool

	childMu  sync.Mutex       // never held across Conn.Call
	children map[string]child // attached iframe sessions

	cacheMu   sync.Mutex
	worlds    map[string]worldRef // session+frame -> the check's world in the frame's document
	preparing map[string]bool     // sessions whose world prepareWorld is readying
	prep      sync.WaitGroup      // prepareWorld's goroutines

	pending atomic.Pointer[taint] // the last taint whose reads may still run

	resMu    sync.Mutex
	resKeys  []reservedKey // this interceptor's entries in the reserved registry
	sessions *cdpproxy.Session
}

type child struct {
	parent   string
	targetID string
}

// heldCmd is one held input command, re-sent as method+params on flush.
type heldCmd struct {
	method string
	params json.RawMessage // own copy
	end    int             // end offset of its text in hold.text
	lead   bool            // a keyDown without text: its text follows
}

// hold is the held input of one CDP session: commands whose text could
// still spell a placeholder.
type hold struct {
	cmds  []heldCmd
	text  []byte // concatenated text of cmds
	start int    // where in text the candidate placeholder starts
	gen   uint64
	timer *time.Timer
}

var forward = cdpproxy.Verdict{Kind: cdpproxy.Forward}

func reply(data []byte) cdpproxy.Verdict {
	return cdpproxy.Verdict{Kind: cdpproxy.Reply, Data: data}
}

// Command implements cdpproxy.Interceptor.
func (in *interceptor) Command(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message) (cdpproxy.Verdict, error) {
	in.awaitTaint(ctx)
	if bypassesProxy[m.Method] {
		in.o.Logger.Info("command refused", slog.String("method", m.Method), slog.String("reason", "bypasses cdpvault"))
		return reply(cdpproxy.ErrorReply(m, "cdpvault: "+m.Method+" refused: it would give page script a DevTools channel that does not pass through cdpvault")), nil
	}
	if v := in.gateTainted(ctx, c, m); v != nil {
		return *v, nil
	}
	if m.Nested {
		// Legacy Target.sendMessageToTarget: never a sink, never a way round.
		if name, ok := findEscaped(m.Raw); ok {
			return in.refuseSink(ctx, c, m, name, "nested "+m.Method), nil
		}
		return forward, nil
	}
	switch m.Method {
	case methodInsertText, methodKeyEvent, methodIME:
		return in.sink(ctx, c, m)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.conn = c
	if len(in.held) > 0 && in.held[m.SessionID] != nil {
		// Anything else on this session (a click, an evaluate) must see the
		// keystrokes typed before it.
		in.flushLocked(ctx, c, m.SessionID)
	}
	if len(in.swallow) > 0 {
		delete(in.swallow, m.SessionID)
	}
	if in.reservedContext(c, m) {
		return reply(cdpproxy.ErrorReply(m, "cdpvault: execution context is reserved")), nil
	}
	name, ok := findEscaped(m.Raw)
	if !ok {
		return forward, nil
	}
	if m.Method == "Runtime.callFunctionOn" && !placeholderOutside(m.Raw, "arguments") {
		// Playwright fill() and chromedp SetValue pass the text here; it
		// stays the literal placeholder and is never substituted.
		return forward, nil
	}
	return in.refuseSink(ctx, c, m, name, m.Method), nil
}

// bypassesProxy are commands refused in every session: they open a
// DevTools channel to the browser that page script could use, past every
// interceptor (injection rules, taint, scrubbing).
var bypassesProxy = map[string]bool{"Target.exposeDevToolsProtocol": true}

// placeholderOutside reports whether a placeholder occurs in the message
// anywhere but in params[field]. Undecodable messages count as "yes".
func placeholderOutside(raw []byte, field string) bool {
	var msg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &msg); err != nil {
		return true
	}
	for k, v := range msg {
		if k == "params" {
			continue
		}
		if Contains(v) {
			return true
		}
	}
	var params map[string]json.RawMessage
	if err := json.Unmarshal(msg["params"], &params); err != nil {
		return Contains(msg["params"])
	}
	for k, v := range params {
		if k != field && Contains(v) {
			return true
		}
	}
	return false
}

func (in *interceptor) refuseSink(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message, name, where string) cdpproxy.Verdict {
	in.record(ctx, c, Record{Secret: name, Sink: m.Method, Result: AuditRefused, Reason: "sink: placeholder in " + where}, ResultRefusedSink)
	return reply(cdpproxy.ErrorReply(m, "cdpvault: placeholder not allowed in "+where))
}

func (in *interceptor) record(ctx context.Context, c cdpproxy.Conn, r Record, result string) {
	in.o.Metrics.inc(result)
	r.Time = time.Now().UTC()
	if s := c.Session(); s != nil {
		r.Session = s.ID
	}
	in.o.Logger.Info("secret injection", slog.String("session", r.Session), slog.String("secret", r.Secret),
		slog.String("sink", r.Sink), slog.String("origin", r.Origin), slog.String("result", result))
	if in.o.Audit != nil {
		in.o.Audit.Audit(ctx, r)
	}
}

// Event implements cdpproxy.Interceptor: it learns attached iframe sessions
// (for focus in out-of-process iframes) and hides the isolated worlds of the
// origin check from clients.
func (in *interceptor) Event(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message) (cdpproxy.Verdict, error) {
	switch m.Method {
	case "Runtime.executionContextCreated":
		if bytes.Contains(m.Raw, []byte(worldPrefix)) {
			return cdpproxy.Verdict{Kind: cdpproxy.Drop}, nil
		}
		in.prepareWorld(c, m)
	case "DOM.characterDataModified", "DOM.attributeModified":
		// Text node and attribute changes carry an input's edited value
		// (its user-agent shadow text, a value attribute the page keeps in
		// sync) to a client that read the tree before the secret was
		// typed. Not shown while any taint is recorded.
		if in.o.Taints.Len() > 0 && (m.Method == "DOM.characterDataModified" || bytes.Contains(m.Raw, []byte(`"name":"value"`))) {
			return cdpproxy.Verdict{Kind: cdpproxy.Drop}, nil
		}
	case "Input.dragIntercepted":
		// The drag data is the dragged selection: part of a typed value
		// would pass the scrubber. Not shown while any taint is recorded.
		if in.o.Taints.Len() > 0 {
			return cdpproxy.Verdict{Kind: cdpproxy.Drop}, nil
		}
	case "Runtime.executionContextDestroyed", "Runtime.executionContextsCleared":
		return in.contextGone(c, m), nil
	case "Target.attachedToTarget":
		var ev struct {
			Params struct {
				SessionID  string `json:"sessionId"`
				TargetInfo struct {
					TargetID string `json:"targetId"`
					Type     string `json:"type"`
				} `json:"targetInfo"`
			} `json:"params"`
		}
		if err := json.Unmarshal(m.Raw, &ev); err == nil && ev.Params.TargetInfo.Type == "iframe" && ev.Params.SessionID != "" {
			in.childMu.Lock()
			in.children[ev.Params.SessionID] = child{parent: m.SessionID, targetID: ev.Params.TargetInfo.TargetID}
			in.childMu.Unlock()
		}
	case "Target.detachedFromTarget":
		var ev struct {
			Params struct {
				SessionID string `json:"sessionId"`
			} `json:"params"`
		}
		if err := json.Unmarshal(m.Raw, &ev); err == nil {
			in.childMu.Lock()
			delete(in.children, ev.Params.SessionID)
			in.childMu.Unlock()
		}
	}
	return forward, nil
}

// Close implements cdpproxy.Interceptor: held input is discarded (the
// connection is gone), timers stopped, reserved contexts released.
func (in *interceptor) Close() {
	in.cancel()
	in.mu.Lock()
	in.closed = true
	for sid, h := range in.held {
		if h.timer != nil {
			h.timer.Stop()
		}
		delete(in.held, sid)
	}
	in.mu.Unlock()
	in.releaseReserved()
}

// input is one decoded sink command.
type input struct {
	method  string
	typ     string // dispatchKeyEvent type
	key     string
	text    []byte
	kind    inputKind
	params  json.RawMessage
	keyMode bool
}

type inputKind int

const (
	kindText    inputKind = iota // contributes text
	kindNeutral                  // part of a key group (keyUp, Shift, keyDown before char)
	kindBreak                    // any other key: ends a candidate placeholder
	kindIME
)

const (
	modAlt  = 1
	modCtrl = 2
	modMeta = 4
)

func decodeInput(m *cdpproxy.Message) (*input, error) {
	var msg struct {
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(m.Raw, &msg); err != nil {
		return nil, err
	}
	var p struct {
		Type      string   `json:"type"`
		Text      string   `json:"text"`
		Key       string   `json:"key"`
		Modifiers int      `json:"modifiers"`
		Commands  []string `json:"commands"`
	}
	if len(msg.Params) > 0 {
		if err := json.Unmarshal(msg.Params, &p); err != nil {
			return nil, err
		}
	}
	u := &input{method: m.Method, typ: p.Type, key: p.Key, text: []byte(p.Text), params: msg.Params}
	switch m.Method {
	case methodInsertText:
		if len(u.text) == 0 {
			u.kind = kindNeutral
		}
	case methodIME:
		u.kind = kindIME
	case methodKeyEvent:
		u.keyMode = true
		switch {
		case p.Type == "keyUp":
			u.kind = kindNeutral
		case p.Modifiers&(modAlt|modCtrl|modMeta) != 0 || len(p.Commands) > 0:
			u.kind = kindBreak
		case (p.Type == "keyDown" || p.Type == "char") && p.Text != "":
			u.kind = kindText
		case p.Type == "keyDown" || p.Type == "rawKeyDown" || p.Type == "char":
			if p.Key == "Shift" || p.Key == "Unidentified" || p.Type == "char" || utf8.RuneCountInString(p.Key) == 1 {
				u.kind = kindNeutral // the char event with the text follows
			} else {
				u.kind = kindBreak
			}
		default:
			u.kind = kindBreak
		}
	}
	return u, nil
}

// otherFieldsPlaceholder returns the name of a placeholder that sits in a
// sink command outside its text fields.
func otherFieldsPlaceholder(raw []byte) (string, bool) {
	var msg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &msg); err != nil {
		return findEscaped(raw)
	}
	for k, v := range msg {
		if k == "params" {
			continue
		}
		if n, ok := findEscaped(v); ok {
			return n, true
		}
	}
	var params map[string]json.RawMessage
	if err := json.Unmarshal(msg["params"], &params); err != nil {
		return findEscaped(msg["params"])
	}
	for k, v := range params {
		switch k {
		case "text", "unmodifiedText", "key":
			continue
		}
		if n, ok := findEscaped(v); ok {
			return n, true
		}
	}
	return "", false
}

// sink handles an input command (see sinkLocked); input that goes on to
// the page as the client sent it may not edit a document holding a typed
// value (refuseEdit).
func (in *interceptor) sink(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message) (cdpproxy.Verdict, error) {
	v, err := in.sinkLocked(ctx, c, m)
	if err == nil && v.Kind == cdpproxy.Forward {
		if r := in.refuseEdit(ctx, c, m); r != nil {
			return *r, nil
		}
	}
	return v, err
}

func (in *interceptor) sinkLocked(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message) (cdpproxy.Verdict, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.conn = c
	sid := m.SessionID
	h := in.held[sid]
	swallowKey, swallowing := in.swallow[sid]
	if h == nil && !swallowing && indexStart(m.Raw) < 0 {
		return forward, nil // fast path: nothing held, no '<' in any escaping
	}
	u, err := decodeInput(m)
	if err != nil {
		if h != nil {
			in.flushLocked(ctx, c, sid)
		}
		return reply(cdpproxy.ErrorReply(m, "cdpvault: malformed "+m.Method)), nil
	}
	if swallowing {
		delete(in.swallow, sid)
		if u.method == methodKeyEvent && u.typ == "keyUp" && u.key == swallowKey {
			return reply(cdpproxy.EmptyResult(m)), nil
		}
	}
	if name, ok := otherFieldsPlaceholder(m.Raw); ok {
		if h != nil {
			in.flushLocked(ctx, c, sid)
		}
		return in.refuseSink(ctx, c, m, name, m.Method+" (outside its text)"), nil
	}
	switch u.kind {
	case kindNeutral:
		if h == nil {
			if u.typ == "keyDown" || u.typ == "rawKeyDown" {
				if len(u.text) == 0 && u.key == "<" {
					// chromedp sends a key's keyDown before the char that
					// carries its text: a '<' may start a placeholder, so
					// it is held with the text that follows.
					in.holdLocked(sid, nil, u, 0)
					return reply(cdpproxy.EmptyResult(m)), nil
				}
			}
			return forward, nil
		}
		if len(h.cmds) >= maxHeld {
			// A placeholder is at most ~140 characters; this many commands
			// without completing one is not typing one.
			in.flushLocked(ctx, c, sid)
			return forward, nil
		}
		in.holdLocked(sid, h, u, -1)
		return reply(cdpproxy.EmptyResult(m)), nil
	case kindBreak:
		if h != nil {
			in.flushLocked(ctx, c, sid)
		}
		return forward, nil
	case kindIME:
		if h != nil {
			in.flushLocked(ctx, c, sid)
		}
		return in.ime(ctx, c, m, u), nil
	}

	// Text input.
	from := 0
	t := u.text
	if h != nil {
		from = h.start
		t = make([]byte, 0, len(h.text)+len(u.text))
		t = append(append(t, h.text...), u.text...)
	}
	ms, tail := scan(t, from)
	if len(ms) == 0 {
		if tail < 0 {
			if h != nil {
				in.flushLocked(ctx, c, sid)
			}
			return forward, nil
		}
		h, cut := in.flushBefore(ctx, c, sid, h, tail)
		in.holdLocked(sid, h, u, tail-cut)
		return reply(cdpproxy.EmptyResult(m)), nil
	}

	// One or more complete placeholders: plain text held before the first
	// one goes out as typed; the rest is replaced by one write.
	_, begin := in.flushBefore(ctx, c, sid, h, ms[0].start)
	in.dropHold(sid) // the rest of the hold is part of the placeholder
	end := len(t)
	if tail >= 0 {
		end = tail
	}
	v := in.inject(ctx, c, m, u, t[begin:end], shift(ms, begin))
	if v.Kind == cdpproxy.Reply && tail >= 0 && isOK(v.Data) {
		// Text after the placeholder that may start another one.
		nh := &hold{}
		in.held[sid] = nh
		tailText := t[tail:]
		params := make([]byte, 0, len(`{"text":""}`)+escapedLen(tailText))
		params = append(params, `{"text":"`...)
		params = appendEscaped(params, tailText)
		params = append(params, `"}`...)
		nh.cmds = append(nh.cmds, heldCmd{method: methodInsertText, params: params, end: len(tailText)})
		nh.text = append(nh.text, tailText...)
		in.armLocked(sid, nh)
	}
	return v, nil
}

func isOK(reply []byte) bool { return !bytes.Contains(reply, []byte(`"error"`)) }

func shift(ms []match, by int) []match {
	out := make([]match, len(ms))
	for i, x := range ms {
		out[i] = match{start: x.start - by, end: x.end - by, name: x.name}
	}
	return out
}

// holdLocked appends u to the session's hold (created when nil) with the
// candidate starting at text offset start (-1 keeps it), and re-arms the
// idle timer.
func (in *interceptor) holdLocked(sid string, h *hold, u *input, start int) {
	if h == nil {
		h = &hold{}
		in.held[sid] = h
	}
	params := make(json.RawMessage, len(u.params))
	copy(params, u.params)
	h.text = append(h.text, u.text...)
	lead := u.kind == kindNeutral && (u.typ == "keyDown" || u.typ == "rawKeyDown")
	h.cmds = append(h.cmds, heldCmd{method: u.method, params: params, end: len(h.text), lead: lead})
	if start >= 0 {
		h.start = start
	}
	in.armLocked(sid, h)
}

func (in *interceptor) armLocked(sid string, h *hold) {
	h.gen++
	gen := h.gen
	if h.timer != nil {
		h.timer.Stop()
	}
	h.timer = time.AfterFunc(in.o.IdleFlush, func() { in.idleFlush(sid, gen) })
}

func (in *interceptor) idleFlush(sid string, gen uint64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	h := in.held[sid]
	if in.closed || h == nil || h.gen != gen || in.conn == nil {
		return
	}
	in.flushLocked(in.baseCtx, in.conn, sid)
}

// flushBefore re-sends the held commands whose text ends at or before
// offset off (they cannot be part of a placeholder starting there) and
// rebases the rest. It returns the remaining hold (nil when empty) and the
// offset (in the old text) where the remaining commands' text begins.
func (in *interceptor) flushBefore(ctx context.Context, c cdpproxy.Conn, sid string, h *hold, off int) (*hold, int) {
	if h == nil {
		return nil, 0
	}
	n := 0
	// A command ending exactly at off is flushed unless it is the leading
	// keyDown (no text) of the key group whose text starts at off.
	for n < len(h.cmds) && (h.cmds[n].end < off || h.cmds[n].end == off && !h.cmds[n].lead) {
		n++
	}
	if n > 0 && in.mayType(ctx, c, sid) {
		for i := 0; i < n; i++ {
			in.send(ctx, c, sid, h.cmds[i])
		}
	}
	if n == len(h.cmds) {
		cut := len(h.text)
		in.dropHold(sid)
		return nil, cut
	}
	cut := 0
	if n > 0 {
		cut = h.cmds[n-1].end
	}
	h.cmds = h.cmds[n:]
	for i := range h.cmds {
		h.cmds[i].end -= cut
	}
	h.text = h.text[cut:]
	h.start -= cut
	return h, cut
}

// flushLocked re-sends every held command of the session in order.
func (in *interceptor) flushLocked(ctx context.Context, c cdpproxy.Conn, sid string) {
	h := in.held[sid]
	if h == nil {
		return
	}
	in.dropHold(sid)
	if !in.mayType(ctx, c, sid) {
		return
	}
	for _, hc := range h.cmds {
		in.send(ctx, c, sid, hc)
	}
}

func (in *interceptor) dropHold(sid string) {
	if h := in.held[sid]; h != nil && h.timer != nil {
		h.timer.Stop()
	}
	delete(in.held, sid)
}

// send re-sends one held command through the daemon's own Call; its
// response is swallowed by the proxy (the client was answered already).
func (in *interceptor) send(ctx context.Context, c cdpproxy.Conn, sid string, hc heldCmd) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if _, err := c.Call(cctx, sid, hc.method, hc.params); err != nil {
		in.o.Logger.Warn("re-send held input", slog.String("method", hc.method), slog.String("error", err.Error()))
	}
}
