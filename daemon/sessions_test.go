package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/cdpvault/cdpvault/inject"
	"github.com/cdpvault/cdpvault/secretstore"
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
	// A TOTP seed is never typed into a page.
	if sec, err := v.Resolve(ctx, "otp"); err == nil || errors.Is(err, inject.ErrUnknownSecret) {
		if sec.Value != nil {
			sec.Value.Destroy()
		}
		t.Fatalf("totp seed resolved for typing: %v", err)
	}
}
