package geo

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func (e *env) openRestricted(t *testing.T, pool string) *Forwarder {
	t.Helper()
	return e.openWith(t, pool, SessionOptions{RestrictPeers: true})
}

func refusedCount(e *env, pool string) float64 {
	return testutil.ToFloat64(e.r.metrics.refused.WithLabelValues(pool))
}

// curlVia fetches u through proxy with curl, a real process of its own.
func curlVia(t *testing.T, proxy, u string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	out, err := exec.Command(path, "-sS", "--max-time", "10", "-x", proxy, u).CombinedOutput()
	return string(out), err
}

// TestRestrictedForwarderProcessTree: with RestrictPeers the forwarder
// serves only the process tree given to AllowProcessTree. Here the test
// process is "the browser": it and its child (curl) are served; before
// AllowProcessTree, and for a tree this process is not in, every connection
// is closed unanswered and counted.
func TestRestrictedForwarderProcessTree(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	u1 := newTestUpstream(t, "u1", user(0), pw(0), false)
	pools, secrets := poolOf(u1.URL())
	e := newEnv(t, pools, secrets, nil)

	// nothing allowed yet: refused (fail closed)
	f := e.openRestricted(t, "de")
	if code, body, _ := get(t, client(f, nil), s.url("acme.test")); code != 0 {
		t.Fatalf("before AllowProcessTree: %d %q, want the connection closed", code, body)
	}
	if n := refusedCount(e, "de"); n != 1 {
		t.Fatalf("refused = %v, want 1", n)
	}

	for _, pid := range []int{-1, 0, 1} {
		if err := f.AllowProcessTree(pid); err == nil {
			t.Fatalf("AllowProcessTree(%d) accepted", pid)
		}
	}
	if err := f.AllowProcessTree(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := get(t, client(f, nil), s.url("acme.test")); code != 200 || !strings.Contains(body, "hello from site") {
		t.Fatalf("the allowed process: %d %q", code, body)
	}
	if out, err := curlVia(t, f.ProxyURL(), s.url("acme.test")); err != nil || !strings.Contains(out, "hello from site") {
		t.Fatalf("a descendant of the allowed process (curl): %v %q", err, out)
	}
	if err := f.AllowProcessTree(os.Getpid() + 1); err == nil {
		t.Fatal("AllowProcessTree accepted a second, different process")
	}

	// another tree: a process that is not an ancestor of this one
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	g := e.openRestricted(t, "de")
	if err := g.AllowProcessTree(other.Process.Pid); err != nil {
		t.Fatal(err)
	}
	before := s.requests.Load()
	if code, body, _ := get(t, client(g, nil), s.url("acme.test")); code != 0 {
		t.Fatalf("a process outside the allowed tree: %d %q", code, body)
	}
	if out, err := curlVia(t, g.ProxyURL(), s.url("acme.test")); err == nil {
		t.Fatalf("curl outside the allowed tree was served: %q", out)
	}
	if n := s.requests.Load(); n != before {
		t.Fatalf("the site received %d requests from refused connections", n-before)
	}
	if n := refusedCount(e, "de"); n != 3 {
		t.Fatalf("refused = %v, want 3", n)
	}
	if !strings.Contains(e.metricsText(t), `cdpvault_geo_refused_connections_total{pool="de"} 3`) {
		t.Fatalf("metric not exposed:\n%s", e.metricsText(t))
	}
	// a forwarder without RestrictPeers (attach mode) serves anyone
	if code, _, _ := get(t, client(e.open(t, "de"), nil), s.url("acme.test")); code != 200 {
		t.Fatalf("unrestricted forwarder: %d", code)
	}
}

// TestPeerCheckOffAcceptLoop: the peer check runs on each connection's own
// goroutine, so a connection whose check is slow (here: held until
// released) does not hold up the next one, and nothing of the held one is
// read until its check has passed.
func TestPeerCheckOffAcceptLoop(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	u1 := newTestUpstream(t, "u1", user(0), pw(0), false)
	pools, secrets := poolOf(u1.URL())
	e := newEnv(t, pools, secrets, nil)
	f := e.openRestricted(t, "de")
	if err := f.AllowProcessTree(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	held, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	hold := func(net.Conn) {
		if first.CompareAndSwap(false, true) {
			close(held)
			<-release
		}
	}
	f.gate.hold.Store(&hold)
	defer first.Store(true) // a failure before the hold must not leave it armed

	a, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	fmt.Fprintf(a, "GET %s HTTP/1.1\r\nHost: acme.test\r\n\r\n", s.url("acme.test")+"?held")
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the first connection's check never ran")
	}
	before := s.requests.Load()
	if code, body, _ := get(t, client(f, nil), s.url("acme.test")); code != 200 || !strings.Contains(body, "hello from site") {
		close(release)
		t.Fatalf("a connection behind a held check: %d %q", code, body)
	}
	if n := s.requests.Load() - before; n != 1 {
		close(release)
		t.Fatalf("the site received %d requests while one check was held, want 1 (the second connection's)", n)
	}
	close(release)
	_ = a.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(a), nil)
	if err != nil {
		t.Fatalf("the held connection after its check: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the held connection after its check: %d", resp.StatusCode)
	}
}

