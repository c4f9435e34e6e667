package cdpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func TestOrderingUnderLoad(t *testing.T) {
	t.Parallel()
	const n = 20000
	got := make(chan error, 1)
	fp := newFakePeer(t, func(fc *fakeConn) {
		next := int64(1)
		for {
			f, err := fc.read()
			if err != nil || f.Header.OpCode == ws.OpClose {
				got <- nil
				return
			}
			var m struct{ ID int64 }
			json.Unmarshal(f.Payload, &m)
			if m.ID != next {
				got <- fmt.Errorf("command %d arrived when %d was expected", m.ID, next)
				return
			}
			next++
			// an event before each response, as Target.attachedToTarget
			// comes before the attach response
			fc.sendText(fmt.Sprintf(`{"method":"Test.before","params":{"n":%d}}`, m.ID))
			fc.sendText(fmt.Sprintf(`{"id":%d,"result":{"n":%d}}`, m.ID, m.ID))
		}
	})
	pass := func() Interceptor { return &funcInterceptor{} }
	h := newHarness(t, fp.srv.URL, factory(pass, pass), Options{})
	c := dialWS(t, h.browserWS(t), nil)
	go func() {
		for i := 1; i <= n; i++ {
			if c.send(fmt.Sprintf(`{"id":%d,"method":"Test.cmd","params":{"i":%d}}`, i, i)) != nil {
				return
			}
		}
	}()
	for i := 1; i <= n; i++ {
		ev := c.readText(t)
		if want := fmt.Sprintf(`{"method":"Test.before","params":{"n":%d}}`, i); ev != want {
			t.Fatalf("message %d: got %q want %q", i, ev, want)
		}
		resp := c.readText(t)
		if want := fmt.Sprintf(`{"id":%d,"result":{"n":%d}}`, i, i); resp != want {
			t.Fatalf("message %d: got %q want %q", i, resp, want)
		}
	}
	c.writeFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

func TestByteForByteForwarding(t *testing.T) {
	t.Parallel()
	// valid but unusual JSON: whitespace, escapes, key order, unicode
	cmds := []string{
		"{ \"id\" : 1 , \"method\":\"Runtime.evaluate\",\"params\":{\"expression\":\"'\\u003c\\u003e' + \\\"x\\\"\",\"n\":1.5e3}}",
		`{"method":"Page.navigate","params":{"url":"https://acme.test/ä?q=%3C"},"id":2,"sessionId":"S1"}`,
		"\t{\"id\":3,\"method\":\"A.b\",\"params\":{\"a\":[1,2,{\"b\":null}],\"c\":true,\"d\":\"\\ud83d\\ude00\"}}\n",
	}
	events := []string{
		`{"method":"Runtime.consoleAPICalled","params":{"args":[{"type":"string","value":"a\"b\\c \u00e9 \ud83d\ude00 <&>"}]},"sessionId":"S1"}`,
		`{"id":1,"result":{"result":{"type":"string","value":"x"}}}`,
		`{"method":"X.y","params":{}}`,
	}
	recv := make(chan string, len(cmds))
	fp := newFakePeer(t, func(fc *fakeConn) {
		for range cmds {
			f, err := fc.read()
			if err != nil {
				return
			}
			recv <- string(f.Payload)
		}
		for _, e := range events {
			fc.sendText(e)
		}
		fc.read()
	})
	h := newHarness(t, fp.srv.URL, factory(func() Interceptor { return &funcInterceptor{} }), Options{})
	c := dialWS(t, h.browserWS(t), nil)
	for _, m := range cmds {
		if err := c.send(m); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range cmds {
		if got := <-recv; got != m {
			t.Errorf("command %d changed:\n got %q\nwant %q", i, got, m)
		}
	}
	for i, e := range events {
		if got := c.readText(t); got != e {
			t.Errorf("event %d changed:\n got %q\nwant %q", i, got, e)
		}
	}
}

func TestBadClientFrames(t *testing.T) {
	t.Parallel()
	fp := newFakePeer(t, nil)
	h := newHarness(t, fp.srv.URL, nil, Options{MaxMessage: 64 << 10})
	u := h.browserWS(t)

	t.Run("non-JSON gets a parse error and the connection stays", func(t *testing.T) {
		c := dialWS(t, u, nil)
		for _, bad := range []string{`hello`, `{"id":1,`, `[1,2]`, `{"id":1,"method":"A"} x`, `{"id":1,"method":"A","method":"B"}`, `{"id":1,"\u006dethod":"A","method":"B"}`, `{"id":1,"method":2}`} {
			c.send(bad)
			resp := c.readText(t)
			if !strings.Contains(resp, `"code":-32700`) || !strings.Contains(resp, "cdpvault: ") {
				t.Fatalf("%q: got %q", bad, resp)
			}
		}
		if r := c.call(t, 7, "Browser.getVersion", "", ""); string(r["result"]) != "{}" {
			t.Fatalf("after errors: %v", r)
		}
	})
	t.Run("non-integer id", func(t *testing.T) {
		c := dialWS(t, u, nil)
		c.send(`{"id":"1","method":"A"}`)
		if resp := c.readText(t); !strings.Contains(resp, "-32600") {
			t.Fatalf("got %q", resp)
		}
	})
	t.Run("reserved id", func(t *testing.T) {
		c := dialWS(t, u, nil)
		c.send(fmt.Sprintf(`{"id":%d,"method":"Browser.getVersion"}`, callIDTop-5))
		resp := c.readText(t)
		if !strings.Contains(resp, fmt.Sprintf(`"id":%d`, callIDTop-5)) || !strings.Contains(resp, "reserved") {
			t.Fatalf("got %q", resp)
		}
	})
	t.Run("binary frame closes with 1003", func(t *testing.T) {
		c := dialWS(t, u, nil)
		c.writeFrame(ws.NewBinaryFrame([]byte(`{"id":1,"method":"A"}`)))
		if code, _ := c.readClose(t); code != ws.StatusUnsupportedData {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("invalid UTF-8 closes with 1007", func(t *testing.T) {
		c := dialWS(t, u, nil)
		c.writeFrame(ws.NewTextFrame([]byte("{\"id\":1,\"method\":\"A\xff\"}")))
		if code, _ := c.readClose(t); code != ws.StatusInvalidFramePayloadData {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("oversized frame closes with 1009", func(t *testing.T) {
		c := dialWS(t, u, nil)
		big := `{"id":1,"method":"A","params":{"x":"` + strings.Repeat("a", 70<<10) + `"}}`
		c.send(big)
		if code, _ := c.readClose(t); code != ws.StatusMessageTooBig {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("oversized fragmented message closes with 1009", func(t *testing.T) {
		c := dialWS(t, u, nil)
		part := []byte(strings.Repeat("a", 40<<10))
		c.writeFrame(ws.NewFrame(ws.OpText, false, part))
		c.writeFrame(ws.NewFrame(ws.OpContinuation, false, part))
		if code, _ := c.readClose(t); code != ws.StatusMessageTooBig {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("continuation without start closes with 1002", func(t *testing.T) {
		c := dialWS(t, u, nil)
		c.writeFrame(ws.NewFrame(ws.OpContinuation, true, []byte("x")))
		if code, _ := c.readClose(t); code != ws.StatusProtocolError {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("invalid close code gets 1002", func(t *testing.T) {
		c := dialWS(t, u, nil)
		c.writeFrame(ws.NewCloseFrame([]byte{0x03, 0xed})) // 1005 may not be sent
		if code, _ := c.readClose(t); code != ws.StatusProtocolError {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("unmasked client frame closes with 1002", func(t *testing.T) {
		c := dialWS(t, u, nil)
		ws.WriteFrame(c.conn, ws.NewTextFrame([]byte(`{"id":1,"method":"A"}`)))
		if code, _ := c.readClose(t); code != ws.StatusProtocolError {
			t.Fatalf("close code %d", code)
		}
	})
}

func TestFragmentsAndControlFrames(t *testing.T) {
	t.Parallel()
	recv := make(chan ws.Frame, 8)
	fp := newFakePeer(t, func(fc *fakeConn) {
		for {
			f, err := fc.read()
			if err != nil {
				return
			}
			recv <- f
			switch f.Header.OpCode {
			case ws.OpPing:
				fc.write(ws.OpPong, f.Payload)
			case ws.OpClose:
				fc.write(ws.OpClose, f.Payload)
				return
			}
		}
	})
	h := newHarness(t, fp.srv.URL, nil, Options{})
	c := dialWS(t, h.browserWS(t), nil)
	msg := `{"id":1,"method":"Runtime.evaluate","params":{"expression":"` + strings.Repeat("x", 10000) + `"}}`
	c.writeFrame(ws.NewFrame(ws.OpText, false, []byte(msg[:5000])))
	c.writeFrame(ws.NewPingFrame([]byte("hi")))
	c.writeFrame(ws.NewFrame(ws.OpContinuation, false, []byte(msg[5000:9000])))
	c.writeFrame(ws.NewFrame(ws.OpContinuation, true, []byte(msg[9000:])))
	f := <-recv
	if f.Header.OpCode != ws.OpPing || string(f.Payload) != "hi" {
		t.Fatalf("first frame at the browser: %v %q", f.Header.OpCode, f.Payload)
	}
	f = <-recv
	if f.Header.OpCode != ws.OpText || !f.Header.Fin || string(f.Payload) != msg {
		t.Fatalf("reassembled message differs (op %v len %d)", f.Header.OpCode, len(f.Payload))
	}
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	pf, err := c.read()
	if err != nil || pf.Header.OpCode != ws.OpPong || string(pf.Payload) != "hi" {
		t.Fatalf("pong: %v %v %q", err, pf.Header.OpCode, pf.Payload)
	}
	// close code and reason travel both ways
	c.writeFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(4001, "bye")))
	f = <-recv
	if code, reason := ws.ParseCloseFrameData(f.Payload); f.Header.OpCode != ws.OpClose || code != 4001 || reason != "bye" {
		t.Fatalf("browser got close %v %d %q", f.Header.OpCode, code, reason)
	}
	if code, reason := c.readClose(t); code != 4001 || reason != "bye" {
		t.Fatalf("client got close %d %q", code, reason)
	}
}

func TestBrowserCloseCodeReachesClient(t *testing.T) {
	t.Parallel()
	fp := newFakePeer(t, func(fc *fakeConn) {
		fc.write(ws.OpClose, ws.NewCloseFrameBody(4002, "target closed"))
		fc.read()
	})
	h := newHarness(t, fp.srv.URL, nil, Options{})
	c := dialWS(t, h.browserWS(t), nil)
	if code, reason := c.readClose(t); code != 4002 || reason != "target closed" {
		t.Fatalf("client got close %d %q", code, reason)
	}
}

func TestUpstreamDiesOthersUnaffected(t *testing.T) {
	t.Parallel()
	kill := make(chan struct{})
	dying := newFakePeer(t, func(fc *fakeConn) {
		<-kill
		fc.conn.Close()
	})
	healthy := newFakePeer(t, nil)
	h := newHarness(t, dying.srv.URL, nil, Options{})
	s2 := h.addSession(healthy.srv.URL, nil)
	c1 := dialWS(t, h.browserWS(t), nil)
	c2 := dialWS(t, strings.Replace(h.browserWS(t), h.sess.Token, s2.Token, 1), nil)
	c2.call(t, 1, "Browser.getVersion", "", "")
	close(kill)
	if code, reason := c1.readClose(t); code != ws.StatusInternalServerError || !strings.HasPrefix(reason, "cdpvault:") {
		t.Fatalf("close %d %q", code, reason)
	}
	if r := c2.call(t, 2, "Browser.getVersion", "", ""); string(r["result"]) != "{}" {
		t.Fatalf("other session: %v", r)
	}
	waitFor(t, func() bool { return h.p.SessionConns(h.sess.Token) == 0 })
}

func TestClientVanishesUpstreamClosed(t *testing.T) {
	t.Parallel()
	gotClose := make(chan ws.StatusCode, 1)
	fp := newFakePeer(t, func(fc *fakeConn) {
		for {
			f, err := fc.read()
			if err != nil {
				gotClose <- 0
				return
			}
			if f.Header.OpCode == ws.OpClose {
				code, _ := ws.ParseCloseFrameData(f.Payload)
				fc.write(ws.OpClose, f.Payload)
				gotClose <- code
				return
			}
		}
	})
	closed := make(chan struct{})
	h := newHarness(t, fp.srv.URL, factory(func() Interceptor { return &funcInterceptor{closed: closed} }), Options{})
	c := dialWS(t, h.browserWS(t), nil)
	waitFor(t, func() bool { return h.p.SessionConns(h.sess.Token) == 1 })
	c.conn.Close()
	if code := <-gotClose; code != ws.StatusGoingAway {
		t.Fatalf("browser got close code %d", code)
	}
	<-closed // interceptor Close called
	waitFor(t, func() bool { return h.p.SessionConns(h.sess.Token) == 0 })
}

func TestInterceptorVerdicts(t *testing.T) {
	t.Parallel()
	recv := make(chan string, 16)
	var fcp atomic.Pointer[fakeConn]
	fp := newFakePeer(t, func(fc *fakeConn) {
		fcp.Store(fc)
		for {
			f, err := fc.read()
			if err != nil || f.Header.OpCode == ws.OpClose {
				return
			}
			recv <- string(f.Payload)
			var m struct{ ID int64 }
			json.Unmarshal(f.Payload, &m)
			if m.ID != 0 {
				fc.sendText(fmt.Sprintf(`{"id":%d,"result":{"v":"secret-ish"}}`, m.ID))
			}
		}
	})
	first := func() Interceptor {
		return &funcInterceptor{
			cmd: func(ctx context.Context, c Conn, m *Message) (Verdict, error) {
				switch m.Method {
				case "T.replace":
					return Verdict{Kind: Replace, Data: []byte(fmt.Sprintf(`{"id":%d,"method":"T.replaced"}`, m.ID))}, nil
				case "T.reply":
					return Verdict{Kind: Reply, Data: ErrorReply(m, "cdpvault: refused by test")}, nil
				case "T.drop":
					c.WriteClient(EmptyResult(m))
					return Verdict{Kind: Drop}, nil
				case "T.error":
					return Verdict{}, errors.New("boom")
				case "T.panic":
					panic("kaboom")
				}
				return Verdict{}, nil
			},
			ev: func(ctx context.Context, c Conn, m *Message) (Verdict, error) {
				if bytes.Contains(m.Raw, []byte("secret-ish")) {
					return Verdict{Kind: Replace, Data: bytes.ReplaceAll(m.Raw, []byte("secret-ish"), []byte("<<secret:x>>"))}, nil
				}
				if m.Method == "T.dropEvent" {
					return Verdict{Kind: Drop}, nil
				}
				if m.Method == "T.errEvent" {
					return Verdict{}, errors.New("scrub failed")
				}
				return Verdict{}, nil
			},
		}
	}
	var sawReplaced atomic.Bool
	second := func() Interceptor {
		return &funcInterceptor{cmd: func(ctx context.Context, c Conn, m *Message) (Verdict, error) {
			if m.Method == "T.replaced" {
				sawReplaced.Store(true) // later interceptors see the replacement
			}
			return Verdict{}, nil
		}}
	}
	h := newHarness(t, fp.srv.URL, factory(first, second), Options{})
	c := dialWS(t, h.browserWS(t), nil)

	// Replace: browser gets the replacement; the response is scrubbed by Event.
	r := c.call(t, 1, "T.replace", "", "")
	if got := <-recv; got != `{"id":1,"method":"T.replaced"}` {
		t.Fatalf("browser got %q", got)
	}
	if !sawReplaced.Load() {
		t.Fatal("second interceptor did not see the replacement")
	}
	if string(r["result"]) != `{"v":"<<secret:x>>"}` {
		t.Fatalf("response not replaced: %s", r["result"])
	}
	// Reply: client gets the error, browser nothing.
	r = c.call(t, 2, "T.reply", "", "")
	if !strings.Contains(string(r["error"]), "refused by test") {
		t.Fatalf("reply: %v", r)
	}
	// Drop with WriteClient.
	r = c.call(t, 3, "T.drop", "", "")
	if string(r["result"]) != "{}" {
		t.Fatalf("drop: %v", r)
	}
	// interceptor error and panic: CDP error, not forwarded.
	for i, meth := range []string{"T.error", "T.panic"} {
		r = c.call(t, 4+i, meth, "", "")
		var e struct{ Code int }
		json.Unmarshal(r["error"], &e)
		if e.Code != -32000 {
			t.Fatalf("%s: %v", meth, r)
		}
	}
	c.call(t, 10, "T.plain", "", "")
	if got := <-recv; got != `{"id":10,"method":"T.plain"}` {
		t.Fatalf("browser got %q (a refused command leaked through?)", got)
	}
	// events: dropped, withheld on error, forwarded.
	fc := fcp.Load()
	fc.sendText(`{"method":"T.dropEvent","params":{}}`)
	fc.sendText(`{"method":"T.errEvent","params":{}}`)
	fc.sendText(`{"id":99,"result":{}}`) // unknown response id: plain forward
	fc.sendText(`{"method":"T.ok","params":{}}`)
	if got := c.readText(t); got != `{"id":99,"result":{}}` {
		t.Fatalf("got %q", got)
	}
	if got := c.readText(t); got != `{"method":"T.ok","params":{}}` {
		t.Fatalf("got %q", got)
	}
}

func TestReplyToAndTracking(t *testing.T) {
	t.Parallel()
	fp := newFakePeer(t, func(fc *fakeConn) {
		for {
			f, err := fc.read()
			if err != nil || f.Header.OpCode == ws.OpClose {
				return
			}
			var m struct {
				ID        int64
				Method    string
				SessionID string
			}
			json.Unmarshal(f.Payload, &m)
			switch m.Method {
			case "Target.attachToTarget":
				fc.sendText(`{"method":"Target.attachedToTarget","params":{"sessionId":"S1","targetInfo":{"targetId":"T1","type":"page","title":"","url":"https://acme.test/a","attached":true,"browserContextId":"C1"},"waitingForDebugger":false}}`)
				fc.sendText(fmt.Sprintf(`{"id":%d,"result":{"sessionId":"S1"}}`, m.ID))
			case "Page.navigate":
				fc.sendText(`{"method":"Page.frameNavigated","params":{"frame":{"id":"CHILD","parentId":"T1","url":"https://evil.test/x"},"type":"Navigation"},"sessionId":"S1"}`)
				fc.sendText(`{"method":"Page.frameNavigated","params":{"frame":{"id":"T1","url":"https://evil.test:8443/y","urlFragment":"#f"},"type":"Navigation"},"sessionId":"S1"}`)
				fc.sendText(fmt.Sprintf(`{"id":%d,"result":{"frameId":"T1"},"sessionId":"S1"}`, m.ID))
			case "Target.detach":
				fc.sendText(`{"method":"Target.detachedFromTarget","params":{"sessionId":"S1","targetId":"T1"}}`)
				fc.sendText(fmt.Sprintf(`{"id":%d,"result":{}}`, m.ID))
			default:
				fc.sendText(fmt.Sprintf(`{"id":%d,"result":{}}`, m.ID))
			}
		}
	})
	type seen struct {
		replyTo string
		target  TargetInfo
		ok      bool
	}
	seenCh := make(chan seen, 16)
	ic := func() Interceptor {
		return &funcInterceptor{
			cmd: func(ctx context.Context, c Conn, m *Message) (Verdict, error) {
				if m.Method == "Test.where" {
					ti, ok := c.Target("S1")
					seenCh <- seen{target: ti, ok: ok}
					return Verdict{Kind: Reply, Data: EmptyResult(m)}, nil
				}
				return Verdict{}, nil
			},
			ev: func(ctx context.Context, c Conn, m *Message) (Verdict, error) {
				if m.HasID && m.Method == "" {
					seenCh <- seen{replyTo: m.ReplyTo}
				}
				return Verdict{}, nil
			},
		}
	}
	h := newHarness(t, fp.srv.URL, factory(ic), Options{})
	c := dialWS(t, h.browserWS(t), nil)
	c.call(t, 1, "Target.attachToTarget", `{"targetId":"T1","flatten":true}`, "")
	if s := <-seenCh; s.replyTo != "Target.attachToTarget" {
		t.Fatalf("ReplyTo %q", s.replyTo)
	}
	c.call(t, 2, "Test.where", "", "")
	if s := <-seenCh; !s.ok || s.target.URL != "https://acme.test/a" || s.target.Origin != "https://acme.test" || s.target.Type != "page" || s.target.TargetID != "T1" || s.target.BrowserContext != "C1" {
		t.Fatalf("target after attach: %+v", s)
	}
	c.call(t, 3, "Page.navigate", `{"url":"https://evil.test:8443/y"}`, "S1")
	if s := <-seenCh; s.replyTo != "Page.navigate" {
		t.Fatalf("ReplyTo %q", s.replyTo)
	}
	c.call(t, 4, "Test.where", "", "")
	if s := <-seenCh; s.target.Origin != "https://evil.test:8443" || s.target.URL != "https://evil.test:8443/y#f" {
		t.Fatalf("target after navigation: %+v", s)
	}
	c.call(t, 5, "Target.detach", "", "")
	<-seenCh
	c.call(t, 6, "Test.where", "", "")
	if s := <-seenCh; s.ok {
		t.Fatalf("session still known after detach: %+v", s)
	}
}

func TestCallIDRangeAndConsumedResponses(t *testing.T) {
	t.Parallel()
	ids := make(chan int64, 16)
	fp := newFakePeer(t, func(fc *fakeConn) {
		for {
			f, err := fc.read()
			if err != nil || f.Header.OpCode == ws.OpClose {
				return
			}
			var m struct {
				ID     int64
				Method string
			}
			json.Unmarshal(f.Payload, &m)
			ids <- m.ID
			if m.Method == "Bad.call" {
				fc.sendText(fmt.Sprintf(`{"id":%d,"error":{"code":-32601,"message":"'Bad.call' wasn't found"}}`, m.ID))
				continue
			}
			fc.sendText(fmt.Sprintf(`{"id":%d,"result":{"product":"Fake","method":%q}}`, m.ID, m.Method))
		}
	})
	results := make(chan string, 4)
	ic := func() Interceptor {
		return &funcInterceptor{cmd: func(ctx context.Context, c Conn, m *Message) (Verdict, error) {
			if m.Method == "Test.lookup" {
				res, err := c.Call(ctx, "", "Browser.getVersion", map[string]any{"x": 1})
				if err != nil {
					return Verdict{}, err
				}
				results <- string(res)
				_, err = c.Call(ctx, "", "Bad.call", nil)
				var ce *CDPError
				if !errors.As(err, &ce) || ce.Code != -32601 {
					return Verdict{}, fmt.Errorf("want CDPError, got %v", err)
				}
				return Verdict{Kind: Reply, Data: EmptyResult(m)}, nil
			}
			return Verdict{}, nil
		}}
	}
	h := newHarness(t, fp.srv.URL, factory(ic), Options{})
	c := dialWS(t, h.browserWS(t), nil)
	r := c.call(t, 1, "Test.lookup", "", "")
	if string(r["result"]) != "{}" {
		t.Fatalf("got %v", r)
	}
	if got := <-results; got != `{"product":"Fake","method":"Browser.getVersion"}` {
		t.Fatalf("call result %q", got)
	}
	for range 2 {
		id := <-ids
		if id < callIDLow || id > callIDTop || id >= 1<<31 {
			t.Fatalf("daemon call id %d outside the reserved range", id)
		}
	}
	// the client sees only its own response next
	r = c.call(t, 2, "Plain.cmd", "", "")
	if got := <-ids; got != 2 {
		t.Fatalf("browser got id %d", got)
	}
	if !strings.Contains(string(r["result"]), "Plain.cmd") {
		t.Fatalf("got %v", r)
	}
	// a burst read at once (the proxy gathers writes while more input is
	// buffered): a Call made from Command must still go out at once.
	var burst bytes.Buffer
	for i, m := range []string{`{"id":3,"method":"Test.lookup"}`, `{"id":4,"method":"Plain.a"}`, `{"id":5,"method":"Plain.b"}`} {
		_ = i
		ws.WriteFrame(&burst, ws.MaskFrame(ws.NewTextFrame([]byte(m))))
	}
	if _, err := c.conn.Write(burst.Bytes()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"id":3`, `"id":4`, `"id":5`} {
		if got := c.readText(t); !strings.Contains(got, want) {
			t.Fatalf("burst: got %q want %s", got, want)
		}
	}
	<-results
}

func TestNestedSendMessageToTarget(t *testing.T) {
	t.Parallel()
	recv := make(chan string, 8)
	fp := newFakePeer(t, func(fc *fakeConn) {
		for {
			f, err := fc.read()
			if err != nil || f.Header.OpCode == ws.OpClose {
				return
			}
			var m struct {
				ID     int64
				Method string
			}
			json.Unmarshal(f.Payload, &m)
			recv <- string(f.Payload)
			if m.Method == "Target.attachToTarget" {
				fc.sendText(`{"method":"Target.attachedToTarget","params":{"sessionId":"L1","targetInfo":{"targetId":"T9","type":"page","url":"https://acme.test/"},"waitingForDebugger":false}}`)
			}
			fc.sendText(fmt.Sprintf(`{"id":%d,"result":{}}`, m.ID))
		}
	})
	var nestedSeen atomic.Pointer[Message]
	ic := func() Interceptor {
		return &funcInterceptor{cmd: func(ctx context.Context, c Conn, m *Message) (Verdict, error) {
			if m.Nested {
				cp := *m
				cp.Raw = append([]byte(nil), m.Raw...)
				nestedSeen.Store(&cp)
			}
			if bytes.Contains(m.Raw, []byte("<<secret:")) {
				return Verdict{Kind: Reply, Data: ErrorReply(m, "cdpvault: placeholder outside input")}, nil
			}
			return Verdict{}, nil
		}}
	}
	h := newHarness(t, fp.srv.URL, factory(ic), Options{})
	c := dialWS(t, h.browserWS(t), nil)
	c.call(t, 1, "Target.attachToTarget", `{"targetId":"T9"}`, "")
	<-recv

	// refused: placeholder inside the nested JSON string (escaped forms too)
	for i, inner := range []string{
		`{\"id\":1,\"method\":\"Runtime.evaluate\",\"params\":{\"expression\":\"'<<secret:pw>>'\"}}`,
		`{\"id\":1,\"method\":\"Runtime.evaluate\",\"params\":{\"expression\":\"'\u003c\u003csecret:pw>>'\"}}`, // outer-escaped <
	} {
		id := 10 + i
		r := c.call(t, id, "Target.sendMessageToTarget", `{"sessionId":"L1","message":"`+inner+`"}`, "")
		if !strings.Contains(string(r["error"]), "placeholder outside input") {
			t.Fatalf("nested %d not refused: %v", i, r)
		}
		nm := nestedSeen.Load()
		if nm == nil || !nm.Nested || nm.SessionID != "L1" || nm.Method != "Runtime.evaluate" || nm.ID != 1 {
			t.Fatalf("nested message header: %+v", nm)
		}
	}
	// by targetId: resolved to the attached session
	nestedSeen.Store(nil)
	c.call(t, 20, "Target.sendMessageToTarget", `{"targetId":"T9","message":"{\"id\":2,\"method\":\"Runtime.evaluate\",\"params\":{\"expression\":\"1\"}}"}`, "")
	if got := <-recv; !strings.Contains(got, `"id":20`) {
		t.Fatalf("forwardable nested message not forwarded: %q", got)
	}
	if nm := nestedSeen.Load(); nm == nil || nm.SessionID != "L1" {
		t.Fatalf("targetId not resolved: %+v", nm)
	}
	// unknown target, invalid nested JSON, double nesting: refused
	for i, params := range []string{
		`{"targetId":"NOPE","message":"{\"id\":1,\"method\":\"A.b\"}"}`,
		`{"sessionId":"L1","message":"{not json"}`,
		`{"sessionId":"L1","message":"{\"id\":1,\"method\":\"Target.sendMessageToTarget\",\"params\":{}}"}`,
		`{"sessionId":"L1"}`,
	} {
		r := c.call(t, 30+i, "Target.sendMessageToTarget", params, "")
		if !strings.Contains(string(r["error"]), "cdpvault:") {
			t.Fatalf("case %d not refused: %v", i, r)
		}
	}
	c.call(t, 40, "X.last", "", "")
	if got := <-recv; !strings.Contains(got, `"id":40`) {
		t.Fatalf("a refused nested command reached the browser: %q", got)
	}
}

func TestGuardsWithFakePeer(t *testing.T) {
	t.Parallel()
	fp := newFakePeer(t, nil)
	h := newHarness(t, fp.srv.URL, nil, Options{AllowOrigins: []string{"http://allowed.example"}})
	u := h.browserWS(t)
	do := func(method, url string, hdr map[string]string) int {
		req, _ := http.NewRequest(method, url, nil)
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := do("GET", h.base+"/json/version", map[string]string{"Origin": "https://evil.test"}); st != 403 {
		t.Fatalf("foreign origin: %d", st)
	}
	if st := do("GET", h.base+"/json/version", map[string]string{"Origin": "http://allowed.example"}); st != 200 {
		t.Fatalf("allowed origin: %d", st)
	}
	if st := do("GET", h.base+"/json/version", map[string]string{"Host": "evil.test:9222"}); st != 400 {
		t.Fatalf("rebinding host: %d", st)
	}
	if st := do("GET", h.base+"/json/version", map[string]string{"Host": "localhost:9222"}); st != 200 {
		t.Fatalf("localhost: %d", st)
	}
	if st := do("GET", strings.Replace(h.base, h.sess.Token, "nosuchtoken", 1)+"/json/version", nil); st != 404 {
		t.Fatalf("unknown token: %d", st)
	}
	if _, err := tryDialWS(u, http.Header{"Origin": {"https://evil.test"}}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("ws with foreign origin: %v", err)
	}
	if _, err := tryDialWS(strings.Replace(u, h.sess.Token, "nosuchtoken", 1), nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("ws with unknown token: %v", err)
	}
	if _, err := tryDialWS(u, http.Header{"Origin": {"http://allowed.example"}}); err != nil {
		t.Fatalf("ws with allowed origin: %v", err)
	}
}

func TestDiscoveryRewriteAndHook(t *testing.T) {
	t.Parallel()
	fp := newFakePeer(t, nil)
	var hooked atomic.Int32
	h := newHarness(t, fp.srv.URL, nil, Options{Discovery: func(s *Session, body []byte) ([]byte, error) {
		hooked.Add(1)
		return bytes.ReplaceAll(body, []byte("/login"), []byte("/<<secret:x>>")), nil
	}})
	var list []map[string]any
	getJSON(t, h.base+"/json/list", &list)
	host := strings.TrimPrefix(h.srv.URL, "http://")
	if list[0]["webSocketDebuggerUrl"] != "ws://"+host+"/session/"+h.sess.Token+"/devtools/page/PAGE1" {
		t.Fatalf("ws url %v", list[0]["webSocketDebuggerUrl"])
	}
	if list[0]["devtoolsFrontendUrl"] != "/devtools/inspector.html?ws="+host+"/session/"+h.sess.Token+"/devtools/page/PAGE1" {
		t.Fatalf("frontend url %v", list[0]["devtoolsFrontendUrl"])
	}
	if list[0]["url"] != "https://acme.test/<<secret:x>>" || hooked.Load() == 0 {
		t.Fatalf("hook not applied: %v", list[0]["url"])
	}
	// the page socket learns its URL from the list
	got := make(chan TargetInfo, 1)
	h2 := newHarness(t, fp.srv.URL, factory(func() Interceptor {
		return &funcInterceptor{cmd: func(ctx context.Context, c Conn, m *Message) (Verdict, error) {
			ti, _ := c.Target("")
			got <- ti
			return Verdict{Kind: Reply, Data: EmptyResult(m)}, nil
		}}
	}), Options{})
	getJSON(t, h2.base+"/json/list", &list)
	c := dialWS(t, list[0]["webSocketDebuggerUrl"].(string), nil)
	c.call(t, 1, "X.y", "", "")
	if ti := <-got; ti.TargetID != "PAGE1" || ti.Origin != "https://acme.test" || ti.Type != "page" {
		t.Fatalf("page root %+v", ti)
	}
}

func TestUnregisterAndShutdownSendCloseFrames(t *testing.T) {
	t.Parallel()
	fp := newFakePeer(t, nil)
	h := newHarness(t, fp.srv.URL, nil, Options{})
	u := h.browserWS(t)
	c1 := dialWS(t, u, nil)
	c1.call(t, 1, "A.b", "", "")
	h.p.Unregister(h.sess.Token)
	if code, _ := c1.readClose(t); code != ws.StatusGoingAway {
		t.Fatalf("unregister close code %d", code)
	}
	if _, err := tryDialWS(u, nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("dial after unregister: %v", err)
	}
	s2 := h.addSession(fp.srv.URL, nil)
	u2 := strings.Replace(u, h.sess.Token, s2.Token, 1)
	cs := []*wsClient{dialWS(t, u2, nil), dialWS(t, u2, nil), dialWS(t, u2, nil)}
	for i, c := range cs {
		c.call(t, i+1, "A.b", "", "")
	}
	if n := h.p.SessionConns(s2.Token); n != 3 {
		t.Fatalf("SessionConns %d", n)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- h.p.Shutdown(ctx)
	}()
	for _, c := range cs {
		code, _ := c.readClose(t)
		if code != ws.StatusGoingAway {
			t.Fatalf("shutdown close code %d", code)
		}
		c.writeFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, "")))
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond) // polling proxy state owned by other goroutines
	}
}

// TestEventConnCallAndCaller: on the Conn handed to Event, Call is refused
// at once (its response would have to be read by the goroutine blocked in
// Event), and Caller gives the connection's Conn, whose Call works from a
// goroutine Event starts.
func TestEventConnCallAndCaller(t *testing.T) {
	t.Parallel()
	fp := newFakePeer(t, func(fc *fakeConn) {
		for {
			f, err := fc.read()
			if err != nil || f.Header.OpCode == ws.OpClose {
				return
			}
			var m struct {
				ID     int64
				Method string
			}
			json.Unmarshal(f.Payload, &m)
			if m.Method == "Test.emit" {
				fc.sendText(`{"method":"Test.happened","params":{}}`)
			}
			fc.sendText(fmt.Sprintf(`{"id":%d,"result":{"method":%q}}`, m.ID, m.Method))
		}
	})
	inEvent, async := make(chan error, 1), make(chan string, 1)
	ic := func() Interceptor {
		return &funcInterceptor{ev: func(ctx context.Context, c Conn, m *Message) (Verdict, error) {
			if m.Method != "Test.happened" {
				return Verdict{}, nil
			}
			_, err := c.Call(ctx, "", "X.y", nil)
			inEvent <- err
			cc := Caller(c)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				res, err := cc.Call(ctx, "", "Browser.getVersion", nil)
				async <- fmt.Sprintf("%s %v", res, err)
			}()
			return Verdict{}, nil
		}}
	}
	h := newHarness(t, fp.srv.URL, factory(ic), Options{})
	c := dialWS(t, h.browserWS(t), nil)
	c.call(t, 1, "Test.emit", "", "")
	if err := <-inEvent; !errors.Is(err, ErrCallInEvent) {
		t.Fatalf("Call from Event: %v, want ErrCallInEvent", err)
	}
	if got := <-async; got != `{"method":"Browser.getVersion"} <nil>` {
		t.Fatalf("Call through Caller from a goroutine: %s", got)
	}
}
