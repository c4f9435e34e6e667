package geo

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestValidatePoolsReportsEveryProblem(t *testing.T) {
	t.Parallel()
	pools := map[string]PoolConfig{
		"ok": {Timezone: "Europe/Berlin", Locale: "de-DE", Upstreams: []UpstreamConfig{
			{URL: "http://p1.example:8080", Username: "u", PasswordSecret: "proxy_1"},
			{URL: "https://p2.example", Username: "u", PasswordSecret: "proxy_2"},
			{URL: "socks5://p3.example:1080"},
			{URL: "http://p4.example:8080", Username: "cust-acme-cc-de-session-{session}", PasswordSecret: "proxy_4"},
			{URL: "https://p5.example", Username: "{session}", PasswordSecret: "proxy_5"},
		}},
		"bad": {Timezone: "Mars/Olympus", Locale: "not a locale!", Upstreams: []UpstreamConfig{
			{URL: "ftp://p.example:21"},
			{URL: "http://user:hunter2@p.example:8080"},
			{URL: "http://p.example:99999"},
			{URL: "http://p.example/path"},
			{URL: "p.example:8080"},
			{URL: "http://p.example", Username: "u"},
			{URL: "http://p.example", PasswordSecret: "x"},
			{URL: "http://p.example", Username: "a:b", PasswordSecret: "bad name!"},
			{URL: "%zz"},
			{URL: "http://p.example", Username: "cust-{sesion}", PasswordSecret: "x"},
			{URL: "socks5://p.example:1080", Username: "cust-{session}", PasswordSecret: "x"},
			{URL: "http://p.example", Username: strings.Repeat("u", 240) + "{session}", PasswordSecret: "x"},
			{URL: "http://p.example", Username: "cust-}", PasswordSecret: "x"},
		}},
		"empty":    {},
		"bad name": {Timezone: "UTC", Locale: "en", Upstreams: []UpstreamConfig{{URL: "http://p.example"}}},
	}
	errs := ValidatePools(pools)
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	text := strings.Join(all, "\n")
	for _, want := range []string{
		`"bad": unknown timezone`, `"bad": locale "not a locale!"`,
		`upstream 0: unsupported url scheme "ftp"`,
		`upstream 1: url must not contain credentials`,
		`upstream 2: url port must be 1-65535`,
		`upstream 3: url must be scheme://host[:port]`,
		`upstream 4: `,
		`upstream 5: username set but password_secret missing`,
		`upstream 6: password_secret set but username missing`,
		`upstream 7: username must not contain ':'`,
		`upstream 7: invalid password_secret name`,
		`upstream 8: url does not parse`,
		`upstream 9: username: the only placeholder is {session}`,
		`upstream 10: username: {session} is supported on http and https upstreams only`,
		`upstream 11: username longer than 255 bytes (256 with {session} expanded)`,
		`upstream 12: username: the only placeholder is {session}`,
		`"empty": timezone is required`, `"empty": locale is required`, `"empty": no upstreams`,
		`"bad name": invalid pool name`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
	if strings.Contains(text, `"ok"`) {
		t.Errorf("valid pool reported:\n%s", text)
	}
	if strings.Contains(text, "hunter2") {
		t.Errorf("an error repeats a credential:\n%s", text)
	}
	if ValidatePools(map[string]PoolConfig{"ok": pools["ok"]}) != nil {
		t.Error("valid pool rejected")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	p := map[string]PoolConfig{"de": {Timezone: "Europe/Berlin", Locale: "de-DE",
		Upstreams: []UpstreamConfig{{URL: "http://127.0.0.1:1", Username: "u", PasswordSecret: "s"}}}}
	if _, err := New(Options{Pools: p}); err == nil || !strings.Contains(err.Error(), "no Credentials resolver") {
		t.Fatalf("New without Credentials: %v", err)
	}
	if _, err := New(Options{Pools: map[string]PoolConfig{"x": {}}}); err == nil {
		t.Fatal("New accepted an invalid pool")
	}
	r, err := New(Options{Pools: nil})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.OpenSession(context.Background(), "nope"); !errors.Is(err, ErrUnknownPool) {
		t.Fatalf("unknown pool: %v", err)
	}
	if r.HasPool("nope") || len(r.SecretNames()) != 0 {
		t.Fatal("empty router has pools")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

func TestBrowserArgsAndEnv(t *testing.T) {
	t.Parallel()
	pools, secrets := poolOf("http://127.0.0.1:1")
	e := newEnv(t, pools, secrets, nil)
	f := e.open(t, "de")
	args := BrowserArgs(f, pools["de"])
	for _, want := range []string{
		"--proxy-server=http://" + f.Addr(),
		"--proxy-bypass-list=<-loopback>",
		"--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
		"--lang=de-DE",
		"--accept-lang=de-DE,de",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("BrowserArgs lacks %q: %v", want, args)
		}
	}
	for _, a := range args {
		if strings.Contains(a, pw(0)) || strings.Contains(a, user(0)) {
			t.Errorf("credential in browser args: %q", a)
		}
	}
	if env := BrowserEnv(pools["de"]); !slices.Contains(env, "TZ=Europe/Berlin") {
		t.Errorf("BrowserEnv = %v", env)
	}
	if got := AcceptLanguage("en"); got != "en" {
		t.Errorf("AcceptLanguage(en) = %q", got)
	}
	if got := e.r.SecretNames(); !slices.Equal(got, []string{"proxy_de_0"}) {
		t.Errorf("SecretNames = %v", got)
	}
}
