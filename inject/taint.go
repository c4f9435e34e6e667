package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// Taints is the set of documents of one daemon session that hold a value
// cdpvault typed into them. While any of them lives, the session's clients
// may not run their own script in the browser or change the DOM (see
// gated): a prompt-injected agent that could still run script next to the
// value would read it back transformed past every encoding the scrubber
// knows (reversed, one character at a time) or fetch() it to another
// origin. The page's own script keeps running, and input (keyboard, mouse,
// touch) keeps working, so a client submits a login form with a key press
// or a click at coordinates.
//
// A document is tainted while it is the one shown in its frame: when the
// frame commits another document the taint sleeps, and it wakes again if
// the browser brings the typed-into document back (the back/forward cache
// restores it with the value, under its old loader) or revisits its history
// entry (form state restoration can refill a text field). A record is
// forgotten only when its target is gone or the session ends. The check is
// made live, when a gated command arrives: the frame tree and navigation
// history of the tainted target are asked through the connection that
// typed the value. When that is impossible (the connection is gone), the
// taint lasts while the target exists. Any doubt keeps the taint.
//
// One Taints is shared by every connection of a daemon session (a second
// WebSocket must not be a way round it); it is safe for concurrent use.
type Taints struct {
	mu      sync.Mutex
	recs    []*taint
	writing []*taint     // writes in progress: the value may be in a page already
	n       atomic.Int32 // len(recs) + len(writing), read without the lock on every command
}

// beginWrite marks a write of secret into a page of origin as in progress:
// until the returned func runs (after the write's taint is recorded), every
// gated command of the session is refused, so a second connection cannot
// read the value between the write and its taint.
func (t *Taints) beginWrite(secret, origin string) func() {
	if t == nil {
		return func() {}
	}
	w := &taint{secret: secret, origin: origin, ready: make(chan struct{})}
	close(w.ready)
	t.mu.Lock()
	t.writing = append(t.writing, w)
	t.n.Store(int32(len(t.recs) + len(t.writing)))
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		for i, have := range t.writing {
			if have == w {
				t.writing = append(t.writing[:i], t.writing[i+1:]...)
				break
			}
		}
		t.n.Store(int32(len(t.recs) + len(t.writing)))
	}
}

// NewTaints returns an empty set.
func NewTaints() *Taints { return &Taints{} }

type taint struct {
	conn   cdpproxy.Conn // the connection that typed the value
	sid    string        // CDP session of the frame's target on conn
	origin string
	secret string
	// ready is closed once the fields below are read from the browser,
	// right after the write.
	ready    chan struct{}
	targetID string
	frameID  string
	loaderID string // "" when it could not be read
	histSID  string // session whose navigation history holds entryID
	entryID  int64  // top-level history entry shown at the write, 0 when unknown
	// related are the pages linked to the typed-into one by opener (either
	// way) and of its origin at the write: their script can hold the
	// typed-into field itself, so the taint does not sleep while one is open.
	related []string
}

// Len reports how many documents are tainted (as last checked).
func (t *Taints) Len() int {
	if t == nil {
		return 0
	}
	return int(t.n.Load())
}

func (t *Taints) add(r *taint) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recs = append(t.recs, r)
	t.n.Store(int32(len(t.recs) + len(t.writing)))
}

// settled drops r when an earlier record names the same document (a value
// typed into one field key by key, or several fields of one form).
func (t *Taints) settled(r *taint) {
	if r.loaderID == "" {
		return
	}
	t.mu.Lock()
	dup := false
	for _, have := range t.recs {
		if have == r {
			break
		}
		select {
		case <-have.ready:
			dup = dup || have.targetID == r.targetID && have.frameID == r.frameID && have.loaderID == r.loaderID && have.entryID == r.entryID
		default:
		}
	}
	t.mu.Unlock()
	if dup {
		t.drop(r)
	}
}

