package scrub

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cdpvault/cdpvault/cdpproxy"
	"github.com/cdpvault/cdpvault/redact"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fixedSource struct{ ix *redact.Index }

func (s fixedSource) Index() *redact.Index { return s.ix }

type panicSource struct{}

func (panicSource) Index() *redact.Index { panic("boom") }

const (
	pw  = `hunter2<&>"Zürich 😀 +/?`
	key = "sk_live_4f9a8b7c6d5e"
)

func testIndex(t testing.TB) *redact.Index {
	t.Helper()
	ix, err := redact.Build([]redact.Secret{{Name: "acme_pw", Value: []byte(pw)}, {Name: "api_key", Value: []byte(key)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ix.Destroy)
	return ix
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newTest(t testing.TB) (cdpproxy.Interceptor, *Metrics, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	return New(fixedSource{testIndex(t)}, Options{Logger: quiet, Metrics: m}), m, reg
}

func event(method, raw string) *cdpproxy.Message {
	return &cdpproxy.Message{Raw: []byte(raw), Method: method}
}

func response(id int64, replyTo, sessionID, raw string) *cdpproxy.Message {
	return &cdpproxy.Message{Raw: []byte(raw), ID: id, HasID: true, ReplyTo: replyTo, SessionID: sessionID}
}

func run(t *testing.T, ic cdpproxy.Interceptor, m *cdpproxy.Message) cdpproxy.Verdict {
	t.Helper()
	v, err := ic.Event(context.Background(), nil, m)
	if err != nil {
		t.Fatalf("Event: %v", err)
	}
	return v
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// decodeField returns the base64-decoded string at a path of the message.
func decodeField(t *testing.T, data []byte, path ...string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("output is not JSON: %v: %s", err, data)
	}
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			var i int
			fmt.Sscan(p, &i)
			v = x[i]
		}
	}
	s, _ := v.(string)
	dec, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("field %v is not base64: %v", path, err)
	}
	return string(dec)
}

func TestPassThrough(t *testing.T) {
	ic, _, reg := newTest(t)
	m := event("Page.frameNavigated", `{"method":"Page.frameNavigated","params":{"frame":{"id":"F","url":"https://acme.test/"}},"sessionId":"S"}`)
	if v := run(t, ic, m); v.Kind != cdpproxy.Forward || v.Data != nil {
		t.Fatalf("verdict %+v", v)
	}
	allocs := testing.AllocsPerRun(200, func() { _, _ = ic.Event(context.Background(), nil, m) })
	if allocs != 0 {
		t.Errorf("pass-through allocates %v times", allocs)
	}
	if got := testutil.ToFloat64(mustCounter(t, reg, "cdpvault_redactions_total")); got != 0 {
		t.Errorf("redactions %v", got)
	}
	// commands always pass
	if v, err := ic.Command(context.Background(), nil, &cdpproxy.Message{Raw: []byte(`{"id":1,"method":"Runtime.evaluate","params":{"expression":"` + key + `"}}`), Method: "Runtime.evaluate", HasID: true, ID: 1}); err != nil || v.Kind != cdpproxy.Forward {
		t.Errorf("command verdict %+v %v", v, err)
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "x"})
			c.Add(mf.GetMetric()[0].GetCounter().GetValue())
			return c
		}
	}
	t.Fatalf("metric %s not registered", name)
	return nil
}

