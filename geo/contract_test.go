package geo

// Contract tests: they pin the github.com/elazarl/goproxy behaviour geo
// relies on (or guards against), so an upgrade that changes it fails CI.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/elazarl/goproxy"
)

func quietProxy() *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = log.New(io.Discard, "", 0)
	return gp
}

func rawConnect(t *testing.T, proxyAddr, target string) (*http.Response, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	return resp, c
}

// Why geo wires every dialer: with no ConnectDial and no Tr.DialContext,
// goproxy dials CONNECT targets directly.
func TestGoproxyContractDialsDirectlyWithoutDialer(t *testing.T) {
	t.Parallel()
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	accepted := make(chan struct{})
	go func() {
		c, err := target.Accept()
		if err == nil {
			close(accepted)
			_ = c.Close()
		}
	}()
	gp := quietProxy()
	gp.ConnectDial = nil
	gp.Tr = &http.Transport{}
	srv := httptest.NewServer(gp)
	defer srv.Close()
	resp, _ := rawConnect(t, srv.Listener.Addr().String(), target.Addr().String())
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT = %d", resp.StatusCode)
	}
	<-accepted // goproxy dialled the target itself
}

// NewConnectDialToProxy returns nil (meaning "dial directly") for schemes it
// does not know, socks5 among them.
func TestGoproxyContractConnectDialToProxyUnknownSchemeIsNil(t *testing.T) {
	t.Parallel()
	gp := quietProxy()
	if d := gp.NewConnectDialToProxy("socks5://127.0.0.1:1080"); d != nil {
		t.Fatal("NewConnectDialToProxy(socks5) is no longer nil: revisit geo's wiring")
	}
	if d := gp.NewConnectDialToProxy("http://127.0.0.1:8080"); d == nil {
		t.Fatal("NewConnectDialToProxy(http) is nil")
	}
}

// The default transport takes its proxy from the environment (and has no
// dialer of ours): geo must replace it. (Its doc says it skips TLS
// verification; in v1.9.4 it does not, but geo never relies on either.)
func TestGoproxyContractDefaultTransportUsesEnvironment(t *testing.T) {
	t.Parallel()
	gp := quietProxy()
	if gp.Tr == nil || gp.Tr.Proxy == nil || gp.Tr.DialContext != nil {
		t.Fatal("goproxy's default transport changed: revisit geo's wiring")
	}
	if gp.Tr.TLSClientConfig != nil && gp.Tr.TLSClientConfig.InsecureSkipVerify {
		t.Log("goproxy's default transport skips TLS verification")
	}
}

// ConnectDialWithReq wins over ConnectDial, gets the CONNECT request, and
// its error reaches ConnectionErrHandler unchanged (errors.Is works), which
// geo uses to write its constant 502 only for its own dial failures.
func TestGoproxyContractConnectDialWithReqAndErrHandler(t *testing.T) {
	t.Parallel()
	sentinel := errors.New("sentinel")
	var plainCalled atomic.Bool
	var gotAddr, gotHdr string
	gp := quietProxy()
	gp.ConnectDial = func(string, string) (net.Conn, error) { plainCalled.Store(true); return nil, errors.New("wrong") }
	gp.ConnectDialWithReq = func(req *http.Request, _ string, addr string) (net.Conn, error) {
		gotAddr, gotHdr = addr, req.Header.Get("X-Probe")
		return nil, fmt.Errorf("wrapped: %w", sentinel)
	}
	var handlerErr error
	gp.ConnectionErrHandler = func(w io.Writer, _ *goproxy.ProxyCtx, err error) {
		handlerErr = err
		_, _ = io.WriteString(w, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 5\r\nConnection: close\r\n\r\nconst")
	}
	srv := httptest.NewServer(gp)
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT host.test:443 HTTP/1.1\r\nHost: host.test:443\r\nX-Probe: yes\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 502 || string(b) != "const" {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
	if plainCalled.Load() || gotAddr != "host.test:443" || gotHdr != "yes" {
		t.Fatalf("plain=%v addr=%q hdr=%q", plainCalled.Load(), gotAddr, gotHdr)
	}
	if !errors.Is(handlerErr, sentinel) {
		t.Fatalf("ConnectionErrHandler got %v", handlerErr)
	}
}

// For plain HTTP, a ctx.RoundTripper set in a request handler replaces Tr,
// and by then goproxy has stripped the client's Proxy-Authorization and
// Proxy-Connection (KeepHeader false). If the RoundTripper fails, response
// handlers get a nil response and may replace it; nothing of the error text
// reaches the client.
func TestGoproxyContractPlainRoundTripperAndHeaderStripping(t *testing.T) {
	t.Parallel()
	var trUsed atomic.Bool
	var seen http.Header
	gp := quietProxy()
	gp.Tr = &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		trUsed.Store(true)
		return nil, errors.New("tr used")
	}}
	gp.OnRequest().DoFunc(func(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		ctx.RoundTripper = goproxy.RoundTripperFunc(func(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
			seen = req.Header.Clone()
			return nil, errors.New("secret-looking error text")
		})
		return req, nil
	})
	gp.OnResponse().DoFunc(func(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
		if resp != nil || ctx.Error == nil {
			t.Errorf("response handler: resp=%v err=%v", resp, ctx.Error)
		}
		return unavailableResponse(ctx.Req)
	})
	srv := httptest.NewServer(gp)
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET http://site.test/ HTTP/1.1\r\nHost: site.test\r\nProxy-Authorization: Basic Y2hyb21lOnB3\r\nProxy-Connection: keep-alive\r\nX-Keep: 1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 502 || string(b) != unavailableBody {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
	if trUsed.Load() {
		t.Fatal("Tr used although ctx.RoundTripper was set")
	}
	if seen.Get("Proxy-Authorization") != "" || seen.Get("Proxy-Connection") != "" || seen.Get("X-Keep") != "1" {
		t.Fatalf("RoundTripper saw headers %v", seen)
	}
}

// goproxy (v1.9.4) also calls ConnectionErrHandler for copy errors inside an
// established tunnel when the target conn is not a *net.TCPConn, as geo's
// are; geo's handler therefore writes only for its own dial failure.
func TestForwarderErrHandlerWritesOnlyForDialFailure(t *testing.T) {
	t.Parallel()
	f := &Forwarder{}
	var b strings.Builder
	f.connectionErr(&b, nil, errors.New("read tcp: connection reset by peer"))
	if b.Len() != 0 {
		t.Fatalf("wrote %q into an established tunnel", b.String())
	}
	f.connectionErr(&b, nil, errUnavailable)
	if !strings.HasPrefix(b.String(), "HTTP/1.1 502 ") || !strings.HasSuffix(b.String(), "\r\n\r\n"+unavailableBody) {
		t.Fatalf("dial failure answer %q", b.String())
	}
}
