package scrub

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/cdpvault/cdpvault/cdpproxy"
	"github.com/cdpvault/cdpvault/redact"
)

func benchInterceptor(b *testing.B, n int) cdpproxy.Interceptor {
	b.Helper()
	var secrets []redact.Secret
	for i := 0; i < n; i++ {
		secrets = append(secrets, redact.Secret{Name: fmt.Sprintf("s%d", i), Value: []byte(fmt.Sprintf("Pw-%06d-%x\"<&>é", i, i*7919))})
	}
	ix, err := redact.Build(secrets)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ix.Destroy)
	return New(fixedSource{ix}, Options{Logger: quiet})
}

func page(size int) string {
	var sb strings.Builder
	for sb.Len() < size {
		fmt.Fprintf(&sb, `<div class=\"row\" id=\"r%d\"><a href=\"/item/%d?x=1&y=2\">Item %d \u00e9t\u00e9</a></div>\n`, sb.Len(), sb.Len(), sb.Len())
	}
	return sb.String()
}

// BenchmarkEvent4MB is a 4 MB Network.getResponseBody response (text)
// with 200 secrets loaded and none present: the scrubber's share of the
// proxy's large-response path.
func BenchmarkEvent4MB(b *testing.B) {
	ic := benchInterceptor(b, 200)
	raw := []byte(`{"id":5,"result":{"body":"` + page(4<<20) + `","base64Encoded":false},"sessionId":"S"}`)
	m := &cdpproxy.Message{Raw: raw, ID: 5, HasID: true, ReplyTo: "Network.getResponseBody", SessionID: "S"}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		v, err := ic.Event(context.Background(), nil, m)
		if err != nil || v.Kind != cdpproxy.Forward {
			b.Fatal(v.Kind, err)
		}
	}
}

// BenchmarkEvent4MBBase64 is the same body base64-encoded: decoded and
// scanned, not re-encoded since nothing matched.
func BenchmarkEvent4MBBase64(b *testing.B) {
	ic := benchInterceptor(b, 200)
	raw := []byte(`{"id":5,"result":{"body":"` + base64.StdEncoding.EncodeToString([]byte(page(3<<20))) + `","base64Encoded":true},"sessionId":"S"}`)
	m := &cdpproxy.Message{Raw: raw, ID: 5, HasID: true, ReplyTo: "Network.getResponseBody", SessionID: "S"}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		v, err := ic.Event(context.Background(), nil, m)
		if err != nil || v.Kind != cdpproxy.Forward {
			b.Fatal(v.Kind, err)
		}
	}
}

// BenchmarkEventSmall is a typical small event with 200 secrets loaded.
func BenchmarkEventSmall(b *testing.B) {
	ic := benchInterceptor(b, 200)
	raw := []byte(`{"method":"Network.responseReceived","params":{"requestId":"1000.12","loaderId":"AB12CD","timestamp":1234.5678,"type":"Document","response":{"url":"https://acme.test/login","status":200,"statusText":"OK","headers":{"content-type":"text/html"},"mimeType":"text/html"}},"sessionId":"8A7F6E"}`)
	m := &cdpproxy.Message{Raw: raw, Method: "Network.responseReceived", SessionID: "8A7F6E"}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		v, err := ic.Event(context.Background(), nil, m)
		if err != nil || v.Kind != cdpproxy.Forward {
			b.Fatal(v.Kind, err)
		}
	}
}

// BenchmarkEventMatch is a small event that holds a secret.
func BenchmarkEventMatch(b *testing.B) {
	ic := benchInterceptor(b, 200)
	raw := []byte(`{"method":"Runtime.consoleAPICalled","params":{"type":"log","args":[{"type":"string","value":"pw Pw-000042-` + fmt.Sprintf("%x", 42*7919) + `\"<&>\u00e9 done"}]},"sessionId":"8A7F6E"}`)
	m := &cdpproxy.Message{Raw: raw, Method: "Runtime.consoleAPICalled"}
	for b.Loop() {
		v, err := ic.Event(context.Background(), nil, m)
		if err != nil || v.Kind != cdpproxy.Replace || bytes.Contains(v.Data, []byte("Pw-000042")) {
			b.Fatal(v.Kind, err, string(v.Data))
		}
	}
}
