package secretstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/awnumar/memguard"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data", "store.db")
	s := openStore(t, path, newKey(t))
	if s.MasterKeyVersion() != 1 {
		t.Fatalf("fresh store master key version %d", s.MasterKeyVersion())
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, filepath.Dir(path)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v", p, fi.Mode().Perm())
		}
	}
	var mode string
	s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
	var sd, fk int
	s.db.QueryRow(`PRAGMA secure_delete`).Scan(&sd)
	s.db.QueryRow(`PRAGMA foreign_keys`).Scan(&fk)
	if mode != "wal" || sd != 1 || fk != 1 {
		t.Fatalf("journal_mode=%s secure_delete=%d foreign_keys=%d", mode, sd, fk)
	}

	syncIn := func(durable bool) (level int) {
		err := s.write(ctx, durable, func(tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&level)
		})
		if err != nil {
			t.Fatal(err)
		}
		return level
	}
	if syncIn(true) != 2 || syncIn(false) != 1 {
		t.Fatal("durable transactions must run with synchronous=FULL, others with NORMAL")
	}
	for i := 0; i < 3; i++ { // the connection used for FULL went back to NORMAL
		if syncIn(false) != 1 {
			t.Fatal("a pooled connection kept synchronous=FULL")
		}
	}

	tn := mustTenant(t, s, "acme")
	if tn.Name() != "acme" {
		t.Fatal(tn.Name())
	}
	rev0, _ := tn.Revision(ctx)
	before := time.Now()
	m, created, err := tn.PutSecret(ctx, "login", []byte("correct horse battery"), []string{"HTTPS://Acme.Test:443", "http://acme.test:8080", "https://acme.test"}, "")
	if err != nil || !created {
		t.Fatalf("PutSecret: %v created=%v", err, created)
	}
	if m.Name != "login" || m.Kind != KindPassword || m.Version != 1 || !reflect.DeepEqual(m.Origins, []string{"https://acme.test", "http://acme.test:8080"}) {
		t.Fatalf("meta %+v", m)
	}
	if m.CreatedAt.Before(before.Add(-time.Second)) || !m.CreatedAt.Equal(m.UpdatedAt) {
		t.Fatalf("times %v %v", m.CreatedAt, m.UpdatedAt)
	}
	got := mustReveal(t, tn, "login", []byte("correct horse battery"))
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("Reveal meta %+v, want %+v", got, m)
	}
	rev1, _ := tn.Revision(ctx)
	if rev1 == rev0 {
		t.Fatal("revision unchanged by put")
	}

	// Replace: new version, created=false, created_at kept.
	m2, created, err := tn.PutSecret(ctx, "login", []byte("new value 12345"), nil, KindText)
	if err != nil || created || m2.Version != 2 || m2.Kind != KindText || len(m2.Origins) != 0 || !m2.CreatedAt.Equal(m.CreatedAt) {
		t.Fatalf("replace: %+v created=%v err=%v", m2, created, err)
	}
	mustReveal(t, tn, "login", []byte("new value 12345"))
	var calls int
	err = tn.RevealFunc(ctx, "login", func(mm Meta, v []byte) error {
		calls++
		if string(v) != "new value 12345" || mm.Version != 2 {
			t.Errorf("RevealFunc got %q v%d", v, mm.Version)
		}
		return nil
	})
	if err != nil || calls != 1 {
		t.Fatalf("RevealFunc: %v calls=%d", err, calls)
	}
	// The pooled buffer is wiped after use.
	s.pool.mu.Lock()
	for _, b := range s.pool.free {
		if bytes.Contains(b.Bytes(), []byte("new value")) {
			t.Error("pooled reveal buffer not wiped")
		}
	}
	s.pool.mu.Unlock()
	sentinel := errors.New("from fn")
	if err := tn.RevealFunc(ctx, "login", func(Meta, []byte) error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("RevealFunc fn error: %v", err)
	}

	mustPut(t, tn, "api.key", []byte("abcdefgh-api"), "*")
	sm, err := tn.Secret(ctx, "api.key")
	if err != nil || sm.Version != 1 || !reflect.DeepEqual(sm.Origins, []string{"*"}) {
		t.Fatalf("Secret: %+v %v", sm, err)
	}
	list, err := tn.Secrets(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "api.key" || list[1].Name != "login" {
		t.Fatalf("Secrets: %+v %v", list, err)
	}
	totp := mustTenant(t, s, "other")
	if _, _, err := totp.PutSecret(ctx, "otp", []byte("JBSWY3DPEHPK3PXP"), nil, KindTOTP); err != nil {
		t.Fatal(err)
	}
	tl, err := s.ListTenants(ctx)
	if err != nil || len(tl) != 2 || tl[0].Name != "acme" || tl[0].Secrets != 2 || tl[1].Secrets != 1 {
		t.Fatalf("ListTenants: %+v %v", tl, err)
	}

	rev2, _ := tn.Revision(ctx)
	if err := tn.DeleteSecret(ctx, "login"); err != nil {
		t.Fatal(err)
	}
	if rev3, _ := tn.Revision(ctx); rev3 == rev2 {
		t.Fatal("revision unchanged by delete")
	}
	if _, _, err := reveal(t, tn, "login"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := tn.DeleteSecret(ctx, "login"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.Tenant(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Tenant(nobody): %v", err)
	}
	if err := s.CreateTenant(ctx, "acme"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate tenant: %v", err)
	}
	if err := s.CreateTenant(ctx, "bad name"); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("bad tenant name: %v", err)
	}

	// Everything survives a reopen.
	key := s.master
	s.Close()
	s2 := openStore(t, path, key)
	tn2, err := s2.Tenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	mustReveal(t, tn2, "api.key", []byte("abcdefgh-api"))
	var n int
	s2.db.QueryRow(`SELECT COUNT(*) FROM schema_version`).Scan(&n)
	if n != 1 {
		t.Fatalf("schema_version rows %d after reopen", n)
	}
}

func TestBadInputIsRefusedWithoutLeakingValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), newKey(t))
	tn := mustTenant(t, s, "acme")
	rev, _ := tn.Revision(ctx)
	const long = "a-perfectly-fine-value"
	cases := []struct {
		name    string
		value   []byte
		origins []string
		kind    Kind
		want    error
	}{
		{"", []byte(long), nil, "", ErrInvalidName},
		{"has space", []byte(long), nil, "", ErrInvalidName},
		{"-dash", []byte(long), nil, "", ErrInvalidName},
		{strings.Repeat("n", 129), []byte(long), nil, "", ErrInvalidName},
		{"ok", nil, nil, "", ErrInvalidValue},
		{"ok", []byte{}, nil, "", ErrInvalidValue},
		{"ok", []byte("s3cr"), nil, "", ErrInvalidValue},
		{"ok", []byte("Seven77"), nil, "", ErrInvalidValue},
		{"ok", bytes.Repeat([]byte("Z"), MaxValueLen+1), nil, "", ErrInvalidValue},
		{"ok", []byte("trailing-newline-pw\n"), nil, "", ErrInvalidValue},
		{"ok", []byte("bin\xff\xfe-value-here"), nil, KindText, ErrInvalidValue},
		{"ok", []byte(long), nil, "secretkind", ErrInvalidKind},
		{"ok", []byte(long), []string{"acme.test"}, "", ErrInvalidOrigin},
		{"ok", []byte(long), []string{"https://acme.test/path"}, "", ErrInvalidOrigin},
		{"ok", []byte(long), []string{""}, "", ErrInvalidOrigin},
		{"ok", []byte(long), make([]string, MaxOrigins+1), "", ErrInvalidOrigin},
	}
	for i, c := range cases {
		_, _, err := tn.PutSecret(ctx, c.name, c.value, c.origins, c.kind)
		if !errors.Is(err, c.want) {
			t.Errorf("case %d: err = %v, want %v", i, err, c.want)
			continue
		}
		if len(c.value) >= 4 && strings.Contains(err.Error(), string(c.value)) {
			t.Errorf("case %d: error %q holds the value", i, err)
		}
		if strings.Contains(err.Error(), "perfectly") || strings.Contains(err.Error(), "s3cr") || strings.Contains(err.Error(), "Seven77") || strings.Contains(err.Error(), "ZZZZ") {
			t.Errorf("case %d: error %q holds the value", i, err)
		}
	}
	for _, name := range []string{"", "a b", "../x"} {
		if _, err := tn.Secret(ctx, name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Secret(%q): %v", name, err)
		}
		if _, _, err := tn.Reveal(ctx, name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Reveal(%q): %v", name, err)
		}
		if err := tn.DeleteSecret(ctx, name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("DeleteSecret(%q): %v", name, err)
		}
	}
	if l, _ := tn.Secrets(ctx); len(l) != 0 {
		t.Fatalf("refused puts stored something: %+v", l)
	}
	if r, _ := tn.Revision(ctx); r != rev {
		t.Fatal("refused puts changed the revision")
	}
	// A valid value exactly at the limits is accepted.
	mustPut(t, tn, "min", []byte("12345678"))
	mustPut(t, tn, "max", bytes.Repeat([]byte("M"), MaxValueLen))
	mustReveal(t, tn, "max", bytes.Repeat([]byte("M"), MaxValueLen))
}

