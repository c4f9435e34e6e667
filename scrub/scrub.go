package scrub

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"unicode/utf8"

	"github.com/cdpvault/cdpvault/cdpproxy"
	"github.com/cdpvault/cdpvault/redact"
)

// Source gives the index for a session's current scrub scope. The daemon
// keeps it current when secrets change; an index with no secrets is
// redact.Build(nil). A nil index fails closed.
type Source interface {
	Index() *redact.Index
}

// Options configure an interceptor.
type Options struct {
	Logger  *slog.Logger // nil: slog.Default()
	Metrics *Metrics     // nil: not counted
}

const legacyEvent = "Target.receivedMessageFromTarget"

// withheld is the message of the CDP error that replaces a response that
// could not be scrubbed.
const withheld = "cdpvault: response withheld: could not be scrubbed"

var (
	errNoIndex   = errors.New("no scrub index")
	errBadBase64 = errors.New("undecodable base64 field")
)

// New returns the scrub interceptor of one client connection.
func New(src Source, opts Options) cdpproxy.Interceptor {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &interceptor{src: src, log: log, m: opts.Metrics, reads: map[readKey]string{}, streams: map[streamKey]*ioStream{}}
}

type readKey struct {
	session string
	id      int64
}

type streamKey struct {
	session, handle string
}

// ioStream is the scrub state of one IO stream handle.
type ioStream struct {
	s     *redact.Stream
	carry []byte // incomplete UTF-8 at the end of the last text output
}

type interceptor struct {
	src Source
	log *slog.Logger
	m   *Metrics

	mu      sync.Mutex
	reads   map[readKey]string // IO.read command id -> handle
	streams map[streamKey]*ioStream
}

// Command remembers which stream each IO.read reads and forgets streams on
// IO.close; every command is forwarded.
func (in *interceptor) Command(_ context.Context, _ cdpproxy.Conn, m *cdpproxy.Message) (cdpproxy.Verdict, error) {
	if m.Method == "Page.captureSnapshot" {
		// MHTML bodies are quoted-printable: soft line breaks (=\r\n) can
		// split a value anywhere, and no form matches across them. Refused
		// rather than scrubbed partially.
		return cdpproxy.Verdict{Kind: cdpproxy.Reply, Data: cdpproxy.ErrorReply(m, "cdpvault: Page.captureSnapshot is refused: MHTML (quoted-printable) cannot be scrubbed")}, nil
	}
	if m.Method != "IO.read" && m.Method != "IO.close" {
		return cdpproxy.Verdict{Kind: cdpproxy.Forward}, nil
	}
	var handle []byte
	_ = walkJSON(m.Raw, func(path [][]byte, s, e int) {
		if pathIs(path, "params", "handle") {
			handle = m.Raw[s:e]
		}
	})
	h, err := unquote(nil, handle)
	if err != nil || len(h) == 0 || len(h) > 256 {
		return cdpproxy.Verdict{Kind: cdpproxy.Forward}, nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if m.Method == "IO.read" && m.HasID && len(in.reads) < 4096 {
		in.reads[readKey{m.SessionID, m.ID}] = string(h)
	} else if m.Method == "IO.close" {
		k := streamKey{m.SessionID, string(h)}
		if st := in.streams[k]; st != nil {
			st.s.Close()
			delete(in.streams, k)
		}
	}
	return cdpproxy.Verdict{Kind: cdpproxy.Forward}, nil
}

// Close wipes the stream states.
func (in *interceptor) Close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for k, st := range in.streams {
		st.s.Close()
		clear(st.carry)
		delete(in.streams, k)
	}
	clear(in.reads)
}

// Event scrubs one response or event.
func (in *interceptor) Event(_ context.Context, _ cdpproxy.Conn, m *cdpproxy.Message) (v cdpproxy.Verdict, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = in.fail(m, fmt.Errorf("panic: %v", safePanic(r))), nil
		}
	}()
	ix := in.src.Index()
	if ix == nil {
		return in.fail(m, errNoIndex), nil
	}
	out, n, err := in.scrub(ix, m)
	if err != nil {
		return in.fail(m, err), nil
	}
	if out == nil {
		return cdpproxy.Verdict{Kind: cdpproxy.Forward}, nil
	}
	in.m.Redactions(n)
	return cdpproxy.Verdict{Kind: cdpproxy.Replace, Data: out}, nil
}