func (t *Taints) drop(r *taint) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, have := range t.recs {
		if have == r {
			t.recs = append(t.recs[:i], t.recs[i+1:]...)
			t.n.Store(int32(len(t.recs) + len(t.writing)))
			return
		}
	}
}

// live returns a taint whose document is shown, checking each against the
// browser (one frame tree and history read per tainted target) and
// forgetting those whose target is gone. c is the connection of the
// command being gated (used when a taint's own connection is gone).
func (t *Taints) live(ctx context.Context, c cdpproxy.Conn) *taint {
	t.mu.Lock()
	if len(t.writing) > 0 {
		w := t.writing[0]
		t.mu.Unlock()
		return w
	}
	recs := append([]*taint(nil), t.recs...)
	t.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	views := map[viewKey]*targetView{}
	var targets *targetList
	for _, r := range recs {
		select {
		case <-r.ready:
		case <-cctx.Done():
			return r // not read in time: it holds
		}
		k := viewKey{conn: r.conn, sid: r.sid, hist: r.histSID}
		v := views[k]
		if v == nil {
			v = readView(cctx, r)
			views[k] = v
		}
		switch shown, known := v.shows(r); {
		case shown:
			return r
		case known && len(r.related) == 0:
			continue // asleep: another document is shown
		case known:
			// Another document is shown, but a page that could hold the
			// typed-into field (an opener or a popup of its origin) may
			// still be open.
			if targets == nil {
				targets = listTargets(cctx, c)
			}
			if !targets.ok {
				return r
			}
			for _, id := range r.related {
				if targets.ids[id] {
					return r
				}
			}
			continue
		}
		// The typing connection cannot tell: the taint lasts while its
		// target exists, asked on the command's connection.
		if targets == nil {
			targets = listTargets(cctx, c)
		}
		if !targets.ok || r.targetID == "" || targets.ids[r.targetID] {
			return r
		}
		t.drop(r)
	}
	return nil
}

// readTimeout bounds the browser reads of the taint (a frame stuck in a
// paused navigation can leave them unanswered). Running out keeps the taint:
// a document that cannot be read is treated as shown.
const readTimeout = 5 * time.Second

type viewKey struct {
	conn      cdpproxy.Conn
	sid, hist string
}

// targetView is what one tainted target shows now.
type targetView struct {
	tree    []byte // Page.getFrameTree result; nil when unreadable
	entryID int64  // current history entry; 0 when unread
}

// readView reads the frame tree and the current history entry of r's
// target at once.
func readView(ctx context.Context, r *taint) *targetView {
	v := &targetView{}
	var wg sync.WaitGroup
	if r.histSID != "" && r.entryID != 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.entryID = currentEntry(ctx, r.conn, r.histSID)
		}()
	}
	if raw, err := r.conn.Call(ctx, r.sid, "Page.getFrameTree", struct{}{}); err == nil {
		v.tree = raw
	}
	wg.Wait()
	return v
}

// shows reports whether the view shows r's document (its frame has r's
// loader, or r's history entry is current), and whether that is known.
func (v *targetView) shows(r *taint) (shown, known bool) {
	if v.tree == nil {
		return false, false
	}
	if loader, found := frameLoader(v.tree, r.frameID); found && loader == r.loaderID && r.loaderID != "" {
		return true, true
	}
	if r.entryID != 0 && v.entryID == r.entryID {
		return true, true
	}
	return false, r.loaderID != ""
}

func currentEntry(ctx context.Context, c cdpproxy.Conn, sid string) int64 {
	raw, err := c.Call(ctx, sid, "Page.getNavigationHistory", struct{}{})
	if err != nil {
		return 0
	}
	var h struct {
		CurrentIndex int `json:"currentIndex"`
		Entries      []struct {
			ID int64 `json:"id"`
		} `json:"entries"`
	}
	if json.Unmarshal(raw, &h) != nil || h.CurrentIndex < 0 || h.CurrentIndex >= len(h.Entries) {
		return 0
	}
	return h.Entries[h.CurrentIndex].ID
}

type targetList struct {
	ok  bool
	ids map[string]bool
}

