package e2e_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestScrubEchoPage: a page shows two stored secrets raw, in an attribute,
// URL-encoded in a link, base64 in a data attribute, in a JSON script, in
// console.log and in a form field, and sends them in a Basic Authorization
// header and a request body. Every way Playwright and Puppeteer read it back
// holds only <<secret:NAME>>, although the session was granted no secret.
// The daemon's debug log, /metrics and API answers hold no copy either.
func TestScrubEchoPage(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "debug")
	f.Site.SetEchoValues(plainValue, trickyValue)
	wantRaw := []string{placeholder(acmePlain), placeholder(acmePassword)}
	for script := range echoChannels {
		t.Run(strings.TrimSuffix(script, ".mjs"), func(t *testing.T) {
			s := f.D.NewSession(t, f.Token, SessionOpts{})
			out := runNode(t, script, map[string]string{"CDP_URL": s.CDPURL, "WS_URL": s.WSURL,
				"ECHO_URL": f.Site.URL("acme", "/echo"), "N": "2"})
			for name, v := range allValues {
				if hits := valueHits(out, v); len(hits) > 0 {
					t.Errorf("%s read back the value of %s: %v", script, name, hits)
				}
			}
			// The page really was read: its text came back with placeholders.
			var r struct {
				Evaluate struct {
					Raw        []string `json:"raw"`
					FieldValue []string `json:"fieldValue"`
				} `json:"evaluate"`
			}
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("%s output: %v", script, err)
			}
			if fmt.Sprint(r.Evaluate.Raw) != fmt.Sprint(wantRaw) || fmt.Sprint(r.Evaluate.FieldValue) != fmt.Sprint(wantRaw) {
				t.Errorf("%s: text %q, field values %q; want exactly %q", script, r.Evaluate.Raw, r.Evaluate.FieldValue, wantRaw)
			}
			for _, ph := range wantRaw {
				if !bytes.Contains(out, []byte(ph)) {
					t.Errorf("%s output never shows %s", script, ph)
				}
			}
		})
	}
	// The site did get the values from the page (the page is not broken).
	if n := len(f.Site.Received("acme.test", "/echo-api")); n < 4 {
		t.Errorf("the echo page sent %d requests, want 2 per client", n)
	}
	f.AssertDaemonOutputClean(t)
	if v := metricValue(f.D.Metrics(), "cdpvault_redactions_total"); v <= 0 {
		t.Errorf("cdpvault_redactions_total = %v after scrubbing the echo page, want > 0", v)
	}
}

// TestScrubSecretStoredDuringSession: a secret stored (and one replaced)
// through the API while a session runs is scrubbed from that session at once.
func TestScrubSecretStoredDuringSession(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "info")
	s := f.D.NewSession(t, f.Token, SessionOpts{})
	// The session is live before the secrets change.
	runNode(t, "pw-basic.mjs", map[string]string{"CDP_URL": s.CDPURL, "SITE_URL": f.Site.Origin("acme")})
	late := []byte("LateSecretValue-" + randomHex(6))
	replaced := []byte("ReplacedPlainValue-" + randomHex(6))
	for _, c := range []struct {
		name  string
		value []byte
		want  int
	}{{"late_secret", late, http.StatusCreated}, {acmePlain, replaced, http.StatusOK}} {
		code, body := f.D.API(t, http.MethodPost, "/api/v1/secrets", f.Token, map[string]any{
			"name": c.name, "value": string(c.value), "origins": []string{f.Site.Origin("acme")}})
		if code != c.want {
			t.Fatalf("POST /api/v1/secrets %s = %d %s, want %d", c.name, code, body, c.want)
		}
		if hits := bytesHits(body, c.value); len(hits) > 0 {
			t.Errorf("POST /api/v1/secrets answered with the value: %v", hits)
		}
	}
	f.Site.SetEchoValues(late, replaced)
	out := runNode(t, "pw-echo.mjs", map[string]string{"CDP_URL": s.CDPURL, "ECHO_URL": f.Site.URL("acme", "/echo"), "N": "2"})
	for name, v := range map[string][]byte{"late_secret": late, acmePlain + " (new version)": replaced} {
		if hits := valueHits(out, v); len(hits) > 0 {
			t.Errorf("the running session read back %s: %v", name, hits)
		}
	}
	if !bytes.Contains(out, []byte(placeholder("late_secret"))) {
		t.Errorf("the echo page never showed <<secret:late_secret>>")
	}
}