func TestCiphertextMovedOrTamperedFailsToDecrypt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), newKey(t))
	a := mustTenant(t, s, "alpha")
	b := mustTenant(t, s, "beta")
	mustPut(t, a, "one", []byte("value-one-alpha"), "https://acme.test")
	mustPut(t, a, "two", []byte("value-two-alpha"), "https://acme.test")
	mustPut(t, b, "one", []byte("value-one-beta!"), "https://acme.test")
	mustReveal(t, a, "one", []byte("value-one-alpha"))

	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	wantIntegrity := func(tn *Tenant, name string) {
		t.Helper()
		if v, _, err := reveal(t, tn, name); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("%s/%s: got %q, %v; want ErrIntegrity", tn.Name(), name, v, err)
		}
		if err := tn.RevealFunc(ctx, name, func(Meta, []byte) error { t.Fatal("fn called"); return nil }); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("RevealFunc %s/%s: %v", tn.Name(), name, err)
		}
	}
	snapshot := func() (restore func()) {
		rows, _ := s.db.Query(`SELECT tenant_id, name, kind, version, origins, nonce, ciphertext FROM secrets`)
		type row struct {
			tid                 int64
			name, kind, origins string
			version             int
			nonce, ct           []byte
		}
		var all []row
		for rows.Next() {
			var r row
			rows.Scan(&r.tid, &r.name, &r.kind, &r.version, &r.origins, &r.nonce, &r.ct)
			all = append(all, r)
		}
		rows.Close()
		return func() {
			for _, r := range all {
				exec(`UPDATE secrets SET kind=?, version=?, origins=?, nonce=?, ciphertext=? WHERE tenant_id=? AND name=?`, r.kind, r.version, r.origins, r.nonce, r.ct, r.tid, r.name)
			}
		}
	}
	restore := snapshot()

	// Swap nonce+ciphertext between two rows of one tenant.
	exec(`UPDATE secrets SET nonce = (SELECT nonce FROM secrets WHERE tenant_id=? AND name='two'), ciphertext = (SELECT ciphertext FROM secrets WHERE tenant_id=? AND name='two') WHERE tenant_id=? AND name='one'`, a.id, a.id, a.id)
	wantIntegrity(a, "one")
	restore()
	mustReveal(t, a, "one", []byte("value-one-alpha"))

	// Copy a row to another tenant (same name, same everything but the tenant).
	exec(`UPDATE secrets SET nonce = (SELECT nonce FROM secrets WHERE tenant_id=? AND name='one'), ciphertext = (SELECT ciphertext FROM secrets WHERE tenant_id=? AND name='one') WHERE tenant_id=? AND name='one'`, a.id, a.id, b.id)
	wantIntegrity(b, "one")
	restore()
	// Insert a copied row under a name the other tenant does not have.
	exec(`INSERT INTO secrets SELECT ?, name, kind, version, origins, key_version, nonce, ciphertext, created_at, updated_at FROM secrets WHERE tenant_id=? AND name='two'`, b.id, a.id)
	wantIntegrity(b, "two")
	exec(`DELETE FROM secrets WHERE tenant_id=? AND name='two'`, b.id)

	// Widening the origins, changing kind or version in the file breaks authentication too.
	for _, q := range []string{
		`UPDATE secrets SET origins='*' WHERE tenant_id=? AND name='one'`,
		`UPDATE secrets SET kind='text' WHERE tenant_id=? AND name='one'`,
		`UPDATE secrets SET version=version+1 WHERE tenant_id=? AND name='one'`,
		`UPDATE secrets SET ciphertext=substr(ciphertext,1,length(ciphertext)-1) WHERE tenant_id=? AND name='one'`,
		`UPDATE secrets SET nonce=x'00' WHERE tenant_id=? AND name='one'`,
		`UPDATE secrets SET ciphertext=x'00' WHERE tenant_id=? AND name='one'`,
	} {
		exec(q, a.id)
		wantIntegrity(a, "one")
		restore()
	}
	mustReveal(t, a, "one", []byte("value-one-alpha"))
	mustReveal(t, b, "one", []byte("value-one-beta!"))
	// RevealAll fails closed on a bad row.
	exec(`UPDATE secrets SET origins='*' WHERE tenant_id=? AND name='two'`, a.id)
	if err := a.RevealAll(ctx, func(Meta, *memguard.LockedBuffer) error { return nil }); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("RevealAll with a tampered row: %v", err)
	}
}

func TestWrappedKeyMovedBetweenTenantsFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	key := newKey(t)
	s := openStore(t, path, key)
	a := mustTenant(t, s, "alpha")
	mustTenant(t, s, "beta")
	mustPut(t, a, "one", []byte("value-one-alpha"))
	// Give beta alpha's wrapped key.
	if _, err := s.db.Exec(`UPDATE tenant_keys SET nonce=(SELECT nonce FROM tenant_keys k JOIN tenants t ON t.id=k.tenant_id WHERE t.name='alpha'),
		wrapped=(SELECT wrapped FROM tenant_keys k JOIN tenants t ON t.id=k.tenant_id WHERE t.name='alpha')
		WHERE tenant_id=(SELECT id FROM tenants WHERE name='beta')`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openStore(t, path, key) // fresh process: no cached keys
	if _, err := s2.Tenant(ctx, "beta"); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("beta with alpha's wrapped key: %v", err)
	}
	a2, err := s2.Tenant(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	mustReveal(t, a2, "one", []byte("value-one-alpha"))
}

func TestCrossTenantLooksLikeNotFound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), newKey(t))
	a := mustTenant(t, s, "alpha")
	b := mustTenant(t, s, "beta")
	c := mustTenant(t, s, "gamma") // has nothing: the "does not exist" reference
	mustPut(t, b, "b-only", []byte("beta-secret-value"), "*")
	_, bInfo, err := s.CreateToken(ctx, "beta", "ci")
	if err != nil {
		t.Fatal(err)
	}
	b.AppendAudit(ctx, AuditRecord{Session: "s1", Secret: "b-only", Result: "injected"})

	type probe func(tn *Tenant) error
	probes := map[string]probe{
		"Secret":       func(tn *Tenant) error { _, err := tn.Secret(ctx, "b-only"); return err },
		"Reveal":       func(tn *Tenant) error { _, _, err := tn.Reveal(ctx, "b-only"); return err },
		"RevealFunc":   func(tn *Tenant) error { return tn.RevealFunc(ctx, "b-only", func(Meta, []byte) error { return nil }) },
		"DeleteSecret": func(tn *Tenant) error { return tn.DeleteSecret(ctx, "b-only") },
		"RevokeToken":  func(tn *Tenant) error { return s.RevokeToken(ctx, tn.Name(), bInfo.ID) },
	}
	for name, p := range probes {
		errA, errC := p(a), p(c)
		if !errors.Is(errA, ErrNotFound) || !errors.Is(errC, ErrNotFound) {
			t.Errorf("%s: cross-tenant %v, absent %v; want ErrNotFound", name, errA, errC)
			continue
		}
		if errA.Error() != errC.Error() || reflect.TypeOf(errA) != reflect.TypeOf(errC) {
			t.Errorf("%s: cross-tenant error %q differs from not-found error %q", name, errA, errC)
		}
	}
	for _, tn := range []*Tenant{a, c} {
		if l, _ := tn.Secrets(ctx); len(l) != 0 {
			t.Errorf("%s lists %+v", tn.Name(), l)
		}
		tn.RevealAll(ctx, func(m Meta, _ *memguard.LockedBuffer) error {
			t.Errorf("%s RevealAll saw %s", tn.Name(), m.Name)
			return nil
		})
		if au, _ := tn.Audit(ctx, 10); len(au) != 0 {
			t.Errorf("%s sees audit %+v", tn.Name(), au)
		}
		if tl, _ := s.ListTokens(ctx, tn.Name()); len(tl) != 0 {
			t.Errorf("%s sees tokens %+v", tn.Name(), tl)
		}
	}
	// Beta's things are untouched by the attempts.
	mustReveal(t, b, "b-only", []byte("beta-secret-value"))
	if tl, _ := s.ListTokens(ctx, "beta"); len(tl) != 1 {
		t.Fatalf("beta's token gone: %+v", tl)
	}
	// A put under the same name in alpha creates alpha's own secret; beta's stays.
	mustPut(t, a, "b-only", []byte("alpha-own-value"))
	mustReveal(t, b, "b-only", []byte("beta-secret-value"))
	mustReveal(t, a, "b-only", []byte("alpha-own-value"))
}

func TestTenantHandleAfterDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), newKey(t))
	tn := mustTenant(t, s, "gone")
	mustPut(t, tn, "x", []byte("value-of-x-123"))
	if err := s.DeleteTenant(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTenant(ctx, "gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, _, err := tn.PutSecret(ctx, "y", []byte("value-of-y-123"), nil, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("put on deleted tenant: %v", err)
	}
	if _, _, err := tn.Reveal(ctx, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reveal on deleted tenant: %v", err)
	}
	if _, err := tn.Revision(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revision on deleted tenant: %v", err)
	}
	s.keysMu.Lock()
	for k := range s.keys {
		if k.tenant == tn.id {
			t.Error("deleted tenant's cipher still cached")
		}
	}
	s.keysMu.Unlock()
	if err := tn.AppendAudit(ctx, AuditRecord{Result: "x"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("audit on deleted tenant: %v", err)
	}
	// Recreating the name gives a new, empty tenant; the old handle still sees nothing.
	tn2 := mustTenant(t, s, "gone")
	mustPut(t, tn2, "x", []byte("new-tenant-value"))
	if _, _, err := tn.Reveal(ctx, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old handle reads the new tenant: %v", err)
	}
	if _, _, err := tn.PutSecret(ctx, "x", []byte("value-of-y-123"), nil, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old handle writes the new tenant: %v", err)
	}
	mustReveal(t, tn2, "x", []byte("new-tenant-value"))
}

func TestTenantDeletedByAnotherProcessDropsCachedKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	key := newKey(t)
	daemon := openStore(t, path, key)
	tn := mustTenant(t, daemon, "acme")
	mustPut(t, tn, "x", []byte("value-of-x-123"))
	cli := openStore(t, path, key)
	if err := cli.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := tn.Revision(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Revision after delete elsewhere: %v", err)
	}
	daemon.keysMu.Lock()
	n := len(daemon.keys)
	daemon.keysMu.Unlock()
	if n != 0 {
		t.Fatal("the daemon still caches the deleted tenant's cipher")
	}
}

func TestRevisionSeesOtherProcesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	key := newKey(t)
	s1 := openStore(t, path, key)
	t1 := mustTenant(t, s1, "acme")
	s2 := openStore(t, path, key)
	t2, err := s2.Tenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	r0, _ := t1.Revision(ctx)
	mustPut(t, t2, "a", []byte("value-aaaaaaa"))
	r1, _ := t1.Revision(ctx)
	if r1 == r0 {
		t.Fatal("revision unchanged after a put by another store")
	}
	t2.AppendAudit(ctx, AuditRecord{Result: "ok"})
	if _, _, err := t2.PutSecret(ctx, "a", []byte("bad\n"), nil, ""); err == nil {
		t.Fatal("bad put accepted")
	}
	if r, _ := t1.Revision(ctx); r != r1 {
		t.Fatal("revision changed without a secret change")
	}
	t2.DeleteSecret(ctx, "a")
	if r, _ := t1.Revision(ctx); r == r1 {
		t.Fatal("revision unchanged after delete by another store")
	}
}

func TestRevealAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), newKey(t))
	tn := mustTenant(t, s, "acme")
	other := mustTenant(t, s, "other")
	mustPut(t, other, "zz", []byte("other-tenant-value"))
	want := map[string]string{"c": "value-of-c-xx", "a": "value-of-a-xx", "b": "value-of-b-xx"}
	for n, v := range want {
		mustPut(t, tn, n, []byte(v))
	}
	var prev *memguard.LockedBuffer
	var names []string
	err := tn.RevealAll(ctx, func(m Meta, v *memguard.LockedBuffer) error {
		if prev != nil && prev.IsAlive() {
			t.Error("previous buffer still alive: more than one at a time")
		}
		if string(v.Bytes()) != want[m.Name] {
			t.Errorf("%s = %q", m.Name, v.Bytes())
		}
		names = append(names, m.Name)
		prev = v
		return nil
	})
	if err != nil || !reflect.DeepEqual(names, []string{"a", "b", "c"}) {
		t.Fatalf("RevealAll: %v %v", names, err)
	}
	if prev.IsAlive() {
		t.Fatal("last buffer not destroyed")
	}
	stop := errors.New("stop")
	n := 0
	if err := tn.RevealAll(ctx, func(Meta, *memguard.LockedBuffer) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("RevealAll stop: %v n=%d", err, n)
	}
}

func TestAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), newKey(t))
	tn := mustTenant(t, s, "acme")
	base := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for i := 0; i < 5; i++ {
		if err := tn.AppendAudit(ctx, AuditRecord{Time: base.Add(time.Duration(i) * time.Second), Session: "sess", Secret: "login", Version: i, Origin: "https://acme.test", Sink: "Input.insertText", Result: "injected"}); err != nil {
			t.Fatal(err)
		}
	}
	long := strings.Repeat("é", 600)
	if err := tn.AppendAudit(ctx, AuditRecord{Result: "refused", Reason: long}); err != nil {
		t.Fatal(err)
	}
	recs, err := tn.Audit(ctx, 3)
	if err != nil || len(recs) != 3 {
		t.Fatalf("Audit: %d %v", len(recs), err)
	}
	if recs[0].Result != "refused" || len(recs[0].Reason) > 512 || !strings.HasPrefix(long, recs[0].Reason) || recs[0].Time.IsZero() {
		t.Fatalf("newest record %+v", recs[0])
	}
	if recs[1].Version != 4 || !recs[1].Time.Equal(base.Add(4*time.Second)) || recs[1].Sink != "Input.insertText" {
		t.Fatalf("second record %+v", recs[1])
	}
	if all, _ := tn.Audit(ctx, 0); len(all) != 6 {
		t.Fatalf("default limit: %d", len(all))
	}
}

