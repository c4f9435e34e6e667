package secretstore

import (
	"errors"
	"fmt"
	"io"

	"github.com/awnumar/memguard"
)

// ReadValue reads a secret value from r (a CLI's stdin) straight into locked memory, never
// through a Go string. One trailing "\n" or "\r\n" is removed (what `echo` or a terminal
// adds); anything else is kept as given. The value is checked against the length limits
// (ErrInvalidValue); kind-specific rules are left to PutSecret. The caller Destroys the
// buffer.
func ReadValue(r io.Reader) (*memguard.LockedBuffer, error) {
	const room = MaxValueLen + 3 // value, "\r\n", and one byte to detect overflow
	tmp, err := newLocked(room)
	if err != nil {
		return nil, fmt.Errorf("read secret value: %w", err)
	}
	defer tmp.Destroy()
	b := tmp.Bytes()
	n := 0
	for n < room {
		m, err := r.Read(b[n:])
		n += m
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read secret value: %w", err)
		}
	}
	v := b[:n]
	if len(v) > 0 && v[len(v)-1] == '\n' {
		v = v[:len(v)-1]
		if len(v) > 0 && v[len(v)-1] == '\r' {
			v = v[:len(v)-1]
		}
	}
	switch {
	case len(v) == 0:
		return nil, fmt.Errorf("%w: empty", ErrInvalidValue)
	case len(v) < MinValueLen:
		return nil, fmt.Errorf("%w: shorter than %d bytes (short values would make scrubbing shred ordinary text)", ErrInvalidValue, MinValueLen)
	case len(v) > MaxValueLen:
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidValue, MaxValueLen)
	}
	out, err := newLocked(len(v))
	if err != nil {
		return nil, fmt.Errorf("read secret value: %w", err)
	}
	out.Move(v) // copies and wipes v
	return out, nil
}
