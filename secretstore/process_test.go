package secretstore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/awnumar/memguard"
)

// helperCmd starts this test binary as a writer process on the store.
func helperCmd(ctx context.Context, t *testing.T, db, keyFile, tenant, prefix, shared string, count int) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		helperEnv+"=writer",
		"SECRETSTORE_DB="+db,
		"SECRETSTORE_KEY="+keyFile,
		"SECRETSTORE_TENANT="+tenant,
		"SECRETSTORE_PREFIX="+prefix,
		"SECRETSTORE_SHARED="+shared,
		fmt.Sprintf("SECRETSTORE_COUNT=%d", count),
	)
	return cmd
}

func integrityCheck(t *testing.T, s *Store) {
	t.Helper()
	var res string
	if err := s.db.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check: %q %v", res, err)
	}
	var fkProblems int
	rows, err := s.db.Query(`PRAGMA foreign_key_check`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		fkProblems++
	}
	rows.Close()
	if fkProblems != 0 {
		t.Fatalf("foreign_key_check: %d problems", fkProblems)
	}
}

// TestConcurrentWritersAcrossStoresAndProcesses: two *Store on one file in this process
// (daemon-like) and a child process (CLI-like) write at once, including to one shared
// secret; no write is lost and every version is counted.
func TestConcurrentWritersAcrossStoresAndProcesses(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	db := filepath.Join(dir, "store.db")
	keyFile := filepath.Join(dir, "master.key")
	writeKeyFile(t, keyFile)
	key, err := LoadMasterKey(keyFile, false)
	if err != nil {
		t.Fatal(err)
	}
	s1 := openStore(t, db, key)
	s2 := openStore(t, db, key)
	mustTenant(t, s1, "acme")

	const n = 40
	child := helperCmd(ctx, t, db, keyFile, "acme", "child", "shared", n)
	var childOut, childErr bytes.Buffer
	child.Stdout, child.Stderr = &childOut, &childErr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i, s := range []*Store{s1, s2, s1} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tn, err := s.Tenant(ctx, "acme")
			if err != nil {
				t.Error(err)
				return
			}
			for j := 0; j < n; j++ {
				name := fmt.Sprintf("w%d-%d", i, j)
				if _, _, err := tn.PutSecret(ctx, name, valueFor(name), nil, ""); err != nil {
					t.Errorf("writer %d: %v", i, err)
					return
				}
				if _, _, err := tn.PutSecret(ctx, "shared", valueFor("shared"), nil, ""); err != nil {
					t.Errorf("writer %d shared: %v", i, err)
					return
				}
				if err := tn.RevealFunc(ctx, name, func(_ Meta, v []byte) error {
					if !bytes.Equal(v, valueFor(name)) {
						return fmt.Errorf("read back %s wrong", name)
					}
					return nil
				}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := child.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, childErr.String())
	}
	if got := strings.Count(childOut.String(), "\n"); got != n {
		t.Fatalf("child acknowledged %d writes, want %d", got, n)
	}
	tn, err := s2.Tenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	list, err := tn.Secrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 4*n+1 {
		t.Fatalf("%d secrets, want %d", len(list), 4*n+1)
	}
	for _, m := range list {
		if m.Name == "shared" {
			if m.Version != 4*n {
				t.Fatalf("shared secret version %d, want %d (lost updates)", m.Version, 4*n)
			}
			continue
		}
		mustReveal(t, tn, m.Name, valueFor(m.Name))
	}
	integrityCheck(t, s1)
}

// TestKilledWriterLosesNoAcknowledgedWrite: a child process writing in a loop is killed
// with SIGKILL mid-write; the store passes integrity_check and holds every write the child
// acknowledged (printed after PutSecret returned).
func TestKilledWriterLosesNoAcknowledgedWrite(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	db := filepath.Join(dir, "store.db")
	keyFile := filepath.Join(dir, "master.key")
	writeKeyFile(t, keyFile)
	key, err := LoadMasterKey(keyFile, false)
	if err != nil {
		t.Fatal(err)
	}
	setup := openStore(t, db, key)
	mustTenant(t, setup, "acme")
	setup.Close()

	for round := 0; round < 3; round++ {
		prefix := fmt.Sprintf("r%d", round)
		child := helperCmd(ctx, t, db, keyFile, "acme", prefix, "shared", 0)
		stdout, err := child.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		child.Stderr = &stderr
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(stdout)
		var acked []string
		killAt := 25 + 7*round
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break // EOF after the kill; a partial line is not an acknowledgement
			}
			acked = append(acked, strings.TrimSuffix(line, "\n"))
			if len(acked) == killAt {
				if err := child.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		}
		werr := child.Wait()
		if ws, ok := child.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("child did not die of SIGKILL: %v\n%s", werr, stderr.String())
		}
		if len(acked) < killAt {
			t.Fatalf("child acknowledged only %d writes: %s", len(acked), stderr.String())
		}

		s := openStore(t, db, key)
		integrityCheck(t, s)
		tn, err := s.Tenant(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range acked {
			mustReveal(t, tn, name, valueFor(name))
		}
		// Whatever the child wrote is whole: every row decrypts.
		count := 0
		if err := tn.RevealAll(ctx, func(m Meta, v *memguard.LockedBuffer) error {
			count++
			if !bytes.Equal(v.Bytes(), valueFor(m.Name)) {
				return fmt.Errorf("%s holds a wrong value", m.Name)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d acknowledged, %d secrets in store", round, len(acked), count)
		s.Close()
	}
}