func listTargets(ctx context.Context, c cdpproxy.Conn) *targetList {
	l := &targetList{ids: map[string]bool{}}
	infos, ok := getTargets(ctx, c)
	l.ok = ok
	for _, ti := range infos {
		l.ids[ti.TargetID] = true
	}
	return l
}

// targetInfo is what the taint reads of a Target.getTargets entry.
type targetInfo struct {
	TargetID string `json:"targetId"`
	Type     string `json:"type"`
	URL      string `json:"url"`
	OpenerID string `json:"openerId"`
}

// getTargets asks the browser for every target (the daemon's own call, so
// no client filter applies); false when it cannot tell.
func getTargets(ctx context.Context, c cdpproxy.Conn) ([]targetInfo, bool) {
	raw, err := c.Call(ctx, "", "Target.getTargets", struct{}{})
	if err != nil {
		return nil, false
	}
	var out struct {
		TargetInfos []targetInfo `json:"targetInfos"`
	}
	if json.Unmarshal(raw, &out) != nil {
		return nil, false
	}
	return out.TargetInfos, true
}

type frameTreeNode struct {
	Frame struct {
		ID       string `json:"id"`
		LoaderID string `json:"loaderId"`
	} `json:"frame"`
	ChildFrames []frameTreeNode `json:"childFrames"`
}

