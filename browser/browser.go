package browser

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults for Options' zero values.
const (
	DefaultStartTimeout = 30 * time.Second
	DefaultStopTimeout  = 3 * time.Second
	// groupGoneTimeout bounds how long Close waits, after SIGKILL, for the group's last processes.
	groupGoneTimeout = 5 * time.Second
	profilePrefix    = "cdpvault-browser-"
)

// Options configures Launch. The zero value launches the first Chromium found on PATH.
type Options struct {
	// Path is the browser binary; "" finds chromium, chromium-browser, google-chrome on PATH, then
	// /usr/bin/chromium (see Find).
	Path string
	// Args are extra flags, appended after the defaults (so they may override e.g. --headless=...).
	// The flags that wire the browser to cdpvault (--user-data-dir, --remote-debugging-*) are refused.
	Args []string
	// Env holds extra KEY=value environment entries (e.g. TZ=Europe/Berlin); they win over the
	// inherited environment and over the HOME/XDG_* entries Launch points into the profile.
	Env []string
	// BaseDir is the parent of the per-browser profile directories; "" = os.TempDir(). Created 0700
	// if missing.
	BaseDir string
	// Logger receives lifecycle records (never browser output); nil = slog.Default().
	Logger *slog.Logger
	// StartTimeout bounds start-up until DevToolsActivePort appears; 0 = DefaultStartTimeout.
	StartTimeout time.Duration
	// StopTimeout is the grace between SIGTERM and SIGKILL on Close; 0 = DefaultStopTimeout.
	StopTimeout time.Duration
	// NoSandbox adds --no-sandbox even when not running as root (where Chromium's sandbox cannot
	// work, --no-sandbox is always added).
	NoSandbox bool
}

// Browser is one launched browser process group, or an attached existing Chrome.
type Browser struct {
	url     string // http://127.0.0.1:<port>
	wsURL   string // ws://127.0.0.1:<port>/devtools/browser/<id>
	pid     int
	profile string
	attach  bool
	log     *slog.Logger
	stopTO  time.Duration

	cmd     *exec.Cmd
	stderr  *tail
	exited  chan struct{} // the leader has exited (zombie, not yet reaped)
	done    chan struct{} // the group was SIGKILLed and the leader reaped
	mu      sync.Mutex    // guards reaped against signalling a reused process-group id
	reaped  bool
	waitErr error
	// closeStarted is set (under mu) when Close begins, to tell an expected exit from a crash.
	closeStarted bool
	stopWatch    func() bool // stops the ctx watcher

	closeOnce sync.Once
	closeErr  error
}

// URL is the browser's DevTools HTTP endpoint, e.g. "http://127.0.0.1:40123".
func (b *Browser) URL() string { return b.url }

// WebSocketURL is the browser-level DevTools WebSocket URL from DevToolsActivePort (launch mode) or
// /json/version (attach mode).
func (b *Browser) WebSocketURL() string { return b.wsURL }

// PID is the browser's main process id and process-group id; 0 in attach mode.
func (b *Browser) PID() int { return b.pid }

// ProfileDir is the browser's --user-data-dir, removed by Close; "" in attach mode.
func (b *Browser) ProfileDir() string { return b.profile }

// Attached reports whether b was made by Attach.
func (b *Browser) Attached() bool { return b.attach }

// Done is closed when the launched browser has exited (crashed, killed or closed) and its process
// group has been sent SIGKILL. In attach mode it is never closed. Call Close afterwards regardless,
// to remove the profile directory.
func (b *Browser) Done() <-chan struct{} { return b.done }

// ExitError is the browser's exit status once Done is closed (nil for exit code 0).
func (b *Browser) ExitError() error {
	select {
	case <-b.done:
		return b.waitErr
	default:
		return nil
	}
}