// metricValue sums the samples of a metric family in Prometheus text format
// (-1 if absent).
func metricValue(body []byte, name string) float64 {
	sum, found := 0.0, false
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil && len(f) >= 2 {
			sum += v
			found = true
		}
	}
	if !found {
		return -1
	}
	return sum
}

// TestScrubDaemonMemoryHoldsNoValueAfterSession: after a session that
// injected one secret and scrubbed two, the daemon's readable memory holds no
// plaintext copy of them (memguard enclaves are encrypted and do not count).
func TestScrubDaemonMemoryHoldsNoValueAfterSession(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "info")
	f.Site.SetEchoValues(plainValue, trickyValue)
	base := f.Env.BrowserProcs()
	s := f.D.NewSession(t, f.Token, SessionOpts{Secrets: []string{acmePassword}})
	runNode(t, "pw-login.mjs", map[string]string{"CDP_URL": s.CDPURL, "MODE": "fill", "LOGIN_URL": f.Site.URL("acme", "/login"),
		"USERNAME": "alice", "TEXT": placeholder(acmePassword)})
	runNode(t, "pw-echo.mjs", map[string]string{"CDP_URL": s.CDPURL, "ECHO_URL": f.Site.URL("acme", "/echo"), "N": "2"})
	if code, body := f.D.API(t, http.MethodDelete, "/api/v1/sessions/"+s.ID, f.Token, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE session = %d %s", code, body)
	}
	if err := f.Env.WaitBrowserProcs(base, 15*time.Second); err != nil {
		t.Fatalf("after DELETE: %v", err)
	}
	needles := map[string][]byte{
		"plain raw":        plainValue,
		"tricky raw":       trickyValue,
		"tricky cdp-json":  []byte(asciiJSON(string(trickyValue))),
		"tricky html-text": htmlForms(string(trickyValue))["html-text"],
	}
	hits, err := scanProcessMemory(f.D.Pid(), needles)
	if err != nil {
		t.Fatalf("scan daemon memory: %v", err)
	}
	for name, n := range hits {
		if n > 0 {
			t.Errorf("daemon memory holds %d copies of the %s value after the session", n, name)
		}
	}
}

// scanProcessMemory counts occurrences of each needle in the readable
// mappings of pid (needs ptrace access: root or the same user).
func scanProcessMemory(pid int, needles map[string][]byte) (map[string]int, error) {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	counts := map[string]int{}
	maxLen := 0
	for _, n := range needles {
		maxLen = max(maxLen, len(n))
	}
	const chunk = 1 << 20
	buf := make([]byte, chunk+maxLen)
	scanned := 0
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[1][0] != 'r' || (len(f) >= 6 && (f[5] == "[vvar]" || f[5] == "[vsyscall]" || f[5] == "[vvar_vclock]")) {
			continue
		}
		var start, end uint64
		if _, err := fmt.Sscanf(f[0], "%x-%x", &start, &end); err != nil {
			continue
		}
		for off := start; off < end; off += chunk {
			n := min(uint64(len(buf)), end-off)
			got, _ := mem.ReadAt(buf[:n], int64(off))
			if got <= 0 {
				break
			}
			scanned += got
			for name, nd := range needles {
				// Count starts inside this chunk only; the overlap is for
				// matches that cross into the next chunk.
				data := buf[:got]
				for i := 0; ; {
					j := bytes.Index(data[i:], nd)
					if j < 0 || uint64(i+j) >= chunk {
						break
					}
					counts[name]++
					i += j + 1
				}
			}
		}
	}
	if scanned == 0 {
		return nil, fmt.Errorf("read nothing from /proc/%d/mem", pid)
	}
	return counts, nil
}
