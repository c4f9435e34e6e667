package geo

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// pw is the upstream password of upstream i; distinctive so leaks are easy to find.
func pw(i int) string { return fmt.Sprintf("Pw-%d-zq7<&>\"xkcd:%d", i, i*7919) }

func user(i int) string { return fmt.Sprintf("geo-user-%d", i) }

// poolOf builds pool "de" whose upstream i is urls[i] with user(i)/pw(i).
func poolOf(urls ...string) (map[string]PoolConfig, map[string]string) {
	p := PoolConfig{Timezone: "Europe/Berlin", Locale: "de-DE"}
	secrets := map[string]string{}
	for i, u := range urls {
		name := fmt.Sprintf("proxy_de_%d", i)
		p.Upstreams = append(p.Upstreams, UpstreamConfig{URL: u, Username: user(i), PasswordSecret: name})
		secrets[name] = pw(i)
	}
	return map[string]PoolConfig{"de": p}, secrets
}

// upstreamAt is upstream idx of pool (a current one, else an orphan).
func (e *env) upstreamAt(t *testing.T, pool string, idx int) *upstream {
	t.Helper()
	var up *upstream
	e.r.mu.Lock()
	for u := range e.r.current {
		if u.pool == pool && u.index == idx {
			up = u
		}
	}
	for u := range e.r.orphans {
		if u.pool == pool && u.index == idx && up == nil {
			up = u
		}
	}
	e.r.mu.Unlock()
	if up == nil {
		t.Fatalf("no upstream %s/%d", pool, idx)
	}
	return up
}

// wantCounter fails t unless counter(vec, pool, idx) is want.
func wantCounter(t *testing.T, e *env, vec string, pool string, idx int, want float64) {
	t.Helper()
	if got := counter(t, e, vec, pool, idx); got != want {
		t.Fatalf("%s{%s/%d} = %v, want %v", vec, pool, idx, got, want)
	}
}

func counter(t *testing.T, e *env, vec string, pool string, idx int) float64 {
	t.Helper()
	up := e.upstreamAt(t, pool, idx)
	m := e.r.metrics
	var c prometheus.Metric
	switch vec {
	case "requests":
		c = m.requests.With(up.labels())
	case "failures":
		c = m.failures.With(up.labels())
	case "failovers":
		c = m.failovers.With(up.labels())
	case "up":
		c = m.up.With(up.labels())
	default:
		t.Fatalf("unknown vec %s", vec)
	}
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}

func TestPlainHTTPThroughUpstreamAddsAuthAndDropsBrowserProxyHeaders(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	u0 := newTestUpstream(t, "u0", user(0), pw(0), false)
	e, f := openPool(t, u0.URL())

	// A browser's own proxy credentials and hop headers must never travel on.
	req, _ := http.NewRequest("GET", s.url("acme.test"), nil)
	req.Header.Set("Proxy-Authorization", basic("chrome", "chrome-own-pass"))
	req.Header.Set("Proxy-Connection", "keep-alive")
	resp, err := client(f, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "hello from site") {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Upstream"); got != "u0" {
		t.Fatalf("X-Upstream = %q, want u0", got)
	}
	if got := u0.Plain(); !slices.Equal(got, []string{"acme.test:" + s.port()}) {
		t.Fatalf("upstream saw %v (hostname must reach the upstream unresolved)", got)
	}
	if u0.bad.Load() != 0 {
		t.Fatalf("upstream saw %d bad Proxy-Authorization", u0.bad.Load())
	}
	h := s.allHeaders()
	for _, bad := range []string{"Proxy-Authorization", "Proxy-Connection", "chrome-own-pass", pw(0)} {
		if strings.Contains(h, bad) {
			t.Fatalf("site received %q in headers:\n%s", bad, h)
		}
	}
	if got := counter(t, e, "requests", "de", 0); got != 1 {
		t.Fatalf("requests_total = %v, want 1", got)
	}
}

func TestConnectThroughUpstreamKeepsHostnameUnresolved(t *testing.T) {
	t.Parallel()
	s := newSite(t, true)
	u0 := newTestUpstream(t, "u0", user(0), pw(0), false)
	_, f := openPool(t, u0.URL())
	c := client(f, certPool(s.srv))
	for range 2 {
		code, body, _ := get(t, c, s.url("acme.test"))
		if code != 200 || !strings.Contains(body, "hello from site") {
			t.Fatalf("got %d %q", code, body)
		}
	}
	// Keep-alive: both requests share one tunnel.
	if got := u0.Connects(); !slices.Equal(got, []string{"acme.test:" + s.port()}) {
		t.Fatalf("CONNECTs = %v", got)
	}
	if s.requests.Load() != 2 {
		t.Fatalf("site got %d requests", s.requests.Load())
	}
}

