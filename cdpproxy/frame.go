package cdpproxy

import (
	"errors"
	"io"
	"math/bits"
	"math/rand/v2"
	"net"
	"sync"

	"github.com/gobwas/ws"
)

// Buffers that hold message payloads come from size-classed pools and are
// always wiped (zeroed) before they go back, so a pooled buffer never holds a
// previous message.
const (
	minPoolShift = 14 // 16 KiB
	maxPoolShift = 26 // 64 MiB; bigger buffers are wiped and left to the GC
)

var bufPools [maxPoolShift + 1]sync.Pool

func poolClass(n int) int {
	if n <= 1<<minPoolShift {
		return minPoolShift
	}
	return bits.Len(uint(n - 1))
}

// getBuf returns a zeroed buffer of length n.
func getBuf(n int) []byte {
	c := poolClass(n)
	if c > maxPoolShift {
		return make([]byte, n)
	}
	if v := bufPools[c].Get(); v != nil {
		b := *(v.(*[]byte))
		return b[:n]
	}
	return make([]byte, n, 1<<c)
}

// putBuf wipes b (its whole length) and returns it to its pool.
func putBuf(b []byte) {
	clear(b)
	c := cap(b)
	if c < 1<<minPoolShift || c&(c-1) != 0 {
		return
	}
	k := bits.Len(uint(c)) - 1
	if k > maxPoolShift {
		return
	}
	b = b[:c]
	bufPools[k].Put(&b)
}

// wipe zeroes b.
func wipe(b []byte) { clear(b) }

var (
	errProtocol   = errors.New("websocket protocol error")
	errTooBig     = errors.New("message exceeds the size limit")
	errCloseSent  = errors.New("close frame already sent")
	errNotUTF8    = errors.New("text frame is not valid UTF-8")
	errBinaryData = errors.New("binary frames are not CDP")
)

// frameReader reads WebSocket frames from one side of a connection into
// buffers it owns. Small messages are returned in place in its read buffer;
// bigger or fragmented ones in a pooled buffer. Either way the caller hands
// the payload back with release, which wipes it.
type frameReader struct {
	conn   net.Conn
	sys    *sysIO // small reads, when set (the proxy's sockets); else conn
	reads  uint32
	buf    []byte
	r, w   int
	max    int64
	masked bool // frames from this side must be masked (client side)

	hdr [ws.MaxHeaderSize]byte
	ctl [125]byte

	// message being assembled from fragments or read into a pooled buffer
	part    []byte
	partLen int64
	partOp  ws.OpCode
	inPart  bool
	lastBuf bool // last returned payload lives in buf
}

func newFrameReader(c net.Conn, sys *sysIO, size int, max int64, masked bool) *frameReader {
	return &frameReader{conn: c, sys: sys, buf: make([]byte, size), max: max, masked: masked}
}

// preload copies bytes that were buffered during the handshake.
func (fr *frameReader) preload(b []byte) {
	if len(b) > len(fr.buf)-fr.w {
		nb := make([]byte, fr.w+len(b))
		copy(nb, fr.buf[:fr.w])
		wipe(fr.buf)
		fr.buf = nb
	}
	fr.w += copy(fr.buf[fr.w:], b)
}

// Read implements io.Reader over the read buffer (for ws.ReadHeaderBuffer).
func (fr *frameReader) Read(p []byte) (int, error) {
	if fr.r == fr.w {
		if err := fr.fill(1); err != nil {
			return 0, err
		}
	}
	n := copy(p, fr.buf[fr.r:fr.w])
	fr.r += n
	return n, nil
}

// ordinaryEvery: see fill.
const ordinaryEvery = 64

