package e2e_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The control tests run the same client scripts against a Chromium driven
// directly, with no cdpvault. They show that the site and the scripts do what
// the daemon tests assume, so a failing daemon test points at the daemon.

func TestControlClientsWorkAgainstDirectChromium(t *testing.T) {
	t.Parallel()
	site := NewSite(t)
	c := StartDirectChrome(t)
	for _, script := range []string{"pw-basic.mjs", "pptr-basic.mjs"} {
		out := runNode(t, script, map[string]string{"CDP_URL": c.CDPURL, "WS_URL": c.WSURL, "SITE_URL": site.Origin("acme")})
		checkBasicResult(t, script, out)
	}
}

// checkBasicResult checks the output of pw-basic.mjs / pptr-basic.mjs.
func checkBasicResult(t *testing.T, script string, out []byte) {
	t.Helper()
	var r struct {
		Title, Heading, ScreenshotMagic string
		Sum, ScreenshotLen              int
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%s: output %s: %v", script, out, err)
	}
	if r.Title != "blank" || r.Sum != 42 || r.Heading != "Login at acme.test" ||
		r.ScreenshotMagic != "89504e47" || r.ScreenshotLen < 100 {
		t.Errorf("%s: got %+v, want title blank, sum 42, heading of the login page and a PNG screenshot", script, r)
	}
}

func TestControlLiteralValueReachesSiteExactly(t *testing.T) {
	t.Parallel()
	site := NewSite(t)
	c := StartDirectChrome(t)
	for _, tc := range []struct{ script, mode string }{{"pw-login.mjs", "fill"}, {"pw-login.mjs", "press"}, {"pptr-login.mjs", ""}} {
		before := len(site.Requests())
		runNode(t, tc.script, map[string]string{"CDP_URL": c.CDPURL, "WS_URL": c.WSURL, "MODE": tc.mode,
			"LOGIN_URL": site.URL("acme", "/login"), "USERNAME": "alice", "TEXT": string(trickyValue)})
		checkLogin(t, tc.script+" "+tc.mode, site.Requests()[before:], "acme.test", trickyValue)
	}
}

// checkLogin asserts that reqs hold one fetch login and one form login on
// host, each carrying exactly want as the password.
func checkLogin(t *testing.T, what string, reqs []Recorded, host string, want []byte) {
	t.Helper()
	var fetches, forms int
	for _, r := range reqs {
		if r.Host != host {
			continue
		}
		switch {
		case r.Path == "/api/login":
			fetches++
			if !bytes.Equal(r.Body, want) {
				t.Errorf("%s: fetch login body %q, want exactly %q", what, r.Body, want)
			}
			if r.Header.Get("X-Input-Events") == "0" {
				t.Errorf("%s: the password field saw no input events", what)
			}
		case r.Path == "/login" && r.Method == "POST":
			forms++
			q, err := url.ParseQuery(string(r.Body))
			if err != nil {
				t.Errorf("%s: form body %q: %v", what, r.Body, err)
			}
			if got := q.Get("password"); got != string(want) {
				t.Errorf("%s: form password %q, want exactly %q", what, got, want)
			}
			if got := q.Get("username"); got != "alice" {
				t.Errorf("%s: form username %q, want alice", what, got)
			}
		}
	}
	if fetches != 1 || forms != 1 {
		t.Errorf("%s: %d fetch and %d form logins reached %s, want 1 and 1", what, fetches, forms, host)
	}
}

// echoChannels are the top-level fields of pw-echo.mjs / pptr-echo.mjs
// output; each is a separate way for a client to read the page back.
var echoChannels = map[string][]string{
	"pw-echo.mjs":   {"documentResponseText", "content", "innerText", "textContent", "innerHTML", "evaluate", "inputValue", "getAttribute", "ariaSnapshot", "consoleMessages", "exchanges"},
	"pptr-echo.mjs": {"documentResponseText", "content", "evaluate", "fieldValues", "accessibility", "consoleMessages", "exchanges"},
}

func TestControlEchoChannelsCarryTheValueWithoutDaemon(t *testing.T) {
	t.Parallel()
	site := NewSite(t)
	vals := [][]byte{plainValue, trickyValue}
	site.SetEchoValues(vals...)
	c := StartDirectChrome(t)
	for script, channels := range echoChannels {
		out := runNode(t, script, map[string]string{"CDP_URL": c.CDPURL, "WS_URL": c.WSURL,
			"ECHO_URL": site.URL("acme", "/echo"), "N": "2"})
		var m map[string]json.RawMessage
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%s output: %v", script, err)
		}
		for _, ch := range channels {
			for _, v := range vals {
				if len(valueHits(m[ch], v)) == 0 {
					t.Errorf("%s: channel %s does not carry %q in any form; the scrub test would be vacuous there", script, ch, v)
				}
			}
		}
	}
}

func TestControlMemoryScanFindsLiveValue(t *testing.T) {
	t.Parallel()
	live := []byte("memscan-" + randomHex(12))
	hits, err := scanProcessMemory(os.Getpid(), map[string][]byte{"live": live})
	if err != nil {
		t.Fatal(err)
	}
	if hits["live"] == 0 {
		t.Errorf("the memory scan did not find a value this process holds")
	}
	runtimeKeepAlive(live)
}

func runtimeKeepAlive(b []byte) { runtime.KeepAlive(b) }

