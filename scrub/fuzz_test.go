package scrub

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/cdpvault/cdpvault/cdpproxy"
	"github.com/cdpvault/cdpvault/redact"
)

// FuzzEvent feeds arbitrary messages through the interceptor under every
// method that has a special path. Properties: it never returns an error,
// a forwarded or replaced message holds no plaintext of a secret (raw or
// in a decodable base64 field), and valid JSON stays valid JSON.
func FuzzEvent(f *testing.F) {
	ix, err := redact.Build([]redact.Secret{{Name: "k", Value: []byte(key)}, {Name: "p", Value: []byte(pw)}, {Name: "pin", Value: []byte("12345678")}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(ix.Destroy)
	ic := New(fixedSource{ix}, Options{Logger: quiet})
	f.Add([]byte(`{"id":1,"result":{"body":"`+b64("x"+key)+`","base64Encoded":true}}`), uint8(1))
	f.Add([]byte(`{"method":"Target.receivedMessageFromTarget","params":{"message":"{\"id\":1,\"result\":{\"v\":123456789}}"}}`), uint8(5))
	f.Add([]byte(`{"method":"Network.webSocketFrameReceived","params":{"response":{"opcode":2,"payloadData":"`+b64(key)+`"}}}`), uint8(6))
	f.Add([]byte(`{"method":"Network.requestWillBeSent","params":{"request":{"postDataEntries":[{"bytes":"`+b64(pw)+`"}]}}}`), uint8(7))
	f.Add([]byte(`{"id":3,"result":{"data":"`+key[:5]+`","eof":false}}`), uint8(3))
	replyTo := []string{"", "Network.getResponseBody", "Fetch.getResponseBody", "IO.read", "Network.getRequestPostData"}
	methods := []string{"", legacyEvent, "Network.webSocketFrameReceived", "Network.requestWillBeSent", "Runtime.consoleAPICalled"}
	f.Fuzz(func(t *testing.T, raw []byte, sel uint8) {
		m := &cdpproxy.Message{Raw: append([]byte(nil), raw...)}
		if sel%2 == 0 {
			m.Method = methods[int(sel/2)%len(methods)]
		} else {
			m.HasID, m.ID, m.ReplyTo = true, 3, replyTo[int(sel/2)%len(replyTo)]
		}
		if m.ReplyTo == "IO.read" {
			cmd := &cdpproxy.Message{Raw: []byte(`{"id":3,"method":"IO.read","params":{"handle":"h"}}`), Method: "IO.read", ID: 3, HasID: true}
			_, _ = ic.Command(context.Background(), nil, cmd)
		}
		v, err := ic.Event(context.Background(), nil, m)
		if err != nil {
			t.Fatal(err)
		}
		out := raw
		switch v.Kind {
		case cdpproxy.Drop:
			return
		case cdpproxy.Replace:
			out = v.Data
		}
		for _, s := range []string{key, pw} {
			if bytes.Contains(out, []byte(s)) {
				t.Fatalf("secret survives: %q -> %q", raw, out)
			}
		}
		if json.Valid(raw) && !json.Valid(out) {
			t.Fatalf("valid JSON in, invalid out: %q -> %q", raw, out)
		}
		// decodable base64 string values hold no secret either (at
		// alignment 0, the form a body takes)
		var doc any
		if json.Unmarshal(out, &doc) == nil && v.Kind == cdpproxy.Replace {
			checkB64(t, doc)
		}
	})
}

func checkB64(t *testing.T, v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, y := range x {
			if k == "body" || k == "bytes" || k == "payloadData" || k == "postData" {
				if s, ok := y.(string); ok {
					if d, err := base64.StdEncoding.DecodeString(s); err == nil && (bytes.Contains(d, []byte(key)) || bytes.Contains(d, []byte(pw))) {
						t.Fatalf("secret in base64 field %s", k)
					}
				}
			}
			checkB64(t, y)
		}
	case []any:
		for _, y := range x {
			checkB64(t, y)
		}
	}
}
