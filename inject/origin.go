package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// focusWalk runs in an isolated world (Page.createIsolatedWorld) of a
// frame, so nothing the page does to getters in its own world
// (activeElement, hasFocus, prototypes) is seen. It walks focus down
// through the same-origin frames it can enter (iframes in open shadow roots
// through activeElement, in closed ones through hasFocus of every child
// frame) and reports the frame owning the focused element, or remote=true
// when focus sits on a frame owner it cannot enter: a cross-origin frame,
// in this process (then every frame of the target is asked) or out of
// process (its own target, asked through its session).
const focusWalk = `function walk() {
  'use strict';
  let w = window, depth = 0, remote = false;
  for (;;) {
    const d = w.document;
    let el = d.activeElement;
    while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
    let next = null;
    remote = false;
    if (el && (el.tagName === 'IFRAME' || el.tagName === 'FRAME' || el.tagName === 'OBJECT' || el.tagName === 'EMBED')) {
      let cd = null;
      try { cd = el.contentDocument; } catch (e) {}
      if (cd && cd.defaultView) next = cd.defaultView; else remote = true;
    }
    if (!next) {
      for (let i = 0; i < w.frames.length; i++) {
        let cd = null;
        try { cd = w.frames[i].document; } catch (e) {}
        if (cd && cd.hasFocus()) { next = w.frames[i]; remote = false; break; }
      }
    }
    if (next && depth < 64) { w = next; depth++; continue; }
    // inert: the focused element takes no text. It may stand for a frame
    // the walk cannot see (an iframe in a closed shadow root is in neither
    // activeElement nor window.frames), where key events and
    // Input.insertText would go: nothing is typed then.
    const inert = !(el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.isContentEditable));
    return {win: w, origin: w.location.origin, remote: remote, depth: depth, focus: document.hasFocus(), self: window.location.origin, inert: inert};
  }
}`

// checkFn reports where focus is. writeFn does the check again and, in the
// same JavaScript task (so focus cannot move in between), types text into
// the focused element with execCommand('insertText') when the focused
// frame's origin is one of origins; that fires beforeinput and input like
// Input.insertText. Both are strict functions: a stale handle can never
// hand the arguments to page code through Function.caller/arguments.
var (
	checkFn = `function() { 'use strict'; const walk = ` + focusWalk + `; const r = walk();
  return {origin: r.origin, remote: r.remote, depth: r.depth, focus: r.focus, self: r.self, inert: r.inert}; }`
	writeFn = `function(origins, text, strict, posts) { 'use strict'; const walk = ` + focusWalk + `; const check = ` + fieldCheck + `;
  const r = walk();
  const out = {origin: r.origin, remote: r.remote, depth: r.depth, focus: r.focus, self: r.self, inert: r.inert, inserted: false, denied: false};
  if (r.remote) return out;
  const o = r.origin;
  if (origins.indexOf('*') < 0 && (o === 'null' || o === '' || origins.indexOf(o) < 0)) { out.denied = true; return out; }
  if (r.inert) return out;
  const f = check(r.win, text.length, strict, posts, /[^\x00-\x7f]/.test(text));
  out.constrained = f.constrained; out.filled = f.filled; out.elsewhere = f.elsewhere; out.method = f.method;
  if (f.constrained || f.filled || f.elsewhere || f.method) return out;
  out.inserted = r.win.document.execCommand('insertText', false, text) === true;
  return out; }`
	// fieldFn runs the field check alone, before a value is typed key by
	// key (len is its length in UTF-16 units).
	fieldFn = `function(len, strict, posts, wide) { 'use strict'; const walk = ` + focusWalk + `; const check = ` + fieldCheck + `;
  const r = walk();
  const out = {origin: r.origin, remote: r.remote, depth: r.depth, focus: r.focus, self: r.self, inert: r.inert};
  if (r.remote || r.inert) return out;
  const f = check(r.win, len, strict, posts, wide);
  out.constrained = f.constrained; out.filled = f.filled; out.elsewhere = f.elsewhere; out.method = f.method;
  return out; }`
)