func TestControlScriptsRunToTheEndAgainstDirectChromium(t *testing.T) {
	t.Parallel()
	site := NewSite(t)
	c := StartDirectChrome(t)
	ph := placeholder(acmePassword)
	others, _ := json.Marshal([]string{placeholder(acmeOther)})
	out := runNode(t, "pw-refuse.mjs", map[string]string{"CDP_URL": c.CDPURL, "ACME": site.Origin("acme"),
		"EVIL": site.Origin("evil"), "PH": ph, "OTHERS": string(others)})
	var results []struct {
		Name  string
		OK    bool
		Error string
	}
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("pw-refuse.mjs: %v", err)
	}
	if len(results) != 15 {
		t.Errorf("pw-refuse.mjs ran %d attempts, want 15", len(results))
	}
	for _, r := range results {
		if !r.OK {
			t.Errorf("without a daemon, attempt %s failed: %s", r.Name, r.Error)
		}
	}
	if n := len(site.Received("evil.test", "/api/login")); n != 3 {
		t.Errorf("evil.test got %d fetch logins, want 3", n)
	}
	if n := len(site.Received("sub.acme.test", "/api/login")); n != 1 {
		t.Errorf("sub.acme.test got %d fetch logins, want 1", n)
	}
	// Without a daemon the literal placeholder travels: the test's leak
	// checks would see a value the same way.
	if len(site.Leaks("evil.test", []byte(ph))) == 0 {
		t.Errorf("the placeholder typed on evil.test never reached it; the refusal test could not see a leak there")
	}

	texts := []string{"a<<b<c", "<<secret:!x", "Ünï 😀"}
	tj, _ := json.Marshal(texts)
	for _, client := range []string{"pw", "pptr"} {
		out := runNode(t, "typing.mjs", map[string]string{"CLIENT": client, "CDP_URL": c.CDPURL, "WS_URL": c.WSURL,
			"LOGIN_URL": site.URL("acme", "/login"), "TEXTS": string(tj)})
		if !strings.Contains(string(out), `"got":"Ünï 😀"`) {
			t.Errorf("typing.mjs %s: %s", client, out)
		}
	}
	for _, g := range chromedpTyping(t, c.WSURL, site.URL("acme", "/login"), texts) {
		if g.Got != g.Text {
			t.Errorf("chromedp typed %q, page has %q", g.Text, g.Got)
		}
	}
	before := len(site.Requests())
	chromedpLogin(t, c.WSURL, site.URL("acme", "/login"), string(trickyValue))
	checkLogin(t, "chromedp", site.Requests()[before:], "acme.test", trickyValue)
}

func TestControlRawCDPHelpersAgainstDirectChromium(t *testing.T) {
	t.Parallel()
	site := NewSite(t)
	c := StartDirectChrome(t)
	r := DialRaw(t, c.WSURL)
	tid, sid := r.NewPageSession("about:blank")
	r.Navigate(sid, site.URL("evil", "/login?autofocus=1"))
	r.MustCall(sid, "Page.bringToFront", nil, nil)
	r.Evaluate(sid, "document.getElementById('password').focus()")
	r.MustCall(sid, "Input.insertText", map[string]any{"text": "typed"}, nil)
	if got := string(r.Evaluate(sid, "document.getElementById('password').value")); got != `"typed"` {
		t.Errorf("insertText into the autofocused field: %s", got)
	}
	// The legacy, non-flattened path the daemon must police.
	var at struct {
		SessionID string `json:"sessionId"`
	}
	r.MustCall("", "Target.attachToTarget", map[string]any{"targetId": tid, "flatten": false}, &at)
	r.MustCall("", "Target.sendMessageToTarget", map[string]any{"sessionId": at.SessionID,
		"message": `{"id":2,"method":"Input.insertText","params":{"text":"+legacy"}}`}, nil)
	deadline := time.Now().Add(waitTimeout)
	for string(r.Evaluate(sid, "document.getElementById('password').value")) != `"typed+legacy"` {
		if time.Now().After(deadline) {
			t.Fatalf("a legacy nested Input.insertText never reached the page")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Chrome ends a page socket on /json/close; see how.
	code, body := httpDo(t, http.MethodPut, c.CDPURL+"/json/new?about:blank", nil)
	var nt discoveryTarget
	if code != http.StatusOK || json.Unmarshal(body, &nt) != nil {
		t.Fatalf("PUT /json/new = %d %s", code, body)
	}
	p := DialRaw(t, nt.WebSocketDebuggerURL)
	p.Evaluate("", "1")
	if code, _ := httpDo(t, http.MethodGet, c.CDPURL+"/json/close/"+nt.ID, nil); code != http.StatusOK {
		t.Fatalf("/json/close = %d", code)
	}
	closed, ccode, err := p.WaitClosed(waitTimeout)
	t.Logf("direct Chrome on /json/close: close frame %v code %d err %v", closed, ccode, err)
}

// Without cdpvault the examples type the literal placeholder, so the demo
// site refuses the login: the examples work and only the daemon can make
// them succeed.
func TestControlExamplesFailWithoutDaemon(t *testing.T) {
	t.Parallel()
	bins := buildExamples(t)
	password := []byte("Demo pw " + randomHex(6))
	for _, which := range []string{"playwright", "go"} {
		c := StartDirectChrome(t)
		site := startDemoSite(t, bins, password)
		out, errOut, err := runExample(t, which, bins, map[string]string{"CDP_URL": c.CDPURL, "SITE_URL": site})
		if err == nil {
			t.Errorf("%s example succeeded without cdpvault", which)
		}
		checkExample(t, which, site, password, out, errOut, nil, "login failed")
	}
}
