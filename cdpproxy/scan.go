package cdpproxy

import (
	"bytes"
	"errors"
	"strconv"

	"github.com/cdpvault/cdpvault/jsonstr"
)

// header is what the proxy reads of a CDP message's top level without
// decoding its params: offsets into the message, no copies.
type header struct {
	id     int64
	hasID  bool
	idBad  bool // "id" present but not an integer literal that fits int64
	method []byte
	sid    []byte
	params []byte
	result []byte
	errv   []byte
	// escaped is set when method or sessionId contained escapes; their
	// slices then point to unescaped copies.
	escaped bool
}

var (
	errNotObject = errors.New("message is not a JSON object")
	errSyntax    = errors.New("message is not valid JSON")
	errDupKey    = errors.New("message repeats a top-level member")
	errType      = errors.New("method and sessionId must be strings")
	errDepth     = errors.New("message nests too deeply")
)

const maxDepth = 1000

// scanHeader reads the top-level members id, method, sessionId, params,
// result and error of a JSON object. With strict it validates the whole
// message as JSON (client messages: the proxy must read them exactly as
// Chrome will), refuses repeated members the interceptors rely on and
// unescapes escaped keys; without strict (browser messages) it skips values
// as fast as it can.
func scanHeader(b []byte, strict bool) (h header, err error) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return h, errNotObject
	}
	i++
	var seen uint8
	first := true
	for {
		i = skipWS(b, i)
		if i >= len(b) {
			return h, errSyntax
		}
		if b[i] == '}' {
			if !first && strict {
				return h, errSyntax // trailing comma
			}
			i++
			break
		}
		if b[i] != '"' {
			return h, errSyntax
		}
		ks := i + 1
		ke, esc, err := scanString(b, i, strict)
		if err != nil {
			return h, err
		}
		key := b[ks:ke]
		if esc || (!strict && bytes.IndexByte(key, '\\') >= 0) {
			if key, err = unescape(nil, key); err != nil {
				return h, err
			}
		}
		i = skipWS(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return h, errSyntax
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return h, errSyntax
		}
		vs := i
		ve, err := skipValue(b, i, strict, 1)
		if err != nil {
			return h, err
		}
		val := b[vs:ve]
		var bit uint8
		switch string(key) {
		case "id":
			bit = 1
			h.hasID = true
			h.id, h.idBad = parseID(val)
		case "method":
			bit = 2
			if h.method, err = stringValue(val, &h.escaped); err != nil {
				return h, err
			}
		case "sessionId":
			bit = 4
			if h.sid, err = stringValue(val, &h.escaped); err != nil {
				return h, err
			}
		case "params":
			bit = 8
			h.params = val
		case "result":
			bit = 16
			h.result = val
		case "error":
			bit = 32
			h.errv = val
		}
		if strict && seen&bit != 0 {
			return h, errDupKey
		}
		seen |= bit
		first = false
		i = skipWS(b, ve)
		if i >= len(b) {
			return h, errSyntax
		}
		if b[i] == ',' {
			i++
			if !strict {
				continue
			}
			if j := skipWS(b, i); j < len(b) && b[j] == '}' {
				return h, errSyntax
			}
			continue
		}
		if b[i] == '}' {
			i++
			break
		}
		return h, errSyntax
	}
	if strict && skipWS(b, i) != len(b) {
		return h, errSyntax
	}
	return h, nil
}

func parseID(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, true
	}
	for k, c := range v {
		if (c < '0' || c > '9') && !(k == 0 && c == '-') {
			return 0, true
		}
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, true
	}
	return n, false
}

