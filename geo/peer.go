package geo

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Peer restriction (launch mode): a forwarder's loopback port is reachable
// by every local process, and whoever reaches it leaves through the pool
// with the pool's credentials. A Forwarder opened with
// SessionOptions.RestrictPeers serves only TCP connections whose client
// socket is held by the session's browser process or one of its
// descendants (Chromium's network service), given by AllowProcessTree.
// Every other connection is closed before a byte is read from it, and
// counted (cdpvault_geo_refused_connections_total). The check runs once per
// TCP connection (the browser keeps them alive) and fails closed: no
// allowed pid yet, an unreadable /proc, a socket not found in the browser's
// process tree all refuse.
//
// How (Linux): the client's socket is the one whose local address is the
// peer's and whose remote address is the forwarder's; its inode comes from
// one NETLINK_SOCK_DIAG lookup of exactly that socket (or, where sock_diag
// is unavailable, from /proc/net/tcp or tcp6); its holder is a process
// whose /proc/<pid>/fd links to socket:[inode]. Only processes descending from the browser are searched
// (the last one that matched first), so the cost does not grow with what
// else runs on the host.

// peerGate is a Forwarder's peer restriction.
type peerGate struct {
	on   bool         // RestrictPeers: refuse all until allow
	root atomic.Int64 // the browser's pid (0: none yet)
	last atomic.Int64 // the pid that held the last allowed connection

	hold atomic.Pointer[func(net.Conn)] // tests: runs first in allowed
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
	if h := g.hold.Load(); h != nil {
		(*h)(c)
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
		if holds(pid, want) && descends(pid, root) { // still ours after the scan
			g.last.Store(int64(pid))
			return nil
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
// and remote address is local (the client side of an accepted connection):
// one sock_diag netlink lookup of that exact socket, or, where netlink
// sock_diag is unavailable, a scan of /proc/net/tcp{,6}.
func socketInode(peer, local *net.TCPAddr) (string, error) {
	inode, err := diagInode(peer, local)
	if err == nil {
		return inode, nil
	}
	if errors.Is(err, errPeer) {
		return "", err
	}
	return procSocketInode(peer, local)
}

// procSocketInode is socketInode through /proc/net/tcp{,6}.
func procSocketInode(peer, local *net.TCPAddr) (string, error) {
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
	names, err := dirNames(dir)
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

// dirNames lists the names in dir, unsorted (os.ReadDir would sort them).
func dirNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
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
	names, err := dirNames("/proc")
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

// sock_diag (linux/inet_diag.h) layout.
const (
	nlmsgHdrLen     = 16
	inetDiagReqLen  = 56 // inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48)
	inetDiagInode   = 68 // offset of idiag_inode in inet_diag_msg
	inetDiagMsgLen  = 72
	inetDiagNoCooki = ^uint32(0)
)

// diagInode asks the kernel (NETLINK_SOCK_DIAG, an exact-socket lookup) for
// the inode of the TCP socket with local address src and remote address
// dst. errPeer: no such socket; another error: sock_diag unavailable.
func diagInode(src, dst *net.TCPAddr) (string, error) {
	family := byte(unix.AF_INET)
	var sip, dip [16]byte
	if s4, d4 := src.IP.To4(), dst.IP.To4(); s4 != nil && d4 != nil {
		copy(sip[:], s4)
		copy(dip[:], d4)
	} else if s16, d16 := src.IP.To16(), dst.IP.To16(); s16 != nil && d16 != nil && s4 == nil && d4 == nil {
		family = unix.AF_INET6
		copy(sip[:], s16)
		copy(dip[:], d16)
	} else {
		return "", errPeer
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return "", fmt.Errorf("sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(time.Second))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)

	req := make([]byte, nlmsgHdrLen+inetDiagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], 1) // seq
	r := req[nlmsgHdrLen:]
	r[0], r[1] = family, unix.IPPROTO_TCP
	ne.PutUint32(r[4:], ^uint32(0)) // every state
	id := r[8:]
	id[0], id[1] = byte(src.Port>>8), byte(src.Port)
	id[2], id[3] = byte(dst.Port>>8), byte(dst.Port)
	copy(id[4:20], sip[:])
	copy(id[20:36], dip[:])
	ne.PutUint32(id[40:], inetDiagNoCooki)
	ne.PutUint32(id[44:], inetDiagNoCooki)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return "", fmt.Errorf("sock_diag send: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return "", fmt.Errorf("sock_diag receive: %w", err)
	}
	b := buf[:n]
	if len(b) < nlmsgHdrLen {
		return "", errors.New("sock_diag: short reply")
	}
	l, typ := ne.Uint32(b[0:]), ne.Uint16(b[4:])
	if int(l) > len(b) || l < nlmsgHdrLen {
		return "", errors.New("sock_diag: malformed reply")
	}
	switch typ {
	case unix.NLMSG_ERROR:
		if l >= nlmsgHdrLen+4 {
			if e := int32(ne.Uint32(b[nlmsgHdrLen:])); e == -int32(unix.ENOENT) {
				return "", errPeer // no such socket
			} else if e != 0 {
				return "", fmt.Errorf("sock_diag: %w", unix.Errno(-e))
			}
		}
		return "", errors.New("sock_diag: error reply")
	case unix.SOCK_DIAG_BY_FAMILY:
		if l < nlmsgHdrLen+inetDiagMsgLen {
			return "", errors.New("sock_diag: short message")
		}
		m := b[nlmsgHdrLen:]
		// the reply must be the socket asked for
		if m[0] != family || !bytes.Equal(m[4:8], id[0:4]) || !bytes.Equal(m[8:40], id[4:36]) {
			return "", errPeer
		}
		inode := ne.Uint32(m[inetDiagInode:])
		if inode == 0 {
			return "", errPeer
		}
		return strconv.FormatUint(uint64(inode), 10), nil
	}
	return "", errors.New("sock_diag: unexpected reply")
}