// Launch starts a headless browser in a fresh profile directory under o.BaseDir and returns once it
// listens on 127.0.0.1 (its DevToolsActivePort file is written).
//
// ctx bounds start-up only (together with o.StartTimeout): if it ends before the browser is ready,
// the browser's process group is killed and its profile removed. Once Launch has returned, ctx has no
// effect (a session is typically created inside an HTTP request whose context ends right after); the
// browser lives until Close, or until it dies (Done).
func Launch(ctx context.Context, o Options) (*Browser, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("launch browser: %w", err)
	}
	for _, a := range o.Args {
		name, _, _ := strings.Cut(a, "=")
		switch name {
		case "--user-data-dir", "--remote-debugging-port", "--remote-debugging-address",
			"--remote-debugging-pipe", "--remote-debugging-io-pipes":
			return nil, fmt.Errorf("launch browser: flag %s is set by cdpvault and cannot be overridden", name)
		}
	}
	for _, e := range o.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return nil, fmt.Errorf("launch browser: environment entry %q is not KEY=value", e)
		}
	}
	bin, err := Find(o.Path)
	if err != nil {
		return nil, fmt.Errorf("launch browser: %w", err)
	}
	base := o.BaseDir
	if base == "" {
		base = os.TempDir()
	}
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, fmt.Errorf("launch browser: profile base dir: %w", err)
	}
	profile, err := os.MkdirTemp(base, profilePrefix)
	if err != nil {
		return nil, fmt.Errorf("launch browser: profile dir: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	b := &Browser{
		profile: profile,
		log:     log,
		stopTO:  o.StopTimeout,
		stderr:  &tail{limit: 8 << 10},
		exited:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	if b.stopTO <= 0 {
		b.stopTO = DefaultStopTimeout
	}

	cmd := exec.Command(bin, launchArgs(o, profile)...)
	cmd.Dir = profile
	cmd.Env = append(append(os.Environ(),
		// Keep everything Chromium writes outside --user-data-dir (~/.pki/nssdb, crash reports,
		// caches) inside the profile, so it is removed with it and ProtectHome= cannot break it.
		"HOME="+profile,
		"XDG_CONFIG_HOME="+filepath.Join(profile, ".config"),
		"XDG_CACHE_HOME="+filepath.Join(profile, ".cache"),
	), o.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// stderr through our own pipe (not an io.Writer) so that exec's Wait never blocks on browser
	// children that still hold the pipe.
	pr, pw, err := os.Pipe()
	if err != nil {
		os.RemoveAll(profile)
		return nil, fmt.Errorf("launch browser: stderr pipe: %w", err)
	}
	cmd.Stderr = pw
	b.cmd = cmd
	startErr := startOnLockedThread(cmd)
	pw.Close()
	if startErr != nil {
		pr.Close()
		os.RemoveAll(profile)
		return nil, fmt.Errorf("launch browser %s: %w", bin, startErr)
	}
	b.pid = cmd.Process.Pid
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		defer pr.Close()
		io.Copy(b.stderr, pr) //nolint:errcheck // ends when the last holder of the pipe exits
	}()
	go b.wait()

	startTO := o.StartTimeout
	if startTO <= 0 {
		startTO = DefaultStartTimeout
	}
	port, path, err := b.waitActivePort(ctx, startTO)
	if err != nil {
		b.Close() //nolint:errcheck // the start-up error is the one that matters
		// The group is dead: its output is complete once the pipe drains (bounded, in case a
		// process that left the group still holds it).
		select {
		case <-stderrDone:
		case <-time.After(time.Second):
		}
		out := b.stderr.String()
		if out != "" {
			return nil, fmt.Errorf("launch browser %s: %w; browser output: %s", bin, err, lastLines(out, 5))
		}
		return nil, fmt.Errorf("launch browser %s: %w", bin, err)
	}
	// From here on the browser may render pages holding secrets: keep none of its output.
	b.stderr.stop()
	b.url = "http://127.0.0.1:" + strconv.Itoa(port)
	b.wsURL = "ws://127.0.0.1:" + strconv.Itoa(port) + path
	go func() {
		<-b.done
		if !b.closing() {
			b.log.Warn("browser exited unexpectedly", "pid", b.pid, "exit", fmt.Sprint(b.waitErr))
		}
	}()
	b.log.Info("browser launched", "pid", b.pid, "url", b.url, "profile_dir", profile)
	return b, nil
}

func launchArgs(o Options, profile string) []string {
	args := []string{
		"--headless",
		"--disable-gpu",
		"--no-first-run",
		"--no-default-browser-check",
		"--disable-background-networking",
		"--disable-component-update",
		"--disable-sync",
		"--disable-quic",
		"--disable-breakpad",
		"--disable-crash-reporter",
		"--password-store=basic",
		"--use-mock-keychain",
	}
	if o.NoSandbox || os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox on.
		args = append(args, "--no-sandbox")
	}
	if smallDevShm() {
		// A small /dev/shm (containers, PrivateDevices=) crashes renderers; use the profile's tmp.
		args = append(args, "--disable-dev-shm-usage")
	}
	args = append(args, o.Args...)
	return append(args,
		"--user-data-dir="+profile,
		"--remote-debugging-port=0",
		"--remote-debugging-address=127.0.0.1",
		"about:blank",
	)
}

// smallDevShm reports whether /dev/shm is missing or has less than 1 GiB available.
func smallDevShm() bool {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil {
		return true
	}
	return uint64(st.Bavail)*uint64(st.Bsize) < 1<<30
}

// launcher starts every browser from one goroutine locked to its OS thread for the life of the
// process. Pdeathsig fires when the *thread* that forked the child exits; Go ends threads whose locked
// goroutine returns, so forking from an arbitrary caller's goroutine could kill a browser early. This
// thread never exits, so the signal fires only when the whole daemon dies.
var launcher struct {
	once sync.Once
	reqs chan launchReq
}

type launchReq struct {
	cmd  *exec.Cmd
	done chan error
}

