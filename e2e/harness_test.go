package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cdpvaultBin is the binary TestMain built from the module root.
var cdpvaultBin string

// cleanupDirs are removed when the tests end.
var cleanupDirs []string

// buildErr is why the binary could not be built (harness-only runs).
var buildErr error

// e2eDir is the absolute path of this package (js/ scripts, node_modules/).
var e2eDir string

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	e2eDir = filepath.Dir(file)
	dir, err := os.MkdirTemp("", "cdpvault-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: temp dir: %v\n", err)
		os.Exit(1)
	}
	cdpvaultBin = filepath.Join(dir, "cdpvault")
	cmd := exec.Command("go", "build", "-o", cdpvaultBin, "github.com/cdpvault/cdpvault")
	cmd.Dir = filepath.Dir(e2eDir)
	if bin := os.Getenv("CDPVAULT_E2E_BINARY"); bin != "" {
		// Test a binary built elsewhere (a release build, for example).
		cdpvaultBin = bin
		cmd = exec.Command(bin, "help")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		buildErr = fmt.Errorf("cannot build the cdpvault binary (go build github.com/cdpvault/cdpvault): %v\n%s", err, out)
		// CDPVAULT_E2E_HARNESS_ONLY=1 is for working on the harness while the
		// daemon does not build: the control tests run, every daemon test fails.
		if os.Getenv("CDPVAULT_E2E_HARNESS_ONLY") != "1" {
			fmt.Fprintf(os.Stderr, "e2e: FAIL: %v\n", buildErr)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	for _, d := range cleanupDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// waitTimeout bounds every wait on the daemon or a browser.
const waitTimeout = 30 * time.Second

// Env is one operator set-up: a data dir, a config file and the CLI on them.
type Env struct {
	t       testing.TB
	Dir     string // everything of this env lives here
	DataDir string
	Config  string
	TmpDir  string // TMPDIR of the daemon: browser profiles land here
	// Marker is put in the daemon's environment; every process it starts
	// inherits it, so the test can count the browsers it left behind.
	Marker string

	mu   sync.Mutex
	pids []int // daemons started on this env
}

// NewEnv makes a fresh data dir and writes the config (see WriteConfig).
func NewEnv(t testing.TB, logLevel string) *Env {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("no cdpvault binary: %v", buildErr)
	}
	// Short: Chromium's singleton socket lives under TMPDIR, and a unix
	// socket path has at most 107 bytes.
	dir, err := os.MkdirTemp("", "cve2e-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &Env{t: t, Dir: dir, DataDir: filepath.Join(dir, "data"), Config: filepath.Join(dir, "cdpvault.yaml"),
		TmpDir: filepath.Join(dir, "tmp"), Marker: "CDPVAULT_E2E_MARK=" + randomHex(8)}
	for _, d := range []string{e.DataDir, e.TmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("mkdir: %v", err)
		}
	}
	e.WriteConfig(logLevel)
	return e
}

// WriteConfig (re)writes the YAML config with the given log level. The
// daemon itself adds --headless, --no-sandbox and its other flags; the test
// only maps *.test to the loopback site.
func (e *Env) WriteConfig(logLevel string) {
	e.t.Helper()
	cfg := "log: {level: " + logLevel + ", format: json}\n" +
		"chrome:\n  args: [\"--host-resolver-rules=MAP *.test 127.0.0.1\"]\n"
	if err := os.WriteFile(e.Config, []byte(cfg), 0o600); err != nil {
		e.t.Fatalf("write config: %v", err)
	}
}

func (e *Env) environ() []string {
	return append(os.Environ(), "CDPVAULT_DATA_DIR="+e.DataDir, "CDPVAULT_CONFIG="+e.Config,
		"TMPDIR="+e.TmpDir, e.Marker)
}

// CLI runs `cdpvault args...` on this env with stdin, bounded in time.
func (e *Env) CLI(stdin []byte, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cdpvaultBin, args...)
	cmd.Env = e.environ()
	cmd.Stdin = bytes.NewReader(stdin)
	var o, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &se
	err = cmd.Run()
	return o.String(), se.String(), err
}

