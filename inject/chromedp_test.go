package inject

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
	"github.com/gorilla/websocket"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// miniProxy is a WebSocket pass-through in front of one Chromium that runs
// the interceptor on every client connection, so an unmodified client
// library (chromedp here) can be driven through it.
func miniProxy(t *testing.T, browserWS string, opts func() Options) string {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer client.Close()
		c := dialCDP(t, browserWS, New(opts()))
		var cmu sync.Mutex
		c.mu.Lock()
		c.toClient = func(b []byte) {
			cmu.Lock()
			defer cmu.Unlock()
			_ = client.WriteMessage(websocket.TextMessage, b)
		}
		c.mu.Unlock()
		for {
			_, data, err := client.ReadMessage()
			if err != nil {
				return
			}
			var hdr struct {
				ID        int64  `json:"id"`
				Method    string `json:"method"`
				SessionID string `json:"sessionId"`
			}
			if json.Unmarshal(data, &hdr) != nil {
				return
			}
			m := &cdpproxy.Message{Raw: data, ID: hdr.ID, HasID: true, Method: hdr.Method, SessionID: hdr.SessionID}
			v, err := c.in.Command(context.Background(), c, m)
			if err != nil {
				return
			}
			switch v.Kind {
			case cdpproxy.Forward:
				c.wmu.Lock()
				err = c.ws.WriteMessage(websocket.TextMessage, data)
				c.wmu.Unlock()
			case cdpproxy.Replace:
				c.wmu.Lock()
				err = c.ws.WriteMessage(websocket.TextMessage, v.Data)
				c.wmu.Unlock()
			case cdpproxy.Reply:
				_ = c.WriteClient(v.Data)
			}
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/devtools/browser/proxy"
}

// TestChromedpSendKeys drives the real chromedp library (SendKeys types
// key by key: keyDown, char, keyUp per character) through the interceptor.
func TestChromedpSendKeys(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	vault := &fakeVault{secrets: map[string]fakeSecret{
		"pw": {value: trickyValue, origins: []string{s.origin("acme.test")}},
	}}
	audit := &memAudit{}
	wsURL := miniProxy(t, launchChromium(t), func() Options {
		return Options{Vault: vault, Granted: []string{"pw"}, Audit: audit, Logger: newTestLogger(testWriter{t})}
	})
	base, cancel := context.WithTimeout(t.Context(), 90*time.Second) // the remote browser outlives it
	defer cancel()
	actx, cancel := remote.NewAllocator(base, wsURL, remote.NoModifyURL)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	user := "bob <<sec"
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.url("acme.test", "/login")),
		chromedp.SendKeys(chromedp.CSS("#user"), user),
		chromedp.SendKeys(chromedp.CSS("#pass"), "<<secret:pw>>"),
		chromedp.Submit(chromedp.CSS("#f")),
	); err != nil {
		t.Fatalf("chromedp: %v", err)
	}
	select {
	case got := <-s.subs:
		if want := "acme.test " + user + "\x00" + trickyValue; got != want {
			t.Fatalf("site received %q\nwant %q", got, want)
		}
	case <-ctx.Done():
		t.Fatal("no submission")
	}
	// A placeholder in an evaluate is refused with the interface's error.
	_, err := chromedp.Run(ctx, chromedp.Evaluate[string](`"<<secret:pw>>"`))
	if err == nil || !strings.Contains(err.Error(), "cdpvault: placeholder not allowed in Runtime.evaluate") {
		t.Fatalf("evaluate with a placeholder: %v", err)
	}
	if recs := audit.all(); len(recs) != 2 || recs[0].Result != AuditInjected || recs[1].Reason == "" {
		t.Fatalf("audit %+v", recs)
	}
}
