package cdpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// benchClient is a lean WebSocket client used on both sides of each
// comparison (direct and through the proxy), so the client's own cost is the
// same in both.
type benchClient struct {
	conn net.Conn
	fr   *frameReader
	fw   *frameWriter
	buf  []byte
}

func dialBench(tb testing.TB, u string) *benchClient {
	tb.Helper()
	conn, br, _, err := ws.Dialer{Timeout: 10 * time.Second}.Dial(context.Background(), u)
	if err != nil {
		tb.Fatalf("dial %s: %v", u, err)
	}
	c := &benchClient{conn: conn, fr: newFrameReader(conn, nil, 64<<10, 1<<30, false), fw: &frameWriter{conn: conn, mask: true}}
	if br != nil {
		b, _ := br.Peek(br.Buffered())
		c.fr.preload(b)
		ws.PutReader(br)
	}
	tb.Cleanup(func() { conn.Close() })
	return c
}

// roundTrip sends {"id":id,"method":method,"params":params} and reads until
// the response with that id; it returns the response's size.
func (c *benchClient) roundTrip(tb testing.TB, id int64, method, params, sid string) int {
	c.buf = append(c.buf[:0], `{"id":`...)
	c.buf = strconv.AppendInt(c.buf, id, 10)
	c.buf = append(c.buf, `,"method":"`...)
	c.buf = append(c.buf, method...)
	c.buf = append(c.buf, '"')
	if params != "" {
		c.buf = append(c.buf, `,"params":`...)
		c.buf = append(c.buf, params...)
	}
	if sid != "" {
		c.buf = append(c.buf, `,"sessionId":"`...)
		c.buf = append(c.buf, sid...)
		c.buf = append(c.buf, '"')
	}
	c.buf = append(c.buf, '}')
	if err := c.fw.write(ws.OpText, c.buf); err != nil {
		tb.Fatal(err)
	}
	for {
		op, p, err := c.fr.next()
		if err != nil {
			tb.Fatalf("read: %v", err)
		}
		if op != ws.OpText {
			continue
		}
		h, err := scanHeader(p, false)
		n := len(p)
		c.fr.release(p)
		if err == nil && h.hasID && h.id == id {
			if h.errv != nil {
				tb.Fatalf("%s: error response", method)
			}
			return n
		}
	}
}

// readN reads n text messages and returns their total size.
func (c *benchClient) readN(tb testing.TB, n int) int64 {
	var total int64
	for i := 0; i < n; {
		op, p, err := c.fr.next()
		if err != nil {
			tb.Fatalf("read: %v", err)
		}
		if op == ws.OpText {
			total += int64(len(p))
			i++
			c.fr.release(p)
		}
	}
	return total
}

func passThrough() Factory {
	return factory(func() Interceptor { return &funcInterceptor{} })
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// chromeBench returns the shared Chromium and the base URL of a proxy
// session in front of it (one pass-through interceptor installed, metrics
// on, as in the daemon). The proxy
// runs in the benchmark's process; with CDPPROXY_BENCH_SEPARATE=1 it runs in
// a child process of its own instead, as the daemon does.
func chromeBench(b *testing.B) (*chromeProc, string) {
	ch := sharedChrome(b)
	if os.Getenv("CDPPROXY_BENCH_SEPARATE") != "" {
		return ch, startProxyChild(b, ch.base)
	}
	h := newHarness(b, ch.base, passThrough(), Options{Metrics: NewMetrics(nil)})
	return ch, h.base
}

func versionWS(b *testing.B, base string) string {
	var v struct {
		WS string `json:"webSocketDebuggerUrl"`
	}
	getJSON(b, base+"/json/version", &v)
	return v.WS
}

// baselines are the pass-throughs the Chrome benchmarks measure next to
// the proxy, by the prefix that names them: each serves on ln in front of
// upstream (host:port) until the returned stop is called.
//
//   - relay: a raw TCP relay, bytes copied both ways with io.Copy (splice on
//     Linux), no WebSocket parsing, no interceptors. It is the floor any
//     user-space proxy pays on this machine (two more loopback hops per
//     round trip, two more wake-ups).
//   - naive: the project's naive baseline, what a Go proxy written the
//     obvious way with gorilla/websocket costs.
var baselines = map[string]func(ln net.Listener, upstream string) (stop func()){
	relayChildPrefix: serveRelay,
	naiveChildPrefix: serveNaive,
}

// Child process prefixes (CDPPROXY_BENCH_CHILD) of the baselines.
const (
	relayChildPrefix = "relay:"
	naiveChildPrefix = "naive:"
)

// startBaseline starts the baseline named by prefix in front of upstream
// (host:port) and returns its address. With CDPPROXY_BENCH_SEPARATE=1 it
// runs in a child process, like the proxy.
func startBaseline(tb testing.TB, prefix, upstream string) string {
	tb.Helper()
	if os.Getenv("CDPPROXY_BENCH_SEPARATE") != "" {
		return strings.TrimPrefix(startProxyChild(tb, prefix+upstream), "http://")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(baselines[prefix](ln, upstream))
	return ln.Addr().String()
}

// serveRelay relays every connection accepted on ln to upstream until the
// returned stop is called.
func serveRelay(ln net.Listener, upstream string) (stop func()) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, u)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(u, c); u.Close() }()
			go func() { defer wg.Done(); io.Copy(c, u); c.Close() }()
		}
	}()
	return func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// serveNaive serves, on ln, a WebSocket pass-through to upstream (host:port)
