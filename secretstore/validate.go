package secretstore

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// MinValueLen is the shortest secret value accepted, in bytes.
//
// Every secret value of a tenant is scrubbed (replaced by its placeholder) from everything
// that flows back to the agent, in every common encoding. A very short value such as "1234"
// or "admin" would shred ordinary page text, and which text got replaced would itself tell a
// probing agent what the value is (a redaction oracle). Eight bytes keeps accidental matches
// in real pages negligible and the oracle useless.
const MinValueLen = 8

// MaxValueLen is the longest secret value accepted, in bytes.
const MaxValueLen = 4096

// MaxOrigins is the largest number of origins one secret may carry.
const MaxOrigins = 64

// maxNameLen is the longest tenant or secret name.
const maxNameLen = 128

// Kind says what a secret is; it decides which characters its value may hold.
type Kind string

// The kinds of secret.
const (
	// KindPassword (the default): one line of printable text, no control characters.
	KindPassword Kind = "password"
	// KindText: any UTF-8 text without NUL bytes; tabs and line breaks allowed.
	KindText Kind = "text"
	// KindTOTP: a base32 TOTP seed (RFC 4648 alphabet, case-insensitive, spaces and trailing
	// padding allowed).
	KindTOTP Kind = "totp"
)

// ParseKind turns s into a Kind; "" means KindPassword.
func ParseKind(s string) (Kind, error) {
	switch Kind(s) {
	case "", KindPassword:
		return KindPassword, nil
	case KindText:
		return KindText, nil
	case KindTOTP:
		return KindTOTP, nil
	}
	return "", fmt.Errorf("%w %q (want password, text or totp)", ErrInvalidKind, clip(s))
}

// ValidName reports whether s is a valid tenant or secret name:
// ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func checkName(what, s string) error {
	if !ValidName(s) {
		return fmt.Errorf("%s name %q: must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$: %w", what, clip(s), ErrInvalidName)
	}
	return nil
}

// clip shortens user input quoted in an error message (never used on secret values).
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// ValidOrigin normalises an origin: "*" (any origin, only when given explicitly) or
// scheme://host[:port] with scheme http or https. The scheme and host are lowercased,
// internationalised host names are converted to punycode, a default port (80 for http,
// 443 for https) is dropped and a lone trailing "/" is accepted. Paths, queries, fragments
// and user info are refused with ErrInvalidOrigin.
func ValidOrigin(s string) (string, error) {
	if s == "*" {
		return "*", nil
	}
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("origin %q: %s (want scheme://host[:port] with scheme http or https, or \"*\"): %w", clip(s), why, ErrInvalidOrigin)
	}
	if s == "" {
		return bad("empty")
	}
	if len(s) > 300 {
		return bad("too long")
	}
	if !utf8.ValidString(s) {
		return bad("not valid UTF-8")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '\\' {
			return bad("contains whitespace, a control character or a backslash")
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return bad("scheme must be http or https")
	}
	if u.Opaque != "" || u.Host == "" {
		return bad("no host")
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return bad("user info is not allowed")
	}
	if (u.Path != "" && u.Path != "/") || u.RawPath != "" {
		return bad("a path is not allowed")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(s, "?#") {
		return bad("a query or fragment is not allowed")
	}
	if strings.HasSuffix(u.Host, ":") {
		return bad("empty port")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return bad("no host")
	}
	if strings.Contains(host, "*") {
		return bad("wildcard hosts are not supported; use \"*\" for any origin")
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		if addr.Zone() != "" {
			return bad("IPv6 zones are not allowed")
		}
		if addr.Is6() && !strings.HasPrefix(u.Host, "[") {
			return bad("IPv6 addresses need brackets")
		}
		host = addr.String()
		if addr.Is6() {
			host = "[" + host + "]"
		}
	} else {
		if strings.HasPrefix(u.Host, "[") {
			return bad("malformed IP literal")
		}
		ascii, err := idna.Lookup.ToASCII(host)
		if err != nil || !validHostname(ascii) {
			return bad("malformed host name")
		}
		if again, err := idna.Lookup.ToASCII(ascii); err != nil || again != ascii {
			return bad("malformed host name")
		}
		host = ascii
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || len(port) > 5 {
			return bad("port must be 1-65535")
		}
		if (u.Scheme == "http" && n == 80) || (u.Scheme == "https" && n == 443) {
			port = ""
		} else {
			port = strconv.Itoa(n)
		}
	}
	out := u.Scheme + "://" + host
	if port != "" {
		out += ":" + port
	}
	return out, nil
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// normaliseOrigins validates, normalises and de-duplicates origins, keeping their order.
func normaliseOrigins(in []string) ([]string, error) {
	if len(in) > MaxOrigins {
		return nil, fmt.Errorf("%d origins, at most %d allowed: %w", len(in), MaxOrigins, ErrInvalidOrigin)
	}
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	for _, o := range in {
		n, err := ValidOrigin(o)
		if err != nil {
			return nil, err
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// CheckValue reports whether value is acceptable for a secret of the given kind ("" means
// password). The error wraps ErrInvalidValue (or ErrInvalidKind) and never contains the value.
func CheckValue(kind Kind, value []byte) error {
	k, err := ParseKind(string(kind))
	if err != nil {
		return err
	}
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrInvalidValue, why) }
	switch {
	case len(value) == 0:
		return bad("empty")
	case len(value) < MinValueLen:
		return bad(fmt.Sprintf("shorter than %d bytes (short values would make scrubbing shred ordinary text)", MinValueLen))
	case len(value) > MaxValueLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxValueLen))
	case !utf8.Valid(value):
		return bad("not valid UTF-8")
	}
	switch k {
	case KindText:
		for _, c := range value {
			if c == 0 {
				return bad("contains a NUL byte")
			}
		}
	case KindPassword:
		for i := 0; i < len(value); {
			r, n := utf8.DecodeRune(value[i:])
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				return bad("contains a control character such as a line break (kind password takes one line; strip the trailing newline or use kind text)")
			}
			i += n
		}
	case KindTOTP:
		if !validBase32Seed(value) {
			return bad("a totp seed must be base32 (letters A-Z and digits 2-7)")
		}
	}
	return nil
}

// validBase32Seed checks the alphabet and length of a base32 seed without decoding it into
// ordinary memory.
func validBase32Seed(v []byte) bool {
	n, pad := 0, 0
	for _, c := range v {
		switch {
		case c == ' ':
		case c == '=':
			pad++
		case pad > 0:
			return false // data after padding
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '2' && c <= '7':
			n++
		default:
			return false
		}
	}
	if pad > 0 && (n+pad)%8 != 0 {
		return false
	}
	switch n % 8 {
	case 0, 2, 4, 5, 7:
		return n >= 8
	}
	return false
}
