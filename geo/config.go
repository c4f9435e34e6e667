package geo

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/language"
)

// UpstreamConfig is one upstream proxy of a pool (config `geo.pools.<name>.upstreams[]`).
type UpstreamConfig struct {
	// URL is scheme://host[:port] with scheme http, https or socks5. It must not
	// carry credentials: the username goes in Username, the password in the vault.
	URL string `yaml:"url" json:"url"`
	// Username for the upstream (Basic Proxy-Authorization or SOCKS5
	// username/password). Empty means the upstream needs no authentication.
	// On http and https upstreams it may hold the placeholder {session},
	// replaced by an id of SessionIDLen random lowercase letters and digits
	// that is the same for every request of one geo session and differs
	// between sessions: the way commercial gateways are told to keep a
	// session on one exit ("customer-acme-cc-de-session-{session}").
	Username string `yaml:"username" json:"username"`
	// PasswordSecret names the secret (in geo.credentials_tenant) holding the password.
	PasswordSecret string `yaml:"password_secret" json:"password_secret"`
}

// PoolConfig is one geo pool (config `geo.pools.<name>`).
type PoolConfig struct {
	Timezone  string           `yaml:"timezone" json:"timezone"`
	Locale    string           `yaml:"locale" json:"locale"`
	Upstreams []UpstreamConfig `yaml:"upstreams" json:"upstreams"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// scheme of an upstream after validation.
type scheme int

const (
	schemeHTTP scheme = iota + 1
	schemeHTTPS
	schemeSOCKS5
)

// parsedUpstream is a validated upstream: never holds userinfo.
type parsedUpstream struct {
	scheme scheme
	host   string // hostname or IP, without brackets
	addr   string // host:port
}

// parseUpstreamURL validates raw. Its errors never repeat the URL (it may hold
// credentials an operator pasted by mistake).
func parseUpstreamURL(raw string) (parsedUpstream, error) {
	var p parsedUpstream
	if strings.TrimSpace(raw) == "" {
		return p, errors.New("url is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the input: do not wrap it.
		return p, errors.New("url does not parse")
	}
	if u.User != nil {
		return p, errors.New("url must not contain credentials (use username and password_secret)")
	}
	defPort := ""
	switch strings.ToLower(u.Scheme) {
	case "http":
		p.scheme, defPort = schemeHTTP, "80"
	case "https":
		p.scheme, defPort = schemeHTTPS, "443"
	case "socks5", "socks5h":
		p.scheme, defPort = schemeSOCKS5, "1080"
	case "":
		return p, errors.New("url has no scheme (want http://, https:// or socks5://)")
	default:
		return p, fmt.Errorf("unsupported url scheme %q (want http, https or socks5)", u.Scheme)
	}
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return p, errors.New("url must be scheme://host[:port] with no path, query or fragment")
	}
	p.host = u.Hostname()
	if p.host == "" {
		return p, errors.New("url has no host")
	}
	port := u.Port()
	if port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return p, errors.New("url has an empty port")
		}
		port = defPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return p, errors.New("url port must be 1-65535")
	}
	p.addr = net.JoinHostPort(p.host, port)
	return p, nil
}

// ValidatePools checks every pool and returns every problem found (nil when
// all is well), sorted by pool name. No error ever repeats a URL or a value
// that could be a credential.
func ValidatePools(pools map[string]PoolConfig) []error {
	var errs []error
	names := make([]string, 0, len(pools))
	for n := range pools {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		p := pools[name]
		bad := func(format string, a ...any) {
			errs = append(errs, fmt.Errorf("geo pool %q: "+format, append([]any{name}, a...)...))
		}
		if !nameRE.MatchString(name) {
			bad("invalid pool name (want %s)", nameRE.String())
		}
		if p.Timezone == "" {
			bad("timezone is required")
		} else if _, err := time.LoadLocation(p.Timezone); err != nil || p.Timezone == "Local" {
			bad("unknown timezone %q", p.Timezone)
		}
		if p.Locale == "" {
			bad("locale is required")
		} else if _, err := language.Parse(p.Locale); err != nil {
			bad("locale %q is not a BCP 47 language tag", p.Locale)
		}
		if len(p.Upstreams) == 0 {
			bad("no upstreams")
		}
		for i, u := range p.Upstreams {
			pu, err := parseUpstreamURL(u.URL)
			if err != nil {
				bad("upstream %d: %v", i, err)
			}
			if u.Username != "" {
				if strings.ContainsAny(u.Username, ":") || strings.IndexFunc(u.Username, isCtl) >= 0 {
					bad("upstream %d: username must not contain ':' or control characters", i)
				}
				if strings.ContainsAny(strings.ReplaceAll(u.Username, SessionPlaceholder, ""), "{}") {
					bad("upstream %d: username: the only placeholder is %s", i, SessionPlaceholder)
				}
				if templated(u.Username) && pu.scheme == schemeSOCKS5 {
					bad("upstream %d: username: %s is supported on http and https upstreams only", i, SessionPlaceholder)
				}
				if n := len(expandUsername(u.Username, strings.Repeat("x", SessionIDLen))); n > 255 {
					bad("upstream %d: username longer than 255 bytes (%d with %s expanded)", i, n, SessionPlaceholder)
				}
				if u.PasswordSecret == "" {
					bad("upstream %d: username set but password_secret missing", i)
				}
			}
			if u.PasswordSecret != "" {
				if u.Username == "" {
					bad("upstream %d: password_secret set but username missing", i)
				}
				if !nameRE.MatchString(u.PasswordSecret) {
					bad("upstream %d: invalid password_secret name", i)
				}
			}
		}
	}
	return errs
}

func isCtl(r rune) bool { return r < 0x20 || r == 0x7f }

// SessionPlaceholder in an upstream's username stands for the geo
// session's id; SessionIDLen is the id's length.
const (
	SessionPlaceholder = "{session}"
	SessionIDLen       = 16
)

func templated(username string) bool { return strings.Contains(username, SessionPlaceholder) }

func expandUsername(username, session string) string {
	return strings.ReplaceAll(username, SessionPlaceholder, session)
}

// BrowserArgs returns the Chromium flags that route a browser through f and
// make it look like it lives where pool's exit is: every request (loopback
// included) through the forwarder, no non-proxied WebRTC UDP, the pool's
// language. The time zone goes through the environment (BrowserEnv) plus the
// daemon's CDP Emulation.setTimezoneOverride.
func BrowserArgs(f *Forwarder, pool PoolConfig) []string {
	args := []string{
		"--proxy-server=" + f.ProxyURL(),
		// Chrome bypasses localhost by default; <-loopback> removes that
		// implicit rule so nothing leaves except through the forwarder.
		"--proxy-bypass-list=" + ProxyBypassList,
		"--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
		"--webrtc-ip-handling-policy=disable_non_proxied_udp",
	}
	if pool.Locale != "" {
		args = append(args, "--lang="+pool.Locale, "--accept-lang="+AcceptLanguage(pool.Locale))
	}
	return args
}

// BrowserEnv returns the environment entries ("KEY=value") the browser
// process needs for pool: TZ so pages, iframes and workers share the pool's
// time zone, and LANGUAGE for the UI locale.
func BrowserEnv(pool PoolConfig) []string {
	var env []string
	if pool.Timezone != "" {
		env = append(env, "TZ="+pool.Timezone)
	}
	if pool.Locale != "" {
		env = append(env, "LANGUAGE="+strings.ReplaceAll(pool.Locale, "-", "_"))
	}
	return env
}

// AcceptLanguage returns the Accept-Language list for locale: the tag itself
// then its base language ("de-DE" -> "de-DE,de").
func AcceptLanguage(locale string) string {
	t, err := language.Parse(locale)
	if err != nil {
		return locale
	}
	base, conf := t.Base()
	if conf == language.No || base.String() == t.String() {
		return t.String()
	}
	return t.String() + "," + base.String()
}
