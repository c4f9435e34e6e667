package cdpproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
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
	target := sub
	if esc := r.URL.EscapedPath(); strings.HasPrefix(esc, "/session/"+token+"/") {
		target = esc[len("/session/"+token):]
	}
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	body, status, ctype, err := p.upstreamDo(r.Context(), s, r.Method, target)
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
	writeBody(w, r, status, ctype, body)
	wipe(body)
}

// writeBody sends a discovery response. On HTTP/1.x it hijacks the
// connection and writes status, headers and body itself (then closes), so
// that no net/http buffer keeps a copy of a body that may hold page titles
// and URLs; otherwise it falls back to the ResponseWriter.
func writeBody(w http.ResponseWriter, r *http.Request, status int, ctype string, body []byte) {
	if r.ProtoMajor == 1 {
		if conn, brw, err := http.NewResponseController(w).Hijack(); err == nil {
			defer conn.Close()
			_ = brw
			head := "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n"
			if ctype != "" {
				head += "Content-Type: " + ctype + "\r\n"
			}
			head += "Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n"
			bufs := net.Buffers{[]byte(head), body}
			conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
			bufs.WriteTo(conn)
			return
		}
	}
	if ctype != "" {
		w.Header().Set("Content-Type", ctype)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

var errUpstreamResponse = errors.New("malformed HTTP response from the browser")

// upstreamDo performs one discovery request against the browser, with the
// Host Chrome accepts and no Origin, on a fresh connection, reading the
// whole response into buffers the proxy owns (and wipes): page titles and
// URLs in discovery JSON can hold secrets, so no HTTP library buffer may
// keep a copy. It returns a body the caller must wipe.
func (p *Proxy) upstreamDo(ctx context.Context, s *Session, method, target string) (body []byte, status int, ctype string, err error) {
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f {
			return nil, 0, "", fmt.Errorf("request target has a byte %#x", c)
		}
	}
	addr, hostHeader, scheme, err := upstreamHost(s)
	if err != nil {
		return nil, 0, "", err
	}
	dctx, cancel := context.WithTimeout(ctx, p.o.DialTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, 0, "", fmt.Errorf("dial browser: %w", err)
	}
	defer conn.Close()
	if scheme == "https" {
		host, _, _ := net.SplitHostPort(addr)
		tc := tls.Client(conn, &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12})
		conn = tc
	}
	dl := time.Now().Add(3 * p.o.DialTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := method + " " + target + " HTTP/1.1\r\nHost: " + hostHeader + "\r\nUser-Agent: cdpvault\r\nConnection: close\r\n"
	if method != http.MethodGet && method != http.MethodHead {
		req += "Content-Length: 0\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		return nil, 0, "", fmt.Errorf("write request: %w", err)
	}
	buf := make([]byte, 0, 16<<10)
	for {
		if len(buf) == cap(buf) {
			if cap(buf) > maxDiscoveryBody+64<<10 {
				wipe(buf)
				return nil, 0, "", errors.New("browser response too big")
			}
			nb := make([]byte, len(buf), 2*cap(buf))
			copy(nb, buf)
			wipe(buf)
			buf = nb
		}
		n, rerr := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			wipe(buf)
			return nil, 0, "", fmt.Errorf("read response: %w", rerr)
		}
		if st, hdrEnd, cl, ok := responseComplete(buf); ok {
			_ = st
			if cl >= 0 && len(buf) >= hdrEnd+cl {
				break
			}
		}
	}
	defer wipe(buf)
	st, hdrEnd, cl, ok := responseComplete(buf)
	if !ok {
		return nil, 0, "", errUpstreamResponse
	}
	for _, line := range strings.Split(string(buf[:hdrEnd]), "\r\n")[1:] {
		k, v, _ := strings.Cut(line, ":")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "content-type":
			ctype = strings.TrimSpace(v)
		case "transfer-encoding":
			if !strings.EqualFold(strings.TrimSpace(v), "identity") {
				return nil, 0, "", errUpstreamResponse
			}
		}
	}
	rest := buf[hdrEnd:]
	if cl >= 0 {
		if len(rest) < cl {
			return nil, 0, "", errUpstreamResponse
		}
		rest = rest[:cl]
	}
	return append(make([]byte, 0, len(rest)), rest...), st, ctype, nil
}

// responseComplete parses the status line and headers of an HTTP/1.x
// response once they are complete: status, offset of the body, its
// Content-Length (-1 when absent).
func responseComplete(b []byte) (status, hdrEnd, cl int, ok bool) {
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		return 0, 0, 0, false
	}
	head := b[:i]
	hdrEnd = i + 4
	line, _, _ := bytes.Cut(head, []byte("\r\n"))
	f := bytes.Fields(line)
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) {
		return 0, 0, 0, false
	}
	status, err := strconv.Atoi(string(f[1]))
	if err != nil || status < 100 || status > 999 {
		return 0, 0, 0, false
	}
	cl = -1
	for _, l := range bytes.Split(head, []byte("\r\n"))[1:] {
		k, v, _ := bytes.Cut(l, []byte(":"))
		if strings.EqualFold(string(bytes.TrimSpace(k)), "content-length") {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil || n < 0 || n > maxDiscoveryBody {
				return 0, 0, 0, false
			}
			cl = n
		}
	}
	return status, hdrEnd, cl, true
}

