package ctxguard

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// fakeConn isolates the Guard from a browser: it answers Target and
// Target.getTargetInfo lookups from tables.
type fakeConn struct {
	mu      sync.Mutex
	root    cdpproxy.TargetInfo
	targets map[string]cdpproxy.TargetInfo // flattened sessionId -> target
	info    map[string]string              // targetId -> browserContextId for Target.getTargetInfo
	calls   []string
	called  chan string // when set, gets "method sessionId params" of every Call
}

func newFake() *fakeConn {
	return &fakeConn{root: cdpproxy.TargetInfo{Type: "browser", TargetID: "browser-1"},
		targets: map[string]cdpproxy.TargetInfo{}, info: map[string]string{}}
}

func (f *fakeConn) Session() *cdpproxy.Session { return &cdpproxy.Session{ID: "s1"} }

func (f *fakeConn) Target(sid string) (cdpproxy.TargetInfo, bool) {
	if sid == "" {
		return f.root, true
	}
	ti, ok := f.targets[sid]
	return ti, ok
}

func (f *fakeConn) Call(ctx context.Context, sid, method string, params any) (json.RawMessage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, method)
	if f.called != nil {
		p, _ := json.Marshal(params)
		f.called <- method + " " + sid + " " + string(p)
		return json.RawMessage(`{}`), nil
	}
	if method != "Target.getTargetInfo" {
		return nil, errors.New("unexpected call")
	}
	tid := params.(map[string]string)["targetId"]
	bc, ok := f.info[tid]
	if !ok {
		return nil, &cdpproxy.CDPError{Code: -32602, Message: "No target with given id found"}
	}
	return json.Marshal(map[string]any{"targetInfo": map[string]string{"targetId": tid, "type": "page", "browserContextId": bc}})
}

func (f *fakeConn) WriteClient([]byte) error { return nil }

