package configs

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifyMsg is one datagram on the notify socket with the sender's pid from SCM_CREDENTIALS, the
// way systemd sees it (NotifyAccess=main accepts only messages from the main pid).
type notifyMsg struct {
	text string
	pid  int32
}

// TestServiceNotifyProtocol runs the real daemon as cdpvault.service would (Type=notify,
// NotifyAccess=main, WatchdogSec=, ExecReload=kill -HUP, SIGTERM on stop) against a notify socket
// of its own, and checks every message systemd relies on and that the main process sends it.
func TestServiceNotifyProtocol(t *testing.T) {
	bin := cdpvaultBin(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var soErr error
	if err := raw.Control(func(fd uintptr) {
		soErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1)
	}); err != nil || soErr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, soErr)
	}
	msgs := make(chan notifyMsg, 64)
	go func() {
		defer close(msgs)
		buf := make([]byte, 4096)
		oob := make([]byte, syscall.CmsgSpace(syscall.SizeofUcred))
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			m := notifyMsg{text: string(buf[:n])}
			if cms, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil && len(cms) > 0 {
				if cred, err := syscall.ParseUnixCredentials(&cms[0]); err == nil {
					m.pid = cred.Pid
				}
			}
			msgs <- m
		}
	}()

	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000") // 0.4 s: pings every 0.2 s
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	pid := int32(cmd.Process.Pid)

	// expect waits for a message with the given prefix, skipping watchdog pings, and checks its sender.
	// Once the daemon has exited, everything it sent is queued on the
	// socket: a sentinel datagram of our own, read back, says all of it was.
	const sentinel = "TEST-SENTINEL"
	exitedC := (<-chan struct{})(exited)
	expect := func(prefix string) string {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed while waiting for %q", prefix)
				}
				if m.text == sentinel {
					t.Fatalf("daemon exited (%v) while waiting for %q", waitErr, prefix)
				}
				if m.pid != pid {
					t.Fatalf("%q sent by pid %d, not the main pid %d (NotifyAccess=main would drop it)", m.text, m.pid, pid)
				}
				if strings.HasPrefix(m.text, prefix) {
					return m.text
				}
				if m.text != "WATCHDOG=1" && !strings.HasPrefix(m.text, "STATUS=") {
					t.Fatalf("got %q while waiting for %q", m.text, prefix)
				}
			case <-exitedC:
				exitedC = nil
				c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Write([]byte(sentinel))
				c.Close()
				if err != nil {
					t.Fatal(err)
				}
			case <-timeout:
				t.Fatalf("no %q within 30s", prefix)
			}
		}
	}
	expect("READY=1")
	expect("WATCHDOG=1")
	expect("WATCHDOG=1")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil { // ExecReload=/bin/kill -HUP $MAINPID
		t.Fatal(err)
	}
	reload := expect("RELOADING=1")
	if !strings.Contains(reload, "\nMONOTONIC_USEC=") {
		t.Errorf("reload message %q lacks MONOTONIC_USEC (systemd needs it to match the reload)", reload)
	}
	expect("READY=1")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expect("STOPPING=1")
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("daemon exit after SIGTERM: %v", waitErr)
		}
	case <-time.After(20 * time.Second): // TimeoutStopSec=20s
		t.Fatal("daemon did not exit within TimeoutStopSec")
	}
}
