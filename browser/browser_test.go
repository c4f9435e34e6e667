package browser

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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

	"golang.org/x/sys/unix"
)

// chromium is the browser the tests drive; CDPVAULT_CHROMIUM (set by the Makefile) overrides it.
func chromium(t *testing.T) string {
	t.Helper()
	p := os.Getenv("CDPVAULT_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("tests need a real Chromium at %s (make chromium): %v", p, err)
	}
	return p
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func launch(t *testing.T, ctx context.Context, o Options) *Browser {
	t.Helper()
	if o.Path == "" {
		o.Path = chromium(t)
	}
	if o.BaseDir == "" {
		o.BaseDir = t.TempDir()
	}
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	b, err := Launch(ctx, o)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// waitClosed waits for ch with a generous deadline (the browser is an external process).
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: not closed within 20s", what)
	}
}

func assertGone(t *testing.T, b *Browser) {
	t.Helper()
	if left := GroupMembers(b.PID()); len(left) > 0 {
		t.Fatalf("processes %v of browser group %d still alive", left, b.PID())
	}
	if _, err := os.Stat(b.ProfileDir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("profile dir %s still exists (stat err %v)", b.ProfileDir(), err)
	}
}

func TestLaunchVersionClose(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	b := launch(t, context.Background(), Options{BaseDir: base})
	if !strings.HasPrefix(b.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL %q", b.URL())
	}
	if filepath.Dir(b.ProfileDir()) != base {
		t.Fatalf("profile %s not under %s", b.ProfileDir(), base)
	}
	v, err := b.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(v.Browser, "Chrome") || v.WebSocketDebuggerURL != b.WebSocketURL() {
		t.Fatalf("version %+v, ws url %q", v, b.WebSocketURL())
	}
	if len(GroupMembers(b.PID())) < 2 {
		t.Fatalf("expected a browser process group, got %v", GroupMembers(b.PID()))
	}
	select {
	case <-b.Done():
		t.Fatal("Done closed while running")
	default:
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, b)
	waitClosed(t, b.Done(), "Done after Close")
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.Version(context.Background()); err == nil {
		t.Fatal("DevTools endpoint still answers after Close")
	}
}

func TestCrashDetection(t *testing.T) {
	t.Parallel()
	b := launch(t, context.Background(), Options{})
	if err := syscall.Kill(b.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, b.Done(), "Done after kill -9")
	if b.ExitError() == nil {
		t.Fatal("ExitError nil after SIGKILL")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, b)
}

func TestConcurrentClose(t *testing.T) {
	t.Parallel()
	b := launch(t, context.Background(), Options{})
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.Close()
			// Every caller returns only once the browser is really gone.
			if left := GroupMembers(b.PID()); len(left) > 0 {
				errs[i] = fmt.Errorf("Close returned with %v alive", left)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Close #%d: %v", i, err)
		}
	}
	assertGone(t, b)
}

func TestContextBoundsStartupOnly(t *testing.T) {
	t.Parallel()
	// A session is created inside an HTTP request: its context ends right after Launch returns, and
	// the browser must outlive it.
	ctx, cancel := context.WithCancel(context.Background())
	b := launch(t, ctx, Options{})
	cancel()
	if _, err := b.Version(context.Background()); err != nil {
		t.Fatalf("browser gone after its launch context ended: %v", err)
	}
	select {
	case <-b.Done():
		t.Fatal("Done closed after the launch context ended")
	default:
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, b)
}

func TestEnvArgsAndProfile(t *testing.T) {
	t.Parallel()
	b := launch(t, context.Background(), Options{
		Env:  []string{"TZ=Europe/Berlin", "CDPVAULT_TEST_MARK=1"},
		Args: []string{"--lang=de-DE"},
	})
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", b.PID()))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, kv := range strings.Split(string(env), "\x00") {
		vars[kv] = true
	}
	for _, want := range []string{"TZ=Europe/Berlin", "CDPVAULT_TEST_MARK=1", "HOME=" + b.ProfileDir()} {
		if !vars[want] {
			t.Errorf("browser environment lacks %s", want)
		}
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", b.PID()))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	has := func(a string) bool {
		for _, x := range args {
			if x == a {
				return true
			}
		}
		return false
	}
	for _, want := range []string{"--lang=de-DE", "--headless", "--remote-debugging-address=127.0.0.1",
		"--remote-debugging-port=0", "--user-data-dir=" + b.ProfileDir(), "--disable-quic"} {
		if !has(want) {
			t.Errorf("browser command line %q lacks %s", args, want)
		}
	}
	if os.Geteuid() == 0 && !has("--no-sandbox") {
		t.Error("running as root without --no-sandbox")
	}
	fi, err := os.Stat(b.ProfileDir())
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("profile dir mode %v, err %v", fi.Mode(), err)
	}
}

