package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/awnumar/memguard"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// fakeConn is a cdpproxy.Conn that records what the interceptor sends and
// models a page's focus for the origin check. It is a fake only because the
// interceptor's contract is the Conn interface; the real browser path is in
// chromium_test.go.
type fakeConn struct {
	mu          sync.Mutex
	sess        *cdpproxy.Session
	targets     map[string]cdpproxy.TargetInfo
	focus       map[string]focusResult // per CDP session: what focusJS would return
	failCall    map[string]error       // method -> error
	log         []logEntry             // calls and forwarded messages, in order
	rawSeen     [][]byte               // the params slices passed to Call, as passed
	called      chan struct{}
	clientW     [][]byte
	worlds      int          // Page.createIsolatedWorld calls
	lostObject  bool         // the next callFunctionOn finds no object (document gone)
	failWrite   error        // the write (execCommand) call fails
	moved       *focusResult // focus as the write finds it, if it moved after the check
	notEditable bool         // execCommand does not take the text
	checksLeft  int          // with moveTo: checks until focus moves
	moveTo      *focusResult
}

type logEntry struct {
	sid, method string
	params      []byte
	byCall      bool
}

func newFakeConn() *fakeConn {
	return &fakeConn{
		sess:     &cdpproxy.Session{ID: "sess-1", Tenant: "acme"},
		targets:  map[string]cdpproxy.TargetInfo{},
		focus:    map[string]focusResult{"S": {Origin: "https://acme.test", Focus: true}},
		failCall: map[string]error{},
		called:   make(chan struct{}, 1000),
	}
}

func (f *fakeConn) Session() *cdpproxy.Session { return f.sess }

func (f *fakeConn) Target(sid string) (cdpproxy.TargetInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.targets[sid]
	return t, ok
}

func (f *fakeConn) Call(ctx context.Context, sid, method string, params any) (json.RawMessage, error) {
	var b []byte
	switch p := params.(type) {
	case json.RawMessage:
		b = append([]byte(nil), p...)
		f.mu.Lock()
		f.rawSeen = append(f.rawSeen, p)
		f.mu.Unlock()
	default:
		var err error
		if b, err = json.Marshal(p); err != nil {
			return nil, err
		}
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("invalid params JSON for %s: %q", method, b)
	}
	f.mu.Lock()
	defer func() {
		select {
		case f.called <- struct{}{}:
		default: // nobody is waiting
		}
	}()
	defer f.mu.Unlock()
	if err := f.failCall[method]; err != nil {
		return nil, err
	}
	switch method {
	case "Page.createIsolatedWorld":
		f.worlds++
		return json.RawMessage(`{"executionContextId":7}`), nil
	case "Page.getFrameTree":
		return json.RawMessage(`{"frameTree":{"frame":{"id":"FRAME"}}}`), nil
	case "Runtime.evaluate":
		if _, ok := f.focus[sid]; !ok {
			return nil, errors.New("no such session")
		}
		return json.RawMessage(`{"result":{"type":"object","objectId":"OBJ-` + sid + `"}}`), nil
	case "Runtime.callFunctionOn":
		if f.lostObject {
			f.lostObject = false
			return nil, errors.New("Could not find object with given id")
		}
		fr, ok := f.focus[sid]
		if !ok {
			return nil, errors.New("no such session")
		}
		var p struct {
			FunctionDeclaration string
			Arguments           []struct{ Value json.RawMessage }
		}
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, err
		}
		if f.moveTo != nil && !strings.Contains(p.FunctionDeclaration, "execCommand") {
			if f.checksLeft--; f.checksLeft < 0 {
				f.focus[sid] = *f.moveTo
				fr = *f.moveTo
			}
		}
		if strings.Contains(p.FunctionDeclaration, "execCommand") {
			if f.failWrite != nil {
				return nil, f.failWrite
			}
			if f.moved != nil { // focus moved between check and write
				fr = *f.moved
			}
			var origins []string
			var text string
			_ = json.Unmarshal(p.Arguments[0].Value, &origins)
			_ = json.Unmarshal(p.Arguments[1].Value, &text)
			switch {
			case fr.Remote:
			case !originAllowed(origins, fr.Origin):
				fr.Denied = true
			case f.notEditable:
			default:
				fr.Inserted = true
				tb, _ := json.Marshal(map[string]string{"text": text})
				f.log = append(f.log, logEntry{sid: sid, method: methodInsertText, params: tb, byCall: true})
			}
		}
		v, _ := json.Marshal(fr)
		return json.RawMessage(`{"result":{"type":"object","value":` + string(v) + `}}`), nil
	}
	f.log = append(f.log, logEntry{sid: sid, method: method, params: b, byCall: true})
	return json.RawMessage(`{}`), nil
}

func (f *fakeConn) WriteClient(data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clientW = append(f.clientW, append([]byte(nil), data...))
	return nil
}

// typed returns the text the page would have received, in order.
func (f *fakeConn) typed(sid string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var sb strings.Builder
	for _, e := range f.log {
		if e.sid != sid {
			continue
		}
		var p struct{ Type, Text string }
		_ = json.Unmarshal(e.params, &p)
		switch e.method {
		case methodInsertText:
			sb.WriteString(p.Text)
		case methodKeyEvent:
			if p.Type == "keyDown" || p.Type == "char" {
				sb.WriteString(p.Text)
			}
		}
	}
	return sb.String()
}

func (f *fakeConn) entries() []logEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]logEntry(nil), f.log...)
}

// fakeVault resolves from a map; every Resolve returns a fresh LockedBuffer.
type fakeVault struct {
	secrets  map[string]fakeSecret
	resolves int
	mu       sync.Mutex
}

