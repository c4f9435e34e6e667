package ctxguard

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

func evKind(t *testing.T, ic cdpproxy.Interceptor, c cdpproxy.Conn, m *cdpproxy.Message) cdpproxy.Verdict {
	t.Helper()
	v, err := ic.Event(context.Background(), c, m)
	if err != nil {
		t.Fatalf("%s: %v", m.Raw, err)
	}
	return v
}

func mustPass(t *testing.T, ic cdpproxy.Interceptor, c cdpproxy.Conn, m *cdpproxy.Message) {
	t.Helper()
	if v := evKind(t, ic, c, m); v.Kind != cdpproxy.Forward {
		t.Fatalf("%s: want Forward, got %d %s", m.Raw, v.Kind, v.Data)
	}
}

func mustDrop(t *testing.T, ic cdpproxy.Interceptor, c cdpproxy.Conn, m *cdpproxy.Message) {
	t.Helper()
	if v := evKind(t, ic, c, m); v.Kind != cdpproxy.Drop {
		t.Fatalf("%s: want Drop, got %d %s", m.Raw, v.Kind, v.Data)
	}
}

func onSession(m *cdpproxy.Message, sid string) *cdpproxy.Message {
	m.SessionID = sid
	m.Raw = append(m.Raw[:len(m.Raw)-1], []byte(`,"sessionId":"`+sid+`"}`)...)
	return m
}

func resp(id int64, sid, replyTo, result string) *cdpproxy.Message {
	m := reply(id, sid, result)
	m.ReplyTo = replyTo
	return m
}

// A session without a geo pool: its contexts are created as the agent asks
// (no proxy is imposed), and then it is held to the same rules.
func TestDirectSession(t *testing.T) {
	g := NewGuard(Options{Direct: true})
	ic, c := g.Interceptor(), newFake()
	mustRefuse(t, ic, c, cmd(1, "Target.createTarget", `{"url":"about:blank"}`, ""), MsgCreateTarget)
	for i, p := range []string{`{"proxyServer":"http://agent-proxy:1"}`, `{"disposeOnDetach":true}`, ``} {
		mustForward(t, ic, c, cmd(int64(2+i), "Target.createBrowserContext", p, ""))
	}
	mustPass(t, ic, c, resp(2, "", "Target.createBrowserContext", `{"browserContextId":"D1"}`))
	if !g.Allowed("D1") {
		t.Fatal("context of a forwarded createBrowserContext not allowed")
	}
	// only the response to a command the guard saw allows
	mustPass(t, ic, c, resp(99, "", "Target.createBrowserContext", `{"browserContextId":"SNEAKY"}`))
	if g.Allowed("SNEAKY") {
		t.Fatal("context allowed from a response to an unseen command")
	}
	mustForward(t, ic, c, cmd(5, "Target.createTarget", `{"url":"about:blank","browserContextId":"D1"}`, ""))
	mustRefuse(t, ic, c, cmd(6, "Target.createTarget", `{"url":"about:blank","browserContextId":"OTHER"}`, ""), MsgCreateTarget)
	mustRefuse(t, ic, c, cmd(7, "Browser.close", "", ""), MsgBrowserClose)
	n := cmd(8, "Target.createBrowserContext", `{}`, "S")
	n.Nested = true
	mustRefuse(t, ic, c, n, MsgNested)
	c.info["FOREIGN"] = "B-CTX"
	mustRefuse(t, ic, c, cmd(9, "Target.attachToTarget", `{"targetId":"FOREIGN","flatten":true}`, ""), MsgForeignTarget)
	mustRefuse(t, ic, c, cmd(10, "Browser.getWindowForTarget", `{"targetId":"FOREIGN"}`, ""), MsgForeignTarget)
	// a geo guard still refuses agent proxies
	mustRefuse(t, NewGuard(Options{ProxyServer: ourProxy}).Interceptor(), c, cmd(11, "Target.createBrowserContext", `{"proxyServer":"direct://"}`, ""), MsgProxyServer)
}

