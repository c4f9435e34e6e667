package ctxguard

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

var drop = cdpproxy.Verdict{Kind: cdpproxy.Drop}

// Event implements cdpproxy.Interceptor. It hides everything of targets
// outside the session's browser contexts (see the package doc, "What the
// client sees") and learns the contexts created by the session and the
// contexts of targets.
func (ic *geoConn) Event(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message) (cdpproxy.Verdict, error) {
	if m.SessionID != "" {
		if !ic.sessionVisible(c, m.SessionID) {
			return drop, nil
		}
	} else if !ic.rootVisible(c) {
		return drop, nil
	}
	if m.Method == "" {
		if m.HasID {
			return ic.response(m)
		}
		return forward, nil
	}
	switch m.Method {
	case "Target.attachedToTarget":
		p := eventIDs(m.Raw)
		ic.g.learnTarget(p.targetID, p.bc)
		vis := ic.infoVisible(p)
		if p.sessionID != "" {
			if len(ic.sessions) >= maxTargets {
				clear(ic.sessions) // a cache: unknown sessions fall back to the tracker
			}
			ic.sessions[p.sessionID] = vis
		}
		if !vis {
			ic.release(ctx, m.SessionID, p.sessionID, p.waiting)
			return drop, nil
		}
		if !m.Nested {
			ic.startEmulation(ctx, p.sessionID, p.typ)
		}
	case "Target.detachedFromTarget":
		p := eventIDs(m.Raw)
		vis, known := ic.sessions[p.sessionID]
		delete(ic.sessions, p.sessionID)
		ic.forgetEmulation(p.sessionID)
		if !known {
			bc, ok := ic.g.targetContext(p.targetID)
			vis = ok && ic.g.ours(bc)
		}
		if !vis {
			return drop, nil
		}
	case "Target.targetCreated", "Target.targetInfoChanged":
		p := eventIDs(m.Raw)
		ic.g.learnTarget(p.targetID, p.bc)
		if !ic.infoVisible(p) {
			return drop, nil
		}
	case "Target.targetDestroyed", "Target.targetCrashed":
		p := eventIDs(m.Raw)
		bc, ok := ic.g.targetContext(p.targetID)
		if m.Method == "Target.targetDestroyed" {
			ic.g.dropTarget(p.targetID)
		}
		if !ok || !ic.g.ours(bc) {
			return drop, nil
		}
	case "Target.receivedMessageFromTarget":
		p := eventIDs(m.Raw)
		if p.sessionID == "" || !ic.sessionVisible(c, p.sessionID) {
			return drop, nil
		}
	}
	return forward, nil
}

// infoVisible tells whether a targetInfo may be shown: a target in one of
// the session's contexts, or the browser target itself.
func (ic *geoConn) infoVisible(p ids) bool {
	if p.bc == "" {
		return p.typ == "browser"
	}
	return ic.g.ours(p.bc)
}

// sessionVisible tells whether the target of CDP session sid lives in one
// of the session's contexts; unknown means no.
func (ic *geoConn) sessionVisible(c cdpproxy.Conn, sid string) bool {
	if v, ok := ic.sessions[sid]; ok {
		return v
	}
	ti, ok := c.Target(sid)
	if !ok || ti.Type == "browser" {
		return false
	}
	bc := ti.BrowserContext
	if bc == "" {
		bc, _ = ic.g.targetContext(ti.TargetID)
	}
	return ic.g.ours(bc)
}

// rootVisible tells whether the connection's own session may receive: a
// browser socket always, a page socket only for a page known to be in one
// of the session's contexts (its first command looked that up).
func (ic *geoConn) rootVisible(c cdpproxy.Conn) bool {
	root, ok := c.Target("")
	if !ok {
		return false
	}
	if root.Type == "browser" {
		return true
	}
	bc := root.BrowserContext
	if bc == "" {
		bc, _ = ic.g.targetContext(root.TargetID)
	}
	return ic.g.ours(bc)
}

// release lets go of a foreign target that auto-attach attached to this
// connection: the client never learns of it, so the daemon resumes it (if
// Chrome paused it for this client: waitForDebuggerOnStart) and detaches.
// Event may not Call, so this runs on its own goroutine with the Conn kept
// from Command; it ends with the connection.
func (ic *geoConn) release(ctx context.Context, parent, sid string, waiting bool) {
	if sid == "" {
		return
	}
	ic.mu.Lock()
	c := ic.cmdConn
	ic.mu.Unlock()
	if c == nil {
		return
	}
	go func() {
		cctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		defer cancel()
		if waiting {
			if _, err := c.Call(cctx, sid, "Runtime.runIfWaitingForDebugger", nil); err != nil {
				ic.g.log.Debug("context guard: resume foreign target", "err", err)
			}
		}
		if _, err := c.Call(cctx, parent, "Target.detachFromTarget", map[string]string{"sessionId": sid}); err != nil {
			ic.g.log.Debug("context guard: detach foreign target", "err", err)
		}
	}()
}

