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

// str returns member k as a string; ok is false when absent or not a string.
func str(obj map[string]json.RawMessage, k string) (string, bool) {
	v, present := obj[k]
	if !present {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}