func TestFailoverToSecondUpstreamAndStickiness(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	ts := newSite(t, true)
	u1 := newTestUpstream(t, "u1", user(1), pw(1), false)
	e, f := openPool(t, deadURL(t, "http"), u1.URL())
	c := client(f, certPool(ts.srv))

	code, body, h := get(t, c, s.url("acme.test"))
	if code != 200 || !strings.Contains(body, "hello from site") || h.Get("X-Upstream") != "u1" {
		t.Fatalf("plain via failover: %d %q %v", code, body, h)
	}
	if got := counter(t, e, "failovers", "de", 0); got != 1 {
		t.Fatalf("failovers_total{upstream=0} = %v, want 1", got)
	}
	if got := counter(t, e, "failures", "de", 0); got != 1 {
		t.Fatalf("failures_total{upstream=0} = %v, want 1", got)
	}
	if got := counter(t, e, "up", "de", 0); got != 0 {
		t.Fatalf("upstream 0 up = %v, want 0", got)
	}
	// The session now sticks to u1: the dead upstream is not tried again.
	code, _, _ = get(t, c, ts.url("acme.test"))
	if code != 200 {
		t.Fatalf("CONNECT after failover: %d", code)
	}
	if got := counter(t, e, "requests", "de", 0); got != 1 {
		t.Fatalf("dead upstream tried %v times, want 1 (sticky)", got)
	}
	if got := u1.Connects(); len(got) != 1 {
		t.Fatalf("u1 CONNECTs = %v", got)
	}
}

func TestConnectFailoverOnHandshakeTimeout(t *testing.T) {
	t.Parallel()
	ts := newSite(t, true)
	u1 := newTestUpstream(t, "u1", user(1), pw(1), false)
	pools, secrets := poolOf(stallURL(t), u1.URL())
	e := newEnv(t, pools, secrets, func(o *Options) { o.HandshakeTimeout = 300 * time.Millisecond })
	f := e.open(t, "de")
	start := time.Now()
	code, body, _ := get(t, client(f, certPool(ts.srv)), ts.url("acme.test"))
	if code != 200 || !strings.Contains(body, "hello from site") {
		t.Fatalf("got %d %q", code, body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v: handshake timeout not applied", d)
	}
	if got := counter(t, e, "failovers", "de", 0); got != 1 {
		t.Fatalf("failovers = %v", got)
	}
	if !strings.Contains(e.logs.String(), "read CONNECT response") {
		t.Fatalf("expected a logged CONNECT timeout, logs:\n%s", e.logs.String())
	}
}

func TestAllUpstreamsDownFailsClosedWithConstantError(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	ts := newSite(t, true)
	e, f := openPool(t, deadURL(t, "http"), deadURL(t, "https"), deadURL(t, "socks5"))
	c := client(f, certPool(ts.srv))

	// By name and by loopback IP (which a direct dial would reach).
	for _, host := range []string{"acme.test", "127.0.0.1"} {
		code, body, _ := get(t, c, s.url(host))
		if code != http.StatusBadGateway || body != unavailableBody {
			t.Fatalf("plain %s: %d %q, want 502 %q", host, code, body, unavailableBody)
		}
		if code, _, _ := get(t, c, ts.url(host)); code == 200 {
			t.Fatalf("https %s loaded with every upstream down", host)
		}
	}
	// CONNECT: read the raw answer to check the constant body.
	conn, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT acme.test:%s HTTP/1.1\r\nHost: acme.test:%s\r\n\r\n", ts.port(), ts.port())
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || string(b) != unavailableBody {
		t.Fatalf("CONNECT: %d %q", resp.StatusCode, b)
	}
	// And through an http.Client (as a browser would).
	if code, _, _ := get(t, c, ts.url("acme.test")); code == 200 {
		t.Fatal("https page loaded with every upstream down")
	}
	if n := s.requests.Load() + ts.requests.Load(); n != 0 {
		t.Fatalf("site received %d requests with every upstream down", n)
	}
	for i := range 3 {
		if got := counter(t, e, "up", "de", i); got != 0 {
			t.Fatalf("upstream %d up = %v", i, got)
		}
	}
}

// TestNoDirectPathEvenWithProxyEnvironment: every dialer goproxy could fall
// back to is wired shut, and an https:// absolute-form request (which would
// make a Transport carry our credential into a TLS tunnel) is refused.
func TestNoDirectPath(t *testing.T) {
	t.Parallel()
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		c, err := target.Accept()
		if err == nil {
			accepted <- struct{}{}
			_ = c.Close()
		}
	}()
	u0 := newTestUpstream(t, "u0", user(0), pw(0), false)
	_, f := openPool(t, u0.URL())

	req, _ := http.NewRequest("GET", "http://"+target.Addr().String(), nil)
	if _, err := f.gp.Tr.Proxy(req); !errors.Is(err, errDirect) {
		t.Fatalf("Tr.Proxy = %v", err)
	}
	if _, err := f.gp.Tr.DialContext(context.Background(), "tcp", target.Addr().String()); !errors.Is(err, errDirect) {
		t.Fatalf("Tr.DialContext = %v", err)
	}
	if _, err := f.gp.Tr.DialTLSContext(context.Background(), "tcp", target.Addr().String()); !errors.Is(err, errDirect) {
		t.Fatalf("Tr.DialTLSContext = %v", err)
	}
	if _, err := f.gp.ConnectDial("tcp", target.Addr().String()); !errors.Is(err, errDirect) {
		t.Fatalf("ConnectDial = %v", err)
	}
	// https:// in absolute form through the plain path.
	conn, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET https://acme.test:%s/ HTTP/1.1\r\nHost: acme.test\r\n\r\n", "443")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || string(b) != unavailableBody {
		t.Fatalf("https absolute-form: %d %q", resp.StatusCode, b)
	}
	if u0.carried() != 0 {
		t.Fatalf("upstream carried %d requests", u0.carried())
	}
	// Non-proxy request.
	resp2, err := http.Get("http://" + f.Addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusBadRequest {
		t.Fatalf("non-proxy request: %d", resp2.StatusCode)
	}
	select {
	case <-accepted:
		t.Fatal("target was dialled directly")
	default:
	}
}

