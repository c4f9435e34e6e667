package cdpproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// The marker stands for a secret. The test keeps it only masked (XOR
// 0x5a); plaintext exists only in buffers that are wiped after use, so any
// plaintext copy found in the process afterwards is a leak.
const markMask = 0x5a

type marker struct{ masked []byte }

func newMarker() marker {
	const alpha = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
	var rnd [20]byte
	rand.Read(rnd[:])
	m := marker{masked: make([]byte, 0, 4+len(rnd))}
	for _, c := range []byte{'Q', 'z', '7', 'W'} {
		m.masked = append(m.masked, c^markMask)
	}
	for _, r := range rnd {
		m.masked = append(m.masked, alpha[int(r)%len(alpha)]^markMask)
	}
	clear(rnd[:])
	return m
}

func (m marker) appendTo(dst []byte) []byte {
	for _, c := range m.masked {
		dst = append(dst, c^markMask)
	}
	return dst
}

// build concatenates parts, where a nil part stands for the marker.
func (m marker) build(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + len(m.masked)
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		if p == "\x00" {
			b = m.appendTo(b)
			continue
		}
		if len(p) == 2 && p[0] == 1 {
			b = m.appendTo(b)
			b[len(b)-1] = p[1]
			continue
		}
		b = append(b, p...)
	}
	return b
}

