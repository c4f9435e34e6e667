package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
)

// TestInjectLogin: each client types <<secret:acme_password>> into the
// password field of acme.test, and the site receives exactly the stored value
// (quotes, <, &, %, +, spaces, non-ASCII letters, an emoji), by fetch and by
// native form POST. The clients themselves never see the value.
func TestInjectLogin(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "debug")
	ph := placeholder(acmePassword)
	loginURL := f.Site.URL("acme", "/login")
	clients := []struct {
		name string
		run  func(t *testing.T, s Session) []byte
	}{
		{"playwright-fill", func(t *testing.T, s Session) []byte {
			return runNode(t, "pw-login.mjs", map[string]string{"CDP_URL": s.CDPURL, "MODE": "fill", "LOGIN_URL": loginURL, "USERNAME": "alice", "TEXT": ph})
		}},
		{"playwright-pressSequentially", func(t *testing.T, s Session) []byte {
			return runNode(t, "pw-login.mjs", map[string]string{"CDP_URL": s.CDPURL, "MODE": "press", "LOGIN_URL": loginURL, "USERNAME": "alice", "TEXT": ph})
		}},
		{"puppeteer-type", func(t *testing.T, s Session) []byte {
			return runNode(t, "pptr-login.mjs", map[string]string{"WS_URL": s.WSURL, "LOGIN_URL": loginURL, "USERNAME": "alice", "TEXT": ph})
		}},
		{"chromedp-SendKeys", func(t *testing.T, s Session) []byte {
			return chromedpLogin(t, s.WSURL, loginURL, ph)
		}},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			// Sequential on purpose: each login's requests are told apart by
			// order on the shared site.
			s := f.D.NewSession(t, f.Token, SessionOpts{Secrets: []string{acmePassword}})
			before := len(f.Site.Requests())
			out := c.run(t, s)
			checkLogin(t, c.name, f.Site.Requests()[before:], "acme.test", trickyValue)
			// The client's script on the page holding the value was refused.
			var res struct{ Status, Result, Refused string }
			if err := json.Unmarshal(out, &res); err != nil || !strings.Contains(res.Refused, "cdpvault: Runtime.") ||
				!strings.Contains(res.Refused, "refused: secret "+acmePassword+" was typed into a page of http://acme.test") || res.Status != "sent 200" {
				t.Errorf("%s: output %s: want the fetch sent and script refused after typing", c.name, out)
			}
			for name, v := range allValues {
				if hits := valueHits(out, v); len(hits) > 0 {
					t.Errorf("%s saw the value of %s: %v", c.name, name, hits)
				}
			}
		})
	}
	// Only the granted secret was ever sent, and only to acme.test.
	for name, v := range allValues {
		if name == acmePassword {
			if l := f.Site.Leaks("evil.test", v); len(l) > 0 {
				t.Errorf("evil.test received %s: %v", name, l)
			}
			continue
		}
		if l := f.Site.Leaks("", v); len(l) > 0 {
			t.Errorf("the site received %s, never typed: %v", name, l)
		}
	}
	recs, body := f.Audit(t, f.Token)
	if got := auditMatching(recs, acmePassword, "injected"); len(got) < len(clients) {
		t.Errorf("audit has %d injection records for %s, want at least %d (one per client): %s", len(got), acmePassword, len(clients), body)
	}
	f.AssertDaemonOutputClean(t)
	// The metric names of the interface, after sessions, CDP traffic, API
	// calls and injections.
	m := f.D.Metrics()
	for _, name := range []string{"cdpvault_cdp_messages_total", "cdpvault_cdp_sessions_active",
		"cdpvault_secret_injections_total", "cdpvault_redactions_total", "cdpvault_api_requests_total"} {
		if metricValue(m, name) < 0 {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	for _, series := range []string{`cdpvault_cdp_messages_total{direction=`, `cdpvault_secret_injections_total{result=`, `cdpvault_api_requests_total{code=`} {
		if !strings.Contains(string(m), series) {
			t.Errorf("/metrics has no %s...} series", series)
		}
	}
	if v := metricValue(m, "cdpvault_secret_injections_total"); v < float64(len(clients)) {
		t.Errorf("cdpvault_secret_injections_total = %v, want at least %d", v, len(clients))
	}
}

// chromedpLogin logs in with chromedp's SendKeys (one key event per rune).
func chromedpLogin(t *testing.T, wsURL, loginURL, text string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	actx, acancel := remote.NewAllocator(ctx, wsURL)
	defer acancel()
	cctx, ccancel := chromedp.NewContext(actx)
	defer ccancel()
	// Once the secret is typed the page refuses the client's script until it
	// navigates: the buttons are located first and pressed with the mouse,
	// and the fetch login is seen in network events.
	fetched := make(chan int64, 1)
	if err := chromedp.Listen(cctx, func(ev any) {
		if r, ok := ev.(*network.EventResponseReceived); ok && strings.HasSuffix(r.Response.URL, "/api/login") {
			select {
			case fetched <- r.Response.Status:
			default:
			}
		}
	}); err != nil {
		t.Fatalf("chromedp listen: %v", err)
	}
	center := func(id string) chromedp.Action[[]float64] {
		return chromedp.Evaluate[[]float64](`(() => { const r = document.getElementById('` + id + `').getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`)
	}
	if err := chromedp.Do(cctx,
		chromedp.Navigate(loginURL),
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
	); err != nil {
		t.Fatalf("chromedp login: %v", err)
	}
	fetchBtn, err := chromedp.Run(cctx, center("fetch-submit"))
	if err != nil {
		t.Fatalf("chromedp locate: %v", err)
	}
	submitBtn, err := chromedp.Run(cctx, center("submit"))
	if err != nil || len(fetchBtn) != 2 || len(submitBtn) != 2 {
		t.Fatalf("chromedp locate: %v %v %v", err, fetchBtn, submitBtn)
	}
	if err := chromedp.Do(cctx, chromedp.SendKeys(chromedp.ID("password"), text)); err != nil {
		t.Fatalf("chromedp typing: %v", err)
	}
	refused := "not refused"
	if _, err := chromedp.Run(cctx, chromedp.Evaluate[string](`document.title`)); err != nil {
		refused = err.Error()
	}
	if err := chromedp.Do(cctx, chromedp.MouseClickXY(fetchBtn[0], fetchBtn[1])); err != nil {
		t.Fatalf("chromedp fetch login: %v", err)
	}
	var status string
	select {
	case code := <-fetched:
		status = fmt.Sprintf("sent %d", code)
	case <-cctx.Done():
		t.Fatal("chromedp: no response to the fetch login")
	}
	if err := chromedp.Do(cctx, chromedp.MouseClickXY(submitBtn[0], submitBtn[1]), chromedp.WaitVisible(chromedp.ID("result"))); err != nil {
		t.Fatalf("chromedp form login: %v", err)
	}
	result, err := chromedp.Run(cctx, chromedp.Text(chromedp.ID("result")))
	if err != nil {
		t.Fatalf("chromedp result: %v", err)
	}
	chromedp.Cancel(cctx)
	b, _ := json.Marshal(map[string]string{"status": status, "result": result, "refused": refused})
	return b
}

// TestInjectRefusals: a placeholder anywhere but an input command, on the
// wrong origin (cross-origin iframe, navigation or redirect right before
// typing), or naming a secret the session may not use, is refused with a
// CDP error, and no site ever receives a value.
func TestInjectRefusals(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "debug")
	ph := placeholder(acmePassword)

	// Session creation itself refuses secrets the tenant does not have.
	for _, name := range []string{betaPassword, unusedName} {
		if code, body := f.D.API(t, http.MethodPost, "/api/v1/sessions", f.Token, SessionOpts{Secrets: []string{name}}); code != http.StatusNotFound {
			t.Errorf("session asking for %s = %d %s, want 404", name, code, body)
		}
	}
	s := f.D.NewSession(t, f.Token, SessionOpts{Secrets: []string{acmePassword}})
	others := []string{placeholder(unusedName), placeholder(acmeOther), placeholder(betaPassword)}
	othersJSON, _ := json.Marshal(others)
	out := runNode(t, "pw-refuse.mjs", map[string]string{"CDP_URL": s.CDPURL, "ACME": f.Site.Origin("acme"),
		"EVIL": f.Site.Origin("evil"), "PH": ph, "OTHERS": string(othersJSON), "SCRIPT_TIMEOUT_MS": "120000"})
	var results []struct {
		Name  string          `json:"name"`
		OK    bool            `json:"ok"`
		Value json.RawMessage `json:"value"`
		Error string          `json:"error"`
	}
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("pw-refuse.mjs output %s: %v", out, err)
	}
	// Refused with the daemon's own CDP error.
	mustRefuse := map[string]bool{"navigate": true, "extra-http-headers": true, "cookies": true,
		"cross-origin-iframe-insert": true, "same-site-iframe-insert": true, "navigated-insert-text": true}
	// Refused; Playwright retries these until its timeout and reports that.
	mustFail := map[string]bool{"cross-origin-iframe-fill": true}
	// Refused, or run with the literal placeholder (callFunctionOn arguments).
	refuseOrLiteral := map[string]bool{"evaluate-expression": true, "evaluate-function-body": true, "evaluate-argument": true}
	for _, o := range others {
		mustRefuse["insert "+o] = true
		mustFail["fill "+o] = true
	}
	var literalCodes string
	for _, r := range results {
		if r.Name == "placeholder-codes" {
			json.Unmarshal(r.Value, &literalCodes)
		}
	}
	if literalCodes == "" {
		t.Fatalf("pw-refuse.mjs reported no placeholder code points: %s", out)
	}
	seen := map[string]bool{}
	for _, r := range results {
		seen[r.Name] = true
		switch {
		case strings.HasPrefix(r.Name, "phase "):
			t.Errorf("%s broke: %s", r.Name, r.Error)
		case strings.HasPrefix(r.Name, "submit after "):
			t.Errorf("the page stopped working (%s): %s", r.Name, r.Error)
		case strings.Contains(r.Error, "no answer"):
			t.Errorf("%s: the command got no answer (a hang): %s", r.Name, r.Error)
		case mustRefuse[r.Name]:
			if r.OK || !strings.Contains(r.Error, "cdpvault") {
				t.Errorf("%s: ok=%v error=%q, want a CDP error from cdpvault", r.Name, r.OK, r.Error)
			}
		case mustFail[r.Name]:
			if r.OK {
				t.Errorf("%s succeeded, want refused", r.Name)
			}
		case refuseOrLiteral[r.Name]:
			var codes string
			json.Unmarshal(r.Value, &codes)
			if r.OK && codes != literalCodes {
				t.Errorf("%s: the page got code points %s, want the literal placeholder's %s", r.Name, codes, literalCodes)
			}
			if !r.OK && !strings.Contains(r.Error, "cdpvault") {
				t.Errorf("%s failed without a cdpvault error: %s", r.Name, r.Error)
			}
		}
	}
	for name := range mustRefuse {
		if !seen[name] {
			t.Errorf("attempt %q did not run", name)
		}
	}
	for name := range refuseOrLiteral {
		if !seen[name] {
			t.Errorf("attempt %q did not run", name)
		}
	}
	// No value reached any site, by any path; the evil origin got requests
	// (so the attempts really happened there).
	for name, v := range allValues {
		if l := f.Site.Leaks("", v); len(l) > 0 {
			t.Errorf("the site received the value of %s: %v", name, l)
		}
		if hits := valueHits(out, v); len(hits) > 0 {
			t.Errorf("the client saw the value of %s: %v", name, hits)
		}
	}
	if n := len(f.Site.Received("evil.test", "/api/login")); n < 3 {
		t.Errorf("evil.test got %d fetch logins, want 3 (iframe, navigation, redirect)", n)
	}
	if n := len(f.Site.Received("sub.acme.test", "/api/login")); n != 1 {
		t.Errorf("sub.acme.test got %d fetch logins, want 1 (same-site iframe)", n)
	}
	recs, body := f.Audit(t, f.Token)
	if len(auditMatching(recs, "", "refused")) == 0 {
		t.Errorf("audit lists no refused attempt: %s", body)
	}
	if len(auditMatching(recs, acmePassword, "refused")) == 0 {
		t.Errorf("audit lists no refused attempt for %s: %s", acmePassword, body)
	}
	// Another tenant's audit does not show acme's session.
	_, betaBody := f.Audit(t, f.BetaToken)
	if strings.Contains(string(betaBody), s.ID) || strings.Contains(string(betaBody), acmePassword) {
		t.Errorf("beta's audit shows acme's records: %s", betaBody)
	}
	f.AssertDaemonOutputClean(t)
}

