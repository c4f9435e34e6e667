package daemon

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/awnumar/memguard"

	"github.com/cdpvault/cdpvault/api"
	"github.com/cdpvault/cdpvault/browser"
	"github.com/cdpvault/cdpvault/cdpproxy"
	"github.com/cdpvault/cdpvault/ctxguard"
	"github.com/cdpvault/cdpvault/geo"
	"github.com/cdpvault/cdpvault/inject"
	"github.com/cdpvault/cdpvault/scrub"
	"github.com/cdpvault/cdpvault/secretstore"
	"github.com/cdpvault/cdpvault/totp"
)

// session is one daemon session: its browser, its geo forwarder and its
// registration in the proxy.
type session struct {
	id        string
	token     string
	tenant    string
	secrets   []string
	geo       string
	created   time.Time
	expires   time.Time
	browserID string // the id in /devtools/browser/<id>

	ps    *cdpproxy.Session
	br    *browser.Browser
	fwd   *geo.Forwarder
	guard *ctxguard.Guard // attach mode with geo: confines the session to its proxied contexts
	index *tenantIndex
	timer *time.Timer
	once  sync.Once
}

// sessionManager creates, lists and ends sessions; it implements
// api.Sessions.
type sessionManager struct {
	d        *daemon
	mu       sync.Mutex
	sessions map[string]*session // by id
	byToken  map[string]*session
	closed   bool
}

func newSessionManager(d *daemon) *sessionManager {
	return &sessionManager{d: d, sessions: map[string]*session{}, byToken: map[string]*session{}}
}

// discoveryAllowed applies a geo session's context confinement to
// discovery requests (PUT /json/new would open a page in the shared default
// context, outside the pool). sub is the path after /session/<token>.
func (m *sessionManager) discoveryAllowed(token, sub string) bool {
	m.mu.Lock()
	s := m.byToken[token]
	m.mu.Unlock()
	return s == nil || s.guard == nil || s.guard.DiscoveryAllowed(sub)
}

// filterDiscovery removes other sessions' targets from an attach-mode
// session's discovery target lists (/json, /json/list). A session that is
// gone while its request runs gets nothing in attach mode (fail closed).
func (m *sessionManager) filterDiscovery(token string, body []byte) ([]byte, error) {
	m.mu.Lock()
	s := m.byToken[token]
	m.mu.Unlock()
	if s == nil {
		if m.d.cfg.Chrome.URL != "" {
			return nil, errors.New("session ended")
		}
		return body, nil
	}
	if s.guard == nil {
		return body, nil
	}
	return s.guard.FilterDiscovery("", body)
}