// written the obvious way with gorilla/websocket, default buffer sizes and no
// tuning: each client is upgraded, the same path is dialled upstream, and one
// goroutine per direction does ReadMessage / WriteMessage, no parsing, until
// either side fails, which closes both. It runs until the returned stop is
// called.
func serveNaive(ln net.Listener, upstream string) (stop func()) {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }} // a bench: any origin
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []*websocket.Conn
	closed := false
	pipe := func(dst, src *websocket.Conn) {
		defer wg.Done()
		defer dst.Close()
		defer src.Close()
		for {
			mt, data, err := src.ReadMessage()
			if err != nil {
				return
			}
			if err := dst.WriteMessage(mt, data); err != nil {
				return
			}
		}
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _, err := dialer.Dial("ws://"+upstream+r.URL.RequestURI(), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			u.Close()
			return
		}
		c.SetReadLimit(256 << 20)
		u.SetReadLimit(256 << 20)
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c.Close()
			u.Close()
			return
		}
		open = append(open, c, u)
		wg.Add(2)
		go pipe(u, c)
		go pipe(c, u)
	})}
	go srv.Serve(ln)
	return func() {
		srv.Close() // the listener; upgraded connections are hijacked, closed below
		mu.Lock()
		closed = true
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// benchLegs are the four ways the Chrome benchmarks reach the same
// Chromium: directly, through the proxy, through the raw TCP relay and
// through the naive gorilla/websocket pass-through.
const (
	legDirect = iota
	legProxy
	legRelay
	legNaive
	nLegs
)

var legNames = [nLegs]string{"direct", "proxy", "relay", "naive"}

// reportLegs reports each leg's figure as <leg>-<unit>, and the proxy's,
// relay's and naive pass-through's over the direct one as <ratio>,
// relay-<ratio> and naive-<ratio>.
func reportLegs(b *testing.B, v [nLegs]float64, unit, ratio string) {
	for l, name := range legNames {
		b.ReportMetric(v[l], name+"-"+unit)
	}
	b.ReportMetric(v[legProxy]/v[legDirect], ratio)
	b.ReportMetric(v[legRelay]/v[legDirect], "relay-"+ratio)
	b.ReportMetric(v[legNaive]/v[legDirect], "naive-"+ratio)
}

// chromeLegPrefixes returns, for each leg, the ws:// prefix to which a
// Chromium DevTools path (/devtools/browser/<id>, /devtools/page/<id>) is
// appended; it starts the relay and the naive pass-through.
func chromeLegPrefixes(b *testing.B, ch *chromeProc, base string) [nLegs]string {
	host := strings.TrimPrefix(ch.base, "http://")
	return [nLegs]string{
		legDirect: "ws://" + host,
		legProxy:  "ws" + strings.TrimPrefix(base, "http"),
		legRelay:  "ws://" + startBaseline(b, relayChildPrefix, host),
		legNaive:  "ws://" + startBaseline(b, naiveChildPrefix, host),
	}
}

// chromeLegURLs returns the browser WebSocket URL of each leg.
func chromeLegURLs(b *testing.B, ch *chromeProc, base string) [nLegs]string {
	var us [nLegs]string
	for l, p := range chromeLegPrefixes(b, ch, base) {
		us[l] = p + ch.wsPath
	}
	us[legProxy] = versionWS(b, base)
	return us
}

// BenchmarkChromeSmallRoundTrip: Browser.getVersion round trips, direct,
// through the proxy (one pass-through interceptor), through the raw TCP
// relay and through the naive pass-through, interleaved (the order rotates
// every iteration).
func BenchmarkChromeSmallRoundTrip(b *testing.B) {
	ch, base := chromeBench(b)
	us := chromeLegURLs(b, ch, base)
	var cs [nLegs]*benchClient
	for l := range cs {
		cs[l] = dialBench(b, us[l])
	}
	for i := range 200 { // warm up
		for _, c := range cs {
			c.roundTrip(b, int64(i+1), "Browser.getVersion", "", "")
		}
	}
	var ds [nLegs][]time.Duration
	for l := range ds {
		ds[l] = make([]time.Duration, 0, b.N)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := int64(1000 + i)
		for k := range nLegs {
			l := (i + k) % nLegs
			t0 := time.Now()
			cs[l].roundTrip(b, id, "Browser.getVersion", "", "")
			ds[l] = append(ds[l], time.Since(t0))
		}
	}
	b.StopTimer()
	var p50 [nLegs]float64
	for l := range p50 {
		p50[l] = float64(median(ds[l]).Nanoseconds()) / 1e3
	}
	reportLegs(b, p50, "p50-us", "p50-ratio")
}

// processCPU returns the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// statFiles opens /proc/<pid>/stat of the live processes for which match
// (given ppid and pgrp) is true; they are closed at the end of the benchmark.
func statFiles(tb testing.TB, match func(ppid, pgrp int64) bool) []*os.File {
	ds, _ := filepath.Glob("/proc/[0-9]*/stat")
	var fs []*os.File
	var buf [1024]byte
	for _, d := range ds {
		f, err := os.Open(d)
		if err != nil {
			continue
		}
		if v, ok := statFields(f, buf[:]); ok && match(v[0], v[1]) {
			fs = append(fs, f)
		} else {
			f.Close()
		}
	}
	tb.Cleanup(func() {
		for _, f := range fs {
			f.Close()
		}
	})
	return fs
}

// statFields reads a /proc/<pid>/stat file from its start into buf and
// returns its ppid, pgrp, utime and stime fields, without allocating.
func statFields(f *os.File, buf []byte) ([4]int64, bool) {
	var out [4]int64
	n, _ := f.ReadAt(buf, 0)
	b := buf[:n]
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return out, false
	}
	// fields after the command: state(3) ppid(4) pgrp(5) ... utime(14) stime(15)
	field, v := 3, int64(0)
	for _, c := range b[i+2:] {
		if c == ' ' {
			switch field {
			case 4:
				out[0] = v
			case 5:
				out[1] = v
			case 14:
				out[2] = v
			case 15:
				out[3] = v
				return out, true
			}
			field, v = field+1, 0
		} else if c >= '0' && c <= '9' {
			v = v*10 + int64(c-'0')
		}
	}
	return out, false
}

