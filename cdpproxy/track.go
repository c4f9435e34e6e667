package cdpproxy

import (
	"bytes"
	"strings"
	"sync"
	"unsafe"
)

// tracker keeps what one connection learned of its flattened CDP sessions
// and targets. Written by the browser-read goroutine, read by anyone.
//
// URLs can carry secrets (a query string, a fragment), so they are never
// decoded into ordinary Go strings: each URL is copied into a byte buffer
// the tracker owns, exposed as a string without a copy, and every such
// buffer is wiped when the connection ends.
type tracker struct {
	mu       sync.RWMutex
	root     TargetInfo
	sessions map[string]*TargetInfo // flattened sessionId -> target
	targets  map[string]TargetInfo  // targetId -> latest info seen
	owned    [][]byte
}

// maxOwned bounds the URL buffers kept per connection; the oldest is wiped
// beyond it (by then no interceptor still holds that navigation's info).
const maxOwned = 4096

func newTracker(root TargetInfo) *tracker {
	t := &tracker{}
	root.URL = t.ownString([]byte(root.URL), false)
	root.Origin = originOf(root.URL)
	t.root = root
	return t
}

// ownString copies (and unescapes when escaped) b into a buffer the tracker
// owns and returns it as a string sharing that buffer. Call with mu held
// or before the tracker is shared.
func (t *tracker) ownString(b []byte, escaped bool) string {
	if len(b) == 0 {
		return ""
	}
	var buf []byte
	if escaped {
		var err error
		if buf, err = unescape(make([]byte, 0, len(b)), b); err != nil || len(buf) == 0 {
			return ""
		}
	} else {
		buf = append(make([]byte, 0, len(b)), b...)
	}
	if len(t.owned) >= maxOwned {
		wipe(t.owned[0])
		t.owned = t.owned[1:]
	}
	t.owned = append(t.owned, buf)
	return unsafe.String(&buf[0], len(buf))
}

// close wipes every URL the tracker held.
func (t *tracker) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range t.owned {
		wipe(b)
	}
	t.owned = nil
	t.sessions, t.targets = nil, nil
	t.root = TargetInfo{}
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

// field returns the raw JSON value of member key of object obj, nil when
// absent or when obj is not an object. Keys are compared as Chrome writes
// them (unescaped); escaped keys are unescaped first.
func field(obj []byte, key string) []byte {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil
	}
	i = skipWS(obj, i+1)
	for i < len(obj) && obj[i] == '"' {
		ke, _, err := scanString(obj, i, false)
		if err != nil {
			return nil
		}
		k := obj[i+1 : ke]
		match := string(k) == key
		if !match && bytes.IndexByte(k, '\\') >= 0 {
			if u, err := unescape(nil, k); err == nil {
				match = string(u) == key
			}
		}
		i = skipWS(obj, ke+1)
		if i >= len(obj) || obj[i] != ':' {
			return nil
		}
		i = skipWS(obj, i+1)
		ve, err := skipValue(obj, i, false, 1)
		if err != nil {
			return nil
		}
		if match {
			return obj[i:ve]
		}
		i = skipWS(obj, ve)
		if i >= len(obj) || obj[i] != ',' {
			return nil
		}
		i = skipWS(obj, i+1)
	}
	return nil
}

// strField returns the contents of string member key (still escaped) and
// whether it holds escapes.
func strField(obj []byte, key string) ([]byte, bool) {
	v := field(obj, key)
	if len(v) < 2 || v[0] != '"' {
		return nil, false
	}
	s := v[1 : len(v)-1]
	return s, bytes.IndexByte(s, '\\') >= 0
}

// idField returns a short identifier member (session, target, frame ids,
// types) as a string. Identifiers hold no secrets.
func idField(obj []byte, key string) string {
	s, esc := strField(obj, key)
	if esc {
		u, err := unescape(nil, s)
		if err != nil {
			return ""
		}
		return string(u)
	}
	return string(s)
}

func (t *tracker) info(ti []byte, parent, sid string) TargetInfo {
	u, esc := strField(ti, "url")
	url := t.ownString(u, esc)
	return TargetInfo{SessionID: sid, TargetID: idField(ti, "targetId"), Type: idField(ti, "type"),
		URL: url, Origin: originOf(url), ParentSessionID: parent, BrowserContext: idField(ti, "browserContextId")}
}

