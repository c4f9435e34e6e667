//go:build linux

package cdpproxy

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// sysIO does a socket's small reads and writes with raw system calls,
// through the connection's syscall.RawConn: the runtime poller still waits
// for readiness (deadlines and Close work as on the net.Conn), but the
// calls skip the scheduler's syscall bookkeeping. That matters for a proxy
// that sits idle between messages: every ordinary syscall after an idle
// spell wakes the runtime's monitor thread (sysmon), which then polls
// every 20us for a while: measured on the daemon-like benchmark (proxy in
// its own process), 3.0 context switches and 1.5 futex calls per message
// before, 1.2 and none with raw calls, and half the proxy's CPU per message.
// Read and write of a non-blocking socket return at once, so holding the P
// through them is fine; transfers over rawMax still go through the
// net.Conn, and so does one frame-buffer read in 64 (frameReader.fill), so
// that sysmon keeps its duties (preempting long-running goroutines, polling
// the network when every P is busy) under sustained traffic.
//
// A sysIO is used by one reader (the pump) and one writer (under the frame
// writer's mutex); each side keeps its own state so that the callbacks are
// allocated once.
type sysIO struct {
	rc syscall.RawConn

	rbuf  []byte
	rn    int
	rerr  syscall.Errno
	rfunc func(uintptr) bool

	va, vb []byte // writev: header and payload
	wn     int
	werr   syscall.Errno
	iov    [2]syscall.Iovec
	vfunc  func(uintptr) bool
}

// rawMax is the largest transfer done with a raw call; the P stays held
// while the kernel copies it.
const rawMax = 64 << 10

// newSysIO returns nil when c offers no raw access (then c is used).
func newSysIO(c net.Conn) *sysIO {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &sysIO{rc: rc}
	s.rfunc = s.doRead
	s.vfunc = s.doWritev
	return s
}

func (s *sysIO) doRead(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&s.rbuf[0])), uintptr(len(s.rbuf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.rn, s.rerr = int(n), e
		return true
	}
}

// Read reads into p like net.Conn.Read (io.ReadFull takes it).
func (s *sysIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rbuf, s.rn, s.rerr = p, 0, 0
	err := s.rc.Read(s.rfunc)
	s.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case s.rerr != 0:
		return 0, os.NewSyscallError("read", s.rerr)
	case s.rn == 0:
		return 0, io.EOF
	}
	return s.rn, nil
}

// write writes all of p like net.Conn.Write.
func (s *sysIO) write(p []byte) (int, error) { return s.writev(p, nil) }

func (s *sysIO) doWritev(fd uintptr) bool {
	for {
		a, b := s.va, s.vb
		if s.wn >= len(a) {
			a, b = nil, b[s.wn-len(a):]
		} else {
			a = a[s.wn:]
		}
		n := 0
		for _, v := range [2][]byte{a, b} {
			if len(v) > 0 {
				s.iov[n].Base = &v[0]
				s.iov[n].SetLen(len(v))
				n++
			}
		}
		if n == 0 {
			return true
		}
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&s.iov[0])), uintptr(n))
		switch e {
		case 0:
			s.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.werr = e
			return true
		}
	}
}

// writev writes all of a then all of b with as few calls as the socket
// allows.
func (s *sysIO) writev(a, b []byte) (int, error) {
	s.va, s.vb, s.wn, s.werr = a, b, 0, 0
	err := s.rc.Write(s.vfunc)
	n := s.wn
	s.va, s.vb, s.iov = nil, nil, [2]syscall.Iovec{}
	switch {
	case err != nil:
		return n, err
	case s.werr != 0:
		return n, os.NewSyscallError("writev", s.werr)
	}
	return n, nil
}
