package scrub

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cdpvault/cdpvault/jsonstr"
)

// walker visits every scalar of a JSON document with the path of keys
// leading to it ("[]" for array elements), without copying anything: keys
// and values are spans of the input.
type walker struct {
	b    []byte
	i    int
	path [][]byte
	cb   func(path [][]byte, s, e int)
}

var arrayElem = []byte("[]")

const maxDepth = 512

var errJSON = errors.New("malformed JSON")

func walkJSON(b []byte, cb func(path [][]byte, s, e int)) error {
	w := walker{b: b, cb: cb}
	if err := w.value(0); err != nil {
		return err
	}
	w.ws()
	if w.i != len(b) {
		return fmt.Errorf("%w: trailing data at %d", errJSON, w.i)
	}
	return nil
}

func (w *walker) ws() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\r', '\n':
			w.i++
		default:
			return
		}
	}
}

func (w *walker) expect(c byte) error {
	w.ws()
	if w.i >= len(w.b) || w.b[w.i] != c {
		return fmt.Errorf("%w: want %q at %d", errJSON, c, w.i)
	}
	w.i++
	return nil
}

// str moves past the string starting at w.i: it jumps from quote to quote
// and stops at one not escaped by an odd run of backslashes.
func (w *walker) str() error {
	if w.i >= len(w.b) || w.b[w.i] != '"' {
		return fmt.Errorf("%w: want string at %d", errJSON, w.i)
	}
	start := w.i + 1
	for p := start; p < len(w.b); {
		j := bytes.IndexByte(w.b[p:], '"')
		if j < 0 {
			break
		}
		q := p + j
		bs := 0
		for k := q - 1; k >= start && w.b[k] == '\\'; k-- {
			bs++
		}
		if bs%2 == 0 {
			w.i = q + 1
			return nil
		}
		p = q + 1
	}
	return fmt.Errorf("%w: unterminated string", errJSON)
}

func (w *walker) value(depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested too deeply", errJSON)
	}
	w.ws()
	if w.i >= len(w.b) {
		return fmt.Errorf("%w: unexpected end", errJSON)
	}
	switch w.b[w.i] {
	case '{':
		w.i++
		w.ws()
		if w.i < len(w.b) && w.b[w.i] == '}' {
			w.i++
			return nil
		}
		for {
			w.ws()
			ks := w.i
			if err := w.str(); err != nil {
				return err
			}
			key := w.b[ks+1 : w.i-1]
			if err := w.expect(':'); err != nil {
				return err
			}
			w.path = append(w.path, key)
			if err := w.value(depth + 1); err != nil {
				return err
			}
			w.path = w.path[:len(w.path)-1]
			w.ws()
			if w.i < len(w.b) && w.b[w.i] == ',' {
				w.i++
				continue
			}
			return w.expect('}')
		}
	case '[':
		w.i++
		w.ws()
		if w.i < len(w.b) && w.b[w.i] == ']' {
			w.i++
			return nil
		}
		for {
			w.path = append(w.path, arrayElem)
			if err := w.value(depth + 1); err != nil {
				return err
			}
			w.path = w.path[:len(w.path)-1]
			w.ws()
			if w.i < len(w.b) && w.b[w.i] == ',' {
				w.i++
				continue
			}
			return w.expect(']')
		}
	case '"':
		s := w.i
		if err := w.str(); err != nil {
			return err
		}
		w.cb(w.path, s, w.i)
		return nil
	default:
		s := w.i
		for w.i < len(w.b) {
			c := w.b[w.i]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\r' || c == '\n' {
				break
			}
			w.i++
		}
		if w.i == s {
			return fmt.Errorf("%w: unexpected character at %d", errJSON, s)
		}
		w.cb(w.path, s, w.i)
		return nil
	}
}

// pathIs reports whether path equals want.
func pathIs(path [][]byte, want ...string) bool {
	if len(path) != len(want) {
		return false
	}
	for i := range want {
		if string(path[i]) != want[i] {
			return false
		}
	}
	return true
}

// unquote decodes the JSON string literal q (with quotes) by appending to
// dst, so that the caller owns (and can wipe) every byte.
func unquote(dst, q []byte) ([]byte, error) {
	out, err := jsonstr.Unquote(dst, q)
	if err != nil {
		return out, fmt.Errorf("%w: %v", errJSON, err)
	}
	return out, nil
}

// quote appends s as a JSON string literal the way Chrome writes it
// (", \ and control characters escaped, everything else raw; invalid UTF-8
// passes as is, which JSON parsers replace by U+FFFD).
func quote(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range s {
		switch {
		case c == '"':
			dst = append(dst, '\\', '"')
		case c == '\\':
			dst = append(dst, '\\', '\\')
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