func (m marker) in(b []byte) bool {
	for i := 0; i+len(m.masked) <= len(b); i++ {
		ok := true
		for j, c := range m.masked[:len(m.masked)-1] {
			if b[i+j]^markMask != c {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// countInProcess scans every readable mapping of this process for the
// plaintext marker, through an mmap'd scan buffer outside the Go heap that
// holds only XOR-masked data.
func (m marker) countInProcess(t *testing.T) (hits int, where []string) {
	const chunk = 1 << 20
	scan, err := syscall.Mmap(-1, 0, chunk+len(m.masked), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(scan)
	scanStart := uint64(uintptr(unsafePointer(scan)))
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[1][0] != 'r' {
			continue
		}
		if len(f) >= 6 && (f[5] == "[vvar]" || f[5] == "[vsyscall]" || f[5] == "[vvar_vclock]") {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, _ := strconv.ParseUint(lo, 16, 64)
		end, _ := strconv.ParseUint(hi, 16, 64)
		if start == scanStart {
			continue
		}
		for off := start; off < end; off += chunk {
			n := min(uint64(chunk+len(m.masked)-1), end-off)
			k, _ := mem.ReadAt(scan[:n], int64(off))
			buf := scan[:k]
			for i := range buf {
				buf[i] ^= markMask
			}
			for b := buf; ; {
				i := bytes.Index(b, m.masked[:len(m.masked)-1])
				if i < 0 {
					break
				}
				hits++
				if len(where) < 8 {
					// context around the hit, every marker masked out
					lo, hi := max(0, i-160), min(len(b), i+len(m.masked)+160)
					ctx := make([]byte, hi-lo)
					for k := lo; k < hi; k++ {
						ctx[k-lo] = '.'
						if c := b[k] ^ markMask; c >= 0x20 && c < 0x7f {
							ctx[k-lo] = c
						}
					}
					for k := lo; k < hi; k++ {
						if k+len(m.masked)-1 <= len(b) && bytes.Equal(b[k:k+len(m.masked)-1], m.masked[:len(m.masked)-1]) {
							for q := k - lo; q < k-lo+len(m.masked)-1 && q < len(ctx); q++ {
								ctx[q] = '#'
							}
						}
					}
					where = append(where, line+" @"+strconv.FormatUint(off+uint64(len(buf)-len(b)+i)-start, 16)+"\n    "+string(ctx))
				}
				b = b[i+1:]
			}
			clear(scan)
		}
	}
	return hits, where
}

// rawFakeBrowser serves /json/list and DevTools WebSockets on raw TCP with
// the package's wiping frame code, so that the fake's own copies of the
// marker are wiped as well.
func rawFakeBrowser(t *testing.T, m marker) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go serveRawFake(conn, m, ln.Addr().String())
		}
	}()
	return "http://" + ln.Addr().String()
}

func serveRawFake(conn net.Conn, m marker, addr string) {
	defer conn.Close()
	head := make([]byte, 0, 4096)
	for !bytes.Contains(head, []byte("\r\n\r\n")) {
		if len(head) == cap(head) {
			return
		}
		n, err := conn.Read(head[len(head):cap(head)])
		head = head[:len(head)+n]
		if err != nil {
			return
		}
	}
	if bytes.HasPrefix(head, []byte("GET /json/list ")) && os.Getenv("BISECT_DISC") == "" {
		body := m.build(`[{"id":"PAGE1","type":"page","title":"t `, "\x01X", `","url":"https://acme.test/?pw=`, "\x01Y",
			`","webSocketDebuggerUrl":"ws://`+addr+`/devtools/page/PAGE1"}]`)
		resp := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"), body...)
		conn.Write(resp)
		wipe(body)
		wipe(resp)
		return
	}
	rw := struct {
		io.Reader
		io.Writer
	}{io.MultiReader(bytes.NewReader(head), conn), conn}
	if _, err := (ws.Upgrader{}).Upgrade(rw); err != nil {
		return
	}
	fr := newFrameReader(conn, nil, 16<<10, 1<<30, true)
	fw := &frameWriter{conn: conn}
	defer fr.close()
	send := func(b []byte) {
		fw.write(ws.OpText, b)
		wipe(b)
	}
	for {
		op, p, err := fr.next()
		if err != nil {
			return
		}
		if op == ws.OpClose {
			fw.write(ws.OpClose, p)
			return
		}
		h, _ := scanHeader(p, false)
		id := strconv.FormatInt(h.id, 10)
		fr.release(p)
		send(m.build(`{"method":"Target.attachedToTarget","params":{"sessionId":"S1","targetInfo":{"targetId":"T1","type":"page","title":"`, "\x01T", `","url":"https://acme.test/?pw=`, "\x01U", `","attached":true}},"waitingForDebugger":false}`))
		send(m.build(`{"method":"Page.frameNavigated","params":{"frame":{"id":"T1","url":"https://acme.test/n?pw=`, "\x01V", `","urlFragment":"#`, "\x01F", `"},"type":"Navigation"},"sessionId":"S1"}`))
		send(m.build(`{"method":"Page.frameNavigated","params":{"frame":{"id":"T1","url":"https://acme.test/\u00e9?pw=`, "\x01W", `"},"type":"Navigation"},"sessionId":"S1"}`))
		send(m.build(`{"method":"Target.receivedMessageFromTarget","params":{"sessionId":"S1","message":"{\"method\":\"Page.frameNavigated\",\"params\":{\"frame\":{\"id\":\"T1\",\"url\":\"https://acme.test/?q=`, "\x01N", `\"}}}"}}`))
		send(m.build(`{"id":`+id+`,"result":{"value":"`+strings.Repeat("x", 150<<10), "\x01B", strings.Repeat("y", 50<<10)+`"}}`))
	}
}

// TestNoPlaintextLeftInProcessMemory runs a session full of a secret
// through the proxy (discovery, page socket, tracked events, nested legacy
// messages, small and pooled frames, an event interceptor's replacement) and
// then scans the process's whole readable memory for plaintext copies.
//
// It runs in a child process so that no other test's memory is scanned, with
// GODEBUG=asyncpreemptoff=1: asynchronous preemption delivers a signal whose
// frame saves the vector registers (XSAVE area) on the signal stack, and a
// goroutine preempted while copying or unmasking a frame leaves up to 32
// bytes of it there. The daemon should run with the same setting (see the
// package README note in the report).
func TestNoPlaintextLeftInProcessMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("scans process memory")
	}
	if os.Getenv("CDPPROXY_MEMSCAN_CHILD") == "" {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(exe, "-test.run", "^TestNoPlaintextLeftInProcessMemory$", "-test.count=1", "-test.v")
		gd := "asyncpreemptoff=1"
		if cur := os.Getenv("GODEBUG"); cur != "" {
			gd = cur + "," + gd
		}
		cmd.Env = append(os.Environ(), "CDPPROXY_MEMSCAN_CHILD=1", "GODEBUG="+gd)
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestNoPlaintextLeftInProcessMemory")) {
			t.Fatalf("memory scan child: %v\n%s", err, out)
		}
		return
	}
	m := newMarker()
	up := rawFakeBrowser(t, m)
	replacer := func() Interceptor {
		return &funcInterceptor{ev: func(ctx context.Context, c Conn, msg *Message) (Verdict, error) {
			if msg.Method == "Page.frameNavigated" {
				d := append(make([]byte, 0, len(msg.Raw)), msg.Raw...)
				return Verdict{Kind: Replace, Data: d}, nil
			}
			return Verdict{}, nil
		}}
	}
	h := newHarness(t, up, factory(replacer, func() Interceptor { return &funcInterceptor{} }), Options{})
	proxyAddr := strings.TrimPrefix(h.srv.URL, "http://")

	// discovery through the proxy, read on a raw socket into a wiped buffer
	dc, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(dc, "GET /session/"+h.sess.Token+"/json/list HTTP/1.1\r\nHost: "+proxyAddr+"\r\n\r\n")
	dbuf := make([]byte, 64<<10)
	dc.SetReadDeadline(time.Now().Add(10 * time.Second))
	dn, _ := io.ReadFull(dc, dbuf)
	dc.Close()
	if !m.in(dbuf[:dn]) || !bytes.Contains(dbuf[:dn], []byte("/session/"+h.sess.Token+"/devtools/page/PAGE1")) {
		t.Fatalf("discovery through the proxy lost the marker or the rewrite")
	}
	wipe(dbuf)

	// a page socket (its root URL comes from /json/list)
	conn, br, _, err := ws.Dialer{Timeout: 10 * time.Second}.Dial(context.Background(), "ws://"+proxyAddr+"/session/"+h.sess.Token+"/devtools/page/PAGE1")
	if err != nil {
		t.Fatal(err)
	}
	if br != nil {
		ws.PutReader(br)
	}
	fr := newFrameReader(conn, nil, 16<<10, 1<<30, false)
	fw := &frameWriter{conn: conn, mask: true}
	cmds := [][]byte{
		m.build(`{"id":1,"method":"Input.insertText","params":{"text":"`, "\x01C", `"},"sessionId":"S1"}`),
		m.build(`{"id":2,"method":"Target.sendMessageToTarget","params":{"sessionId":"S1","message":"{\"id\":1,\"method\":\"Input.insertText\",\"params\":{\"text\":\"`, "\x01D", `\"}}"}}`),
		m.build(`{"id":3,"method":"Runtime.evaluate","params":{"expression":"'`, "\x01E", strings.Repeat(" ", 20<<10)+`'"}}`),
	}
	if os.Getenv("BISECT_CMD") != "" {
		for i := range cmds {
			wipe(cmds[i])
			cmds[i] = []byte(`{"id":` + strconv.Itoa(i+1) + `,"method":"A.b"}`)
		}
	}
	seen := 0
	for _, c := range cmds {
		fw.write(ws.OpText, c)
		wipe(c)
		for got := 0; got < 5; got++ { // 4 events and the response
			op, p, err := fr.next()
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if op == ws.OpText && m.in(p) {
				seen++
			}
			fr.release(p)
		}
	}
	if seen != 15 && os.Getenv("BISECT_CMD") == "" && os.Getenv("BISECT_EV") == "" {
		t.Fatalf("only %d of 15 messages carried the marker through the proxy", seen)
	}
	fw.writeClose(ws.StatusNormalClosure, "")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		op, p, err := fr.next()
		if err != nil || op == ws.OpClose {
			break
		}
		fr.release(p)
	}
	conn.Close()
	fr.close()
	waitFor(t, func() bool { return h.p.SessionConns(h.sess.Token) == 0 })
	h.p.Unregister(h.sess.Token)
	// the scanner finds a copy that is there
	// (kept on the heap through a package variable: a stack copy would be
	// left behind in the old stack when the scan grows the stack)
	memscanSink = m.appendTo(make([]byte, 0, 64))
	ctl := memscanSink
	memscanSink = nil
	if n, _ := m.countInProcess(t); n < 1 {
		t.Fatal("scanner did not find a planted copy")
	}
	wipe(ctl)
	runtime.GC()
	hits, where := m.countInProcess(t)
	if hits != 0 {
		t.Fatalf("%d plaintext copies of the marker left in process memory, in mappings:\n%s", hits, strings.Join(where, "\n"))
	}
}

var memscanSink []byte
