package cdpproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func TestMain(m *testing.M) {
	if up := os.Getenv("CDPPROXY_BENCH_CHILD"); up != "" {
		runProxyChild(up)
		return
	}
	code := m.Run()
	stopChrome()
	os.Exit(code)
}

// ---- a real Chromium, shared by the tests and benchmarks of the package ----

type chromeProc struct {
	cmd     *exec.Cmd
	dir     string
	base    string // http://127.0.0.1:port
	wsPath  string // /devtools/browser/<id>
	errText string
}

var (
	chromeOnce sync.Once
	chromeInst *chromeProc
	chromeErr  error
)

func chromePath() string {
	if p := os.Getenv("CDPVAULT_CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// sharedChrome starts one headless Chromium for the whole test binary.
func sharedChrome(tb testing.TB) *chromeProc {
	tb.Helper()
	chromeOnce.Do(func() { chromeInst, chromeErr = startChrome() })
	if chromeErr != nil {
		tb.Fatalf("start chromium: %v", chromeErr)
	}
	return chromeInst
}

func startChrome() (*chromeProc, error) {
	path := chromePath()
	if path == "" {
		return nil, fmt.Errorf("no chromium found (set CDPVAULT_CHROMIUM)")
	}
	dir, err := os.MkdirTemp("", "cdpproxy-chrome-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
		"--user-data-dir="+dir, "--remote-debugging-port=0", "--host-resolver-rules=MAP *.test 127.0.0.1",
		"--disable-dev-shm-usage", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{w: &stderr, n: 8 << 10}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c := &chromeProc{cmd: cmd, dir: dir}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "DevToolsActivePort"))
		if err == nil {
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) == 2 {
				c.base = "http://127.0.0.1:" + lines[0]
				c.wsPath = lines[1]
				return c, nil
			}
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("chromium did not write DevToolsActivePort: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // polling an external process
	}
}

func (c *chromeProc) stop() {
	if c == nil {
		return
	}
	if c.cmd.Process != nil {
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		c.cmd.Wait()
	}
	os.RemoveAll(c.dir)
}

func stopChrome() {
	if chromeInst != nil {
		chromeInst.stop()
	}
}

type limitedWriter struct {
	mu sync.Mutex
	w  io.Writer
	n  int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// ---- a proxy in front of an upstream ----

type harness struct {
	p     *Proxy
	srv   *httptest.Server
	sess  *Session
	base  string // http://127.0.0.1:port/session/<token>
	wsURL string // ws://.../session/<token>/devtools/browser/<id>
}

var tokenSeq struct {
	sync.Mutex
	n int
}

func newToken() string {
	tokenSeq.Lock()
	defer tokenSeq.Unlock()
	tokenSeq.n++
	return fmt.Sprintf("tok%06dabcdef", tokenSeq.n)
}

func newHarness(tb testing.TB, upstream string, f Factory, o Options) *harness {
	tb.Helper()
	p := New(o)
	srv := httptest.NewServer(p)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
		srv.Close()
	})
	s := &Session{ID: "sess-" + newToken(), Token: newToken(), Tenant: "t1", Upstream: upstream, Interceptors: f}
	p.Register(s)
	h := &harness{p: p, srv: srv, sess: s, base: srv.URL + "/session/" + s.Token}
	return h
}

func (h *harness) addSession(upstream string, f Factory) *Session {
	s := &Session{ID: "sess-" + newToken(), Token: newToken(), Upstream: upstream, Interceptors: f}
	h.p.Register(s)
	return s
}

func (h *harness) browserWS(tb testing.TB) string {
	tb.Helper()
	var v struct {
		WS string `json:"webSocketDebuggerUrl"`
	}
	getJSON(tb, h.base+"/json/version", &v)
	if v.WS == "" {
		tb.Fatal("no webSocketDebuggerUrl")
	}
	return v.WS
}

func getJSON(tb testing.TB, u string, v any) {
	tb.Helper()
	resp, err := http.Get(u)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		tb.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatalf("GET %s: %v: %s", u, err, b)
	}
}

// ---- a minimal independent WebSocket client (gobwas, whole frames) ----

type wsClient struct {
	conn net.Conn
	br   *bufio.Reader
	mu   sync.Mutex
}

func dialWS(tb testing.TB, u string, hdr http.Header) *wsClient {
	tb.Helper()
	c, err := tryDialWS(u, hdr)
	if err != nil {
		tb.Fatalf("dial %s: %v", u, err)
	}
	tb.Cleanup(func() { c.conn.Close() })
	return c
}

