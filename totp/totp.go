// Package totp derives the one-time codes of RFC 6238 (TOTP: HMAC-SHA1,
// 30-second steps, 6 digits, the parameters authenticator apps use) from a
// base32 seed held in a memguard buffer, for secrets of kind totp: the
// page gets the current code, never the seed.
//
// It owns only that derivation. The seed is decoded by hand into a wiped
// scratch slice (encoding/base32 keeps an unwiped copy of its input); HMAC is computed here over the SHA-1 primitive rather than with
// crypto/hmac, whose hash keeps the key XORed with its pads (which is as
// good as the key) in heap memory nobody wipes. The code is written
// straight into the caller's buffer (a LockedBuffer's): neither seed nor
// code is ever a Go string.
package totp

import (
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/awnumar/memguard"
)

// Parameters of the codes.
const (
	Digits = 6
	Step   = 30 * time.Second

	modulus = 1_000_000 // 10^Digits
)

// ErrSeed: the seed is not base32 (its bytes are never quoted).
var ErrSeed = errors.New("totp: the seed is not valid base32")

// Code writes the code for time t from seed (base32 text as stored: any
// case, spaces and trailing padding allowed) into dst as Digits ASCII
// digits. dst is the caller's, normally a LockedBuffer's bytes.
func Code(dst, seed []byte, t time.Time) error {
	if len(dst) < Digits {
		return fmt.Errorf("totp: code buffer of %d bytes, want %d", len(dst), Digits)
	}
	key, err := decodeSeed(seed)
	if err != nil {
		return err
	}
	v := hotp(key, uint64(t.Unix())/uint64(Step/time.Second))
	memguard.WipeBytes(key[:cap(key)])
	for i := Digits - 1; i >= 0; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
	return nil
}

// decodeSeed returns the key bytes of a base32 seed (RFC 4648 alphabet,
// any case, spaces, trailing padding) in a slice the caller wipes (all of
// its capacity). It decodes by hand: encoding/base32 copies its input into
// a buffer of its own that nobody wipes.
func decodeSeed(seed []byte) ([]byte, error) {
	key := make([]byte, 0, len(seed)*5/8+1) // never grows: no copy left behind
	var acc uint32                          // the bits not yet in key
	fail := func() ([]byte, error) {
		acc = 0
		memguard.WipeBytes(key[:cap(key)])
		return nil, ErrSeed
	}
	bits, symbols, padded := 0, 0, false
	for _, c := range seed {
		var v byte
		switch {
		case c == ' ':
			continue
		case c == '=':
			padded = true
			continue
		case padded:
			return fail() // data after padding
		case c >= 'A' && c <= 'Z':
			v = c - 'A'
		case c >= 'a' && c <= 'z':
			v = c - 'a'
		case c >= '2' && c <= '7':
			v = c - '2' + 26
		default:
			return fail()
		}
		acc = acc<<5 | uint32(v)
		bits += 5
		symbols++
		if bits >= 8 {
			bits -= 8
			key = append(key, byte(acc>>bits))
			acc &= 1<<bits - 1
		}
	}
	acc = 0
	switch symbols % 8 {
	case 1, 3, 6: // no whole number of bytes ends there
		return fail()
	}
	if len(key) == 0 {
		return fail()
	}
	return key, nil
}

// hotp is RFC 4226's HOTP value of counter under key, reduced to Digits
// decimal digits: HMAC-SHA1 built from sha1 with pads in wiped arrays, and
// the hash states reset once read.
func hotp(key []byte, counter uint64) uint32 {
	const block = 64
	var k, pad [block]byte
	if len(key) > block {
		s := sha1.Sum(key)
		copy(k[:], s[:])
		clear(s[:])
	} else {
		copy(k[:], key)
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)

	var inner, outer [sha1.Size]byte
	h := sha1.New()
	for i := range pad {
		pad[i] = k[i] ^ 0x36
	}
	h.Write(pad[:])
	h.Write(msg[:])
	h.Sum(inner[:0])
	h.Reset()
	for i := range pad {
		pad[i] = k[i] ^ 0x5c
	}
	h.Write(pad[:])
	h.Write(inner[:])
	h.Sum(outer[:0])
	h.Reset()

	off := outer[sha1.Size-1] & 0x0f
	v := binary.BigEndian.Uint32(outer[off:off+4]) & 0x7fffffff
	clear(k[:])
	clear(pad[:])
	clear(inner[:])
	clear(outer[:])
	return v % modulus
}