func TestOpenAndCloseEdgeCases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var nilStore *Store
	if err := nilStore.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, Options{MasterKey: newKey(t)}); err == nil {
		t.Fatal("no path accepted")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "s.db")
	if _, err := Open(ctx, Options{Path: path}); err == nil {
		t.Fatal("no key accepted")
	}
	key := newKey(t)
	s := openStore(t, path, key)
	tn := mustTenant(t, s, "acme")
	mustPut(t, tn, "x", []byte("value-of-x-123"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() != 0 {
		t.Fatalf("WAL not truncated on Close: %d bytes", fi.Size())
	}
	for name, err := range map[string]error{
		"Ping":         s.Ping(ctx),
		"CreateTenant": s.CreateTenant(ctx, "b"),
		"Put":          func() error { _, _, err := tn.PutSecret(ctx, "y", []byte("value-of-y-123"), nil, ""); return err }(),
		"Reveal":       func() error { _, _, err := tn.Reveal(ctx, "x"); return err }(),
		"RevealFunc":   tn.RevealFunc(ctx, "x", func(Meta, []byte) error { return nil }),
		"Tenant":       func() error { _, err := s.Tenant(ctx, "acme"); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}

	// Wrong key on an initialised store; the failed Open leaves the file intact.
	_, err := Open(ctx, Options{Path: path, MasterKey: newKey(t)})
	if !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("wrong key: %v", err)
	}
	s2 := openStore(t, path, key)
	tn2, err := s2.Tenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	mustReveal(t, tn2, "x", []byte("value-of-x-123"))

	// A schema from the future is refused.
	if _, err := s2.db.Exec(`INSERT INTO schema_version (version, applied_at) VALUES (9999, 0)`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, Options{Path: path, MasterKey: key}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("future schema: %v", err)
	}
	// Not a database.
	junk := filepath.Join(dir, "junk.db")
	os.WriteFile(junk, bytes.Repeat([]byte("not a database "), 400), 0o600)
	if _, err := Open(ctx, Options{Path: junk, MasterKey: key}); err == nil {
		t.Fatal("junk file opened")
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewPedanticRegistry()
	path := filepath.Join(t.TempDir(), "s.db")
	key := newKey(t)
	s, err := Open(ctx, Options{Path: path, MasterKey: key, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s2, err := Open(ctx, Options{Path: path, MasterKey: key, Metrics: reg}) // shares the collectors
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	tn := mustTenant(t, s, "acme")
	mustPut(t, tn, "x", []byte("metric-secret-value"))
	mustReveal(t, tn, "x", []byte("metric-secret-value"))
	tn.Reveal(ctx, "missing")
	s2.Authenticate(ctx, "nope")
	counter := func(op, res string) float64 {
		var m dto.Metric
		if err := s.metrics.ops.WithLabelValues(op, res).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	if got := counter("reveal", "ok"); got != 1 {
		t.Fatalf("reveal ok = %v", got)
	}
	if got := counter("reveal", "not_found"); got != 1 {
		t.Fatalf("reveal not_found = %v", got)
	}
	if got := counter("authenticate", "unauthorized"); got != 1 {
		t.Fatalf("authenticate unauthorized = %v", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil || len(problems) != 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "metric-secret") || l.GetValue() == "x" {
					t.Fatalf("label holds secret data: %s", l)
				}
			}
		}
	}
}

func TestConcurrentOpenOfFreshStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fresh", "s.db")
	key := newKey(t)
	errs := make(chan error, 4)
	stores := make(chan *Store, 4)
	for i := 0; i < 4; i++ {
		go func() {
			s, err := Open(ctx, Options{Path: path, MasterKey: key})
			errs <- err
			stores <- s
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		s := <-stores
		defer s.Close()
		if s.MasterKeyVersion() != 1 {
			t.Fatalf("version %d", s.MasterKeyVersion())
		}
	}
	s := openStore(t, path, key)
	var n, m int
	s.db.QueryRow(`SELECT COUNT(*) FROM schema_version`).Scan(&n)
	s.db.QueryRow(`SELECT COUNT(*) FROM master_keys`).Scan(&m)
	if n != 1 || m != 1 {
		t.Fatalf("schema_version rows %d, master_keys rows %d", n, m)
	}
}

func TestPruneAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), newKey(t))
	tn := mustTenant(t, s, "acme")
	old := time.Now().Add(-48 * time.Hour)
	tn.AppendAudit(ctx, AuditRecord{Time: old, Result: "old"})
	tn.AppendAudit(ctx, AuditRecord{Result: "new"})
	n, err := s.PruneAudit(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PruneAudit: %d %v", n, err)
	}
	if recs, _ := tn.Audit(ctx, 10); len(recs) != 1 || recs[0].Result != "new" {
		t.Fatalf("left %+v", recs)
	}
}

func TestZeroTenantFailsWithoutPanic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tn := range []*Tenant{nil, {}} {
		if _, _, err := tn.PutSecret(ctx, "x", []byte("value-of-x-123"), nil, ""); !errors.Is(err, ErrClosed) {
			t.Errorf("PutSecret: %v", err)
		}
		if _, _, err := tn.Reveal(ctx, "x"); !errors.Is(err, ErrClosed) {
			t.Errorf("Reveal: %v", err)
		}
		if err := tn.RevealFunc(ctx, "x", func(Meta, []byte) error { return nil }); !errors.Is(err, ErrClosed) {
			t.Errorf("RevealFunc: %v", err)
		}
		if err := tn.RevealAll(ctx, func(Meta, *memguard.LockedBuffer) error { return nil }); !errors.Is(err, ErrClosed) {
			t.Errorf("RevealAll: %v", err)
		}
		if _, err := tn.Secret(ctx, "x"); !errors.Is(err, ErrClosed) {
			t.Errorf("Secret: %v", err)
		}
		if _, err := tn.Secrets(ctx); !errors.Is(err, ErrClosed) {
			t.Errorf("Secrets: %v", err)
		}
		if err := tn.DeleteSecret(ctx, "x"); !errors.Is(err, ErrClosed) {
			t.Errorf("DeleteSecret: %v", err)
		}
		if _, err := tn.Revision(ctx); !errors.Is(err, ErrClosed) {
			t.Errorf("Revision: %v", err)
		}
		if err := tn.AppendAudit(ctx, AuditRecord{}); !errors.Is(err, ErrClosed) {
			t.Errorf("AppendAudit: %v", err)
		}
		if _, err := tn.Audit(ctx, 1); !errors.Is(err, ErrClosed) {
			t.Errorf("Audit: %v", err)
		}
		_ = tn.Name()
	}
}
