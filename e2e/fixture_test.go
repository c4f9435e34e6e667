package e2e_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// Fixture is the usual set-up: a test site, a data dir with tenant "acme"
// (and "beta"), their secrets, and a running daemon.
type Fixture struct {
	Site      *Site
	Env       *Env
	D         *Daemon
	Token     string // acme's API token
	BetaToken string
}

// Secret names the fixture stores.
const (
	acmePassword = "acme_password" // trickyValue, injectable on acme.test
	acmePlain    = "acme_plain"    // plainValue, injectable on acme.test
	acmeOther    = "acme_other"    // otherValue, on acme.test, never granted
	betaPassword = "beta_password" // betaValue, tenant beta, on acme.test
)

func placeholder(name string) string { return "<<secret:" + name + ">>" }

// NewFixture sets up the site, both tenants and their secrets with the CLI,
// then starts the daemon with the given log level.
func NewFixture(t testing.TB, logLevel string) *Fixture {
	t.Helper()
	f := &Fixture{Site: NewSite(t), Env: NewEnv(t, logLevel)}
	acme := f.Site.Origin("acme")
	f.Token = f.Env.Tenant("acme")
	f.BetaToken = f.Env.Tenant("beta")
	f.Env.SetSecret("acme", acmePassword, trickyValue, acme)
	f.Env.SetSecret("acme", acmePlain, plainValue, acme)
	f.Env.SetSecret("acme", acmeOther, otherValue, acme)
	f.Env.SetSecret("beta", betaPassword, betaValue, acme)
	f.D = f.Env.Start()
	return f
}

// allValues are every secret value the fixture stores.
var allValues = map[string][]byte{acmePassword: trickyValue, acmePlain: plainValue, acmeOther: otherValue, betaPassword: betaValue}

// AssertDaemonOutputClean checks the daemon's log, /metrics and its API
// answers for any form of any stored value.
func (f *Fixture) AssertDaemonOutputClean(t *testing.T) {
	t.Helper()
	sources := map[string][]byte{"daemon log": f.D.Log(), "/metrics": f.D.Metrics()}
	for _, p := range []string{"/api/v1/secrets", "/api/v1/sessions", "/api/v1/audit", "/api/v1/secrets/" + acmePassword} {
		_, body := f.D.API(t, http.MethodGet, p, f.Token, nil)
		sources["GET "+p] = body
	}
	for src, data := range sources {
		for name, v := range allValues {
			if hits := bytesHits(data, v); len(hits) > 0 {
				t.Errorf("%s holds the value of %s: %v", src, name, hits)
			}
		}
	}
}

// Audit returns the token's audit records as generic JSON objects. The
// interface names the endpoint and the fields (time, session, secret name
// and version, origin, sink, result) but not the envelope, so any array of
// objects in the answer counts.
func (f *Fixture) Audit(t *testing.T, token string) ([]map[string]any, []byte) {
	t.Helper()
	code, body := f.D.API(t, http.MethodGet, "/api/v1/audit", token, nil)
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/audit = %d %s", code, body)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET /api/v1/audit body %s: %v", body, err)
	}
	var recs []map[string]any
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				if m, ok := e.(map[string]any); ok {
					recs = append(recs, m)
				} else {
					walk(e)
				}
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return recs, body
}

// auditMatching returns the records that name secret (as the exact value of
// some field, "" = any) and have a field whose value starts with result
// ("injected", "refused"), case-insensitively.
func auditMatching(recs []map[string]any, secret, result string) []map[string]any {
	var out []map[string]any
	for _, r := range recs {
		named, res := secret == "", false
		for _, v := range r {
			s, ok := v.(string)
			if !ok {
				continue
			}
			named = named || s == secret
			res = res || strings.HasPrefix(strings.ToLower(s), strings.ToLower(result))
		}
		if named && res {
			out = append(out, r)
		}
	}
	return out
}