// cmd builds a client command the way the proxy hands it over.
func cmd(id int64, method, params, sid string) *cdpproxy.Message {
	raw := `{"id":` + itoa(id) + `,"method":"` + method + `"`
	if params != "" {
		raw += `,"params":` + params
	}
	if sid != "" {
		raw += `,"sessionId":"` + sid + `"`
	}
	raw += "}"
	return &cdpproxy.Message{Raw: []byte(raw), ID: id, HasID: true, Method: method, SessionID: sid}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func reply(id int64, sid, result string) *cdpproxy.Message {
	raw := `{"id":` + itoa(id) + `,"result":` + result
	if sid != "" {
		raw += `,"sessionId":"` + sid + `"`
	}
	raw += "}"
	return &cdpproxy.Message{Raw: []byte(raw), ID: id, HasID: true, SessionID: sid}
}

func event(method, params string) *cdpproxy.Message {
	return &cdpproxy.Message{Raw: []byte(`{"method":"` + method + `","params":` + params + `}`), Method: method}
}

func mustForward(t *testing.T, ic cdpproxy.Interceptor, c cdpproxy.Conn, m *cdpproxy.Message) {
	t.Helper()
	v, err := ic.Command(context.Background(), c, m)
	if err != nil || v.Kind != cdpproxy.Forward {
		t.Fatalf("%s %s: want Forward, got kind %d data %s err %v", m.Method, m.Raw, v.Kind, v.Data, err)
	}
}

func mustRefuse(t *testing.T, ic cdpproxy.Interceptor, c cdpproxy.Conn, m *cdpproxy.Message, want string) {
	t.Helper()
	v, err := ic.Command(context.Background(), c, m)
	if err != nil || v.Kind != cdpproxy.Reply {
		t.Fatalf("%s %s: want Reply, got kind %d err %v", m.Method, m.Raw, v.Kind, err)
	}
	var r struct {
		ID    int64 `json:"id"`
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		SessionID string `json:"sessionId"`
	}
	if err := json.Unmarshal(v.Data, &r); err != nil {
		t.Fatal(err)
	}
	if r.ID != m.ID || r.Error.Code != -32000 || r.Error.Message != want || r.SessionID != m.SessionID {
		t.Fatalf("%s: refusal %s, want message %q", m.Method, v.Data, want)
	}
}

const ourProxy = "http://127.0.0.1:41234"

// allowContext runs a createBrowserContext and its response through ic and
// returns the rewritten command's params.
func allowContext(t *testing.T, ic cdpproxy.Interceptor, c cdpproxy.Conn, id int64, bc string) map[string]any {
	t.Helper()
	v, err := ic.Command(context.Background(), c, cmd(id, "Target.createBrowserContext", `{"disposeOnDetach":true,"originsWithUniversalNetworkAccess":["http://a.test"]}`, ""))
	if err != nil || v.Kind != cdpproxy.Replace {
		t.Fatalf("createBrowserContext: kind %d err %v", v.Kind, err)
	}
	var out struct {
		ID     int64          `json:"id"`
		Method string         `json:"method"`
		Params map[string]any `json:"params"`
	}
	if err := json.Unmarshal(v.Data, &out); err != nil {
		t.Fatal(err)
	}
	if out.ID != id || out.Method != "Target.createBrowserContext" {
		t.Fatalf("replacement header: %s", v.Data)
	}
	m := reply(id, "", `{"browserContextId":"`+bc+`"}`)
	m.ReplyTo = "Target.createBrowserContext"
	if v, err := ic.Event(context.Background(), c, m); err != nil || v.Kind != cdpproxy.Forward {
		t.Fatalf("response: kind %d err %v", v.Kind, err)
	}
	return out.Params
}

func TestCreateBrowserContextRewritten(t *testing.T) {
	g := NewGuard(Options{ProxyServer: ourProxy, BypassList: "<-loopback>"})
	ic, c := g.Interceptor(), newFake()
	p := allowContext(t, ic, c, 1, "CTX1")
	if p["proxyServer"] != ourProxy || p["proxyBypassList"] != "<-loopback>" || p["disposeOnDetach"] != true {
		t.Fatalf("rewritten params: %v", p)
	}
	if o, _ := p["originsWithUniversalNetworkAccess"].([]any); len(o) != 1 || o[0] != "http://a.test" {
		t.Fatalf("client param lost: %v", p)
	}
	if got := g.Contexts(); len(got) != 1 || got[0] != "CTX1" {
		t.Fatalf("Contexts = %v", got)
	}
	// another connection of the same session may use it
	ic2 := g.Interceptor()
	mustForward(t, ic2, newFake(), cmd(2, "Target.createTarget", `{"url":"about:blank","browserContextId":"CTX1"}`, ""))
	// a createBrowserContext without params at all is rewritten too
	v, err := ic2.Command(context.Background(), c, cmd(3, "Target.createBrowserContext", "", ""))
	if err != nil || v.Kind != cdpproxy.Replace || !strings.Contains(string(v.Data), ourProxy) {
		t.Fatalf("no params: %d %s %v", v.Kind, v.Data, err)
	}
}

func TestAgentProxyRefused(t *testing.T) {
	g := NewGuard(Options{ProxyServer: ourProxy, BypassList: "<-loopback>"})
	ic, c := g.Interceptor(), newFake()
	for _, p := range []string{`{"proxyServer":"http://evil:1"}`, `{"proxyServer":""}`, `{"proxyServer":null}`,
		`{"proxyBypassList":"*"}`, `{"proxy\u0053erver":"direct://"}`} {
		mustRefuse(t, ic, c, cmd(1, "Target.createBrowserContext", p, ""), MsgProxyServer)
	}
	// a response to a command the guard did not rewrite allows nothing
	m := reply(1, "", `{"browserContextId":"SNEAKY"}`)
	m.ReplyTo = "Target.createBrowserContext"
	ic.Event(context.Background(), c, m)
	if g.Allowed("SNEAKY") {
		t.Fatal("context allowed from a response to a refused command")
	}
	// an error response allows nothing either
	v, _ := ic.Command(context.Background(), c, cmd(5, "Target.createBrowserContext", `{}`, ""))
	if v.Kind != cdpproxy.Replace {
		t.Fatal("not rewritten")
	}
	e := &cdpproxy.Message{Raw: []byte(`{"id":5,"error":{"code":-32000,"message":"x"}}`), ID: 5, HasID: true, ReplyTo: "Target.createBrowserContext"}
	ic.Event(context.Background(), c, e)
	if len(g.Contexts()) != 0 {
		t.Fatalf("contexts after error: %v", g.Contexts())
	}
}

func TestNoProxyConfiguredFailsClosed(t *testing.T) {
	ic := NewGuard(Options{}).Interceptor()
	mustRefuse(t, ic, newFake(), cmd(1, "Target.createBrowserContext", `{}`, ""), MsgNoProxy)
}

func TestCreateTarget(t *testing.T) {
	g := NewGuard(Options{ProxyServer: ourProxy})
	ic, c := g.Interceptor(), newFake()
	mustRefuse(t, ic, c, cmd(1, "Target.createTarget", `{"url":"http://site.test/"}`, ""), MsgCreateTarget)
	mustRefuse(t, ic, c, cmd(2, "Target.createTarget", `{"url":"http://site.test/","browserContextId":"OTHER"}`, ""), MsgCreateTarget)
	mustRefuse(t, ic, c, cmd(3, "Target.createTarget", `{"url":"http://site.test/","browserContextId":""}`, ""), MsgCreateTarget)
	allowContext(t, ic, c, 4, "CTX")
	mustForward(t, ic, c, cmd(5, "Target.createTarget", `{"url":"http://site.test/","browserContextId":"CTX"}`, ""))
	// a repeated member could make Chrome read another value than the guard
	mustRefuse(t, ic, c, cmd(6, "Target.createTarget", `{"browserContextId":"CTX","browserContextId":"OTHER"}`, ""), MsgMalformed)
	mustRefuse(t, ic, c, cmd(7, "Target.createTarget", `["CTX"]`, ""), MsgMalformed)
	mustRefuse(t, ic, c, &cdpproxy.Message{Raw: []byte(`{"id":8,"method":"Target.createTarget","params":{"browserContextId":"CTX"},"params":{}}`),
		ID: 8, HasID: true, Method: "Target.createTarget"}, MsgMalformed)
	// the created target is known to be inside (no lookup needed later)
	r := reply(5, "", `{"targetId":"T5"}`)
	r.ReplyTo = "Target.createTarget"
	ic.Event(context.Background(), c, r)
	mustForward(t, ic, c, cmd(9, "Target.attachToTarget", `{"targetId":"T5","flatten":true}`, ""))
	if len(c.calls) != 0 {
		t.Fatalf("lookups: %v", c.calls)
	}
}

func TestTargetScopedCommands(t *testing.T) {
	g := NewGuard(Options{ProxyServer: ourProxy})
	ic, c := g.Interceptor(), newFake()
	allowContext(t, ic, c, 1, "CTX")
	c.info["DEFAULT-PAGE"] = "DEFAULT"
	c.info["OUR-PAGE"] = "CTX"
	for _, meth := range []string{"Target.attachToTarget", "Target.activateTarget", "Target.closeTarget",
		"Target.autoAttachRelated"} {
		mustRefuse(t, ic, c, cmd(2, meth, `{"targetId":"DEFAULT-PAGE"}`, ""), MsgForeignTarget)
		mustRefuse(t, ic, c, cmd(3, meth, `{"targetId":"GONE"}`, ""), MsgForeignTarget)
		mustRefuse(t, ic, c, cmd(4, meth, `{}`, ""), MsgForeignTarget)
		mustForward(t, ic, c, cmd(5, meth, `{"targetId":"OUR-PAGE"}`, ""))
	}
	// learned from events
	ic.Event(context.Background(), c, event("Target.targetCreated", `{"targetInfo":{"targetId":"EV","type":"page","browserContextId":"CTX"}}`))
	mustForward(t, ic, c, cmd(6, "Target.attachToTarget", `{"targetId":"EV"}`, ""))
	ic.Event(context.Background(), c, event("Target.targetCreated", `{"targetInfo":{"targetId":"EV2","type":"page","browserContextId":"DEFAULT"}}`))
	mustRefuse(t, ic, c, cmd(7, "Target.attachToTarget", `{"targetId":"EV2"}`, ""), MsgForeignTarget)
	for _, meth := range []string{"Target.attachToBrowserTarget", "Target.exposeDevToolsProtocol", "Target.openDevTools", "Target.setRemoteLocations"} {
		mustRefuse(t, ic, c, cmd(8, meth, `{"targetId":"OUR-PAGE"}`, ""), MsgTargetMethod)
	}
	mustRefuse(t, ic, c, cmd(9, "Target.someFutureMethod", `{}`, ""), MsgTargetMethod)
	for _, meth := range []string{"Target.setAutoAttach", "Target.setDiscoverTargets", "Target.getTargets",
		"Target.getTargetInfo", "Target.getBrowserContexts", "Target.detachFromTarget"} {
		mustForward(t, ic, c, cmd(10, meth, `{}`, ""))
	}
	// disposing an own context forgets it; another's is refused
	mustRefuse(t, ic, c, cmd(11, "Target.disposeBrowserContext", `{"browserContextId":"DEFAULT"}`, ""), MsgForeignCtx)
	mustForward(t, ic, c, cmd(12, "Target.disposeBrowserContext", `{"browserContextId":"CTX"}`, ""))
	mustRefuse(t, ic, c, cmd(13, "Target.createTarget", `{"browserContextId":"CTX"}`, ""), MsgCreateTarget)
}

func TestBrowserSessionCommands(t *testing.T) {
	g := NewGuard(Options{ProxyServer: ourProxy})
	ic, c := g.Interceptor(), newFake()
	allowContext(t, ic, c, 1, "CTX")
	for _, meth := range []string{"Browser.close", "Browser.crash", "Browser.crashGpuProcess"} {
		mustRefuse(t, ic, c, cmd(2, meth, "", ""), MsgBrowserClose)
	}
	for _, m := range []*cdpproxy.Message{cmd(3, "Browser.getVersion", "", ""), cmd(4, "SystemInfo.getInfo", "", ""),
		cmd(5, "Schema.getDomains", "", ""), cmd(6, "Storage.getCookies", `{"browserContextId":"CTX"}`, ""),
		cmd(7, "Browser.setDownloadBehavior", `{"behavior":"deny","browserContextId":"CTX"}`, ""),
		cmd(8, "Browser.grantPermissions", `{"permissions":["geolocation"],"browserContextId":"CTX"}`, "")} {
		mustForward(t, ic, c, m)
	}
	mustRefuse(t, ic, c, cmd(9, "Storage.getCookies", `{}`, ""), MsgForeignCtx)
	mustRefuse(t, ic, c, cmd(10, "Storage.getCookies", `{"browserContextId":"DEFAULT"}`, ""), MsgForeignCtx)
	mustRefuse(t, ic, c, cmd(11, "Browser.grantPermissions", `{"permissions":["geolocation"]}`, ""), MsgForeignCtx)
	mustRefuse(t, ic, c, cmd(11, "Browser.setDownloadBehavior", `{"behavior":"allow","browserContextId":"DEFAULT"}`, ""), MsgForeignCtx)
	mustForward(t, ic, c, cmd(11, "Browser.setDownloadBehavior", `{"behavior":"allowAndName","downloadPath":"/tmp/x","eventsEnabled":true}`, ""))
	for _, meth := range []string{"Network.enable", "Page.navigate", "Runtime.evaluate", "Browser.executeBrowserCommand", "Fetch.enable", ""} {
		mustRefuse(t, ic, c, cmd(12, meth, `{}`, ""), MsgRootDomain)
	}
	// a browser-type flattened session is held to the same rules
	c.targets["BS"] = cdpproxy.TargetInfo{SessionID: "BS", Type: "browser"}
	mustRefuse(t, ic, c, cmd(13, "Network.enable", `{}`, "BS"), MsgRootDomain)
	mustForward(t, ic, c, cmd(14, "Browser.getVersion", `{}`, "BS"))
}

func TestFlattenedSessions(t *testing.T) {
	g := NewGuard(Options{ProxyServer: ourProxy})
	ic, c := g.Interceptor(), newFake()
	allowContext(t, ic, c, 1, "CTX")
	c.targets["OURS"] = cdpproxy.TargetInfo{SessionID: "OURS", TargetID: "T1", Type: "page", BrowserContext: "CTX"}
	c.targets["SHARED"] = cdpproxy.TargetInfo{SessionID: "SHARED", TargetID: "T2", Type: "page", BrowserContext: "DEFAULT"}
	c.targets["NOCTX"] = cdpproxy.TargetInfo{SessionID: "NOCTX", TargetID: "T3", Type: "iframe"}
	c.info["T3"] = "CTX"
	mustForward(t, ic, c, cmd(2, "Page.navigate", `{"url":"http://site.test/"}`, "OURS"))
	mustForward(t, ic, c, cmd(3, "Network.enable", `{}`, "OURS"))
	mustRefuse(t, ic, c, cmd(4, "Page.navigate", `{"url":"http://site.test/"}`, "SHARED"), MsgForeignTarget)
	mustRefuse(t, ic, c, cmd(5, "Runtime.evaluate", `{"expression":"fetch('/')"}`, "SHARED"), MsgForeignTarget)
	mustRefuse(t, ic, c, cmd(6, "Page.navigate", `{"url":"http://site.test/"}`, "UNKNOWN"), MsgForeignTarget)
	// the daemon resumes foreign pages itself (the client never sees them)
	mustRefuse(t, ic, c, cmd(7, "Runtime.runIfWaitingForDebugger", "", "SHARED"), MsgForeignTarget)
	mustForward(t, ic, c, cmd(7, "Runtime.runIfWaitingForDebugger", "", "OURS"))
	mustForward(t, ic, c, cmd(7, "Runtime.runIfWaitingForDebugger", "", ""))
	mustForward(t, ic, c, cmd(8, "Target.setAutoAttach", `{"autoAttach":true,"flatten":true}`, "SHARED"))
	mustRefuse(t, ic, c, cmd(9, "Browser.close", "", "OURS"), MsgBrowserClose)
	// context unknown to the tracker: looked up
	mustForward(t, ic, c, cmd(10, "Page.navigate", `{"url":"http://site.test/"}`, "NOCTX"))
	// nested (legacy sendMessageToTarget) commands get the same rules
	n := cmd(11, "Page.navigate", `{"url":"http://site.test/"}`, "SHARED")
	n.Nested = true
	mustRefuse(t, ic, c, n, MsgForeignTarget)
	n = cmd(12, "Target.createBrowserContext", `{}`, "OURS")
	n.Nested = true
	mustRefuse(t, ic, c, n, MsgNested)
	n = cmd(13, "Page.navigate", `{"url":"http://site.test/"}`, "OURS")
	n.Nested = true
	mustForward(t, ic, c, n)
}

func TestPageSocket(t *testing.T) {
	g := NewGuard(Options{ProxyServer: ourProxy})
	ic := g.Interceptor()
	allowContext(t, ic, newFake(), 1, "CTX")
	shared := newFake()
	shared.root = cdpproxy.TargetInfo{Type: "page", TargetID: "P-DEFAULT"}
	shared.info["P-DEFAULT"] = "DEFAULT"
	mustRefuse(t, g.Interceptor(), shared, cmd(2, "Page.navigate", `{"url":"http://site.test/"}`, ""), MsgForeignTarget)
	ours := newFake()
	ours.root = cdpproxy.TargetInfo{Type: "page", TargetID: "P-OURS"}
	ours.info["P-OURS"] = "CTX"
	pic := g.Interceptor()
	mustForward(t, pic, ours, cmd(3, "Page.navigate", `{"url":"http://site.test/"}`, ""))
	mustForward(t, pic, ours, cmd(4, "Runtime.evaluate", `{"expression":"1"}`, ""))
	if len(ours.calls) != 1 {
		t.Fatalf("page context looked up %d times, want once (cached)", len(ours.calls))
	}
	// lookup failure fails closed
	gone := newFake()
	gone.root = cdpproxy.TargetInfo{Type: "page", TargetID: "P-GONE"}
	mustRefuse(t, g.Interceptor(), gone, cmd(5, "Page.navigate", `{"url":"http://site.test/"}`, ""), MsgForeignTarget)
}

func TestShared(t *testing.T) {
	ic, c := NewShared(Options{}), newFake()
	for _, meth := range []string{"Browser.close", "Browser.crash", "Browser.crashGpuProcess"} {
		mustRefuse(t, ic, c, cmd(1, meth, "", ""), MsgBrowserClose)
		n := cmd(2, meth, "", "S")
		n.Nested = true
		mustRefuse(t, ic, c, n, MsgBrowserClose)
	}
	for _, m := range []*cdpproxy.Message{cmd(3, "Browser.getVersion", "", ""), cmd(4, "Target.createTarget", `{"url":"about:blank"}`, ""),
		cmd(5, "Page.navigate", `{"url":"http://x.test/"}`, "S"), cmd(6, "Target.createBrowserContext", `{"proxyServer":"http://p:1"}`, "")} {
		mustForward(t, ic, c, m)
	}
}

// In launch mode a geo session's browser runs behind the pool's forwarder;
// an agent-made context naming another proxy (or direct://) would leave it.
func TestLaunchGeo(t *testing.T) {
	ic, c := NewLaunchGeo(Options{}), newFake()
	for i, p := range []string{`{"proxyServer":"direct://"}`, `{"proxyBypassList":"*"}`,
		`{"\u0070roxyServer":"http://127.0.0.1:1"}`, `{"proxyServer":"","disposeOnDetach":true}`} {
		mustRefuse(t, ic, c, cmd(int64(10+i), "Target.createBrowserContext", p, ""), MsgProxyServer)
	}
	mustRefuse(t, ic, c, cmd(20, "Target.createBrowserContext", `{"browserContextId":"a","browserContextId":"b"}`, ""), MsgMalformed)
	for _, m := range []*cdpproxy.Message{cmd(3, "Target.createBrowserContext", `{"disposeOnDetach":true}`, ""),
		cmd(4, "Target.createBrowserContext", "", ""), cmd(5, "Browser.close", "", ""), cmd(6, "Page.navigate", `{"url":"http://x.test/"}`, "S")} {
		mustForward(t, ic, c, m)
	}
}

func TestObjectStrict(t *testing.T) {
	for _, bad := range []string{`{"a":1,"a":2}`, `{"a":1`, `[1]`, `"x"`, `{"a":1} {}`, `{"a\u0062":1,"ab":2}`} {
		if _, err := object([]byte(bad)); err == nil {
			t.Errorf("object(%s): no error", bad)
		}
	}
	o, err := object([]byte(` {"A":1,"a":2,"b\u0063":"x"} `))
	if err != nil || len(o) != 3 || string(o["bc"]) != `"x"` {
		t.Fatalf("object: %v %v", o, err)
	}
	if o, err := object(nil); err != nil || len(o) != 0 {
		t.Fatalf("object(nil): %v %v", o, err)
	}
}

func TestCommandFields(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want fields
		err  bool
	}{
		{raw: `{"id":1,"method":"x"}`},
		{raw: `{"id":1,"params":null}`},
		{raw: `{"id":1,"params":{"url":"a\"}\",\"browserContextId\":\"X","browserContextId":"CTX"}}`, want: fields{hasBC: true, bc: "CTX"}},
		{raw: `{"params":{"browserContext\u0049d":"C\u0054X","targetId":"T","proxyServer":null}}`, want: fields{hasBC: true, bc: "CTX", targetID: "T", hasProxy: true}},
		{raw: ` { "params" : { "nested" : {"browserContextId":"no"} , "proxyBypassList" : [ "]" ] } } `, want: fields{hasBypass: true}},
		{raw: `{"params":{"browserContextId":7}}`, want: fields{hasBC: true}},
		{raw: `{"params":{"a":"\\\\"},"x":"\\"}`, want: fields{}},
		{raw: `{"params":{"browserContextId":"A","browserContextId":"B"}}`, err: true},
		{raw: `{"params":{"targetId":"A","targetId":"B"}}`, err: true},
		{raw: `{"params":{},"params":{"browserContextId":"B"}}`, err: true},
		{raw: `{"params":[1]}`, err: true},
		{raw: `{"params":"x"}`, err: true},
		{raw: `{"params":{"a":1`, err: true},
		{raw: `[]`, err: true},
		{raw: `{"a":"unterminated}`, err: true},
	} {
		got, err := commandFields([]byte(tc.raw))
		if (err != nil) != tc.err {
			t.Errorf("%s: err %v", tc.raw, err)
			continue
		}
		got.params = nil
		if !tc.err && (got.hasBC != tc.want.hasBC || got.bc != tc.want.bc || got.targetID != tc.want.targetID ||
			got.hasProxy != tc.want.hasProxy || got.hasBypass != tc.want.hasBypass) {
			t.Errorf("%s: got %+v want %+v", tc.raw, got, tc.want)
		}
	}
}