// response handles a response to a client command.
func (ic *geoConn) response(m *cdpproxy.Message) (cdpproxy.Verdict, error) {
	switch m.ReplyTo {
	case "Target.createBrowserContext":
		k := pendKey{m.SessionID, m.ID}
		ic.mu.Lock()
		_, mine := ic.creating[k]
		delete(ic.creating, k)
		ic.mu.Unlock()
		if !mine {
			return forward, nil
		}
		var r struct {
			Result struct {
				BrowserContextID string `json:"browserContextId"`
			} `json:"result"`
		}
		if json.Unmarshal(m.Raw, &r) == nil && r.Result.BrowserContextID != "" {
			ic.g.allow(r.Result.BrowserContextID)
		}
	case "Target.createTarget":
		k := pendKey{m.SessionID, m.ID}
		ic.mu.Lock()
		bc, mine := ic.targetsIn[k]
		delete(ic.targetsIn, k)
		ic.mu.Unlock()
		var r struct {
			Result struct {
				TargetID string `json:"targetId"`
			} `json:"result"`
		}
		if mine && json.Unmarshal(m.Raw, &r) == nil {
			ic.g.learnTarget(r.Result.TargetID, bc)
		}
	case "Target.getTargets":
		return ic.filterResult(m, "targetInfos", func(e []byte) bool {
			p := infoIDs(e)
			ic.g.learnTarget(p.targetID, p.bc)
			return ic.infoVisible(p)
		})
	case "Browser.getWindowForTarget":
		// passed only for an own target (or on an own page's session)
		if res, err := member(m.Raw, "result"); err == nil && res != nil {
			if id, err := member(res, "windowId"); err == nil {
				ic.g.learnWindow(string(id))
			}
		}
	case "Target.getBrowserContexts":
		return ic.filterResult(m, "browserContextIds", func(e []byte) bool {
			return ic.g.ours(jsonString(e))
		})
	case "Target.getTargetInfo":
		res, err := member(m.Raw, "result")
		if err != nil {
			return withheld(m), nil
		}
		if res == nil { // an error response
			return forward, nil
		}
		ti, err := member(res, "targetInfo")
		if err != nil || ti == nil {
			return withheld(m), nil
		}
		p := infoIDs(ti)
		ic.g.learnTarget(p.targetID, p.bc)
		if !ic.infoVisible(p) {
			return cdpproxy.Verdict{Kind: cdpproxy.Replace, Data: cdpproxy.ErrorReply(m, MsgForeignTarget)}, nil
		}
	}
	return forward, nil
}

func withheld(m *cdpproxy.Message) cdpproxy.Verdict {
	return cdpproxy.Verdict{Kind: cdpproxy.Replace, Data: cdpproxy.ErrorReply(m, MsgWithheld)}
}

// filterResult keeps only the elements of the array result.<key> for which
// keep is true; the rest of the response (id, sessionId) is kept byte for
// byte. A response it cannot read is replaced by an error (fail closed).
func (ic *geoConn) filterResult(m *cdpproxy.Message, key string, keep func(elem []byte) bool) (cdpproxy.Verdict, error) {
	rs, re, err := span(m.Raw, "result")
	if err != nil {
		return withheld(m), nil
	}
	if rs < 0 { // an error response
		return forward, nil
	}
	res := m.Raw[rs:re]
	as, ae, err := span(res, key)
	if err != nil || as < 0 {
		return withheld(m), nil
	}
	out, changed, err := filterArray(res[as:ae], keep)
	if err != nil {
		return withheld(m), nil
	}
	if !changed {
		return forward, nil
	}
	data := make([]byte, 0, len(m.Raw))
	data = append(data, m.Raw[:rs+as]...)
	data = append(data, out...)
	data = append(data, m.Raw[rs+ae:]...)
	return cdpproxy.Verdict{Kind: cdpproxy.Replace, Data: data}, nil
}

