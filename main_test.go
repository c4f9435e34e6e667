package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
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

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// These tests drive the built binary, as an operator would.

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cdpvault-cli")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "cdpvault")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build cdpvault: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, dataDir, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"--data-dir", dataDir}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	cmd.Stdin = strings.NewReader(stdin)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{so.String(), se.String(), code}
}

func mustRun(t *testing.T, dataDir, stdin string, args ...string) result {
	t.Helper()
	r := run(t, dataDir, stdin, args...)
	if r.code != 0 {
		t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
	}
	return r
}

const secretValue = "Tr0ub4dor&3 \"quoted\" <é😀>"

func TestCLISecretsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "", "tenant", "create", "acme")
	tok := mustRun(t, dir, "", "token", "create", "--tenant", "acme")
	if lines := strings.Split(strings.TrimSpace(tok.stdout), "\n"); len(lines) != 1 || len(lines[0]) < 40 {
		t.Fatalf("token create stdout is not one token line: %q", tok.stdout)
	}
	r := mustRun(t, dir, secretValue+"\n", "secret", "set", "--tenant", "acme", "acme_password", "--origin", "http://acme.test:8080", "--origin", "https://Login.Acme.Example:443")
	if !strings.Contains(r.stdout, "created") || strings.Contains(r.stdout+r.stderr, "Tr0ub4dor") {
		t.Fatalf("secret set: %q %q", r.stdout, r.stderr)
	}
	r = mustRun(t, dir, secretValue, "secret", "set", "--tenant", "acme", "acme_password", "--origin", "http://acme.test:8080")
	if !strings.Contains(r.stdout, "version 2") {
		t.Fatalf("replace: %q", r.stdout)
	}
	ls := mustRun(t, dir, "", "secret", "ls", "--tenant", "acme")
	if !strings.Contains(ls.stdout, "acme_password") || strings.Contains(ls.stdout, "Tr0ub4dor") {
		t.Fatalf("secret ls: %q", ls.stdout)
	}
	tl := mustRun(t, dir, "", "tenant", "ls")
	if !strings.Contains(tl.stdout, "acme") {
		t.Fatalf("tenant ls: %q", tl.stdout)
	}
	tokLs := mustRun(t, dir, "", "token", "ls", "--tenant", "acme")
	if strings.Contains(tokLs.stdout, strings.TrimSpace(tok.stdout)) {
		t.Fatal("token ls shows the token")
	}
	if a := mustRun(t, dir, "", "audit", "ls", "--tenant", "acme", "--limit", "5"); !strings.HasPrefix(a.stdout, "TIME") {
		t.Fatalf("audit ls: %q", a.stdout)
	}
	if r := run(t, dir, "", "audit", "ls", "--tenant", "nobody"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("audit ls of an unknown tenant: %+v", r)
	}
	// No plaintext anywhere in the data dir.
	assertNoPlaintext(t, dir, secretValue)
	mustRun(t, dir, "", "secret", "rm", "--tenant", "acme", "acme_password")
	if r := run(t, dir, "", "secret", "rm", "--tenant", "acme", "acme_password"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("second rm: %+v", r)
	}
	mustRun(t, dir, "", "tenant", "rm", "acme")
	assertNoPlaintext(t, dir, secretValue)
}

func assertNoPlaintext(t *testing.T, dir, value string) {
	t.Helper()
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(value)) || bytes.Contains(b, []byte("Tr0ub4dor")) {
			t.Fatalf("plaintext found in %s", p)
		}
		return nil
	})
}

