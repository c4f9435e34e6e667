package cdpproxy

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync"
)

// tracker keeps what one connection learned of its flattened CDP sessions
// and targets. Written by the browser-read goroutine, read by anyone.
type tracker struct {
	mu       sync.RWMutex
	root     TargetInfo
	sessions map[string]*TargetInfo // flattened sessionId -> target
	targets  map[string]TargetInfo  // targetId -> latest info seen
}

func newTracker(root TargetInfo) *tracker {
	root.Origin = originOf(root.URL)
	return &tracker{root: root}
}

func (t *tracker) get(sid string) (TargetInfo, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if sid == "" {
		return t.root, true
	}
	ti, ok := t.sessions[sid]
	if !ok {
		return TargetInfo{}, false
	}
	return *ti, true
}

// sessionForTarget returns a flattened session attached to targetID.
func (t *tracker) sessionForTarget(targetID string) (string, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if targetID != "" && targetID == t.root.TargetID {
		return "", true
	}
	for sid, ti := range t.sessions {
		if ti.TargetID == targetID {
			return sid, true
		}
	}
	return "", false
}

func (t *tracker) setRoot(ti TargetInfo) {
	t.mu.Lock()
	ti.Origin = originOf(ti.URL)
	t.root = ti
	t.mu.Unlock()
}

// tracked reports whether an event with this method changes the map.
func tracked(method []byte) bool {
	switch string(method) {
	case "Target.attachedToTarget", "Target.detachedFromTarget", "Target.targetInfoChanged",
		"Target.targetCreated", "Target.targetDestroyed", "Page.frameNavigated",
		"Page.navigatedWithinDocument", "Target.receivedMessageFromTarget":
		return true
	}
	return false
}

type wireTargetInfo struct {
	TargetID         string `json:"targetId"`
	Type             string `json:"type"`
	URL              string `json:"url"`
	BrowserContextID string `json:"browserContextId"`
}

// event applies one tracked event received on CDP session sid. It returns
// the session ids that were detached (their pending commands are dropped).
func (t *tracker) event(sid, method string, params []byte) (detached string) {
	switch method {
	case "Target.attachedToTarget":
		var p struct {
			SessionID  string         `json:"sessionId"`
			TargetInfo wireTargetInfo `json:"targetInfo"`
		}
		if json.Unmarshal(params, &p) != nil || p.SessionID == "" {
			return ""
		}
		ti := &TargetInfo{SessionID: p.SessionID, TargetID: p.TargetInfo.TargetID, Type: p.TargetInfo.Type,
			URL: p.TargetInfo.URL, Origin: originOf(p.TargetInfo.URL), ParentSessionID: sid,
			BrowserContext: p.TargetInfo.BrowserContextID}
		t.mu.Lock()
		if t.sessions == nil {
			t.sessions = make(map[string]*TargetInfo)
		}
		t.sessions[p.SessionID] = ti
		t.putTarget(p.TargetInfo)
		t.mu.Unlock()
	case "Target.detachedFromTarget":
		var p struct {
			SessionID string `json:"sessionId"`
		}
		if json.Unmarshal(params, &p) != nil || p.SessionID == "" {
			return ""
		}
		t.mu.Lock()
		delete(t.sessions, p.SessionID)
		t.mu.Unlock()
		return p.SessionID
	case "Target.targetInfoChanged", "Target.targetCreated":
		var p struct {
			TargetInfo wireTargetInfo `json:"targetInfo"`
		}
		if json.Unmarshal(params, &p) != nil || p.TargetInfo.TargetID == "" {
			return ""
		}
		t.mu.Lock()
		t.putTarget(p.TargetInfo)
		origin := originOf(p.TargetInfo.URL)
		for _, ti := range t.sessions {
			if ti.TargetID == p.TargetInfo.TargetID {
				ti.URL, ti.Origin = p.TargetInfo.URL, origin
				if p.TargetInfo.Type != "" {
					ti.Type = p.TargetInfo.Type
				}
			}
		}
		if t.root.TargetID == p.TargetInfo.TargetID && t.root.Type != "browser" {
			t.root.URL, t.root.Origin = p.TargetInfo.URL, origin
		}
		t.mu.Unlock()
	case "Target.targetDestroyed":
		var p struct {
			TargetID string `json:"targetId"`
		}
		if json.Unmarshal(params, &p) != nil {
			return ""
		}
		t.mu.Lock()
		delete(t.targets, p.TargetID)
		t.mu.Unlock()
	case "Page.frameNavigated":
		var p struct {
			Frame struct {
				ID          string `json:"id"`
				ParentID    string `json:"parentId"`
				URL         string `json:"url"`
				URLFragment string `json:"urlFragment"`
			} `json:"frame"`
		}
		if json.Unmarshal(params, &p) != nil {
			return ""
		}
		t.navigated(sid, p.Frame.ID, p.Frame.ParentID == "", p.Frame.URL+p.Frame.URLFragment)
	case "Page.navigatedWithinDocument":
		var p struct {
			FrameID string `json:"frameId"`
			URL     string `json:"url"`
		}
		if json.Unmarshal(params, &p) != nil {
			return ""
		}
		t.navigated(sid, p.FrameID, false, p.URL)
	}
	return ""
}

// navigated records a navigation of frameID on session sid when the frame is
// the session's main frame (no parent, or the frame id is the target id, as
// for out-of-process iframes).
func (t *tracker) navigated(sid, frameID string, top bool, u string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ti *TargetInfo
	if sid == "" {
		if t.root.Type == "browser" {
			return
		}
		ti = &t.root
	} else if ti = t.sessions[sid]; ti == nil {
		return
	}
	if !top && frameID != ti.TargetID {
		return
	}
	if top && ti.TargetID == "" {
		ti.TargetID = frameID
	}
	ti.URL, ti.Origin = u, originOf(u)
	if cur, ok := t.targets[ti.TargetID]; ok {
		cur.URL = u
		t.targets[ti.TargetID] = cur
	}
}

func (t *tracker) putTarget(w wireTargetInfo) {
	if t.targets == nil {
		t.targets = make(map[string]TargetInfo)
	}
	t.targets[w.TargetID] = TargetInfo{TargetID: w.TargetID, Type: w.Type, URL: w.URL,
		Origin: originOf(w.URL), BrowserContext: w.BrowserContextID}
}

// originOf returns scheme://host[:port] of a URL with a network scheme, ""
// for opaque origins (about:, data:, blob: without inner URL...).
func originOf(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	if u.Scheme == "blob" {
		return originOf(u.Opaque)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https", "ws", "wss", "ftp":
	default:
		return ""
	}
	if u.Host == "" {
		return ""
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}
