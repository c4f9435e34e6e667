package redact

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/tools/txtar"
)

// fuzzSecrets are values chosen to stress the matcher: self-overlapping,
// JSON structure and escapes inside the value, numbers, non-ASCII, emoji,
// every URL and HTML special character, several lines.
var fuzzSecrets = []Secret{
	{Name: "aab", Value: []byte("aaaaaaaab")},
	{Name: "ababx", Value: []byte("abababababx")},
	{Name: "quote", Value: []byte(`pa"ss\wörd😀`)},
	{Name: "pin", Value: []byte("12345678")},
	{Name: "struct", Value: []byte(`x","y":"zz`)},
	{Name: "path", Value: []byte(`C:\new\path`)},
	{Name: "multi", Value: []byte("line one!\nline two?\r\nline 3 ok")},
	{Name: "specials", Value: []byte(`a+b c%d&e<f>g"h'i`)},
	{Name: "inner", Value: []byte("Tok3nInner99")},
	{Name: "outer", Value: []byte("pre-Tok3nInner99-post")},
}

func FuzzScrub(f *testing.F) {
	ix, err := Build(fuzzSecrets)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(ix.Destroy)
	forms := formsOf(f, ix)
	// seeds: the golden inputs and a few hand-made texts
	files, _ := filepath.Glob("testdata/*.txtar")
	for _, file := range files {
		ar, err := txtar.ParseFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, fl := range ar.Files {
			if bytes.HasSuffix([]byte(fl.Name), []byte(".in")) {
				f.Add(bytes.TrimSpace(fl.Data), uint16(0), uint16(0), uint8(0))
			}
		}
	}
	f.Add([]byte(`{"id":1,"result":{"value":12345678901}}`), uint16(3), uint16(20), uint8(1))
	f.Add([]byte(`["aaaaaaaaab", "x\\"y"]`), uint16(1), uint16(3), uint8(2))
	f.Add([]byte(`{"a":"x","y":"zz"}`), uint16(5), uint16(1), uint8(0))
	if data, err := os.ReadFile("testdata/fuzz_extra.json"); err == nil {
		f.Add(data, uint16(0), uint16(0), uint8(0))
	}
	f.Fuzz(func(t *testing.T, text []byte, sel, pos uint16, mode uint8) {
		in := text
		if len(forms) > 0 {
			form := forms[int(sel)%len(forms)]
			switch mode % 3 {
			case 1: // splice the form into the text
				p := 0
				if len(text) > 0 {
					p = int(pos) % (len(text) + 1)
				}
				in = append(append(append([]byte(nil), text[:p]...), form...), text[p:]...)
			case 2: // the form inside a JSON string next to the text as a JSON string
				ts, _ := json.Marshal(string(text))
				in = append(append(append(append([]byte(`{"v":`), ts...), `,"w":"`...), form...), `"}`...)
			}
		}
		out, _, err := ix.Scrub(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range forms {
			if bytes.Contains(out, f) {
				t.Fatalf("form %d of %s survives\nin  %q\nout %q", i, formName(ix, i), in, out)
			}
		}
		if json.Valid(in) && !json.Valid(out) {
			t.Fatalf("valid JSON in, invalid out\nin  %q\nout %q", in, out)
		}
		// Streams find the same forms.
		s := ix.NewStream()
		defer s.Close()
		half := len(in) / 2
		sout, _, err := s.Write(nil, in[:half])
		if err == nil {
			sout, _, err = s.Write(sout, in[half:])
		}
		if err == nil {
			sout, _, err = s.Flush(sout)
		}
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range forms {
			if bytes.Contains(sout, f) {
				t.Fatalf("stream: form %d of %s survives\nin  %q\nout %q", i, formName(ix, i), in, sout)
			}
		}
	})
}