func TestCLIErrorsAreOneLineWithExitCodes(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "", "tenant", "create", "acme")
	cases := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"no command", "", nil, 2, "no command"},
		{"unknown command", "", []string{"frobnicate"}, 2, "unknown command"},
		{"missing tenant flag", "", []string{"secret", "ls"}, 2, "--tenant"},
		{"unknown flag", "", []string{"tenant", "ls", "--bogus"}, 2, "bogus"},
		{"extra args", "", []string{"tenant", "create", "a", "b"}, 2, "expected"},
		{"bad tenant name", "", []string{"tenant", "create", "-x"}, 2, ""},
		{"bad tenant name 2", "", []string{"tenant", "create", "a/b"}, 1, "name"},
		{"duplicate tenant", "", []string{"tenant", "create", "acme"}, 1, "exists"},
		{"unknown tenant", "", []string{"secret", "ls", "--tenant", "nobody"}, 1, "not found"},
		{"empty value", "", []string{"secret", "set", "--tenant", "acme", "pw"}, 1, "empty"},
		{"short value", "short\n", []string{"secret", "set", "--tenant", "acme", "pw"}, 1, "value"},
		{"long value", strings.Repeat("v", 5000), []string{"secret", "set", "--tenant", "acme", "pw"}, 1, "longer"},
		{"bad origin", "abcdefgh12", []string{"secret", "set", "--tenant", "acme", "pw", "--origin", "ftp://x/y"}, 1, "origin"},
		{"bad secret name", "abcdefgh12", []string{"secret", "set", "--tenant", "acme", "bad name"}, 1, "name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, dir, tc.stdin, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d: %q", r.code, tc.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("stderr %q lacks %q", r.stderr, tc.want)
			}
			if tc.code == 1 && strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Fatalf("stderr is not one line: %q", r.stderr)
			}
			if strings.Contains(r.stderr, "abcdefgh12") || strings.Contains(r.stderr, "vvvvvvvv") {
				t.Fatalf("value echoed: %q", r.stderr)
			}
		})
	}
}

func TestCLIConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "", "tenant", "create", "acme")
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := run(t, dir, fmt.Sprintf("value-number-%02d", i), "secret", "set", "--tenant", "acme", fmt.Sprintf("s%02d", i), "--origin", "*")
			if r.code != 0 {
				errs <- r.stderr
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	ls := mustRun(t, dir, "", "secret", "ls", "--tenant", "acme")
	for i := range 8 {
		if !strings.Contains(ls.stdout, fmt.Sprintf("s%02d", i)) {
			t.Errorf("s%02d missing after concurrent writes:\n%s", i, ls.stdout)
		}
	}
}

func TestCLIKeyRotation(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "", "tenant", "create", "acme")
	mustRun(t, dir, "value-before-rotation", "secret", "set", "--tenant", "acme", "pw", "--origin", "*")
	newKey := filepath.Join(t.TempDir(), "new.key")
	r := mustRun(t, dir, "", "key", "rotate", "--new-key-file", newKey)
	if !strings.Contains(r.stdout, "version 2") {
		t.Fatalf("rotate: %q", r.stdout)
	}
	if st, err := os.Stat(newKey); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new key file: %v %v", st, err)
	}
	// Both keys open the store until the old one is retired.
	mustRun(t, dir, "", "secret", "ls", "--tenant", "acme")
	mustRun(t, dir, "", "--master-key-file", newKey, "secret", "ls", "--tenant", "acme")
	mustRun(t, dir, "", "--master-key-file", newKey, "key", "retire")
	mustRun(t, dir, "value-after-rotation", "--master-key-file", newKey, "secret", "set", "--tenant", "acme", "pw2", "--origin", "*")
	if r := run(t, dir, "", "secret", "ls", "--tenant", "acme"); r.code == 0 {
		t.Fatalf("retired key still opens the store: %q", r.stdout)
	}
}

func TestCLICheckConfig(t *testing.T) {
	dir := t.TempDir()
	r := mustRun(t, dir, "", "--config", filepath.Join("configs", "cdpvault.yaml"), "check-config")
	if !strings.Contains(r.stdout, "ok") {
		t.Fatalf("check-config: %q", r.stdout)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("listen: x\nlog: {level: loud}\nbogus: 1\n"), 0o600)
	r = run(t, dir, "", "--config", bad, "check-config")
	if r.code != 1 || strings.Count(r.stderr, "config:") < 2 {
		t.Fatalf("check-config bad: %+v", r)
	}
	os.WriteFile(bad, []byte("injection: {taint: sometimes}\n"), 0o600)
	r = run(t, dir, "", "--config", bad, "check-config")
	if r.code != 1 || !strings.Contains(r.stderr, "injection.taint") {
		t.Fatalf("check-config with injection.taint sometimes: %+v", r)
	}
}