func TestAuthRefusedFailsOverAndRefetchesCredential(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	u0 := newTestUpstream(t, "u0", user(0), "a-different-password", false)
	u1 := newTestUpstream(t, "u1", user(1), pw(1), false)
	e, f := openPool(t, u0.URL(), u1.URL())
	code, _, h := get(t, client(f, nil), s.url("acme.test"))
	if code != 200 || h.Get("X-Upstream") != "u1" {
		t.Fatalf("got %d via %q", code, h.Get("X-Upstream"))
	}
	if u0.bad.Load() != 1 {
		t.Fatalf("u0 refused %d times", u0.bad.Load())
	}
	if got := counter(t, e, "failovers", "de", 0); got != 1 {
		t.Fatalf("failovers = %v", got)
	}
	// The refused credential was dropped: the next use of u0 resolves it again.
	before := e.cred.calls.Load()
	ts := newSite(t, true)
	e.r.pools["de"].ups[0].markUp()
	f.sticky.Store(nil)
	code, _, _ = get(t, client(f, certPool(ts.srv)), ts.url("acme.test"))
	if code != 200 {
		t.Fatalf("CONNECT: %d", code)
	}
	if e.cred.calls.Load() != before+1 {
		t.Fatalf("credential resolved %d more times, want 1", e.cred.calls.Load()-before)
	}
	if !strings.Contains(e.logs.String(), "kind=auth") {
		t.Fatalf("auth failure not logged:\n%s", e.logs.String())
	}
}

