package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestExamplesLogInWithSecretTheyNeverSee: examples/playwright-login.mjs and
// examples/go-login log in to examples/demosite through the daemon with
// <<secret:demo_password>>; the site accepts the login, and neither program
// nor the daemon's log ever holds the password.
func TestExamplesLogInWithSecretTheyNeverSee(t *testing.T) {
	t.Parallel()
	bins := buildExamples(t)
	password := []byte("Demo pw " + randomHex(6) + " ü+&%")
	pwA, pwB := startDemoSite(t, bins, password), startDemoSite(t, bins, password)
	env := NewEnv(t, "debug")
	token := env.Tenant("demo")
	env.SetSecret("demo", "demo_password", password, pwA, pwB)
	d := env.Start()

	s := d.NewSession(t, token, SessionOpts{Secrets: []string{"demo_password"}})
	out, errOut, err := runExample(t, "playwright", bins, map[string]string{"CDP_URL": s.CDPURL, "SITE_URL": pwA})
	checkExample(t, "playwright-login.mjs", pwA, password, out, errOut, err, "login ok")

	s2 := d.NewSession(t, token, SessionOpts{Secrets: []string{"demo_password"}})
	out, errOut, err = runExample(t, "go", bins, map[string]string{"CDP_URL": s2.CDPURL, "SITE_URL": pwB})
	checkExample(t, "go-login", pwB, password, out, errOut, err, "login ok")

	if hits := bytesHits(d.Log(), password); len(hits) > 0 {
		t.Errorf("the daemon's debug log holds the password: %v", hits)
	}
}

func checkExample(t *testing.T, name, site string, password, out []byte, errOut string, err error, want string) {
	t.Helper()
	if err != nil && want == "login ok" {
		t.Errorf("%s: %v\nstdout: %s\nstderr: %s", name, err, out, errOut)
	}
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("%s printed %q, want %q (stderr: %s)", name, got, want, errOut)
	}
	if got := demoStatus(t, site); got != want {
		t.Errorf("%s: the demo site's /status says %q, want %q", name, got, want)
	}
	if hits := bytesHits(append(out, errOut...), password); len(hits) > 0 {
		t.Errorf("%s saw the password: %v", name, hits)
	}
}

type exampleBins struct{ demosite, goLogin string }

var (
	exampleBuildOnce sync.Once
	exampleBuilt     exampleBins
	exampleBuildErr  error
)

// buildExamples builds examples/demosite and examples/go-login once.
func buildExamples(t *testing.T) exampleBins {
	t.Helper()
	exampleBuildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cdpvault-examples-")
		if err != nil {
			exampleBuildErr = err
			return
		}
		cleanupDirs = append(cleanupDirs, dir)
		exampleBuilt = exampleBins{filepath.Join(dir, "demosite"), filepath.Join(dir, "go-login")}
		for pkg, out := range map[string]string{"./examples/demosite": exampleBuilt.demosite, "./examples/go-login": exampleBuilt.goLogin} {
			cmd := exec.Command("go", "build", "-o", out, pkg)
			cmd.Dir = filepath.Dir(e2eDir)
			if b, err := cmd.CombinedOutput(); err != nil {
				exampleBuildErr = &buildError{pkg, err, b}
				return
			}
		}
	})
	if exampleBuildErr != nil {
		t.Fatalf("build examples: %v", exampleBuildErr)
	}
	return exampleBuilt
}

type buildError struct {
	pkg string
	err error
	out []byte
}

func (e *buildError) Error() string {
	return "go build " + e.pkg + ": " + e.err.Error() + "\n" + string(e.out)
}

// startDemoSite runs the demo site on a free port with password (from a
// file) and returns its URL.
func startDemoSite(t *testing.T, bins exampleBins, password []byte) string {
	t.Helper()
	pwFile := filepath.Join(t.TempDir(), "demo.pw")
	if err := os.WriteFile(pwFile, password, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins.demosite, "-addr", "127.0.0.1:0", "-password-file", pwFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start demosite: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-lines:
		u, ok := strings.CutPrefix(l, "demosite listening on ")
		if !ok {
			t.Fatalf("demosite printed %q", l)
		}
		return u
	case <-time.After(waitTimeout):
		t.Fatalf("demosite did not start")
	}
	return ""
}

func demoStatus(t *testing.T, site string) string {
	t.Helper()
	resp, err := http.Get(site + "/status")
	if err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// runExample runs an example as its README says, with env added.
func runExample(t *testing.T, which string, bins exampleBins, env map[string]string) ([]byte, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var cmd *exec.Cmd
	if which == "go" {
		cmd = exec.CommandContext(ctx, bins.goLogin)
	} else {
		if _, err := os.Stat(filepath.Join(e2eDir, "node_modules", "playwright-core")); err != nil {
			t.Fatalf("e2e/node_modules/playwright-core missing: run `make npm-deps`")
		}
		// Node resolves 'playwright-core' next to the script, so run a copy
		// of the example from inside e2e/ (whose node_modules the Makefile
		// installs) instead of requiring a second install in examples/.
		dir, err := os.MkdirTemp(e2eDir, ".examples-run-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		src, err := os.ReadFile(filepath.Join(filepath.Dir(e2eDir), "examples", "playwright-login.mjs"))
		if err != nil {
			t.Fatal(err)
		}
		script := filepath.Join(dir, "playwright-login.mjs")
		if err := os.WriteFile(script, src, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd = exec.CommandContext(ctx, "node", script)
	}
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return o.Bytes(), e.String(), err
}
