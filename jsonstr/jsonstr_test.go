package jsonstr

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestUnquoteMatchesEncodingJSON(t *testing.T) {
	for _, q := range []string{`"plain"`, `"q\"b\\s\/"`, `"\u00e9\ud83d\ude00"`, `"\n\t\r\b\f"`,
		`"raw é 😀 <&>"`, `"\u003c\u003E\u0026"`, `"lone \ud800 surrogate"`, `"\udc00\ud800x"`, `""`,
		`"\ud83d\u0041"`, `"end \ud83d"`} {
		var want string
		if err := json.Unmarshal([]byte(q), &want); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		got, err := Unquote(nil, []byte(q))
		if err != nil || string(got) != want {
			t.Errorf("%s: got %q (%v), want %q", q, got, err, want)
		}
	}
	for _, bad := range []string{`12`, `"unterminated`, `"bad \x"`, `"\u12"`, `"\u12zz"`, `"dangling \"`} {
		if _, err := Unquote(nil, []byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestUnescapeNeverReallocates(t *testing.T) {
	s := []byte(`a\u00e9\ud83d\ude00\n\"x\u0041`)
	buf := make([]byte, 0, len(s))
	out, err := Unescape(buf, s)
	if err != nil || &out[:1][0] != &buf[:1][0] || !utf8.Valid(out) {
		t.Fatalf("reallocated or failed: %q %v", out, err)
	}
}

func FuzzUnquote(f *testing.F) {
	f.Add(`"a\u00e9\ud83d\ude00"`)
	f.Fuzz(func(t *testing.T, q string) {
		var want string
		jerr := json.Unmarshal([]byte(q), &want)
		got, err := Unquote(make([]byte, 0, len(q)), []byte(q))
		// Where encoding/json decodes a bare, valid UTF-8 literal, so must
		// we, to the same bytes (it also rewrites invalid UTF-8, we copy it).
		bare := len(q) >= 2 && q[0] == '"' && q[len(q)-1] == '"' && utf8.ValidString(q)
		if jerr == nil && bare && (err != nil || string(got) != want) {
			t.Fatalf("%q: got %q (%v), want %q", q, got, err, want)
		}
	})
}