func TestHTTPSUpstreamCertificateVerified(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	ts := newSite(t, true)
	u0 := newTestUpstream(t, "u0", user(0), pw(0), true)
	pools, secrets := poolOf(u0.URL())

	t.Run("right CA", func(t *testing.T) {
		e := newEnv(t, pools, secrets, func(o *Options) { o.RootCAs = certPool(u0.srv) })
		f := e.open(t, "de")
		c := client(f, certPool(ts.srv))
		if code, _, h := get(t, c, s.url("acme.test")); code != 200 || h.Get("X-Upstream") != "u0" {
			t.Fatalf("plain via https upstream: %d %v", code, h)
		}
		if code, body, _ := get(t, c, ts.url("acme.test")); code != 200 || !strings.Contains(body, "hello") {
			t.Fatalf("CONNECT via https upstream: %d %q", code, body)
		}
		e.r.checkAll(context.Background())
		if got := counter(t, e, "up", "de", 0); got != 1 {
			t.Fatalf("health check of https upstream: up=%v", got)
		}
	})
	t.Run("wrong CA", func(t *testing.T) {
		e := newEnv(t, pools, secrets, func(o *Options) { o.RootCAs = otherCA(t) })
		f := e.open(t, "de")
		before := u0.carried()
		c := client(f, certPool(ts.srv))
		if code, body, _ := get(t, c, s.url("acme.test")); code != 502 || body != unavailableBody {
			t.Fatalf("plain with wrong CA: %d %q", code, body)
		}
		if code, _, _ := get(t, c, ts.url("acme.test")); code == 200 {
			t.Fatal("CONNECT with wrong CA succeeded")
		}
		if u0.carried() != before {
			t.Fatal("upstream carried traffic despite a failed certificate check")
		}
		if !strings.Contains(e.logs.String(), "tls handshake") {
			t.Fatalf("no tls failure logged:\n%s", e.logs.String())
		}
		e.r.checkAll(context.Background())
		if got := counter(t, e, "up", "de", 0); got != 0 {
			t.Fatalf("health check with wrong CA: up=%v", got)
		}
	})
}

// otherCA is a pool holding a freshly made CA that signed nothing.
func otherCA(t *testing.T) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "other test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AddCert(cert)
	return p
}

func TestSOCKS5UpstreamResolvesHostnamesRemotely(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	ts := newSite(t, true)
	sk := newSOCKS5(t, user(0), pw(0))
	e, f := openPool(t, sk.URL())
	c := client(f, certPool(ts.srv))
	if code, body, _ := get(t, c, s.url("acme.test")); code != 200 || !strings.Contains(body, "hello") {
		t.Fatalf("plain via socks5: %d %q", code, body)
	}
	if code, body, _ := get(t, c, ts.url("acme.test")); code != 200 || !strings.Contains(body, "hello") {
		t.Fatalf("CONNECT via socks5: %d %q", code, body)
	}
	want := []string{"fqdn:acme.test:" + s.port(), "fqdn:acme.test:" + ts.port()}
	if got := sk.Requests(); !slices.Equal(got, want) {
		t.Fatalf("socks server got %v, want %v (hostnames, not IPs)", got, want)
	}
	e.r.checkAll(context.Background())
	if got := counter(t, e, "up", "de", 0); got != 1 {
		t.Fatalf("socks5 health: %v", got)
	}

	t.Run("wrong password", func(t *testing.T) {
		sk2 := newSOCKS5(t, user(0), "not-the-password")
		pools, secrets := poolOf(sk2.URL())
		e := newEnv(t, pools, secrets, nil)
		f := e.open(t, "de")
		if code, body, _ := get(t, client(f, nil), s.url("acme.test")); code != 502 || body != unavailableBody {
			t.Fatalf("got %d %q", code, body)
		}
		if sk2.badAuth.Load() == 0 || len(sk2.Requests()) != 0 {
			t.Fatalf("badAuth=%d requests=%v", sk2.badAuth.Load(), sk2.Requests())
		}
		if got := counter(t, e, "up", "de", 0); got != 0 {
			t.Fatalf("up after auth failure = %v", got)
		}
	})
}

