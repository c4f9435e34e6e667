package secretstore

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestWriteWaitsForAnotherWriter: while another process holds the write lock, a write
// blocks (bounded by its context) instead of failing at once, and succeeds once the lock is
// released; reads are not blocked meanwhile.
func TestWriteWaitsForAnotherWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	s := openStore(t, path, newKey(t))
	tn := mustTenant(t, s, "acme")
	mustPut(t, tn, "r", []byte("readable-while-locked"))

	other, err := sql.Open("sqlite", dsn(path)) // a foreign connection, as another process would have
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	holder, err := other.BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(`UPDATE tenants SET revision = revision WHERE 0`); err != nil {
		t.Fatal(err)
	}

	mustReveal(t, tn, "r", []byte("readable-while-locked"))

	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	start := time.Now()
	_, _, err = tn.PutSecret(short, "w", []byte("value-while-locked"), nil, "")
	cancel()
	if err == nil {
		t.Fatal("write succeeded while another connection held the write lock")
	}
	if !errors.Is(err, context.DeadlineExceeded) && !isBusy(err) && !errors.Is(err, context.Canceled) {
		t.Fatalf("blocked write: %v", err)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("blocked write ignored its context for %v", el)
	}

	done := make(chan error, 1)
	go func() {
		_, _, err := tn.PutSecret(ctx, "w", []byte("value-after-unlock"), nil, "")
		done <- err
	}()
	if err := holder.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write after the lock was released: %v", err)
	}
	mustReveal(t, tn, "w", []byte("value-after-unlock"))
}