// FuzzMembers checks the fast member scan against encoding/json on every
// valid object: the same members with the same raw values.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":"x\"y","b":{"c":[1,"]",{}]},"d":null,"e":true,"f":-1.5e3}`,
		`{"k\u0061":"\\","b":"\\\""}`, ` {"a" : [ ] , "b":{ } } `, `{"a":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if tr := strings.TrimSpace(string(raw)); tr == "" || tr == "null" || !utf8.Valid(raw) {
			return // absent params read as empty by design; the proxy refuses non-UTF-8 frames
		}
		want, err := object(raw)
		if err != nil {
			return
		}
		got := map[string]string{}
		if err := members(raw, func(k string, v []byte) error {
			got[k] = string(v)
			return nil
		}); err != nil {
			t.Fatalf("members(%q): %v; encoding/json accepts it", raw, err)
		}
		if len(got) != len(want) {
			t.Fatalf("members(%q) = %v, want %d members", raw, got, len(want))
		}
		for k, v := range want {
			if got[k] != string(v) {
				t.Fatalf("members(%q)[%q] = %q, want %q", raw, k, got[k], v)
			}
		}
	})
}

func TestDiscoveryAllowed(t *testing.T) {
	g := NewGuard(Options{ProxyServer: ourProxy})
	g.allow("CTX")
	g.learnTarget("OURS", "CTX")
	g.learnTarget("SHARED", "DEFAULT")
	for sub, want := range map[string]bool{
		"/json": true, "/json/": true, "/json/list": true, "/json/list/": true, "/json/version": true,
		"/json/version/": true, "/json/protocol": true, "/devtools/browser/x": true, "/devtools/page/OURS": true,
		"/json/new": false, "/json/new/": false, "/json/newx": false, "/json/activate/OURS": true,
		"/json/close/OURS": true, "/json/activate/SHARED": false, "/json/close/SHARED": false,
		"/json/close/UNKNOWN": false, "/json/close/": false, "/json/close/OURS/x": false, "/other": false, "": false,
	} {
		if got := g.DiscoveryAllowed(sub); got != want {
			t.Errorf("DiscoveryAllowed(%q) = %v, want %v", sub, got, want)
		}
	}
}