// TestInjectRefusalErrorShape: over a raw socket, a refused command gets
// exactly {"id":N,"sessionId":S,"error":{"code":-32000,"message":"cdpvault: ..."}},
// whatever escaping the client used, and a refused /json/new opens nothing.
func TestInjectRefusalErrorShape(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "info")
	s := f.D.NewSession(t, f.Token, SessionOpts{Secrets: []string{acmePassword}})
	r := DialRaw(t, s.WSURL)
	_, sid := r.NewPageSession("about:blank")
	r.Navigate(sid, f.Site.URL("acme", "/login"))
	frames := map[string]string{
		"evaluate":             `{"id":%d,"sessionId":"%s","method":"Runtime.evaluate","params":{"expression":"'<<secret:acme_password>>'"}}`,
		"evaluate-json-escape": `{"id":%d,"sessionId":"%s","method":"Runtime.evaluate","params":{"expression":"'\u003c\u003csecret:acme_password\u003e\u003e'"}}`,
		"navigate-percent":     `{"id":%d,"sessionId":"%s","method":"Page.navigate","params":{"url":"` + f.Site.URL("acme", "/blank?p=%%3C%%3Csecret:acme_password%%3E%%3E") + `"}}`,
		"insert-unlisted":      `{"id":%d,"sessionId":"%s","method":"Input.insertText","params":{"text":"<<secret:acme_other>>"}}`,
	}
	id := int64(7)
	for name, tmpl := range frames {
		id++
		r.SendRaw([]byte(fmt.Sprintf(tmpl, id, sid)))
		resp := r.Wait(id)
		if resp.SessionID != sid || resp.Error == nil || resp.Error.Code != -32000 || !strings.HasPrefix(resp.Error.Message, "cdpvault:") || resp.Result != nil {
			t.Errorf("%s: got id=%d sessionId=%q error=%+v result=%s, want the cdpvault CDP error with the command's sessionId", name, resp.ID, resp.SessionID, resp.Error, resp.Result)
		}
	}
	// The session still works after refusals.
	if got := string(r.Evaluate(sid, "document.title")); got != `"Login at acme.test"` {
		t.Errorf("after refusals the page is at %s", got)
	}
	// /json/new with a placeholder in its URL is refused and opens nothing.
	before := len(f.Site.Requests())
	code, body := httpDo(t, http.MethodPut, s.CDPURL+"/json/new?"+f.Site.URL("acme", "/blank?p="+url.QueryEscape(placeholder(acmePassword))), nil)
	if code == http.StatusOK {
		t.Errorf("PUT /json/new with a placeholder = 200 %s, want refused", body)
	}
	code, body = httpDo(t, http.MethodPut, s.CDPURL+"/json/new?"+f.Site.URL("acme", "/blank?p=<<secret:acme_password>>"), nil)
	if code == http.StatusOK {
		t.Errorf("PUT /json/new with a raw placeholder = 200 %s, want refused", body)
	}
	r.Evaluate(sid, "1") // a round trip, so a wrongly opened page had time to ask
	for _, rq := range f.Site.Requests()[before:] {
		if strings.Contains(rq.RawQuery, "secret") {
			t.Errorf("the site got %s?%s", rq.Path, rq.RawQuery)
		}
	}
	for name, v := range allValues {
		if l := f.Site.Leaks("", v); len(l) > 0 {
			t.Errorf("the site received the value of %s: %v", name, l)
		}
	}
}

