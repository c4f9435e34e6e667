package secretstore

import (
	"errors"
	"testing"
)

func TestMemlockHeadroom(t *testing.T) {
	t.Parallel()
	status := func(lck, capEff string) []byte {
		return []byte("Name:\tx\nVmLck:\t" + lck + " kB\nCapEff:\t" + capEff + "\n")
	}
	noCap := "0000000000000000"
	withCap := "0000000000004000"
	cases := []struct {
		st    []byte
		limit uint64
		want  int64
		err   bool
	}{
		{status("0", noCap), 8 << 20, 8<<20 - memlockReserve, false},
		{status("8000", noCap), 8 << 20, (8192-8000)<<10 - memlockReserve, false},
		{status("8128", noCap), 8 << 20, 0, false},
		{status("9000", noCap), 8 << 20, 0, false},
		{status("8125", withCap), 8 << 20, -1, false}, // CAP_IPC_LOCK lifts the limit
		{[]byte("Name:\tx\nCapEff:\t" + noCap + "\n"), 8 << 20, 0, true},
	}
	for i, c := range cases {
		got, err := memlockHeadroom(c.st, c.limit)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("case %d: %d, %v; want %d (err %v)", i, got, err, c.want, c.err)
		}
		if err != nil && !errors.Is(err, ErrMemlock) {
			t.Errorf("case %d: %v is not ErrMemlock", i, err)
		}
	}
	if n, err := LockableMemory(); err != nil || (n >= 0 && n < 1<<20) {
		t.Fatalf("LockableMemory: %d %v", n, err)
	}
	b, err := newLocked(32) // the live process has headroom
	if err != nil {
		t.Fatal(err)
	}
	b.Destroy()
}
