package secretstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/awnumar/memguard"
)

const (
	dataKeyLen = 32
	nonceLen   = 12
	tagLen     = 16

	adSecretLabel = "cdpvault/secret/v1"
	adWrapLabel   = "cdpvault/tenant-key/v1"
)

func newGCM(key []byte) (cipher.AEAD, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

func randomNonce() []byte {
	n := make([]byte, nonceLen)
	if _, err := rand.Read(n); err != nil {
		panic("crypto/rand failed: " + err.Error()) // crypto/rand.Read never fails since Go 1.24
	}
	return n
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// secretAD is the additional data authenticated with a secret's ciphertext. It binds the
// tenant, the secret's name and version, the data key version, and the metadata that decides
// where the value may go (kind and origins), so a ciphertext copied to another row or tenant,
// or an origin list widened by someone who can write the database file, fails to decrypt.
func secretAD(tenantID int64, keyVersion int, name string, version int, kind Kind, origins []string) []byte {
	b := make([]byte, 0, 96+len(name)+16*len(origins))
	b = appendString(b, adSecretLabel)
	b = binary.BigEndian.AppendUint64(b, uint64(tenantID))
	b = binary.BigEndian.AppendUint64(b, uint64(keyVersion))
	b = binary.BigEndian.AppendUint64(b, uint64(version))
	b = appendString(b, name)
	b = appendString(b, string(kind))
	b = binary.BigEndian.AppendUint32(b, uint32(len(origins)))
	for _, o := range origins {
		b = appendString(b, o)
	}
	return b
}

// wrapAD binds a wrapped data key to its tenant, data key version and master key version.
func wrapAD(tenantID int64, keyVersion, masterVersion int) []byte {
	b := make([]byte, 0, 64)
	b = appendString(b, adWrapLabel)
	b = binary.BigEndian.AppendUint64(b, uint64(tenantID))
	b = binary.BigEndian.AppendUint64(b, uint64(keyVersion))
	b = binary.BigEndian.AppendUint64(b, uint64(masterVersion))
	return b
}

// withMasterKey opens the master key enclave for the duration of fn only.
func withMasterKey(e *memguard.Enclave, fn func(kek cipher.AEAD) error) error {
	b, err := openEnclave(e)
	if err != nil {
		return fmt.Errorf("open master key: %w", err)
	}
	defer b.Destroy()
	if b.Size() != MasterKeyLen {
		return fmt.Errorf("master key is %d bytes, want %d", b.Size(), MasterKeyLen)
	}
	kek, err := newGCM(b.Bytes())
	if err != nil {
		return fmt.Errorf("master key cipher: %w", err)
	}
	return fn(kek)
}

// wrapKey seals a data key under a master key cipher.
func wrapKey(kek cipher.AEAD, dataKey []byte, tenantID int64, keyVersion, masterVersion int) (nonce, wrapped []byte) {
	nonce = randomNonce()
	return nonce, kek.Seal(nil, nonce, dataKey, wrapAD(tenantID, keyVersion, masterVersion))
}

// unwrapKey opens a wrapped data key straight into a LockedBuffer the caller destroys.
func unwrapKey(kek cipher.AEAD, nonce, wrapped []byte, tenantID int64, keyVersion, masterVersion int) (*memguard.LockedBuffer, error) {
	if len(nonce) != nonceLen || len(wrapped) != dataKeyLen+tagLen {
		return nil, fmt.Errorf("tenant key: malformed wrapped key: %w", ErrIntegrity)
	}
	buf, err := newLocked(dataKeyLen)
	if err != nil {
		return nil, err
	}
	if _, err := kek.Open(buf.Bytes()[:0], nonce, wrapped, wrapAD(tenantID, keyVersion, masterVersion)); err != nil {
		buf.Destroy()
		return nil, fmt.Errorf("tenant key: %w", ErrIntegrity)
	}
	return buf, nil
}

// openInto decrypts ct into dst[:0] (dst must have capacity len(ct)-tagLen and must not
// overlap ct) and returns the plaintext slice.
func openInto(a cipher.AEAD, dst, nonce, ct, ad []byte) ([]byte, error) {
	if len(nonce) != nonceLen || len(ct) < tagLen || cap(dst) < len(ct)-tagLen {
		return nil, ErrIntegrity
	}
	out, err := a.Open(dst[:0], nonce, ct, ad)
	if err != nil {
		return nil, ErrIntegrity
	}
	return out, nil
}
