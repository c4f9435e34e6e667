//go:build linux

package cdpproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-done
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func TestSysIOOnlyOnSockets(t *testing.T) {
	t.Parallel()
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if newSysIO(p1) != nil {
		t.Fatal("net.Pipe has no file descriptor, yet got raw I/O")
	}
	a, _ := tcpPair(t)
	if newSysIO(a) == nil {
		t.Fatal("no raw I/O on a TCP connection")
	}
}

// A writev and a write much bigger than the socket buffers must wait for
// the poller (EAGAIN) and resume where the partial write stopped. (The
// proxy uses raw calls for up to rawMax bytes; the functions take any size.)
func TestSysIOPartialWritesAndReads(t *testing.T) {
	t.Parallel()
	a, b := tcpPair(t)
	a.SetWriteBuffer(8 << 10)
	hdr := []byte{1, 2, 3}
	payload := make([]byte, 256<<10)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	want := append(append(append([]byte(nil), hdr...), payload...), payload[:5000]...)
	errc := make(chan error, 1)
	go func() {
		w := newSysIO(a)
		if _, err := w.writev(hdr, payload); err != nil {
			errc <- err
			return
		}
		_, err := w.write(payload[:5000])
		errc <- err
	}()
	b.SetReadDeadline(time.Now().Add(20 * time.Second)) // a lost byte fails, not hangs
	r := newSysIO(b)
	got := make([]byte, len(want))
	// a short read first, then the rest with io.ReadFull, as frameReader.next
	n, err := r.Read(got[:100])
	if err != nil || n == 0 {
		t.Fatalf("read: %d %v", n, err)
	}
	if _, err := io.ReadFull(r, got[n:]); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes differ")
	}
}

func TestSysIOEndings(t *testing.T) {
	t.Parallel()
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		_, b := tcpPair(t)
		b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := newSysIO(b).Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("err = %v, want a deadline error", err)
		}
	})
	t.Run("eof and unexpected eof", func(t *testing.T) {
		t.Parallel()
		a, b := tcpPair(t)
		a.Write([]byte("abc"))
		a.Close()
		r := newSysIO(b)
		if _, err := io.ReadFull(r, make([]byte, 10)); err != io.ErrUnexpectedEOF {
			t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
		}
		if _, err := r.Read(make([]byte, 10)); err != io.EOF {
			t.Fatalf("err = %v, want io.EOF", err)
		}
	})
	t.Run("closed by us", func(t *testing.T) {
		t.Parallel()
		_, b := tcpPair(t)
		r := newSysIO(b)
		errc := make(chan error, 1)
		go func() {
			_, err := r.Read(make([]byte, 10))
			errc <- err
		}()
		b.SetReadDeadline(time.Now().Add(10 * time.Second)) // bound the test if Close did not wake the read
		b.Close()
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("err = %v, want net.ErrClosed", err)
		}
	})
	t.Run("peer reset", func(t *testing.T) {
		t.Parallel()
		a, b := tcpPair(t)
		a.SetLinger(0)
		a.Close()
		w := newSysIO(b)
		var err error
		for range 100 { // the first writes may still be accepted
			if _, err = w.write([]byte("x")); err != nil {
				break
			}
		}
		var se *os.SyscallError
		if !errors.As(err, &se) || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
			t.Fatalf("err = %v, want a write error for a reset connection", err)
		}
	})
}