// fill makes at least need bytes available in buf[r:w]; need <= len(buf).
func (fr *frameReader) fill(need int) error {
	if fr.w-fr.r >= need {
		return nil
	}
	if fr.r == fr.w {
		fr.r, fr.w = 0, 0
	} else if len(fr.buf)-fr.r < need {
		n := copy(fr.buf, fr.buf[fr.r:fr.w])
		clear(fr.buf[n:fr.w])
		fr.r, fr.w = 0, n
	}
	for fr.w-fr.r < need {
		// One read in ordinaryEvery is an ordinary one: under sustained
		// traffic it keeps waking the runtime's monitor (preemption of long
		// running goroutines, network polling when all Ps are busy).
		fr.reads++
		var src io.Reader = fr.conn
		if fr.sys != nil && fr.reads%ordinaryEvery != 0 {
			src = fr.sys
		}
		n, err := src.Read(fr.buf[fr.w:])
		fr.w += n
		if err != nil {
			if fr.w-fr.r >= need {
				return nil
			}
			if err == io.EOF && fr.w > fr.r {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// next returns the next complete data message or control frame. Control
// frames interleaved with the fragments of a message are returned as they
// come; the message keeps being assembled on the following calls.
func (fr *frameReader) next() (ws.OpCode, []byte, error) {
	for {
		h, err := ws.ReadHeaderBuffer(fr, fr.hdr[:])
		if err != nil {
			return 0, nil, err
		}
		if h.Rsv != 0 || h.Masked != fr.masked || h.OpCode.IsReserved() {
			return 0, nil, errProtocol
		}
		if h.OpCode.IsControl() {
			if !h.Fin || h.Length > 125 {
				return 0, nil, errProtocol
			}
			p := fr.ctl[:h.Length]
			if _, err := io.ReadFull(fr, p); err != nil {
				return 0, nil, err
			}
			if h.Masked {
				ws.Cipher(p, h.Mask, 0)
			}
			return h.OpCode, p, nil
		}
		if h.OpCode == ws.OpContinuation {
			if !fr.inPart {
				return 0, nil, errProtocol
			}
		} else if fr.inPart {
			return 0, nil, errProtocol
		}
		if h.Length > fr.max || fr.partLen+h.Length > fr.max {
			return 0, nil, errTooBig
		}
		n := int(h.Length)
		if !fr.inPart && h.Fin && n <= len(fr.buf) {
			if err := fr.fill(n); err != nil {
				return 0, nil, err
			}
			p := fr.buf[fr.r : fr.r+n : fr.r+n]
			fr.r += n
			if h.Masked {
				ws.Cipher(p, h.Mask, 0)
			}
			fr.lastBuf = true
			return h.OpCode, p, nil
		}
		if !fr.inPart {
			fr.inPart, fr.partOp, fr.partLen = true, h.OpCode, 0
		}
		total := int(fr.partLen) + n
		if cap(fr.part) < total {
			nc := total
			if fr.inPart && fr.partLen > 0 && nc < 2*cap(fr.part) {
				nc = 2 * cap(fr.part)
			}
			nb := getBuf(nc)
			copy(nb, fr.part[:fr.partLen])
			if fr.part != nil {
				putBuf(fr.part[:fr.partLen])
			}
			fr.part = nb
		}
		fr.part = fr.part[:total]
		dst := fr.part[fr.partLen:total]
		k := copy(dst, fr.buf[fr.r:fr.w])
		clear(fr.buf[fr.r : fr.r+k])
		fr.r += k
		if rest := dst[k:]; len(rest) > 0 {
			var src io.Reader = fr.conn
			if fr.sys != nil && len(rest) <= rawMax {
				src = fr.sys
			}
			if _, err := io.ReadFull(src, rest); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return 0, nil, err
			}
		}
		if h.Masked {
			ws.Cipher(dst, h.Mask, 0)
		}
		fr.partLen = int64(total)
		if h.Fin {
			p, op := fr.part[:total], fr.partOp
			fr.part, fr.partLen, fr.inPart = nil, 0, false
			fr.lastBuf = false
			return op, p, nil
		}
	}
}

// buffered reports whether a complete frame is already in the read buffer.
func (fr *frameReader) buffered() bool {
	b := fr.buf[fr.r:fr.w]
	if len(b) < 2 || b[0]&0x80 == 0 { // a non-final fragment may need more reads
		return false
	}
	n := 2
	l := int64(b[1] & 0x7f)
	switch l {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b[1]&0x80 != 0 {
		n += 4
	}
	if len(b) < n {
		return false
	}
	switch l {
	case 126:
		l = int64(b[2])<<8 | int64(b[3])
	case 127:
		return false // large frames are never gathered anyway
	}
	return int64(len(b)-n) >= l
}

// release wipes a payload returned by next (data messages only).
func (fr *frameReader) release(p []byte) {
	if fr.lastBuf {
		clear(p)
		return
	}
	putBuf(p)
}

// close wipes everything the reader still holds.
func (fr *frameReader) close() {
	clear(fr.buf)
	if fr.part != nil {
		// a read may have stopped half way: wipe the whole buffer
		putBuf(fr.part[:cap(fr.part)])
		fr.part = nil
	}
	clear(fr.ctl[:])
	clear(fr.hdr[:])
}

// frameWriter writes whole messages as single frames to one side, under a
// mutex, with one writev per message (header and payload). While the pump
// that feeds it has more complete frames already read (hold), small
// messages are gathered in one pooled buffer and written together when the
// pump runs out of input, so a burst costs one syscall instead of one per
// message and a lone message is never delayed.
type frameWriter struct {
	mu     sync.Mutex
	conn   net.Conn
	sys    *sysIO // small writes, when set (the proxy's sockets); else conn
	mask   bool
	closed bool // a close frame was sent
	err    error
	hold   bool
	out    []byte
	small  [512]byte

	sink    hdrSink
	scratch [ws.MaxHeaderSize]byte
	iov     [2][]byte
	bufs    net.Buffers
}

type hdrSink struct {
	b [ws.MaxHeaderSize]byte
	n int
}

func (s *hdrSink) Write(p []byte) (int, error) {
	s.n = copy(s.b[:], p)
	return len(p), nil
}

// write sends p as one frame now (after anything gathered); when the side
// needs masking p is masked in place (the caller wipes it afterwards
// anyway).
func (w *frameWriter) write(op ws.OpCode, p []byte) error {
	w.mu.Lock()
	err := w.writeLocked(op, p, false)
	w.mu.Unlock()
	return err
}

// gather is write for the pump that feeds this writer: while it holds, p
// may be gathered with the next messages.
func (w *frameWriter) gather(op ws.OpCode, p []byte) error {
	w.mu.Lock()
	err := w.writeLocked(op, p, w.hold)
	w.mu.Unlock()
	return err
}

const (
	batchBuf = 32 << 10 // gather buffer
	batchMax = 8 << 10  // largest message gathered
)

func (w *frameWriter) writeLocked(op ws.OpCode, p []byte, gather bool) error {
	if w.closed {
		return errCloseSent
	}
	if w.err != nil {
		return w.err
	}
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p))}
	if w.mask {
		h.Masked = true
		m := rand.Uint32()
		h.Mask = [4]byte{byte(m), byte(m >> 8), byte(m >> 16), byte(m >> 24)}
	}
	if err := ws.WriteHeaderBuffer(&w.sink, h, w.scratch[:]); err != nil {
		w.err = err
		return err
	}
	if gather && op != ws.OpClose && len(p) <= batchMax {
		if w.out != nil && len(w.out)+w.sink.n+len(p) > cap(w.out) {
			if err := w.flushLocked(); err != nil {
				return err
			}
		}
		if w.out == nil {
			w.out = getBuf(batchBuf)[:0]
		}
		w.out = append(w.out, w.sink.b[:w.sink.n]...)
		start := len(w.out)
		w.out = append(w.out, p...)
		if w.mask {
			ws.Cipher(w.out[start:], h.Mask, 0)
		}
		return nil
	}
	if err := w.flushLocked(); err != nil {
		return err
	}
	if w.mask {
		ws.Cipher(p, h.Mask, 0)
	}
	var err error
	if len(p) <= len(w.small)-w.sink.n {
		// small frame: one write() from a scratch buffer, wiped after
		n := copy(w.small[:], w.sink.b[:w.sink.n])
		n += copy(w.small[n:], p)
		_, err = w.smallWrite(w.small[:n])
		clear(w.small[:n])
	} else if w.sys != nil && len(p) <= rawMax {
		_, err = w.sys.writev(w.sink.b[:w.sink.n], p)
	} else {
		w.iov[0] = w.sink.b[:w.sink.n]
		w.iov[1] = p
		w.bufs = w.iov[:]
		_, err = w.bufs.WriteTo(w.conn)
		w.iov[1] = nil
	}
	if op == ws.OpClose {
		w.closed = true
	}
	if err != nil {
		w.err = err
	}
	return err
}

// smallWrite writes p (at most a gather buffer) with a raw system call
// when it can.
func (w *frameWriter) smallWrite(p []byte) (int, error) {
	if w.sys != nil {
		return w.sys.write(p)
	}
	return w.conn.Write(p)
}

// flushLocked writes and wipes the gathered messages.
func (w *frameWriter) flushLocked() error {
	if w.out == nil {
		return nil
	}
	out := w.out
	w.out = nil
	var err error
	if len(out) > 0 {
		_, err = w.smallWrite(out)
	}
	putBuf(out)
	if err != nil {
		w.err = err
	}
	return err
}

// close wipes and drops anything still gathered (the connection ended).
func (w *frameWriter) close() {
	w.mu.Lock()
	if w.out != nil {
		putBuf(w.out)
		w.out = nil
	}
	clear(w.small[:])
	w.mu.Unlock()
}

// setHold tells the writer whether more input is already waiting; when it
// is not, gathered messages are written now.
func (w *frameWriter) setHold(more bool) {
	w.mu.Lock()
	w.hold = more
	if !more {
		w.flushLocked()
	}
	w.mu.Unlock()
}

// writeClose sends a close frame with code and reason (code 0: empty body).
func (w *frameWriter) writeClose(code ws.StatusCode, reason string) error {
	var body [125]byte
	n := 0
	if code != 0 {
		body[0], body[1] = byte(code>>8), byte(code)
		n = 2 + copy(body[2:], reason)
	}
	return w.write(ws.OpClose, body[:n])
}

func (w *frameWriter) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}
