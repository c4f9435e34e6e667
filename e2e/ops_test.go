package e2e_test

import (
	"bytes"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLifecycleSIGTERM: SIGTERM with open sessions: every client socket gets
// a close frame, the daemon exits 0 within 10 s, no browser is left, and the
// store is intact (the CLI lists everything; a restarted daemon serves it).
func TestLifecycleSIGTERM(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "info")
	s1 := f.D.NewSession(t, f.Token, SessionOpts{Secrets: []string{acmePassword}})
	s2 := f.D.NewSession(t, f.BetaToken, SessionOpts{})
	b1 := DialRaw(t, s1.WSURL)
	_, sid := b1.NewPageSession(f.Site.URL("acme", "/blank"))
	b1.Evaluate(sid, "1")
	b2 := DialRaw(t, s2.WSURL)
	b2.MustCall("", "Browser.getVersion", nil, nil)
	if f.Env.BrowserProcs() == 0 {
		t.Fatalf("no browser processes visible with two open sessions: the test cannot check for leftovers")
	}
	start := time.Now()
	f.D.Signal(syscall.SIGTERM)
	for name, r := range map[string]*RawCDP{"acme session": b1, "beta session": b2} {
		if closed, _, err := r.WaitClosed(12 * time.Second); !closed {
			t.Errorf("%s socket on SIGTERM: %v", name, err)
		}
	}
	if code := f.D.Wait(12 * time.Second); code != 0 {
		t.Errorf("daemon exit code %d after SIGTERM, want 0\nlog:\n%s", code, f.D.Log())
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("daemon took %v to stop, want at most 10s", el)
	}
	if err := f.Env.WaitBrowserProcs(0, 5*time.Second); err != nil {
		t.Errorf("after the daemon exited: %v", err)
	}
	out := f.Env.MustCLI(nil, "secret", "ls", "--tenant", "acme")
	for _, name := range []string{acmePassword, acmePlain, acmeOther} {
		if !strings.Contains(out, name) {
			t.Errorf("secret ls after SIGTERM lacks %s:\n%s", name, out)
		}
	}
	for name, v := range allValues {
		if hits := bytesHits([]byte(out), v); len(hits) > 0 {
			t.Errorf("secret ls printed the value of %s", name)
		}
	}
	if out := f.Env.MustCLI(nil, "tenant", "ls"); !strings.Contains(out, "acme") || !strings.Contains(out, "beta") {
		t.Errorf("tenant ls after SIGTERM:\n%s", out)
	}
	// A new daemon on the same data dir serves the same store.
	d2 := f.Env.Start()
	if code, body := d2.API(t, http.MethodGet, "/api/v1/secrets/"+acmePassword, f.Token, nil); code != http.StatusOK {
		t.Errorf("after restart GET secret = %d %s", code, body)
	}
	d2.NewSession(t, f.Token, SessionOpts{Secrets: []string{acmePassword}})
}

// TestLifecycleSIGHUPReloadsLogLevel: changing log.level from info to debug
// and sending SIGHUP takes effect without dropping an open session.
func TestLifecycleSIGHUPReloadsLogLevel(t *testing.T) {
	t.Parallel()
	f := NewFixture(t, "info")
	s := f.D.NewSession(t, f.Token, SessionOpts{Secrets: []string{acmePassword}})
	r := DialRaw(t, s.WSURL)
	_, sid := r.NewPageSession("about:blank")
	r.Navigate(sid, f.Site.URL("acme", "/blank"))
	f.D.API(t, http.MethodGet, "/api/v1/sessions", f.Token, nil)
	debug := []byte(`"level":"DEBUG"`)
	if bytes.Contains(f.D.Log(), debug) {
		t.Fatalf("debug lines at level info:\n%s", f.D.Log())
	}
	f.Env.WriteConfig("debug")
	f.D.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(15 * time.Second)
	for !bytes.Contains(f.D.Log(), debug) {
		if time.Now().After(deadline) {
			t.Fatalf("no debug line within 15s of SIGHUP with log.level debug (CDP connections opened and closed, API calls made meanwhile)\nlog:\n%s", f.D.Log())
		}
		// Activity a debug log mentions (a CDP client connection that
		// comes and goes, API calls); the open connection keeps answering.
		extra := DialRaw(t, s.WSURL)
		extra.MustCall("", "Browser.getVersion", nil, nil)
		extra.c.Close()
		r.MustCall("", "Browser.getVersion", nil, nil)
		f.D.API(t, http.MethodGet, "/api/v1/sessions", f.Token, nil)
		time.Sleep(100 * time.Millisecond) // polling the daemon's log
	}
	if got := string(r.Evaluate(sid, "document.title")); got != `"blank"` {
		t.Errorf("after SIGHUP the session's page answers %s", got)
	}
	if code, body := f.D.API(t, http.MethodGet, "/api/v1/sessions", f.Token, nil); code != http.StatusOK || !strings.Contains(string(body), s.ID) {
		t.Errorf("after SIGHUP the session is not listed: %d %s", code, body)
	}
	select {
	case <-f.D.exited:
		t.Fatalf("daemon exited on SIGHUP: %v", f.D.exitErr)
	default:
	}
}
