package cdpproxy

import (
	"context"
	"encoding/json"
)

// Message is one CDP message (the payload of one WebSocket text frame) on its
// way through the proxy. Raw is the exact bytes received; a message that no
// interceptor replaces is forwarded as exactly these bytes.
//
// The header fields are parsed once by the proxy before the interceptors run.
//
// Lifetime: a *Message and its Raw bytes are only valid during the
// interceptor call that receives them. Raw lives in a pooled buffer that the
// proxy wipes as soon as the message has been written; an interceptor that
// keeps a message for later (to hold or reorder it) must copy Raw (and wipe
// its copy when done) and must not modify Raw in place.
type Message struct {
	Raw []byte

	// ID is the "id" member; HasID says whether it was present (commands and
	// responses have one, events do not).
	ID    int64
	HasID bool
	// Method is the "method" member: a command's or an event's method, empty
	// for responses.
	Method string
	// SessionID is the flattened CDP session the message belongs to, empty for
	// the browser (or page, on a page-level socket) session itself.
	SessionID string
	// ReplyTo is, for a response travelling to the client, the method of the
	// client command it answers (empty when unknown).
	ReplyTo string
	// Nested is true when the message was carried inside a legacy
	// Target.sendMessageToTarget command or Target.receivedMessageFromTarget
	// event; then SessionID is the nested target session.
	Nested bool
}

// Verdict tells the proxy what to do with a message after an interceptor ran.
type Verdict struct {
	// Kind is Forward, Replace, Reply or Drop.
	Kind VerdictKind
	// Data is the replacement message (Replace) or the message sent back to
	// the message's sender instead of forwarding (Reply). Ownership passes
	// to the proxy, which wipes it after writing.
	Data []byte
}

// VerdictKind enumerates what may happen to a message.
type VerdictKind int

const (
	// Forward passes the message (possibly replaced by an earlier
	// interceptor) on unchanged.
	Forward VerdictKind = iota
	// Replace forwards Data instead of the message; later interceptors see
	// the replacement.
	Replace
	// Reply does not forward the message; Data is written back to the side
	// that sent it (for a command: a CDP response or error to the client).
	Reply
	// Drop forwards nothing; the interceptor has taken care of the message
	// (for example it holds it and answered the client itself through
	// Conn.WriteClient).
	Drop
)

// Interceptor sees every message of one client connection, in order. One
// Interceptor value is created per client connection (see Factory), so it may
// keep per-connection state without locking: Command is only ever called from
// the connection's client-read goroutine, Event only from its browser-read
// goroutine.
type Interceptor interface {
	// Command is called for each message from the client to the browser.
	Command(ctx context.Context, c Conn, m *Message) (Verdict, error)
	// Event is called for each response or event from the browser to the
	// client.
	Event(ctx context.Context, c Conn, m *Message) (Verdict, error)
	// Close is called once when the connection ends.
	Close()
}

// Factory creates the interceptors of one client connection, in the order
// they run on commands (events run through the same order).
type Factory func(s *Session) []Interceptor

// Conn is what an interceptor may do on its client connection.
type Conn interface {
	// Session is the daemon session the connection belongs to.
	Session() *Session
	// Target returns what the proxy knows of a flattened CDP session id
	// ("" is the connection's own root session).
	Target(sessionID string) (TargetInfo, bool)
	// Call must not be used on the Conn handed to Event (the response would
	// have to be read by the goroutine that is blocked in Event): there it
	// returns ErrCallInEvent at once. Use the Conn from Command, or call it
	// from another goroutine with the Conn kept from Command.
	//
	// Call sends a command of the daemon's own to the browser on the given
	// CDP session and waits for its result. Its id is drawn from a range the
	// client cannot use, and its response is never shown to the client. The
	// command is written before Call returns from its write, so commands sent
	// by Call from Command are ordered before any later client command.
	Call(ctx context.Context, sessionID, method string, params any) (json.RawMessage, error)
	// WriteClient writes a message to the client, in order with the
	// responses and events the proxy forwards. The proxy wipes data after the
	// write.
	WriteClient(data []byte) error
}

// TargetInfo is what the proxy tracked of one flattened CDP session.
type TargetInfo struct {
	SessionID       string
	TargetID        string
	Type            string // "page", "iframe", "worker", ...
	URL             string
	Origin          string // scheme://host[:port] of URL, "" when opaque
	ParentSessionID string
	BrowserContext  string
}

// Session is one daemon session as the proxy sees it: where its browser is
// and what each connection's interceptors are.
type Session struct {
	// ID is the public session id (API); Token is the secret URL token.
	ID    string
	Token string
	// Tenant is the owning tenant's name (for logs and audit).
	Tenant string
	// Secrets lists the secret names granted to the session.
	Secrets []string
	// Upstream is the browser's DevTools HTTP base, e.g.
	// "http://127.0.0.1:39211".
	Upstream string
	// Interceptors builds the interceptor chain of each connection; nil
	// means none.
	Interceptors Factory
	// Values is whatever the daemon attaches (scrub index, vault handle);
	// the proxy never looks inside.
	Values any
}

// ErrorReply builds the CDP error response for a refused command:
// {"id":N,"error":{"code":-32000,"message":"..."},"sessionId":"..."}.
func ErrorReply(m *Message, message string) []byte {
	type cdpErr struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	type reply struct {
		ID        int64  `json:"id"`
		Error     cdpErr `json:"error"`
		SessionID string `json:"sessionId,omitempty"`
	}
	b, err := json.Marshal(reply{ID: m.ID, Error: cdpErr{Code: -32000, Message: message}, SessionID: m.SessionID})
	if err != nil { // cannot happen for these types
		return []byte(`{"error":{"code":-32000,"message":"cdpvault: internal error"}}`)
	}
	return b
}

// EmptyResult builds the CDP success response {"id":N,"result":{}} with the
// command's sessionId, used when an interceptor answers a command itself.
func EmptyResult(m *Message) []byte {
	type reply struct {
		ID        int64    `json:"id"`
		Result    struct{} `json:"result"`
		SessionID string   `json:"sessionId,omitempty"`
	}
	b, _ := json.Marshal(reply{ID: m.ID, SessionID: m.SessionID})
	return b
}
