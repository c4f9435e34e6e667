package cdpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxDiscoveryBody bounds what the proxy reads of a discovery response
// (/json/protocol is the biggest, about 1 MB).
const maxDiscoveryBody = 64 << 20

// discoveryPath reports whether sub is one of Chrome's discovery endpoints
// and whether its JSON carries URLs to rewrite.
func discoveryPath(sub string) (ok, rewrite bool) {
	switch strings.TrimSuffix(sub, "/") {
	case "/json", "/json/list", "/json/version", "/json/new":
		return true, true
	case "/json/protocol":
		return true, false
	}
	if id, found := strings.CutPrefix(sub, "/json/activate/"); found && id != "" && !strings.Contains(id, "/") {
		return true, false
	}
	if id, found := strings.CutPrefix(sub, "/json/close/"); found && id != "" && !strings.Contains(id, "/") {
		return true, false
	}
	return false, false
}

func (p *Proxy) serveDiscovery(w http.ResponseWriter, r *http.Request, s *Session, token, sub string) {
	ok, rewrite := discoveryPath(sub)
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, hostHeader, scheme, err := upstreamHost(s)
	if err != nil {
		p.log.Error("cdp upstream misconfigured", "session", s.ID, "err", err)
		http.Error(w, "cdpvault: browser unavailable", http.StatusBadGateway)
		return
	}
	body, status, ctype, err := p.upstreamGet(r.Context(), s, r.Method, sub, r.URL.RawQuery, hostHeader, scheme)
	if err != nil {
		p.log.Info("cdp discovery request failed", "session", s.ID, "path", sub, "err", err)
		http.Error(w, "cdpvault: browser unavailable", http.StatusBadGateway)
		return
	}
	if rewrite && status == http.StatusOK {
		wsScheme := "ws"
		if r.TLS != nil {
			wsScheme = "wss"
		}
		nb, err := rewriteDiscovery(body, wsScheme, r.Host, "/session/"+token)
		wipe(body)
		if err != nil {
			p.log.Warn("cdp discovery response is not JSON", "session", s.ID, "path", sub, "err", err)
			http.Error(w, "cdpvault: bad response from browser", http.StatusBadGateway)
			return
		}
		body = nb
	}
	if p.o.Discovery != nil {
		nb, err := p.o.Discovery(s, body)
		if err != nil {
			wipe(body)
			p.log.Warn("cdp discovery hook failed; response withheld", "session", s.ID, "path", sub, "err", err)
			http.Error(w, "cdpvault: response withheld", http.StatusBadGateway)
			return
		}
		if !sameBuf(nb, body) {
			wipe(body)
		}
		body = nb
	}
	if ctype != "" {
		w.Header().Set("Content-Type", ctype)
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	w.Write(body)
	wipe(body)
}

// upstreamGet performs the discovery request against the browser with
// Chrome's accepted Host and without Origin.
func (p *Proxy) upstreamGet(ctx context.Context, s *Session, method, sub, rawQuery, hostHeader, scheme string) ([]byte, int, string, error) {
	if scheme == "" {
		scheme = "http"
	}
	base := strings.TrimSuffix(s.Upstream, "/")
	u := base + sub
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, 0, "", fmt.Errorf("build request: %w", err)
	}
	req.Host = hostHeader
	req.Header.Set("User-Agent", "cdpvault")
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, 0, "", fmt.Errorf("request %s: %w", sub, err)
	}
	defer resp.Body.Close()
	n := resp.ContentLength
	if n < 0 || n > maxDiscoveryBody {
		n = 64 << 10
	}
	buf := bytes.NewBuffer(make([]byte, 0, n+1))
	if _, err := io.Copy(buf, io.LimitReader(resp.Body, maxDiscoveryBody+1)); err != nil {
		wipe(buf.Bytes())
		return nil, 0, "", fmt.Errorf("read %s: %w", sub, err)
	}
	if buf.Len() > maxDiscoveryBody {
		wipe(buf.Bytes())
		return nil, 0, "", fmt.Errorf("read %s: response too big", sub)
	}
	return buf.Bytes(), resp.StatusCode, resp.Header.Get("Content-Type"), nil
}

// rewriteDiscovery points every DevTools URL in a discovery JSON document
// back through the daemon: webSocketDebuggerUrl and the ws= parameter of
// devtoolsFrontendUrl(Compat).
func rewriteDiscovery(body []byte, wsScheme, host, prefix string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	rewriteValue(v, wsScheme, host, prefix)
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "   ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func rewriteValue(v any, wsScheme, host, prefix string) {
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			rewriteValue(e, wsScheme, host, prefix)
		}
	case map[string]any:
		for k, e := range t {
			s, ok := e.(string)
			if !ok {
				continue
			}
			switch k {
			case "webSocketDebuggerUrl":
				if i := strings.Index(s, "/devtools/"); i >= 0 {
					t[k] = wsScheme + "://" + host + prefix + s[i:]
				}
			case "devtoolsFrontendUrl", "devtoolsFrontendUrlCompat":
				t[k] = rewriteFrontend(s, host, prefix)
			}
		}
	}
}

// rewriteFrontend rewrites the ws= (or wss=) query parameter of a DevTools
// frontend URL.
func rewriteFrontend(s, host, prefix string) string {
	for _, key := range []string{"?ws=", "&ws=", "?wss=", "&wss="} {
		i := strings.Index(s, key)
		if i < 0 {
			continue
		}
		vs := i + len(key)
		ve := strings.IndexByte(s[vs:], '&')
		if ve < 0 {
			ve = len(s)
		} else {
			ve += vs
		}
		val := s[vs:ve]
		j := strings.Index(val, "/devtools/")
		if j < 0 {
			continue
		}
		s = s[:vs] + host + prefix + val[j:] + s[ve:]
	}
	return s
}

// pageInfo asks the browser what the page target id is (type and URL) for
// the root session of a page-level socket. Best effort.
func (p *Proxy) pageInfo(ctx context.Context, s *Session, id string) TargetInfo {
	ti := TargetInfo{TargetID: id, Type: "page"}
	_, hostHeader, scheme, err := upstreamHost(s)
	if err != nil {
		return ti
	}
	body, status, _, err := p.upstreamGet(ctx, s, http.MethodGet, "/json/list", "", hostHeader, scheme)
	if err != nil {
		return ti
	}
	defer wipe(body)
	if status != http.StatusOK {
		return ti
	}
	var list []struct {
		ID   string `json:"id"`
		Type string `json:"type"`
		URL  string `json:"url"`
	}
	if json.Unmarshal(body, &list) != nil {
		return ti
	}
	for _, t := range list {
		if t.ID == id {
			ti.Type, ti.URL = t.Type, t.URL
			break
		}
	}
	return ti
}
