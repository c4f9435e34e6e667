package redact

import (
	"unicode/utf16"
	"unicode/utf8"
)

// wbuf writes into a fixed buffer (held in locked memory by the caller) and
// keeps counting past its end, so a form never spills into a Go heap buffer
// grown by append: when n > len(b) the caller retries with a larger buffer.
type wbuf struct {
	b []byte
	n int
}

func (w *wbuf) put(c byte) {
	if w.n < len(w.b) {
		w.b[w.n] = c
	}
	w.n++
}

func (w *wbuf) puts(s string) {
	for i := 0; i < len(s); i++ {
		w.put(s[i])
	}
}

func (w *wbuf) write(p []byte) {
	if w.n < len(w.b) {
		copy(w.b[w.n:], p)
	}
	w.n += len(p)
}

func (w *wbuf) ok() bool { return w.n <= len(w.b) }

func (w *wbuf) bytes() []byte { return w.b[:w.n] }

const (
	lowerHex = "0123456789abcdef"
	upperHex = "0123456789ABCDEF"
)

// xform is one encoding step of a form's recipe.
type xform uint8

const (
	xNone xform = iota // end of a chain / identity

	// JSON string escapes (the text between the quotes).
	xJSONChrome      // Chrome DevTools wire: non-ASCII and DEL as lower-case \uXXXX, <>& raw
	xJSONChromeUpper // the same with upper-case hex
	xJSONJS          // JSON.stringify / Go SetEscapeHTML(false): non-ASCII raw
	xJSONGoHTML      // Go encoding/json default: \u003c \u003e \u0026 \u2028 \u2029, non-ASCII raw
	xJSONGoHTMLUpper // the same with upper-case hex (\u003C)
	xJSONAll         // both non-ASCII and <>& escaped, lower-case hex
	xJSONAllUpper    // both, upper-case hex
	xJSONPHP         // PHP json_encode default: non-ASCII as lower-case \uXXXX and / as \/

	// Percent-encodings, each with upper- and lower-case hex.
	xURLForm // WHATWG application/x-www-form-urlencoded (browser form posts, URLSearchParams): space as +
	xURLFormLower
	xURLQuery // Go url.QueryEscape: space as +
	xURLQueryLower
	xURLComponent // JavaScript encodeURIComponent: space as %20
	xURLComponentLower
	xURLPath // Go url.PathEscape
	xURLPathLower
	xURLWhatwgQuery // what a browser does to a typed query string (minimal)
	xURLWhatwgQueryLower
	xURLWhatwgPath // what a browser does to a typed path (minimal)
	xURLWhatwgPathLower
	xURLEncodeURI // JavaScript encodeURI
	xURLEncodeURILower

	// HTML/XML escapes.
	xHTMLText    // DOM serialisation of a text node: &amp; &lt; &gt; &nbsp;
	xHTMLAttr    // DOM serialisation of an attribute (older Chrome): &amp; &quot; &nbsp;
	xHTMLAttrNew // attribute serialisation escaping < and > too
	xHTMLGo      // Go html.EscapeString: &#39; &#34;
	xHTMLCommon  // Python html.escape and most templates: &quot; &#x27;
	xHTMLXML     // XML: &quot; &apos;
	xHTMLPHP     // PHP htmlspecialchars(ENT_QUOTES): &quot; &#039;

	// Base64 cores at byte alignment 0, 1, 2 (standard and URL-safe).
	xB64Std0
	xB64Std1
	xB64Std2
	xB64URL0
	xB64URL1
	xB64URL2
)