func TestTextAndNested(t *testing.T) {
	ic, _, reg := newTest(t)
	cases := []*cdpproxy.Message{
		response(7, "Runtime.evaluate", "S", mustJSON(map[string]any{"id": 7, "result": map[string]any{"result": map[string]any{"value": "key " + key}}, "sessionId": "S"})),
		event("Runtime.consoleAPICalled", `{"method":"Runtime.consoleAPICalled","params":{"args":[{"value":"hunter2<&>\"Z\u00fcrich \ud83d\ude00 +/?"}]}}`),
		event("Target.receivedMessageFromTarget", mustJSON(map[string]any{"method": "Target.receivedMessageFromTarget", "params": map[string]any{"sessionId": "S1",
			"message": mustJSON(map[string]any{"id": 3, "result": map[string]any{"value": pw}})}})),
		event("Network.webSocketFrameReceived", mustJSON(map[string]any{"method": "Network.webSocketFrameReceived", "params": map[string]any{"response": map[string]any{"opcode": 1, "payloadData": "tok=" + key}}})),
	}
	for i, m := range cases {
		v := run(t, ic, m)
		if v.Kind != cdpproxy.Replace || bytes.Contains(v.Data, []byte(key)) || bytes.Contains(v.Data, []byte("hunter2")) || !bytes.Contains(v.Data, []byte("<<secret:")) {
			t.Errorf("case %d: %v %s", i, v.Kind, v.Data)
		}
		if !json.Valid(v.Data) {
			t.Errorf("case %d: invalid JSON %s", i, v.Data)
		}
	}
	if got := testutil.ToFloat64(mustCounter(t, reg, "cdpvault_redactions_total")); got != 4 {
		t.Errorf("redactions = %v, want 4", got)
	}
}

func TestBase64Fields(t *testing.T) {
	ic, _, _ := newTest(t)
	body := "<html>xyz " + pw + " and " + key + "</html>"
	cases := []struct {
		m    *cdpproxy.Message
		path []string
	}{
		{response(1, "Network.getResponseBody", "S", mustJSON(map[string]any{"id": 1, "result": map[string]any{"body": b64(body), "base64Encoded": true}, "sessionId": "S"})), []string{"result", "body"}},
		{response(2, "Fetch.getResponseBody", "", mustJSON(map[string]any{"id": 2, "result": map[string]any{"body": b64("a" + body), "base64Encoded": true}})), []string{"result", "body"}},
		{response(3, "Network.getRequestPostData", "", mustJSON(map[string]any{"id": 3, "result": map[string]any{"postData": b64("ab" + body), "base64Encoded": true}})), []string{"result", "postData"}},
		{event("Network.requestWillBeSent", mustJSON(map[string]any{"method": "Network.requestWillBeSent", "params": map[string]any{"request": map[string]any{"url": "https://acme.test/",
			"postDataEntries": []any{map[string]any{"bytes": b64("x")}, map[string]any{"bytes": b64("pw=" + pw)}}}}})), []string{"params", "request", "postDataEntries", "1", "bytes"}},
		{event("Network.webSocketFrameSent", mustJSON(map[string]any{"method": "Network.webSocketFrameSent", "params": map[string]any{"requestId": "1", "response": map[string]any{"opcode": 2, "mask": true, "payloadData": b64("\x00\x01" + key)}}})), []string{"params", "response", "payloadData"}},
	}
	for i, c := range cases {
		v := run(t, ic, c.m)
		if v.Kind != cdpproxy.Replace {
			t.Fatalf("case %d: %v", i, v.Kind)
		}
		got := decodeField(t, v.Data, c.path...)
		if strings.Contains(got, key) || strings.Contains(got, "hunter2") || !strings.Contains(got, "<<secret:") {
			t.Errorf("case %d: decoded field %q", i, got)
		}
	}
	// a body without the flag is text: its base64 is not decoded, but a
	// text occurrence is still scrubbed
	v := run(t, ic, response(4, "Network.getResponseBody", "", mustJSON(map[string]any{"id": 4, "result": map[string]any{"body": "plain " + key, "base64Encoded": false}})))
	if v.Kind != cdpproxy.Replace || bytes.Contains(v.Data, []byte(key)) {
		t.Errorf("text body: %s", v.Data)
	}
	// a screenshot passes untouched
	shot := response(5, "Page.captureScreenshot", "", mustJSON(map[string]any{"id": 5, "result": map[string]any{"data": b64("\x89PNG pixels")}}))
	if v := run(t, ic, shot); v.Kind != cdpproxy.Forward {
		t.Errorf("screenshot: %v", v.Kind)
	}
}

