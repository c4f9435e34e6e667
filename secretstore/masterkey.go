package secretstore

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/awnumar/memguard"
)

// MasterKeyLen is the size of a master key in bytes.
const MasterKeyLen = 32

// fingerprintLabel is the message of the keyed fingerprint that identifies a master key in
// the store without revealing anything about it.
const fingerprintLabel = "cdpvault master key id"

// LoadMasterKey reads a master key file into a memguard Enclave. The file holds exactly 32
// raw bytes, or 64 hexadecimal characters optionally followed by a newline. A file that group
// or others may read is refused (group bits are tolerated only directly inside systemd's
// $CREDENTIALS_DIRECTORY, where they stand for an ACL mask). When the file does not exist and create is true, a new random
// key is written there (mode 0600, parent directory created 0700) atomically: it is written to
// a temporary file and linked into place, so two processes racing on a fresh data dir end up
// sharing one key.
func LoadMasterKey(path string, create bool) (*memguard.Enclave, error) {
	if path == "" {
		return nil, errors.New("master key file: no path given")
	}
	// O_NONBLOCK: a FIFO or device in place of the key file must not hang the open.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) && create {
		return createMasterKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("master key file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o007 != 0 || (perm&0o070 != 0 && !inCredentialsDir(path)) {
		return nil, fmt.Errorf("master key file %s has mode %04o: group or others may read it; run chmod 600 %s", path, perm, path)
	}
	var raw [2*MasterKeyLen + 3]byte
	defer memguard.WipeBytes(raw[:])
	n, err := io.ReadFull(f, raw[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	key, err := parseMasterKey(raw[:n])
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return memguard.NewEnclave(key), nil // wipes key
}

// inCredentialsDir reports whether path is a file directly inside systemd's
// $CREDENTIALS_DIRECTORY. systemd grants the service user access there with a POSIX ACL when
// it cannot chown, and an ACL mask shows up as group bits in the mode; the directory is a
// private, read-only mount with kernel access checks, so group bits are tolerated there only.
func inCredentialsDir(path string) bool {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		return false
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	return filepath.Dir(abs) == filepath.Clean(dir)
}

// parseMasterKey returns the 32 key bytes in a fresh slice the caller must wipe.
func parseMasterKey(b []byte) ([]byte, error) {
	key := make([]byte, MasterKeyLen)
	switch {
	case len(b) == MasterKeyLen:
		copy(key, b)
	case len(b) == 2*MasterKeyLen,
		len(b) == 2*MasterKeyLen+1 && b[2*MasterKeyLen] == '\n',
		len(b) == 2*MasterKeyLen+2 && b[2*MasterKeyLen] == '\r' && b[2*MasterKeyLen+1] == '\n':
		if _, err := hex.Decode(key, b[:2*MasterKeyLen]); err != nil {
			memguard.WipeBytes(key)
			return nil, errors.New("64-character key is not valid hexadecimal")
		}
	default:
		return nil, fmt.Errorf("must hold exactly %d raw bytes or %d hexadecimal characters (found %d bytes)", MasterKeyLen, 2*MasterKeyLen, len(b))
	}
	zero := true
	for _, c := range key {
		if c != 0 {
			zero = false
		}
	}
	if zero {
		return nil, errors.New("key is all zero bytes")
	}
	return key, nil
}

func createMasterKey(path string) (*memguard.Enclave, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create master key: %w", err)
	}
	key := make([]byte, MasterKeyLen)
	defer memguard.WipeBytes(key)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("create master key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".master-key-*.tmp") // O_EXCL, mode 0600
	if err != nil {
		return nil, fmt.Errorf("create master key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create master key: %w", err)
	}
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create master key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create master key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("create master key: %w", err)
	}
	// link(2) fails if path exists: never overwrite a key another process just created.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadMasterKey(path, false)
		}
		return nil, fmt.Errorf("create master key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return memguard.NewEnclave(key), nil
}

// fingerprint computes HMAC-SHA256(key, "cdpvault master key id"), opening the enclave only
// for the duration of the computation.
func fingerprint(e *memguard.Enclave) ([]byte, error) {
	b, err := openEnclave(e)
	if err != nil {
		return nil, fmt.Errorf("open master key: %w", err)
	}
	defer b.Destroy()
	if b.Size() != MasterKeyLen {
		return nil, fmt.Errorf("master key is %d bytes, want %d", b.Size(), MasterKeyLen)
	}
	m := hmac.New(sha256.New, b.Bytes())
	m.Write([]byte(fingerprintLabel))
	return m.Sum(nil), nil
}