// stringValue returns the contents of a JSON string value (unescaped when it
// has escapes).
func stringValue(v []byte, escaped *bool) ([]byte, error) {
	if len(v) < 2 || v[0] != '"' {
		return nil, errType
	}
	s := v[1 : len(v)-1]
	if bytes.IndexByte(s, '\\') >= 0 {
		*escaped = true
		return unescape(nil, s)
	}
	return s, nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString returns the index of the closing quote of the string starting
// at b[i] == '"', and whether it holds escapes.
func scanString(b []byte, i int, strict bool) (end int, esc bool, err error) {
	j := i + 1
	if !strict {
		for {
			k := bytes.IndexByte(b[j:], '"')
			if k < 0 {
				return 0, false, errSyntax
			}
			q := j + k
			n := 0
			for p := q - 1; p > i && b[p] == '\\'; p-- {
				n++
			}
			if n%2 == 0 {
				// esc is not computed on this path; callers that need it
				// (keys) look for a backslash themselves.
				return q, false, nil
			}
			j = q + 1
		}
	}
	for j < len(b) {
		c := b[j]
		switch {
		case c == '"':
			return j, esc, nil
		case c == '\\':
			esc = true
			if j+1 >= len(b) {
				return 0, false, errSyntax
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(b) || !isHex4(b[j+2:j+6]) {
					return 0, false, errSyntax
				}
				j += 6
			default:
				return 0, false, errSyntax
			}
		case c < 0x20:
			return 0, false, errSyntax
		default:
			j++
		}
	}
	return 0, false, errSyntax
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// skipValue returns the index just after the JSON value starting at b[i].
func skipValue(b []byte, i int, strict bool, depth int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch c := b[i]; {
	case c == '"':
		e, _, err := scanString(b, i, strict)
		return e + 1, err
	case c == '{' || c == '[':
		if depth > maxDepth {
			return 0, errDepth
		}
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == closing {
			return i + 1, nil
		}
		for {
			if c == '{' {
				if i >= len(b) || b[i] != '"' {
					return 0, errSyntax
				}
				e, _, err := scanString(b, i, strict)
				if err != nil {
					return 0, err
				}
				i = skipWS(b, e+1)
				if i >= len(b) || b[i] != ':' {
					return 0, errSyntax
				}
				i = skipWS(b, i+1)
			}
			e, err := skipValue(b, i, strict, depth+1)
			if err != nil {
				return 0, err
			}
			i = skipWS(b, e)
			if i >= len(b) {
				return 0, errSyntax
			}
			if b[i] == ',' {
				i = skipWS(b, i+1)
				continue
			}
			if b[i] == closing {
				return i + 1, nil
			}
			return 0, errSyntax
		}
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(b, i, strict)
	}
	return 0, errSyntax
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, errSyntax
	}
	return i + len(lit), nil
}

func skipNumber(b []byte, i int, strict bool) (int, error) {
	if !strict {
		j := i
		for j < len(b) {
			switch c := b[j]; {
			case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
				j++
			default:
				return j, nil
			}
		}
		return j, nil
	}
	j := i
	if b[j] == '-' {
		j++
	}
	digits := func() int {
		s := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j - s
	}
	if j < len(b) && b[j] == '0' {
		j++
	} else if digits() == 0 {
		return 0, errSyntax
	}
	if j < len(b) && b[j] == '.' {
		j++
		if digits() == 0 {
			return 0, errSyntax
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if digits() == 0 {
			return 0, errSyntax
		}
	}
	return j, nil
}

// unescape appends the unescaped contents of a JSON string (without quotes)
// to dst. Invalid surrogates become U+FFFD, as encoding/json does.
func unescape(dst, s []byte) ([]byte, error) {
	if dst == nil {
		dst = make([]byte, 0, len(s))
	}
	out, err := jsonstr.Unescape(dst, s)
	if err != nil {
		return nil, errSyntax
	}
	return out, nil
}

// interner turns method names and session ids into strings without
// allocating for the ones seen before. Owned by one goroutine.
type interner struct{ m map[string]string }

const maxIntern = 2048

func (t *interner) get(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := t.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if t.m == nil {
		t.m = make(map[string]string)
	}
	if len(t.m) < maxIntern {
		t.m[s] = s
	}
	return s
}