// groupCPU returns the user+system CPU time used by the processes whose
// stat files are given (clock ticks of 10ms), without allocating.
func groupCPU(fs []*os.File) time.Duration {
	var buf [1024]byte
	var ticks int64
	for _, f := range fs {
		if v, ok := statFields(f, buf[:]); ok {
			ticks += v[2] + v[3]
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// BenchmarkChromeParallel8: 8 connections doing round trips concurrently;
// rounds rotate between direct, proxied, relayed and naive. Besides
// throughput it reports CPU per round trip: Chromium's, the client's (this
// process in the direct leg), and the proxy's, the relay's and the naive
// pass-through's own (this process's CPU in that leg minus the client's,
// plus their child process's when they run in one). /proc counts in 10ms
// ticks: these are averages over the run.
func BenchmarkChromeParallel8(b *testing.B) {
	ch, base := chromeBench(b)
	const conns, per = 8, 50
	us := chromeLegURLs(b, ch, base)
	var cs [nLegs][]*benchClient
	for l := range cs {
		for range conns {
			cs[l] = append(cs[l], dialBench(b, us[l]))
		}
	}
	round := func(cs []*benchClient, base int64) time.Duration {
		var wg sync.WaitGroup
		t0 := time.Now()
		for _, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range per {
					c.roundTrip(b, base+int64(k), "Browser.getVersion", "", "")
				}
			}()
		}
		wg.Wait()
		return time.Since(t0)
	}
	for l := range cs {
		round(cs[l], 1)
	}
	cpgid, me := int64(ch.cmd.Process.Pid), int64(os.Getpid()) // chromium runs in its own process group
	chromeFs := statFiles(b, func(_, pgrp int64) bool { return pgrp == cpgid })
	// with CDPPROXY_BENCH_SEPARATE=1: the proxy, relay and naive child processes
	kidFs := statFiles(b, func(ppid, pgrp int64) bool { return ppid == me && pgrp != cpgid })
	var el, self, chrome, kids [nLegs]time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		base := int64(1000 + i*per)
		for k := range nLegs {
			l := (i + k) % nLegs
			c0, k0 := groupCPU(chromeFs), groupCPU(kidFs)
			s0 := processCPU()
			el[l] += round(cs[l], base)
			self[l] += processCPU() - s0
			chrome[l] += groupCPU(chromeFs) - c0
			kids[l] += groupCPU(kidFs) - k0
		}
	}
	b.StopTimer()
	msgs := float64(b.N * conns * per)
	var rate [nLegs]float64
	for l := range rate {
		rate[l] = msgs / el[l].Seconds()
	}
	reportLegs(b, rate, "rt/s", "throughput-ratio")
	us1 := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / msgs }
	b.ReportMetric(us1(chrome[legDirect]), "chrome-direct-cpu-us/rt")
	b.ReportMetric(us1(chrome[legProxy]), "chrome-proxied-cpu-us/rt")
	b.ReportMetric(us1(self[legDirect]), "client-cpu-us/rt")
	b.ReportMetric(us1(self[legProxy]-self[legDirect]+kids[legProxy]), "proxy-cpu-us/rt")
	b.ReportMetric(us1(self[legRelay]-self[legDirect]+kids[legRelay]), "relay-cpu-us/rt")
	b.ReportMetric(us1(self[legNaive]-self[legDirect]+kids[legNaive]), "naive-cpu-us/rt")
}

