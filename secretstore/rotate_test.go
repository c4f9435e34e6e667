package secretstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func TestMasterKeyRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	k1, k2 := newKey(t), newKey(t)

	// The "daemon", running on k1 throughout steps 1 and 2.
	daemon := openStore(t, path, k1)
	want := map[string]map[string][]byte{}
	for i := 0; i < 4; i++ {
		tn := mustTenant(t, daemon, fmt.Sprintf("t%d", i))
		want[tn.Name()] = map[string][]byte{}
		for j := 0; j < 5; j++ {
			v := []byte(fmt.Sprintf("value-t%d-s%d-xyz", i, j))
			mustPut(t, tn, fmt.Sprintf("s%d", j), v)
			want[tn.Name()][fmt.Sprintf("s%d", j)] = v
		}
	}
	readAll := func(s *Store) {
		t.Helper()
		for tname, secrets := range want {
			tn, err := s.Tenant(ctx, tname)
			if err != nil {
				t.Fatalf("Tenant(%s) on master v%d: %v", tname, s.MasterKeyVersion(), err)
			}
			for n, v := range secrets {
				mustReveal(t, tn, n, v)
			}
		}
	}

	// Step 1: `key rotate` from a CLI process on the old key.
	cli := openStore(t, path, k1)
	v, err := cli.RotateMasterKey(ctx, k2)
	if err != nil || v != 2 {
		t.Fatalf("RotateMasterKey: %d %v", v, err)
	}
	if _, err := cli.RotateMasterKey(ctx, k1); !errors.Is(err, ErrExists) {
		t.Fatalf("rotating to the current key: %v", err)
	}
	cli.Close()
	readAll(daemon) // the running daemon keeps working

	// Step 2: a process on the new key reads everything, including writes made meanwhile.
	s2 := openStore(t, path, k2)
	if s2.MasterKeyVersion() != 2 {
		t.Fatalf("new key version %d", s2.MasterKeyVersion())
	}
	readAll(s2)
	t0, _ := daemon.Tenant(ctx, "t0")
	mustPut(t, t0, "later", []byte("written-by-old-daemon"))
	want["t0"]["later"] = []byte("written-by-old-daemon")
	readAll(s2)

	// A tenant created by the old daemon after the rotation has no copy under k2:
	// retirement refuses, and running rotate again fills the gap.
	late := mustTenant(t, daemon, "late")
	mustPut(t, late, "x", []byte("late-tenant-value"))
	want["late"] = map[string][]byte{"x": []byte("late-tenant-value")}
	if _, err := s2.Tenant(ctx, "late"); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("late tenant under k2: %v", err)
	}
	if n, err := s2.RetireMasterKeys(ctx); err == nil || !strings.Contains(err.Error(), "refusing") || n != 0 {
		t.Fatalf("retire with a tenant lacking a key: %d %v", n, err)
	}
	readAll(daemon) // refusal changed nothing
	if v, err := daemon.RotateMasterKey(ctx, k2); err != nil || v != 2 {
		t.Fatalf("re-run rotate: %d %v", v, err)
	}
	readAll(s2)

	// Step 3: retire from the new key.
	n, err := s2.RetireMasterKeys(ctx)
	if err != nil || n != 1 {
		t.Fatalf("RetireMasterKeys: %d %v", n, err)
	}
	var left int
	s2.db.QueryRow(`SELECT COUNT(*) FROM tenant_keys WHERE master_version <> 2`).Scan(&left)
	if left != 0 {
		t.Fatalf("%d old wrapped keys left", left)
	}
	readAll(s2)
	daemon.Close()
	if _, err := Open(ctx, Options{Path: path, MasterKey: k1}); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("old key after retirement: %v", err)
	}
	if _, err := Open(ctx, Options{Path: path, MasterKey: newKey(t)}); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("unknown key: %v", err)
	}
	// Rotating again continues the numbering.
	k3 := newKey(t)
	if v, err := s2.RotateMasterKey(ctx, k3); err != nil || v != 3 {
		t.Fatalf("second rotation: %d %v", v, err)
	}
	readAll(openStore(t, path, k3))
}
