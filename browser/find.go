package browser

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotFound is returned (wrapped) when no browser binary can be found.
var ErrNotFound = errors.New("browser binary not found")

// candidates are looked up on PATH, in order, when Options.Path is empty.
var candidates = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// fallbackPath is tried last, for services whose PATH is minimal.
const fallbackPath = "/usr/bin/chromium"

// Find resolves the browser binary. A path containing a slash must name an executable regular file;
// a bare name is looked up on PATH; "" tries chromium, chromium-browser, google-chrome and
// google-chrome-stable on PATH, then /usr/bin/chromium.
func Find(path string) (string, error) {
	if path != "" {
		if strings.ContainsRune(path, '/') {
			if err := checkExecutable(path); err != nil {
				return "", err
			}
			return filepath.Abs(path)
		}
		p, err := exec.LookPath(path)
		if err != nil {
			return "", fmt.Errorf("%w: %q is not on PATH", ErrNotFound, path)
		}
		return p, nil
	}
	for _, name := range candidates {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	if checkExecutable(fallbackPath) == nil {
		return fallbackPath, nil
	}
	return "", fmt.Errorf("%w: none of %s on PATH and no %s; install chromium or set chrome.path",
		ErrNotFound, strings.Join(candidates, ", "), fallbackPath)
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s does not exist", ErrNotFound, path)
		}
		return fmt.Errorf("browser binary %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("browser binary %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("browser binary %s is not executable", path)
	}
	return nil
}

// startableCache remembers binaries that answered --version, keyed by path, size and mtime, so that
// /readyz can call CheckStartable often without forking a browser each time, and a replaced binary is
// checked again. Failures are not cached.
var startableCache sync.Map // map[startKey]struct{}

type startKey struct {
	path  string
	size  int64
	mtime time.Time
}

// CheckStartable reports whether a browser could be launched with o: the binary is found and
// `<binary> --version` runs and exits 0 within ctx (10 s when ctx has no deadline). Successes are
// cached until the binary file changes.
func CheckStartable(ctx context.Context, o Options) error {
	bin, err := Find(o.Path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return fmt.Errorf("browser binary %s: %w", bin, err)
	}
	key := startKey{bin, fi.Size(), fi.ModTime()}
	if _, ok := startableCache.Load(key); ok {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out tail
	out.limit = 2048
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("browser binary %s --version: %w (output: %s)", bin, err, out.String())
	}
	if !strings.Contains(out.String(), "Chrom") {
		return fmt.Errorf("browser binary %s --version did not print a Chrome/Chromium version (output: %s)", bin, out.String())
	}
	startableCache.Store(key, struct{}{})
	return nil
}

// tail keeps the last limit bytes written to it.
type tail struct {
	mu    sync.Mutex
	limit int
	buf   []byte
	off   bool // stop keeping output (after start-up)
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.off {
		return len(p), nil
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// stop discards what was kept and everything written from now on.
func (t *tail) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.off = true
	clear(t.buf)
	t.buf = nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(strings.ToValidUTF8(string(t.buf), "?"))
}