// BenchmarkChromeLarge4MB: Runtime.evaluate returning a 4 MiB string, on the
// same page, direct, through the proxy, through the raw TCP relay and
// through the naive pass-through, interleaved (the order rotates every
// iteration). In process, -benchmem's B/op and allocs/op (here and in the
// other Chrome benchmarks) count all legs together, the naive leg's
// ReadMessage buffers included.
func BenchmarkChromeLarge4MB(b *testing.B) {
	ch, base := chromeBench(b)
	req, _ := http.NewRequest("PUT", ch.base+"/json/new?about:blank", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	var nt map[string]string
	json.NewDecoder(resp.Body).Decode(&nt)
	resp.Body.Close()
	defer http.Get(ch.base + "/json/close/" + nt["id"])
	path := strings.TrimPrefix(nt["webSocketDebuggerUrl"], "ws://"+strings.TrimPrefix(ch.base, "http://"))
	var cs [nLegs]*benchClient
	for l, p := range chromeLegPrefixes(b, ch, base) {
		cs[l] = dialBench(b, p+path)
	}
	cs[legDirect].roundTrip(b, 1, "Runtime.evaluate", `{"expression":"globalThis.big='x'.repeat(4<<20); 1"}`, "")
	const eval = `{"expression":"big","returnByValue":true}`
	for _, c := range cs {
		c.roundTrip(b, 2, "Runtime.evaluate", eval, "")
	}
	var el [nLegs]time.Duration
	var got [nLegs]int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := int64(10 + i)
		for k := range nLegs {
			l := (i + k) % nLegs
			t0 := time.Now()
			got[l] += int64(cs[l].roundTrip(b, id, "Runtime.evaluate", eval, ""))
			el[l] += time.Since(t0)
		}
	}
	b.StopTimer()
	var rate [nLegs]float64
	for l := range rate {
		rate[l] = float64(got[l]) / el[l].Seconds() / 1e6
	}
	reportLegs(b, rate, "MB/s", "throughput-ratio")
}

// ---- against an in-process fake peer, to isolate the proxy ----

// fastPeer is a fake CDP browser on the package's own frame code: it echoes
// commands and, for Bench.stream {"n":N,"size":S}, writes N events of S
// bytes before the response.
type fastPeer struct {
	ln   net.Listener
	addr string
}

func newFastPeer(tb testing.TB) *fastPeer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	fp := &fastPeer{ln: ln, addr: ln.Addr().String()}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go fp.serve(conn)
		}
	}()
	return fp
}

