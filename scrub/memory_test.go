package scrub

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cdpvault/cdpvault/cdpproxy"
	"github.com/cdpvault/cdpvault/redact"
)

// maskedSecret keeps a test secret as value XOR key, so that the test's
// own needle is never a plaintext copy.
type maskedSecret struct {
	name string
	m, k []byte
}

func (s maskedSecret) plain() []byte {
	v := make([]byte, len(s.m))
	for i := range v {
		v[i] = s.m[i] ^ s.k[i]
	}
	return v
}

func newMaskedSecret(name string) (maskedSecret, []byte) {
	const alnum = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
	v := make([]byte, 28)
	if _, err := rand.Read(v); err != nil {
		panic(err)
	}
	for i := range v {
		v[i] = alnum[int(v[i])%len(alnum)]
	}
	k := make([]byte, len(v))
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	m := make([]byte, len(v))
	for i := range v {
		m[i] = v[i] ^ k[i]
	}
	return maskedSecret{name: name, m: m, k: k}, v
}

// scanMemory counts the occurrences of each secret in every readable
// mapping of the process, read through /proc/self/mem.
func scanMemory(t *testing.T, secrets []maskedSecret) (int, []string) {
	t.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skipf("no /proc/self/maps: %v", err)
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Skipf("no /proc/self/mem: %v", err)
	}
	defer mem.Close()
	buf := make([]byte, 4<<20)
	defer clear(buf)
	hits := 0
	var where []string
	scanned := 0
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[1][0] != 'r' {
			continue
		}
		name := ""
		if len(f) >= 6 {
			name = f[5]
		}
		if name == "[vvar]" || name == "[vsyscall]" || name == "[vvar_vclock]" {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		const overlap = 64
		for off := start; off < end; {
			n := min(uint64(len(buf)), end-off)
			got, err := mem.ReadAt(buf[:n], int64(off))
			if got <= 0 || err != nil && got == 0 {
				break
			}
			scanned += got
			chunk := buf[:got]
			for _, s := range secrets {
				first := s.m[0] ^ s.k[0]
				for i := 0; ; {
					j := bytes.IndexByte(chunk[i:], first)
					if j < 0 {
						break
					}
					p := i + j
					if p+len(s.m) > len(chunk) {
						break
					}
					match := true
					for q := 1; q < len(s.m); q++ {
						if chunk[p+q] != s.m[q]^s.k[q] {
							match = false
							break
						}
					}
					if match {
						hits++
						where = append(where, fmt.Sprintf("%s at %#x (%s %s)", s.name, off+uint64(p), f[1], name))
					}
					i = p + 1
				}
			}
			if uint64(got) < n || off+uint64(got) >= end {
				break
			}
			off += uint64(got) - overlap
		}
	}
	clear(buf)
	if scanned < 1<<20 {
		t.Fatalf("scanned only %d bytes", scanned)
	}
	return hits, where
}