func startOnLockedThread(cmd *exec.Cmd) error {
	launcher.once.Do(func() {
		launcher.reqs = make(chan launchReq)
		go func() {
			runtime.LockOSThread() // never unlocked: this goroutine and its thread live forever
			for r := range launcher.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	launcher.reqs <- launchReq{cmd: cmd, done: done}
	return <-done
}

// wait notices the leader's exit without reaping it, kills what is left of its group while the
// zombie still pins the process-group id, then reaps.
func (b *Browser) wait() {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, b.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break // on any other error (ECHILD) the leader is gone as well
		}
	}
	close(b.exited)
	b.mu.Lock()
	_ = unix.Kill(-b.pid, unix.SIGKILL)
	b.waitErr = b.cmd.Wait()
	b.reaped = true
	b.mu.Unlock()
	close(b.done)
}

// signalGroup signals the browser's process group unless the leader was already reaped (its pid, and
// so the group id, could then belong to someone else).
func (b *Browser) signalGroup(sig unix.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.reaped {
		_ = unix.Kill(-b.pid, sig)
	}
}

func (b *Browser) waitActivePort(ctx context.Context, timeout time.Duration) (int, string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	// Polling is the only portable way to watch a file written by another process without extra
	// dependencies; 20 ms keeps start-up latency low at negligible cost.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	file := filepath.Join(b.profile, "DevToolsActivePort")
	for {
		if port, path, ok := readActivePort(file); ok {
			return port, path, nil
		}
		select {
		case <-ctx.Done():
			return 0, "", fmt.Errorf("waiting for DevToolsActivePort: %w", ctx.Err())
		case <-deadline.C:
			return 0, "", fmt.Errorf("browser did not open its DevTools port within %s", timeout)
		case <-b.exited:
			<-b.done
			return 0, "", fmt.Errorf("browser exited during start-up: %v", b.waitErr)
		case <-tick.C:
		}
	}
}

// readActivePort parses DevToolsActivePort: the port on line one, the browser target path on line
// two. A partially written file is reported as not ready.
func readActivePort(file string) (int, string, bool) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, "", false
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) < 2 {
		return 0, "", false
	}
	port, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	path := strings.TrimSpace(lines[1])
	if err != nil || port <= 0 || port > 65535 || !strings.HasPrefix(path, "/devtools/browser/") || len(path) <= len("/devtools/browser/") {
		return 0, "", false
	}
	return port, path, true
}

// closing reports whether Close has begun.
func (b *Browser) closing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closeStarted
}

// Kill sends SIGKILL to the browser's whole process group at once, without the SIGTERM grace, and
// returns without waiting (a forced stop). A Close in progress then finishes promptly; call Close
// afterwards as usual to reap and remove the profile. In attach mode it does nothing.
func (b *Browser) Kill() {
	if b == nil || b.attach {
		return
	}
	b.signalGroup(unix.SIGKILL)
}

// Close stops a launched browser: SIGTERM to its process group, SIGKILL after the stop timeout, reap,
// wait until no process of the group is alive, remove the profile directory. It is idempotent and
// safe to call concurrently (every caller waits for the same result). In attach mode it does nothing.
func (b *Browser) Close() error {
	if b == nil {
		return nil
	}
	b.closeOnce.Do(func() { b.closeErr = b.close() })
	return b.closeErr
}

func (b *Browser) close() error {
	if b.attach {
		return nil
	}
	b.mu.Lock()
	b.closeStarted = true
	b.mu.Unlock()
	start := time.Now()
	select {
	case <-b.exited:
	default:
		b.signalGroup(unix.SIGTERM)
		grace := time.NewTimer(b.stopTO)
		select {
		case <-b.exited:
		case <-grace.C:
			b.log.Warn("browser ignored SIGTERM, killing", "pid", b.pid, "grace", b.stopTO.String())
			b.signalGroup(unix.SIGKILL)
		}
		grace.Stop()
	}
	<-b.done
	var errs []error
	if left := waitGroupGone(b.pid, groupGoneTimeout); len(left) > 0 {
		errs = append(errs, fmt.Errorf("close browser %d: processes %v of its group still alive after SIGKILL", b.pid, left))
	}
	if err := os.RemoveAll(b.profile); err != nil {
		errs = append(errs, fmt.Errorf("close browser %d: remove profile dir: %w", b.pid, err))
	}
	b.log.Info("browser closed", "pid", b.pid, "duration", time.Since(start).String())
	return errors.Join(errs...)
}

// waitGroupGone polls /proc until no live (non-zombie) process has process-group id pgid, or timeout.
// It returns the pids still alive. Polling is the only way to wait on processes we cannot reap.
func waitGroupGone(pgid int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		left := GroupMembers(pgid)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(10 * time.Millisecond) // polling an external condition, bounded by the deadline
	}
}

// GroupMembers lists the live (not zombie) processes whose process-group id is pgid, from /proc.
func GroupMembers(pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		state, pg, ok := parseStat(stat)
		if ok && pg == pgid && state != 'Z' && state != 'X' {
			out = append(out, pid)
		}
	}
	return out
}

// parseStat extracts state and pgrp from /proc/<pid>/stat: "pid (comm) S ppid pgrp ...". comm may
// contain spaces and parentheses, so fields are counted after the last ')'.
func parseStat(stat []byte) (byte, int, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pg, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], pg, true
}

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
