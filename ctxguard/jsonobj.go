package ctxguard

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

var errDuplicate = errors.New("duplicate member")

// object decodes a JSON object into its members, compared exactly (Go's
// struct decoding matches names case-insensitively, Chrome does not) and
// refusing a repeated member name, so the Guard never reads a different
// value than Chrome does. null or absent input gives an empty map.
func object(raw []byte) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return map[string]json.RawMessage{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	out := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, ok := tok.(string)
		if !ok {
			return nil, errors.New("not a JSON object")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := out[k]; dup {
			return nil, errDuplicate
		}
		out[k] = v
	}
	if _, err := dec.Token(); err != nil { // closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after JSON object")
	}
	return out, nil
}

// members calls fn with each member of the JSON object at the start of obj
// (after white space): its key (unescaped) and its raw value. It reads
// values only as far as needed to skip them, so a large value costs one
// pass over its bytes and no copy. A message Chrome can parse is valid JSON,
// for which this scan finds exactly the members Chrome finds; a message it
// cannot parse is refused by Chrome whatever the scan says.
func members(obj []byte, fn func(key string, val []byte) error) error {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errors.New("not a JSON object")
	}
	i = skipWS(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return errors.New("malformed JSON object")
		}
		ke, err := skipString(obj, i)
		if err != nil {
			return err
		}
		key := obj[i+1 : ke-1]
		var k string
		if bytes.IndexByte(key, '\\') >= 0 {
			if err := json.Unmarshal(obj[i:ke], &k); err != nil {
				return err
			}
		} else {
			k = string(key)
		}
		i = skipWS(obj, ke)
		if i >= len(obj) || obj[i] != ':' {
			return errors.New("malformed JSON object")
		}
		vs := skipWS(obj, i+1)
		ve, err := skipValue(obj, vs)
		if err != nil {
			return err
		}
		if err := fn(k, obj[vs:ve]); err != nil {
			return err
		}
		i = skipWS(obj, ve)
		if i >= len(obj) {
			return errors.New("malformed JSON object")
		}
		if obj[i] == '}' {
			return nil
		}
		if obj[i] != ',' {
			return errors.New("malformed JSON object")
		}
		i = skipWS(obj, i+1)
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i]=='"'.
func skipString(b []byte, i int) (int, error) {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, errors.New("unterminated JSON string")
		}
		q := i + j
		bs := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			bs++
		}
		if bs%2 == 0 {
			return q + 1, nil
		}
		i = q + 1
	}
}

// skipValue returns the index just past the JSON value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("missing JSON value")
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				e, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = e
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, errors.New("unterminated JSON value")
	}
	s := i
loop:
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			break loop
		}
	}
	if i == s {
		return 0, errors.New("missing JSON value")
	}
	return i, nil
}

// fields are the parts of a command the Guard reads.
type fields struct {
	params              []byte // raw params value, nil when absent
	bc                  string // browserContextId (when a string)
	hasBC               bool   // browserContextId present (any value)
	targetID            string
	hasProxy, hasBypass bool
}

// commandFields reads the members the Guard's rules depend on. A repeated
// member among them (where Chrome and the Guard could read different values)
// or a params that is not an object is an error.
func commandFields(raw []byte) (fields, error) {
	var f fields
	var seenParams bool
	err := members(raw, func(k string, v []byte) error {
		if k != "params" {
			return nil
		}
		if seenParams {
			return errDuplicate
		}
		seenParams = true
		f.params = v
		return nil
	})
	if err != nil {
		return f, err
	}
	if len(f.params) == 0 || string(f.params) == "null" {
		return f, nil
	}
	var seenTarget bool
	err = members(f.params, func(k string, v []byte) error {
		switch k {
		case "browserContextId":
			if f.hasBC {
				return errDuplicate
			}
			f.hasBC = true
			f.bc = jsonString(v)
		case "targetId":
			if seenTarget {
				return errDuplicate
			}
			seenTarget = true
			f.targetID = jsonString(v)
		case "proxyServer":
			f.hasProxy = true
		case "proxyBypassList":
			f.hasBypass = true
		}
		return nil
	})
	return f, err
}

// jsonString decodes a JSON string value; "" for anything else.
func jsonString(v []byte) string {
	if len(v) >= 2 && v[0] == '"' && bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1])
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}