// TestNoPlaintextInMemory scrubs many messages that carry test secrets in
// every path of the interceptor (text, base64 bodies, post data, binary
// frames, nested legacy messages, IO.read streams in both modes), wipes
// the buffers the test owns (as the proxy wipes frames), destroys the
// index, and then scans the whole readable memory of the process for the
// plaintext. A positive control proves the scanner finds a copy.
//
// What the test cannot control and so avoids: string literals (secrets are
// random and built in []byte), fmt/json encoders (messages are assembled
// with append into buffers that are wiped).
func TestNoPlaintextInMemory(t *testing.T) {
	var secrets []maskedSecret
	b := redact.NewBuilder()
	for i := 0; i < 4; i++ {
		s, v := newMaskedSecret("mem" + strconv.Itoa(i))
		if err := b.Add(s.name, v); err != nil {
			t.Fatal(err)
		}
		clear(v)
		secrets = append(secrets, s)
	}
	ix, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	ic := New(fixedSource{ix}, Options{Logger: quiet, Metrics: NewMetrics(nil)})
	msg := make([]byte, 0, 64<<10)
	tmp := make([]byte, 0, 4<<10)
	b64buf := make([]byte, 0, 8<<10)
	replaced := 0
	send := func(m *cdpproxy.Message) {
		v, err := ic.Event(context.Background(), nil, m)
		if err != nil {
			t.Fatal(err)
		}
		if v.Kind == cdpproxy.Replace {
			replaced++
			clear(v.Data) // the proxy wipes Data after writing it
		}
		clear(m.Raw)
	}
	id := int64(0)
	for round := 0; round < 50; round++ {
		for _, s := range secrets {
			v := s.plain()
			// raw text in a response
			id++
			msg = append(msg[:0], `{"id":`...)
			msg = strconv.AppendInt(msg, id, 10)
			msg = append(msg, `,"result":{"result":{"type":"string","value":"x `...)
			msg = append(msg, v...)
			msg = append(msg, ` y"}}}`...)
			send(&cdpproxy.Message{Raw: msg, ID: id, HasID: true, ReplyTo: "Runtime.evaluate"})
			// base64 body
			id++
			tmp = append(append(append(tmp[:0], "<p>"...), v...), "</p>"...)
			b64buf = base64.StdEncoding.AppendEncode(b64buf[:0], tmp)
			clear(tmp)
			msg = append(msg[:0], `{"id":`...)
			msg = strconv.AppendInt(msg, id, 10)
			msg = append(msg, `,"result":{"body":"`...)
			msg = append(msg, b64buf...)
			msg = append(msg, `","base64Encoded":true}}`...)
			send(&cdpproxy.Message{Raw: msg, ID: id, HasID: true, ReplyTo: "Network.getResponseBody"})
			// post data entries and a binary frame
			msg = append(msg[:0], `{"method":"Network.requestWillBeSent","params":{"request":{"postDataEntries":[{"bytes":"`...)
			msg = append(msg, b64buf...)
			msg = append(msg, `"}]}}}`...)
			send(&cdpproxy.Message{Raw: msg, Method: "Network.requestWillBeSent"})
			msg = append(msg[:0], `{"method":"Network.webSocketFrameReceived","params":{"response":{"opcode":2,"payloadData":"`...)
			msg = append(msg, b64buf...)
			msg = append(msg, `"}}}`...)
			send(&cdpproxy.Message{Raw: msg, Method: "Network.webSocketFrameReceived"})
			// nested legacy message carrying the base64 body and the text
			msg = append(msg[:0], `{"method":"Target.receivedMessageFromTarget","params":{"sessionId":"S1","message":"{\"id\":5,\"result\":{\"body\":\"`...)
			msg = append(msg, b64buf...)
			msg = append(msg, `\",\"base64Encoded\":true,\"t\":\"`...)
			msg = append(msg, v...)
			msg = append(msg, `\"}}"}}`...)
			send(&cdpproxy.Message{Raw: msg, Method: "Target.receivedMessageFromTarget"})
			clear(b64buf)
			// IO.read in two chunks that split the value, text then base64
			for mode := 0; mode < 2; mode++ {
				half := len(v) / 2
				for part := 0; part < 2; part++ {
					id++
					cmd := append(msg[:0], `{"id":`...)
					cmd = strconv.AppendInt(cmd, id, 10)
					cmd = append(cmd, `,"method":"IO.read","params":{"handle":"h1"}}`...)
					if _, err := ic.Command(context.Background(), nil, &cdpproxy.Message{Raw: cmd, ID: id, HasID: true, Method: "IO.read"}); err != nil {
						t.Fatal(err)
					}
					chunk := append(tmp[:0], "lead "...)
					if part == 0 {
						chunk = append(chunk, v[:half]...)
					} else {
						chunk = append(append(tmp[:0], v[half:]...), " tail"...)
					}
					msg = append(msg[:0], `{"id":`...)
					msg = strconv.AppendInt(msg, id, 10)
					msg = append(msg, `,"result":{"data":"`...)
					if mode == 0 {
						msg = append(msg, chunk...)
						msg = append(msg, `","base64Encoded":false`...)
					} else {
						msg = base64.StdEncoding.AppendEncode(msg, chunk)
						msg = append(msg, `","base64Encoded":true`...)
					}
					if part == 1 {
						msg = append(msg, `,"eof":true}}`...)
					} else {
						msg = append(msg, `,"eof":false}}`...)
					}
					clear(chunk)
					send(&cdpproxy.Message{Raw: msg, ID: id, HasID: true, ReplyTo: "IO.read"})
				}
			}
			clear(v)
		}
	}
	if replaced < 50*4*6 {
		t.Fatalf("only %d messages were replaced", replaced)
	}

	// positive control: a copy the test keeps is found, then wiped
	ctl := secrets[0].plain()
	if n, _ := scanMemory(t, secrets[:1]); n < 1 {
		t.Fatalf("scanner did not find the control copy")
	}
	clear(ctl)

	ic.Close()
	ix.Destroy()
	n, where := scanMemory(t, secrets)
	if n > 0 {
		t.Errorf("%d plaintext copies of test secrets in process memory after Destroy:\n%s", n, strings.Join(where, "\n"))
	}
}