// MustCLI runs the CLI and fails the test on a non-zero exit.
func (e *Env) MustCLI(stdin []byte, args ...string) string {
	e.t.Helper()
	out, errOut, err := e.CLI(stdin, args...)
	if err != nil {
		e.t.Fatalf("cdpvault %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// Tenant creates a tenant and returns a new API token for it.
func (e *Env) Tenant(name string) string {
	e.t.Helper()
	e.MustCLI(nil, "tenant", "create", name)
	tok := strings.TrimSpace(e.MustCLI(nil, "token", "create", "--tenant", name))
	if tok == "" || strings.ContainsAny(tok, " \n\t") {
		e.t.Fatalf("token create printed %q, want the token alone", tok)
	}
	return tok
}

// SetSecret stores value (via stdin) for tenant, injectable on origins.
func (e *Env) SetSecret(tenant, name string, value []byte, origins ...string) {
	e.t.Helper()
	args := []string{"secret", "set", "--tenant", tenant, name}
	for _, o := range origins {
		args = append(args, "--origin", o)
	}
	e.MustCLI(value, args...)
}

// Daemon is one running `cdpvault serve`.
type Daemon struct {
	t           testing.TB
	env         *Env
	cmd         *exec.Cmd
	Addr        string // CDP + API listener, host:port
	MetricsAddr string

	stderr   syncBuffer
	exited   chan struct{}
	exitErr  error
	stopOnce sync.Once
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

// Start runs `cdpvault serve` on loopback ports chosen by the kernel, reads
// the bound addresses from its "listening" log line and waits for /readyz.
// The daemon is stopped (SIGTERM, then SIGKILL) at the end of the test.
func (e *Env) Start() *Daemon {
	e.t.Helper()
	d := &Daemon{t: e.t, env: e, exited: make(chan struct{})}
	d.cmd = exec.Command(cdpvaultBin, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--data-dir", e.DataDir, "--config", e.Config)
	d.cmd.Env = e.environ()
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	d.cmd.Stderr = pw
	d.cmd.Stdout = &d.stderr
	if err := d.cmd.Start(); err != nil {
		e.t.Fatalf("start cdpvault serve: %v", err)
	}
	e.mu.Lock()
	e.pids = append(e.pids, d.cmd.Process.Pid)
	e.mu.Unlock()
	go func() {
		d.exitErr = d.cmd.Wait()
		pw.Close()
		close(d.exited)
	}()
	addrs := make(chan [2]string, 1)
	go func() {
		var addr, maddr string
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			line := sc.Bytes()
			d.stderr.Write(line)
			d.stderr.Write([]byte{'\n'})
			if addr != "" && maddr != "" {
				continue
			}
			var m map[string]any
			if json.Unmarshal(line, &m) == nil && m["msg"] == "listening" {
				if a, ok := m["addr"].(string); ok && a != "" {
					addr = a
				}
				if a, ok := m["metrics_addr"].(string); ok && a != "" {
					maddr = a
				}
				if addr != "" && maddr != "" {
					addrs <- [2]string{addr, maddr}
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	e.t.Cleanup(func() { d.Stop() })

	select {
	case a := <-addrs:
		d.Addr, d.MetricsAddr = a[0], a[1]
	case <-d.exited:
		e.t.Fatalf("cdpvault serve exited before listening: %v\nlog:\n%s", d.exitErr, d.stderr.Bytes())
	case <-time.After(waitTimeout):
		e.t.Fatalf(`cdpvault serve logged no {"msg":"listening","addr":...,"metrics_addr":...} line within %v; log:\n%s`,
			waitTimeout, d.stderr.Bytes())
	}
	d.WaitReady()
	return d
}

// WaitReady polls /readyz until it answers 200.
func (d *Daemon) WaitReady() {
	d.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			d.t.Fatalf("daemon exited while waiting for /readyz: %v\nlog:\n%s", d.exitErr, d.stderr.Bytes())
		default:
		}
		resp, err := http.Get("http://" + d.Addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond) // polling an external process
	}
	d.t.Fatalf("/readyz not 200 within %v (last: %s)\nlog:\n%s", waitTimeout, last, d.stderr.Bytes())
}

// Pid is the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Log returns everything the daemon wrote so far.
func (d *Daemon) Log() []byte { return d.stderr.Bytes() }

// Signal sends sig to the daemon.
func (d *Daemon) Signal(sig os.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatalf("signal %v: %v", sig, err)
	}
}

// Wait waits for the daemon to exit and returns its exit code (-1 if it
// died from a signal); it fails the test after timeout.
func (d *Daemon) Wait(timeout time.Duration) int {
	d.t.Helper()
	select {
	case <-d.exited:
	case <-time.After(timeout):
		d.t.Fatalf("daemon did not exit within %v\nlog:\n%s", timeout, d.Log())
	}
	return d.cmd.ProcessState.ExitCode()
}

// Stop ends the daemon: SIGTERM, then SIGKILL of its process group after 15s.
func (d *Daemon) Stop() {
	d.stopOnce.Do(func() {
		select {
		case <-d.exited:
			return
		default:
		}
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(15 * time.Second):
			syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.exited
		}
	})
	d.env.killLeftovers()
}

// Session is the answer of POST /api/v1/sessions.
type Session struct {
	ID        string `json:"id"`
	CDPURL    string `json:"cdp_url"`
	WSURL     string `json:"ws_url"`
	ExpiresAt string `json:"expires_at"`
}

// API sends a request to the REST API and returns status and body.
func (d *Daemon) API(t testing.TB, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+d.Addr+path, rd)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// SessionOpts is the body of POST /api/v1/sessions.
type SessionOpts struct {
	Secrets    []string `json:"secrets,omitempty"`
	TTLSeconds int      `json:"ttl_seconds,omitempty"`
}

// NewSession creates a session and deletes it at the end of the test.
func (d *Daemon) NewSession(t testing.TB, token string, opts SessionOpts) Session {
	t.Helper()
	code, body := d.API(t, http.MethodPost, "/api/v1/sessions", token, opts)
	if code != http.StatusCreated {
		t.Fatalf("POST /api/v1/sessions = %d %s, want 201", code, body)
	}
	var s Session
	if err := json.Unmarshal(body, &s); err != nil || s.ID == "" || s.CDPURL == "" || s.WSURL == "" {
		t.Fatalf("POST /api/v1/sessions body %s: want id, cdp_url, ws_url (%v)", body, err)
	}
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.API(t, http.MethodDelete, "/api/v1/sessions/"+s.ID, token, nil)
		}
	})
	return s
}

// Metrics returns the body of /metrics.
func (d *Daemon) Metrics() []byte {
	d.t.Helper()
	resp, err := http.Get("http://" + d.MetricsAddr + "/metrics")
	if err != nil {
		d.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		d.t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	return b
}

// BrowserProcs counts live browser processes that belong to this env's
// daemon: processes that inherited its environment marker, whose command
// line names a directory of this env (profiles under its TMPDIR or data
// dir), or that descend from the daemon process.
func (e *Env) BrowserProcs() int { return len(e.browserPids()) }

func (e *Env) browserPids() []int {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	ppid := map[int]int{}
	var browsers []int
	for _, de := range ents {
		pid, err := strconv.Atoi(de.Name())
		if err != nil || pid == self {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", de.Name(), "stat")); err == nil {
			// pid (comm) state ppid ...; comm may hold spaces and parens.
			if i := bytes.LastIndexByte(st, ')'); i > 0 {
				f := strings.Fields(string(st[i+1:]))
				if len(f) > 1 {
					ppid[pid], _ = strconv.Atoi(f[1])
				}
			}
		}
		exe, err := os.Readlink(filepath.Join("/proc", de.Name(), "exe"))
		if err != nil || !strings.Contains(filepath.Base(exe), "chrom") {
			continue // not a browser, or a zombie
		}
		browsers = append(browsers, pid)
	}
	daemons := e.daemonPids()
	var out []int
	for _, pid := range browsers {
		env, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
		cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		mine := bytes.Contains(append([]byte{0}, env...), []byte("\x00"+e.Marker+"\x00")) ||
			bytes.Contains(cmdline, []byte(e.Dir))
		for p, hops := ppid[pid], 0; !mine && p > 1 && hops < 64; p, hops = ppid[p], hops+1 {
			mine = daemons[p]
		}
		if mine {
			out = append(out, pid)
		}
	}
	return out
}

func (e *Env) daemonPids() map[int]bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := map[int]bool{}
	for _, p := range e.pids {
		m[p] = true
	}
	return m
}

// killLeftovers kills browsers a failed daemon left behind, so one failing
// test does not leave load on the machine for the others.
func (e *Env) killLeftovers() {
	for _, pid := range e.browserPids() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// WaitBrowserProcs polls until the env has exactly want browser processes.
func (e *Env) WaitBrowserProcs(want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n := e.BrowserProcs()
		if n == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d browser processes after %v, want %d", n, timeout, want)
		}
		time.Sleep(50 * time.Millisecond) // polling external processes
	}
}