// TestInjectLegacyNestedMessagesCannotBypass: Target.sendMessageToTarget
// (nested JSON strings) is either run through the same rules or refused; it
// never types a value into a page of another origin.
func TestInjectLegacyNestedMessagesCannotBypass(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "info")
	s := f.D.NewSession(t, f.Token, SessionOpts{Secrets: []string{acmePassword}})
	r := DialRaw(t, s.WSURL)
	tid, sid := r.NewPageSession("about:blank")
	r.Navigate(sid, f.Site.URL("evil", "/login?autofocus=1"))
	r.MustCall(sid, "Page.bringToFront", nil, nil)
	r.Evaluate(sid, "document.getElementById('password').focus()")
	var at struct {
		SessionID string `json:"sessionId"`
	}
	resp := r.Call("", "Target.attachToTarget", map[string]any{"targetId": tid, "flatten": false})
	if resp.Error == nil {
		json.Unmarshal(resp.Result, &at)
		for i, inner := range []string{
			`{"id":1,"method":"Runtime.evaluate","params":{"expression":"document.getElementById('password').focus()"}}`,
			`{"id":2,"method":"Input.insertText","params":{"text":"<<secret:acme_password>>"}}`,
			`{"id":3,"method":"Input.insertText","params":{"text":"\u003c\u003csecret:acme_password\u003e\u003e"}}`,
		} {
			resp := r.Call("", "Target.sendMessageToTarget", map[string]any{"sessionId": at.SessionID, "message": inner})
			if i > 0 && resp.Error != nil && !strings.Contains(resp.Error.Message, "cdpvault") {
				t.Errorf("legacy message %d refused without saying cdpvault: %+v", i, resp.Error)
			}
		}
	} else if !strings.Contains(resp.Error.Message, "cdpvault") {
		t.Logf("non-flattened attach refused by Chrome: %+v", resp.Error)
	}
	r.Evaluate(sid, "document.getElementById('fetch-submit').click()")
	deadline := time.Now().Add(waitTimeout)
	for len(f.Site.Received("evil.test", "/api/login")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("evil.test never got the fetch login")
		}
		time.Sleep(20 * time.Millisecond) // polling the browser's request
	}
	if l := f.Site.Leaks("", trickyValue); len(l) > 0 {
		t.Errorf("a legacy nested message injected the value: %v", l)
	}
}