func TestPasswordNeverLeaks(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	ts := newSite(t, true)
	good := newTestUpstream(t, "good", user(1), pw(1), false)
	refusing := newTestUpstream(t, "refusing", user(0), "other", false)
	sk := newSOCKS5(t, user(2), "other")
	e, f := openPool(t, refusing.URL(), good.URL(), sk.URL(), deadURL(t, "https"))
	c := client(f, certPool(ts.srv))
	var bodies strings.Builder
	for _, u := range []string{s.url("acme.test"), ts.url("acme.test")} {
		_, b, h := get(t, c, u)
		bodies.WriteString(b)
		_ = h.Write(&bodies)
	}
	// Every upstream failing: constant bodies.
	pools2, secrets2 := poolOf(refusing.URL(), sk.URL(), deadURL(t, "http"))
	e2 := newEnv(t, pools2, secrets2, nil)
	f2 := e2.open(t, "de")
	c2 := client(f2, certPool(ts.srv))
	for _, u := range []string{s.url("acme.test"), ts.url("acme.test")} {
		_, b, h := get(t, c2, u)
		bodies.WriteString(b)
		_ = h.Write(&bodies)
	}
	e.r.checkAll(context.Background())
	e2.r.checkAll(context.Background())

	haystacks := map[string]string{
		"error bodies": bodies.String(),
		"logs":         e.logs.String() + e2.logs.String(),
		"metrics":      e.metricsText(t) + e2.metricsText(t),
		"site headers": s.allHeaders() + ts.allHeaders(),
	}
	if !strings.Contains(haystacks["logs"], "geo attempt failed") {
		t.Fatalf("expected failure logs, got:\n%s", haystacks["logs"])
	}
	for i := range 4 {
		needles := []string{pw(i), basic(user(i), pw(i)), base64.StdEncoding.EncodeToString([]byte(user(i) + ":" + pw(i)))}
		for where, hay := range haystacks {
			for _, n := range needles {
				if strings.Contains(hay, n) {
					t.Errorf("password of upstream %d found in %s", i, where)
				}
			}
		}
	}
	for where, hay := range haystacks {
		if where == "site headers" {
			continue
		}
		if strings.Contains(hay, "refusing") && where != "logs" {
			t.Errorf("%s reveal the upstream's own error page", where)
		}
	}
}

func TestReloadKeepsOpenForwarderWorking(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	u0 := newTestUpstream(t, "u0", user(0), pw(0), false)
	u1 := newTestUpstream(t, "u1", user(1), pw(1), false)
	pools, secrets := poolOf(u0.URL())
	secrets["proxy_fr_0"] = pw(1)
	e := newEnv(t, pools, secrets, nil)
	f := e.open(t, "de")
	c := client(f, nil)
	if code, _, h := get(t, c, s.url("acme.test")); code != 200 || h.Get("X-Upstream") != "u0" {
		t.Fatalf("before reload: %d %v", code, h)
	}
	fr := map[string]PoolConfig{"fr": {Timezone: "Europe/Paris", Locale: "fr-FR", Upstreams: []UpstreamConfig{
		{URL: u1.URL(), Username: user(1), PasswordSecret: "proxy_fr_0"}}}}
	if err := e.r.Reload(map[string]PoolConfig{"bad": {}}); err == nil {
		t.Fatal("Reload accepted an invalid pool")
	}
	if !e.r.HasPool("de") {
		t.Fatal("a failed Reload changed the pools")
	}
	if err := e.r.Reload(fr); err != nil {
		t.Fatal(err)
	}
	if e.r.HasPool("de") || !e.r.HasPool("fr") {
		t.Fatal("pools not replaced")
	}
	if p, ok := e.r.Pool("fr"); !ok || p.Timezone != "Europe/Paris" {
		t.Fatalf("Pool(fr) = %v %v", p, ok)
	}
	if _, err := e.r.OpenSession(context.Background(), "de"); !errors.Is(err, ErrUnknownPool) {
		t.Fatalf("OpenSession(de) after reload: %v", err)
	}
	// The open session keeps its pool, credential and all.
	if code, _, h := get(t, c, s.url("acme.test")); code != 200 || h.Get("X-Upstream") != "u0" {
		t.Fatalf("after reload: %d %v", code, h)
	}
	if got := e.r.SecretNames(); !slices.Equal(got, []string{"proxy_de_0", "proxy_fr_0"}) {
		t.Fatalf("SecretNames while old session open = %v", got)
	}
	f2 := e.open(t, "fr")
	if code, _, h := get(t, client(f2, nil), s.url("acme.test")); code != 200 || h.Get("X-Upstream") != "u1" {
		t.Fatalf("new session: %d %v", code, h)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := e.r.SecretNames(); !slices.Equal(got, []string{"proxy_fr_0"}) {
		t.Fatalf("SecretNames after old session closed = %v", got)
	}
	if strings.Contains(e.metricsText(t), `pool="de"`) {
		t.Fatal("metrics of the retired pool remain")
	}
}

func TestForwarderCloseEndsTunnelsAndIdleTimeout(t *testing.T) {
	t.Parallel()
	// A raw TCP target that never speaks: only the idle timeout or Close ends a tunnel.
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() }()
		}
	}()
	_, port, _ := net.SplitHostPort(target.Addr().String())
	u0 := newTestUpstream(t, "u0", user(0), pw(0), false)
	pools, secrets := poolOf(u0.URL())

	tunnel := func(f *Forwarder) net.Conn {
		conn, err := net.Dial("tcp", f.Addr())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "CONNECT raw.test:%s HTTP/1.1\r\nHost: raw.test:%s\r\n\r\n", port, port)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		return conn
	}
	waitEOF := func(conn net.Conn) time.Duration {
		start := time.Now()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := conn.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("tunnel stayed open")
		}
		return time.Since(start)
	}

	t.Run("idle", func(t *testing.T) {
		e := newEnv(t, pools, secrets, func(o *Options) { o.IdleTimeout = 300 * time.Millisecond })
		f := e.open(t, "de")
		conn := tunnel(f)
		defer conn.Close()
		if d := waitEOF(conn); d < 200*time.Millisecond {
			t.Fatalf("tunnel closed after %v, before the idle timeout", d)
		}
	})
	t.Run("close", func(t *testing.T) {
		e := newEnv(t, pools, secrets, nil)
		f := e.open(t, "de")
		conn := tunnel(f)
		defer conn.Close()
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		waitEOF(conn)
		if _, err := net.Dial("tcp", f.Addr()); err == nil {
			t.Fatal("forwarder still listening after Close")
		}
	})
}

