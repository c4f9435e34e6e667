package e2e_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Recorded is one request exactly as the test site received it.
type Recorded struct {
	Host     string // host name without port: "acme.test", "evil.test", "127.0.0.1"
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
}

// Site is the local multi-origin test site. acme.test and evil.test are both
// mapped to its loopback listener by Chromium's --host-resolver-rules, so the
// two names are different origins served by one process.
type Site struct {
	srv  *httptest.Server
	Port string

	mu     sync.Mutex
	reqs   []Recorded
	echoes [][]byte // values the echo page shows; the test hands them in
}

// NewSite starts the site on 127.0.0.1:0 and stops it at the end of the test.
func NewSite(t testing.TB) *Site {
	t.Helper()
	s := &Site{}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	_, port, err := net.SplitHostPort(s.srv.Listener.Addr().String())
	if err != nil {
		t.Fatalf("site address: %v", err)
	}
	s.Port = port
	return s
}

// Origin is the web origin of host ("acme" or "evil") on this site.
func (s *Site) Origin(host string) string { return "http://" + host + ".test:" + s.Port }

// URL is an absolute URL of path on host ("acme" or "evil").
func (s *Site) URL(host, path string) string { return s.Origin(host) + path }

// SetEchoValues sets the values the /echo page shows and sends back.
func (s *Site) SetEchoValues(vals ...[]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.echoes = vals
}

// Requests returns a copy of everything received so far.
func (s *Site) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Recorded(nil), s.reqs...)
}

// Received returns the requests for path on host ("" = any host).
func (s *Site) Received(host, path string) []Recorded {
	var out []Recorded
	for _, r := range s.Requests() {
		if (host == "" || r.Host == host) && r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// Leaks lists every request (on host, "" = any) that carried value in any
// common encoding anywhere: URL, header or body.
func (s *Site) Leaks(host string, value []byte) []string {
	forms := encodedForms(value)
	var out []string
	for _, r := range s.Requests() {
		if host != "" && r.Host != host {
			continue
		}
		var all bytes.Buffer
		all.WriteString(r.Path + "?" + r.RawQuery + "\n")
		for k, vs := range r.Header {
			for _, v := range vs {
				all.WriteString(k + ": " + v + "\n")
			}
		}
		all.Write(r.Body)
		if f := findForm(all.Bytes(), forms); f != "" {
			out = append(out, fmt.Sprintf("%s %s%s (%s form)", r.Method, r.Host, r.Path, f))
		}
	}
	return out
}

func (s *Site) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, Recorded{Host: host, Method: r.Method, Path: r.URL.Path,
		RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body})
	echoes := append([][]byte(nil), s.echoes...)
	s.mu.Unlock()

	w.Header().Set("Cache-Control", "no-store")
	switch {
	case r.URL.Path == "/login" && r.Method == http.MethodGet:
		writeHTML(w, loginPage(host, r.URL.Query().Get("autofocus") == "1"))
	case r.URL.Path == "/login" && r.Method == http.MethodPost:
		writeHTML(w, `<!doctype html><html><head><meta charset="utf-8"><title>received</title></head>`+
			`<body><h1 id="result">form received by `+html.EscapeString(host)+`</h1></body></html>`)
	case r.URL.Path == "/api/login" && r.Method == http.MethodPost:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "received")
	case r.URL.Path == "/frame":
		// ?partner=sub frames sub.acme.test: same site as acme.test, so
		// Chromium keeps it in the page's process, but another origin.
		partner := s.Origin("evil")
		if r.URL.Query().Get("partner") == "sub" {
			partner = s.Origin("sub.acme")
		}
		writeHTML(w, framePage(partner))
	case r.URL.Path == "/redirect-to-evil":
		http.Redirect(w, r, s.URL("evil", "/login?autofocus=1"), http.StatusFound)
	case r.URL.Path == "/echo":
		writeHTML(w, echoPage(echoes))
	case r.URL.Path == "/echo-api" && r.Method == http.MethodPost:
		// The response repeats what the page sent, in a body and in headers.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Echo-Urlencoded", url.QueryEscape(string(body)))
		w.Header().Set("X-Echo-Base64", base64.StdEncoding.EncodeToString(body))
		w.Write(body)
	case r.URL.Path == "/blank":
		writeHTML(w, `<!doctype html><html><head><meta charset="utf-8"><title>blank</title></head><body>blank</body></html>`)
	default:
		http.NotFound(w, r)
	}
}

func writeHTML(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, s)
}

// loginPage has a form that posts natively and a button that sends the
// password field's value, unchanged, as the raw body of a fetch POST, with the
// number of key and input events the field saw.
func loginPage(host string, autofocus bool) string {
	af := ""
	if autofocus {
		af = " autofocus"
	}
	return `<!doctype html><html><head><meta charset="utf-8"><title>Login at ` + html.EscapeString(host) + `</title></head>
<body>
<h1 id="heading">Login at ` + html.EscapeString(host) + `</h1>
<form id="form" method="post" action="/login" accept-charset="utf-8">
<label>User <input id="username" name="username" autocomplete="off"></label>
<label>Password <input id="password" name="password" type="password" autocomplete="off"` + af + `></label>
<label>Note <input id="note" name="note" autocomplete="off"></label>
<button id="submit" type="submit">Log in</button>
</form>
<button id="fetch-submit" type="button">Log in with fetch</button>
<p id="status">idle</p>
<script>
const pw = document.getElementById('password');
let inputEvents = 0, keyEvents = 0;
pw.addEventListener('input', () => inputEvents++);
pw.addEventListener('keydown', () => keyEvents++);
document.getElementById('fetch-submit').addEventListener('click', async () => {
  const r = await fetch('/api/login', {method: 'POST', body: pw.value, headers: {
    'Content-Type': 'text/plain;charset=utf-8',
    'X-Input-Events': String(inputEvents), 'X-Key-Events': String(keyEvents)}});
  document.getElementById('status').textContent = 'sent ' + r.status;
});
</script>
</body></html>`
}