// fieldCheck inspects the focused element before a value is written: a
// field whose validity or length limit depends on the value (pattern,
// minlength, min, max, step, a maxlength shorter than the text) would
// turn the value into bits a client can read back through :valid styles,
// layout or a truncated submission, so it is "constrained"; on a page that
// already holds a typed value (strict), a field that holds text that is not
// all selected is "filled" (a second placeholder typed into the middle of
// a value would split it around its scrubbed copy). A field whose form
// posts, or has a submit button that posts, to an origin not in posts (the
// secrets' origins; null: any) is "elsewhere": a form action changed before
// typing would send the value in clear to another site. A value with
// non-ASCII characters (wide) is "constrained" when the page or the form
// encodes submissions in another charset than UTF-8: its percent-encoding
// there is a form the scrubber does not know. A form (or submit button)
// that submits with GET or as a dialog is "method": the value would be in
// the next page's URL, where script runs again.
const fieldCheck = `function(win, len, strict, posts, wide) {
  let el = win.document.activeElement;
  while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
  const out = {constrained: false, filled: false, elsewhere: false, method: false};
  if (!el) return out;
  // Every button and input of the document that belongs to the field's
  // form: form.elements leaves out <input type=image>.
  const submitters = el.form ? Array.prototype.filter.call(win.document.querySelectorAll('button,input'), (s) => s.form === el.form) : [];
  if (posts && el.form) {
    const ok = (u) => { try { return posts.indexOf(new URL(u, win.document.baseURI).origin) >= 0; } catch (e) { return false; } };
    if (!ok(el.form.action)) out.elsewhere = true;
    for (const s of submitters) {
      if (s.hasAttribute('formaction') && !ok(s.formAction)) out.elsewhere = true;
    }
  }
  if (el.form) {
    if (el.form.method !== 'post') out.method = true;
    for (const s of submitters) {
      if (s.hasAttribute('formmethod') && s.formMethod !== 'post') out.method = true;
    }
  }
  if (wide) {
    const utf8 = (c) => c === 'utf-8' || c === 'utf8' || c === 'unicode-1-1-utf-8';
    const cs = ((el.form && el.form.acceptCharset) || '').trim().toLowerCase();
    if (!utf8(win.document.characterSet.toLowerCase()) || (cs && !cs.split(/[\s,]+/).filter(Boolean).every(utf8))) out.constrained = true;
  }
  if (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA') {
    if (el.getAttribute('pattern') || el.minLength > 0 || el.hasAttribute('min') || el.hasAttribute('max') || el.hasAttribute('step')) out.constrained = true;
    const cur = el.value.length;
    let ss = null, se = null;
    try { ss = el.selectionStart; se = el.selectionEnd; } catch (e) {}
    const sel = (ss === null || se === null) ? 0 : se - ss;
    if (el.maxLength >= 0 && cur - sel + len > el.maxLength) out.constrained = true;
    if (strict && cur > 0 && sel !== cur) out.filled = true;
  } else if (strict && el.isContentEditable) {
    const t = el.textContent.length;
    if (t > 0 && String(win.getSelection()).length !== t) out.filled = true;
  }
  return out;
}`

type focusResult struct {
	Origin string `json:"origin"`
	// Self is the origin of the document the world belongs to (where the
	// walk started).
	Self     string `json:"self"`
	Remote   bool   `json:"remote"`
	Depth    int    `json:"depth"`
	Focus    bool   `json:"focus"`
	Inserted bool   `json:"inserted"`
	Denied   bool   `json:"denied"`
	// Constrained: the field's validity or length depends on the value;
	// Filled: it holds text on a page that already holds a typed value.
	// Nothing was written.
	Constrained bool `json:"constrained"`
	Filled      bool `json:"filled"`
	// Elsewhere: the field's form (or a submit button of it) posts to an
	// origin the secret is not allowed on. Nothing was written.
	Elsewhere bool `json:"elsewhere"`
	// Method: the field's form (or a submit button of it) submits with GET
	// or as a dialog: the value would land in the next page's URL, in a
	// document no taint covers. Nothing was written.
	Method bool `json:"method"`
	// Multiline: the focused element takes line breaks (multilineFn).
	Multiline bool `json:"multiline"`
	// Inert: the focused element takes no text (not an input, textarea or
	// editable element): focus may be in a frame the walk cannot see.
	// Nothing is typed.
	Inert bool `json:"inert"`

	// handle is the world handle the call ran on (see focusLoc).
	handle string
}