// safePanic keeps only the type of a panic value: its text could hold
// message bytes.
func safePanic(r any) string {
	if e, ok := r.(error); ok && errors.Is(e, redact.ErrDestroyed) {
		return e.Error()
	}
	return fmt.Sprintf("%T", r)
}

func (in *interceptor) fail(m *cdpproxy.Message, err error) cdpproxy.Verdict {
	in.m.Failure()
	isResponse := m.HasID && m.Method == ""
	in.log.Warn("scrub: message withheld", "method", m.Method, "reply_to", m.ReplyTo, "response", isResponse, "error", err.Error())
	if isResponse {
		return cdpproxy.Verdict{Kind: cdpproxy.Replace, Data: cdpproxy.ErrorReply(m, withheld)}
	}
	return cdpproxy.Verdict{Kind: cdpproxy.Drop}
}

// scrub returns the replacement for m, or nil when m passes unchanged.
func (in *interceptor) scrub(ix *redact.Index, m *cdpproxy.Message) ([]byte, int, error) {
	raw := m.Raw
	if in.isIORead(m) {
		return in.scrubIORead(ix, m)
	}
	fields := needsFields(raw, m)
	if m.Method == legacyEvent && !fields {
		// A nested message that holds a secret is decoded and scrubbed
		// as a JSON document of its own, so that it stays valid JSON.
		out, n, err := ix.Replace(raw)
		if err != nil || n == 0 {
			return nil, 0, err
		}
		clear(out)
		fields = true
	}
	if fields {
		out, n, err := scrubFields(ix, raw, m.Method == legacyEvent)
		if err != nil {
			return nil, 0, err
		}
		if n > 0 {
			// and everything else as text
			out2, n2, err := ix.Replace(out)
			if err != nil {
				clear(out)
				return nil, 0, err
			}
			if n2 > 0 {
				clear(out) // held text forms of a secret
				out = out2
			}
			return out, n + n2, nil
		}
	}
	return ix.Replace(raw)
}

// needsFields tells cheaply whether a message may hold a base64 field to
// decode. Chrome writes compact JSON and puts base64Encoded after the body,
// so the flag is looked for from the end.
func needsFields(raw []byte, m *cdpproxy.Message) bool {
	if m.HasID && m.Method == "" {
		switch m.ReplyTo {
		case "", "Network.getResponseBody", "Fetch.getResponseBody", "Network.getRequestPostData",
			"IO.read", "Network.getResponseBodyForInterception":
			return flagTrue(raw, []byte(`"base64Encoded":`))
		}
		return false
	}
	switch m.Method {
	case "Network.webSocketFrameReceived", "Network.webSocketFrameSent":
		return bytes.Contains(raw, []byte(`"opcode":2`))
	case "Network.requestWillBeSent", "Fetch.requestPaused", "Network.requestIntercepted":
		return bytes.Contains(raw, []byte(`postDataEntries`))
	case "Target.receivedMessageFromTarget":
		return bytes.Contains(raw, []byte(`base64Encoded`)) || bytes.Contains(raw, []byte(`postDataEntries`)) ||
			bytes.Contains(raw, []byte(`opcode`))
	}
	return false
}

// flagTrue reports whether the last occurrence of key is followed by true.
func flagTrue(raw, key []byte) bool {
	i := bytes.LastIndex(raw, key)
	return i >= 0 && bytes.HasPrefix(raw[i+len(key):], []byte("true"))
}

type field struct {
	s, e   int
	nested bool // a legacy nested message (JSON text in a string)
}

