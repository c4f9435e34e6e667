package secretstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"path/filepath"

	"github.com/awnumar/memguard"
	"testing"
)

// TestDeleteTenantShredsEverything: after DeleteTenant neither the tenant's data key (raw
// or wrapped), nor its ciphertexts, nor any plaintext is left in the database, -wal or -shm
// file, while the scan does find the wrapped key before the delete (so it can find things).
func TestDeleteTenantShredsEverything(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "store.db")
	s := openStore(t, path, newKey(t))
	victim := mustTenant(t, s, "victim")
	keep := mustTenant(t, s, "keeper")
	values := map[string][]byte{}
	for i := 0; i < 20; i++ {
		v := make([]byte, 24+i*100)
		rand.Read(v)
		name := fmt.Sprintf("s%02d", i)
		vv := []byte(base64.RawURLEncoding.EncodeToString(v)) // printable, valid password
		values[name] = vv
		mustPut(t, victim, name, vv, "https://acme.test")
		mustPut(t, victim, name, append(vv, 'X'), "https://acme.test") // older version too
	}
	mustPut(t, keep, "kept", []byte("keeper-value-stays"))
	token, _, err := s.CreateToken(ctx, "victim", "ci")
	if err != nil {
		t.Fatal(err)
	}
	victim.AppendAudit(ctx, AuditRecord{Session: "sess-victim-audit", Secret: "s01", Result: "injected"})

	needles := map[string][]byte{}
	dk := dataKey(t, s, "victim")
	encodings("data key", dk, needles)
	var wrapped []byte
	s.db.QueryRow(`SELECT wrapped FROM tenant_keys WHERE tenant_id = ?`, victim.id).Scan(&wrapped)
	needles["wrapped key"] = wrapped
	rows, _ := s.db.Query(`SELECT name, ciphertext FROM secrets WHERE tenant_id = ?`, victim.id)
	for rows.Next() {
		var n string
		var ct []byte
		rows.Scan(&n, &ct)
		needles["ciphertext "+n] = ct
	}
	rows.Close()
	for n, v := range values {
		encodings("plaintext "+n, v, needles)
	}
	needles["token"] = []byte(token)
	needles["audit session"] = []byte("sess-victim-audit")

	before := scanFiles(t, storeFiles(path), needles)
	if len(before["wrapped key"]) == 0 {
		t.Fatal("scan does not find the wrapped key before the delete: the scan is blind")
	}
	if len(before["audit session"]) == 0 {
		t.Fatal("scan does not find the audit row before the delete")
	}
	for label, files := range before {
		if bytes.HasPrefix([]byte(label), []byte("plaintext")) || bytes.HasPrefix([]byte(label), []byte("data key")) || label == "token" {
			t.Errorf("%s found in %v before delete", label, files)
		}
	}

	if err := s.DeleteTenant(ctx, "victim"); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for label, files := range scanFiles(t, storeFiles(path), needles) {
			t.Errorf("%s: %s still in %v", when, label, files)
		}
	}
	check("after delete, store open")
	keep2, err := s.Tenant(ctx, "keeper")
	if err != nil {
		t.Fatal(err)
	}
	mustReveal(t, keep2, "kept", []byte("keeper-value-stays"))
	if _, err := s.Authenticate(ctx, token); err != ErrUnauthorized {
		t.Fatalf("token of deleted tenant: %v", err)
	}
	var n int
	for _, tbl := range []string{"tenant_keys", "secrets", "tokens", "audit"} {
		s.db.QueryRow(`SELECT COUNT(*) FROM `+tbl+` WHERE tenant_id = ?`, victim.id).Scan(&n)
		if n != 0 {
			t.Errorf("%s still has %d rows of the deleted tenant", tbl, n)
		}
	}
	s.Close()
	check("after close")
}

// TestNoPlaintextInDataDir: whatever happens (puts, replaces, deletes, rotation, tokens),
// no value, old or current, appears in any file of the data dir, in raw or hex form, nor
// does the master key.
func TestNoPlaintextInDataDir(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "store.db")
	keyPath := filepath.Join(dir, "master.key")
	key, err := LoadMasterKey(keyPath, true)
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, path, key)
	needles := map[string][]byte{}
	mk, _ := key.Open()
	masterHex := []byte(fmt.Sprintf("%x", mk.Bytes()))
	mk.Destroy()
	needles["master key hex"] = masterHex
	var tenants []*Tenant
	for i := 0; i < 3; i++ {
		tenants = append(tenants, mustTenant(t, s, fmt.Sprintf("t%d", i)))
	}
	for round := 0; round < 3; round++ {
		for ti, tn := range tenants {
			for j := 0; j < 8; j++ {
				v := []byte(fmt.Sprintf("PLAINTEXT-r%d-t%d-s%d-%x", round, ti, j, randBytes(8)))
				name := fmt.Sprintf("secret%d", j)
				encodings(string(v), v, needles)
				kind := Kind("")
				if j%3 == 0 {
					kind = KindText
				}
				if _, _, err := tn.PutSecret(ctx, name, v, []string{"https://acme.test"}, kind); err != nil {
					t.Fatal(err)
				}
			}
			tn.DeleteSecret(ctx, "secret7")
		}
	}
	if _, err := s.RotateMasterKey(ctx, newKey(t)); err != nil {
		t.Fatal(err)
	}
	for _, tn := range tenants {
		tn.RevealAll(ctx, func(Meta, *memguard.LockedBuffer) error { return nil })
	}
	if err := s.DeleteTenant(ctx, "t2"); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		files := dirFiles(t, dir)
		if len(files) < 2 {
			t.Fatalf("scan saw only %v", files)
		}
		for label, where := range scanFiles(t, files, needles) {
			t.Errorf("%s: %q found in %v", when, label, where)
		}
	}
	check("store open")
	s.Close()
	check("store closed")
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestDeleteSecretLeavesNoCiphertext: a deleted secret's ciphertext, and the ciphertext of a
// replaced version, are gone from the database files.
func TestDeleteSecretLeavesNoCiphertext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	s := openStore(t, path, newKey(t))
	tn := mustTenant(t, s, "acme")
	ciphertext := func(name string) []byte {
		var ct []byte
		if err := s.db.QueryRow(`SELECT ciphertext FROM secrets WHERE tenant_id = ? AND name = ?`, tn.id, name).Scan(&ct); err != nil {
			t.Fatal(err)
		}
		return ct
	}
	mustPut(t, tn, "doomed", []byte("doomed-value-0123456789"))
	mustPut(t, tn, "rotated", []byte("first-version-value"))
	needles := map[string][]byte{"doomed": ciphertext("doomed"), "rotated v1": ciphertext("rotated")}
	if len(scanFiles(t, storeFiles(path), needles)) != 2 {
		t.Fatal("scan does not see the ciphertexts before deletion")
	}
	mustPut(t, tn, "rotated", []byte("second-version-value"))
	if err := tn.DeleteSecret(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	if found := scanFiles(t, storeFiles(path), needles); len(found) != 0 {
		t.Fatalf("after delete: %v", found)
	}
	mustReveal(t, tn, "rotated", []byte("second-version-value"))
}