func TestNestedBase64(t *testing.T) {
	ic, _, _ := newTest(t)
	inner := mustJSON(map[string]any{"id": 9, "result": map[string]any{"body": b64("zz" + key), "base64Encoded": true}})
	m := event("Target.receivedMessageFromTarget", mustJSON(map[string]any{"method": "Target.receivedMessageFromTarget", "params": map[string]any{"sessionId": "S1", "message": inner}}))
	v := run(t, ic, m)
	if v.Kind != cdpproxy.Replace {
		t.Fatalf("%v", v.Kind)
	}
	var outer struct {
		Params struct{ Message string }
	}
	if err := json.Unmarshal(v.Data, &outer); err != nil {
		t.Fatal(err)
	}
	got := decodeField(t, []byte(outer.Params.Message), "result", "body")
	if got != "zz<<secret:api_key>>" {
		t.Errorf("nested body %q", got)
	}
}

// TestIORead reads a stream in small chunks, base64 and text, with values
// split across chunks.
func TestIORead(t *testing.T) {
	for _, b64mode := range []bool{true, false} {
		for _, size := range []int{1, 3, 7, 16, 100} {
			ic, _, _ := newTest(t)
			doc := strings.Repeat("é filler ", 30) + pw + " mid " + strings.Repeat("ü", 50) + key + " end"
			var got strings.Builder
			id := int64(100)
			for off := 0; ; {
				id++
				cmd := &cdpproxy.Message{Raw: []byte(fmt.Sprintf(`{"id":%d,"method":"IO.read","params":{"handle":"blob:1","size":%d},"sessionId":"S"}`, id, size)), ID: id, HasID: true, Method: "IO.read", SessionID: "S"}
				if v, _ := ic.Command(context.Background(), nil, cmd); v.Kind != cdpproxy.Forward {
					t.Fatal("IO.read command not forwarded")
				}
				end := min(off+size, len(doc))
				if !b64mode {
					// Chrome sends text chunks of whole characters
					for end < len(doc) && !utf8.RuneStart(doc[end]) {
						end++
					}
				}
				chunk := doc[off:end]
				eof := end == len(doc)
				res := map[string]any{"eof": eof}
				if b64mode {
					res["data"], res["base64Encoded"] = b64(chunk), true
				} else {
					res["data"] = chunk
				}
				v := run(t, ic, response(id, "IO.read", "S", mustJSON(map[string]any{"id": id, "result": res, "sessionId": "S"})))
				data := v.Data
				if v.Kind == cdpproxy.Forward {
					data = []byte(mustJSON(map[string]any{"id": id, "result": res}))
				}
				var r struct {
					Result struct {
						Data          string
						Base64Encoded bool
						EOF           bool
					}
				}
				if err := json.Unmarshal(data, &r); err != nil {
					t.Fatal(err)
				}
				if r.Result.Base64Encoded {
					d, err := base64.StdEncoding.DecodeString(r.Result.Data)
					if err != nil {
						t.Fatal(err)
					}
					got.Write(d)
				} else {
					got.WriteString(r.Result.Data)
				}
				if eof {
					break
				}
				off = end
			}
			s := got.String()
			if strings.Contains(s, key) || strings.Contains(s, "hunter2") || strings.Count(s, "<<secret:") != 2 {
				t.Errorf("b64=%v size=%d: %q", b64mode, size, s)
			}
			if !b64mode && !strings.Contains(s, strings.Repeat("ü", 50)) {
				t.Errorf("text stream lost characters: %q", s)
			}
			ic.Close()
		}
	}
}

