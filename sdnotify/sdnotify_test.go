package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listen opens a real unixgram socket in a temp dir and points NOTIFY_SOCKET at it.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv(envSocket, path)
	return conn
}

func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read notify datagram: %v", err)
	}
	return string(buf[:n])
}

// nothingPending fails if a datagram is waiting on conn.
func nothingPending(t *testing.T, conn *net.UnixConn) {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	if err == nil {
		t.Fatalf("unexpected datagram %q", buf[:n])
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read: %v", err)
	}
}

func TestMessages(t *testing.T) {
	conn := listen(t)
	cases := []struct {
		name string
		send func() error
		want string
	}{
		{"ready", Ready, "READY=1"},
		{"stopping", Stopping, "STOPPING=1"},
		{"watchdog", Watchdog, "WATCHDOG=1"},
		{"status", func() error { return Status("serving 3 sessions") }, "STATUS=serving 3 sessions"},
		{"status newline", func() error { return Status("a\nREADY=1\r") }, "STATUS=a READY=1 "},
		{"raw", func() error { return Notify("EXTEND_TIMEOUT_USEC=5000000") }, "EXTEND_TIMEOUT_USEC=5000000"},
	}
	for _, c := range cases {
		if err := c.send(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := recv(t, conn); got != c.want {
			t.Fatalf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
	if err := Notify(""); err == nil {
		t.Fatal("empty state accepted")
	}
}

func TestReloadingCarriesMonotonicTime(t *testing.T) {
	conn := listen(t)
	before := monotonicUsec()
	if err := Reloading(); err != nil {
		t.Fatal(err)
	}
	after := monotonicUsec()
	got := recv(t, conn)
	lines := strings.Split(got, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("got %q", got)
	}
	us, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if us < before || us > after || before <= 0 {
		t.Fatalf("MONOTONIC_USEC=%d not within [%d,%d]", us, before, after)
	}
}

func TestAbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@cdpvault-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv(envSocket, name)
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, conn); got != "READY=1" {
		t.Fatalf("got %q", got)
	}
}

func TestUnsetIsNoop(t *testing.T) {
	t.Setenv(envSocket, "")
	os.Unsetenv(envSocket)
	for _, f := range []func() error{Ready, Stopping, Reloading, Watchdog, func() error { return Status("x") }} {
		if err := f(); err != nil {
			t.Fatalf("no NOTIFY_SOCKET: %v", err)
		}
	}
}

func TestBadSockets(t *testing.T) {
	for _, addr := range []string{"relative/path", "@", "vsock:2:1234"} {
		t.Setenv(envSocket, addr)
		if err := Ready(); !errors.Is(err, ErrUnsupportedSocket) {
			t.Fatalf("%q: got %v, want ErrUnsupportedSocket", addr, err)
		}
	}
	missing := filepath.Join(t.TempDir(), "gone.sock")
	t.Setenv(envSocket, missing)
	err := Ready()
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing socket: got %v", err)
	}
}

func TestWatchdogEnabled(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	cases := []struct {
		usec, pid string
		want      time.Duration
		ok        bool
	}{
		{"", "", 0, false},
		{"30000000", "", 30 * time.Second, true},
		{"30000000", self, 30 * time.Second, true},
		{"30000000", "1", 0, false}, // the watchdog belongs to another process
		{"30000000", "x", 0, false},
		{"0", "", 0, false},
		{"-5", "", 0, false},
		{"abc", "", 0, false},
	}
	for _, c := range cases {
		t.Setenv(envWatchdogUS, c.usec)
		t.Setenv(envWatchdogPID, c.pid)
		d, ok := WatchdogEnabled()
		if d != c.want || ok != c.ok {
			t.Fatalf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: got %v,%v want %v,%v", c.usec, c.pid, d, ok, c.want, c.ok)
		}
	}
}

func TestWatchdogLoopPings(t *testing.T) {
	conn := listen(t)
	t.Setenv(envWatchdogUS, "20000") // 20ms: pings every 10ms
	t.Setenv(envWatchdogPID, strconv.Itoa(os.Getpid()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- WatchdogLoop(ctx, nil) }()
	for i := 0; i < 3; i++ {
		if got := recv(t, conn); got != "WATCHDOG=1" {
			t.Fatalf("ping %d: got %q", i, got)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("loop ended with %v", err)
	}
}

func TestWatchdogLoopSkipsWhenUnhealthy(t *testing.T) {
	conn := listen(t)
	t.Setenv(envWatchdogUS, "20000")
	t.Setenv(envWatchdogPID, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	checks := make(chan struct{}, 16)
	var healthy atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- WatchdogLoop(ctx, func() bool {
			ok := healthy.Load()
			checks <- struct{}{}
			return ok
		})
	}()
	for i := 0; i < 3; i++ {
		<-checks
	}
	nothingPending(t, conn) // three failed checks, no ping
	healthy.Store(true)
	if got := recv(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("got %q", got)
	}
	cancel()
	go func() {
		for range checks {
		}
	}()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("loop ended with %v", err)
	}
}

func TestWatchdogLoopDisabled(t *testing.T) {
	t.Setenv(envWatchdogUS, "")
	if err := WatchdogLoop(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestWatchdogLoopSendError(t *testing.T) {
	t.Setenv(envSocket, filepath.Join(t.TempDir(), "gone.sock"))
	t.Setenv(envWatchdogUS, "20000")
	if err := WatchdogLoop(context.Background(), nil); err == nil {
		t.Fatal("send error not reported")
	}
}