type fakeSecret struct {
	value   string
	origins []string
}

func (v *fakeVault) Resolve(ctx context.Context, name string) (Secret, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.resolves++
	s, ok := v.secrets[name]
	if !ok {
		return Secret{}, fmt.Errorf("resolve %s: %w", name, ErrUnknownSecret)
	}
	return Secret{Value: memguard.NewBufferFromBytes([]byte(s.value)), Origins: s.origins, Version: 3}, nil
}

// listingVault is a fakeVault that also gives origins without a value.
type listingVault struct{ *fakeVault }

func (v listingVault) Origins(ctx context.Context, name string) ([]string, int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.secrets[name]
	if !ok {
		return nil, 0, fmt.Errorf("origins %s: %w", name, ErrUnknownSecret)
	}
	return s.origins, 3, nil
}

type memAudit struct {
	mu   sync.Mutex
	recs []Record
}

func (a *memAudit) Audit(ctx context.Context, r Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, r)
}

func (a *memAudit) all() []Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Record(nil), a.recs...)
}

// harness drives one interceptor like the proxy does: commands in order,
// forwarded ones appended to the page log, replies collected.
type harness struct {
	t       testing.TB
	in      cdpproxy.Interceptor
	c       *fakeConn
	audit   *memAudit
	vault   *fakeVault
	metrics *Metrics
	nextID  int64
	replies map[int64][]byte // id -> reply written to the client
	fwd     int
}

func newHarness(t testing.TB, mutate func(*Options)) *harness {
	h := &harness{t: t, c: newFakeConn(), audit: &memAudit{}, replies: map[int64][]byte{}}
	h.vault = &fakeVault{secrets: map[string]fakeSecret{
		"pw":   {value: "hunter2", origins: []string{"https://acme.test"}},
		"any":  {value: "anywhere", origins: []string{"*"}},
		"none": {value: "nowhere", origins: nil},
	}}
	h.metrics = NewMetrics(nil)
	o := Options{Vault: h.vault, Granted: []string{"pw", "any", "none", "tricky", "ghost"}, Audit: h.audit, Metrics: h.metrics}
	if mutate != nil {
		mutate(&o)
	}
	h.in = New(o)
	t.Cleanup(h.in.Close)
	return h
}

func message(id int64, sid, method, params string) *cdpproxy.Message {
	raw := fmt.Sprintf(`{"id":%d,"method":%q,"params":%s`, id, method, params)
	if sid != "" {
		raw += fmt.Sprintf(`,"sessionId":%q`, sid)
	}
	raw += "}"
	return &cdpproxy.Message{Raw: []byte(raw), ID: id, HasID: true, Method: method, SessionID: sid}
}

// send runs one command through the interceptor and returns its verdict.
func (h *harness) send(sid, method, params string) cdpproxy.Verdict {
	h.t.Helper()
	h.nextID++
	m := message(h.nextID, sid, method, params)
	return h.sendMsg(m)
}

func (h *harness) sendMsg(m *cdpproxy.Message) cdpproxy.Verdict {
	h.t.Helper()
	v, err := h.in.Command(context.Background(), h.c, m)
	if err != nil {
		h.t.Fatalf("Command(%s): %v", m.Raw, err)
	}
	switch v.Kind {
	case cdpproxy.Forward:
		var msg struct{ Params json.RawMessage }
		if err := json.Unmarshal(m.Raw, &msg); err != nil {
			h.t.Fatalf("forwarded invalid JSON %s", m.Raw)
		}
		h.c.mu.Lock()
		h.c.log = append(h.c.log, logEntry{sid: m.SessionID, method: m.Method, params: msg.Params})
		h.c.mu.Unlock()
		h.fwd++
	case cdpproxy.Reply:
		h.replies[m.ID] = v.Data
	case cdpproxy.Replace:
		h.t.Fatalf("unexpected Replace for %s", m.Raw)
	case cdpproxy.Drop:
		h.t.Fatalf("unexpected Drop for %s (held commands are answered by Reply)", m.Raw)
	}
	return v
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Typing styles of real clients.
type typist func(h *harness, sid, s string)

func typeInsertText(h *harness, sid, s string) {
	for _, r := range s {
		h.send(sid, methodInsertText, `{"text":`+jsonString(string(r))+`}`)
	}
}

// typePuppeteer is Puppeteer's and Playwright's keyboard.press per char:
// keyDown with text, keyUp.
func typePuppeteer(h *harness, sid, s string) {
	for _, r := range s {
		k := jsonString(string(r))
		h.send(sid, methodKeyEvent, `{"type":"keyDown","modifiers":0,"windowsVirtualKeyCode":0,"code":"","key":`+k+`,"text":`+k+`,"unmodifiedText":`+k+`,"autoRepeat":false,"location":0,"isKeypad":false}`)
		h.send(sid, methodKeyEvent, `{"type":"keyUp","modifiers":0,"key":`+k+`,"code":""}`)
	}
}

// typeChromedp is chromedp's kb.Encode: keyDown without text, char, keyUp.
func typeChromedp(h *harness, sid, s string) {
	for _, r := range s {
		k := jsonString(string(r))
		h.send(sid, methodKeyEvent, `{"type":"keyDown","key":`+k+`,"code":"Comma","modifiers":8,"windowsVirtualKeyCode":188}`)
		h.send(sid, methodKeyEvent, `{"type":"char","key":`+k+`,"text":`+k+`,"unmodifiedText":`+k+`}`)
		h.send(sid, methodKeyEvent, `{"type":"keyUp","key":`+k+`,"code":"Comma","modifiers":8}`)
	}
}

var typists = map[string]typist{"insertText": typeInsertText, "puppeteer": typePuppeteer, "chromedp": typeChromedp}