func TestTargetEventsFiltered(t *testing.T) {
	g := NewGuard(Options{Direct: true})
	ic, c := g.Interceptor(), newFake()
	c.called = make(chan string, 8)
	mustForward(t, ic, c, cmd(1, "Target.createBrowserContext", ``, ""))
	mustPass(t, ic, c, resp(1, "", "Target.createBrowserContext", `{"browserContextId":"MINE"}`))

	mustPass(t, ic, c, event("Target.targetCreated", `{"targetInfo":{"targetId":"T1","type":"page","url":"x","browserContextId":"MINE"}}`))
	mustDrop(t, ic, c, event("Target.targetCreated", `{"targetInfo":{"targetId":"F1","type":"page","url":"x","browserContextId":"THEIRS"}}`))
	mustDrop(t, ic, c, event("Target.targetCreated", `{"targetInfo":{"targetId":"F2","type":"page","url":"x"}}`))
	mustPass(t, ic, c, event("Target.targetCreated", `{"targetInfo":{"targetId":"B","type":"browser","url":""}}`))
	mustPass(t, ic, c, event("Target.targetInfoChanged", `{"targetInfo":{"targetId":"T1","type":"page","url":"y","browserContextId":"MINE"}}`))
	mustDrop(t, ic, c, event("Target.targetInfoChanged", `{"targetInfo":{"targetId":"F1","type":"page","url":"y","browserContextId":"THEIRS"}}`))
	mustDrop(t, ic, c, event("Target.targetCrashed", `{"targetId":"F1","status":"crashed","errorCode":1}`))
	mustPass(t, ic, c, event("Target.targetCrashed", `{"targetId":"T1","status":"crashed","errorCode":1}`))

	// a foreign auto-attached page: hidden, resumed and detached by the daemon
	mustDrop(t, ic, c, event("Target.attachedToTarget", `{"sessionId":"FS","targetInfo":{"targetId":"F1","type":"page","browserContextId":"THEIRS"},"waitingForDebugger":true}`))
	for _, want := range []string{`Runtime.runIfWaitingForDebugger FS null`, `Target.detachFromTarget  {"sessionId":"FS"}`} {
		select {
		case got := <-c.called:
			if got != want {
				t.Fatalf("call %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no call %q", want)
		}
	}
	c.targets["FS"] = cdpproxy.TargetInfo{SessionID: "FS", TargetID: "F1", Type: "page", BrowserContext: "THEIRS"}
	mustDrop(t, ic, c, onSession(event("Runtime.consoleAPICalled", `{"type":"log","args":[]}`), "FS"))
	mustDrop(t, ic, c, onSession(event("Network.requestWillBeSent", `{}`), "FS"))
	mustDrop(t, ic, c, resp(3, "FS", "Runtime.evaluate", `{"result":{"type":"string","value":"theirs"}}`))
	mustDrop(t, ic, c, event("Target.receivedMessageFromTarget", `{"sessionId":"FS","message":"{}","targetId":"F1"}`))
	mustDrop(t, ic, c, event("Target.detachedFromTarget", `{"sessionId":"FS","targetId":"F1"}`))
	// not waiting: only detached
	mustDrop(t, ic, c, event("Target.attachedToTarget", `{"sessionId":"FS2","targetInfo":{"targetId":"F3","type":"service_worker","browserContextId":"THEIRS"},"waitingForDebugger":false}`))
	if got := <-c.called; got != `Target.detachFromTarget  {"sessionId":"FS2"}` {
		t.Fatalf("call %q", got)
	}
	// a session the guard and the tracker do not know: dropped (fail closed)
	mustDrop(t, ic, c, onSession(event("Page.loadEventFired", `{}`), "UNKNOWN"))
	// an own page: everything flows
	mustPass(t, ic, c, event("Target.attachedToTarget", `{"sessionId":"OS","targetInfo":{"targetId":"T1","type":"page","browserContextId":"MINE"},"waitingForDebugger":true}`))
	mustPass(t, ic, c, onSession(event("Runtime.consoleAPICalled", `{}`), "OS"))
	mustPass(t, ic, c, resp(4, "OS", "Runtime.evaluate", `{"result":{}}`))
	mustPass(t, ic, c, event("Target.receivedMessageFromTarget", `{"sessionId":"OS","message":"{}"}`))
	mustPass(t, ic, c, event("Target.detachedFromTarget", `{"sessionId":"OS","targetId":"T1"}`))
	// the tracker's context is used for sessions attached before (or
	// elsewhere): an own one passes, a foreign one does not
	c.targets["TS"] = cdpproxy.TargetInfo{SessionID: "TS", TargetID: "T9", Type: "iframe", BrowserContext: "MINE"}
	mustPass(t, ic, c, onSession(event("Page.loadEventFired", `{}`), "TS"))
	c.targets["BS"] = cdpproxy.TargetInfo{SessionID: "BS", Type: "browser"}
	mustDrop(t, ic, c, onSession(event("Page.loadEventFired", `{}`), "BS"))
	// destroyed: own shown, foreign and unknown not
	mustPass(t, ic, c, event("Target.targetDestroyed", `{"targetId":"T1"}`))
	mustDrop(t, ic, c, event("Target.targetDestroyed", `{"targetId":"F1"}`))
	mustDrop(t, ic, c, event("Target.targetDestroyed", `{"targetId":"NEVER-SEEN"}`))
	// after the agent disposes its context, the events of its closing pages
	// still reach it, but the context cannot be used
	mustPass(t, ic, c, event("Target.targetCreated", `{"targetInfo":{"targetId":"T2","type":"page","browserContextId":"MINE"}}`))
	mustForward(t, ic, c, cmd(5, "Target.disposeBrowserContext", `{"browserContextId":"MINE"}`, ""))
	mustPass(t, ic, c, event("Target.targetDestroyed", `{"targetId":"T2"}`))
	mustRefuse(t, ic, c, cmd(6, "Target.createTarget", `{"browserContextId":"MINE"}`, ""), MsgCreateTarget)
	if len(c.called) != 0 {
		t.Fatalf("unexpected calls: %d", len(c.called))
	}
}

func TestPageSocketEventsFiltered(t *testing.T) {
	g := NewGuard(Options{Direct: true})
	g.allow("MINE")
	foreign := newFake()
	foreign.root = cdpproxy.TargetInfo{Type: "page", TargetID: "P-F"}
	mustDrop(t, g.Interceptor(), foreign, event("Page.loadEventFired", `{}`))
	mustDrop(t, g.Interceptor(), foreign, reply(1, "", `{}`))
	ours := newFake()
	ours.root = cdpproxy.TargetInfo{Type: "page", TargetID: "P-O"}
	ours.info["P-O"] = "MINE"
	ic := g.Interceptor()
	mustForward(t, ic, ours, cmd(1, "Page.enable", `{}`, ""))
	mustPass(t, ic, ours, reply(1, "", `{}`))
	mustPass(t, ic, ours, event("Page.loadEventFired", `{}`))
}

func TestResponsesFiltered(t *testing.T) {
	g := NewGuard(Options{Direct: true})
	g.allow("MINE")
	ic, c := g.Interceptor(), newFake()
	m := resp(7, "", "Target.getTargets", `{"targetInfos":[{"targetId":"F1","type":"page","title":"beta secret","url":"http://x/","attached":false,"browserContextId":"THEIRS"},`+
		`{"targetId":"T1","type":"page","title":"t","url":"u","attached":true,"canAccessOpener":false,"browserContextId":"MINE"},{"targetId":"F2","type":"page"},`+
		` {"targetId":"B","type":"browser","title":"","url":""}]}`)
	v := evKind(t, ic, c, m)
	if v.Kind != cdpproxy.Replace {
		t.Fatalf("getTargets: kind %d", v.Kind)
	}
	var out struct {
		ID     int64 `json:"id"`
		Result struct {
			TargetInfos []map[string]any `json:"targetInfos"`
		} `json:"result"`
	}
	if err := json.Unmarshal(v.Data, &out); err != nil {
		t.Fatalf("%s: %v", v.Data, err)
	}
	if out.ID != 7 || len(out.Result.TargetInfos) != 2 || out.Result.TargetInfos[0]["targetId"] != "T1" || out.Result.TargetInfos[1]["targetId"] != "B" ||
		strings.Contains(string(v.Data), "beta secret") {
		t.Fatalf("filtered getTargets: %s", v.Data)
	}
	if bc, ok := g.targetContext("F1"); !ok || bc != "THEIRS" {
		t.Fatal("target contexts not learned from getTargets")
	}
	// on a flattened session of an own page, the sessionId is kept
	c.targets["OS"] = cdpproxy.TargetInfo{SessionID: "OS", TargetID: "T1", Type: "page", BrowserContext: "MINE"}
	v = evKind(t, ic, c, resp(8, "OS", "Target.getTargets", `{"targetInfos":[{"targetId":"F1","browserContextId":"THEIRS"}]}`))
	if v.Kind != cdpproxy.Replace || string(v.Data) != `{"id":8,"result":{"targetInfos":[]},"sessionId":"OS"}` {
		t.Fatalf("getTargets on a session: %d %s", v.Kind, v.Data)
	}
	// nothing to hide: forwarded as it is
	mustPass(t, ic, c, resp(9, "", "Target.getTargets", `{"targetInfos":[{"targetId":"T1","browserContextId":"MINE"}]}`))
	mustPass(t, ic, c, resp(10, "", "Target.getTargets", `{"targetInfos":[]}`))
	mustPass(t, ic, c, &cdpproxy.Message{Raw: []byte(`{"id":11,"error":{"code":-32000,"message":"x"}}`), ID: 11, HasID: true, ReplyTo: "Target.getTargets"})
	// unreadable: withheld
	for _, bad := range []string{`{"targetInfos":{}}`, `{}`, `{"targetInfos":[1,2}`, `{"targetInfos":[],"targetInfos":[{"browserContextId":"THEIRS"}]}`} {
		v = evKind(t, ic, c, resp(12, "", "Target.getTargets", bad))
		if v.Kind != cdpproxy.Replace || !strings.Contains(string(v.Data), MsgWithheld) {
			t.Fatalf("getTargets %s: %d %s", bad, v.Kind, v.Data)
		}
	}

	v = evKind(t, ic, c, resp(13, "", "Target.getBrowserContexts", `{"browserContextIds":["THEIRS","MINE","OTHER"],"defaultBrowserContextId":"DEF"}`))
	if v.Kind != cdpproxy.Replace || string(v.Data) != `{"id":13,"result":{"browserContextIds":["MINE"],"defaultBrowserContextId":"DEF"}}` {
		t.Fatalf("getBrowserContexts: %d %s", v.Kind, v.Data)
	}

	v = evKind(t, ic, c, resp(14, "", "Target.getTargetInfo", `{"targetInfo":{"targetId":"F1","type":"page","title":"beta secret","browserContextId":"THEIRS"}}`))
	if v.Kind != cdpproxy.Replace || strings.Contains(string(v.Data), "beta") || !strings.Contains(string(v.Data), MsgForeignTarget) {
		t.Fatalf("getTargetInfo of a foreign target: %d %s", v.Kind, v.Data)
	}
	mustPass(t, ic, c, resp(15, "", "Target.getTargetInfo", `{"targetInfo":{"targetId":"T1","type":"page","browserContextId":"MINE"}}`))
	mustPass(t, ic, c, resp(16, "", "Target.getTargetInfo", `{"targetInfo":{"targetId":"B","type":"browser"}}`))
	// other responses pass untouched
	mustPass(t, ic, c, resp(17, "", "Browser.getVersion", `{"product":"x"}`))
}

func TestFilterDiscovery(t *testing.T) {
	g := NewGuard(Options{Direct: true})
	g.allow("MINE")
	g.learnTarget("T1", "MINE")
	g.learnTarget("F1", "THEIRS")
	list := []byte(`[ {
   "description": "", "id": "F1", "title": "beta", "type": "page", "url": "http://acme.test/echo"
}, {
   "id": "T1", "title": "mine", "type": "page"
}, {
   "id": "UNKNOWN", "type": "page"
}, "junk" ]`)
	for _, sub := range []string{"", "/json", "/json/list/"} {
		out, err := g.FilterDiscovery(sub, list)
		if err != nil {
			t.Fatal(err)
		}
		var l []map[string]any
		if err := json.Unmarshal(out, &l); err != nil || len(l) != 1 || l[0]["id"] != "T1" {
			t.Fatalf("FilterDiscovery(%q) = %s (%v)", sub, out, err)
		}
	}
	own := []byte(`[{"id":"T1"}]`)
	if out, err := g.FilterDiscovery("", own); err != nil || &out[0] != &own[0] {
		t.Fatalf("nothing to remove: a copy or an error (%v)", err)
	}
	for _, sub := range []string{"", "/json/version", "/json/protocol"} {
		v := []byte(`{"Browser":"x","webSocketDebuggerUrl":"ws://h/devtools/browser/b"}`)
		if out, err := g.FilterDiscovery(sub, v); err != nil || string(out) != string(v) {
			t.Fatalf("FilterDiscovery(%q, version) = %s %v", sub, out, err)
		}
	}
	if _, err := g.FilterDiscovery("/json/list", []byte(`{"id":"F1"}`)); err == nil {
		t.Fatal("a target list that is not an array passed")
	}
	if _, err := g.FilterDiscovery("", []byte(`[{"id":"T1"},`)); err == nil {
		t.Fatal("a malformed target list passed")
	}
}

// Windows are shared browser state: a session may size only the windows of
// its own targets, learned from Browser.getWindowForTarget.
func TestWindows(t *testing.T) {
	g := NewGuard(Options{Direct: true})
	g.allow("MINE")
	ic, c := g.Interceptor(), newFake()
	c.info["FOREIGN"] = "THEIRS"
	c.info["OWN"] = "MINE"
	c.targets["OS"] = cdpproxy.TargetInfo{SessionID: "OS", TargetID: "OWN", Type: "page", BrowserContext: "MINE"}
	for _, sid := range []string{"", "OS"} {
		mustRefuse(t, ic, c, cmd(1, "Browser.setWindowBounds", `{"windowId":5,"bounds":{"windowState":"minimized"}}`, sid), MsgForeignTarget)
		mustRefuse(t, ic, c, cmd(2, "Browser.getWindowBounds", `{"windowId":5}`, sid), MsgForeignTarget)
		mustRefuse(t, ic, c, cmd(3, "Browser.getWindowForTarget", `{"targetId":"FOREIGN"}`, sid), MsgForeignTarget)
	}
	mustRefuse(t, ic, c, cmd(4, "Browser.getWindowForTarget", `{}`, ""), MsgForeignTarget)
	mustForward(t, ic, c, cmd(5, "Browser.getWindowForTarget", `{"targetId":"OWN"}`, ""))
	mustForward(t, ic, c, cmd(6, "Browser.getWindowForTarget", `{}`, "OS"))
	mustPass(t, ic, c, resp(6, "OS", "Browser.getWindowForTarget", `{"windowId":5,"bounds":{}}`))
	for _, sid := range []string{"", "OS"} {
		mustForward(t, ic, c, cmd(7, "Browser.setWindowBounds", `{"windowId":5,"bounds":{"width":800}}`, sid))
		mustRefuse(t, ic, c, cmd(8, "Browser.setWindowBounds", `{"windowId":6,"bounds":{"width":800}}`, sid), MsgForeignTarget)
	}
	mustRefuse(t, ic, c, cmd(9, "Browser.setWindowBounds", `{"windowId":5,"windowId":6}`, ""), MsgForeignTarget)
}