func TestHealthChecksMarkUpAndDown(t *testing.T) {
	t.Parallel()
	u0 := newTestUpstream(t, "u0", user(0), pw(0), false)
	deadHost, revive := revivableAddr(t)
	pools, secrets := poolOf(u0.URL(), "http://"+deadHost)
	e := newEnv(t, pools, secrets, nil)
	e.r.checkAll(context.Background())
	if counter(t, e, "up", "de", 0) != 1 || counter(t, e, "up", "de", 1) != 0 {
		t.Fatal("health: want u0 up, u1 down")
	}
	// Bring the dead one up on its port, check again.
	revive()
	e.r.checkAll(context.Background())
	if counter(t, e, "up", "de", 1) != 1 {
		t.Fatal("recovered upstream not marked up")
	}
	// With a health target the check is a full authenticated tunnel: the
	// plain listener (no proxy) now fails it.
	ts := newSite(t, true)
	e2 := newEnv(t, pools, secrets, func(o *Options) {
		o.HealthTarget = "acme.test:" + ts.port()
		o.HandshakeTimeout = 300 * time.Millisecond
	})
	e2.r.checkAll(context.Background())
	if counter(t, e2, "up", "de", 0) != 1 || counter(t, e2, "up", "de", 1) != 0 {
		t.Fatal("health target: want u0 up, plain listener down")
	}
	if len(u0.Connects()) != 1 {
		t.Fatalf("u0 CONNECTs = %v", u0.Connects())
	}
}