// startServe runs `cdpvault serve` on loopback ports and returns its API and
// metrics addresses (read from the "listening" log line).
func startServe(t *testing.T, dataDir, config string) (addr, metricsAddr string) {
	t.Helper()
	args := []string{"--data-dir", dataDir}
	if config != "" {
		args = append(args, "--config", config)
	}
	cmd := exec.Command(binPath, append(args, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	found := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "listening" && !sent {
				found <- [2]string{fmt.Sprint(m["addr"]), fmt.Sprint(m["metrics_addr"])}
				sent = true
			}
		}
		if !sent {
			close(found)
		}
	}()
	select {
	case a, ok := <-found:
		if !ok {
			t.Fatal("serve exited before listening")
		}
		return a[0], a[1]
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not report its addresses within 30s")
	}
	return "", ""
}

// Admin commands work on the data dir of a running daemon, and what they
// write is served at once.
func TestCLIWhileServing(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "", "tenant", "create", "acme")
	tok := strings.TrimSpace(mustRun(t, dir, "", "token", "create", "--tenant", "acme").stdout)
	addr, _ := startServe(t, dir, "")
	for i := range 5 {
		mustRun(t, dir, fmt.Sprintf("value-written-live-%d", i), "secret", "set", "--tenant", "acme", fmt.Sprintf("live%d", i), "--origin", "*")
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/secrets", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for i := range 5 {
		if !strings.Contains(string(body), fmt.Sprintf(`"live%d"`, i)) {
			t.Errorf("secret live%d written by the CLI is not served: %s", i, body)
		}
	}
	if strings.Contains(string(body), "value-written-live") {
		t.Fatal("API listing holds a value")
	}
	// A token revoked by the CLI stops working in the running daemon.
	ids := mustRun(t, dir, "", "token", "ls", "--tenant", "acme").stdout
	id := strings.Fields(strings.Split(strings.TrimSpace(ids), "\n")[1])[0]
	mustRun(t, dir, "", "token", "revoke", "--tenant", "acme", id)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoked token answered %d", resp.StatusCode)
	}
}

// Every metric the daemon exposes (including geo pool metrics) is promlint
// clean, and no label carries a secret value or a session id.
func TestMetricsPromlintClean(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "", "tenant", "create", "ops")
	mustRun(t, dir, "upstream-password-1", "secret", "set", "--tenant", "ops", "proxy_de_1")
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("geo:\n  credentials_tenant: ops\n  pools:\n    de:\n      timezone: Europe/Berlin\n      locale: de-DE\n      upstreams:\n        - {url: \"http://127.0.0.1:1\", username: u1, password_secret: proxy_de_1}\n"), 0o600)
	addr, maddr := startServe(t, dir, cfg)
	for _, p := range []string{"/healthz", "/api/v1/secrets", "/nope"} {
		if r, err := http.Get("http://" + addr + p); err == nil {
			r.Body.Close()
		}
	}
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"cdpvault_api_requests_total", "cdpvault_cdp_sessions_active", "cdpvault_build_info",
		"cdpvault_ready", "cdpvault_geo_upstream_up", "cdpvault_store_operations_total"} {
		if !strings.Contains(string(body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if strings.Contains(string(body), "upstream-password-1") {
		t.Fatal("/metrics holds a secret value")
	}
	probs, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// serve refuses to start with a clear message when memguard could not lock
// what it needs.
func TestServeRefusesSmallMemlock(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("bash", "-c", `ulimit -S -l 1024 && exec "$0" --data-dir "$1" serve --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0`, binPath, dir)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	var se bytes.Buffer
	cmd.Stderr = &se
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("serve with a 1 MiB memlock limit: %v, stderr %q", err, se.String())
	}
	if !strings.Contains(se.String(), "RLIMIT_MEMLOCK") || strings.Count(strings.TrimSpace(se.String()), "\n") != 0 {
		t.Fatalf("not one clear line: %q", se.String())
	}
}
