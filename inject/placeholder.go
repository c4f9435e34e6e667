package inject

import (
	"bytes"
)

// maxNameLen is the longest secret name (see INTERFACE.md: Names).
const maxNameLen = 128

const (
	openMark  = "<<secret:"
	closeMark = ">>"
)

func isNameStart(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

func isNameChar(b byte) bool {
	return isNameStart(b) || b == '_' || b == '.' || b == '-'
}

// ValidName reports whether name matches ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > maxNameLen || !isNameStart(name[0]) {
		return false
	}
	for i := 1; i < len(name); i++ {
		if !isNameChar(name[i]) {
			return false
		}
	}
	return true
}

// match is one complete placeholder found in plain text.
type match struct {
	start, end int // text[start:end] == "<<secret:NAME>>"
	name       string
}

// placeholderAt reports whether a complete placeholder starts at text[i] and
// returns its end and name.
func placeholderAt(text []byte, i int) (end int, name string, ok bool) {
	if !bytes.HasPrefix(text[i:], []byte(openMark)) {
		return 0, "", false
	}
	j := i + len(openMark)
	k := j
	for k < len(text) && k-j < maxNameLen && isNameChar(text[k]) {
		k++
	}
	if k == j || !isNameStart(text[j]) || !bytes.HasPrefix(text[k:], []byte(closeMark)) {
		return 0, "", false
	}
	return k + len(closeMark), string(text[j:k]), true
}

// isPrefix reports whether s (non-empty) is a proper prefix of some valid
// placeholder, i.e. more typed characters could still complete it.
func isPrefix(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	if len(s) <= len(openMark) {
		return openMark[:len(s)] == string(s)
	}
	if !bytes.HasPrefix(s, []byte(openMark)) {
		return false
	}
	rest := s[len(openMark):]
	if !isNameStart(rest[0]) {
		return false
	}
	n := 0
	for n < len(rest) && isNameChar(rest[n]) {
		n++
	}
	if n > maxNameLen {
		return false
	}
	switch len(rest) - n {
	case 0:
		return true
	case 1:
		return rest[n] == '>'
	}
	return false
}

// scan finds the complete placeholders in text[from:] and the start of a
// trailing proper prefix (tail), or -1 when the text does not end in one.
func scan(text []byte, from int) (ms []match, tail int) {
	tail = -1
	pos := from
	for pos < len(text) {
		k := bytes.IndexByte(text[pos:], '<')
		if k < 0 {
			break
		}
		i := pos + k
		if end, name, ok := placeholderAt(text, i); ok {
			ms = append(ms, match{start: i, end: end, name: name})
			pos = end
			continue
		}
		if isPrefix(text[i:]) {
			tail = i
			break
		}
		pos = i + 1
	}
	return ms, tail
}

// Contains reports whether raw (a CDP message or any other text) holds a
// placeholder `<<secret:NAME>>` in any common escaping: plain, JSON \uXXXX
// (any case, any level of nesting such as \\u003c), percent-encoded %3C
// (any case, also double-encoded %253C), JavaScript \xHH and HTML character
// references (&lt; &#60; &#x3c;), mixed freely within one placeholder. The
// word "secret" is matched case-insensitively. Any byte may be escaped.
//
// It never decodes JSON: it scans for the few bytes that can start a `<`
// and is linear in len(raw).
func Contains(raw []byte) bool {
	_, ok := findEscaped(raw)
	return ok
}

// findEscaped is Contains that also returns the decoded name of the first
// placeholder found (for audit records).
func findEscaped(raw []byte) (string, bool) {
	var sc startScanner
	sc.init(raw)
	for {
		i := sc.nextStart()
		if i < 0 {
			return "", false
		}
		if name, ok := escapedPlaceholderAt(raw, i); ok {
			return name, true
		}
	}
}

// startBytes can begin an encoded '<': '<' itself, '\\' (JSON/JS escape),
// '%' (percent-encoding) or '&' (HTML character reference).
const startBytes = "<\\%&"

// startScanner yields, in increasing order, every position of a byte in
// startBytes, using one vectorised bytes.IndexByte per byte value and
// occurrence, so a message with none of them costs four fast scans.
type startScanner struct {
	raw     []byte
	nextPos [4]int // next position of each start byte, len(raw) when none
}

func (s *startScanner) init(raw []byte) {
	s.raw = raw
	for k := range s.nextPos {
		s.nextPos[k] = s.find(k, 0)
	}
}

func (s *startScanner) find(k, from int) int {
	if j := bytes.IndexByte(s.raw[from:], startBytes[k]); j >= 0 {
		return from + j
	}
	return len(s.raw)
}