// rewriteDiscovery points every DevTools URL in a discovery JSON document
// back through the daemon: webSocketDebuggerUrl and the ws= parameter of
// devtoolsFrontendUrl(Compat). Everything else is copied byte for byte
// (never decoded: titles and URLs stay out of Go strings).
func rewriteDiscovery(body []byte, wsScheme, host, prefix string) ([]byte, error) {
	var spans []span
	i := skipWS(body, 0)
	end, err := collectURLs(body, i, 1, wsScheme, host, prefix, &spans)
	if err != nil {
		return nil, err
	}
	if skipWS(body, end) != len(body) {
		return nil, errSyntax
	}
	size := len(body)
	for _, s := range spans {
		size += len(s.repl) - (s.end - s.start)
	}
	out := make([]byte, 0, size)
	last := 0
	for _, s := range spans {
		out = append(out, body[last:s.start]...)
		out = append(out, s.repl...)
		last = s.end
	}
	return append(out, body[last:]...), nil
}

type span struct {
	start, end int
	repl       []byte
}

func collectURLs(b []byte, i, depth int, wsScheme, host, prefix string, spans *[]span) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	if depth > maxDepth {
		return 0, errDepth
	}
	switch b[i] {
	case '{':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return 0, errSyntax
			}
			ke, _, err := scanString(b, i, false)
			if err != nil {
				return 0, err
			}
			key := string(b[i+1 : ke])
			i = skipWS(b, ke+1)
			if i >= len(b) || b[i] != ':' {
				return 0, errSyntax
			}
			i = skipWS(b, i+1)
			var ve int
			if i < len(b) && b[i] == '"' && (key == "webSocketDebuggerUrl" || key == "devtoolsFrontendUrl" || key == "devtoolsFrontendUrlCompat") {
				e, _, err := scanString(b, i, false)
				if err != nil {
					return 0, err
				}
				ve = e + 1
				var v string
				if err := json.Unmarshal(b[i:ve], &v); err != nil {
					return 0, err
				}
				nv := v
				if key == "webSocketDebuggerUrl" {
					if j := strings.Index(v, "/devtools/"); j >= 0 {
						nv = wsScheme + "://" + host + prefix + v[j:]
					}
				} else {
					nv = rewriteFrontend(v, host, prefix)
				}
				if nv != v {
					q, _ := json.Marshal(nv)
					*spans = append(*spans, span{i, ve, q})
				}
			} else {
				e, err := collectURLs(b, i, depth+1, wsScheme, host, prefix, spans)
				if err != nil {
					return 0, err
				}
				ve = e
			}
			i = skipWS(b, ve)
			if i < len(b) && b[i] == ',' {
				i = skipWS(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				return i + 1, nil
			}
			return 0, errSyntax
		}
	case '[':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		for {
			e, err := collectURLs(b, i, depth+1, wsScheme, host, prefix, spans)
			if err != nil {
				return 0, err
			}
			i = skipWS(b, e)
			if i < len(b) && b[i] == ',' {
				i = skipWS(b, i+1)
				continue
			}
			if i < len(b) && b[i] == ']' {
				return i + 1, nil
			}
			return 0, errSyntax
		}
	}
	return skipValue(b, i, false, depth)
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

// pageInfo learns the root target of a page-level socket (type and URL)
// from the browser's target list. Best effort.
func (p *Proxy) pageInfo(ctx context.Context, s *Session, id string, tr *tracker) {
	body, status, _, err := p.upstreamDo(ctx, s, http.MethodGet, "/json/list")
	if err != nil {
		return
	}
	defer wipe(body)
	if status != http.StatusOK {
		return
	}
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '[' {
		return
	}
	i = skipWS(body, i+1)
	for i < len(body) && body[i] == '{' {
		e, err := skipValue(body, i, false, 1)
		if err != nil {
			return
		}
		obj := body[i:e]
		if idField(obj, "id") == id {
			u, esc := strField(obj, "url")
			tr.mu.Lock()
			tr.root.Type = idField(obj, "type")
			tr.root.URL = tr.ownString(u, esc)
			tr.root.Origin = originOf(tr.root.URL)
			tr.mu.Unlock()
			return
		}
		i = skipWS(body, e)
		if i < len(body) && body[i] == ',' {
			i = skipWS(body, i+1)
		}
	}
}