// TestInjectOrdinaryTypingReachesPageUnchanged: text that merely looks like
// the start of a placeholder, typed one key at a time, reaches the page byte
// for byte and in order, with every client.
func TestInjectOrdinaryTypingReachesPageUnchanged(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "info")
	texts := []string{
		"a<<b<c",
		"<<secret ok",
		"<<secret:!x",
		"<<secret:-name>> tail",
		"<<secret:ab cd>>",
		"<<<secret:>>",
		"x<<secret:>>y",
		"<<s<<secret:a b",
		"<<secret:acme_password> not closed",
		"1 << 2 && a < b",
	}
	tj, _ := json.Marshal(texts)
	loginURL := f.Site.URL("acme", "/login")
	for _, client := range []string{"pw", "pptr", "chromedp"} {
		t.Run(client, func(t *testing.T) {
			s := f.D.NewSession(t, f.Token, SessionOpts{Secrets: []string{acmePassword}})
			var got []struct{ Text, Got string }
			if client == "chromedp" {
				got = chromedpTyping(t, s.WSURL, loginURL, texts)
			} else {
				out := runNode(t, "typing.mjs", map[string]string{"CLIENT": client, "CDP_URL": s.CDPURL, "WS_URL": s.WSURL,
					"LOGIN_URL": loginURL, "TEXTS": string(tj)})
				if err := json.Unmarshal(out, &got); err != nil {
					t.Fatalf("typing.mjs output %s: %v", out, err)
				}
			}
			if len(got) != len(texts) {
				t.Fatalf("%d results for %d texts", len(got), len(texts))
			}
			for _, g := range got {
				if g.Got != g.Text {
					t.Errorf("typed %q, the page has %q", g.Text, g.Got)
				}
			}
		})
	}
}

