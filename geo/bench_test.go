package geo

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// BenchmarkFetch200 fetches 200 small pages through the Forwarder and its
// upstream, and the same 200 through the upstream alone, alternating in the
// same run. Reported: ms per 200 fetches for each path and their ratio
// (target: forwarder/upstream <= 1.10).
//
// "loopback" modes put site, upstream and forwarder on loopback with no
// latency at all: the forwarder is then a whole extra proxy hop of the same
// cost as the upstream itself, the worst case. They also fetch through a
// raw TCP relay (io.Copy both ways, no parsing) in front of the upstream:
// relay-ratio is what any extra hop costs there, the floor for a forwarder. "wan" modes put a link with
// 5 ms one-way latency (10 ms RTT; real upstreams are 10-200 ms away) between
// the browser host and the upstream, as in a deployment, where the
// forwarder runs next to the browser and the upstream is remote.
//
//	go test ./geo -run '^$' -bench Fetch200 -benchtime 5x
func BenchmarkFetch200(b *testing.B) {
	for _, mode := range []struct {
		name      string
		https     bool
		keepAlive bool
		wan       time.Duration
	}{
		{"loopback/http-keepalive", false, true, 0},
		{"loopback/https-keepalive", true, true, 0},
		{"loopback/https-new-tunnel-each", true, false, 0},
		{"wan/http-keepalive", false, true, 5 * time.Millisecond},
		{"wan/https-keepalive", true, true, 5 * time.Millisecond},
		{"wan/https-new-tunnel-each", true, false, 5 * time.Millisecond},
	} {
		b.Run(mode.name, func(b *testing.B) {
			s := newSite(b, mode.https)
			up := newTestUpstream(b, "u0", user(0), pw(0), false)
			upURL := up.URL()
			if mode.wan > 0 {
				upURL = "http://" + newLatencyLink(b, up.srv.Listener.Addr().String(), mode.wan)
			}
			pools, secrets := poolOf(upURL)
			e := newBenchEnv(b, pools, secrets)
			defer e.r.Close()
			f, err := e.r.OpenSession(b.Context(), "de")
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()

			direct, _ := url.Parse(upURL)
			direct.User = url.UserPassword(user(0), pw(0))
			via, _ := url.Parse("http://" + f.Addr())
			tlsConf := &tls.Config{ServerName: "example.com"}
			if mode.https {
				tlsConf.RootCAs = certPool(s.srv)
			}
			mk := func(p *url.URL) *http.Client {
				return &http.Client{Transport: &http.Transport{
					Proxy:             http.ProxyURL(p),
					TLSClientConfig:   tlsConf,
					DisableKeepAlives: !mode.keepAlive,
				}}
			}
			base, fwd := mk(direct), mk(via)
			var relay *http.Client
			if mode.wan == 0 {
				r, _ := url.Parse(upURL)
				r.Host = newRelay(b, r.Host)
				r.User = url.UserPassword(user(0), pw(0))
				relay = mk(r)
			}
			target := s.url("acme.test")
			run := func(c *http.Client) time.Duration {
				start := time.Now()
				for range 200 {
					resp, err := c.Get(target)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
				return time.Since(start)
			}
			run(base) // warm the paths
			run(fwd)
			if relay != nil {
				run(relay)
			}
			var tb, tf, tr time.Duration
			b.ResetTimer()
			for i := range b.N {
				if i%2 == 0 {
					tb += run(base)
					tf += run(fwd)
				} else {
					tf += run(fwd)
					tb += run(base)
				}
				if relay != nil {
					tr += run(relay)
				}
			}
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(float64(tb.Microseconds())/1000/n, "upstream-ms/200")
			b.ReportMetric(float64(tf.Microseconds())/1000/n, "forwarder-ms/200")
			b.ReportMetric(float64(tf)/float64(tb), "ratio")
			if relay != nil {
				b.ReportMetric(float64(tr)/float64(tb), "relay-ratio")
				relay.CloseIdleConnections()
			}
			base.CloseIdleConnections()
			fwd.CloseIdleConnections()
		})
	}
}

func newBenchEnv(b *testing.B, pools map[string]PoolConfig, secrets map[string]string) *env {
	e := &env{cred: &testCreds{m: secrets}}
	r, err := New(Options{Pools: pools, Credentials: e.cred.resolve, HealthInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	e.r = r
	return e
}

// newRelay relays TCP to target with io.Copy both ways (splice on Linux):
// the cheapest extra hop there is.
func newRelay(tb testing.TB, target string) string {
	return relayTo(tb, target, func(dst, src net.Conn) { _, _ = io.Copy(dst, src) })
}

// newLatencyLink relays TCP to target, delaying every chunk by oneWay in
// each direction: a simulated WAN link to a remote upstream.
func newLatencyLink(tb testing.TB, target string, oneWay time.Duration) string {
	return relayTo(tb, target, func(dst, src net.Conn) { delayPump(dst, src, oneWay) })
}

// relayTo serves a loopback port whose connections are relayed to target
// with pump in each direction; when either direction ends both connections
// are closed.
func relayTo(tb testing.TB, target string, pump func(dst, src net.Conn)) string {
	return serveTCP(tb, func(c net.Conn) {
		t, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		done := make(chan struct{})
		go func() {
			pump(t, c)
			_ = t.Close()
			_ = c.Close()
			close(done)
		}()
		pump(c, t)
		_ = c.Close()
		_ = t.Close()
		<-done
	}).Addr().String()
}

func delayPump(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		due time.Time
		b   []byte
	}
	ch := make(chan chunk, 4096)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{time.Now().Add(delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for c := range ch {
		if d := time.Until(c.due); d > 0 {
			timer.Reset(d) // the simulated propagation delay
			<-timer.C
		}
		if _, err := dst.Write(c.b); err != nil {
			break
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}
