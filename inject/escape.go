package inject

import (
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// escapedLen returns the length of src written as the inside of a JSON string
// by appendEscaped, so a buffer can be sized once and never reallocated
// (a reallocation would leave an unwiped copy of a value behind).
func escapedLen(src []byte) int {
	n := 0
	for i := 0; i < len(src); {
		c := src[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f':
				n += 2
			case c < 0x20 || c == 0x7f:
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(src[i:])
		if r == utf8.RuneError && size == 1 {
			n += 6 // \ufffd
		} else if r == '\u2028' || r == '\u2029' {
			n += 6
		} else {
			n += size
		}
		i += size
	}
	return n
}

// appendEscaped appends src as the inside of a JSON string: quote,
// backslash and control characters escaped, valid non-ASCII UTF-8 (emoji
// included) copied as is, so Chrome's JSON parser yields exactly src.
// Invalid UTF-8 becomes U+FFFD, since text input carries Unicode only.
// The caller sizes dst with escapedLen so append never reallocates.
func appendEscaped(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				if c < 0x20 || c == 0x7f {
					dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
				} else {
					dst = append(dst, c)
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(src[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028':
			dst = append(dst, `\u2028`...)
		case r == '\u2029':
			dst = append(dst, `\u2029`...)
		default:
			dst = append(dst, src[i:i+size]...)
		}
		i += size
	}
	return dst
}

// wipe zeroes b (the whole capacity, in case a caller resliced it).
func wipe(b []byte) {
	b = b[:cap(b)]
	for i := range b {
		b[i] = 0
	}
}
