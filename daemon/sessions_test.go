package daemon

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/awnumar/memguard"

	"github.com/cdpvault/cdpvault/api"
	"github.com/cdpvault/cdpvault/inject"
	"github.com/cdpvault/cdpvault/secretstore"
	"github.com/cdpvault/cdpvault/totp"
)

func TestTenantVaultResolves(t *testing.T) {
	dir := t.TempDir()
	key, err := secretstore.LoadMasterKey(filepath.Join(dir, "master.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := secretstore.Open(ctx, secretstore.Options{Path: filepath.Join(dir, "s.db"), MasterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	tn, _ := st.Tenant(ctx, "acme")
	if _, _, err := tn.PutSecret(ctx, "pw", []byte("password-value"), []string{"https://acme.example"}, secretstore.KindPassword); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tn.PutSecret(ctx, "otp", []byte("JBSWY3DPEHPK3PXP"), []string{"https://acme.example"}, secretstore.KindTOTP); err != nil {
		t.Fatal(err)
	}
	v := tenantVault{t: tn}
	sec, err := v.Resolve(ctx, "pw")
	if err != nil || string(sec.Value.Bytes()) != "password-value" || sec.Version != 1 || len(sec.Origins) != 1 {
		t.Fatalf("resolve pw: %v", err)
	}
	sec.Value.Destroy()
	if _, err := v.Resolve(ctx, "missing"); !errors.Is(err, inject.ErrUnknownSecret) {
		t.Fatalf("missing secret: %v", err)
	}
	// A TOTP seed is never typed into a page: its current code is. Expected
	// codes computed independently (Python's hmac and base64 modules) for
	// seed JBSWY3DPEHPK3PXP at those times.
	for _, c := range []struct {
		at   int64
		want string
	}{{59, "996554"}, {1111111109, "071271"}, {1700000000, "324550"}} {
		v.clock = func() time.Time { return time.Unix(c.at, 0) }
		sec, err := v.Resolve(ctx, "otp")
		if err != nil {
			t.Fatalf("resolve otp: %v", err)
		}
		got := string(sec.Value.Bytes())
		sec.Value.Destroy()
		if got != c.want || sec.Version != 1 || len(sec.Origins) != 1 {
			t.Fatalf("otp at %d: %q (version %d, origins %v), want code %s", c.at, got, sec.Version, sec.Origins, c.want)
		}
	}
}

// Create refuses before starting anything: too many sessions, a TTL over
// max_ttl, an unknown pool, a secret the tenant lacks, a stopping daemon.
func TestCreateRefusals(t *testing.T) {
	dir := t.TempDir()
	key, err := secretstore.LoadMasterKey(filepath.Join(dir, "master.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := secretstore.Open(ctx, secretstore.Options{Path: filepath.Join(dir, "s.db"), MasterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	tn, _ := st.Tenant(ctx, "acme")
	cfg := Defaults()
	cfg.Sessions.Max = 1
	cfg.Sessions.MaxTTL = time.Hour
	d := &daemon{cfg: cfg, store: st, logger: slog.New(slog.DiscardHandler)}
	m := newSessionManager(d)
	cases := []struct {
		name   string
		req    api.SessionRequest
		status int
		code   string
	}{
		{"unknown secret", api.SessionRequest{Secrets: []string{"nope"}}, 404, "secret_not_found"},
		{"unknown pool", api.SessionRequest{Geo: "de"}, 400, "unknown_geo_pool"},
		{"ttl over max", api.SessionRequest{TTLSeconds: 7200}, 400, "invalid_ttl"},
	}
	check := func(name string, err error, status int, code string) {
		t.Helper()
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != status || ae.Code != code {
			t.Errorf("%s: %v, want %d %s", name, err, status, code)
		}
	}
	for _, tc := range cases {
		_, err := m.Create(ctx, tn, tc.req, "http://127.0.0.1:1")
		check(tc.name, err, tc.status, tc.code)
	}
	m.sessions["s_x"] = &session{id: "s_x", tenant: "acme"}
	_, err = m.Create(ctx, tn, api.SessionRequest{}, "http://127.0.0.1:1")
	check("too many", err, 429, "too_many_sessions")
	delete(m.sessions, "s_x")
	m.closeAndList()
	_, err = m.Create(ctx, tn, api.SessionRequest{}, "http://127.0.0.1:1")
	check("stopping", err, 503, "shutting_down")
	// Another tenant's session is not found, like an absent one.
	other := &session{id: "s_other", tenant: "beta"}
	m.sessions[other.id] = other
	check("delete other tenant's", m.Delete(tn, "s_other"), 404, "not_found")
	check("delete absent", m.Delete(tn, "s_absent"), 404, "not_found")
	if got := m.List(tn, "http://x"); len(got) != 0 {
		t.Errorf("tenant lists another tenant's session: %+v", got)
	}
}

// totpCode's refusal: a seed that is not base32 (the store refuses one at
// put, so only a damaged row could hold it) is an error that quotes none of
// it, and no code comes back.
func TestTOTPCodeRefusesBadSeed(t *testing.T) {
	seed := memguard.NewBufferFromBytes([]byte("not-base32-seed!"))
	defer seed.Destroy()
	code, err := totpCode(seed, time.Unix(59, 0))
	if !errors.Is(err, totp.ErrSeed) || code != nil {
		t.Fatalf("bad seed: %v, %v", code, err)
	}
	if strings.Contains(err.Error(), "base32-seed") {
		t.Fatalf("the error quotes the seed: %v", err)
	}
}
