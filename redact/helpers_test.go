package redact

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"testing"
)

// randSecrets makes n secret values of 8..32 bytes drawn from a mix of
// letters, digits, punctuation, non-ASCII letters and an emoji.
func randSecrets(n int, seed uint64) []Secret {
	r := rand.New(rand.NewPCG(seed, 7))
	alpha := []string{"a", "b", "c", "x", "Y", "Z", "q", "R", "0", "7", "9", "-", "_", ".", "!", "@", "#", "$", "%", "^", "&", "*",
		"(", ")", "+", "=", "/", "?", "<", ">", "\"", "'", "\\", " ", "é", "ü", "ß", "😀", "k", "m", "N", "P", "w", "2", "3"}
	out := make([]Secret, n)
	for i := range out {
		l := 8 + r.IntN(25)
		var b []byte
		for len(b) < l {
			b = append(b, alpha[r.IntN(len(alpha))]...)
		}
		out[i] = Secret{Name: fmt.Sprintf("s%04d", i), Value: b}
	}
	return out
}

// cdpCorpus makes about size bytes of CDP-like JSON messages (events and
// responses with words, URLs, ids and base64), one per line, that contain
// no secret.
func cdpCorpus(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 11))
	words := []string{"the", "login", "form", "password", "user", "submit", "div", "class", "button", "Network", "request",
		"response", "https://acme.test/", "index.html", "application/json", "text/html; charset=utf-8", "Mozilla/5.0",
		"width", "height", "color", "span", "input", "value", "cookie", "session", "frame", "target", "<div class=\\\"a\\\">",
		"&amp;", "\\u00e9t\\u00e9", "\\n", "12345", "true", "false", "null"}
	var b bytes.Buffer
	id := 0
	for b.Len() < size {
		id++
		var txt bytes.Buffer
		for j := 0; j < 8+r.IntN(40); j++ {
			txt.WriteString(words[r.IntN(len(words))])
			txt.WriteByte(' ')
		}
		raw := make([]byte, 12+r.IntN(30))
		for j := range raw {
			raw[j] = byte(r.IntN(256))
		}
		switch r.IntN(3) {
		case 0:
			fmt.Fprintf(&b, `{"method":"Network.requestWillBeSent","params":{"requestId":"%d.%d","loaderId":"%X","documentURL":"https://acme.test/p/%d","request":{"url":"https://acme.test/api?q=%d&t=%s","method":"POST","headers":{"Content-Type":"application/json","User-Agent":"Mozilla/5.0 (X11; Linux x86_64)"},"postData":"%s"},"timestamp":%d.%06d,"type":"XHR"},"sessionId":"%X"}`,
				id, r.IntN(1000), r.Uint64(), id, r.IntN(1e6), base64.RawURLEncoding.EncodeToString(raw), txt.String(), r.IntN(1e6), r.IntN(1e6), r.Uint64())
		case 1:
			fmt.Fprintf(&b, `{"id":%d,"result":{"outerHTML":"<html><body><div id=\"n%d\" class=\"row\">%s</div><img src=\"data:image/png;base64,%s\"></body></html>"},"sessionId":"%X"}`,
				id, id, txt.String(), base64.StdEncoding.EncodeToString(raw), r.Uint64())
		default:
			fmt.Fprintf(&b, `{"method":"Runtime.consoleAPICalled","params":{"type":"log","args":[{"type":"string","value":"%s"}],"executionContextId":%d,"timestamp":%d},"sessionId":"%X"}`,
				txt.String(), r.IntN(100), r.Uint64()>>12, r.Uint64())
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// formsOf copies every form of the index out of locked memory (tests only).
func formsOf(t testing.TB, ix *Index) [][]byte {
	t.Helper()
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	mem := ix.buf.Bytes()
	out := make([][]byte, len(ix.forms))
	for i, f := range ix.forms {
		out[i] = append([]byte(nil), mem[f.off:f.off+f.n]...)
	}
	return out
}

func formName(ix *Index, i int) string { return ix.names[ix.forms[i].name] }