// focusLoc is the frame whose walk found the focused element: a CDP
// session and a frame of its target ("" for the target's main frame).
type focusLoc struct {
	sid, frameID string
	// handle: the world the check ran in; the write runs there or nowhere.
	handle string
}

var errFocusUnverified = errors.New("focus is in a cross-origin frame that cannot be verified")

// errWorldGone: the world a write was to run in is no longer cached (its
// document went away after the check).
var errWorldGone = errors.New("the checked document went away before the write")

// focusedOrigin returns the origin of the frame that owns the focused
// element of the page behind CDP session sid, determined live, and where
// the walk that found it ran. It fails closed: any doubt is an error.
func (in *interceptor) focusedOrigin(ctx context.Context, c cdpproxy.Conn, sid string) (string, focusLoc, error) {
	return in.focusedOriginDepth(ctx, c, sid, 0)
}

func (in *interceptor) focusedOriginDepth(ctx context.Context, c cdpproxy.Conn, sid string, level int) (string, focusLoc, error) {
	if level > 8 {
		return "", focusLoc{}, errFocusUnverified
	}
	res, err := in.evalFocus(ctx, c, sid, "")
	if err != nil {
		return "", focusLoc{}, err
	}
	// Out-of-process iframes the client attached: the one whose document
	// has focus holds the focused element (also catches frames hidden in
	// closed shadow roots).
	var focused []string
	for _, k := range in.childSessions(sid) {
		r, err := in.evalFocus(ctx, c, k, "")
		if err != nil {
			continue // a detaching frame; if it held focus we fail below
		}
		if r.Focus {
			focused = append(focused, k)
		}
	}
	switch {
	case len(focused) == 1:
		return in.focusedOriginDepth(ctx, c, focused[0], level+1)
	case len(focused) > 1:
		return "", focusLoc{}, errFocusUnverified
	case res.Remote:
		// Focus sits on a frame this world could not enter: a cross-origin
		// frame in the same process. Ask every frame of the target.
		return in.focusedSubframe(ctx, c, sid)
	}
	if res.Depth == 0 {
		// Cross-check with what the proxy tracked of the target.
		if ti, ok := c.Target(sid); ok && ti.Origin != "" && res.Origin != "" && ti.Origin != res.Origin {
			return "", focusLoc{}, fmt.Errorf("page origin %s does not match the tracked target origin", res.Origin)
		}
	}
	return res.Origin, focusLoc{sid: sid, handle: res.handle}, nil
}

type frameNode struct {
	Frame struct {
		ID string `json:"id"`
	} `json:"frame"`
	ChildFrames []frameNode `json:"childFrames"`
}