func TestFailClosed(t *testing.T) {
	ic, _, reg := newTest(t)
	bad := response(11, "Network.getResponseBody", "SESS", `{"id":11,"result":{"body":"!!!not base64!!!","base64Encoded":true},"sessionId":"SESS"}`)
	v := run(t, ic, bad)
	want := `{"id":11,"error":{"code":-32000,"message":"cdpvault: response withheld: could not be scrubbed"},"sessionId":"SESS"}`
	if v.Kind != cdpproxy.Replace || string(v.Data) != want {
		t.Errorf("undecodable body: %v %s", v.Kind, v.Data)
	}
	frame := event("Network.webSocketFrameReceived", `{"method":"Network.webSocketFrameReceived","params":{"response":{"opcode":2,"payloadData":"%%%"}}}`)
	if v := run(t, ic, frame); v.Kind != cdpproxy.Drop {
		t.Errorf("undecodable frame: %v", v.Kind)
	}
	trunc := response(12, "Network.getResponseBody", "", `{"id":12,"result":{"body":"QUJD","base64Encoded":true`)
	if v := run(t, ic, trunc); v.Kind != cdpproxy.Replace || !bytes.Contains(v.Data, []byte("withheld")) {
		t.Errorf("malformed JSON: %v %s", v.Kind, v.Data)
	}
	if got := testutil.ToFloat64(mustCounter(t, reg, "cdpvault_scrub_failures_total")); got != 3 {
		t.Errorf("failures = %v, want 3", got)
	}

	m := NewMetrics(nil)
	for _, src := range []Source{panicSource{}, fixedSource{nil}} {
		ic := New(src, Options{Logger: quiet, Metrics: m})
		if v := run(t, ic, response(1, "", "", `{"id":1,"result":{}}`)); v.Kind != cdpproxy.Replace || !bytes.Contains(v.Data, []byte("withheld")) {
			t.Errorf("%T: %v %s", src, v.Kind, v.Data)
		}
		if v := run(t, ic, event("Page.loadEventFired", `{"method":"Page.loadEventFired","params":{}}`)); v.Kind != cdpproxy.Drop {
			t.Errorf("%T event: %v", src, v.Kind)
		}
	}
	ix, _ := redact.Build([]redact.Secret{{Name: "k", Value: []byte("abcdefgh12")}})
	ix.Destroy()
	ic2 := New(fixedSource{ix}, Options{Logger: quiet})
	if v := run(t, ic2, response(1, "", "", `{"id":1,"result":{}}`)); v.Kind != cdpproxy.Replace {
		t.Errorf("destroyed index: %v", v.Kind)
	}
}

func TestMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewMetrics(reg)
	b := NewMetrics(reg)
	a.Redactions(2)
	b.Redactions(3)
	a.Failure()
	var nilM *Metrics
	nilM.Redactions(1)
	nilM.Failure()
	if got := testutil.ToFloat64(mustCounter(t, reg, "cdpvault_redactions_total")); got != 5 {
		t.Errorf("redactions %v", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestScrubDiscovery(t *testing.T) {
	ix := testIndex(t)
	body := []byte(`[{"description":"","id":"A","title":"` + key + `","url":"https://acme.test/?k=` + key + `","webSocketDebuggerUrl":"ws://127.0.0.1:9222/session/x/devtools/page/A"}]`)
	out, err := ScrubDiscovery(ix, body)
	if err != nil || bytes.Contains(out, []byte(key)) || !json.Valid(out) {
		t.Fatalf("%v %s", err, out)
	}
	plain := []byte(`{"Browser":"Chrome/140"}`)
	if out, err := ScrubDiscovery(ix, plain); err != nil || &out[0] != &plain[0] {
		t.Errorf("unchanged body must be returned as is: %v", err)
	}
	if _, err := ScrubDiscovery(nil, plain); !errors.Is(err, errNoIndex) {
		t.Errorf("nil index: %v", err)
	}
}

func TestJSONWalkAndQuote(t *testing.T) {
	for _, bad := range []string{`{`, `{"a"}`, `{"a":1,}`, `[1 2]`, `"abc`, `{"a":1}x`, strings.Repeat("[", 600) + strings.Repeat("]", 600)} {
		if err := walkJSON([]byte(bad), func([][]byte, int, int) {}); err == nil {
			t.Errorf("walk accepted %q", bad)
		}
	}
	for _, s := range []string{"plain", "q\"b\\s\n\t\x01 é 😀", ""} {
		q := quote(nil, []byte(s))
		var back string
		if err := json.Unmarshal(q, &back); err != nil || back != s {
			t.Errorf("quote %q: %s %v", s, q, err)
		}
		u, err := unquote(nil, q)
		if err != nil || string(u) != s {
			t.Errorf("unquote %q: %q %v", s, u, err)
		}
	}
	u, err := unquote(nil, []byte(`"\ud83d\ude00\u00e9\/"`))
	if err != nil || string(u) != "😀é/" {
		t.Errorf("unquote escapes: %q %v", u, err)
	}
}

func TestHolder(t *testing.T) {
	ix1, err := redact.Build([]redact.Secret{{Name: "old", Value: []byte("0ldSecretValue")}})
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(ix1)
	ic := New(h, Options{Logger: quiet})
	v := run(t, ic, event("Page.x", `{"method":"Page.x","params":{"a":"0ldSecretValue"}}`))
	if !bytes.Contains(v.Data, []byte("<<secret:old>>")) {
		t.Fatalf("%s", v.Data)
	}
	ix2, err := redact.Build([]redact.Secret{{Name: "new", Value: []byte("n3wSecretValue")}})
	if err != nil {
		t.Fatal(err)
	}
	h.Set(ix2)
	if _, _, err := ix1.Scrub(nil, nil); !errors.Is(err, redact.ErrDestroyed) {
		t.Errorf("old index not destroyed: %v", err)
	}
	v = run(t, ic, event("Page.x", `{"method":"Page.x","params":{"a":"n3wSecretValue"}}`))
	if !bytes.Contains(v.Data, []byte("<<secret:new>>")) {
		t.Fatalf("%s", v.Data)
	}
	h.Close()
	if v := run(t, ic, event("Page.x", `{"method":"Page.x","params":{}}`)); v.Kind != cdpproxy.Drop {
		t.Errorf("after Close: %v", v.Kind)
	}
}

// TestNestedStaysValid: a numeric secret inside a nested message's number
// and a value spanning the inner structure leave valid JSON at both levels.
func TestNestedStaysValid(t *testing.T) {
	ix, err := redact.Build([]redact.Secret{{Name: "pin", Value: []byte("12345678")}, {Name: "st", Value: []byte(`x","y":"zz`)}})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Destroy()
	ic := New(fixedSource{ix}, Options{Logger: quiet})
	for _, inner := range []string{`{"id":1,"result":{"value":123456789}}`, `{"id":2,"result":{"a":"x","y":"zz"}}`} {
		m := event(legacyEvent, mustJSON(map[string]any{"method": legacyEvent, "params": map[string]any{"sessionId": "S", "message": inner}}))
		v := run(t, ic, m)
		var outer struct{ Params struct{ Message string } }
		if v.Kind != cdpproxy.Replace || json.Unmarshal(v.Data, &outer) != nil || !json.Valid([]byte(outer.Params.Message)) ||
			!strings.Contains(outer.Params.Message, "<<secret:") {
			t.Errorf("inner %s: %v %s", inner, v.Kind, v.Data)
		}
	}
}

// MHTML snapshots are quoted-printable, whose soft line breaks split values
// where no form matches: the command is refused, never half scrubbed.
func TestCaptureSnapshotRefused(t *testing.T) {
	in := New(fixedSource{nil}, Options{Logger: quiet})
	m := &cdpproxy.Message{Raw: []byte(`{"id":7,"method":"Page.captureSnapshot","params":{"format":"mhtml"},"sessionId":"S"}`),
		ID: 7, HasID: true, Method: "Page.captureSnapshot", SessionID: "S"}
	v, err := in.Command(context.Background(), nil, m)
	if err != nil || v.Kind != cdpproxy.Reply || !bytes.Contains(v.Data, []byte(`"cdpvault: Page.captureSnapshot`)) || !bytes.Contains(v.Data, []byte(`"sessionId":"S"`)) {
		t.Fatalf("captureSnapshot: %v %s %v", v.Kind, v.Data, err)
	}
	m = &cdpproxy.Message{Raw: []byte(`{"id":8,"method":"Page.captureScreenshot"}`), ID: 8, HasID: true, Method: "Page.captureScreenshot"}
	if v, _ := in.Command(context.Background(), nil, m); v.Kind != cdpproxy.Forward {
		t.Fatalf("screenshot refused: %v", v.Kind)
	}
}
