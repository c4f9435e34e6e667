package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Environment variables systemd sets for a notify service.
const (
	envSocket      = "NOTIFY_SOCKET"
	envWatchdogUS  = "WATCHDOG_USEC"
	envWatchdogPID = "WATCHDOG_PID"
)

// ErrUnsupportedSocket is returned when NOTIFY_SOCKET names a transport this package does not speak
// (for example systemd 254's "vsock:" form).
var ErrUnsupportedSocket = errors.New("sdnotify: unsupported NOTIFY_SOCKET address")

// Notify sends state, one or more newline-separated VAR=value assignments, to the service manager.
// It returns nil without doing anything when NOTIFY_SOCKET is unset.
func Notify(state string) error {
	addr := os.Getenv(envSocket)
	if addr == "" {
		return nil
	}
	if state == "" {
		return errors.New("sdnotify: empty state")
	}
	ua, err := socketAddr(addr)
	if err != nil {
		return err
	}
	conn, err := net.DialUnix("unixgram", nil, ua)
	if err != nil {
		return fmt.Errorf("sdnotify: dial %s: %w", addr, err)
	}
	defer conn.Close()
	// A datagram socket: one write is one message; systemd reads it whole or not at all.
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: send to %s: %w", addr, err)
	}
	return nil
}

// socketAddr turns NOTIFY_SOCKET into a unixgram address. A leading '@' names the abstract namespace;
// Go's syscall layer maps it to a leading NUL byte.
func socketAddr(addr string) (*net.UnixAddr, error) {
	switch {
	case strings.HasPrefix(addr, "/"), strings.HasPrefix(addr, "@") && len(addr) > 1:
		return &net.UnixAddr{Name: addr, Net: "unixgram"}, nil
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedSocket, addr)
	}
}

// Ready tells systemd that start-up (or a reload) has finished: READY=1.
func Ready() error { return Notify("READY=1") }

// Stopping tells systemd that the service is shutting down: STOPPING=1.
func Stopping() error { return Notify("STOPPING=1") }

// Reloading tells systemd that a reload has begun: RELOADING=1 with MONOTONIC_USEC, the CLOCK_MONOTONIC
// time systemd uses to match the message to the reload request. Call Ready when the reload is done.
func Reloading() error {
	return Notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(monotonicUsec(), 10))
}

// Status sets the free-form status line shown by `systemctl status`. Newlines would start a new
// assignment, so they are replaced by spaces.
func Status(s string) error {
	s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	return Notify("STATUS=" + s)
}

// Watchdog pings the service manager's watchdog: WATCHDOG=1.
func Watchdog() error { return Notify("WATCHDOG=1") }

// WatchdogEnabled reports whether systemd expects watchdog pings from this process, and at what
// interval it considers the service hung (WATCHDOG_USEC). WATCHDOG_PID, when set, must name this
// process; otherwise the watchdog belongs to another process and this one reports false.
// Send pings at half the returned interval or more often.
func WatchdogEnabled() (time.Duration, bool) {
	us := os.Getenv(envWatchdogUS)
	if us == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(us, 10, 63)
	if err != nil || n == 0 {
		return 0, false
	}
	if p := os.Getenv(envWatchdogPID); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil || pid != os.Getpid() {
			return 0, false
		}
	}
	return time.Duration(n) * time.Microsecond, true
}

// WatchdogLoop pings the watchdog at half its interval for as long as healthy (nil = always healthy)
// returns true, until ctx is done. When the watchdog is not enabled it returns nil at once. A failed
// health check skips that ping, so a hung or unhealthy daemon is restarted by systemd. It returns
// ctx.Err() when ctx ends, or the first send error.
func WatchdogLoop(ctx context.Context, healthy func() bool) error {
	interval, ok := WatchdogEnabled()
	if !ok {
		return nil
	}
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	for {
		if healthy == nil || healthy() {
			if err := Watchdog(); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// CLOCK_MONOTONIC cannot fail on Linux; fall back to 0, which systemd treats as "unknown".
		return 0
	}
	return ts.Sec*1_000_000 + ts.Nsec/1_000
}