// scrubFields decodes, scrubs and re-encodes the base64 fields of one
// message (see the package doc) and returns the new message, or nil and 0
// when nothing in them matched. legacy marks a
// Target.receivedMessageFromTarget event, whose params.message is a nested
// message.
func scrubFields(ix *redact.Index, raw []byte, legacy bool) ([]byte, int, error) {
	var fields []field
	var b64flag, binary bool
	var body, postData, data, payload []int
	err := walkJSON(raw, func(path [][]byte, s, e int) {
		v := raw[s:e]
		switch {
		case pathIs(path, "result", "base64Encoded"):
			b64flag = string(v) == "true"
		case pathIs(path, "params", "response", "opcode"):
			binary = string(v) == "2"
		case pathIs(path, "result", "body"):
			body = []int{s, e}
		case pathIs(path, "result", "postData"):
			postData = []int{s, e}
		case pathIs(path, "result", "data"):
			data = []int{s, e}
		case pathIs(path, "params", "response", "payloadData"):
			payload = []int{s, e}
		case len(path) >= 3 && string(path[len(path)-1]) == "bytes" && string(path[len(path)-2]) == "[]" &&
			string(path[len(path)-3]) == "postDataEntries":
			fields = append(fields, field{s: s, e: e})
		case legacy && pathIs(path, "params", "message"):
			fields = append(fields, field{s: s, e: e, nested: true})
		}
	})
	if err != nil {
		return nil, 0, err
	}
	if binary && payload != nil {
		// a binary WebSocket frame; a text frame's payload is text
		fields = append(fields, field{s: payload[0], e: payload[1]})
	}
	if b64flag {
		for _, sp := range [][]int{body, postData, data} {
			if sp != nil {
				fields = append(fields, field{s: sp[0], e: sp[1]})
			}
		}
	}
	if len(fields) == 0 {
		return nil, 0, nil
	}
	sortFields(fields)
	var out []byte
	total := 0
	prev := 0
	for _, f := range fields {
		var rep []byte
		var n int
		var err error
		if f.nested {
			rep, n, err = scrubNested(ix, raw[f.s:f.e])
		} else {
			rep, n, err = scrubBase64(ix, raw[f.s:f.e])
		}
		if err != nil {
			return nil, 0, err
		}
		if n == 0 {
			continue
		}
		if out == nil {
			// room for the growth of re-encoded fields, so that append
			// never leaves a stale copy behind
			out = make([]byte, 0, len(raw)+len(raw)/2+256)
		}
		out = append(out, raw[prev:f.s]...)
		out = append(out, rep...)
		clear(rep)
		prev = f.e
		total += n
	}
	if total == 0 {
		return nil, 0, nil
	}
	return append(out, raw[prev:]...), total, nil
}

func sortFields(fs []field) {
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && fs[j].s < fs[j-1].s; j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
}

// scrubBase64 decodes a JSON string of base64, scrubs the bytes and
// returns the re-encoded JSON string, or n == 0 when nothing matched.
// Every buffer that held decoded bytes is wiped.
func scrubBase64(ix *redact.Index, q []byte) ([]byte, int, error) {
	if len(q) < 2 || q[0] != '"' {
		return nil, 0, errBadBase64
	}
	text := q[1 : len(q)-1]
	if bytes.IndexByte(text, '\\') >= 0 {
		// Chrome never escapes base64; an escaped / is tolerated
		t, err := unquote(make([]byte, 0, len(q)), q)
		if err != nil {
			return nil, 0, errBadBase64
		}
		text = t
	}
	enc := base64.StdEncoding
	if bytes.IndexByte(text, '-') >= 0 || bytes.IndexByte(text, '_') >= 0 {
		enc = base64.URLEncoding
	}
	if len(text)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	dec := make([]byte, enc.DecodedLen(len(text)))
	defer clear(dec)
	nd, err := enc.Decode(dec, text)
	if err != nil {
		return nil, 0, errBadBase64
	}
	plain, n, err := ix.Replace(dec[:nd])
	defer clear(plain)
	if err != nil || n == 0 {
		return nil, 0, err
	}
	out := make([]byte, 0, enc.EncodedLen(len(plain))+2)
	out = append(out, '"')
	out = enc.AppendEncode(out, plain)
	return append(out, '"'), n, nil
}

// scrubNested handles the message string of a legacy
// Target.receivedMessageFromTarget event: the inner message's base64
// fields are scrubbed like a top-level message's, then the inner message
// as a JSON document, and the result is quoted again.
func scrubNested(ix *redact.Index, q []byte) ([]byte, int, error) {
	inner, err := unquote(make([]byte, 0, len(q)), q)
	defer clear(inner)
	if err != nil {
		return nil, 0, err
	}
	text := inner
	out1, n1, err := scrubFields(ix, inner, false)
	defer clear(out1)
	if err != nil {
		return nil, 0, err
	}
	if n1 > 0 {
		text = out1
	}
	out2, n2, err := ix.Replace(text)
	if err != nil {
		return nil, 0, err
	}
	if n2 > 0 {
		text = out2
	}
	if n1+n2 == 0 {
		return nil, 0, nil
	}
	return quote(make([]byte, 0, 2*len(text)+16), text), n1 + n2, nil
}

