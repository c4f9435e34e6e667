package totp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// rfcSeed is RFC 6238's SHA-1 test key "12345678901234567890" in base32.
var rfcSeed = base32.StdEncoding.EncodeToString([]byte("12345678901234567890"))

func code(t *testing.T, seed string, at time.Time) string {
	t.Helper()
	dst := make([]byte, Digits)
	if err := Code(dst, []byte(seed), at); err != nil {
		t.Fatalf("Code(%q): %v", seed, err)
	}
	return string(dst)
}

// TestRFC6238Vectors: the SHA-1 rows of RFC 6238 appendix B, last six of
// their eight digits.
func TestRFC6238Vectors(t *testing.T) {
	for _, v := range []struct {
		unix int64
		want string
	}{
		{59, "287082"},
		{1111111109, "081804"},
		{1111111111, "050471"},
		{1234567890, "005924"},
		{2000000000, "279037"},
		{20000000000, "353130"},
	} {
		if got := code(t, rfcSeed, time.Unix(v.unix, 0)); got != v.want {
			t.Errorf("T=%d: %s, want %s", v.unix, got, v.want)
		}
	}
}

// reference is RFC 4226 with crypto/hmac, to check hotp's own HMAC.
func reference(key []byte, counter uint64) uint32 {
	m := hmac.New(sha1.New, key)
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	m.Write(msg[:])
	s := m.Sum(nil)
	off := s[len(s)-1] & 0x0f
	return (binary.BigEndian.Uint32(s[off:off+4]) & 0x7fffffff) % 1000000
}

// TestHOTPMatchesCryptoHMAC: keys of every length around the SHA-1 block
// (a key over 64 bytes is hashed first) and random counters.
func TestHOTPMatchesCryptoHMAC(t *testing.T) {
	for n := 1; n <= 130; n++ {
		key := make([]byte, n)
		rand.Read(key)
		var c [8]byte
		rand.Read(c[:])
		counter := binary.BigEndian.Uint64(c[:])
		if got, want := hotp(append([]byte(nil), key...), counter), reference(key, counter); got != want {
			t.Fatalf("key of %d bytes, counter %d: %d, want %d", n, counter, got, want)
		}
	}
}

// TestSeedForms: the forms secretstore accepts for kind totp (any case,
// spaces, trailing padding) give the same code; what is not base32 is an
// error that does not quote the seed.
func TestSeedForms(t *testing.T) {
	at := time.Unix(1111111109, 0)
	want := code(t, rfcSeed, at)
	lower := strings.ToLower(rfcSeed)
	spaced := lower[:4] + " " + lower[4:8] + " " + lower[8:]
	for _, s := range []string{lower, spaced, "GEZDGNBVGY3TQOJQ" + "GEZDGNBVGY3TQOJQ", rfcSeed + "===="} {
		if got := code(t, s, at); got != want {
			t.Errorf("seed %q: %s, want %s", s, got, want)
		}
	}
	// A seed with padding: 10 bytes -> 16 characters; 5 bytes need none; 1 byte "ME======".
	if got, ref := code(t, "ME======", at), reference([]byte("a"), uint64(at.Unix()/30)); got != fmt.Sprintf("%06d", ref) {
		t.Errorf("padded seed: %s, want %s", got, fmt.Sprintf("%06d", ref))
	}
	for _, bad := range []string{"", "   ", "====", "not base32!", "MZXW6YTBOI1"} {
		dst := make([]byte, Digits)
		err := Code(dst, []byte(bad), at)
		if !errors.Is(err, ErrSeed) {
			t.Errorf("seed %q: %v, want ErrSeed", bad, err)
		}
		if bad != "" && err != nil && strings.Contains(err.Error(), bad) {
			t.Errorf("error quotes the seed: %v", err)
		}
	}
	if err := Code(make([]byte, Digits-1), []byte(rfcSeed), at); err == nil {
		t.Error("a short code buffer was accepted")
	}
}

// TestCodeChangesEveryStep: the same code throughout a 30-second step and,
// for this seed, a different one in the next.
func TestCodeChangesEveryStep(t *testing.T) {
	start := time.Unix(1111111110, 0) // a step boundary (37037037 * 30)
	a, b := code(t, rfcSeed, start), code(t, rfcSeed, start.Add(Step-time.Second))
	c := code(t, rfcSeed, start.Add(Step))
	if a != b || a == c {
		t.Fatalf("codes %s %s %s: want the first two equal and the third different", a, b, c)
	}
}

// TestDecodeSeedMatchesBase32: the hand decoder gives encoding/base32's
// bytes for keys of every length, padded or not, in any case and spacing,
// and refuses what is not base32 (bad symbols, data after padding, lengths
// no whole byte count ends at).
func TestDecodeSeedMatchesBase32(t *testing.T) {
	for n := 1; n <= 70; n++ {
		key := make([]byte, n)
		rand.Read(key)
		enc := base32.StdEncoding.EncodeToString(key)
		for _, form := range []string{enc, strings.TrimRight(enc, "="), strings.ToLower(enc), spaced(enc)} {
			got, err := decodeSeed([]byte(form))
			if err != nil || string(got) != string(key) {
				t.Fatalf("%d bytes as %q: %x, %v; want %x", n, form, got, err, key)
			}
		}
	}
	for _, bad := range []string{"A", "ABC", "ABCDEF", "ABCDEFGHA", "AB=CD", "MZXW6YTBOI1", "MZXW6YTB0", "ÄBCDEFGH"} {
		if k, err := decodeSeed([]byte(bad)); !errors.Is(err, ErrSeed) {
			t.Errorf("%q decoded to %x", bad, k)
		}
	}
}

func spaced(s string) string {
	var b strings.Builder
	for i, c := range s {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// TestDecodeSeedMakesNoOtherCopy: decoding allocates the key and nothing
// else, so no unwiped copy of the seed is left on the heap (as
// encoding/base32's Decode leaves one).
func TestDecodeSeedMakesNoOtherCopy(t *testing.T) {
	seed := []byte(strings.Repeat("GEZDGNBVGY3TQOJQ", 4))
	allocs := testing.AllocsPerRun(100, func() {
		k, err := decodeSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		clear(k[:cap(k)])
	})
	if allocs != 1 {
		t.Fatalf("decodeSeed allocates %v times, want 1 (the key)", allocs)
	}
}
