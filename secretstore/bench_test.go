package secretstore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/awnumar/memguard"
)

// Benchmarks of the store against baselines measured in the same run:
//
//	go test -run '^$' -bench . -benchmem ./secretstore/
//
// Each reports ops/s (1e9 / ns_per_op). Targets on the 2-core reference machine: a decrypting
// get of a hot secret >= 50,000/s, an encrypting set >= 2,000/s.
//
//   - BenchmarkReveal: Tenant.Reveal, a fresh LockedBuffer per call (the interface's Reveal).
//   - BenchmarkRevealParallel: the same from GOMAXPROCS goroutines (mmap/mprotect contend).
//   - BenchmarkRevealFunc: Tenant.RevealFunc, decrypting into a pooled LockedBuffer (hot path).
//   - BenchmarkRevealFuncParallel: the same from GOMAXPROCS goroutines.
//   - BenchmarkPutSecret: Tenant.PutSecret replacing one of 64 secrets (new version each time).
//   - BenchmarkBaselineSelect: the same row read with a plain prepared SQL select, no crypto.
//   - BenchmarkBaselineUpsert: a plain SQL upsert of a same-size blob in a BEGIN IMMEDIATE
//     transaction on the same connections (WAL, synchronous=NORMAL like PutSecret), no crypto.
//   - BenchmarkBaselineLockedBuffer: memguard.NewBuffer + Destroy alone, the floor under Reveal.

const benchValue = "correct-horse-battery-staple-0123456789"

func benchStore(b *testing.B) (*Store, *Tenant) {
	b.Helper()
	s := openStore(b, filepath.Join(b.TempDir(), "bench.db"), newKey(b))
	tn := mustTenant(b, s, "bench")
	for i := 0; i < 64; i++ {
		mustPut(b, tn, fmt.Sprintf("s%02d", i), []byte(benchValue), "https://acme.test")
	}
	return s, tn
}

func opsPerSec(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkReveal(b *testing.B) {
	_, tn := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf, _, err := tn.Reveal(ctx, "s07")
		if err != nil {
			b.Fatal(err)
		}
		if buf.Size() != len(benchValue) {
			b.Fatal("wrong size")
		}
		buf.Destroy()
	}
	opsPerSec(b)
}

func BenchmarkRevealParallel(b *testing.B) {
	_, tn := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			buf, _, err := tn.Reveal(ctx, "s07")
			if err != nil {
				b.Error(err)
				return
			}
			buf.Destroy()
		}
	})
	opsPerSec(b)
}

func BenchmarkRevealFunc(b *testing.B) {
	_, tn := benchStore(b)
	ctx := context.Background()
	var n int
	fn := func(_ Meta, v []byte) error { n += len(v); return nil }
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := tn.RevealFunc(ctx, "s07", fn); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSec(b)
	if n != b.N*len(benchValue) {
		b.Fatal("wrong sizes")
	}
}

func BenchmarkRevealFuncParallel(b *testing.B) {
	_, tn := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := tn.RevealFunc(ctx, "s07", func(_ Meta, v []byte) error {
				if len(v) != len(benchValue) {
					return fmt.Errorf("wrong size")
				}
				return nil
			}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	opsPerSec(b)
}

func BenchmarkBaselineSelect(b *testing.B) {
	s, tn := benchStore(b)
	ctx := context.Background()
	st, err := s.db.PrepareContext(ctx, `SELECT kind, version, origins, key_version, nonce, ciphertext, created_at, updated_at FROM secrets WHERE tenant_id = ? AND name = ?`)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var kind, origins string
		var version, kv int
		var nonce, ct []byte
		var c, u int64
		if err := st.QueryRowContext(ctx, tn.id, "s07").Scan(&kind, &version, &origins, &kv, &nonce, &ct, &c, &u); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSec(b)
}

func BenchmarkBaselineLockedBuffer(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		memguard.NewBuffer(len(benchValue)).Destroy()
	}
	opsPerSec(b)
}

func BenchmarkPutSecret(b *testing.B) {
	_, tn := benchStore(b)
	ctx := context.Background()
	value := []byte(benchValue)
	origins := []string{"https://acme.test"}
	names := make([]string, 64)
	for i := range names {
		names[i] = fmt.Sprintf("s%02d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := tn.PutSecret(ctx, names[i%64], value, origins, ""); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSec(b)
}

func BenchmarkBaselineUpsert(b *testing.B) {
	s, _ := benchStore(b)
	ctx := context.Background()
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE plain (name TEXT PRIMARY KEY, version INTEGER NOT NULL, value BLOB NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	blob := make([]byte, len(benchValue)+tagLen+nonceLen)
	names := make([]string, 64)
	for i := range names {
		names[i] = fmt.Sprintf("s%02d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO plain (name, version, value) VALUES (?, 1, ?) ON CONFLICT (name) DO UPDATE SET version = version + 1, value = excluded.value`, names[i%64], blob); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSec(b)
}

func BenchmarkAuthenticate(b *testing.B) {
	s, _ := benchStore(b)
	ctx := context.Background()
	tok, _, err := s.CreateToken(ctx, "bench", "")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Authenticate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSec(b)
}

func BenchmarkRevision(b *testing.B) {
	_, tn := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tn.Revision(ctx); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSec(b)
}

// BenchmarkCheckMemlock: the RLIMIT_MEMLOCK headroom check Reveal pays before each
// LockedBuffer (getrlimit + /proc/self/status).
func BenchmarkCheckMemlock(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := checkMemlock(64); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSec(b)
}
