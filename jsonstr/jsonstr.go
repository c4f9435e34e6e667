// Package jsonstr owns the decoding of JSON string literals into buffers the
// caller owns. Unlike encoding/json it never makes a Go string or a buffer
// of its own, so a caller decoding a secret (into a memguard buffer, or a
// pooled buffer it wipes) leaves no copy behind. The decoded form is never
// longer than the escaped one, so appending to a slice with cap >= len(s)
// never reallocates.
package jsonstr

import (
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrSyntax reports a malformed string literal.
var ErrSyntax = errors.New("jsonstr: malformed JSON string")

// Unquote appends the decoded value of the quoted JSON string q to dst.
func Unquote(dst, q []byte) ([]byte, error) {
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return dst, ErrSyntax
	}
	return Unescape(dst, q[1:len(q)-1])
}

// Unescape appends the unescaped contents of a JSON string (without its
// quotes) to dst. Lone or invalid surrogates become U+FFFD, as in
// encoding/json.
func Unescape(dst, s []byte) ([]byte, error) {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 >= len(s) {
			return dst, ErrSyntax
		}
		switch s[i+1] {
		case '"', '\\', '/':
			dst = append(dst, s[i+1])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := Hex4(s[i+2:])
			if !ok {
				return dst, ErrSyntax
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if r2, ok := Hex4(s[i+2:]); ok {
						if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
							dst = utf8.AppendRune(dst, d)
							i += 6
							continue
						}
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default:
			return dst, ErrSyntax
		}
		i += 2
	}
	return dst, nil
}

// Hex4 decodes the four hex digits at the start of b.
func Hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}
