package geo

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestSessionUsernameTemplate: an upstream username with {session} (how
// commercial gateways are told to keep a session on one exit) is expanded
// with the geo session's id: the same id on every request of a session,
// plain HTTP and CONNECT alike, another id for another session, and one of
// its own for health checks, which belong to no session. The password is
// the vault's, as for a fixed username. A kept-alive connection to the
// upstream serves one session only: gateways may pin the exit per
// connection.
func TestSessionUsernameTemplate(t *testing.T) {
	t.Parallel()
	s := newSite(t, false)
	ts := newSite(t, true)
	re := regexp.MustCompile(`^cust-7-cc-de-session-([a-z0-9]{16})$`)
	u1 := newTestUpstreamAuth(t, "u1", func(h string) bool {
		user, pass, ok := parseBasic(h)
		return ok && re.MatchString(user) && pass == pw(0)
	}, false)
	pools := map[string]PoolConfig{"de": {Timezone: "Europe/Berlin", Locale: "de-DE", Upstreams: []UpstreamConfig{
		{URL: u1.URL(), Username: "cust-7-cc-de-session-{session}", PasswordSecret: "proxy_de_0"},
	}}}
	e := newEnv(t, pools, map[string]string{"proxy_de_0": pw(0)}, func(o *Options) {
		o.HealthTarget = "acme.test:" + ts.port()
	})

	f1, f2 := e.open(t, "de"), e.open(t, "de")
	c1 := client(f1, certPool(ts.srv))
	for _, u := range []string{s.url("acme.test"), s.url("acme.test") + "?again", ts.url("acme.test")} {
		if code, body, _ := get(t, c1, u); code != 200 || !strings.Contains(body, "hello from site") {
			t.Fatalf("session 1, %s: %d %q", u, code, body)
		}
	}
	if code, _, _ := get(t, client(f2, nil), s.url("acme.test")); code != 200 {
		t.Fatalf("session 2: %d", code)
	}
	e.r.checkAll(context.Background())
	if counter(t, e, "up", "de", 0) != 1 {
		t.Fatal("the health check through the templated username failed")
	}
	if n := u1.bad.Load(); n != 0 {
		t.Fatalf("the upstream refused %d credentials", n)
	}

	users := u1.Users()
	if len(users) != 5 {
		t.Fatalf("the upstream saw %d requests (%v), want 5: 3 of session 1, 1 of session 2, 1 health check", len(users), users)
	}
	ids := make([]string, len(users))
	for i, u := range users {
		m := re.FindStringSubmatch(u)
		if m == nil {
			t.Fatalf("username %q", u)
		}
		ids[i] = m[1]
	}
	if ids[0] != ids[1] || ids[0] != ids[2] {
		t.Fatalf("session 1 used ids %v, want one", ids[:3])
	}
	if ids[3] == ids[0] || ids[4] == ids[0] || ids[4] == ids[3] {
		t.Fatalf("ids of session 1, session 2, health check: %v, want three different ones", ids)
	}
	if slices.Contains(users, "cust-7-cc-de-session-{session}") {
		t.Fatal("the placeholder went out unexpanded")
	}
	// requests 0 and 1: session 1's plain GETs, one kept-alive connection;
	// request 3: session 2's plain GET, which must not reuse it.
	remotes := u1.Remotes()
	if remotes[0] != remotes[1] {
		t.Errorf("session 1's plain requests came from %s and %s, want one kept-alive connection", remotes[0], remotes[1])
	}
	if remotes[3] == remotes[0] {
		t.Errorf("session 2's request reused session 1's upstream connection %s", remotes[0])
	}
}

// newUpstream refuses {session} on a socks5 upstream by itself, fail
// closed, for a config that did not go through ValidatePools.
func TestNewUpstreamRefusesTemplatedSOCKS5(t *testing.T) {
	t.Parallel()
	pools, secrets := poolOf("http://127.0.0.1:1")
	e := newEnv(t, pools, secrets, nil)
	_, err := newUpstream(e.r, "de", 0, UpstreamConfig{URL: "socks5://127.0.0.1:1080", Username: "cust-{session}", PasswordSecret: "proxy_0"})
	if err == nil || !strings.Contains(err.Error(), "supported on http and https upstreams only") {
		t.Fatalf("templated socks5 upstream: %v, want refused", err)
	}
}