func (fp *fastPeer) serve(conn net.Conn) {
	defer conn.Close()
	if _, err := (ws.Upgrader{}).Upgrade(conn); err != nil {
		return
	}
	fr := newFrameReader(conn, nil, 16<<10, 1<<30, true)
	fw := &frameWriter{conn: conn}
	events := map[int][]byte{}
	var resp []byte
	for {
		op, p, err := fr.next()
		if err != nil {
			return
		}
		if op == ws.OpClose {
			fw.write(ws.OpClose, p)
			return
		}
		if op != ws.OpText {
			continue
		}
		h, _ := scanHeader(p, false)
		if string(h.method) == "Bench.stream" {
			var ps struct{ N, Size int }
			json.Unmarshal(h.params, &ps)
			ev, ok := events[ps.Size]
			if !ok {
				prefix := `{"method":"Bench.ev","params":{"d":"`
				ev = []byte(prefix + strings.Repeat("y", max(0, ps.Size-len(prefix)-3)) + `"}}`)
				events[ps.Size] = ev
			}
			for range ps.N {
				if fw.write(ws.OpText, ev) != nil {
					return
				}
			}
		}
		resp = append(resp[:0], `{"id":`...)
		resp = strconv.AppendInt(resp, h.id, 10)
		resp = append(resp, `,"result":{}}`...)
		fr.release(p)
		if fw.write(ws.OpText, resp) != nil {
			return
		}
	}
}

func fastHarness(b *testing.B) (*fastPeer, *harness, string, string) {
	fp := newFastPeer(b)
	h := newHarness(b, "http://"+fp.addr, passThrough(), Options{Metrics: NewMetrics(nil)})
	pu := "ws://" + strings.TrimPrefix(h.srv.URL, "http://") + "/session/" + h.sess.Token + "/devtools/browser/fast"
	return fp, h, "ws://" + fp.addr + "/devtools/browser/fast", pu
}

func streamRate(b *testing.B, c *benchClient, n, size int, id int64) (time.Duration, int64) {
	t0 := time.Now()
	params := fmt.Sprintf(`{"n":%d,"size":%d}`, n, size)
	c.buf = append(c.buf[:0], fmt.Sprintf(`{"id":%d,"method":"Bench.stream","params":%s}`, id, params)...)
	if err := c.fw.write(ws.OpText, c.buf); err != nil {
		b.Fatal(err)
	}
	total := c.readN(b, n+1)
	return time.Since(t0), total
}

// BenchmarkFakeSmallMessages: a stream of ~200-byte events from the fake
// browser to the client, direct and through the proxy.
func BenchmarkFakeSmallMessages(b *testing.B) {
	_, _, du, pu := fastHarness(b)
	direct, proxied := dialBench(b, du), dialBench(b, pu)
	const n = 2000
	streamRate(b, direct, n, 200, 1)
	streamRate(b, proxied, n, 200, 1)
	var td, tp, cd, cp time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c0 := processCPU()
		d, _ := streamRate(b, direct, n, 200, int64(i+2))
		c1 := processCPU()
		p, _ := streamRate(b, proxied, n, 200, int64(i+2))
		c2 := processCPU()
		td, tp = td+d, tp+p
		cd, cp = cd+c1-c0, cp+c2-c1
	}
	b.StopTimer()
	msgs := float64(b.N * (n + 1))
	b.ReportMetric(msgs/td.Seconds(), "direct-msg/s")
	b.ReportMetric(msgs/tp.Seconds(), "proxy-msg/s")
	// the proxy's own CPU per message: the proxied leg's CPU minus the
	// direct leg's (client and fake browser)
	b.ReportMetric(float64((cp-cd).Nanoseconds())/msgs, "proxy-cpu-ns/msg")
}

