package redact

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unicode/utf16"
	"unsafe"
)

func mustBuild(t *testing.T, secrets []Secret) *Index {
	t.Helper()
	ix, err := Build(secrets)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ix.Destroy)
	return ix
}

func TestAddRejects(t *testing.T) {
	t.Parallel()
	b := NewBuilder()
	defer b.Destroy()
	val := []byte("short12")
	if err := b.Add("ok", val); !errors.Is(err, ErrTooShort) {
		t.Errorf("7-byte value: %v", err)
	}
	if err := b.Add("ok", make([]byte, MaxValueLen+1)); !errors.Is(err, ErrTooLong) {
		t.Errorf("huge value: %v", err)
	}
	for _, name := range []string{"", "a b", `a"b`, "a\\b", "<x>", strings.Repeat("n", MaxNameLen+1)} {
		if err := b.Add(name, []byte("longenough")); !errors.Is(err, ErrName) {
			t.Errorf("name %q: %v", name, err)
		}
	}
	_, err := Build([]Secret{{Name: "x", Value: []byte("Secr3tV4")}, {Name: "y", Value: []byte("tiny")}})
	if err == nil || strings.Contains(err.Error(), "tiny") || strings.Contains(err.Error(), "Secr3tV4") {
		t.Errorf("Build error %v must name the secret, never a value", err)
	}
	if err := b.Add("ok", []byte("longenough")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(); err != nil {
		t.Fatal(err)
	}
	if err := b.Add("ok", []byte("longenough")); !errors.Is(err, ErrBuilt) {
		t.Errorf("Add after Build: %v", err)
	}
	if _, err := b.Build(); !errors.Is(err, ErrBuilt) {
		t.Errorf("Build twice: %v", err)
	}
}

func TestEmptyIndexAndDestroy(t *testing.T) {
	t.Parallel()
	ix, err := Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	out, n, err := ix.Scrub([]byte("x:"), []byte(`{"a":"b"}`))
	if err != nil || n != 0 || string(out) != `x:{"a":"b"}` {
		t.Fatalf("empty index: %q %d %v", out, n, err)
	}
	ix.Destroy()
	ix.Destroy()
	if _, _, err := ix.Scrub(nil, []byte("abc")); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("after Destroy: %v", err)
	}
	var nilIx *Index
	nilIx.Destroy()

	ix2, err := Build([]Secret{{Name: "k", Value: []byte("abcdefgh1")}})
	if err != nil {
		t.Fatal(err)
	}
	ix2.Destroy()
	if _, _, err := ix2.Scrub(nil, []byte("xx abcdefgh1")); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("after Destroy: %v", err)
	}
	if _, _, err := ix2.Replace([]byte("xx abcdefgh1")); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("Replace after Destroy: %v", err)
	}
	s := ix2.NewStream()
	if _, _, err := s.Write(nil, []byte("abcdefgh1")); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("stream after Destroy: %v", err)
	}
}

func TestReplaceAndScrubString(t *testing.T) {
	ix := mustBuild(t, []Secret{{Name: "k", Value: []byte("abcdefgh1")}})
	out, n, err := ix.Replace([]byte("nothing here at all"))
	if out != nil || n != 0 || err != nil {
		t.Fatalf("Replace without match: %q %d %v", out, n, err)
	}
	plain := []byte("nothing here at all, nothing")
	allocs := testing.AllocsPerRun(100, func() { _, _, _ = ix.Replace(plain) })
	if allocs > 0 {
		t.Errorf("Replace without match allocates %v times", allocs)
	}
	s, n, err := ix.ScrubString("a abcdefgh1 b")
	if s != "a <<secret:k>> b" || n != 1 || err != nil {
		t.Fatalf("ScrubString: %q %d %v", s, n, err)
	}
	in := "plain text"
	if s, _, _ := ix.ScrubString(in); unsafe.StringData(s) != unsafe.StringData(in) {
		t.Errorf("ScrubString without match copied the string")
	}
	if ix.Len() != 1 || ix.Forms() < 2 {
		t.Errorf("Len %d Forms %d", ix.Len(), ix.Forms())
	}
}