// event applies one tracked event received on CDP session sid. It returns
// the session id that was detached, if any.
func (t *tracker) event(sid, method string, params []byte) (detached string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch method {
	case "Target.attachedToTarget":
		s := idField(params, "sessionId")
		ti := field(params, "targetInfo")
		if s == "" || ti == nil {
			return ""
		}
		info := t.info(ti, sid, s)
		if t.sessions == nil {
			t.sessions = make(map[string]*TargetInfo)
		}
		t.sessions[s] = &info
		t.putTarget(info)
	case "Target.detachedFromTarget":
		s := idField(params, "sessionId")
		if s == "" {
			return ""
		}
		delete(t.sessions, s)
		return s
	case "Target.targetInfoChanged", "Target.targetCreated":
		ti := field(params, "targetInfo")
		if ti == nil {
			return ""
		}
		info := t.info(ti, "", "")
		if info.TargetID == "" {
			return ""
		}
		t.putTarget(info)
		for _, s := range t.sessions {
			if s.TargetID == info.TargetID {
				s.URL, s.Origin = info.URL, info.Origin
				if info.Type != "" {
					s.Type = info.Type
				}
			}
		}
		if t.root.TargetID == info.TargetID && t.root.Type != "browser" {
			t.root.URL, t.root.Origin = info.URL, info.Origin
		}
	case "Target.targetDestroyed":
		delete(t.targets, idField(params, "targetId"))
	case "Page.frameNavigated":
		fr := field(params, "frame")
		if fr == nil {
			return ""
		}
		id := idField(fr, "id")
		top := field(fr, "parentId") == nil
		ti := t.navTarget(sid)
		if ti == nil || (!top && id != ti.TargetID) {
			return ""
		}
		u, esc1 := strField(fr, "url")
		f, esc2 := strField(fr, "urlFragment")
		var url string
		if esc1 || esc2 {
			b, err := unescape(make([]byte, 0, len(u)+len(f)), u)
			if err != nil {
				return ""
			}
			b, err = unescape(b, f)
			if err != nil {
				wipe(b)
				return ""
			}
			url = t.ownString(b, false)
			wipe(b)
		} else {
			b := append(append(make([]byte, 0, len(u)+len(f)), u...), f...)
			url = t.ownString(b, false)
			wipe(b)
		}
		if top && ti.TargetID == "" {
			ti.TargetID = id
		}
		t.navigated(ti, url)
	case "Page.navigatedWithinDocument":
		ti := t.navTarget(sid)
		if ti == nil || idField(params, "frameId") != ti.TargetID {
			return ""
		}
		u, esc := strField(params, "url")
		t.navigated(ti, t.ownString(u, esc))
	}
	return ""
}

func (t *tracker) navTarget(sid string) *TargetInfo {
	if sid == "" {
		if t.root.Type == "browser" {
			return nil
		}
		return &t.root
	}
	return t.sessions[sid]
}

func (t *tracker) navigated(ti *TargetInfo, url string) {
	ti.URL, ti.Origin = url, originOf(url)
	if cur, ok := t.targets[ti.TargetID]; ok {
		cur.URL, cur.Origin = ti.URL, ti.Origin
		t.targets[ti.TargetID] = cur
	}
}

func (t *tracker) putTarget(info TargetInfo) {
	if t.targets == nil {
		t.targets = make(map[string]TargetInfo)
	}
	info.SessionID, info.ParentSessionID = "", ""
	t.targets[info.TargetID] = info
}

// OriginOf is originOf, for interceptors that read a URL the proxy did not
// track (Target.getTargets of their own).
func OriginOf(url string) string { return originOf(url) }

// originOf returns scheme://host[:port] (lower case) of a URL with a network
// scheme, "" for opaque origins (about:, data:, ...). blob: URLs give their
// inner origin. It allocates nothing but the result (no copy of the path or
// query, which may carry secrets).
func originOf(raw string) string {
	colon := strings.IndexByte(raw, ':')
	if colon <= 0 {
		return ""
	}
	scheme := raw[:colon]
	if strings.EqualFold(scheme, "blob") {
		return originOf(raw[colon+1:])
	}
	switch strings.ToLower(scheme) {
	case "http", "https", "ws", "wss", "ftp":
	default:
		return ""
	}
	rest := raw[colon+1:]
	if !strings.HasPrefix(rest, "//") {
		return ""
	}
	rest = rest[2:]
	end := strings.IndexAny(rest, "/?#\\")
	if end < 0 {
		end = len(rest)
	}
	auth := rest[:end]
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		auth = auth[at+1:]
	}
	if auth == "" {
		return ""
	}
	return strings.ToLower(scheme) + "://" + strings.ToLower(auth)
}