// BenchmarkFakeSmallRoundTrips: pipelined small commands (64 in flight),
// through the proxy; each round trip is two proxied messages.
func BenchmarkFakeSmallRoundTrips(b *testing.B) {
	_, _, _, pu := fastHarness(b)
	c := dialBench(b, pu)
	const window = 64
	slots := make(chan struct{}, window)
	stop := make(chan struct{})
	defer close(stop)
	b.ResetTimer()
	t0 := time.Now()
	errc := make(chan error, 1)
	go func() {
		var buf []byte
		for i := 0; i < b.N; i++ {
			select {
			case slots <- struct{}{}:
			case <-stop:
				errc <- nil
				return
			}
			buf = append(buf[:0], `{"id":`...)
			buf = strconv.AppendInt(buf, int64(i+1), 10)
			buf = append(buf, `,"method":"Browser.getVersion","params":{}}`...)
			if err := c.fw.write(ws.OpText, buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := 0; i < b.N; {
		op, p, err := c.fr.next()
		if err != nil {
			b.Fatalf("read: %v", err)
		}
		if op != ws.OpText {
			continue
		}
		h, err := scanHeader(p, false)
		c.fr.release(p)
		if err != nil || !h.hasID || h.errv != nil {
			b.Fatal("not a success response")
		}
		<-slots
		i++
	}
	el := time.Since(t0)
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(2*b.N)/el.Seconds(), "proxy-msg/s")
}

// BenchmarkFakeLarge4MB: 4 MiB events from the fake browser to the client,
// direct and through the proxy.
func BenchmarkFakeLarge4MB(b *testing.B) {
	_, _, du, pu := fastHarness(b)
	direct, proxied := dialBench(b, du), dialBench(b, pu)
	const n, size = 8, 4 << 20
	streamRate(b, direct, n, size, 1)
	streamRate(b, proxied, n, size, 1)
	var td, tp time.Duration
	var bd, bp int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, x := streamRate(b, direct, n, size, int64(i+2))
		p, y := streamRate(b, proxied, n, size, int64(i+2))
		td, tp, bd, bp = td+d, tp+p, bd+x, bp+y
	}
	b.StopTimer()
	b.ReportMetric(float64(bd)/td.Seconds()/1e9, "direct-GB/s")
	b.ReportMetric(float64(bp)/tp.Seconds()/1e9, "proxy-GB/s")
}

func inUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// BenchmarkIdleConnMemory: memory of N idle proxied connections minus N
// idle direct ones (client and fake browser sides cancel out), per
// connection; also per registered session without connections.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 400
	fp, h, du, pu := fastHarness(b)
	_ = fp
	open := func(u string) []*benchClient {
		cs := make([]*benchClient, n)
		for i := range cs {
			cs[i] = dialBench(b, u)
			cs[i].roundTrip(b, 1, "Browser.getVersion", "", "") // fully set up both legs
		}
		return cs
	}
	closeAll := func(cs []*benchClient) {
		for _, c := range cs {
			c.conn.Close()
		}
	}
	var perConn, perSession float64
	for i := 0; i < b.N; i++ {
		m0 := inUse()
		dcs := open(du)
		m1 := inUse()
		closeAll(dcs)
		m2 := inUse()
		pcs := open(pu)
		waitConns(b, h, n)
		m3 := inUse()
		closeAll(pcs)
		waitConns(b, h, 0)
		direct := float64(m1) - float64(m0)
		proxied := float64(m3) - float64(m2)
		perConn = (proxied - direct) / n
		m4 := inUse()
		for range n {
			h.addSession("http://"+fp.addr, passThrough())
		}
		m5 := inUse()
		perSession = (float64(m5) - float64(m4)) / n
	}
	b.ReportMetric(perConn, "proxy-B/idle-conn")
	b.ReportMetric(perSession, "B/idle-session")
}

func waitConns(b *testing.B, h *harness, want int) {
	deadline := time.Now().Add(20 * time.Second)
	for h.p.SessionConns(h.sess.Token) != want {
		if time.Now().After(deadline) {
			b.Fatalf("conns %d want %d", h.p.SessionConns(h.sess.Token), want)
		}
		time.Sleep(5 * time.Millisecond) // polling proxy state
	}
}

// BenchmarkFakeSmallRoundTripLatency: one small command at a time, direct
// and through the proxy (in process), p50 of each.
func BenchmarkFakeSmallRoundTripLatency(b *testing.B) {
	_, _, du, pu := fastHarness(b)
	direct, proxied := dialBench(b, du), dialBench(b, pu)
	for i := range 200 {
		direct.roundTrip(b, int64(i+1), "Browser.getVersion", "", "")
		proxied.roundTrip(b, int64(i+1), "Browser.getVersion", "", "")
	}
	dd := make([]time.Duration, 0, b.N)
	pd := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		direct.roundTrip(b, int64(1000+i), "Browser.getVersion", "", "")
		t1 := time.Now()
		proxied.roundTrip(b, int64(1000+i), "Browser.getVersion", "", "")
		dd, pd = append(dd, t1.Sub(t0)), append(pd, time.Since(t1))
	}
	b.StopTimer()
	b.ReportMetric(float64(median(dd).Nanoseconds())/1e3, "direct-p50-us")
	b.ReportMetric(float64(median(pd).Nanoseconds())/1e3, "proxy-p50-us")
}