// frameLoader finds frame id (the root when id is "") in a
// Page.getFrameTree result and returns its loader.
func frameLoader(raw []byte, id string) (string, bool) {
	var out struct {
		FrameTree frameTreeNode `json:"frameTree"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", false
	}
	if id == "" {
		return out.FrameTree.Frame.LoaderID, out.FrameTree.Frame.ID != ""
	}
	var find func(n *frameTreeNode) (string, bool)
	find = func(n *frameTreeNode) (string, bool) {
		if n.Frame.ID == id {
			return n.Frame.LoaderID, true
		}
		for i := range n.ChildFrames {
			if l, ok := find(&n.ChildFrames[i]); ok {
				return l, true
			}
		}
		return "", false
	}
	return find(&out.FrameTree)
}

// taintAfterWrite records that the document of the frame at loc may now
// hold the values named in ms. Called after every write attempt that
// passed authorisation, whatever its result: a failed write may have typed
// part of the value. Called with in.mu held, from Command.
func (in *interceptor) taintAfterWrite(ctx context.Context, c cdpproxy.Conn, loc focusLoc, origin string, ms []match) {
	t := in.o.Taints
	if t == nil || len(ms) == 0 {
		return
	}
	r := &taint{conn: c, sid: loc.sid, frameID: loc.frameID, origin: origin, secret: ms[0].name, ready: make(chan struct{})}
	if ti, ok := c.Target(loc.sid); ok {
		r.targetID = ti.TargetID
	}
	// Which document the taint names is read right after the write, off
	// the client's path: the reads go out before the client has its answer
	// and commands on a session run in order, so they show the written
	// document (or, if the page navigated on its own in between, a later
	// one: stricter). The connection's next command waits for them
	// (awaitTaint), so none of the client's commands comes first; gated
	// commands of other connections wait for them in live.
	r.histSID = loc.sid
	if ti, ok := c.Target(loc.sid); ok && ti.Type != "page" && ti.ParentSessionID != "" {
		r.histSID = ti.ParentSessionID
	} else if ok && ti.Type != "page" {
		in.childMu.Lock()
		r.histSID = in.children[loc.sid].parent
		in.childMu.Unlock()
	}
	t.add(r)
	in.pending.Store(r)
	go func() {
		defer t.settled(r)
		defer close(r.ready)
		cctx, cancel := context.WithTimeout(in.baseCtx, readTimeout)
		defer cancel()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.entryID = currentEntry(cctx, c, r.histSID)
		}()
		if raw, err := c.Call(cctx, loc.sid, "Page.getFrameTree", struct{}{}); err == nil {
			if loader, ok := frameLoader(raw, loc.frameID); ok && loader != "" {
				r.loaderID = loader
			}
		}
		wg.Wait()
		r.related = relatedPages(cctx, c, r)
		if r.targetID == "" {
			if raw, err := c.Call(cctx, loc.sid, "Target.getTargetInfo", struct{}{}); err == nil {
				var out struct {
					TargetInfo struct {
						TargetID string `json:"targetId"`
					} `json:"targetInfo"`
				}
				if json.Unmarshal(raw, &out) == nil {
					r.targetID = out.TargetInfo.TargetID
				}
			}
		}
	}()
}

// awaitTaint waits until the reads of the connection's last taint are
// done, so that no client command reaches the browser before them.
func (in *interceptor) awaitTaint(ctx context.Context) {
	r := in.pending.Load()
	if r == nil {
		return
	}
	select {
	case <-r.ready:
	case <-ctx.Done():
	}
	in.pending.CompareAndSwap(r, nil)
}

// gateTainted refuses a command that would run the client's script or
// change the DOM while a document of the session holds a typed value, or
// that would plant script in a page whose typed-into document the browser
// could bring back. It returns nil when the command may go on.
func (in *interceptor) gateTainted(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message) *cdpproxy.Verdict {
	t := in.o.Taints
	if t == nil || t.Len() == 0 {
		return nil
	}
	ti, _ := c.Target(m.SessionID)
	if plantsScript(m.Method, m.Raw) {
		if r := t.recordedOn(ti.TargetID); r != nil {
			return in.refuseTainted(m, r, "; scripts for new documents are refused in a page that held a typed secret until the page closes")
		}
	}
	if !gated(m.Method, m.Raw, ti.TargetID) {
		return nil
	}
	r := t.live(ctx, c)
	if r == nil {
		return nil
	}
	return in.refuseTainted(m, r, "; script, DOM changes and reads of input values are refused until that document navigates or closes (submit with a key press or a mouse click)")
}

func (in *interceptor) refuseTainted(m *cdpproxy.Message, r *taint, why string) *cdpproxy.Verdict {
	in.o.Metrics.incTainted()
	in.o.Logger.Info("command refused on a tainted page", slog.String("method", m.Method), slog.String("secret", r.secret), slog.String("origin", r.origin))
	msg := "cdpvault: " + m.Method + " refused: secret " + r.secret + " was typed into a page of " + r.origin + why
	var v cdpproxy.Verdict
	switch m.Method {
	case "Runtime.evaluate", "Runtime.callFunctionOn", "Runtime.runScript", "Runtime.awaitPromise":
		// Playwright turns every protocol error of these into "Execution
		// context was destroyed" (and may retry); an exception reaches the
		// agent with the reason, in every client. Nothing ran.
		v = reply(exceptionReply(m, msg))
	default:
		v = reply(cdpproxy.ErrorReply(m, msg))
	}
	return &v
}

// recordedOn returns a record (shown or asleep) of the target, or of any
// target when targetID is unknown.
func (t *Taints) recordedOn(targetID string) *taint {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.recs {
		select {
		case <-r.ready:
		default:
			return r // not read yet: it may be this target
		}
		if targetID == "" || r.targetID == "" || r.targetID == targetID {
			return r
		}
	}
	return nil
}

// plantsScript reports whether a command leaves script of the client's
// making (or a cleared back/forward cache) for documents the page loads
// later. Refused in a page while any of its documents is recorded, asleep
// ones included: the browser can bring a typed-into document back (form
// state restoration refills a text field in a new document), and such a
// script would run in it. Playwright's empty utility-world script passes.
func plantsScript(method string, raw []byte) bool {
	switch method {
	case "Page.addScriptToEvaluateOnNewDocument", "Page.reload":
	default:
		return strings.HasPrefix(method, "Memory.") || method == "Page.setDocumentContent"
	}
	p, ok := strictParams(raw)
	if !ok {
		return true
	}
	key := "source"
	if method == "Page.reload" {
		key = "scriptToEvaluateOnLoad"
	}
	v, present := p[key]
	if !present {
		return false
	}
	var src string
	if json.Unmarshal(v, &src) != nil {
		return true
	}
	return src != ""
}

// gatedMethods run the client's script in a page, read objects script
// made or input values, or change the document: refused while a document
// holds a typed value.
var gatedMethods = map[string]bool{
	"Runtime.evaluate":                     true,
	"Runtime.callFunctionOn":               true,
	"Runtime.compileScript":                true,
	"Runtime.runScript":                    true,
	"Runtime.awaitPromise":                 true,
	"Runtime.getProperties":                true,
	"Runtime.queryObjects":                 true,
	"Runtime.globalLexicalScopeNames":      true,
	"Runtime.getExceptionDetails":          true,
	"DOM.setAttributeValue":                true,
	"DOM.setAttributesAsText":              true,
	"DOM.removeAttribute":                  true,
	"DOM.setOuterHTML":                     true,
	"DOM.setNodeValue":                     true,
	"DOM.setNodeName":                      true,
	"DOM.removeNode":                       true,
	"DOM.moveTo":                           true,
	"DOM.copyTo":                           true,
	"DOM.undo":                             true,
	"DOM.redo":                             true,
	"CSS.addRule":                          true,
	"CSS.createStyleSheet":                 true,
	"CSS.setStyleSheetText":                true,
	"CSS.setRuleSelector":                  true,
	"CSS.setKeyframeKey":                   true,
	"CSS.setStyleTexts":                    true,
	"CSS.setMediaText":                     true,
	"CSS.setContainerQueryText":            true,
	"CSS.setSupportsText":                  true,
	"CSS.setScopeText":                     true,
	"CSS.setPropertyRulePropertyName":      true,
	"CSS.setEffectivePropertyValueForNode": true,
	"Page.setDocumentContent":              true,
	"Fetch.fulfillRequest":                 true,
	"Network.continueInterceptedRequest":   true,
	// Snapshots and the accessibility tree show input values (and a
	// password's length), which one edited character takes past the
	// scrubber.
	"DOMSnapshot.captureSnapshot": true,
	"DOMSnapshot.getSnapshot":     true,
	// Style matching can test attribute values the page keeps in sync.
	"CSS.getMatchedStylesForNode": true,
	// Intercepted drags carry the dragged (selected) text.
	"Input.setInterceptDrags": true,
}

// gatedPrefixes: whole domains refused while a document holds a typed
// value. Debugger and breakpoints pause the page's own script with its
// values in reach; heap snapshots hold every string; the accessibility
// tree shows field values.
// Layout reads (geometry, computed style, fonts, layers, highlights, page
// metrics) are refused too: a page shaped before typing can make its
// layout depend on the value (:valid styles, field-sizing, fonts), so they
// would be an oracle; clicks use coordinates taken before typing.
var gatedPrefixes = []string{"Debugger.", "DOMDebugger.set", "EventBreakpoints.set", "HeapProfiler.", "Accessibility.",
	"CSS.", "LayerTree.", "Overlay.get", "Page.getLayoutMetrics"}

// debuggerAllowed are commands of the gated domains that cannot reveal
// anything.
var debuggerAllowed = map[string]bool{"Debugger.enable": true, "Debugger.disable": true, "Debugger.resume": true,
	"CSS.enable": true, "CSS.disable": true, "LayerTree.enable": true, "LayerTree.disable": true}

// domAllowed are the DOM commands a client may use while a document holds
// a typed value: focus, scrolling and handles. Every other
// DOM command reads the tree, and the tree holds an input's value (the text
// node in its user-agent shadow root, a value attribute the page keeps in
// sync, a contenteditable's text): one edited character, or an attribute
// selector used as an oracle, would take it past the scrubber.
var domAllowed = map[string]bool{
	"DOM.enable": true, "DOM.disable": true, "DOM.focus": true, "DOM.scrollIntoViewIfNeeded": true, "DOM.resolveNode": true,
	"DOM.discardSearchResults": true, "DOM.setFileInputFiles": true, "DOM.markUndoableState": true,
	"DOM.hideHighlight": true, "DOM.highlightNode": true, "DOM.highlightRect": true, "DOM.getFrameOwner": true,
	"DOM.setNodeStackTracesEnabled": true,
}

// gated reports whether the command method (with its raw message) is
// refused while a document holds a typed value: it runs script in a page,
// reads objects script made or input values, changes the document or its
// style, hands the page content of the client's making (a javascript:
// navigation, a script run at once in existing documents, a fulfilled or
// redirected request) or copies the selection. Parameters are read as
// Chrome reads them (exact, case-sensitive names); a params object with a
// name twice, or two names equal but for case, is refused. mainFrame is the
// command target's main frame ("" when unknown): navigating any other frame
// of a tainted page is refused too.
func gated(method string, raw []byte, mainFrame string) bool {
	if gatedMethods[method] {
		return true
	}
	for _, pre := range gatedPrefixes {
		if strings.HasPrefix(method, pre) {
			return !debuggerAllowed[method]
		}
	}
	if strings.HasPrefix(method, "DOM.") {
		return !domAllowed[method]
	}
	switch method {
	case "Page.navigate", "Page.addScriptToEvaluateOnNewDocument", "Fetch.continueRequest", methodKeyEvent:
	default:
		return false
	}
	p, ok := strictParams(raw)
	if !ok {
		return true
	}
	str := func(k string) (string, bool) {
		v, present := p[k]
		if !present {
			return "", true
		}
		var s string
		return s, json.Unmarshal(v, &s) == nil
	}
	switch method {
	case "Page.navigate":
		u, ok := str("url")
		frame, ok2 := str("frameId")
		if !ok || !ok2 || frame != "" && mainFrame != "" && frame != mainFrame {
			return true // another frame of the page: it could load a document that reaches the value
		}
		u = strings.ToLower(strings.TrimLeft(u, " \t\r\n\f\v\x00"))
		u = strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(u)
		return strings.HasPrefix(u, "javascript:")
	case "Page.addScriptToEvaluateOnNewDocument":
		v, present := p["runImmediately"]
		return present && string(bytes.TrimSpace(v)) != "false"
	case "Fetch.continueRequest": // a changed URL can hand the page another script
		_, present := p["url"]
		return present
	default:
		return clipboardKey(p)
	}
}

// strictParams returns the members of the message's params object by
// their exact names, or false when params is not one object or holds a
// name twice or two names that differ only by case (Go's decoder and
// Chrome's would then read different members).
func strictParams(raw []byte) (map[string]json.RawMessage, bool) {
	var params json.RawMessage
	n := 0
	if !walkObject(raw, func(key string, val json.RawMessage) bool {
		if strings.EqualFold(key, "params") {
			params = val
			n++
		}
		return true
	}) || n > 1 {
		return nil, false
	}
	out := map[string]json.RawMessage{}
	if n == 0 {
		return out, true
	}
	lower := map[string]bool{}
	ok := walkObject(params, func(key string, val json.RawMessage) bool {
		l := strings.ToLower(key)
		if lower[l] {
			return false
		}
		lower[l] = true
		out[key] = val
		return true
	})
	return out, ok
}

// clipboardKey reports whether a key event could copy or cut the
// selection: any editing command, any key with Ctrl or Meta held (Chrome
// copies on the key code alone, whatever key and code say), Shift+Delete,
// or the Copy and Cut keys. A typed value copied from a text field could be
// pasted into another origin's page once the taint sleeps.
func clipboardKey(p map[string]json.RawMessage) bool {
	var commands []string
	var key, code string
	var modifiers, vk, nvk int
	for k, dst := range map[string]any{"commands": &commands, "key": &key, "code": &code, "modifiers": &modifiers,
		"windowsVirtualKeyCode": &vk, "nativeVirtualKeyCode": &nvk} {
		if v, present := p[k]; present && json.Unmarshal(v, dst) != nil {
			return true
		}
	}
	if len(commands) > 0 || modifiers&(modCtrl|modMeta) != 0 {
		return true
	}
	switch key {
	case "Copy", "Cut":
		return true
	}
	const modShift, vkDelete = 8, 46
	return modifiers&modShift != 0 && (key == "Delete" || code == "Delete" || vk == vkDelete || nvk == vkDelete)
}

// exceptionReply answers a script command with a result that reports an
// exception with message msg, as Chrome does when the script throws.
func exceptionReply(m *cdpproxy.Message, msg string) []byte {
	type remoteObject struct {
		Type        string `json:"type"`
		Subtype     string `json:"subtype"`
		ClassName   string `json:"className"`
		Description string `json:"description"`
	}
	type details struct {
		ExceptionID  int          `json:"exceptionId"`
		Text         string       `json:"text"`
		LineNumber   int          `json:"lineNumber"`
		ColumnNumber int          `json:"columnNumber"`
		Exception    remoteObject `json:"exception"`
	}
	type result struct {
		Result           remoteObject `json:"result"`
		ExceptionDetails details      `json:"exceptionDetails"`
	}
	type response struct {
		ID        int64  `json:"id"`
		Result    result `json:"result"`
		SessionID string `json:"sessionId,omitempty"`
	}
	obj := remoteObject{Type: "object", Subtype: "error", ClassName: "Error", Description: "Error: " + msg}
	b, err := json.Marshal(response{ID: m.ID, SessionID: m.SessionID, Result: result{Result: obj,
		ExceptionDetails: details{ExceptionID: 1, Text: "Uncaught", Exception: obj}}})
	if err != nil {
		return cdpproxy.ErrorReply(m, msg)
	}
	return b
}

// editKeys move the caret or delete: with them (and any text) a client
// could change one character of a typed value, and the changed value
// passes the scrubber wherever the page shows or sends it.
var editKeys = map[string]bool{"Backspace": true, "Delete": true, "ArrowLeft": true, "ArrowRight": true, "ArrowUp": true,
	"ArrowDown": true, "Home": true, "End": true, "PageUp": true, "PageDown": true}

// editKeyCodes are the same keys' Windows virtual key codes (Chrome acts on
// the code when key is missing).
var editKeyCodes = map[int]bool{8: true, 46: true, 37: true, 38: true, 39: true, 40: true, 36: true, 35: true, 33: true, 34: true}

// isEdit reports whether an input command that goes to the page as sent
// would change text: any text but Enter and Tab, or a caret or delete key.
func isEdit(method string, raw []byte) bool {
	p, ok := strictParams(raw)
	if !ok {
		return true
	}
	var text, key, typ string
	var vk, nvk int
	for k, dst := range map[string]any{"text": &text, "key": &key, "type": &typ, "windowsVirtualKeyCode": &vk, "nativeVirtualKeyCode": &nvk} {
		if v, present := p[k]; present && json.Unmarshal(v, dst) != nil {
			return true
		}
	}
	switch method {
	case methodInsertText, methodIME:
		// Any text, and also none: an empty insertText commits a
		// composition, an empty composition with a replacement range
		// deletes characters.
		return true
	}
	if typ == "keyUp" {
		return false
	}
	code, _ := p["code"]
	switch text {
	case "":
	case "\r", "\n":
		// Enter, only as the Enter key (a char event or another key with
		// this text would type it into the middle of a value).
		return typ == "char" && key != "Enter" || typ != "char" && !(key == "Enter" || vk == 13) ||
			string(code) != "" && string(code) != `"Enter"` && string(code) != `"NumpadEnter"`
	case "\t":
		return typ == "char" || !(key == "Tab" || vk == 9) || string(code) != "" && string(code) != `"Tab"`
	default:
		return true
	}
	return editKeys[key] || editKeyCodes[vk] || editKeyCodes[nvk]
}

// refuseEdit refuses input that would edit text while a document of the
// session holds a typed value (placeholders themselves are typed by the
// sink; Enter, Tab and clicks pass).
func (in *interceptor) refuseEdit(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message) *cdpproxy.Verdict {
	t := in.o.Taints
	if t.Len() == 0 {
		return nil
	}
	edit := isEdit(m.Method, m.Raw)
	if !edit && !typesNewline(m) {
		return nil
	}
	r := t.live(ctx, c)
	if r == nil {
		return nil
	}
	if !edit {
		// Enter submits a form, but types a line break into a textarea or
		// an editable element (into the middle of a value, if the caret
		// was put there).
		if multi, err := in.focusMultiline(ctx, c, m.SessionID); err == nil && !multi {
			return nil
		}
	}
	return in.refuseTainted(m, r, "; typing other text or editing keys are refused until that document navigates or closes (type secrets last; submit with Enter or a mouse click)")
}

// typesNewline reports whether a key event carries Enter's text.
func typesNewline(m *cdpproxy.Message) bool {
	return m.Method == methodKeyEvent && (bytes.Contains(m.Raw, []byte(`\r`)) || bytes.Contains(m.Raw, []byte(`\n`)) ||
		bytes.Contains(m.Raw, []byte(`\u000`)))
}

// multilineFn reports whether the focused element takes line breaks.
var multilineFn = `function() { 'use strict'; const walk = ` + focusWalk + `; const r = walk();
  if (r.remote) return {origin: r.origin, remote: true};
  let el = r.win.document.activeElement;
  while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
  return {origin: r.origin, self: r.self, multiline: !!el && (el.tagName === 'TEXTAREA' || el.isContentEditable)}; }`

// focusMultiline finds the frame that owns focus (through out-of-process
// frames too) and asks whether its focused element takes line breaks.
func (in *interceptor) focusMultiline(ctx context.Context, c cdpproxy.Conn, sid string) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, loc, err := in.focusedOrigin(cctx, c, sid)
	if err != nil {
		return true, err
	}
	fb, _ := json.Marshal(multilineFn)
	res, err := in.callInWorld(cctx, c, loc.sid, loc.frameID, func(objectID string) []byte {
		ob, _ := json.Marshal(objectID)
		return fmt.Appendf(nil, `{"objectId":%s,"functionDeclaration":%s,"returnByValue":true,"silent":true}`, ob, fb)
	})
	if err != nil {
		return true, err
	}
	return res.Multiline || res.Remote, nil
}

// mayType reports whether held keystrokes may still be typed into the page
// of CDP session sid: not while a document holds a typed value (they were
// answered already; they are dropped and logged).
func (in *interceptor) mayType(ctx context.Context, c cdpproxy.Conn, sid string) bool {
	t := in.o.Taints
	if t.Len() == 0 {
		return true
	}
	r := t.live(ctx, c)
	if r == nil {
		return true
	}
	in.o.Metrics.incTainted()
	in.o.Logger.Info("held keys dropped on a tainted page", slog.String("secret", r.secret), slog.String("origin", r.origin))
	return false
}

// relatedPages lists the pages linked to r's page by opener (either way)
// whose origin is r's (or not yet known: about:blank inherits its
// opener's): their script can keep a handle on the typed-into field after
// its document is gone.
func relatedPages(ctx context.Context, c cdpproxy.Conn, r *taint) []string {
	infos, ok := getTargets(ctx, c)
	if !ok {
		return nil
	}
	opener := ""
	for _, ti := range infos {
		if ti.TargetID == r.targetID {
			opener = ti.OpenerID
		}
	}
	var ids []string
	for _, ti := range infos {
		if ti.TargetID == r.targetID || ti.Type != "page" || !(ti.OpenerID == r.targetID && r.targetID != "" || ti.TargetID == opener) {
			continue
		}
		if o := cdpproxy.OriginOf(ti.URL); o == r.origin || o == "" || o == "null" {
			ids = append(ids, ti.TargetID)
		}
	}
	return ids
}