func framePage(evilOrigin string) string {
	return `<!doctype html><html><head><meta charset="utf-8"><title>Acme with a partner frame</title></head>
<body><h1>Acme</h1>
<iframe id="partner" name="partner" src="` + evilOrigin + `/login" width="600" height="400"></iframe>
</body></html>`
}

// echoPage shows every value raw, in an attribute, URL-encoded in a link,
// base64 in a data attribute, in a JSON script, in console.log and in a form
// field, and sends it in a Basic Authorization header and a request body.
func echoPage(vals [][]byte) string {
	var b strings.Builder
	b.WriteString(`<!doctype html><html><head><meta charset="utf-8"><title>echo</title></head><body>
<h1 id="loaded">ECHO PAGE</h1>
`)
	js, _ := json.Marshal(stringsOf(vals)) // escapes <, > and & as \u003c etc.
	for i, v := range vals {
		e := html.EscapeString(string(v))
		fmt.Fprintf(&b, `<section id="s%d">
<p class="raw" id="raw%d">%s</p>
<p class="attr" id="attr%d" title="%s">attribute</p>
<a class="link" id="link%d" href="/next?v=%s">link</a>
<div class="b64" id="b64%d" data-v="%s">base64</div>
<input class="field" id="field%d" value="%s">
<p class="fetched" id="fetched%d">pending</p>
</section>
`, i, i, e, i, e, i, url.QueryEscape(string(v)), i, base64.StdEncoding.EncodeToString(v), i, e, i)
	}
	fmt.Fprintf(&b, `<script id="json" type="application/json">{"values":%s}</script>
<script>
function b64utf8(s) { const u = new TextEncoder().encode(s); let bin = ''; for (const c of u) bin += String.fromCharCode(c); return btoa(bin); }
const vals = JSON.parse(document.getElementById('json').textContent).values;
let done = 0;
vals.forEach((v, i) => {
  console.log('echo ' + i + ': ' + v);
  fetch('/echo-api?i=' + i, {method: 'POST', body: v, headers: {
    'Authorization': 'Basic ' + b64utf8('user:' + v), 'Content-Type': 'text/plain;charset=utf-8'}})
    .then(r => r.text()).then(t => {
      document.getElementById('fetched' + i).textContent = t;
      if (++done === vals.length) document.getElementById('loaded').textContent = 'ECHO DONE';
    });
});
</script>
</body></html>`, js)
	return b.String()
}

func stringsOf(vals [][]byte) []string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = string(v)
	}
	return out
}

// encodedForms returns value in every common encoding a reader could see:
// raw, JSON-escaped (with and without HTML escaping, \u forms for non-ASCII),
// HTML-escaped, URL-escaped (query and path), base64 (standard and URL-safe,
// all three alignments, partial edge characters dropped).
func encodedForms(value []byte) map[string][]byte {
	v := string(value)
	forms := map[string][]byte{"raw": value}
	add := func(name, f string) {
		if f != "" && f != v {
			forms[name] = []byte(f)
		}
	}
	j, _ := json.Marshal(v) // HTML-escaping JSON (\u003c), raw non-ASCII
	add("json-html", strings.Trim(string(j), `"`))
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	add("json", strings.Trim(strings.TrimSpace(buf.String()), `"`))
	add("json-ascii", asciiJSON(v))
	add("html", html.EscapeString(v))
	add("query", url.QueryEscape(v))
	add("path", url.PathEscape(v))
	for shift := 0; shift < 3; shift++ {
		padded := append(bytes.Repeat([]byte{0}, shift), value...)
		for name, e := range map[string]*base64.Encoding{"b64": base64.StdEncoding, "b64url": base64.URLEncoding} {
			s := e.EncodeToString(padded)
			// Drop the characters that also depend on neighbouring bytes.
			start := (shift*8 + 5) / 6
			end := (len(padded) * 8) / 6
			if end > len(s) {
				end = len(s)
			}
			s = strings.TrimRight(s, "=")
			if end > len(s) {
				end = len(s)
			}
			if start < end {
				add(fmt.Sprintf("%s-%d", name, shift), s[start:end])
			}
		}
	}
	return forms
}

// asciiJSON is Chrome's way of writing a string in CDP JSON: ", \ and
// control characters escaped, every non-ASCII character as lower-case \uXXXX
// (surrogate pairs for emoji), <, > and & raw.
func asciiJSON(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		case r < 0x80:
			b.WriteRune(r)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

// findForm returns the name of the first form of forms found in data, or "".
func findForm(data []byte, forms map[string][]byte) string {
	for name, f := range forms {
		if len(f) > 0 && bytes.Contains(data, f) {
			return name
		}
	}
	return ""
}
