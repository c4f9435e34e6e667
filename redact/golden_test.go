package redact

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"
)

var update = flag.Bool("update", false, "rewrite the .out sections of testdata/*.txtar")

// goldenSecrets parses "name <JSON string>" lines.
func goldenSecrets(t *testing.T, data []byte) []Secret {
	t.Helper()
	var out []Secret
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("bad secrets line %q", line)
		}
		var v string
		if err := json.Unmarshal([]byte(val), &v); err != nil {
			t.Fatalf("secret %s: %v", name, err)
		}
		out = append(out, Secret{Name: name, Value: []byte(v)})
	}
	return out
}

// nestedJSON returns the string values inside a JSON document that are
// themselves JSON objects or arrays (nested legacy messages, stringified
// values), at any depth.
func nestedJSON(data []byte) [][]byte {
	var v any
	if json.Unmarshal(data, &v) != nil {
		return nil
	}
	var out [][]byte
	var walk func(any)
	walk = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		case string:
			if s := strings.TrimSpace(x); len(s) > 0 && (s[0] == '{' || s[0] == '[') && json.Valid([]byte(s)) {
				out = append(out, []byte(s))
				out = append(out, nestedJSON([]byte(s))...)
			}
		}
	}
	walk(v)
	return out
}

// checkScrubbed asserts the properties every output must have.
func checkScrubbed(t *testing.T, ix *Index, forms [][]byte, in, out []byte) {
	t.Helper()
	for i, f := range forms {
		if bytes.Contains(out, f) {
			t.Errorf("form %d of %s (%d bytes) survives in output", i, formName(ix, i), len(f))
		}
	}
	if json.Valid(in) {
		if !json.Valid(out) {
			t.Errorf("valid JSON in, invalid JSON out: %s", out)
			return
		}
		if nin, nout := len(nestedJSON(in)), len(nestedJSON(out)); nout < nin {
			t.Errorf("nested JSON documents: %d in, %d still valid out: %s", nin, nout, out)
		}
	}
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var secrets []Secret
			outs := map[string][]byte{}
			var cases []string
			ins := map[string][]byte{}
			for _, f := range ar.Files {
				switch {
				case f.Name == "secrets":
					secrets = goldenSecrets(t, f.Data)
				case strings.HasSuffix(f.Name, ".in"):
					name := strings.TrimSuffix(f.Name, ".in")
					cases = append(cases, name)
					ins[name] = bytes.TrimSuffix(f.Data, []byte("\n"))
				case strings.HasSuffix(f.Name, ".out"):
					outs[strings.TrimSuffix(f.Name, ".out")] = bytes.TrimSuffix(f.Data, []byte("\n"))
				}
			}
			ix, err := Build(secrets)
			if err != nil {
				t.Fatal(err)
			}
			defer ix.Destroy()
			forms := formsOf(t, ix)
			var newFiles []txtar.File
			for _, f := range ar.Files {
				if !strings.HasSuffix(f.Name, ".out") {
					newFiles = append(newFiles, f)
				}
			}
			for _, name := range cases {
				in := ins[name]
				out, n, err := ix.Scrub(nil, in)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if n == 0 {
					t.Errorf("%s: nothing replaced", name)
				}
				checkScrubbed(t, ix, forms, in, out)
				if *update {
					for i := range newFiles {
						if newFiles[i].Name == name+".in" {
							newFiles = append(newFiles[:i+1], append([]txtar.File{{Name: name + ".out", Data: append(append([]byte(nil), out...), '\n')}}, newFiles[i+1:]...)...)
							break
						}
					}
					continue
				}
				want, ok := outs[name]
				if !ok {
					t.Errorf("%s: no .out section (run with -update and review)", name)
					continue
				}
				if !bytes.Equal(out, want) {
					t.Errorf("%s:\n got %s\nwant %s", name, out, want)
				}
				// The same text through a stream split at every byte gives
				// the same output.
				for cut := 0; cut <= len(in); cut++ {
					s := ix.NewStream()
					got, _, err := s.Write(nil, in[:cut])
					if err == nil {
						got, _, err = s.Write(got, in[cut:])
					}
					if err == nil {
						got, _, err = s.Flush(got)
					}
					s.Close()
					if err != nil || !bytes.Equal(got, out) {
						t.Fatalf("%s: stream split at %d: %v\n got %s\nwant %s", name, cut, err, got, out)
					}
				}
			}
			if *update {
				ar.Files = newFiles
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