func chromedpTyping(t *testing.T, wsURL, loginURL string, texts []string) []struct{ Text, Got string } {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, acancel := remote.NewAllocator(ctx, wsURL)
	defer acancel()
	cctx, ccancel := chromedp.NewContext(actx)
	defer ccancel()
	if err := chromedp.Do(cctx, chromedp.Navigate(loginURL)); err != nil {
		t.Fatalf("chromedp navigate: %v", err)
	}
	var out []struct{ Text, Got string }
	for _, text := range texts {
		if _, err := chromedp.Run(cctx, chromedp.Evaluate[bool](`(document.getElementById('note').value = '', true)`)); err != nil {
			t.Fatalf("chromedp clear: %v", err)
		}
		if err := chromedp.Do(cctx, chromedp.SendKeys(chromedp.ID("note"), text)); err != nil {
			t.Fatalf("chromedp SendKeys %q: %v", text, err)
		}
		var got string
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, err := chromedp.Run(cctx, chromedp.Value(chromedp.ID("note")))
			if err != nil {
				t.Fatalf("chromedp value: %v", err)
			}
			got = v
			if got == text || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond) // held input may wait for the idle flush
		}
		out = append(out, struct{ Text, Got string }{text, got})
	}
	chromedp.Cancel(cctx)
	return out
}