func TestAttach(t *testing.T) {
	t.Parallel()
	b := launch(t, context.Background(), Options{})
	a, err := Attach(context.Background(), b.URL()+"/")
	if err != nil {
		t.Fatal(err)
	}
	if a.URL() != b.URL() || a.WebSocketURL() != b.WebSocketURL() || a.PID() != 0 || !a.Attached() {
		t.Fatalf("attached %q %q pid %d; launched %q %q", a.URL(), a.WebSocketURL(), a.PID(), b.URL(), b.WebSocketURL())
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Done():
		t.Fatal("attached Done closed")
	default:
	}
	// Closing the attachment leaves the Chrome running.
	if _, err := b.Version(context.Background()); err != nil {
		t.Fatalf("attached Close harmed the browser: %v", err)
	}
	// By name: Chrome checks the Host header, Attach must send one it accepts.
	port := strings.TrimPrefix(b.URL(), "http://127.0.0.1:")
	if _, err := Attach(context.Background(), "http://localhost:"+port); err != nil {
		t.Fatalf("attach via localhost: %v", err)
	}
}

func TestAttachErrors(t *testing.T) {
	t.Parallel()
	notChrome := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"hello":"world"}`)
	}))
	defer notChrome.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	cases := map[string]string{
		"ws://127.0.0.1:9222":               "scheme",
		"http://127.0.0.1":                  "host:port",
		"http://127.0.0.1:9222/json":        "without path",
		"http://user:pw@127.0.0.1:9222":     "credentials",
		"::bad":                             "chrome url",
		closedURL:                           "connect",
		notChrome.URL:                       "not a Chrome DevTools endpoint",
		notChrome.URL + "/?x=1":             "without path",
		"http://127.0.0.1:9222/devtools/x/": "without path",
	}
	for in, want := range cases {
		_, err := Attach(context.Background(), in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Attach(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestBadPath(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	notExec := filepath.Join(base, "chrome.txt")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ path, want string }{
		{"/nonexistent/chromium", "/nonexistent/chromium does not exist"},
		{"no-such-browser-binary", `"no-such-browser-binary" is not on PATH`},
		{notExec, "is not executable"},
		{base, "is not a regular file"},
		{"/bin/false", "exited during start-up"},
	}
	for _, c := range cases {
		_, err := Launch(context.Background(), Options{Path: c.path, BaseDir: base, Logger: quietLogger()})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Launch(%q) = %v, want error containing %q", c.path, err, c.want)
		}
	}
	_, err := Find("/nonexistent/chromium")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Find: %v is not ErrNotFound", err)
	}
	// Failed launches leave no profile directory behind.
	ents, _ := os.ReadDir(base)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), profilePrefix) {
			t.Errorf("leftover profile dir %s", e.Name())
		}
	}
}

func TestRefusedOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{
		{Args: []string{"--remote-debugging-port=9999"}},
		{Args: []string{"--user-data-dir=/tmp/x"}},
		{Args: []string{"--remote-debugging-address=0.0.0.0"}},
		{Args: []string{"--remote-debugging-pipe"}},
		{Env: []string{"NOEQUALS"}},
		{Env: []string{"=x"}},
	} {
		o.BaseDir = t.TempDir()
		if _, err := Launch(context.Background(), o); err == nil {
			t.Errorf("Launch accepted %+v", o)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Launch(ctx, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Launch with cancelled ctx: %v", err)
	}
}

// script writes an executable shell script standing in for a browser that misbehaves.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake-browser")
	// Held against fork while the file is open for writing: a parallel
	// test's fork would otherwise inherit the descriptor until its exec,
	// and executing the script meanwhile fails with ETXTBSY ("text file
	// busy"; seen once in make test as an immediate Launch error).
	syscall.ForkLock.RLock()
	err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755)
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStartTimeoutKillsStubbornGroup(t *testing.T) {
	t.Parallel()
	// Never writes DevToolsActivePort, ignores SIGTERM, and has a child in its group.
	p := script(t, "trap '' TERM\nsleep 300 &\nwhile :; do sleep 1; done")
	base := t.TempDir()
	start := time.Now()
	_, err := Launch(context.Background(), Options{Path: p, BaseDir: base, Logger: quietLogger(),
		StartTimeout: 300 * time.Millisecond, StopTimeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "did not open its DevTools port") {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("start-up failure took %v", d)
	}
	ents, _ := os.ReadDir(base)
	if len(ents) != 0 {
		t.Fatalf("leftover %v", ents)
	}
	// No process runs the script any more.
	if pids := processesWithArg(p); len(pids) > 0 {
		t.Fatalf("script processes %v still alive", pids)
	}
}

func TestStartupContextCancel(t *testing.T) {
	t.Parallel()
	p := script(t, "while :; do sleep 1; done")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	base := t.TempDir()
	_, err := Launch(ctx, Options{Path: p, BaseDir: base, Logger: quietLogger()})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	if pids := processesWithArg(p); len(pids) > 0 {
		t.Fatalf("processes %v outlived a launch cancelled during start-up", pids)
	}
	if ents, _ := os.ReadDir(base); len(ents) != 0 {
		t.Fatalf("leftover %v", ents)
	}
}

func TestStartupErrorShowsBrowserOutput(t *testing.T) {
	t.Parallel()
	p := script(t, "echo 'fatal: cannot open display' >&2\nexit 3")
	_, err := Launch(context.Background(), Options{Path: p, BaseDir: t.TempDir(), Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "cannot open display") {
		t.Fatalf("got %v", err)
	}
}

func processesWithArg(arg string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if st, _, ok := parseStat(stat); !ok || st == 'Z' {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if strings.Contains(string(cmd), arg) {
			out = append(out, pid)
		}
	}
	return out
}

func TestCheckStartable(t *testing.T) {
	t.Parallel()
	if err := CheckStartable(context.Background(), Options{Path: chromium(t)}); err != nil {
		t.Fatal(err)
	}
	if err := CheckStartable(context.Background(), Options{Path: chromium(t)}); err != nil {
		t.Fatalf("cached: %v", err)
	}
	for path, want := range map[string]string{
		"/nonexistent/chromium":           "does not exist",
		"/bin/false":                      "exit status 1",
		script(t, "echo 'Something 1.0'"): "did not print a Chrome/Chromium version",
	} {
		if err := CheckStartable(context.Background(), Options{Path: path}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckStartable(%s) = %v, want %q", path, err, want)
		}
	}
	hang := script(t, "exec sleep 300")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := CheckStartable(ctx, Options{Path: hang}); err == nil {
		t.Error("hanging --version accepted")
	}
}

func TestParseHelpers(t *testing.T) {
	st, pg, ok := parseStat([]byte("123 (a b) c)) S 1 456 456 0 -1"))
	if !ok || st != 'S' || pg != 456 {
		t.Fatalf("parseStat: %c %d %v", st, pg, ok)
	}
	if _, _, ok := parseStat([]byte("garbage")); ok {
		t.Fatal("parseStat accepted garbage")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "DevToolsActivePort")
	for content, want := range map[string]bool{
		"":                           false,
		"123":                        false,
		"123\n":                      false,
		"123\n/devtools/browser/":    false,
		"0\n/devtools/browser/x":     false,
		"70000\n/devtools/browser/x": false,
		"abc\n/devtools/browser/x":   false,
		"123\n/devtools/page/x":      false,
		"123\n/devtools/browser/x":   true,
		"123\n/devtools/browser/x\n": true,
	} {
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := readActivePort(f); ok != want {
			t.Errorf("readActivePort(%q) = %v, want %v", content, ok, want)
		}
	}
}

// TestParentDeath re-executes the test binary as a child that launches a browser and then blocks; the
// test kills that child with SIGKILL (no cleanup can run) and requires the browser's whole process
// group to die on its own.
func TestParentDeath(t *testing.T) {
	if base := os.Getenv("CDPVAULT_BROWSER_CHILD_BASE"); base != "" {
		parentDeathChild(base)
		return
	}
	t.Parallel()
	base := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestParentDeath$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CDPVAULT_BROWSER_CHILD_BASE="+base, "CDPVAULT_CHROMIUM="+chromium(t))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "BROWSER %d", &pid); err == nil {
			break
		}
	}
	if pid == 0 {
		t.Fatalf("child did not report a browser (scan err %v)", sc.Err())
	}
	if len(GroupMembers(pid)) == 0 {
		t.Fatalf("browser group %d not running", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait() //nolint:errcheck // killed on purpose
	// Waiting on processes we cannot reap: poll /proc with a deadline.
	deadline := time.Now().Add(20 * time.Second)
	for {
		left := GroupMembers(pid)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(-pid, syscall.SIGKILL)
			t.Fatalf("browser group %d outlived its parent: %v still alive", pid, left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func parentDeathChild(base string) {
	b, err := Launch(context.Background(), Options{Path: os.Getenv("CDPVAULT_CHROMIUM"), BaseDir: base, Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child launch:", err)
		os.Exit(2)
	}
	fmt.Printf("BROWSER %d\n", b.PID())
	io.Copy(io.Discard, os.Stdin) //nolint:errcheck // block until killed
	os.Exit(0)
}

// TestLaunchingThreadExit launches from a goroutine locked to its OS thread that then returns, so Go
// ends that thread. Pdeathsig is tied to the forking thread: the browser survives only because the
// fork happens on the package's own long-lived launcher thread.
func TestLaunchingThreadExit(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	var b *Browser
	var err error
	tid := onExitingThread(func() {
		b, err = Launch(context.Background(), Options{Path: chromium(t), BaseDir: base, Logger: quietLogger()})
	})
	if err != nil {
		t.Fatal(err)
	}
	r := struct {
		b   *Browser
		tid int
	}{b, tid}
	t.Cleanup(func() { r.b.Close() })
	task := fmt.Sprintf("/proc/self/task/%d", r.tid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(task); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("locked thread %d did not exit", r.tid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := r.b.Version(context.Background()); err != nil {
		t.Fatalf("browser died with the launching thread: %v", err)
	}
	select {
	case <-r.b.Done():
		t.Fatal("browser died with the launching thread")
	default:
	}
}

// onExitingThread runs fn on a goroutine locked to an OS thread that Go then ends (a locked goroutine
// that returns takes its thread with it), and returns that thread's id. Go never ends the main thread
// (it parks it instead), so when the goroutine lands there it keeps it busy and retries elsewhere.
func onExitingThread(fn func()) int {
	tidc := make(chan int, 1)
	go func() {
		runtime.LockOSThread() // deliberately not unlocked on the normal path
		if unix.Gettid() == unix.Getpid() {
			tidc <- onExitingThread(fn)
			runtime.UnlockOSThread()
			return
		}
		fn()
		tidc <- unix.Gettid()
	}()
	return <-tidc
}

func TestKillStopsAtOnce(t *testing.T) {
	t.Parallel()
	// Ignores SIGTERM: only Kill's SIGKILL ends it before the long grace.
	p := script(t, "trap '' TERM\nwhile :; do sleep 1; done")
	base := t.TempDir()
	// The stand-in never writes DevToolsActivePort; write one for it so Launch returns.
	profileDone := make(chan struct{})
	go func() {
		defer close(profileDone)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			ents, _ := os.ReadDir(base)
			if len(ents) == 1 {
				os.WriteFile(filepath.Join(base, ents[0].Name(), "DevToolsActivePort"), []byte("1\n/devtools/browser/x\n"), 0o600)
				return
			}
			time.Sleep(5 * time.Millisecond) // polling a directory another process fills
		}
	}()
	br, err := Launch(context.Background(), Options{Path: p, BaseDir: base, Logger: quietLogger(), StopTimeout: time.Hour})
	<-profileDone
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- br.Close() }() // waits for a grace of an hour
	br.Kill()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not finish after Kill")
	}
	assertGone(t, br)
	br.Kill() // after reaping: a no-op, never a signal to a reused process group
}

func TestRemoveStaleProfiles(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	live := launch(t, context.Background(), Options{BaseDir: base})
	old := time.Now().Add(-2 * staleAge)
	mk := func(name, lock string) string {
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if lock != "" {
			if err := os.Symlink(lock, filepath.Join(d, "SingletonLock")); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	dead := mk(profilePrefix+"dead", "host-999999999")
	nolock := mk(profilePrefix+"nolock", "")
	young := mk(profilePrefix+"young", "")
	foreign := mk("other-dir", "")
	// A live pid that is not a browser of that profile does not keep it.
	wrongPid := mk(profilePrefix+"wrongpid", "host-"+strconv.Itoa(os.Getpid()))
	for _, d := range []string{dead, nolock, foreign, wrongPid, live.ProfileDir()} {
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
	}
	n, err := RemoveStaleProfiles(base)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("removed %d, want 3", n)
	}
	for d, want := range map[string]bool{dead: false, nolock: false, wrongPid: false, young: true, foreign: true, live.ProfileDir(): true} {
		_, err := os.Stat(d)
		if exists := err == nil; exists != want {
			t.Errorf("%s exists=%v, want %v", filepath.Base(d), exists, want)
		}
	}
	if _, err := live.Version(context.Background()); err != nil {
		t.Fatalf("live browser harmed: %v", err)
	}
	if n, err := RemoveStaleProfiles(filepath.Join(base, "missing")); n != 0 || err != nil {
		t.Fatalf("missing base: %d %v", n, err)
	}
}

// BenchmarkLaunchClose measures a whole browser life: start until DevToolsActivePort, then Close
// until the group is gone and the profile removed (the cost a launch-mode session pays).
func BenchmarkLaunchClose(b *testing.B) {
	path := os.Getenv("CDPVAULT_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	base := b.TempDir()
	for b.Loop() {
		br, err := Launch(context.Background(), Options{Path: path, BaseDir: base, Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		if err := br.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
