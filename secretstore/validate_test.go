package secretstore

import (
	"errors"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	t.Parallel()
	good := []string{"a", "Z", "0", "acme", "acme_login", "a.b-c_d", "A" + strings.Repeat("b", 127)}
	bad := []string{"", "_a", ".a", "-a", "a b", "a/b", "a:b", "ä", "a\n", "A" + strings.Repeat("b", 128), "<<secret:x>>", "a\x00"}
	for _, n := range good {
		if !ValidName(n) {
			t.Errorf("ValidName(%q) = false", n)
		}
	}
	for _, n := range bad {
		if ValidName(n) {
			t.Errorf("ValidName(%q) = true", n)
		}
	}
}

func TestValidOrigin(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"*":                            "*",
		"https://acme.example.com":     "https://acme.example.com",
		"HTTPS://ACME.Example.COM":     "https://acme.example.com",
		"https://acme.example.com/":    "https://acme.example.com",
		"https://acme.example.com:443": "https://acme.example.com",
		"http://acme.test:80":          "http://acme.test",
		"http://acme.test:8080":        "http://acme.test:8080",
		"https://acme.test:80":         "https://acme.test:80",
		"http://127.0.0.1:9222":        "http://127.0.0.1:9222",
		"http://[::1]:8080":            "http://[::1]:8080",
		"http://[0:0:0:0:0:0:0:1]":     "http://[::1]",
		"https://bücher.example":       "https://xn--bcher-kva.example",
		"http://localhost":             "http://localhost",
		"https://acme.test:08443":      "https://acme.test:8443",
	}
	for in, want := range good {
		got, err := ValidOrigin(in)
		if err != nil || got != want {
			t.Errorf("ValidOrigin(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{
		"", "acme.example.com", "ftp://acme.test", "javascript:alert(1)", "https://", "https://user:pw@acme.test",
		"https://acme.test/login", "https://acme.test?x=1", "https://acme.test#f", "https://acme.test:", "https://acme.test:0",
		"https://acme.test:65536", "https://acme.test:http", "https://*.acme.test", "https://acme test", " https://acme.test",
		"https://acme.test\n", "https://[::1", "https://-acme.test", "https://acme..test", "https://acme.test.", "**",
		"https://[fe80::1%25eth0]", "https://" + strings.Repeat("a", 300), "data:text/html,x", "https://acme.test\\@evil.test",
		"https:acme.test", "https:///acme.test",
	}
	for _, in := range bad {
		got, err := ValidOrigin(in)
		if !errors.Is(err, ErrInvalidOrigin) {
			t.Errorf("ValidOrigin(%q) = %q, %v; want ErrInvalidOrigin", in, got, err)
		}
	}
}

func TestCheckValue(t *testing.T) {
	t.Parallel()
	type tc struct {
		kind  Kind
		value string
		ok    bool
	}
	cases := []tc{
		{"", "correct horse", true},
		{KindPassword, "pässwört-ok", true},
		{KindPassword, "", false},
		{KindPassword, "short7!", false},
		{KindPassword, "12345678", true},
		{KindPassword, strings.Repeat("x", MaxValueLen), true},
		{KindPassword, strings.Repeat("x", MaxValueLen+1), false},
		{KindPassword, "hunter22\n", false}, // a CLI that forgot to strip the newline
		{KindPassword, "tab\there-pw", false},
		{KindPassword, "bad\xffutf8-value", false},
		{KindText, "line one\nline two\ttab", true},
		{KindText, "nul\x00inside-text", false},
		{KindTOTP, "JBSWY3DPEHPK3PXP", true},
		{KindTOTP, "jbsw y3dp ehpk 3pxp", true},
		{KindTOTP, "JBSWY3DPEHPK3PX==", false}, {KindTOTP, "JBSWY3DPEHPK3PX=", true}, {KindTOTP, "JBSW=Y3DPEHPK3PX", false},
		{KindTOTP, "JBSWY3DPEHPK3PXP1", false},
		{KindTOTP, "not base32 at all!", false},
		{"bogus", "whatever-value", false},
	}
	for _, c := range cases {
		err := CheckValue(c.kind, []byte(c.value))
		if c.ok != (err == nil) {
			t.Errorf("CheckValue(%q, %q) = %v, want ok=%v", c.kind, c.value, err, c.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidValue) {
				t.Errorf("CheckValue(%q, %q) = %v, want ErrInvalidValue", c.kind, c.value, err)
			}
			if len(c.value) >= 4 && strings.Contains(err.Error(), c.value) {
				t.Errorf("error %q contains the value", err)
			}
		}
	}
	if err := CheckValue("bogus", []byte("whatever-value")); !errors.Is(err, ErrInvalidKind) {
		t.Errorf("unknown kind: %v, want ErrInvalidKind", err)
	}
}

// FuzzValidOrigin: never panics, and a normalised origin is a fixed point that is accepted
// again unchanged and carries no path, query, fragment or user info.
func FuzzValidOrigin(f *testing.F) {
	for _, s := range []string{"*", "https://acme.test", "HTTP://A.B:80/", "http://[::1]:1", "https://bücher.example", "https://a@b", "http://x:0", "https://acme.test:443"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ValidOrigin(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidOrigin) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		n2, err := ValidOrigin(n)
		if err != nil || n2 != n {
			t.Fatalf("%q -> %q -> %q, %v", s, n, n2, err)
		}
		if n != "*" && (strings.ContainsAny(n[len("https://"):], "/?#@ ") || !(strings.HasPrefix(n, "http://") || strings.HasPrefix(n, "https://"))) {
			t.Fatalf("%q normalised to %q", s, n)
		}
	})
}
