package ctxguard

import "strings"

// DiscoveryAllowed reports whether a discovery or WebSocket request of a geo
// session in attach mode may be served. sub is the request path after the
// session prefix /session/<token> (no query), e.g. "/json/new" or
// "/json/close/<id>". The interceptor cannot see HTTP discovery, so the
// daemon asks this before handing the request to cdpproxy:
//
//   - /json/new never: it opens a page in Chrome's default context and loads
//     its URL there, directly;
//   - /json/activate/<id> and /json/close/<id> only for a target the session
//     knows to be in one of its own contexts;
//   - /json, /json/list, /json/version, /json/protocol (with or without a
//     trailing slash) and /devtools/... always (the sockets are guarded by
//     the interceptor);
//   - anything else not (fail closed).
func (g *Guard) DiscoveryAllowed(sub string) bool {
	switch strings.TrimSuffix(sub, "/") {
	case "/json", "/json/list", "/json/version", "/json/protocol":
		return true
	}
	if strings.HasPrefix(sub, "/devtools/") {
		return true
	}
	for _, p := range []string{"/json/activate/", "/json/close/"} {
		if id, ok := strings.CutPrefix(sub, p); ok {
			if id == "" || strings.Contains(id, "/") {
				return false
			}
			bc, known := g.targetContext(id)
			return known && g.Allowed(bc)
		}
	}
	return false
}