func (s *startScanner) nextStart() int {
	k := 0
	for j := 1; j < len(s.nextPos); j++ {
		if s.nextPos[j] < s.nextPos[k] {
			k = j
		}
	}
	p := s.nextPos[k]
	if p >= len(s.raw) {
		return -1
	}
	s.nextPos[k] = s.find(k, p+1)
	return p
}

// indexStart returns the index of the first byte that can begin an encoded
// '<', or -1.
func indexStart(b []byte) int {
	for i, c := range b {
		switch c {
		case '<', '\\', '%', '&':
			return i
		}
	}
	return -1
}

// unit decodes one possibly escaped character at raw[i]; it returns the
// decoded byte (0 for non-ASCII code points) and the index after it.
func unit(raw []byte, i int) (byte, int) {
	c := raw[i]
	switch c {
	case '\\':
		j := i
		for j < len(raw) && raw[j] == '\\' {
			j++
		}
		if j+5 <= len(raw) && raw[j] == 'u' {
			if v, ok := hexVal(raw[j+1 : j+5]); ok {
				if v < 0x80 {
					return byte(v), j + 5
				}
				return 0, j + 5
			}
		}
		if j+3 <= len(raw) && raw[j] == 'x' {
			if v, ok := hexVal(raw[j+1 : j+3]); ok {
				return byte(v), j + 3
			}
		}
		return '\\', i + 1
	case '%':
		j := i + 1
		for j+2 <= len(raw) && raw[j] == '2' && raw[j+1] == '5' {
			j += 2 // %25 is an encoded '%': double (or deeper) encoding
		}
		if j+2 <= len(raw) {
			if v, ok := hexVal(raw[j : j+2]); ok {
				return byte(v), j + 2
			}
		}
		return '%', i + 1
	case '&':
		return htmlRef(raw, i)
	}
	return c, i + 1
}

// htmlRef decodes &lt; &gt; &#NN; &#xHH; at raw[i] (i points at '&').
func htmlRef(raw []byte, i int) (byte, int) {
	rest := raw[i+1:]
	switch {
	case len(rest) >= 3 && (rest[0]|0x20) == 'l' && (rest[1]|0x20) == 't' && rest[2] == ';':
		return '<', i + 4
	case len(rest) >= 3 && (rest[0]|0x20) == 'g' && (rest[1]|0x20) == 't' && rest[2] == ';':
		return '>', i + 4
	case len(rest) >= 2 && rest[0] == '#':
		j := 1
		hex := false
		if rest[1]|0x20 == 'x' {
			hex = true
			j = 2
		}
		v, n := 0, 0
		for j < len(rest) && n < 8 {
			d, ok := digit(rest[j], hex)
			if !ok {
				break
			}
			v = v*base(hex) + d
			j++
			n++
		}
		if n > 0 && j < len(rest) && rest[j] == ';' && v < 0x80 {
			return byte(v), i + 1 + j + 1
		}
	}
	return '&', i + 1
}

func base(hex bool) int {
	if hex {
		return 16
	}
	return 10
}

func digit(c byte, hex bool) (int, bool) {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0'), true
	case hex && c >= 'a' && c <= 'f':
		return int(c-'a') + 10, true
	case hex && c >= 'A' && c <= 'F':
		return int(c-'A') + 10, true
	}
	return 0, false
}

func hexVal(b []byte) (int, bool) {
	v := 0
	for _, c := range b {
		d, ok := digit(c, true)
		if !ok {
			return 0, false
		}
		v = v*16 + d
	}
	return v, true
}

func lower(b byte) byte {
	if b >= 'A' && b <= 'Z' {
		return b + 0x20
	}
	return b
}

// escapedPlaceholderAt matches an escaped `<<secret:NAME>>` starting at raw[i].
func escapedPlaceholderAt(raw []byte, i int) (string, bool) {
	for k := 0; k < len(openMark); k++ {
		if i >= len(raw) {
			return "", false
		}
		var b byte
		b, i = unit(raw, i)
		if lower(b) != openMark[k] {
			return "", false
		}
	}
	var name []byte
	for i < len(raw) {
		var b byte
		b, i = unit(raw, i)
		if b == '>' {
			if len(name) == 0 || i >= len(raw) {
				return "", false
			}
			b2, _ := unit(raw, i)
			if b2 != '>' || !isNameStart(name[0]) {
				return "", false
			}
			if len(name) > maxNameLen {
				name = name[:maxNameLen]
			}
			return string(name), true
		}
		if !isNameChar(b) {
			return "", false
		}
		name = append(name, b)
	}
	return "", false
}
