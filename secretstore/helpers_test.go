package secretstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/awnumar/memguard"
)

// Helper-process modes: the test binary re-executes itself with helperEnv set to act as a
// second process (a CLI invocation or another daemon) on the same store file.
const helperEnv = "SECRETSTORE_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "writer":
		os.Exit(helperWriter())
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode")
		os.Exit(2)
	}
}

// helperWriter puts secrets PREFIX-0, PREFIX-1, ... (COUNT of them, or forever when COUNT is
// 0) and prints each name on stdout once PutSecret has returned (acknowledged). With SHARED
// set it also replaces that secret after each put.
func helperWriter() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "helper:", err); return 1 }
	key, err := LoadMasterKey(os.Getenv("SECRETSTORE_KEY"), false)
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	s, err := Open(ctx, Options{Path: os.Getenv("SECRETSTORE_DB"), MasterKey: key})
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	t, err := s.Tenant(ctx, os.Getenv("SECRETSTORE_TENANT"))
	if err != nil {
		return fail(err)
	}
	count, _ := strconv.Atoi(os.Getenv("SECRETSTORE_COUNT"))
	prefix, shared := os.Getenv("SECRETSTORE_PREFIX"), os.Getenv("SECRETSTORE_SHARED")
	out := bufio.NewWriter(os.Stdout)
	for i := 0; count == 0 || i < count; i++ {
		name := prefix + "-" + strconv.Itoa(i)
		if _, _, err := t.PutSecret(ctx, name, valueFor(name), []string{"https://acme.test"}, ""); err != nil {
			return fail(err)
		}
		if shared != "" {
			if _, _, err := t.PutSecret(ctx, shared, valueFor(shared), nil, ""); err != nil {
				return fail(err)
			}
		}
		fmt.Fprintln(out, name)
		if err := out.Flush(); err != nil {
			return fail(err)
		}
	}
	return 0
}

// valueFor is the deterministic test value of a secret name (long enough to span pages).
func valueFor(name string) []byte {
	v := []byte("value-of-" + name + "-")
	for len(v) < 600 {
		v = append(v, "0123456789abcdef"...)
	}
	return v
}

func newKey(t testing.TB) *memguard.Enclave {
	t.Helper()
	return memguard.NewEnclaveRandom(MasterKeyLen)
}

// writeKeyFile writes a fresh random master key (raw bytes) with mode 0600.
func writeKeyFile(t testing.TB, path string) {
	t.Helper()
	k := make([]byte, MasterKeyLen)
	rand.Read(k)
	if err := os.WriteFile(path, k, 0o600); err != nil {
		t.Fatal(err)
	}
}

func openStore(t testing.TB, path string, key *memguard.Enclave) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Path: path, MasterKey: key})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustTenant(t testing.TB, s *Store, name string) *Tenant {
	t.Helper()
	ctx := context.Background()
	if err := s.CreateTenant(ctx, name); err != nil {
		t.Fatalf("CreateTenant(%s): %v", name, err)
	}
	tn, err := s.Tenant(ctx, name)
	if err != nil {
		t.Fatalf("Tenant(%s): %v", name, err)
	}
	return tn
}

func mustPut(t testing.TB, tn *Tenant, name string, value []byte, origins ...string) Meta {
	t.Helper()
	m, _, err := tn.PutSecret(context.Background(), name, value, origins, "")
	if err != nil {
		t.Fatalf("PutSecret(%s): %v", name, err)
	}
	return m
}

// reveal returns a copy of the value (test-only: tests compare values in ordinary memory).
func reveal(t testing.TB, tn *Tenant, name string) ([]byte, Meta, error) {
	t.Helper()
	b, m, err := tn.Reveal(context.Background(), name)
	if err != nil {
		return nil, m, err
	}
	defer b.Destroy()
	return bytes.Clone(b.Bytes()), m, nil
}

func mustReveal(t testing.TB, tn *Tenant, name string, want []byte) Meta {
	t.Helper()
	got, m, err := reveal(t, tn, name)
	if err != nil {
		t.Fatalf("Reveal(%s): %v", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Reveal(%s) = %q, want %q", name, got, want)
	}
	return m
}

// storeFiles are the database and its WAL and shm files.
func storeFiles(path string) []string { return []string{path, path + "-wal", path + "-shm"} }

// scanFiles reports, for every needle, the files (among paths; missing files skipped) whose
// bytes contain it.
func scanFiles(t testing.TB, paths []string, needles map[string][]byte) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for label, n := range needles {
			if len(n) > 0 && bytes.Contains(data, n) {
				found[label] = append(found[label], filepath.Base(p))
			}
		}
	}
	return found
}

// dirFiles lists every regular file under dir.
func dirFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// encodings adds needles for a value: raw, hex and base64 forms.
func encodings(label string, v []byte, into map[string][]byte) {
	into[label] = v
	into[label+"/hex"] = []byte(hex.EncodeToString(v))
	into[label+"/base64"] = []byte(base64.StdEncoding.EncodeToString(v))
}

// dataKey unwraps a tenant's data key into ordinary memory (test-only, to scan for it).
func dataKey(t testing.TB, s *Store, tenant string) []byte {
	t.Helper()
	ctx := context.Background()
	var id int64
	var kv int
	if err := s.db.QueryRowContext(ctx, `SELECT id, data_key_version FROM tenants WHERE name = ?`, tenant).Scan(&id, &kv); err != nil {
		t.Fatal(err)
	}
	var nonce, wrapped []byte
	if err := s.db.QueryRowContext(ctx, `SELECT nonce, wrapped FROM tenant_keys WHERE tenant_id = ? AND key_version = ? AND master_version = ?`, id, kv, s.masterVersion).Scan(&nonce, &wrapped); err != nil {
		t.Fatal(err)
	}
	var out []byte
	err := withMasterKey(s.master, func(kek cipher.AEAD) error {
		b, err := unwrapKey(kek, nonce, wrapped, id, kv, s.masterVersion)
		if err != nil {
			return err
		}
		out = bytes.Clone(b.Bytes())
		b.Destroy()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
