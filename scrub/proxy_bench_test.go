package scrub

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cdpvault/cdpvault/browser"
	"github.com/cdpvault/cdpvault/cdpproxy"
)

// wsRoundTrip sends one command and reads until its response, returning the
// response's size.
func wsRoundTrip(b *testing.B, c *websocket.Conn, id int64, method, params string) int {
	b.Helper()
	msg := `{"id":` + itoa(id) + `,"method":"` + method + `","params":` + params + `}`
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		b.Fatal(err)
	}
	prefix := []byte(`{"id":` + itoa(id) + `,`)
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			b.Fatal(err)
		}
		if len(data) >= len(prefix) && string(data[:len(prefix)]) == string(prefix) {
			return len(data)
		}
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// BenchmarkProxyLarge4MBWith200Secrets is the proxy's 4 MB-response
// benchmark with the scrub interceptor and 200 secrets loaded: Runtime.evaluate
// returning a 4 MB string from a real Chromium, directly and through
// cdpproxy + scrub, interleaved in the same run (issue: at least 0.95x
// direct throughput).
func BenchmarkProxyLarge4MBWith200Secrets(b *testing.B) {
	ctx := context.Background()
	br, err := browser.Launch(ctx, browser.Options{Logger: quiet})
	if err != nil {
		b.Skipf("no browser: %v", err)
	}
	b.Cleanup(func() { br.Close() })
	in := benchInterceptor(b, 200)
	p := cdpproxy.New(cdpproxy.Options{})
	srv := httptest.NewServer(p)
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		p.Shutdown(sctx)
		srv.Close()
	})
	p.Register(&cdpproxy.Session{ID: "bench", Token: "benchtoken", Tenant: "t", Upstream: br.URL(),
		Interceptors: func(*cdpproxy.Session) []cdpproxy.Interceptor { return []cdpproxy.Interceptor{in} }})

	req, _ := http.NewRequest(http.MethodPut, br.URL()+"/json/new?about:blank", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	var nt struct {
		ID string `json:"id"`
		WS string `json:"webSocketDebuggerUrl"`
	}
	json.NewDecoder(resp.Body).Decode(&nt)
	resp.Body.Close()
	dialer := websocket.Dialer{ReadBufferSize: 1 << 20, WriteBufferSize: 1 << 16}
	direct, _, err := dialer.Dial(nt.WS, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close()
	proxURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/session/benchtoken/devtools/page/" + nt.ID
	proxied, _, err := dialer.Dial(proxURL, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer proxied.Close()
	direct.SetReadLimit(512 << 20)
	proxied.SetReadLimit(512 << 20)
	wsRoundTrip(b, direct, 1, "Runtime.evaluate", `{"expression":"globalThis.big='x'.repeat(4<<20); 1"}`)
	const eval = `{"expression":"big","returnByValue":true}`
	wsRoundTrip(b, direct, 2, "Runtime.evaluate", eval)
	wsRoundTrip(b, proxied, 2, "Runtime.evaluate", eval)
	var td, tp time.Duration
	var nd, np int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := int64(10 + i)
		first, second := direct, proxied
		if i%2 == 1 {
			first, second = proxied, direct
		}
		t0 := time.Now()
		n1 := int64(wsRoundTrip(b, first, id, "Runtime.evaluate", eval))
		t1 := time.Now()
		n2 := int64(wsRoundTrip(b, second, id, "Runtime.evaluate", eval))
		t2 := time.Now()
		if first == direct {
			td, tp, nd, np = td+t1.Sub(t0), tp+t2.Sub(t1), nd+n1, np+n2
		} else {
			tp, td, np, nd = tp+t1.Sub(t0), td+t2.Sub(t1), np+n1, nd+n2
		}
	}
	b.StopTimer()
	rd, rp := float64(nd)/td.Seconds()/1e6, float64(np)/tp.Seconds()/1e6
	b.ReportMetric(rd, "direct-MB/s")
	b.ReportMetric(rp, "proxy-MB/s")
	b.ReportMetric(rp/rd, "throughput-ratio")
}
