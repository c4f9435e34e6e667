package secretstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
)

var tokenRE = regexp.MustCompile(`^cdpv_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$`)

func TestTokens(t *testing.T) {
	// Not parallel: swaps tokenHashEqual.
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	s := openStore(t, path, newKey(t))
	mustTenant(t, s, "acme")
	mustTenant(t, s, "other")

	if _, _, err := s.CreateToken(ctx, "nobody", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("token for missing tenant: %v", err)
	}
	if _, _, err := s.CreateToken(ctx, "acme", "bad\nlabel"); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("bad label: %v", err)
	}
	tok, info, err := s.CreateToken(ctx, "acme", "ci runner")
	if err != nil {
		t.Fatal(err)
	}
	if !tokenRE.MatchString(tok) || !strings.Contains(tok, info.ID) || info.Label != "ci runner" || info.CreatedAt.IsZero() {
		t.Fatalf("token %q info %+v", tok, info)
	}
	tok2, _, _ := s.CreateToken(ctx, "acme", "")
	otherTok, _, _ := s.CreateToken(ctx, "other", "")
	if tok2 == tok {
		t.Fatal("two tokens are equal")
	}

	// Only the hash is stored.
	var stored []byte
	s.db.QueryRow(`SELECT hash FROM tokens WHERE id = ?`, info.ID).Scan(&stored)
	sum := sha256.Sum256([]byte(tok))
	if string(stored) != string(sum[:]) {
		t.Fatal("stored hash is not SHA-256 of the token")
	}
	if found := scanFiles(t, storeFiles(path), map[string][]byte{"token": []byte(tok), "secret part": []byte(tok[len(tok)-43:])}); len(found) != 0 {
		t.Fatalf("token in files: %v", found)
	}

	var compares atomic.Int32
	orig := tokenHashEqual
	tokenHashEqual = func(a, b []byte) bool { compares.Add(1); return orig(a, b) }
	defer func() { tokenHashEqual = orig }()

	tn, err := s.Authenticate(ctx, tok)
	if err != nil || tn.Name() != "acme" {
		t.Fatalf("Authenticate: %v", err)
	}
	if tn2, err := s.Authenticate(ctx, otherTok); err != nil || tn2.Name() != "other" {
		t.Fatalf("Authenticate other: %v", err)
	}
	list, err := s.ListTokens(ctx, "acme")
	if err != nil || len(list) != 2 {
		t.Fatalf("ListTokens: %+v %v", list, err)
	}
	var used bool
	for _, ti := range list {
		if ti.ID == info.ID && ti.LastUsedAt != nil {
			used = true
		}
		if strings.Contains(tok, ti.Label) && ti.Label != "" && ti.Label != "ci runner" {
			t.Fatal("list leaks token")
		}
	}
	if !used {
		t.Fatal("LastUsedAt not recorded")
	}

	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	unknownID := "cdpv_0000000000000000_" + tok[len(tok)-43:]
	compares.Store(0)
	for name, bad := range map[string]string{
		"wrong secret (last char)":  flip(tok, len(tok)-1),
		"wrong secret (first char)": flip(tok, len("cdpv_")+17),
		"unknown id":                unknownID,
		"other tenant's id":         tok[:22] + otherTok[22:],
	} {
		if _, err := s.Authenticate(ctx, bad); err != ErrUnauthorized {
			t.Errorf("%s: %v, want exactly ErrUnauthorized", name, err)
		}
	}
	if got := compares.Load(); got != 4 {
		t.Fatalf("%d constant-time comparisons for 4 failed attempts (unknown ids must compare too)", got)
	}
	for _, bad := range []string{"", "Bearer " + tok, tok + "x", tok[:len(tok)-1], strings.ToUpper(tok), "cdpv_zzzzzzzzzzzzzzzz_" + tok[22:],
		strings.Replace(tok, "_", "-", 1), tok[:len(tok)-1] + "=", strings.Repeat("a", 10000), "cdpv_" + info.ID} {
		if _, err := s.Authenticate(ctx, bad); err != ErrUnauthorized {
			t.Errorf("malformed %q: %v", bad, err)
		}
	}

	// Revoke: cross-tenant revoke is not found and does nothing.
	if err := s.RevokeToken(ctx, "other", info.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke from other tenant: %v", err)
	}
	if _, err := s.Authenticate(ctx, tok); err != nil {
		t.Fatalf("token revoked by another tenant: %v", err)
	}
	if err := s.RevokeToken(ctx, "acme", info.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, tok); err != ErrUnauthorized {
		t.Fatalf("revoked token: %v", err)
	}
	if err := s.RevokeToken(ctx, "acme", info.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	if _, err := s.Authenticate(ctx, tok2); err != nil {
		t.Fatalf("other token of the tenant: %v", err)
	}
	if _, err := s.ListTokens(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ListTokens(nobody): %v", err)
	}
	// Deleting the tenant kills its tokens.
	if err := s.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, tok2); err != ErrUnauthorized {
		t.Fatalf("token of deleted tenant: %v", err)
	}
}