// filterArray returns the JSON array arr with only the elements keep
// accepts, and whether any was removed (if not, out is nil).
func filterArray(arr []byte, keep func(elem []byte) bool) (out []byte, changed bool, err error) {
	var kept [][]byte
	err = elements(arr, func(e []byte) error {
		if keep(e) {
			kept = append(kept, e)
		} else {
			changed = true
		}
		return nil
	})
	if err != nil || !changed {
		return nil, false, err
	}
	n := 2
	for _, e := range kept {
		n += len(e) + 1
	}
	out = make([]byte, 0, n)
	out = append(out, '[')
	for i, e := range kept {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, e...)
	}
	return append(out, ']'), true, nil
}

// elements calls fn with each element of the JSON array arr.
func elements(arr []byte, fn func(elem []byte) error) error {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return errors.New("not a JSON array")
	}
	i = skipWS(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return trailing(arr, i+1)
	}
	for {
		e, err := skipValue(arr, i)
		if err != nil {
			return err
		}
		if err := fn(arr[i:e]); err != nil {
			return err
		}
		i = skipWS(arr, e)
		if i >= len(arr) {
			return errors.New("unterminated JSON array")
		}
		if arr[i] == ']' {
			return trailing(arr, i+1)
		}
		if arr[i] != ',' {
			return errors.New("malformed JSON array")
		}
		i = skipWS(arr, i+1)
	}
}

func trailing(b []byte, i int) error {
	if skipWS(b, i) != len(b) {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

// span returns the offsets in obj of the value of member key (-1, -1 when
// absent); a repeated key is an error.
func span(obj []byte, key string) (int, int, error) {
	s, e := -1, -1
	err := members(obj, func(k string, v []byte) error {
		if k != key {
			return nil
		}
		if s >= 0 {
			return errDuplicate
		}
		s = cap(obj) - cap(v) // v is obj[s:e]
		e = s + len(v)
		return nil
	})
	if err != nil {
		return -1, -1, err
	}
	return s, e, nil
}

// member returns the raw value of member key of obj (nil when absent).
func member(obj []byte, key string) ([]byte, error) {
	s, e, err := span(obj, key)
	if err != nil || s < 0 {
		return nil, err
	}
	return obj[s:e], nil
}

// ids are the identifiers the filter reads from a Target event or a
// targetInfo (never URLs or titles: they may hold secret values).
type ids struct {
	sessionID, targetID, typ, bc string
	waiting                      bool
}

// eventIDs reads params.sessionId, params.targetId,
// params.waitingForDebugger and params.targetInfo's ids of an event.
func eventIDs(raw []byte) ids {
	var p ids
	params, err := member(raw, "params")
	if err != nil || params == nil {
		return p
	}
	_ = members(params, func(k string, v []byte) error {
		switch k {
		case "sessionId":
			p.sessionID = jsonString(v)
		case "targetId":
			p.targetID = jsonString(v)
		case "waitingForDebugger":
			p.waiting = string(v) == "true"
		case "targetInfo":
			ti := infoIDs(v)
			p.targetID, p.typ, p.bc = ti.targetID, ti.typ, ti.bc
		}
		return nil
	})
	return p
}

// infoIDs reads the ids of a targetInfo object.
func infoIDs(ti []byte) ids {
	var p ids
	_ = members(ti, func(k string, v []byte) error {
		switch k {
		case "targetId":
			p.targetID = jsonString(v)
		case "type":
			p.typ = jsonString(v)
		case "browserContextId":
			p.bc = jsonString(v)
		}
		return nil
	})
	return p
}

// FilterDiscovery removes from a discovery response of the session the
// entries of targets not known to be in one of its browser contexts (fail
// closed: a target the session never saw is removed). sub is the request
// path after the session prefix; the daemon's cdpproxy Options.Discovery
// hook does not know it and passes "", in which case the body decides: a
// JSON array is a target list (/json, /json/list). Other bodies
// (/json/version, /json/protocol, /json/activate, /json/close answers) are
// returned as they are. The result is body itself when nothing was removed,
// else a new buffer (the caller wipes body).
func (g *Guard) FilterDiscovery(sub string, body []byte) ([]byte, error) {
	list := false
	switch strings.TrimSuffix(sub, "/") {
	case "/json", "/json/list":
		list = true
	case "":
		i := skipWS(body, 0)
		list = i < len(body) && body[i] == '['
	}
	if !list {
		return body, nil
	}
	out, changed, err := filterArray(body, func(e []byte) bool {
		id, err := member(e, "id")
		if err != nil || id == nil {
			return false
		}
		bc, ok := g.targetContext(jsonString(id))
		return ok && g.ours(bc)
	})
	if err != nil {
		return nil, errors.New("filter discovery: target list is not a JSON array of objects")
	}
	if !changed {
		return body, nil
	}
	return out, nil
}
