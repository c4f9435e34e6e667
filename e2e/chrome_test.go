package e2e_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DirectChrome is a Chromium the test launches itself, with no cdpvault in
// between. The control tests use it to show that the site and the client
// scripts behave as the daemon tests assume (for example, that every channel
// of the echo page really carries the value when nothing scrubs it).
type DirectChrome struct {
	CDPURL string // http://127.0.0.1:PORT
	WSURL  string // ws://127.0.0.1:PORT/devtools/browser/<id>
}

func chromiumPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CDPVAULT_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("no Chromium found (install it: make chromium)")
	return ""
}

// StartDirectChrome launches a headless Chromium on a free debugging port and
// kills its whole process group at the end of the test.
func StartDirectChrome(t testing.TB) *DirectChrome {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(chromiumPath(t), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
		"--user-data-dir="+dir, "--remote-debugging-port=0",
		"--host-resolver-rules=MAP *.test 127.0.0.1", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	deadline := time.Now().Add(waitTimeout)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "DevToolsActivePort"))
		if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); err == nil && len(lines) == 2 {
			return &DirectChrome{CDPURL: "http://127.0.0.1:" + lines[0], WSURL: "ws://127.0.0.1:" + lines[0] + lines[1]}
		}
		select {
		case <-exited:
			t.Fatalf("chromium exited before opening its debugging port: %s", errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium wrote no DevToolsActivePort within %v", waitTimeout)
		}
		time.Sleep(20 * time.Millisecond) // polling an external process
	}
}