func TestStartRunsHealthLoop(t *testing.T) {
	t.Parallel()
	u0 := newTestUpstream(t, "u0", user(0), pw(0), false)
	pools, secrets := poolOf(deadURL(t, "http"), u0.URL())
	e := newEnv(t, pools, secrets, func(o *Options) { o.HealthInterval = 40 * time.Millisecond })
	type result struct {
		idx int
		err error
	}
	probes := make(chan result, 64)
	e.r.probeHook = func(u *upstream, err error) {
		select {
		case probes <- result{u.index, err}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.r.Start(ctx)
	e.r.Start(ctx) // second call is a no-op
	// The dead upstream is probed repeatedly (backoff from interval/8),
	// the live one passes.
	deadFails, liveOK := 0, 0
	timeout := time.After(10 * time.Second)
	for deadFails < 3 || liveOK < 1 {
		select {
		case r := <-probes:
			if r.idx == 0 && r.err != nil {
				deadFails++
			}
			if r.idx == 1 && r.err == nil {
				liveOK++
			}
		case <-timeout:
			t.Fatalf("health loop: %d failed probes of the dead upstream, %d good of the live one", deadFails, liveOK)
		}
	}
	if counter(t, e, "up", "de", 0) != 0 || counter(t, e, "up", "de", 1) != 1 {
		t.Fatal("health loop did not set up/down")
	}
	if err := e.r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.OpenSession(context.Background(), "de"); !errors.Is(err, ErrClosed) {
		t.Fatalf("OpenSession after Close: %v", err)
	}
}

func TestHealthDelayBacksOff(t *testing.T) {
	t.Parallel()
	iv := 8 * time.Second
	want := []time.Duration{iv, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, 32 * time.Second}
	for fails, w := range want {
		if got := healthDelay(iv, fails); got != w {
			t.Errorf("healthDelay(%v, %d) = %v, want %v", iv, fails, got, w)
		}
	}
}

// A Reload that changes an upstream's credentials but not its address keeps
// the upstream's metric series alive (old and new share the labels) and the
// new credential is used by new sessions.
func TestReloadChangedCredentialKeepsMetrics(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	u0 := newTestUpstream(t, "u0", "new-user", pw(0), false)
	pools, secrets := poolOf(u0.URL())
	e := newEnv(t, pools, secrets, nil)
	f := e.open(t, "de")
	if code, _, _ := get(t, client(f, nil), s.url("acme.test")); code != 502 {
		t.Fatalf("old username accepted: %d", code)
	}
	p := pools["de"]
	p.Upstreams = []UpstreamConfig{{URL: u0.URL(), Username: "new-user", PasswordSecret: "proxy_de_0"}}
	if err := e.r.Reload(map[string]PoolConfig{"de": p}); err != nil {
		t.Fatal(err)
	}
	f.Close() // retires the old upstream object
	f2 := e.open(t, "de")
	if code, _, h := get(t, client(f2, nil), s.url("acme.test")); code != 200 || h.Get("X-Upstream") != "u0" {
		t.Fatalf("after reload: %d %v", code, h)
	}
	m := e.metricsText(t)
	if !strings.Contains(m, `cdpvault_geo_requests_total{addr="`+strings.TrimPrefix(u0.URL(), "http://")+`",pool="de",upstream="0"} 2`) {
		t.Fatalf("requests series lost across reload:\n%s", m)
	}
	if strings.Contains(m, "new-user") || strings.Contains(m, user(0)) {
		t.Fatal("username in metrics")
	}
}

// A request body not yet read by a failed upstream is replayed on the next.
func TestPlainPOSTBodySurvivesFailover(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	u1 := newTestUpstream(t, "u1", user(1), pw(1), false)
	_, f := openPool(t, deadURL(t, "http"), u1.URL())
	if code, body, h := post(t, client(f, nil), s.url("acme.test"), strings.NewReader("form=data&x=1")); code != 200 || h.Get("X-Upstream") != "u1" {
		t.Fatalf("POST: %d %q via %q", code, body, h.Get("X-Upstream"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bodies) != 1 || s.bodies[0] != "form=data&x=1" {
		t.Fatalf("site got bodies %q", s.bodies)
	}
}

// A plain request whose upstream accepts it and then never answers is cut
// after the idle timeout with the constant error, not held for ever.
func TestPlainRequestToHungUpstreamTimesOut(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	hung := stallURL(t)
	pools, secrets := poolOf(hung)
	e := newEnv(t, pools, secrets, func(o *Options) { o.IdleTimeout = 300 * time.Millisecond })
	f := e.open(t, "de")
	start := time.Now()
	code, body, _ := get(t, client(f, nil), s.url("acme.test"))
	if code != http.StatusBadGateway || body != unavailableBody {
		t.Fatalf("got %d %q", code, body)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 10*time.Second {
		t.Fatalf("answered after %v", d)
	}
}

// The browser's CONNECT headers (its own Proxy-Authorization included) never
// reach the upstream: the forwarder sends a CONNECT of its own.
func TestConnectSendsOnlyOwnHeaders(t *testing.T) {
	t.Parallel()
	ts := newSite(t, true)
	u0 := newTestUpstream(t, "u0", user(0), pw(0), false)
	_, f := openPool(t, u0.URL())
	conn, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	target := "acme.test:" + ts.port()
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\nProxy-Connection: keep-alive\r\nUser-Agent: chrome-ua\r\nX-Leak: 1\r\n\r\n",
		target, target, basic("chrome", "chrome-own-pass"))
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	u0.mu.Lock()
	defer u0.mu.Unlock()
	if len(u0.connHdrs) != 1 {
		t.Fatalf("upstream saw %d CONNECTs", len(u0.connHdrs))
	}
	h := u0.connHdrs[0]
	if got := h.Values("Proxy-Authorization"); len(got) != 1 || got[0] != basic(user(0), pw(0)) {
		t.Fatalf("upstream Proxy-Authorization = %d values", len(got))
	}
	for _, k := range []string{"Proxy-Connection", "User-Agent", "X-Leak"} {
		if h.Get(k) != "" {
			t.Errorf("browser header %s reached the upstream", k)
		}
	}
}