// focusedSubframe runs the focus walk in an isolated world of every
// in-process subframe of the target (Page.getFrameTree) and returns the
// origin of the deepest frame whose document has focus. Fails closed if
// none has, or if focus goes on into a frame nobody can enter.
func (in *interceptor) focusedSubframe(ctx context.Context, c cdpproxy.Conn, sid string) (string, focusLoc, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	raw, err := c.Call(cctx, sid, "Page.getFrameTree", struct{}{})
	if err != nil {
		return "", focusLoc{}, fmt.Errorf("frame tree: %w", err)
	}
	var ft struct {
		FrameTree frameNode `json:"frameTree"`
	}
	if err := json.Unmarshal(raw, &ft); err != nil {
		return "", focusLoc{}, errors.New("frame tree: undecodable")
	}
	var best *focusResult
	bestFrame := ""
	bestDepth := -1
	var walk func(n frameNode, depth int) error
	walk = func(n frameNode, depth int) error {
		if depth > 0 {
			r, err := in.evalFocus(ctx, c, sid, n.Frame.ID)
			if err != nil {
				return err
			}
			if !r.Focus {
				return nil // focus is not in this subtree
			}
			if depth > bestDepth {
				best, bestDepth, bestFrame = &r, depth, n.Frame.ID
			}
		}
		if depth > 64 {
			return errFocusUnverified
		}
		for _, ch := range n.ChildFrames {
			if err := walk(ch, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(ft.FrameTree, 0); err != nil {
		return "", focusLoc{}, err
	}
	if best == nil || best.Remote {
		return "", focusLoc{}, errFocusUnverified
	}
	return best.Origin, focusLoc{sid: sid, frameID: bestFrame, handle: best.handle}, nil
}

func (in *interceptor) childSessions(sid string) []string {
	in.childMu.Lock()
	defer in.childMu.Unlock()
	var out []string
	for k, ch := range in.children {
		if ch.parent == sid {
			out = append(out, k)
		}
	}
	return out
}

// evalFocus runs checkFn in the interceptor's isolated world of a frame of
// the session's target: frameID, or the main frame when "".
func (in *interceptor) evalFocus(ctx context.Context, c cdpproxy.Conn, sid, frameID string) (focusResult, error) {
	return in.callInWorld(ctx, c, sid, frameID, func(objectID string) []byte {
		b, _ := json.Marshal(map[string]any{"objectId": objectID, "functionDeclaration": checkFn,
			"returnByValue": true, "silent": true})
		return b
	})
}

// callInWorld calls Runtime.callFunctionOn on the global object of the
// check's isolated world in a frame, with params built by build (which the
// caller's closure may fill with a value: the buffer is wiped after each
// Call). The world's handle is a remote object id, which names one object
// in one context of one renderer and can never resolve to another context
// (unlike a context id, which a new renderer process reuses), so the
// function runs in our world or not at all. The handle is cached while its
// document lives (creating a world costs a round trip or two); a failure
// with a cached handle retries once with a fresh world.
func (in *interceptor) callInWorld(ctx context.Context, c cdpproxy.Conn, sid, frameID string, build func(objectID string) []byte) (focusResult, error) {
	return in.callWorld(ctx, c, sid, frameID, build, "")
}

// callWorld is callInWorld; a write passes the handle its check ran on
// (focusLoc.handle) and runs there, once, while it is still the cached one,
// or not at all: a value never goes to a world in a document the check did
// not see (after a navigation the cache may already hold a world in the
// next document, readied by prepareWorld).
func (in *interceptor) callWorld(ctx context.Context, c cdpproxy.Conn, sid, frameID string, build func(objectID string) []byte, only string) (focusResult, error) {
	write := only != ""
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	for attempt := 0; attempt < 2; attempt++ {
		var objectID string
		cached := true
		if write {
			in.cacheMu.Lock()
			w, ok := in.worlds[worldKey(sid, frameID)]
			in.cacheMu.Unlock()
			if !ok || w.handle != only {
				return focusResult{}, errWorldGone
			}
			objectID = only
		} else {
			var err error
			if objectID, cached, err = in.worldHandle(cctx, c, sid, frameID, attempt > 0); err != nil {
				return focusResult{}, err
			}
		}
		params := build(objectID)
		raw, err := c.Call(cctx, sid, "Runtime.callFunctionOn", json.RawMessage(params))
		wipe(params)
		if err != nil {
			in.forgetWorld(sid, frameID)
			if cached && !write && cctx.Err() == nil {
				continue // the document went away: new world, once
			}
			return focusResult{}, fmt.Errorf("focus check: %w", err)
		}
		var out struct {
			Result struct {
				Value *focusResult `json:"value"`
			} `json:"result"`
			ExceptionDetails json.RawMessage `json:"exceptionDetails"`
		}
		if err := json.Unmarshal(raw, &out); err != nil || out.Result.Value == nil || len(out.ExceptionDetails) > 0 {
			return focusResult{}, errors.New("focus check: no result")
		}
		in.learnOrigin(sid, frameID, objectID, out.Result.Value.Self)
		res := *out.Result.Value
		res.handle = objectID
		return res, nil
	}
	return focusResult{}, errors.New("focus check: no usable isolated world")
}

func worldKey(sid, frameID string) string { return sid + "\x00" + frameID }

// worldRef is a cached handle on the check's isolated world in one document,
// and that document's origin once a call in the world has reported it (a
// document's origin never changes, and the handle never reaches another
// document).
type worldRef struct {
	handle string
	origin string
}

// learnOrigin notes the origin of the document behind handle, if it is
// still the cached one.
func (in *interceptor) learnOrigin(sid, frameID, handle, origin string) {
	if origin == "" {
		return
	}
	key := worldKey(sid, frameID)
	in.cacheMu.Lock()
	if w, ok := in.worlds[key]; ok && w.handle == handle {
		w.origin = origin
		in.worlds[key] = w
	}
	in.cacheMu.Unlock()
}

// prepareWorld readies the check's world in a page's new main document
// whose origin one of the session's secrets allows (a login page): it runs
// the focus check there in the background, so the first write into the
// document needs neither the world's creation nor the check (see
// presumedOrigin). m is a Runtime.executionContextCreated event.
func (in *interceptor) prepareWorld(c cdpproxy.Conn, m *cdpproxy.Message) {
	l, ok := in.o.Vault.(Lister)
	if !ok || len(in.granted) == 0 {
		return
	}
	var ev struct {
		Params struct {
			Context struct {
				Origin  string `json:"origin"`
				AuxData struct {
					IsDefault bool   `json:"isDefault"`
					FrameID   string `json:"frameId"`
				} `json:"auxData"`
			} `json:"context"`
		} `json:"params"`
	}
	if json.Unmarshal(m.Raw, &ev) != nil || !ev.Params.Context.AuxData.IsDefault {
		return
	}
	sid, origin := m.SessionID, ev.Params.Context.Origin
	ti, ok := c.Target(sid)
	if !ok || ti.Type != "page" || ev.Params.Context.AuxData.FrameID != ti.TargetID ||
		!(strings.HasPrefix(origin, "https://") || strings.HasPrefix(origin, "http://")) {
		return
	}
	in.cacheMu.Lock()
	busy := in.preparing[sid]
	in.preparing[sid] = true
	in.cacheMu.Unlock()
	if busy {
		return
	}
	c = cdpproxy.Caller(c) // Event's own Conn refuses Call
	in.prep.Add(1)
	go func() {
		defer in.prep.Done()
		defer func() {
			in.cacheMu.Lock()
			delete(in.preparing, sid)
			in.cacheMu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(in.baseCtx, callTimeout)
		defer cancel()
		for name := range in.granted {
			if origins, _, err := l.Origins(ctx, name); err == nil && originAllowed(origins, origin) {
				_, _ = in.evalFocus(ctx, c, sid, "")
				return
			}
		}
	}()
}

// presumedOrigin is the world (handle and origin) of the main document of the target behind
// CDP session sid as a call in the check's world reported it, when that
// world is still cached and the target has no out-of-process frames the
// client attached (focus in one of those is only found by asking it); ""
// otherwise. A write may presume the focused element is in that document:
// writeFn verifies it in the same task as the write and writes nothing
// when it is not so (focus in another frame), and then the full check runs.
func (in *interceptor) presumedOrigin(c cdpproxy.Conn, sid string) worldRef {
	if len(in.childSessions(sid)) > 0 {
		return worldRef{}
	}
	in.cacheMu.Lock()
	w, ok := in.worlds[worldKey(sid, "")]
	in.cacheMu.Unlock()
	if !ok || w.origin == "" || w.origin == "null" {
		return worldRef{}
	}
	if ti, ok := c.Target(sid); ok && ti.Origin != "" && ti.Origin != w.origin {
		return worldRef{}
	}
	return w
}

func (in *interceptor) forgetWorld(sid, frameID string) {
	in.cacheMu.Lock()
	delete(in.worlds, worldKey(sid, frameID))
	in.cacheMu.Unlock()
}

// worldHandle returns the remote object id of the global object of the
// interceptor's isolated world in the frame (cached unless fresh).
func (in *interceptor) worldHandle(ctx context.Context, c cdpproxy.Conn, sid, frameID string, fresh bool) (string, bool, error) {
	key := worldKey(sid, frameID)
	if !fresh {
		in.cacheMu.Lock()
		w, ok := in.worlds[key]
		in.cacheMu.Unlock()
		if ok {
			return w.handle, true, nil
		}
	}
	target := frameID
	fromTarget := false
	if target == "" {
		if ti, ok := c.Target(sid); ok && (ti.Type == "page" || ti.Type == "iframe") {
			target = ti.TargetID // a page's or iframe target's main frame id is its target id
		} else {
			in.childMu.Lock()
			target = in.children[sid].targetID
			in.childMu.Unlock()
		}
		fromTarget = target != ""
	}
	var ctxID int64
	var err error
	if target != "" {
		ctxID, err = in.createWorld(ctx, c, sid, target)
	}
	if target == "" || (err != nil && fromTarget) {
		if target, err = mainFrameID(ctx, c, sid); err != nil {
			return "", false, err
		}
		ctxID, err = in.createWorld(ctx, c, sid, target)
	}
	if err != nil {
		return "", false, err
	}
	in.reserve(c, sid, ctxID)
	raw, err := c.Call(ctx, sid, "Runtime.evaluate", map[string]any{"expression": "globalThis", "contextId": ctxID, "silent": true})
	if err != nil {
		return "", false, fmt.Errorf("isolated world: %w", err)
	}
	var out struct {
		Result struct {
			ObjectID string `json:"objectId"`
		} `json:"result"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Result.ObjectID == "" {
		return "", false, errors.New("isolated world: no handle")
	}
	in.cacheMu.Lock()
	if len(in.worlds) > 256 {
		clear(in.worlds)
	}
	in.worlds[key] = worldRef{handle: out.Result.ObjectID}
	in.cacheMu.Unlock()
	return out.Result.ObjectID, false, nil
}

func mainFrameID(ctx context.Context, c cdpproxy.Conn, sid string) (string, error) {
	raw, err := c.Call(ctx, sid, "Page.getFrameTree", struct{}{})
	if err != nil {
		return "", fmt.Errorf("frame tree: %w", err)
	}
	var ft struct {
		FrameTree struct {
			Frame struct {
				ID string `json:"id"`
			} `json:"frame"`
		} `json:"frameTree"`
	}
	if err := json.Unmarshal(raw, &ft); err != nil || ft.FrameTree.Frame.ID == "" {
		return "", errors.New("frame tree: no main frame")
	}
	return ft.FrameTree.Frame.ID, nil
}

func (in *interceptor) createWorld(ctx context.Context, c cdpproxy.Conn, sid, frameID string) (int64, error) {
	raw, err := c.Call(ctx, sid, "Page.createIsolatedWorld", map[string]any{
		"frameId":   frameID,
		"worldName": in.world,
	})
	if err != nil {
		return 0, fmt.Errorf("isolated world: %w", err)
	}
	var w struct {
		ID int64 `json:"executionContextId"`
	}
	if err := json.Unmarshal(raw, &w); err != nil || w.ID == 0 {
		return 0, errors.New("isolated world: no context")
	}
	return w.ID, nil
}

// The isolated world of the check is reused (creating one costs ~2 ms), so
// a client must not be able to run code in it: its creation event is
// dropped (Event) and its name is random, and commands naming one of its
// execution context ids are refused. The registry is shared by every
// connection of one daemon session, since a client may open several.

type reservedKey struct {
	sess   *cdpproxy.Session
	target string
	id     int64
}

var reserved = struct {
	sync.Mutex
	m      map[reservedKey]int
	bySess map[*cdpproxy.Session]int
}{m: map[reservedKey]int{}, bySess: map[*cdpproxy.Session]int{}}

func targetKey(c cdpproxy.Conn, sid string) string {
	if ti, ok := c.Target(sid); ok && ti.TargetID != "" {
		return ti.TargetID
	}
	return "session:" + sid
}

func (in *interceptor) reserve(c cdpproxy.Conn, sid string, id int64) {
	k := reservedKey{sess: c.Session(), target: targetKey(c, sid), id: id}
	in.resMu.Lock()
	defer in.resMu.Unlock()
	for _, have := range in.resKeys {
		if have == k {
			return
		}
	}
	in.resKeys = append(in.resKeys, k)
	reserved.Lock()
	reserved.m[k]++
	reserved.bySess[k.sess]++
	reserved.Unlock()
}

func (in *interceptor) releaseReserved() {
	in.releaseWhere(func(reservedKey) bool { return true })
}

// releaseWhere releases this interceptor's reservations that match: a
// context Chrome destroyed can have its number reused by the page's next
// world, and a client command naming that one must not be refused.
func (in *interceptor) releaseWhere(match func(reservedKey) bool) (released bool) {
	in.resMu.Lock()
	var keys, keep []reservedKey
	for _, k := range in.resKeys {
		if match(k) {
			keys = append(keys, k)
		} else {
			keep = append(keep, k)
		}
	}
	in.resKeys = keep
	in.resMu.Unlock()
	if len(keys) == 0 {
		return false
	}
	reserved.Lock()
	defer reserved.Unlock()
	for _, k := range keys {
		if reserved.m[k]--; reserved.m[k] <= 0 {
			delete(reserved.m, k)
		}
		if reserved.bySess[k.sess]--; reserved.bySess[k.sess] <= 0 {
			delete(reserved.bySess, k.sess)
		}
	}
	return true
}

// contextGone handles Runtime.executionContextDestroyed and
// executionContextsCleared: reservations of the gone contexts are released,
// and the destruction of a check world (whose creation the client never saw)
// is not shown to the client.
func (in *interceptor) contextGone(c cdpproxy.Conn, m *cdpproxy.Message) cdpproxy.Verdict {
	sess, target := c.Session(), targetKey(c, m.SessionID)
	if m.Method == "Runtime.executionContextsCleared" {
		in.releaseWhere(func(k reservedKey) bool { return k.sess == sess && k.target == target })
		in.forgetWorlds(m.SessionID)
		return forward
	}
	var ev struct {
		Params struct {
			ID int64 `json:"executionContextId"`
		} `json:"params"`
	}
	if err := json.Unmarshal(m.Raw, &ev); err != nil || ev.Params.ID == 0 {
		return forward
	}
	if in.releaseWhere(func(k reservedKey) bool { return k.sess == sess && k.target == target && k.id == ev.Params.ID }) {
		in.forgetWorlds(m.SessionID)
		return cdpproxy.Verdict{Kind: cdpproxy.Drop}
	}
	return forward
}

// forgetWorlds drops cached world handles of a CDP session.
func (in *interceptor) forgetWorlds(sid string) {
	prefix := worldKey(sid, "")
	in.cacheMu.Lock()
	for k := range in.worlds {
		if strings.HasPrefix(k, prefix) {
			delete(in.worlds, k)
		}
	}
	in.cacheMu.Unlock()
}

// reservedContext reports whether a client command names an execution
// context of the origin check (params contextId or executionContextId). It
// only looks when a check world exists in the daemon session and the
// message could name a context: it contains "ontextId" or a \u escape (a
// key can be spelled with escapes, which Chrome's parser accepts).
func (in *interceptor) reservedContext(c cdpproxy.Conn, m *cdpproxy.Message) bool {
	sess := c.Session()
	reserved.Lock()
	has := reserved.bySess[sess] > 0
	reserved.Unlock()
	if !has || !(bytes.Contains(m.Raw, []byte("ontextId")) || bytes.Contains(m.Raw, []byte(`\u`))) {
		return false
	}
	ids, ok := contextIDs(m.Raw)
	if !ok {
		return true // undecodable: Chrome will refuse it anyway; do not forward
	}
	target := targetKey(c, m.SessionID)
	reserved.Lock()
	defer reserved.Unlock()
	for _, id := range ids {
		if reserved.m[reservedKey{sess: sess, target: target, id: id}] > 0 {
			return true
		}
	}
	return false
}

// contextIDs returns every value of "contextId" and "executionContextId"
// in every top-level "params" object of a message, with escaped keys
// unescaped and duplicate keys all counted (parsers differ on which
// duplicate wins).
func contextIDs(raw []byte) ([]int64, bool) {
	var ids []int64
	ok := walkObject(raw, func(key string, val json.RawMessage) bool {
		if key != "params" {
			return true
		}
		if len(bytes.TrimSpace(val)) == 0 || bytes.TrimSpace(val)[0] != '{' {
			return true
		}
		return walkObject(val, func(k string, v json.RawMessage) bool {
			if k == "contextId" || k == "executionContextId" {
				var id float64
				if err := json.Unmarshal(v, &id); err == nil {
					ids = append(ids, int64(id))
				}
			}
			return true
		})
	})
	return ids, ok
}

// walkObject calls fn for each member of the JSON object raw, in order,
// duplicates included; false when raw is not one valid object.
func walkObject(raw []byte, fn func(key string, val json.RawMessage) bool) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return false
		}
		key, isStr := t.(string)
		if !isStr {
			return false
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return false
		}
		if !fn(key, val) {
			return false
		}
	}
	t, err := dec.Token()
	return err == nil && t == json.Delim('}')
}
