package e2e_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var proxyFlag = regexp.MustCompile(`--proxy-server=(http://127\.0\.0\.1:[0-9]+)`)

// forwarderOf returns the --proxy-server of the env's browser (launch mode).
func forwarderOf(t *testing.T, env *Env) string {
	t.Helper()
	for _, pid := range env.browserPids() {
		cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if m := proxyFlag.FindSubmatch(cmdline); m != nil {
			return string(m[1])
		}
	}
	t.Fatal("no browser of this env runs with --proxy-server")
	return ""
}

// TestGeoForwarderServesOnlyItsBrowser: in launch mode a geo session's
// forwarder, reachable on loopback by every local process, serves only the
// session's own Chromium: this test process, outside the browser, connecting
// to the same port is refused, the pool carries nothing for it, and the
// refusal is counted.
func TestGeoForwarderServesOnlyItsBrowser(t *testing.T) {
	t.Parallel()
	site := NewSite(t)
	pw := []byte("Peer-pw-" + randomHex(8))
	live := newStampUpstream(t, "peer-live", "geo-user", string(pw))
	env := NewEnv(t, "debug")
	d, token := startGeo(t, env, map[string][]byte{"proxy_de_1": pw}, [3]string{live.srv.URL, "geo-user", "proxy_de_1"})
	s := newGeoSession(t, d, token, "de")
	r := DialRaw(t, s.WSURL)
	_, sid := r.NewPageSession("about:blank")
	r.Navigate(sid, site.URL("acme", "/blank?route=browser"))
	if len(live.Carried("route=browser")) != 1 {
		t.Fatalf("the session's browser was not served through the pool: %v", live.Carried(""))
	}

	fwd := forwarderOf(t, env)
	pu, _ := url.Parse(fwd)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	resp, err := c.Get(site.URL("acme", "/blank?route=outsider"))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a process outside the browser got %d through the session's forwarder", resp.StatusCode)
	}
	if got := live.Carried("route=outsider"); len(got) != 0 {
		t.Fatalf("the pool carried the outsider's request: %v", got)
	}
	for _, rq := range site.Received("acme.test", "/blank") {
		if strings.Contains(rq.RawQuery, "route=outsider") {
			t.Fatal("the site received the outsider's request")
		}
	}
	if !strings.Contains(string(d.Metrics()), `cdpvault_geo_refused_connections_total{pool="de"}`) {
		t.Errorf("no refused-connections metric for pool de")
	}
	// the browser is still served
	r.Navigate(sid, site.URL("acme", "/blank?route=browser-again"))
	if len(live.Carried("route=browser-again")) != 1 {
		t.Fatalf("the browser was not served after the refusal: %v", live.Carried(""))
	}
}
