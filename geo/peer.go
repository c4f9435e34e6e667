package geo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// Peer restriction (launch mode): a forwarder's loopback port is reachable
// by every local process, and whoever reaches it leaves through the pool
// with the pool's credentials. A Forwarder opened with
// SessionOptions.RestrictPeers serves only TCP connections whose client
// socket is held by the session's browser process or one of its
// descendants (Chromium's network service), given by AllowProcessTree.
// Every other connection is closed at accept, before a byte is read, and
// counted (cdpvault_geo_refused_connections_total). The check runs once per
// TCP connection (the browser keeps them alive) and fails closed: no
// allowed pid yet, an unreadable /proc, a socket not found in the browser's
// process tree all refuse.
//
// How (Linux): the client's socket inode is the entry of /proc/net/tcp (or
// tcp6) whose local address is the peer's address and whose remote address
// is the forwarder's; its holder is a process whose /proc/<pid>/fd links to
// socket:[inode]. Only processes descending from the browser are searched
// (the last one that matched first), so the cost does not grow with what
// else runs on the host.

// peerGate is a Forwarder's peer restriction.
type peerGate struct {
	on   bool         // RestrictPeers: refuse all until allow
	root atomic.Int64 // the browser's pid (0: none yet)
	last atomic.Int64 // the pid that held the last allowed connection
}

// errPeer is why a connection was refused (debug log only).
var errPeer = errors.New("geo: connection from a process outside the session's browser")

// AllowProcessTree lets the forwarder serve connections from process pid
// (the session's browser, launched by the daemon) and its descendants. It
// may be called once, after the browser has started; before that a
// forwarder opened with RestrictPeers refuses every connection. It has no
// effect on a forwarder opened without RestrictPeers.
func (f *Forwarder) AllowProcessTree(pid int) error {
	if pid <= 1 {
		return fmt.Errorf("geo: allow process tree: invalid pid %d", pid)
	}
	if !f.gate.root.CompareAndSwap(0, int64(pid)) && f.gate.root.Load() != int64(pid) {
		return errors.New("geo: allow process tree: already set to another process")
	}
	return nil
}

// allowed reports whether c comes from the allowed process tree.
func (g *peerGate) allowed(c net.Conn) error {
	if !g.on {
		return nil
	}
	root := int(g.root.Load())
	if root == 0 {
		return errPeer
	}
	peer, ok1 := c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return errPeer
	}
	inode, err := socketInode(peer, local)
	if err != nil {
		return err
	}
	want := "socket:[" + inode + "]"
	if last := int(g.last.Load()); last > 0 && holds(last, want) && descends(last, root) {
		return nil
	}
	for _, pid := range treePids(root) {
		if holds(pid, want) {
			if descends(pid, root) { // still ours after the scan
				g.last.Store(int64(pid))
				return nil
			}
		}
	}
	return errPeer
}

// procNetAddr formats a TCP address as /proc/net/tcp{,6} does.
func procNetAddr(a *net.TCPAddr) (string, bool) {
	var b strings.Builder
	if ip4 := a.IP.To4(); ip4 != nil {
		// one 32-bit word in host (little-endian) order
		fmt.Fprintf(&b, "%02X%02X%02X%02X", ip4[3], ip4[2], ip4[1], ip4[0])
		fmt.Fprintf(&b, ":%04X", a.Port)
		return b.String(), false
	}
	ip := a.IP.To16()
	for w := 0; w < 4; w++ {
		fmt.Fprintf(&b, "%02X%02X%02X%02X", ip[w*4+3], ip[w*4+2], ip[w*4+1], ip[w*4])
	}
	fmt.Fprintf(&b, ":%04X", a.Port)
	return b.String(), true
}

// socketInode finds the inode of the socket whose local address is peer
// and remote address is local (the client side of an accepted connection).
func socketInode(peer, local *net.TCPAddr) (string, error) {
	pa, six := procNetAddr(peer)
	la, six2 := procNetAddr(local)
	if six != six2 {
		return "", errPeer
	}
	file := "/proc/net/tcp"
	if six {
		file = "/proc/net/tcp6"
	}
	fh, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("geo: peer check: %w", err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 0, 512), 4096)
	sc.Scan() // header
	pb, lb := []byte(pa), []byte(la)
	for sc.Scan() {
		fs := bytes.Fields(sc.Bytes())
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
		if len(fs) < 10 || !bytes.Equal(fs[1], pb) || !bytes.Equal(fs[2], lb) {
			continue
		}
		if string(fs[9]) == "0" {
			return "", errPeer
		}
		return string(fs[9]), nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("geo: peer check: %w", err)
	}
	return "", errPeer
}

// holds reports whether pid has an fd linking to want ("socket:[N]").
func holds(pid int, want string) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	d, err := os.Open(dir)
	if err != nil {
		return false
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return false
	}
	for _, n := range names {
		if l, err := os.Readlink(dir + n); err == nil && l == want {
			return true
		}
	}
	return false
}

// statPPID returns the parent pid of pid from /proc/<pid>/stat.
func statPPID(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')') // comm may hold spaces and parentheses
	if i < 0 {
		return 0, false
	}
	fs := bytes.Fields(b[i+1:])
	if len(fs) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(string(fs[1]))
	return ppid, err == nil
}

// descends reports whether pid is root or one of its descendants.
func descends(pid, root int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		if pid == root {
			return true
		}
		ppid, ok := statPPID(pid)
		if !ok {
			return false
		}
		pid = ppid
	}
	return false
}

// treePids lists root and its descendants (one pass over /proc).
func treePids(root int) []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if ppid, ok := statPPID(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out) && len(out) < 1<<12; i++ {
		out = append(out, children[out[i]]...)
	}
	// the network service (a child) usually holds the sockets: children first
	if len(out) > 1 {
		out = append(out[1:], root)
	}
	return out
}
