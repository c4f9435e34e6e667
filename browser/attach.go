package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Version is Chrome's /json/version answer.
type Version struct {
	Browser              string `json:"Browser"`
	ProtocolVersion      string `json:"Protocol-Version"`
	UserAgent            string `json:"User-Agent"`
	V8Version            string `json:"V8-Version"`
	WebKitVersion        string `json:"WebKit-Version"`
	WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
}

// Attach checks that an existing Chrome answers /json/version at rawURL (http://host:port) and
// returns a Browser for it. Close does nothing to that Chrome, Done never closes and PID is 0.
func Attach(ctx context.Context, rawURL string) (*Browser, error) {
	base, err := normalizeURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("attach browser: %w", err)
	}
	v, err := fetchVersion(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("attach browser at %s: %w", base, err)
	}
	return &Browser{url: base, wsURL: v.WebSocketDebuggerURL, attach: true, done: make(chan struct{})}, nil
}

// Version fetches /json/version from the browser.
func (b *Browser) Version(ctx context.Context) (Version, error) {
	v, err := fetchVersion(ctx, b.url)
	if err != nil {
		return Version{}, fmt.Errorf("browser version: %w", err)
	}
	return v, nil
}

func normalizeURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("chrome url %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("chrome url %q: scheme must be http or https (the DevTools HTTP endpoint, not a ws:// URL)", raw)
	}
	if u.Host == "" || u.Port() == "" {
		return "", fmt.Errorf("chrome url %q: want http://host:port", raw)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("chrome url %q: want only http://host:port, without path, query or credentials", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

var versionClient = &http.Client{
	// Never follow redirects or use a proxy: the DevTools endpoint is local and answers directly.
	Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func fetchVersion(ctx context.Context, base string) (Version, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/json/version", nil)
	if err != nil {
		return Version{}, err
	}
	// Chrome refuses a Host header that is neither an IP address nor localhost (DNS-rebinding guard).
	if host := req.URL.Hostname(); host != "localhost" && net.ParseIP(host) == nil {
		req.Host = "localhost:" + req.URL.Port()
	}
	resp, err := versionClient.Do(req)
	if err != nil {
		return Version{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return Version{}, fmt.Errorf("read /json/version: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return Version{}, fmt.Errorf("/json/version answered %s", resp.Status)
	}
	var v Version
	if err := json.Unmarshal(body, &v); err != nil {
		return Version{}, fmt.Errorf("/json/version is not Chrome's JSON: %w", err)
	}
	if v.WebSocketDebuggerURL == "" || v.Browser == "" {
		return Version{}, fmt.Errorf("/json/version lacks Browser or webSocketDebuggerUrl: not a Chrome DevTools endpoint")
	}
	return v, nil
}