// apply runs one encoding step.
func (x xform) apply(w *wbuf, src []byte) {
	switch x {
	case xNone:
		w.write(src)
	case xJSONChrome:
		jsonEsc(w, src, true, false, lowerHex)
	case xJSONChromeUpper:
		jsonEsc(w, src, true, false, upperHex)
	case xJSONJS:
		jsonEsc(w, src, false, false, lowerHex)
	case xJSONGoHTML:
		jsonEsc(w, src, false, true, lowerHex)
	case xJSONGoHTMLUpper:
		jsonEsc(w, src, false, true, upperHex)
	case xJSONAll:
		jsonEsc(w, src, true, true, lowerHex)
	case xJSONAllUpper:
		jsonEsc(w, src, true, true, upperHex)
	case xJSONPHP:
		jsonEscSlash(w, src)
	case xURLForm, xURLFormLower, xURLQuery, xURLQueryLower, xURLComponent, xURLComponentLower,
		xURLPath, xURLPathLower, xURLWhatwgQuery, xURLWhatwgQueryLower, xURLWhatwgPath,
		xURLWhatwgPathLower, xURLEncodeURI, xURLEncodeURILower:
		i := int(x-xURLForm) / 2
		hex := upperHex
		if (x-xURLForm)%2 == 1 {
			hex = lowerHex
		}
		pctEsc(w, src, &pctSpecs[i], hex)
	case xHTMLText, xHTMLAttr, xHTMLAttrNew, xHTMLGo, xHTMLCommon, xHTMLXML, xHTMLPHP:
		htmlEsc(w, src, &htmlSpecs[x-xHTMLText])
	case xB64Std0, xB64Std1, xB64Std2:
		b64Core(w, src, int(x-xB64Std0), b64Std)
	case xB64URL0, xB64URL1, xB64URL2:
		b64Core(w, src, int(x-xB64URL0), b64URL)
	}
}

// affects[x][c] is true when step x may change byte c; a step that affects
// no byte of its input is the identity and is skipped.
var affects = func() (a [xB64URL2 + 1][256]bool) {
	for x := xform(0); x <= xB64URL2; x++ {
		for c := 0; c < 256; c++ {
			var v bool
			switch {
			case x == xNone:
			case x >= xJSONChrome && x <= xJSONPHP:
				html := x == xJSONGoHTML || x == xJSONGoHTMLUpper || x == xJSONAll || x == xJSONAllUpper
				v = c < 0x20 || c == '"' || c == '\\' || c >= 0x7f || html && (c == '<' || c == '>' || c == '&') ||
					x == xJSONPHP && c == '/'
			case x >= xURLForm && x <= xURLEncodeURILower:
				v = !pctSpecs[int(x-xURLForm)/2].keep[c]
			case x >= xHTMLText && x <= xHTMLPHP:
				sp := &htmlSpecs[x-xHTMLText]
				v = c < 128 && sp.rep[c] != "" || sp.nbsp && c == 0xc2
			default:
				v = true
			}
			a[x][c] = v
		}
	}
	return a
}()

// identity reports whether step x leaves src unchanged.
func (x xform) identity(src []byte) bool {
	t := &affects[x]
	for _, c := range src {
		if t[c] {
			return false
		}
	}
	return true
}

