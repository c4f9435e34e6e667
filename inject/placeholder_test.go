package inject

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestContains(t *testing.T) {
	t.Parallel()
	yes := []string{
		`<<secret:a>>`, `x<<secret:acme_password>>y`, `"\u003c\u003csecret:a\u003e\u003e"`, `\u003C\u003Csecret:A.b-c_d\u003E\u003E`,
		`%3C%3Csecret:a%3E%3E`, `%3c%3Csecret%3Aa%3e%3E`, `%253C%253Csecret:a%253E%253E`, `\\u003c\\u003csecret:a\\u003e\\u003e`,
		`&lt;&lt;secret:a&gt;&gt;`, `&#60;&#x3C;secret:a&#62;&gt;`, `<<SeCrEt:a>>`, `<\u003csecret:%61>>`, `\x3c\x3csecret:a\x3e\x3e`,
		`<<secret:` + strings.Repeat("a", 200) + `>>`,
	}
	no := []string{
		``, `<<`, `<<sec`, `<<secret:`, `<<secret:>>`, `<<secret:-a>>`, `<<secret:a b>>`, `<<secret:a>`, `< <secret:a>>`,
		`%3C%3Csecret:a%3E`, `\u003c\u003csecret:a\u003e`, `{"text":"hello"}`, `%%%\\\\&&&<<<`, `<<secret:a%3E`, `&lt&ltsecret:a&gt&gt`,
	}
	for _, s := range yes {
		if !Contains([]byte(s)) {
			t.Errorf("Contains(%q) = false", s)
		}
	}
	for _, s := range no {
		if Contains([]byte(s)) {
			t.Errorf("Contains(%q) = true", s)
		}
	}
}

func TestScanAndPrefix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		text  string
		names []string
		tail  int
	}{
		{"abc", nil, -1},
		{"<<secret:pw>>", []string{"pw"}, -1},
		{"a<<secret:pw>>b<<sec", []string{"pw"}, 15},
		{"<<<secret:x>>", []string{"x"}, -1},
		{"<<secret:x><<secret:y>>", []string{"y"}, -1},
		{"<", nil, 0},
		{"a<<secret:" + strings.Repeat("n", 128), nil, 1},
		{"a<<secret:" + strings.Repeat("n", 129), nil, -1},
		{"<<secret:_x", nil, -1},
	} {
		ms, tail := scan([]byte(tc.text), 0)
		var names []string
		for _, m := range ms {
			names = append(names, m.name)
			if tc.text[m.start:m.end] != "<<secret:"+m.name+">>" {
				t.Errorf("%q: bad span %d..%d", tc.text, m.start, m.end)
			}
		}
		if strings.Join(names, ",") != strings.Join(tc.names, ",") || tail != tc.tail {
			t.Errorf("scan(%q) = %v, %d; want %v, %d", tc.text, names, tail, tc.names, tc.tail)
		}
	}
	if !ValidName("a") || !ValidName("A.b-c_9") || ValidName("") || ValidName("_a") || ValidName(strings.Repeat("a", 129)) || ValidName("a/b") {
		t.Error("ValidName")
	}
}

func checkEscape(t *testing.T, src []byte) {
	n := escapedLen(src)
	buf := make([]byte, 0, n)
	buf = appendEscaped(buf, src)
	if len(buf) != n || cap(buf) != n {
		t.Fatalf("escapedLen %d, wrote %d (cap %d) for %q", n, len(buf), cap(buf), src)
	}
	var got string
	if err := json.Unmarshal(append(append([]byte{'"'}, buf...), '"'), &got); err != nil {
		t.Fatalf("invalid JSON string %q for %q: %v", buf, src, err)
	}
	if utf8.Valid(src) && got != string(src) {
		t.Fatalf("round trip %q -> %q", src, got)
	}
}

func TestEscape(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", `"`, `\`, "\x00\x01\x1f\x7f", "<&>%+ ", "ünï 日本 😀", "\u2028\u2029", "\xff\xfe", "a\"b\\c\nd\re\tf\bg\fh"} {
		checkEscape(t, []byte(s))
	}
}

func FuzzEscape(f *testing.F) {
	f.Add([]byte("q\"uo\\te 😀 \x00"))
	f.Fuzz(func(t *testing.T, src []byte) { checkEscape(t, src) })
}

// FuzzContains: a placeholder spelled with any mix of escapes per character
// is always found.
func FuzzContains(f *testing.F) {
	f.Add("pw", uint64(0))
	f.Add("a.b-c", uint64(0xdeadbeef))
	f.Fuzz(func(t *testing.T, name string, choice uint64) {
		if !ValidName(name) {
			return
		}
		var b strings.Builder
		b.WriteString("prefix ")
		for i, c := range []byte("<<secret:" + name + ">>") {
			switch (choice >> (2 * (uint(i) % 32))) & 3 {
			case 0:
				b.WriteByte(c)
			case 1:
				b.WriteString(`\u00` + string("0123456789abcdef"[c>>4]) + string("0123456789ABCDEF"[c&15]))
			case 2:
				b.WriteString("%" + string("0123456789ABCDEF"[c>>4]) + string("0123456789abcdef"[c&15]))
			case 3:
				b.WriteString(`\\u00` + string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15]))
			}
		}
		if !Contains([]byte(b.String())) {
			t.Fatalf("not found: %q", b.String())
		}
	})
}