// TestStdlibEncodings checks the forms against independent encoders: Go's
// encoding/json, net/url, html and encoding/base64.
func TestStdlibEncodings(t *testing.T) {
	t.Parallel()
	secrets := randSecrets(60, 3)
	ix := mustBuild(t, secrets)
	r := rand.New(rand.NewPCG(5, 5))
	for _, s := range secrets {
		v := string(s.Value)
		ph := "<<secret:" + s.Name + ">>"
		jsonGo, _ := json.Marshal(v)
		var jsNoHTML bytes.Buffer
		enc := json.NewEncoder(&jsNoHTML)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
		twice, _ := json.Marshal(string(jsonGo))
		texts := map[string]string{
			"json":         string(jsonGo[1 : len(jsonGo)-1]),
			"json-nohtml":  strings.TrimSpace(jsNoHTML.String())[1 : len(strings.TrimSpace(jsNoHTML.String()))-1],
			"json-twice":   string(twice[1 : len(twice)-1]),
			"query":        url.QueryEscape(v),
			"path":         url.PathEscape(v),
			"html":         html.EscapeString(v),
			"json-of-html": string(mustJSON(html.EscapeString(v))),
			"php":          phpJSON(strings.TrimSpace(jsNoHTML.String())),
		}
		for kind, enc := range texts {
			text := "<<" + "x " + enc + " y"
			out, n, err := ix.Scrub(nil, []byte(text))
			if err != nil || n == 0 || !strings.Contains(string(out), ph) || strings.Contains(string(out), enc) {
				t.Errorf("%s of %q: %q (n=%d, %v)", kind, v, out, n, err)
			}
		}
		for _, e := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			for pre := 0; pre < 3; pre++ {
				p := make([]byte, pre)
				sfx := make([]byte, r.IntN(3))
				for i := range p {
					p[i] = byte(r.IntN(256))
				}
				for i := range sfx {
					sfx[i] = byte(r.IntN(256))
				}
				data := append(append(append([]byte(nil), p...), s.Value...), sfx...)
				encd := e.EncodeToString(data)
				out, n, err := ix.Scrub(nil, []byte(" "+encd+" "))
				if err != nil || n != 1 || !strings.Contains(string(out), ph) {
					t.Errorf("base64 align %d of %q: %q (n=%d)", pre, v, out, n)
					continue
				}
				// What remains are characters of the prefix and suffix
				// bytes only, and padding.
				left := len(out) - len(ph) - 2
				if max := (8*pre)/6 + (8*len(sfx)+5)/6 + 2; left > max {
					t.Errorf("base64 align %d of %q: %d characters left around the placeholder: %q", pre, v, left, out)
				}
			}
		}
	}
}

// phpJSON turns a JSON string literal with raw non-ASCII into PHP's
// json_encode default: \uXXXX (UTF-16, lower-case) and \/.
func phpJSON(lit string) string {
	var b strings.Builder
	for _, r := range lit[1 : len(lit)-1] {
		switch {
		case r == '/':
			b.WriteString(`\/`)
		case r >= 0x10000:
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
		case r >= 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func mustJSON(s string) []byte {
	b, _ := json.Marshal(s)
	return b[1 : len(b)-1]
}

// TestStreamChunks pushes a large text with many secrets through streams
// with random chunk sizes; every occurrence is found.
func TestStreamChunks(t *testing.T) {
	t.Parallel()
	secrets := randSecrets(200, 9)
	ix := mustBuild(t, secrets)
	r := rand.New(rand.NewPCG(1, 2))
	var text []byte
	for i := 0; i < 400; i++ {
		text = append(text, "lorem ipsum "...)
		text = append(text, secrets[r.IntN(len(secrets))].Value...)
	}
	want := ix.emit(nil, text, mustFind(t, ix, text), len(text))
	for round := 0; round < 20; round++ {
		s := ix.NewStream()
		var got []byte
		total := 0
		for p := 0; p < len(text); {
			n := 1 + r.IntN(300)
			if round%5 == 0 {
				n = 1 + r.IntN(4)
			}
			q := min(len(text), p+n)
			var c int
			var err error
			got, c, err = s.Write(got, text[p:q])
			if err != nil {
				t.Fatal(err)
			}
			total += c
			p = q
		}
		got, c, err := s.Flush(got)
		if err != nil {
			t.Fatal(err)
		}
		total += c
		s.Close()
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: stream output differs", round)
		}
		if total != strings.Count(string(want), "<<secret:") {
			t.Fatalf("round %d: counted %d replacements", round, total)
		}
	}
}

func mustFind(t *testing.T, ix *Index, text []byte) []match {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ms, err := ix.find(text, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestConcurrentScrubAndDestroy(t *testing.T) {
	t.Parallel()
	secrets := randSecrets(50, 4)
	ix, err := Build(secrets)
	if err != nil {
		t.Fatal(err)
	}
	text := append(cdpCorpus(64<<10, 4), secrets[3].Value...)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				out, n, err := ix.Scrub(nil, text)
				if errors.Is(err, ErrDestroyed) {
					return
				}
				if err != nil || n == 0 || bytes.Contains(out, secrets[3].Value) {
					t.Errorf("scrub: n=%d err=%v", n, err)
					return
				}
			}
		}()
	}
	ix.Destroy()
	wg.Wait()
}

func TestMemlockBudget(t *testing.T) {
	t.Parallel()
	if _, err := newLocked(1 << 40); !errors.Is(err, errNoLockedMemory) {
		t.Fatalf("a 1 TiB locked buffer: %v", err)
	}
}

// TestHeapHoldsNoPlaintext walks every ordinary-memory structure of an
// index (everything but the memguard buffer) and searches its raw bytes
// for the values and for every form.
func TestHeapHoldsNoPlaintext(t *testing.T) {
	t.Parallel()
	secrets := randSecrets(100, 8)
	secrets = append(secrets, fuzzSecrets...)
	ix := mustBuild(t, secrets)
	var heap []byte
	dumpValue(reflect.ValueOf(ix).Elem(), &heap, map[uintptr]bool{})
	if len(heap) < 1000 {
		t.Fatalf("walked only %d bytes", len(heap))
	}
	for _, s := range secrets {
		for i := 0; i+8 <= len(s.Value); i++ {
			if bytes.Contains(heap, s.Value[i:i+8]) {
				t.Fatalf("8 bytes of secret %s found in the index's heap structures", s.Name)
			}
		}
	}
	for i, f := range formsOf(t, ix) {
		if bytes.Contains(heap, f) {
			t.Fatalf("form %d of %s found in heap structures", i, formName(ix, i))
		}
	}
}

// dumpValue appends the raw bytes of v and of everything it references,
// skipping memguard's buffer (locked memory) and the mutex.
func dumpValue(v reflect.Value, out *[]byte, seen map[uintptr]bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() || seen[v.Pointer()] {
			return
		}
		if strings.Contains(v.Type().String(), "memguard") {
			return
		}
		seen[v.Pointer()] = true
		dumpValue(v.Elem(), out, seen)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(sync.RWMutex{}) {
			return
		}
		for i := 0; i < v.NumField(); i++ {
			dumpValue(v.Field(i), out, seen)
		}
	case reflect.Slice:
		if v.Len() == 0 {
			return
		}
		et := v.Type().Elem()
		switch et.Kind() {
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Int, reflect.Int32, reflect.Int64, reflect.Struct:
			if et.Kind() == reflect.Struct && hasPointers(et) {
				break
			}
			*out = append(*out, unsafe.Slice((*byte)(v.UnsafePointer()), v.Len()*int(et.Size()))...)
			return
		}
		for i := 0; i < v.Len(); i++ {
			dumpValue(v.Index(i), out, seen)
		}
	case reflect.String:
		*out = append(*out, v.String()...)
		*out = append(*out, 0)
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			dumpValue(it.Key(), out, seen)
			dumpValue(it.Value(), out, seen)
		}
	case reflect.Bool, reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		*out = append(*out, fmt.Sprint(v)...)
	}
}

