package secretstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/awnumar/memguard"
	"golang.org/x/sys/unix"
)

// ErrMemlock: a LockedBuffer was not allocated because the process is close to its
// RLIMIT_MEMLOCK. memguard's own answer to a failed mlock is to wipe every buffer and enclave
// key of the process and panic, so the store checks first and fails this one call instead.
var ErrMemlock = errors.New("not enough lockable memory (RLIMIT_MEMLOCK)")

// memlockReserve is left for memguard's internal key buffers and other users.
const memlockReserve = 64 << 10

const capIPCLock = 14

// newLocked allocates a LockedBuffer of size bytes after checking the mlock headroom.
func newLocked(size int) (*memguard.LockedBuffer, error) {
	if err := checkMemlock(size); err != nil {
		return nil, err
	}
	return memguard.NewBuffer(size), nil
}

// NewLocked allocates a LockedBuffer of size bytes for a value derived
// from a secret (a TOTP code), failing with ErrMemlock instead of letting
// memguard panic when the process is close to its RLIMIT_MEMLOCK.
func NewLocked(size int) (*memguard.LockedBuffer, error) { return newLocked(size) }

// openEnclave opens an enclave into a LockedBuffer after checking the mlock headroom.
func openEnclave(e *memguard.Enclave) (*memguard.LockedBuffer, error) {
	if err := checkMemlock(e.Size()); err != nil {
		return nil, err
	}
	return e.Open()
}

// memlockCache remembers the last measured headroom for a short while, so hot paths do not
// read /proc on every allocation: each allocation is subtracted, and the headroom is measured
// again after memlockRecheck or when less than memlockMargin is left. The margin covers what
// other packages may lock in between.
var memlockCache struct {
	sync.Mutex
	until    time.Time
	headroom int64 // bytes; -1 = unlimited
}

const (
	memlockRecheck = 100 * time.Millisecond
	memlockMargin  = 1 << 20
)

// checkMemlock fails with ErrMemlock unless size more bytes may be mlocked.
func checkMemlock(size int) error {
	page := os.Getpagesize()
	need := int64((size + page - 1) / page * page)
	c := &memlockCache
	c.Lock()
	defer c.Unlock()
	now := time.Now()
	if now.Before(c.until) && (c.headroom < 0 || c.headroom-need >= memlockMargin) {
		if c.headroom >= 0 {
			c.headroom -= need
		}
		return nil
	}
	c.until = time.Time{}
	h, err := measureMemlock()
	if err != nil {
		return err
	}
	if h >= 0 && h < need {
		return fmt.Errorf("%w: %d KiB more needed, %d KiB left", ErrMemlock, need/1024, h/1024)
	}
	if h >= 0 {
		h -= need
	}
	c.headroom, c.until = h, now.Add(memlockRecheck)
	return nil
}

// LockableMemory reports how many more bytes this process may mlock now (RLIMIT_MEMLOCK
// minus VmLck minus a small reserve for memguard itself), or -1 when unlimited (no limit, or
// CAP_IPC_LOCK). A daemon can check it at start and refuse to run with too little.
func LockableMemory() (int64, error) { return measureMemlock() }

// measureMemlock returns how many more bytes may be locked (-1: unlimited).
func measureMemlock() (int64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Cur == unix.RLIM_INFINITY {
		return -1, nil
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read /proc/self/status: %w", err)
	}
	return memlockHeadroom(status, rl.Cur)
}

// memlockHeadroom computes from /proc/self/status (VmLck, CapEff) how many more bytes may be
// locked under limit, keeping memlockReserve back; -1 means unlimited (CAP_IPC_LOCK).
func memlockHeadroom(status []byte, limit uint64) (int64, error) {
	var lockedKB uint64
	var haveLocked bool
	for _, line := range bytes.Split(status, []byte("\n")) {
		switch {
		case bytes.HasPrefix(line, []byte("VmLck:")):
			f := bytes.Fields(line[len("VmLck:"):])
			if len(f) >= 1 {
				if v, err := strconv.ParseUint(string(f[0]), 10, 64); err == nil {
					lockedKB, haveLocked = v, true
				}
			}
		case bytes.HasPrefix(line, []byte("CapEff:")):
			if v, err := strconv.ParseUint(string(bytes.TrimSpace(line[len("CapEff:"):])), 16, 64); err == nil && v&(1<<capIPCLock) != 0 {
				return -1, nil
			}
		}
	}
	if !haveLocked {
		return 0, fmt.Errorf("%w: cannot read VmLck", ErrMemlock)
	}
	used := lockedKB*1024 + memlockReserve
	if used >= limit {
		return 0, nil
	}
	return int64(limit - used), nil
}
