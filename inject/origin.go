package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/cdpvault/cdpvault/cdpproxy"
)

// focusJS runs in an isolated world (Page.createIsolatedWorld) of a frame,
// so nothing the page does to getters in its own world (activeElement,
// hasFocus, prototypes) is seen. It walks focus down through the
// same-origin frames it can enter (iframes in open shadow roots through
// activeElement, in closed ones through hasFocus of every child frame) and
// reports the origin of the frame owning the focused element, or
// remote=true when focus sits on a frame owner it cannot enter: a
// cross-origin frame, in this process (then every frame of the target is
// asked) or out of process (its own target, asked through its session).
const focusWalk = `(() => {
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
    return {origin: w.location.origin, remote: remote, depth: depth, focus: document.hasFocus()};
  }
})()`

// The check's world is reused while its document lives (creating it costs
// ~0.5 ms per check here). A cached context id is only trusted when the
// context carries worldMarker, a random name set by the init expression in
// our world: a context id that went stale and now names another context
// (ids restart in a new renderer process) lacks it, so the world is
// created again.
var worldMarker = worldPrefix + "_m"

var (
	focusJSCheck = fmt.Sprintf(`(globalThis[%q] !== true) ? {stale: true} : %s`, worldMarker, focusWalk)
	focusJSInit  = fmt.Sprintf(`(Object.defineProperty(globalThis, %q, {value: true}), %s)`, worldMarker, focusWalk)
)

type focusResult struct {
	Stale  bool   `json:"stale"`
	Origin string `json:"origin"`
	Remote bool   `json:"remote"`
	Depth  int    `json:"depth"`
	Focus  bool   `json:"focus"`
}

var errFocusUnverified = errors.New("focus is in a cross-origin frame that cannot be verified")

// focusedOrigin returns the origin of the frame that owns the focused
// element of the page behind CDP session sid, determined live. It fails
// closed: any doubt is an error.
func (in *interceptor) focusedOrigin(ctx context.Context, c cdpproxy.Conn, sid string) (string, error) {
	return in.focusedOriginDepth(ctx, c, sid, 0)
}

func (in *interceptor) focusedOriginDepth(ctx context.Context, c cdpproxy.Conn, sid string, level int) (string, error) {
	if level > 8 {
		return "", errFocusUnverified
	}
	res, err := in.evalFocus(ctx, c, sid, "")
	if err != nil {
		return "", err
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
		return "", errFocusUnverified
	case res.Remote:
		// Focus sits on a frame this world could not enter: a cross-origin
		// frame in the same process. Ask every frame of the target.
		return in.focusedSubframe(ctx, c, sid)
	}
	if res.Depth == 0 {
		// Cross-check with what the proxy tracked of the target.
		if ti, ok := c.Target(sid); ok && ti.Origin != "" && res.Origin != "" && ti.Origin != res.Origin {
			return "", fmt.Errorf("page origin %s does not match the tracked target origin", res.Origin)
		}
	}
	return res.Origin, nil
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
func (in *interceptor) focusedSubframe(ctx context.Context, c cdpproxy.Conn, sid string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	raw, err := c.Call(cctx, sid, "Page.getFrameTree", struct{}{})
	if err != nil {
		return "", fmt.Errorf("frame tree: %w", err)
	}
	var ft struct {
		FrameTree frameNode `json:"frameTree"`
	}
	if err := json.Unmarshal(raw, &ft); err != nil {
		return "", errors.New("frame tree: undecodable")
	}
	var best *focusResult
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
				best, bestDepth = &r, depth
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
		return "", err
	}
	if best == nil || best.Remote {
		return "", errFocusUnverified
	}
	return best.Origin, nil
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

// evalFocus runs the focus walk in the interceptor's isolated world of a
// frame of the session's target: frameID, or the main frame when "".
func (in *interceptor) evalFocus(ctx context.Context, c cdpproxy.Conn, sid, frameID string) (focusResult, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	fromTarget := false
	if frameID == "" {
		if ti, ok := c.Target(sid); ok && (ti.Type == "page" || ti.Type == "iframe") {
			frameID = ti.TargetID // a page's or iframe target's main frame id is its target id
		} else {
			in.childMu.Lock()
			frameID = in.children[sid].targetID
			in.childMu.Unlock()
		}
		fromTarget = frameID != ""
	}
	key := sid + "\x00" + frameID
	in.cacheMu.Lock()
	id, cached := in.worlds[key]
	in.cacheMu.Unlock()
	if cached && frameID != "" {
		r, err := in.runFocus(cctx, c, sid, id, focusJSCheck)
		if err == nil && !r.Stale {
			return r, nil
		}
		in.cacheMu.Lock()
		delete(in.worlds, key)
		in.cacheMu.Unlock()
	}
	var err error
	if frameID != "" {
		id, err = in.createWorld(cctx, c, sid, frameID)
	}
	if frameID == "" || (err != nil && fromTarget) {
		if frameID, err = mainFrameID(cctx, c, sid); err != nil {
			return focusResult{}, err
		}
		key = sid + "\x00" + frameID
		id, err = in.createWorld(cctx, c, sid, frameID)
	}
	if err != nil {
		return focusResult{}, err
	}
	r, err := in.runFocus(cctx, c, sid, id, focusJSInit)
	if err != nil || r.Stale {
		return focusResult{}, errors.New("focus check: isolated world unusable")
	}
	in.cacheMu.Lock()
	if len(in.worlds) > 256 {
		clear(in.worlds)
	}
	in.worlds[key] = id
	in.cacheMu.Unlock()
	return r, nil
}

func (in *interceptor) runFocus(cctx context.Context, c cdpproxy.Conn, sid string, ctxID int64, expr string) (focusResult, error) {
	in.reserve(c, sid, ctxID)
	raw, err := c.Call(cctx, sid, "Runtime.evaluate", map[string]any{
		"expression":    expr,
		"contextId":     ctxID,
		"returnByValue": true,
		"silent":        true,
	})
	if err != nil {
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
	return *out.Result.Value, nil
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
	m map[reservedKey]int
}{m: map[reservedKey]int{}}

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
	reserved.Unlock()
}

func (in *interceptor) releaseReserved() {
	in.resMu.Lock()
	keys := in.resKeys
	in.resKeys = nil
	in.resMu.Unlock()
	reserved.Lock()
	defer reserved.Unlock()
	for _, k := range keys {
		if reserved.m[k]--; reserved.m[k] <= 0 {
			delete(reserved.m, k)
		}
	}
}

// reservedContext reports whether a client command names an execution
// context of the origin check (contextId, executionContextId).
func (in *interceptor) reservedContext(c cdpproxy.Conn, m *cdpproxy.Message) bool {
	if !bytes.Contains(m.Raw, []byte("ontextId")) {
		return false
	}
	var msg struct {
		Params struct {
			ContextID          int64 `json:"contextId"`
			ExecutionContextID int64 `json:"executionContextId"`
		} `json:"params"`
	}
	if err := json.Unmarshal(m.Raw, &msg); err != nil {
		return false
	}
	sess := c.Session()
	target := targetKey(c, m.SessionID)
	reserved.Lock()
	defer reserved.Unlock()
	for _, id := range []int64{msg.Params.ContextID, msg.Params.ExecutionContextID} {
		if id != 0 && reserved.m[reservedKey{sess: sess, target: target, id: id}] > 0 {
			return true
		}
	}
	return false
}