// TestInjectTaint: once cdpvault has typed a secret into a page, a
// Playwright agent cannot run script there to read the value back
// transformed (reversed, upper-cased, as shifted character codes: forms no
// scrubber can know) or to send it to another origin: not through
// page.evaluate, locators, a raw CDP session, a javascript: URL or a second
// connection. Typing and submitting with the Enter key still log in, and
// script runs again on the next page.
func TestInjectTaint(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "debug")
	s := f.D.NewSession(t, f.Token, SessionOpts{Secrets: []string{acmePlain}})
	before := len(f.Site.Requests())
	out := runNode(t, "pw-taint.mjs", map[string]string{"CDP_URL": s.CDPURL, "ACME": f.Site.Origin("acme"),
		"EVIL": f.Site.Origin("evil"), "PH": placeholder(acmePlain)})
	var res struct {
		Results []struct {
			Name  string          `json:"name"`
			OK    bool            `json:"ok"`
			Value json.RawMessage `json:"value"`
			Error string          `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("pw-taint.mjs output %s: %v", out, err)
	}
	if len(res.Results) != 11 {
		t.Errorf("pw-taint.mjs ran %d attempts, want 11: %s", len(res.Results), out)
	}
	for _, r := range res.Results {
		switch r.Name {
		case "submit-with-enter":
			if !r.OK {
				t.Errorf("submitting with Enter failed: %s", r.Error)
			}
		case "after-navigation":
			if !r.OK || !strings.Contains(string(r.Value), "form received by acme.test") {
				t.Errorf("script on the next page: ok=%v value=%s error=%q", r.OK, r.Value, r.Error)
			}
		default:
			if r.OK || !strings.Contains(r.Error, "cdpvault: ") || !strings.Contains(r.Error, "refused") {
				t.Errorf("%s: ok=%v value=%s error=%q, want refused by cdpvault", r.Name, r.OK, r.Value, r.Error)
			}
		}
	}
	// No transformed form reached the agent, and nothing reached evil.test.
	v := string(plainValue)
	rev := []rune(v)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	for _, form := range []string{v, string(rev), strings.ToUpper(v)} {
		if strings.Contains(string(out), form) {
			t.Errorf("the agent's output holds the value or a transform of it (%d bytes)", len(form))
		}
	}
	for _, r := range f.Site.Requests()[before:] {
		if r.Host == "evil.test" {
			t.Errorf("evil.test received %s %s", r.Method, r.Path)
		}
	}
	forms := 0
	for _, r := range f.Site.Received("acme.test", "/login") {
		if r.Method == "POST" {
			q, _ := url.ParseQuery(string(r.Body))
			if q.Get("password") == v {
				forms++
			}
		}
	}
	if forms != 1 {
		t.Errorf("acme.test received %d form logins with the value, want 1", forms)
	}
	// Playwright keeps the refusal of its main-world helper for the rest of
	// the document: three of the page.evaluate attempts share one refusal.
	if m := metricValue(f.D.Metrics(), "cdpvault_tainted_refusals_total"); m < 7 {
		t.Errorf("cdpvault_tainted_refusals_total = %v, want at least 7", m)
	}
	f.AssertDaemonOutputClean(t)
}

// TestLaunchSessionRefusesAgentProxy: in a session without geo the agent may
// not route its browser through a proxy of its own (it would read the login
// POST carrying the typed secret), nor hand a page a DevTools channel past
// the daemon.
func TestLaunchSessionRefusesAgentProxy(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "info")
	s := f.D.NewSession(t, f.Token, SessionOpts{Secrets: []string{acmePlain}})
	r := DialRaw(t, s.WSURL)
	for _, params := range []map[string]any{
		{"proxyServer": "http://127.0.0.1:1"},
		{"proxyBypassList": "*"},
		{"proxyServer": "http://127.0.0.1:1", "ProxyServer": ""},
	} {
		resp := r.Call("", "Target.createBrowserContext", params)
		if resp.Error == nil || !strings.HasPrefix(resp.Error.Message, "cdpvault:") {
			t.Errorf("Target.createBrowserContext %v: %s %+v, want a cdpvault refusal", params, resp.Result, resp.Error)
		}
	}
	var bc struct {
		BrowserContextID string `json:"browserContextId"`
	}
	r.MustCall("", "Target.createBrowserContext", map[string]any{}, &bc)
	target, _ := r.NewPageSession("about:blank")
	resp := r.Call("", "Target.exposeDevToolsProtocol", map[string]any{"targetId": target, "bindingName": "cdp"})
	if resp.Error == nil || !strings.HasPrefix(resp.Error.Message, "cdpvault:") {
		t.Errorf("Target.exposeDevToolsProtocol: %s %+v, want a cdpvault refusal", resp.Result, resp.Error)
	}
}

// TestInjectTaintOff: with injection.taint: off the daemon types the secret
// and leaves script on the page alone (the documented opt-out); what comes
// back is still scrubbed.
func TestInjectTaintOff(t *testing.T) {
	t.Parallel()
	site := NewSite(t)
	env := NewEnv(t, "info")
	f, err := os.OpenFile(env.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "injection: {taint: \"off\"}")
	f.Close()
	token := env.Tenant("acme")
	env.SetSecret("acme", acmePlain, plainValue, site.Origin("acme"))
	d := env.Start()
	s := d.NewSession(t, token, SessionOpts{Secrets: []string{acmePlain}})
	r := DialRaw(t, s.WSURL)
	_, sid := r.NewPageSession("about:blank")
	r.Navigate(sid, site.URL("acme", "/login"))
	r.Evaluate(sid, `document.getElementById('password').focus()`)
	r.MustCall(sid, "Input.insertText", map[string]any{"text": placeholder(acmePlain)}, nil)
	got := r.Evaluate(sid, `document.getElementById('password').value`)
	if string(got) != `"`+placeholder(acmePlain)+`"` {
		t.Errorf("the field read back as %s, want the placeholder (typed, then scrubbed)", got)
	}
	if n := r.Evaluate(sid, `document.getElementById('password').value.length`); string(n) != fmt.Sprint(len(plainValue)) {
		t.Errorf("field length %s, want %d: the value was not typed", n, len(plainValue))
	}
}
