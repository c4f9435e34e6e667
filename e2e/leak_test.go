package e2e_test

import (
	"encoding/json"
	"fmt"
	"html"
	"strings"
)

// valueHits returns where value appears, in any common encoding, in a JSON
// document: in its raw bytes and in every string inside it (decoded, so an
// escaped quote in the value cannot hide it). Each hit is "path (form)".
func valueHits(doc []byte, value []byte) []string {
	forms := encodedForms(value)
	for k, f := range htmlForms(string(value)) {
		forms[k] = f
	}
	var hits []string
	if f := findForm(doc, forms); f != "" {
		hits = append(hits, fmt.Sprintf("document bytes (%s)", f))
	}
	var v any
	if json.Unmarshal(doc, &v) == nil {
		walkStrings(v, "$", func(path, s string) {
			if f := findForm([]byte(s), forms); f != "" {
				hits = append(hits, fmt.Sprintf("%s (%s)", path, f))
			}
		})
	}
	return hits
}

// bytesHits is valueHits for non-JSON data (logs, metrics).
func bytesHits(data []byte, value []byte) []string {
	forms := encodedForms(value)
	for k, f := range htmlForms(string(value)) {
		forms[k] = f
	}
	var hits []string
	for name, f := range forms {
		if i := strings.Index(string(data), string(f)); i >= 0 {
			hits = append(hits, fmt.Sprintf("offset %d (%s)", i, name))
		}
	}
	return hits
}

// htmlForms are the ways Chromium serializes text into HTML: text nodes
// escape &, < and >; attributes escape & and " (as &quot;).
func htmlForms(v string) map[string][]byte {
	text := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(v)
	attr := strings.NewReplacer("&", "&amp;", `"`, "&quot;").Replace(v)
	full := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;").Replace(v)
	out := map[string][]byte{}
	for name, f := range map[string]string{"html-text": text, "html-attr": attr, "html-full": full, "html-go": html.EscapeString(v)} {
		if f != v {
			out[name] = []byte(f)
		}
	}
	return out
}

func walkStrings(v any, path string, f func(path, s string)) {
	switch x := v.(type) {
	case string:
		f(path, x)
	case []any:
		for i, e := range x {
			walkStrings(e, fmt.Sprintf("%s[%d]", path, i), f)
		}
	case map[string]any:
		for k, e := range x {
			f(path+".<key>", k)
			walkStrings(e, path+"."+k, f)
		}
	}
}