func randomID(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Create validates the request against the tenant, starts (or attaches) a
// browser and registers the session with the proxy.
func (m *sessionManager) Create(ctx context.Context, t *secretstore.Tenant, req api.SessionRequest, baseURL string) (api.SessionView, error) {
	d := m.d
	m.mu.Lock()
	n, closed := len(m.sessions), m.closed
	m.mu.Unlock()
	if closed {
		return api.SessionView{}, &api.Error{Status: http.StatusServiceUnavailable, Code: "shutting_down", Message: "the daemon is stopping"}
	}
	if max := d.cfg.Sessions.Max; max > 0 && n >= max {
		return api.SessionView{}, &api.Error{Status: http.StatusTooManyRequests, Code: "too_many_sessions", Message: fmt.Sprintf("at most %d sessions may run at once", max)}
	}
	names := dedupe(req.Secrets)
	for _, name := range names {
		if _, err := t.Secret(ctx, name); err != nil {
			if errors.Is(err, secretstore.ErrNotFound) {
				return api.SessionView{}, &api.Error{Status: http.StatusNotFound, Code: "secret_not_found", Message: fmt.Sprintf("secret %s not found", name)}
			}
			return api.SessionView{}, fmt.Errorf("session secrets: %w", err)
		}
	}
	var pool geo.PoolConfig
	if req.Geo != "" {
		ok := false
		if d.geo != nil {
			pool, ok = d.geo.Pool(req.Geo)
		}
		if !ok {
			return api.SessionView{}, &api.Error{Status: http.StatusBadRequest, Code: "unknown_geo_pool", Message: fmt.Sprintf("no geo pool named %q", req.Geo)}
		}
	}
	ttl := d.cfg.Sessions.DefaultTTL
	if req.TTLSeconds > 0 {
		ttl = time.Duration(req.TTLSeconds) * time.Second
	}
	if max := d.cfg.Sessions.MaxTTL; max > 0 && ttl > max {
		return api.SessionView{}, &api.Error{Status: http.StatusBadRequest, Code: "invalid_ttl", Message: fmt.Sprintf("ttl_seconds exceeds the maximum of %d", int(max.Seconds()))}
	}

	s := &session{
		id:      randomID("s_", 12),
		token:   randomToken(),
		tenant:  t.Name(),
		secrets: names,
		geo:     req.Geo,
		created: time.Now().UTC(),
	}
	s.expires = s.created.Add(ttl)

	ix, err := d.indexes.acquire(ctx, t)
	if err != nil {
		return api.SessionView{}, fmt.Errorf("scrub index: %w", err)
	}
	s.index = ix
	ok := false
	defer func() {
		if !ok {
			s.release(d)
		}
	}()

	if req.Geo != "" {
		// launch mode: the forwarder serves only the session's own browser
		s.fwd, err = d.geo.OpenSessionWith(ctx, req.Geo, geo.SessionOptions{RestrictPeers: d.cfg.Chrome.URL == ""})
		if err != nil {
			return api.SessionView{}, fmt.Errorf("geo session: %w", err)
		}
	}
	upstream := d.cfg.Chrome.URL
	if upstream != "" {
		// Attach mode: the Chrome is shared. Every session is confined to
		// browser contexts it created (a geo session's get its forwarder as
		// proxy), sees no other session's targets, and cannot close the
		// shared browser; its contexts are disposed when it ends.
		if s.fwd != nil {
			s.guard = ctxguard.NewGuard(ctxguard.Options{ProxyServer: s.fwd.ProxyURL(), BypassList: geo.ProxyBypassList,
				Timezone: pool.Timezone, Locale: pool.Locale, AcceptLanguage: geo.AcceptLanguage(pool.Locale), Logger: d.logger})
		} else {
			s.guard = ctxguard.NewGuard(ctxguard.Options{Direct: true, Logger: d.logger})
		}
	} else {
		s.br, err = browser.Launch(ctx, d.browserOptions(s.fwd, &pool))
		if err != nil {
			return api.SessionView{}, &api.Error{Status: http.StatusServiceUnavailable, Code: "browser_unavailable", Message: "could not start a browser: " + oneLine(err).Error()}
		}
		upstream = s.br.URL()
		if s.fwd != nil {
			if err := s.fwd.AllowProcessTree(s.br.PID()); err != nil {
				return api.SessionView{}, fmt.Errorf("geo session: %w", err)
			}
		}
	}
	s.browserID, err = browserID(ctx, upstream)
	if err != nil {
		return api.SessionView{}, &api.Error{Status: http.StatusBadGateway, Code: "browser_unavailable", Message: oneLine(err).Error()}
	}

	vault := tenantVault{t: t}
	audit := tenantAudit{t: t, session: s.id, logger: d.logger, bySecret: d.injectBySecret}
	granted := append([]string(nil), names...)
	guard := s.guard
	var taints *inject.Taints // shared by the session's connections
	if d.cfg.Injection.Taint != TaintOff {
		taints = inject.NewTaints()
	}
	s.ps = &cdpproxy.Session{
		ID:       s.id,
		Token:    s.token,
		Tenant:   s.tenant,
		Secrets:  granted,
		Upstream: upstream,
		Values:   ix,
		Interceptors: func(*cdpproxy.Session) []cdpproxy.Interceptor {
			chain := make([]cdpproxy.Interceptor, 0, 3)
			switch {
			case guard != nil:
				chain = append(chain, guard.Interceptor())
			default:
				// Launch mode, geo or not: the agent may not route its
				// traffic through a proxy of its choosing (it would read the
				// login POST with the typed secret).
				chain = append(chain, ctxguard.NewLaunchGeo(ctxguard.Options{Logger: d.logger}))
			}
			return append(chain,
				inject.New(inject.Options{Vault: vault, Granted: granted, Audit: audit, Logger: d.logger, Metrics: d.injectM, Taints: taints}),
				guarded{inner: scrub.New(ix, scrub.Options{Logger: d.logger, Metrics: d.scrubM}), ix: ix},
			)
		},
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return api.SessionView{}, &api.Error{Status: http.StatusServiceUnavailable, Code: "shutting_down", Message: "the daemon is stopping"}
	}
	m.sessions[s.id] = s
	m.byToken[s.token] = s
	m.mu.Unlock()
	d.proxy.Register(s.ps)
	s.timer = time.AfterFunc(ttl, func() { m.end(s, "expired") })
	if s.br != nil {
		go func(done <-chan struct{}) {
			<-done
			m.end(s, "browser exited")
		}(s.br.Done())
	}
	ok = true
	d.logger.Info("session created", "session", s.id, "tenant", s.tenant, "geo", s.geo, "ttl_seconds", int(ttl.Seconds()))
	return s.view(baseURL), nil
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func dedupe(names []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

func (s *session) view(base string) api.SessionView {
	u, _ := url.Parse(base)
	wsScheme := "ws"
	if u != nil && u.Scheme == "https" {
		wsScheme = "wss"
	}
	host := ""
	if u != nil {
		host = u.Host
	}
	return api.SessionView{
		ID:        s.id,
		CDPURL:    base + "/session/" + s.token,
		WSURL:     wsScheme + "://" + host + "/session/" + s.token + "/devtools/browser/" + s.browserID,
		ExpiresAt: s.expires,
		Secrets:   s.secrets,
		Geo:       s.geo,
		CreatedAt: s.created,
	}
}

// List returns the tenant's sessions.
func (m *sessionManager) List(t *secretstore.Tenant, base string) []api.SessionView {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []api.SessionView
	for _, s := range m.sessions {
		if s.tenant == t.Name() {
			out = append(out, s.view(base))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// Delete ends one of the tenant's sessions; another tenant's is not found.
func (m *sessionManager) Delete(t *secretstore.Tenant, id string) error {
	m.mu.Lock()
	s, ok := m.sessions[id]
	m.mu.Unlock()
	if !ok || s.tenant != t.Name() {
		return &api.Error{Status: http.StatusNotFound, Code: "not_found", Message: "not found"}
	}
	m.end(s, "deleted")
	return nil
}

// end closes a session once: its sockets get close frames, its browser
// stops and its profile is removed.
func (m *sessionManager) end(s *session, reason string) {
	s.once.Do(func() {
		m.mu.Lock()
		delete(m.sessions, s.id)
		delete(m.byToken, s.token)
		m.mu.Unlock()
		if s.timer != nil {
			s.timer.Stop()
		}
		m.d.proxy.Unregister(s.token)
		s.release(m.d)
		m.d.logger.Info("session ended", "session", s.id, "tenant", s.tenant, "reason", reason)
	})
}

func (s *session) release(d *daemon) {
	if s.guard != nil && s.ps != nil {
		// Contexts whose proxy is about to close must not outlive it: a
		// later session's forwarder could get the same port.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.guard.Dispose(ctx, s.ps.Upstream); err != nil {
			d.logger.Warn("dispose browser contexts", "session", s.id, "err", err)
		}
		cancel()
	}
	if s.br != nil {
		if err := s.br.Close(); err != nil {
			d.logger.Warn("browser close", "session", s.id, "err", err)
		}
	}
	if s.fwd != nil {
		_ = s.fwd.Close()
	}
	if s.index != nil {
		d.indexes.release(s.index)
		s.index = nil
	}
}

// closeAndList refuses new sessions and returns the running ones.
func (m *sessionManager) closeAndList() []*session {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	all := make([]*session, 0, len(m.sessions))
	for _, s := range m.sessions {
		all = append(all, s)
	}
	return all
}

// closeAll ends every session and refuses new ones (shutdown).
func (m *sessionManager) closeAll(reason string) {
	all := m.closeAndList()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() { defer wg.Done(); m.end(s, reason) }()
	}
	wg.Wait()
}

// killAll stops every browser at once (forced stop).
func (m *sessionManager) killAll() {
	all := m.closeAndList()
	for _, s := range all {
		if s.br != nil {
			s.br.Kill()
		}
	}
	var wg sync.WaitGroup
	for _, s := range all {
		if s.br != nil {
			wg.Add(1)
			go func() { defer wg.Done(); _ = s.br.Close() }()
		}
	}
	wg.Wait()
}

// browserOptions builds the launch options of one session's browser.
func (d *daemon) browserOptions(fwd *geo.Forwarder, pool *geo.PoolConfig) browser.Options {
	o := browser.Options{Path: d.cfg.Chrome.Path, Args: append([]string(nil), d.cfg.Chrome.Args...), Logger: d.logger}
	if fwd != nil && pool != nil {
		o.Args = append(o.Args, geo.BrowserArgs(fwd, *pool)...)
		o.Env = append(o.Env, geo.BrowserEnv(*pool)...)
	}
	return o
}

// browserID reads the browser target id from /json/version.
func browserID(ctx context.Context, upstream string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, upstream+"/json/version", nil)
	if err != nil {
		return "", fmt.Errorf("browser version: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("browser version: %w", err)
	}
	defer resp.Body.Close()
	var v struct {
		WS string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v); err != nil {
		return "", fmt.Errorf("browser version: %w", err)
	}
	u, err := url.Parse(v.WS)
	if err != nil || len(u.Path) <= len("/devtools/browser/") {
		return "", fmt.Errorf("browser version: unexpected webSocketDebuggerUrl")
	}
	return u.Path[len("/devtools/browser/"):], nil
}

// tenantVault resolves secrets for injection within one tenant.
type tenantVault struct {
	t     *secretstore.Tenant
	clock func() time.Time // nil: time.Now
}

func (v tenantVault) now() time.Time {
	if v.clock != nil {
		return v.clock()
	}
	return time.Now()
}

// totpCode derives the code of time t from the seed in seed, into a new
// LockedBuffer (headroom-checked) that the caller destroys.
func totpCode(seed *memguard.LockedBuffer, t time.Time) (*memguard.LockedBuffer, error) {
	code, err := secretstore.NewLocked(totp.Digits)
	if err != nil {
		return nil, fmt.Errorf("totp code: %w", err)
	}
	if err := totp.Code(code.Bytes(), seed.Bytes(), t); err != nil {
		code.Destroy()
		return nil, err
	}
	code.Freeze()
	return code, nil
}

// Origins implements inject.Lister: metadata only, nothing decrypted.
func (v tenantVault) Origins(ctx context.Context, name string) ([]string, int, error) {
	meta, err := v.t.Secret(ctx, name)
	if err != nil {
		return nil, 0, vaultErr(name, "secret metadata", err)
	}
	return meta.Origins, meta.Version, nil
}

// vaultErr wraps a store error of secret name for the injector: a missing
// secret becomes inject.ErrUnknownSecret.
func vaultErr(name, what string, err error) error {
	if errors.Is(err, secretstore.ErrNotFound) {
		return fmt.Errorf("secret %s: %w", name, inject.ErrUnknownSecret)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (v tenantVault) Resolve(ctx context.Context, name string) (inject.Secret, error) {
	buf, meta, err := v.t.Reveal(ctx, name)
	if err != nil {
		return inject.Secret{}, vaultErr(name, "reveal", err)
	}
	if meta.Kind == secretstore.KindTOTP {
		// The page gets the current code, never the seed.
		code, err := totpCode(buf, v.now())
		buf.Destroy()
		if err != nil {
			return inject.Secret{}, fmt.Errorf("secret %s: %w", name, err)
		}
		buf = code
	}
	return inject.Secret{Value: buf, Origins: meta.Origins, Version: meta.Version}, nil
}
