package geo

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mafredri/cdp"
	"github.com/mafredri/cdp/devtool"
	"github.com/mafredri/cdp/protocol/page"
	"github.com/mafredri/cdp/protocol/runtime"
	"github.com/mafredri/cdp/rpcc"
)

const chromiumPath = "/usr/bin/chromium"

type browser struct {
	cmd *exec.Cmd
	c   *cdp.Client
}

// launchChromium starts a headless Chromium with the project's standard
// flags plus extra, env added to its environment, and connects to its page.
func launchChromium(t *testing.T, extra, env []string) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no Chromium at %s", chromiumPath)
	}
	dir := t.TempDir()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
		"--user-data-dir=" + dir, "--remote-debugging-port=0",
		"--host-resolver-rules=MAP *.test 127.0.0.1",
		// test sites use httptest's certificate, which does not name acme.test
		"--ignore-certificate-errors",
	}, extra...)
	args = append(args, "about:blank")
	cmd := exec.Command(chromiumPath, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waited
	})
	// Chromium writes its port here; poll (external process) with a deadline.
	portFile := filepath.Join(dir, "DevToolsActivePort")
	var port string
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(portFile); err == nil {
			if lines := strings.SplitN(string(b), "\n", 2); len(lines) == 2 && lines[0] != "" {
				port = lines[0]
				break
			}
		}
		select {
		case <-waited:
			t.Fatal("chromium exited before opening its DevTools port")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("chromium did not write DevToolsActivePort")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dt := devtool.New("http://127.0.0.1:" + port)
	pt, err := dt.Get(ctx, devtool.Page)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := rpcc.DialContext(ctx, pt.WebSocketDebuggerURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &browser{cmd: cmd, c: cdp.NewClient(conn)}
}

// navigate loads u and returns the navigation error text ("" on success).
func (b *browser) navigate(t *testing.T, u string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := b.c.Page.Navigate(ctx, page.NewNavigateArgs(u))
	if err != nil {
		t.Fatal(err)
	}
	if rep.ErrorText != nil {
		return *rep.ErrorText
	}
	return ""
}

// eval evaluates expr (awaiting a promise) and decodes the value into out.
func (b *browser) eval(t *testing.T, expr string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := b.c.Runtime.Evaluate(ctx, runtime.NewEvaluateArgs(expr).SetAwaitPromise(true).SetReturnByValue(true))
	if err != nil {
		t.Fatal(err)
	}
	if rep.ExceptionDetails != nil {
		t.Fatalf("evaluate %q: %s", expr, rep.ExceptionDetails.Text)
	}
	if err := json.Unmarshal(rep.Result.Value, out); err != nil {
		t.Fatalf("evaluate %q: %v (%s)", expr, err, rep.Result.Value)
	}
}

const loadedText = `new Promise(r => { const f = () => r(document.body ? document.body.innerText : ""); ` +
	`document.readyState === "complete" ? f() : addEventListener("load", f); })`

// wantSitePage navigates to u, a test site's page, and fails t unless the
// page loaded is the site's.
func (b *browser) wantSitePage(t *testing.T, u string) {
	t.Helper()
	if et := b.navigate(t, u); et != "" {
		t.Fatalf("navigate %s: %s", u, et)
	}
	var text string
	b.eval(t, loadedText, &text)
	if !strings.Contains(text, "hello from site") {
		t.Fatalf("%s: page text %q", u, text)
	}
}

func TestChromiumThroughPoolWithFirstUpstreamDown(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	ts := newSite(t, true)
	u1 := newTestUpstream(t, "u1", user(1), pw(1), false)
	pools, secrets := poolOf(deadURL(t, "http"), u1.URL())
	p := pools["de"]
	p.Timezone, p.Locale = "America/Sao_Paulo", "pt-BR" // unlike this host's
	pools["de"] = p
	e := newEnv(t, pools, secrets, nil)
	f := e.open(t, "de")
	b := launchChromium(t, BrowserArgs(f, p), BrowserEnv(p))

	b.wantSitePage(t, s.url("acme.test"))
	if got := u1.Plain(); !slices.Contains(got, "acme.test:"+s.port()) {
		t.Fatalf("u1 carried %v", got)
	}
	if n := counter(t, e, "failovers", "de", 0); n < 1 {
		t.Fatalf("failovers = %v", n)
	}
	if al := s.header(0).Get("Accept-Language"); !strings.HasPrefix(al, "pt-BR") {
		t.Fatalf("Accept-Language = %q", al)
	}

	var env struct{ TZ, Lang, Langs, WorkerTZ, WorkerLang string }
	b.eval(t, `(async () => {
		const w = new Worker(URL.createObjectURL(new Blob(
			["postMessage([Intl.DateTimeFormat().resolvedOptions().timeZone, navigator.language])"])));
		const [wtz, wl] = await new Promise(r => w.onmessage = m => r(m.data));
		return {TZ: Intl.DateTimeFormat().resolvedOptions().timeZone, Lang: navigator.language,
			Langs: navigator.languages.join(","), WorkerTZ: wtz, WorkerLang: wl};
	})()`, &env)
	if env.TZ != "America/Sao_Paulo" || env.WorkerTZ != "America/Sao_Paulo" {
		t.Errorf("time zone page=%q worker=%q", env.TZ, env.WorkerTZ)
	}
	if env.Lang != "pt-BR" || env.WorkerLang != "pt-BR" {
		t.Errorf("language page=%q worker=%q (languages %q)", env.Lang, env.WorkerLang, env.Langs)
	}

	// HTTPS goes through a CONNECT tunnel via the same live upstream.
	b.wantSitePage(t, ts.url("acme.test"))
	if got := u1.Connects(); !slices.Contains(got, "acme.test:"+ts.port()) {
		t.Fatalf("u1 CONNECTs %v", got)
	}

	// The password is nowhere the agent or an operator could read it.
	var html string
	b.eval(t, `document.documentElement.outerHTML + navigator.userAgent`, &html)
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", b.cmd.Process.Pid))
	for where, hay := range map[string]string{
		"page": html, "browser command line": string(cmdline), "logs": e.logs.String(),
		"metrics": e.metricsText(t), "site headers": s.allHeaders() + ts.allHeaders(),
	} {
		for i := range 2 {
			if strings.Contains(hay, pw(i)) || strings.Contains(hay, basic(user(i), pw(i))) {
				t.Errorf("password of upstream %d in %s", i, where)
			}
		}
	}
}

func TestChromiumAllUpstreamsDownLoadsNothing(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	ts := newSite(t, true)
	pools, secrets := poolOf(deadURL(t, "http"), deadURL(t, "socks5"))
	e := newEnv(t, pools, secrets, nil)
	f := e.open(t, "de")
	b := launchChromium(t, BrowserArgs(f, pools["de"]), BrowserEnv(pools["de"]))

	et := b.navigate(t, s.url("acme.test"))
	t.Logf("http navigation error: %q", et)
	var text string
	if et == "" {
		b.eval(t, loadedText, &text)
		if strings.Contains(text, "hello from site") {
			t.Fatal("site content loaded with every upstream down")
		}
		if !strings.Contains(text, unavailableBody) {
			t.Fatalf("page shows %q, want the constant error", text)
		}
	}
	et = b.navigate(t, ts.url("acme.test"))
	t.Logf("https navigation error: %q", et)
	if et == "" {
		b.eval(t, loadedText, &text)
		if strings.Contains(text, "hello from site") {
			t.Fatal("https site loaded with every upstream down")
		}
	}
	// Loopback by IP too: Chromium would bypass the proxy for it without
	// <-loopback>, and a direct dial would reach it.
	for _, u := range []string{s.url("127.0.0.1"), ts.url("127.0.0.1"), s.url("localhost")} {
		if et := b.navigate(t, u); et == "" {
			b.eval(t, loadedText, &text)
			if strings.Contains(text, "hello from site") {
				t.Fatalf("%s loaded with every upstream down", u)
			}
		}
	}
	if n := s.requests.Load() + ts.requests.Load(); n != 0 {
		t.Fatalf("site received %d requests", n)
	}
}