func tryDialWS(u string, hdr http.Header) (*wsClient, error) {
	d := ws.Dialer{Timeout: 10 * time.Second}
	if hdr != nil {
		d.Header = ws.HandshakeHeaderHTTP(hdr)
	}
	conn, br, _, err := d.Dial(context.Background(), u)
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, 64<<10)
	} else {
		br = bufio.NewReaderSize(io.MultiReader(br, conn), 64<<10)
	}
	return &wsClient{conn: conn, br: br}, nil
}

func (c *wsClient) writeFrame(f ws.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ws.WriteFrame(c.conn, ws.MaskFrame(f))
}

func (c *wsClient) send(s string) error { return c.writeFrame(ws.NewTextFrame([]byte(s))) }

// read returns the next frame (control frames too).
func (c *wsClient) read() (ws.Frame, error) {
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		return ws.Frame{}, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return ws.Frame{}, err
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	return ws.Frame{Header: h, Payload: p}, nil
}

// readText returns the next text message, failing on anything else.
func (c *wsClient) readText(tb testing.TB) string {
	tb.Helper()
	c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	f, err := c.read()
	if err != nil {
		tb.Fatalf("read: %v", err)
	}
	if f.Header.OpCode != ws.OpText {
		tb.Fatalf("read: opcode %v payload %q", f.Header.OpCode, f.Payload)
	}
	return string(f.Payload)
}

// readClose reads until a close frame and returns its code.
func (c *wsClient) readClose(tb testing.TB) (ws.StatusCode, string) {
	tb.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := c.read()
		if err != nil {
			tb.Fatalf("waiting for close frame: %v", err)
		}
		if f.Header.OpCode == ws.OpClose {
			code, reason := ws.ParseCloseFrameData(f.Payload)
			return code, reason
		}
	}
}

// call sends a command and returns the response with that id, skipping
// events.
func (c *wsClient) call(tb testing.TB, id int, method, params, sid string) map[string]json.RawMessage {
	tb.Helper()
	msg := fmt.Sprintf(`{"id":%d,"method":%q`, id, method)
	if params != "" {
		msg += `,"params":` + params
	}
	if sid != "" {
		msg += fmt.Sprintf(`,"sessionId":%q`, sid)
	}
	msg += "}"
	if err := c.send(msg); err != nil {
		tb.Fatal(err)
	}
	for {
		s := c.readText(tb)
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			tb.Fatalf("bad json %q", s)
		}
		if string(m["id"]) == fmt.Sprint(id) {
			return m
		}
	}
}

// ---- an in-process fake CDP peer (for fault injection and isolating the
// proxy's overhead) ----

type fakePeer struct {
	srv   *httptest.Server
	conns chan *fakeConn
	// handle runs per upstream connection; nil: echo every command with
	// {"id":N,"result":{}}.
	handle func(fc *fakeConn)
}

type fakeConn struct {
	conn net.Conn
	br   *bufio.Reader
	mu   sync.Mutex
	path string
}

func newFakePeer(tb testing.TB, handle func(fc *fakeConn)) *fakePeer {
	tb.Helper()
	fp := &fakePeer{conns: make(chan *fakeConn, 64), handle: handle}
	fp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/devtools/"):
			if r.Header.Get("Origin") != "" || !hostAllowed(r.Host) {
				http.Error(w, "bad origin/host", 403)
				return
			}
			conn, rw, _, err := ws.UpgradeHTTP(r, w)
			if err != nil {
				return
			}
			fc := &fakeConn{conn: conn, br: rw.Reader, path: r.URL.Path}
			select {
			case fp.conns <- fc:
			default:
			}
			if fp.handle != nil {
				fp.handle(fc)
			} else {
				fc.echo()
			}
			conn.Close()
		case r.URL.Path == "/json/version" || r.URL.Path == "/json/version/":
			fmt.Fprintf(w, `{"Browser":"Fake/1.0","webSocketDebuggerUrl":"ws://%s/devtools/browser/fake-browser"}`, r.Host)
		case r.URL.Path == "/json/list" || r.URL.Path == "/json":
			fmt.Fprintf(w, `[{"id":"PAGE1","type":"page","url":"https://acme.test/login","webSocketDebuggerUrl":"ws://%s/devtools/page/PAGE1","devtoolsFrontendUrl":"/devtools/inspector.html?ws=%s/devtools/page/PAGE1"}]`, r.Host, r.Host)
		default:
			http.NotFound(w, r)
		}
	}))
	tb.Cleanup(fp.srv.Close)
	return fp
}