func (in *interceptor) isIORead(m *cdpproxy.Message) bool {
	if !m.HasID || m.Method != "" {
		return false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	_, ok := in.reads[readKey{m.SessionID, m.ID}]
	return ok
}

// scrubIORead scrubs an IO.read response through the handle's stream.
func (in *interceptor) scrubIORead(ix *redact.Index, m *cdpproxy.Message) ([]byte, int, error) {
	in.mu.Lock()
	k := readKey{m.SessionID, m.ID}
	handle := in.reads[k]
	delete(in.reads, k)
	in.mu.Unlock()
	raw := m.Raw
	var data []int
	var b64, eof, isErr bool
	err := walkJSON(raw, func(path [][]byte, s, e int) {
		switch {
		case pathIs(path, "result", "data"):
			data = []int{s, e}
		case pathIs(path, "result", "base64Encoded"):
			b64 = string(raw[s:e]) == "true"
		case pathIs(path, "result", "eof"):
			eof = string(raw[s:e]) == "true"
		case len(path) >= 1 && string(path[0]) == "error":
			isErr = true
		}
	})
	if err != nil {
		return nil, 0, err
	}
	if isErr || data == nil {
		return ix.Replace(raw)
	}
	sk := streamKey{m.SessionID, handle}
	in.mu.Lock()
	st := in.streams[sk]
	if st == nil {
		st = &ioStream{s: ix.NewStream()}
		in.streams[sk] = st
	}
	in.mu.Unlock()

	q := raw[data[0]:data[1]]
	var chunk []byte
	defer func() { clear(chunk) }()
	if b64 {
		text := q[1 : len(q)-1]
		chunk = make([]byte, base64.StdEncoding.DecodedLen(len(text)))
		nd, err := base64.StdEncoding.Decode(chunk, text)
		if err != nil {
			return nil, 0, errBadBase64
		}
		chunk = chunk[:nd]
	} else {
		chunk, err = unquote(make([]byte, 0, len(q)), q)
		if err != nil {
			return nil, 0, err
		}
	}
	outData, n, err := st.s.Write(nil, chunk)
	defer func() { clear(outData) }()
	if err == nil && eof {
		var n2 int
		outData, n2, err = st.s.Flush(outData)
		n += n2
	}
	if err != nil {
		return nil, 0, err
	}
	if !b64 {
		// keep text output valid UTF-8: hold back an incomplete sequence
		joined := make([]byte, 0, len(st.carry)+len(outData))
		joined = append(append(joined, st.carry...), outData...)
		clear(outData)
		clear(st.carry)
		outData = joined
		st.carry = nil
		if !eof {
			cut := utf8Cut(outData)
			st.carry = append([]byte(nil), outData[cut:]...)
			clear(outData[cut:])
			outData = outData[:cut]
		}
	}
	if eof {
		in.mu.Lock()
		st.s.Close()
		delete(in.streams, sk)
		in.mu.Unlock()
	}
	out := make([]byte, 0, len(raw)+2*len(outData)+64)
	out = append(out, raw[:data[0]]...)
	if b64 {
		out = append(out, '"')
		out = base64.StdEncoding.AppendEncode(out, outData)
		out = append(out, '"')
	} else {
		out = quote(out, outData)
	}
	out = append(out, raw[data[1]:]...)
	// the rest of the response as text (it holds no more data)
	if out2, n2, err := ix.Replace(out); err != nil {
		return nil, 0, err
	} else if n2 > 0 {
		clear(out)
		out, n = out2, n+n2
	}
	return out, n, nil
}

// utf8Cut returns the length of b without a trailing incomplete UTF-8
// sequence.
func utf8Cut(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		c := b[i]
		if c < 0x80 {
			return len(b)
		}
		if c >= 0xc0 { // a lead byte: complete if enough bytes follow
			need := 2
			if c >= 0xe0 {
				need = 3
			}
			if c >= 0xf0 {
				need = 4
			}
			if len(b)-i >= need {
				return len(b)
			}
			return i
		}
	}
	return len(b)
}

// ScrubDiscovery scrubs a discovery JSON body (/json/version, /json/list,
// ...) and returns it, the same slice when nothing matched. It fails
// closed: with a nil index or a matcher error it returns an error and the
// caller must not send body.
func ScrubDiscovery(ix *redact.Index, body []byte) ([]byte, error) {
	if ix == nil {
		return nil, errNoIndex
	}
	out, n, err := ix.Replace(body)
	if err != nil {
		return nil, fmt.Errorf("scrub discovery: %w", err)
	}
	if n == 0 {
		return body, nil
	}
	if !utf8.Valid(out) {
		return nil, errors.New("scrub discovery: invalid UTF-8 after scrubbing")
	}
	return out, nil
}
