package redact

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/awnumar/memguard"
	"golang.org/x/sys/unix"
)

// errNoLockedMemory is returned instead of letting memguard fail to mlock
// (memguard's answer to that is to purge every buffer and panic).
var errNoLockedMemory = errors.New("not enough lockable memory (RLIMIT_MEMLOCK)")

// newLocked allocates a mutable locked buffer of size bytes after checking
// that the process may lock that much more memory.
func newLocked(size int) (*memguard.LockedBuffer, error) {
	if size < 1 {
		size = 1
	}
	if err := checkMemlock(size); err != nil {
		return nil, err
	}
	b := memguard.NewBuffer(size)
	if b.Size() != size {
		return nil, errors.New("memguard returned no buffer")
	}
	return b, nil
}

func checkMemlock(size int) error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Cur == unix.RLIM_INFINITY {
		return nil
	}
	page := os.Getpagesize()
	need := uint64((size + page - 1) / page * page)
	locked, err := lockedNow()
	if err != nil {
		return err
	}
	// keep a few pages for memguard's own key and the other users
	const reserve = 16 << 10
	if locked+need+reserve > rl.Cur {
		return fmt.Errorf("%w: need %d bytes, %d of %d locked", errNoLockedMemory, need, locked, rl.Cur)
	}
	return nil
}

// lockedNow reads VmLck from /proc/self/status.
func lockedNow() (uint64, error) {
	f, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read /proc/self/status: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(f))
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("VmLck:")) {
			continue
		}
		fields := bytes.Fields(line[len("VmLck:"):])
		if len(fields) < 1 {
			break
		}
		kb, err := strconv.ParseUint(string(fields[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse VmLck: %w", err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmLck in /proc/self/status")
}