func hasPointers(t reflect.Type) bool {
	for i := 0; i < t.NumField(); i++ {
		switch t.Field(i).Type.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.String, reflect.Map, reflect.Interface:
			return true
		}
	}
	return false
}

type recHandler struct {
	mu   *sync.Mutex
	buf  *bytes.Buffer
	json slog.Handler
}

func TestSlogHandler(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	var cur *Index
	var mu sync.Mutex
	get := func() *Index { mu.Lock(); defer mu.Unlock(); return cur }
	log := slog.New(NewHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), get))
	v := []byte(`Pw"1<&>zz`)
	// no index yet: passes through
	bound := log.With("early", "x Pw\"1<&>zz y").WithGroup("g")
	ix := mustBuild(t, []Secret{{Name: "pw", Value: v}})
	mu.Lock()
	cur = ix
	mu.Unlock()
	bound.Info("login with Pw\"1<&>zz failed",
		"err", fmt.Errorf("wrap: %s", v),
		"bytes", v,
		"n", 12345678,
		slog.Group("inner", "val", string(v)),
		"stringer", url.URL{Host: "a", Path: "/Pw\"1<&>zz"})
	out := buf.String()
	if strings.Contains(out, `Pw\"1<&>zz`) || strings.Contains(out, "Pw\\\"1\\u003c") || strings.Contains(out, "1<&>zz") {
		t.Fatalf("secret in log line: %s", out)
	}
	for _, want := range []string{`"msg":"login with <<secret:pw>> failed"`, `"early":"x <<secret:pw>> y"`, `"g":{`, `"err":"wrap: <<secret:pw>>"`, `"inner":{"val":"<<secret:pw>>"}`, `"n":12345678`} {
		if !strings.Contains(out, want) {
			t.Errorf("log line lacks %s: %s", want, out)
		}
	}
	ix.Destroy()
	buf.Reset()
	log.Info("after destroy", "v", "something")
	if !strings.Contains(buf.String(), redactedValue) {
		t.Errorf("a destroyed index must redact, got %s", buf.String())
	}
	_ = context.Background()
}