// runNode runs e2e/js/<script> with env and returns its stdout (a JSON
// document); a non-zero exit fails the test with the script's stderr.
func runNode(t testing.TB, script string, env map[string]string) []byte {
	t.Helper()
	out, errOut, err := runNodeErr(script, env)
	if dir := os.Getenv("CDPVAULT_E2E_NODE_LOG_DIR"); dir != "" {
		// Full client logs for debugging, e.g. with DEBUG=pw:protocol.
		name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + "-" + script + ".log"
		os.WriteFile(filepath.Join(dir, name), []byte(errOut), 0o600)
	}
	if err != nil {
		t.Fatalf("node %s: %v\nstderr:\n%s\nstdout:\n%s", script, err, tail(errOut, 8<<10), out)
	}
	t.Cleanup(func() {
		if t.Failed() && errOut != "" {
			t.Logf("node %s stderr (end):\n%s", script, tail(errOut, 4<<10))
		}
	})
	return out
}

func runNodeErr(script string, env map[string]string) ([]byte, string, error) {
	if _, err := exec.LookPath("node"); err != nil {
		return nil, "", fmt.Errorf("node is not installed (the e2e tests need it): %w", err)
	}
	for _, p := range []string{"playwright-core", "puppeteer-core"} {
		if _, err := os.Stat(filepath.Join(e2eDir, "node_modules", p)); err != nil {
			return nil, "", fmt.Errorf("e2e/node_modules/%s missing: run `make npm-deps` (npm ci in e2e/)", p)
		}
	}
	// Each script also stops itself (SCRIPT_TIMEOUT_MS, default 60 s) and
	// says where it was; this bound is the backstop.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(e2eDir, "js", script))
	cmd.Dir = e2eDir
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var o, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &se
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, fmt.Errorf("node %s timed out", script))
	}
	return o.Bytes(), se.String(), err
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}