func (fc *fakeConn) read() (ws.Frame, error) {
	h, err := ws.ReadHeader(fc.br)
	if err != nil {
		return ws.Frame{}, err
	}
	if !h.Masked {
		return ws.Frame{}, fmt.Errorf("frame to the browser is not masked")
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(fc.br, p); err != nil {
		return ws.Frame{}, err
	}
	ws.Cipher(p, h.Mask, 0)
	return ws.Frame{Header: h, Payload: p}, nil
}

func (fc *fakeConn) write(op ws.OpCode, p []byte) error {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return ws.WriteFrame(fc.conn, ws.NewFrame(op, true, p))
}

func (fc *fakeConn) sendText(s string) error { return fc.write(ws.OpText, []byte(s)) }

// echo answers every command {"id":N,...,"sessionId":S} with
// {"id":N,"result":{},"sessionId":S}, pongs pings, echoes close.
func (fc *fakeConn) echo() {
	for {
		f, err := fc.read()
		if err != nil {
			return
		}
		switch f.Header.OpCode {
		case ws.OpPing:
			fc.write(ws.OpPong, f.Payload)
		case ws.OpClose:
			fc.write(ws.OpClose, f.Payload)
			return
		case ws.OpText:
			var m struct {
				ID        int64  `json:"id"`
				SessionID string `json:"sessionId"`
			}
			json.Unmarshal(f.Payload, &m)
			resp := fmt.Sprintf(`{"id":%d,"result":{}`, m.ID)
			if m.SessionID != "" {
				resp += fmt.Sprintf(`,"sessionId":%q`, m.SessionID)
			}
			fc.sendText(resp + "}")
		}
	}
}

// interceptor built from funcs.
type funcInterceptor struct {
	cmd    func(ctx context.Context, c Conn, m *Message) (Verdict, error)
	ev     func(ctx context.Context, c Conn, m *Message) (Verdict, error)
	closed chan struct{}
}

func (f *funcInterceptor) Command(ctx context.Context, c Conn, m *Message) (Verdict, error) {
	if f.cmd == nil {
		return Verdict{}, nil
	}
	return f.cmd(ctx, c, m)
}

func (f *funcInterceptor) Event(ctx context.Context, c Conn, m *Message) (Verdict, error) {
	if f.ev == nil {
		return Verdict{}, nil
	}
	return f.ev(ctx, c, m)
}

func (f *funcInterceptor) Close() {
	if f.closed != nil {
		close(f.closed)
	}
}

func factory(ics ...func() Interceptor) Factory {
	return func(*Session) []Interceptor {
		out := make([]Interceptor, len(ics))
		for i, f := range ics {
			out[i] = f()
		}
		return out
	}
}

// runProxyChild serves a proxy (one pass-through interceptor, like the
// benchmarks' in-process harness) in front of upstream in this process,
// prints its session base URL and runs until stdin closes. Benchmarks use it
// so that the proxy is its own process, as the daemon is, and does not share
// a Go scheduler with the benchmark's client. When upstream starts with a
// baseline's prefix (baselines), it serves that baseline instead.
func runProxyChild(upstream string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	for prefix, serve := range baselines {
		if target, ok := strings.CutPrefix(upstream, prefix); ok {
			// a baseline, in its own process like the proxy
			stop := serve(ln, target)
			fmt.Printf("http://%s\n", ln.Addr())
			io.Copy(io.Discard, os.Stdin)
			stop()
			return
		}
	}
	p := New(Options{Metrics: NewMetrics(nil)})
	s := &Session{ID: "bench", Token: "benchtoken0123456789", Upstream: upstream,
		Interceptors: func(*Session) []Interceptor { return []Interceptor{&funcInterceptor{}} }}
	p.Register(s)
	go http.Serve(ln, p)
	fmt.Printf("http://%s/session/%s\n", ln.Addr(), s.Token)
	io.Copy(io.Discard, os.Stdin)
}

// startProxyChild starts the test binary as a separate proxy process in
// front of upstream and returns its session base URL.
func startProxyChild(tb testing.TB, upstream string) string {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "CDPPROXY_BENCH_CHILD="+upstream)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "http://") {
		tb.Fatalf("proxy child: %q %v", line, err)
	}
	return strings.TrimSpace(line)
}
