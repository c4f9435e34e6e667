package e2e_test

import (
	"bytes"
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdpvault/cdpvault/totp"
)

// TestInjectTOTPCode: a secret of kind totp, typed by its placeholder with
// Playwright's fill(), reaches the site as the code of the moment (a form
// login and a fetch login, both from the typed field), never as the seed;
// neither the client nor the daemon's output holds the seed.
func TestInjectTOTPCode(t *testing.T) {
	t.Parallel()
	const name = "acme_totp"
	seed := []byte("JBSW Y3DP EHPK 3PXP") // spaces, as sites print seeds
	f := &Fixture{Site: NewSite(t), Env: NewEnv(t, "debug")}
	f.Token = f.Env.Tenant("acme")
	f.Env.MustCLI(seed, "secret", "set", "--tenant", "acme", name, "--origin", f.Site.Origin("acme"), "--kind", "totp")
	f.D = f.Env.Start()

	s := f.D.NewSession(t, f.Token, SessionOpts{Secrets: []string{name}})
	start := time.Now()
	out := runNode(t, "pw-login.mjs", map[string]string{"CDP_URL": s.CDPURL, "MODE": "fill",
		"LOGIN_URL": f.Site.URL("acme", "/login"), "USERNAME": "alice", "TEXT": placeholder(name)})
	end := time.Now()

	// The codes of every step the login may have fallen in.
	var valid []string
	for at := start.Add(-totp.Step); !at.After(end.Add(totp.Step)); at = at.Add(totp.Step) {
		c := make([]byte, totp.Digits)
		if err := totp.Code(c, seed, at); err != nil {
			t.Fatal(err)
		}
		valid = append(valid, string(c))
	}
	six := regexp.MustCompile(`^[0-9]{6}$`)
	var got []string
	for _, r := range f.Site.Requests() {
		if r.Host != "acme.test" {
			continue
		}
		switch {
		case r.Path == "/api/login":
			got = append(got, string(r.Body))
		case r.Path == "/login" && r.Method == "POST":
			q, err := url.ParseQuery(string(r.Body))
			if err != nil {
				t.Fatalf("form body %q: %v", r.Body, err)
			}
			got = append(got, q.Get("password"))
		}
	}
	if len(got) != 2 {
		t.Fatalf("the site received %d logins (%q), want the fetch and the form", len(got), got)
	}
	for _, g := range got {
		if !six.MatchString(g) || !slices.Contains(valid, g) {
			t.Errorf("the site received %q, want one of the codes %v", g, valid)
		}
	}
	var res struct{ Status, Refused string }
	if err := json.Unmarshal(out, &res); err != nil || res.Status != "sent 200" || !strings.Contains(res.Refused, "refused: secret "+name+" was typed") {
		t.Errorf("client output %s: want the fetch sent and script refused after typing", out)
	}
	compact := bytes.ReplaceAll(seed, []byte(" "), nil)
	for what, b := range map[string][]byte{"client output": out, "daemon log": f.D.Log()} {
		if bytes.Contains(b, seed) || bytes.Contains(b, compact) {
			t.Errorf("%s holds the seed", what)
		}
	}
	recs, body := f.Audit(t, f.Token)
	if len(auditMatching(recs, name, "injected")) == 0 {
		t.Errorf("no injection record for %s: %s", name, body)
	}
}
