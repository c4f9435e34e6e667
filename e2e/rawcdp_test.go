package e2e_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// RawCDP is a plain WebSocket CDP client, as chrome-remote-interface and
// hand-written agents use it: JSON text frames, ids chosen by the client.
type RawCDP struct {
	t      testing.TB
	c      *websocket.Conn
	nextID int64
	events []json.RawMessage // events read while waiting for responses
}

// CDPError is the error object of a CDP response.
type CDPError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// CDPResponse is one response frame.
type CDPResponse struct {
	ID        int64           `json:"id"`
	SessionID string          `json:"sessionId"`
	Result    json.RawMessage `json:"result"`
	Error     *CDPError       `json:"error"`
	Method    string          `json:"method"`
	Params    json.RawMessage `json:"params"`
}

// DialRaw opens a CDP WebSocket; it fails the test if the upgrade fails.
func DialRaw(t testing.TB, wsURL string) *RawCDP {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial %s: %v %s", wsURL, err, status)
	}
	c.SetReadLimit(512 << 20)
	r := &RawCDP{t: t, c: c, nextID: 1000}
	t.Cleanup(func() { c.Close() })
	return r
}

// Send writes a command with the next id and returns the id.
func (r *RawCDP) Send(sessionID, method string, params any) int64 {
	r.t.Helper()
	r.nextID++
	msg := map[string]any{"id": r.nextID, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if sessionID != "" {
		msg["sessionId"] = sessionID
	}
	b, _ := json.Marshal(msg)
	r.SendRaw(b)
	return r.nextID
}

// SendRaw writes one text frame as is.
func (r *RawCDP) SendRaw(frame []byte) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(waitTimeout))
	if err := r.c.WriteMessage(websocket.TextMessage, frame); err != nil {
		r.t.Fatalf("write CDP frame: %v", err)
	}
}

// Wait reads until the response with id arrives and returns it.
func (r *RawCDP) Wait(id int64) CDPResponse {
	r.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		r.c.SetReadDeadline(deadline)
		_, b, err := r.c.ReadMessage()
		if err != nil {
			r.t.Fatalf("waiting for the response to command %d: %v", id, err)
		}
		var m CDPResponse
		if err := json.Unmarshal(b, &m); err != nil {
			r.t.Fatalf("frame from the daemon is not JSON: %v: %.200s", err, b)
		}
		if m.Method != "" {
			r.events = append(r.events, append(json.RawMessage(nil), b...))
			continue
		}
		if m.ID == id {
			return m
		}
	}
}

// Call sends a command and returns its response.
func (r *RawCDP) Call(sessionID, method string, params any) CDPResponse {
	r.t.Helper()
	return r.Wait(r.Send(sessionID, method, params))
}

// MustCall is Call that fails the test on a CDP error and decodes the result.
func (r *RawCDP) MustCall(sessionID, method string, params any, result any) {
	r.t.Helper()
	resp := r.Call(sessionID, method, params)
	if resp.Error != nil {
		r.t.Fatalf("%s: CDP error %d %s", method, resp.Error.Code, resp.Error.Message)
	}
	if result != nil {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			r.t.Fatalf("%s result %s: %v", method, resp.Result, err)
		}
	}
}

// WaitEvent reads until an event named method (for sessionID) arrives.
func (r *RawCDP) WaitEvent(sessionID, method string) json.RawMessage {
	r.t.Helper()
	for i, b := range r.events {
		var m CDPResponse
		json.Unmarshal(b, &m)
		if m.Method == method && m.SessionID == sessionID {
			r.events = append(r.events[:i], r.events[i+1:]...)
			return m.Params
		}
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		r.c.SetReadDeadline(deadline)
		_, b, err := r.c.ReadMessage()
		if err != nil {
			r.t.Fatalf("waiting for event %s: %v", method, err)
		}
		var m CDPResponse
		json.Unmarshal(b, &m)
		if m.Method == method && m.SessionID == sessionID {
			return m.Params
		}
	}
}

// Evaluate runs expression in sessionID's page and returns the value.
func (r *RawCDP) Evaluate(sessionID, expression string) json.RawMessage {
	r.t.Helper()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails json.RawMessage `json:"exceptionDetails"`
	}
	r.MustCall(sessionID, "Runtime.evaluate", map[string]any{"expression": expression, "returnByValue": true, "awaitPromise": true}, &res)
	if res.ExceptionDetails != nil {
		r.t.Fatalf("evaluate %q threw: %s", expression, res.ExceptionDetails)
	}
	return res.Result.Value
}

// WaitClosed reads until the connection ends and reports whether the peer
// sent a close frame (and its code) rather than just dropping the socket.
func (r *RawCDP) WaitClosed(timeout time.Duration) (closeFrame bool, code int, err error) {
	deadline := time.Now().Add(timeout)
	for {
		r.c.SetReadDeadline(deadline)
		_, _, err := r.c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
			return true, ce.Code, nil
		}
		// gorilla reports a socket dropped without a close frame as 1006.
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			return false, 0, fmt.Errorf("socket still open after %v", timeout)
		}
		return false, 0, fmt.Errorf("socket dropped without a close frame: %w", err)
	}
}

// NewPageSession creates a page target over a browser socket and attaches to
// it in flattened mode; it returns the target id and session id.
func (r *RawCDP) NewPageSession(startURL string) (targetID, sessionID string) {
	r.t.Helper()
	var ct struct {
		TargetID string `json:"targetId"`
	}
	r.MustCall("", "Target.createTarget", map[string]any{"url": startURL}, &ct)
	var at struct {
		SessionID string `json:"sessionId"`
	}
	r.MustCall("", "Target.attachToTarget", map[string]any{"targetId": ct.TargetID, "flatten": true}, &at)
	return ct.TargetID, at.SessionID
}

// Navigate loads u in the session's page and waits for its load event.
func (r *RawCDP) Navigate(sessionID, u string) {
	r.t.Helper()
	r.MustCall(sessionID, "Page.enable", nil, nil)
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	r.MustCall(sessionID, "Page.navigate", map[string]any{"url": u}, &nav)
	if nav.ErrorText != "" {
		r.t.Fatalf("navigate %s: %s", u, nav.ErrorText)
	}
	r.WaitEvent(sessionID, "Page.loadEventFired")
}

// httpGet sends a GET (or other method) with optional header overrides and
// returns status and body.
func httpDo(t testing.TB, method, u string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatalf("request %s: %v", u, err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	c := &http.Client{Timeout: waitTimeout}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// discoveryTarget is one entry of /json/list or the answer of /json/new.
type discoveryTarget struct {
	ID                   string `json:"id"`
	Type                 string `json:"type"`
	URL                  string `json:"url"`
	WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
	DevtoolsFrontendURL  string `json:"devtoolsFrontendUrl"`
}

// sessionPrefix is the path of a cdp_url ("/session/<token>").
func sessionPrefix(t testing.TB, cdpURL string) (host, prefix string) {
	t.Helper()
	u, err := url.Parse(cdpURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		t.Fatalf("cdp_url %q is not an http URL: %v", cdpURL, err)
	}
	return u.Host, strings.TrimSuffix(u.Path, "/")
}