// jsonEsc writes src escaped as the inside of a JSON string.
func jsonEsc(w *wbuf, src []byte, nonASCII, html bool, hex string) {
	u4 := func(r rune) {
		w.put('\\')
		w.put('u')
		w.put(hex[(r>>12)&0xf])
		w.put(hex[(r>>8)&0xf])
		w.put(hex[(r>>4)&0xf])
		w.put(hex[r&0xf])
	}
	safe := &affects[xJSONChrome]
	if !nonASCII {
		safe = &affects[xJSONJS]
	}
	for i := 0; i < len(src); {
		// copy a run of bytes no variant escapes in one go
		j := i
		for j < len(src) && !safe[src[j]] && !(html && (src[j] == '<' || src[j] == '>' || src[j] == '&')) {
			j++
		}
		if j > i {
			w.write(src[i:j])
			i = j
			continue
		}
		c := src[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"':
				w.puts(`\"`)
			case c == '\\':
				w.puts(`\\`)
			case c == '\b':
				w.puts(`\b`)
			case c == '\f':
				w.puts(`\f`)
			case c == '\n':
				w.puts(`\n`)
			case c == '\r':
				w.puts(`\r`)
			case c == '\t':
				w.puts(`\t`)
			case c < 0x20, c == 0x7f && nonASCII:
				u4(rune(c))
			case html && (c == '<' || c == '>' || c == '&'):
				u4(rune(c))
			default:
				w.put(c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(src[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			u4(0xfffd)
		case nonASCII && r >= 0x10000:
			r1, r2 := utf16.EncodeRune(r)
			u4(r1)
			u4(r2)
		case nonASCII, html && (r == 0x2028 || r == 0x2029):
			u4(r)
		default:
			w.write(src[i : i+size])
		}
		i += size
	}
}

// jsonEscSlash is Chrome's escaping with / written as \/ (PHP's
// json_encode default).
func jsonEscSlash(w *wbuf, src []byte) {
	for i := 0; i < len(src); {
		j := i
		for j < len(src) && src[j] != '/' {
			j++
		}
		jsonEsc(w, src[i:j], true, false, lowerHex)
		if j < len(src) {
			w.puts(`\/`)
			j++
		}
		i = j
	}
}

type pctSpec struct {
	keep [256]bool
	plus bool // space as '+'
}

// pctSpecs is indexed by (x-xURLForm)/2.
var pctSpecs = func() [7]pctSpec {
	mk := func(extra string, plus bool) pctSpec {
		var s pctSpec
		for c := 'a'; c <= 'z'; c++ {
			s.keep[c] = true
		}
		for c := 'A'; c <= 'Z'; c++ {
			s.keep[c] = true
		}
		for c := '0'; c <= '9'; c++ {
			s.keep[c] = true
		}
		for i := 0; i < len(extra); i++ {
			s.keep[extra[i]] = true
		}
		s.plus = plus
		return s
	}
	// minimal: every printable ASCII except the listed ones is kept.
	minimal := func(escape string) pctSpec {
		var s pctSpec
		for c := 0x21; c < 0x7f; c++ {
			s.keep[c] = true
		}
		for i := 0; i < len(escape); i++ {
			s.keep[escape[i]] = false
		}
		return s
	}
	return [7]pctSpec{
		mk("*-._", true),
		mk("-_.~", true),
		mk("-_.!~*'()", false),
		mk("-_.~$&+,:=@", false),
		minimal("\"#<>'"),
		minimal("\"#<>?`{}"),
		mk("-_.!~*'();/?:@&=+$,#", false),
	}
}()

func pctEsc(w *wbuf, src []byte, s *pctSpec, hex string) {
	for _, c := range src {
		switch {
		case c == ' ' && s.plus:
			w.put('+')
		case s.keep[c]:
			w.put(c)
		default:
			w.put('%')
			w.put(hex[c>>4])
			w.put(hex[c&0xf])
		}
	}
}

type htmlSpec struct {
	rep  [128]string
	nbsp bool
}

// htmlSpecs is indexed by x-xHTMLText.
var htmlSpecs = func() [7]htmlSpec {
	mk := func(nbsp bool, kv ...string) htmlSpec {
		var s htmlSpec
		for i := 0; i < len(kv); i += 2 {
			s.rep[kv[i][0]] = kv[i+1]
		}
		s.nbsp = nbsp
		return s
	}
	return [7]htmlSpec{
		mk(true, "&", "&amp;", "<", "&lt;", ">", "&gt;"),
		mk(true, "&", "&amp;", `"`, "&quot;"),
		mk(true, "&", "&amp;", `"`, "&quot;", "<", "&lt;", ">", "&gt;"),
		mk(false, "&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;"),
		mk(false, "&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#x27;"),
		mk(false, "&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;"),
		mk(false, "&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#039;"),
	}
}()

func htmlEsc(w *wbuf, src []byte, s *htmlSpec) {
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c < 128 && s.rep[c] != "" {
			w.puts(s.rep[c])
			continue
		}
		if s.nbsp && c == 0xc2 && i+1 < len(src) && src[i+1] == 0xa0 {
			w.puts("&nbsp;")
			i++
			continue
		}
		w.put(c)
	}
}

const (
	b64Std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)

// b64Core writes the base64 characters that depend on src alone when src
// starts at byte offset align (mod 3) of the encoded data: the characters
// that mix bits of neighbouring bytes are left out.
func b64Core(w *wbuf, src []byte, align int, alphabet string) {
	at := func(j int) uint {
		j -= align
		if j < 0 || j >= len(src) {
			return 0
		}
		return uint(src[j])
	}
	totalBits := 8 * (align + len(src))
	first := (8*align + 5) / 6
	last := totalBits / 6
	for i := first; i < last; i++ {
		bit := 6 * i
		j := bit / 8
		v := (at(j)<<8 | at(j+1)) >> (10 - uint(bit%8)) & 63
		w.put(alphabet[v])
	}
}

// b64Edges says whether a base64 core at this alignment has a partial
// character before (left) and after (right) it.
func b64Edges(align, n int) (left, right bool) {
	return (8*align)%6 != 0, (8*(align+n))%6 != 0
}

// chain is a form's recipe: encoding steps applied in order (xNone ends it).
type chain [4]xform

// changes reports whether the first step of c changes src (the empty
// chain always "changes": it is the raw form). A chain whose first step
// is the identity on src yields the same form as the chain without it.
func (c chain) changes(src []byte) bool {
	return c[0] == xNone || !c[0].identity(src)
}

// len is the number of steps.
func (c chain) len() int {
	n := 0
	for n < len(c) && c[n] != xNone {
		n++
	}
	return n
}

var (
	jsonText = []xform{xJSONChrome, xJSONChromeUpper, xJSONJS, xJSONGoHTML, xJSONGoHTMLUpper, xJSONAll, xJSONAllUpper, xJSONPHP}
	urlText  = []xform{xURLForm, xURLFormLower, xURLQuery, xURLQueryLower, xURLComponent, xURLComponentLower,
		xURLPath, xURLPathLower, xURLWhatwgQuery, xURLWhatwgQueryLower, xURLWhatwgPath, xURLWhatwgPathLower,
		xURLEncodeURI, xURLEncodeURILower}
	htmlText = []xform{xHTMLText, xHTMLAttr, xHTMLAttrNew, xHTMLGo, xHTMLCommon, xHTMLXML, xHTMLPHP}
)

// textChains are the forms a value takes in a page's text, before the
// DevTools wire adds its own JSON escaping.
var textChains = func() []chain {
	var cs []chain
	cs = append(cs, chain{})
	for _, x := range jsonText {
		cs = append(cs, chain{x})
	}
	for _, x := range urlText {
		cs = append(cs, chain{x})
	}
	for _, x := range htmlText {
		cs = append(cs, chain{x})
	}
	// Combinations that occur: JSON inside an HTML attribute or text
	// (data-x='{"pw":...}', <script type=application/json>), a URL in an
	// href, a JSON value in a query string, a URL inside a JSON document.
	for _, h := range []xform{xHTMLText, xHTMLAttr, xHTMLAttrNew, xHTMLGo, xHTMLCommon} {
		cs = append(cs, chain{xJSONJS, h})
	}
	for _, u := range []xform{xURLEncodeURI, xURLWhatwgQuery, xURLWhatwgPath, xURLPath} {
		cs = append(cs, chain{u, xHTMLAttr}, chain{u, xJSONGoHTML})
	}
	for _, u := range []xform{xURLComponent, xURLForm, xURLComponentLower} {
		cs = append(cs, chain{xJSONJS, u})
	}
	// HTML-escaped text inside a JSON document written by a server (Go's
	// encoder escapes the & of every entity), and JSON encoded twice by the
	// same kind of encoder (a JSON document stored in a JSON string).
	for _, h := range htmlText {
		cs = append(cs, chain{h, xJSONGoHTML})
	}
	cs = append(cs, chain{xJSONGoHTML, xJSONGoHTML}, chain{xJSONJS, xJSONJS}, chain{xJSONAll, xJSONAll})
	return cs
}()

// b64Chains are the base64 cores of a whole value.
var b64Chains = []chain{{xB64Std0}, {xB64Std1}, {xB64Std2}, {xB64URL0}, {xB64URL1}, {xB64URL2}}