// TestChromiumRestrictedForwarder: the session's real Chromium is served
// through a restricted forwarder (its network service is a descendant of
// the browser process) while a process outside the browser — curl, and
// this test process — is refused and reaches nothing.
func TestChromiumRestrictedForwarder(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	ts := newSite(t, true)
	u1 := newTestUpstream(t, "u1", user(0), pw(0), false)
	pools, secrets := poolOf(u1.URL())
	e := newEnv(t, pools, secrets, nil)
	f := e.openRestricted(t, "de")
	b := launchChromium(t, BrowserArgs(f, pools["de"]), BrowserEnv(pools["de"]))
	if err := f.AllowProcessTree(b.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	b.wantSitePage(t, s.url("acme.test"))
	b.wantSitePage(t, ts.url("acme.test"))
	if got := u1.Plain(); !slices.Contains(got, "acme.test:"+s.port()) {
		t.Fatalf("u1 carried %v", got)
	}
	if got := u1.Connects(); !slices.Contains(got, "acme.test:"+ts.port()) {
		t.Fatalf("u1 CONNECTs %v", got)
	}
	refused := refusedCount(e, "de")
	aside := newSite(t, false) // only the outsiders try it
	if out, err := curlVia(t, f.ProxyURL(), aside.url("acme.test")); err == nil {
		t.Fatalf("curl (outside the browser) was served: %q", out)
	}
	if code, body, _ := get(t, client(f, nil), aside.url("acme.test")); code != 0 {
		t.Fatalf("the test process (outside the browser): %d %q", code, body)
	}
	if n := aside.requests.Load(); n != 0 {
		t.Fatalf("the site received %d requests from outside the browser", n)
	}
	if n := refusedCount(e, "de"); n != refused+2 {
		t.Fatalf("refused = %v, want %v", n, refused+2)
	}
	// and the browser still is served afterwards
	if et := b.navigate(t, s.url("acme.test")+"?again"); et != "" {
		t.Fatalf("navigate again: %s", et)
	}
}

// acceptedConn is the server end of a loopback TCP connection whose client
// end this process holds; both are closed at cleanup.
func acceptedConn(tb testing.TB) net.Conn {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cli.Close() })
	srv, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = srv.Close() })
	return srv
}

// BenchmarkPeerCheck is the per-connection cost of the peer restriction:
// one accepted loopback connection checked against this process's tree
// (the last holder cached, as for a browser's network service), and the
// cost when the holder is unknown (a full scan of the tree).
//
//	go test ./geo -run '^$' -bench PeerCheck
func BenchmarkPeerCheck(b *testing.B) {
	srv := acceptedConn(b)
	for _, cached := range []bool{true, false} {
		name := "cached-holder"
		if !cached {
			name = "tree-scan"
		}
		b.Run(name, func(b *testing.B) {
			g := &peerGate{on: true}
			g.root.Store(int64(os.Getpid()))
			for b.Loop() {
				if !cached {
					g.last.Store(0)
				}
				if err := g.allowed(srv); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSocketInodeLookups: the netlink sock_diag lookup and the /proc/net/tcp
// scan find the same inode for a connection's client socket, the one this
// process holds; a socket that does not exist is not found by either.
func TestSocketInodeLookups(t *testing.T) {
	t.Parallel()
	srv := acceptedConn(t)
	peer, local := srv.RemoteAddr().(*net.TCPAddr), srv.LocalAddr().(*net.TCPAddr)
	nl, err := diagInode(peer, local)
	if err != nil {
		t.Fatalf("sock_diag: %v", err)
	}
	pr, err := procSocketInode(peer, local)
	if err != nil {
		t.Fatalf("/proc/net/tcp: %v", err)
	}
	if nl != pr {
		t.Fatalf("sock_diag inode %s, /proc/net/tcp inode %s", nl, pr)
	}
	if !holds(os.Getpid(), "socket:["+nl+"]") {
		t.Fatalf("this process does not hold socket %s", nl)
	}
	// the server side is another socket (local and remote swapped)
	if srvInode, err := diagInode(local, peer); err != nil || srvInode == nl {
		t.Fatalf("server side socket: %q %v", srvInode, err)
	}
	gone := &net.TCPAddr{IP: peer.IP, Port: 1}
	if _, err := diagInode(gone, local); !errors.Is(err, errPeer) {
		t.Fatalf("sock_diag for no socket: %v, want errPeer", err)
	}
	if _, err := procSocketInode(gone, local); !errors.Is(err, errPeer) {
		t.Fatalf("/proc/net/tcp for no socket: %v, want errPeer", err)
	}
}
