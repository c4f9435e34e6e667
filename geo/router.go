package geo

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/awnumar/memguard"
)

// Credentials resolves an upstream's password_secret name into its value.
// The daemon implements it on the vault (credentials_tenant). geo destroys
// the returned buffer once it has built what it needs from it.
type Credentials func(ctx context.Context, secretName string) (*memguard.LockedBuffer, error)

// Options configure a Router. Zero durations take the defaults below.
type Options struct {
	Pools       map[string]PoolConfig
	Credentials Credentials
	Logger      *slog.Logger // nil: discard
	Metrics     *Metrics     // nil: unregistered metrics

	DialTimeout      time.Duration // TCP dial to an upstream (default 10s)
	HandshakeTimeout time.Duration // TLS + CONNECT/SOCKS handshake with an upstream (default 15s)
	IdleTimeout      time.Duration // a tunnel or idle connection with no traffic is closed (default 5m)
	HealthInterval   time.Duration // health check period of a healthy upstream (default 30s)

	// RootCAs verifies https:// upstreams (nil: the system roots). There is
	// no way to skip verification.
	RootCAs *x509.CertPool
	// HealthTarget, if set (host:port), makes health checks open a full
	// authenticated tunnel to it instead of only reaching the upstream.
	HealthTarget string
}

// Defaults for zero Options durations.
const (
	DefaultDialTimeout      = 10 * time.Second
	DefaultHandshakeTimeout = 15 * time.Second
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultHealthInterval   = 30 * time.Second
)

// ErrUnknownPool is returned by OpenSession for a pool the config lacks.
var ErrUnknownPool = errors.New("unknown geo pool")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("geo router closed")

type pool struct {
	name string
	cfg  PoolConfig
	ups  []*upstream
}

// Router holds the geo pools, health-checks their upstreams and opens one
// Forwarder per geo session.
type Router struct {
	opts    Options
	log     *slog.Logger
	metrics *Metrics

	mu      sync.Mutex
	pools   map[string]*pool
	current map[*upstream]bool // upstreams of the current pools
	orphans map[*upstream]bool // retired by Reload, still used by open sessions
	fwds    map[*Forwarder]struct{}
	closed  bool
	started bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	wake    chan struct{}

	probeHook func(u *upstream, err error) // tests only; set before Start
}

// New validates o.Pools and returns a Router. It starts nothing: call Start
// for health checks.
func New(o Options) (*Router, error) {
	if errs := ValidatePools(o.Pools); len(errs) > 0 {
		return nil, fmt.Errorf("geo: invalid pools: %w", errors.Join(errs...))
	}
	if err := needCredentials(o.Pools, o.Credentials); err != nil {
		return nil, err
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = DefaultHealthInterval
	}
	if o.HealthTarget != "" && !validTarget(o.HealthTarget) {
		return nil, errors.New("geo: HealthTarget must be host:port")
	}
	r := &Router{
		opts:    o,
		log:     o.Logger,
		metrics: o.Metrics,
		orphans: map[*upstream]bool{},
		fwds:    map[*Forwarder]struct{}{},
		wake:    make(chan struct{}, 1),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.metrics == nil {
		r.metrics = NewMetrics(nil)
	}
	pools, current, err := r.build(o.Pools, nil)
	if err != nil {
		return nil, err
	}
	r.pools, r.current = pools, current
	r.opts.Pools = nil
	return r, nil
}

func needCredentials(pools map[string]PoolConfig, c Credentials) error {
	if c != nil {
		return nil
	}
	for name, p := range pools {
		for i, u := range p.Upstreams {
			if u.Username != "" {
				return fmt.Errorf("geo pool %q upstream %d: has a username but no Credentials resolver is configured", name, i)
			}
		}
	}
	return nil
}

// build makes pool objects, reusing upstreams of old whose configuration is
// unchanged (they keep their health state and credential).
func (r *Router) build(cfgs map[string]PoolConfig, old map[string]*pool) (map[string]*pool, map[*upstream]bool, error) {
	pools := make(map[string]*pool, len(cfgs))
	current := map[*upstream]bool{}
	for name, pc := range cfgs {
		p := &pool{name: name, cfg: clonePool(pc)}
		for i, uc := range pc.Upstreams {
			var u *upstream
			if op, ok := old[name]; ok && i < len(op.ups) && op.ups[i].same(name, i, uc) {
				u = op.ups[i]
			} else {
				nu, err := newUpstream(r, name, i, uc)
				if err != nil {
					return nil, nil, err
				}
				u = nu
			}
			p.ups = append(p.ups, u)
			current[u] = true
		}
		pools[name] = p
	}
	return pools, current, nil
}

func clonePool(p PoolConfig) PoolConfig {
	p.Upstreams = append([]UpstreamConfig(nil), p.Upstreams...)
	return p
}

// Start runs health checks (with backoff for upstreams that are down) until
// ctx ends or the Router closes. Calling it again does nothing.
func (r *Router) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.started {
		return
	}
	r.started = true
	ctx, r.cancel = context.WithCancel(ctx)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.healthLoop(ctx)
	}()
}

func (r *Router) wakeHealth() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Router) currentUpstreams() []*upstream {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*upstream, 0, len(r.current))
	for u := range r.current {
		out = append(out, u)
	}
	return out
}

func (r *Router) healthLoop(ctx context.Context) {
	var probes sync.WaitGroup
	defer probes.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		wait := r.opts.HealthInterval
		for _, u := range r.currentUpstreams() {
			u.hmu.Lock()
			if !u.checking && !now.Before(u.next) {
				u.checking = true
				probes.Add(1)
				go func() {
					defer probes.Done()
					r.probeOne(ctx, u)
					r.wakeHealth()
				}()
			} else if !u.checking {
				wait = min(wait, u.next.Sub(now))
			}
			u.hmu.Unlock()
		}
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
	}
}

func (r *Router) probeOne(ctx context.Context, u *upstream) {
	pctx, cancel := context.WithTimeout(ctx, r.opts.DialTimeout+r.opts.HandshakeTimeout)
	err := u.probe(pctx)
	cancel()
	u.hmu.Lock()
	u.checking = false
	u.hmu.Unlock()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		u.markDown(err)
	} else {
		u.markUp()
	}
	if r.probeHook != nil {
		r.probeHook(u, err)
	}
}

// checkAll probes every current upstream once, now, and waits for the results.
func (r *Router) checkAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, u := range r.currentUpstreams() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.probeOne(ctx, u)
		}()
	}
	wg.Wait()
}

// Reload replaces the pools (SIGHUP). New sessions use the new pools;
// sessions already open keep the pool they started with until they close.
// On error nothing changes.
func (r *Router) Reload(pools map[string]PoolConfig) error {
	if errs := ValidatePools(pools); len(errs) > 0 {
		return fmt.Errorf("geo: invalid pools: %w", errors.Join(errs...))
	}
	if err := needCredentials(pools, r.opts.Credentials); err != nil {
		return err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	np, cur, err := r.build(pools, r.pools)
	if err != nil {
		r.mu.Unlock()
		return err
	}
	var retire []*upstream
	for u := range r.current {
		if cur[u] {
			continue
		}
		if u.refs > 0 {
			r.orphans[u] = true
		} else {
			retire = append(retire, u)
		}
	}
	for u := range r.orphans {
		if cur[u] { // came back unchanged
			delete(r.orphans, u)
		}
	}
	r.pools, r.current = np, cur
	forget := r.forgettable(retire)
	r.mu.Unlock()
	for i, u := range retire {
		r.retire(u, forget[i])
	}
	r.wakeHealth()
	r.log.Info("geo pools reloaded", "pools", len(np))
	return nil
}

// forgettable reports, for each upstream to retire, whether its metric
// series may be deleted: not when a current upstream has the same labels
// (it shares the series). Called with r.mu held.
func (r *Router) forgettable(us []*upstream) []bool {
	out := make([]bool, len(us))
	for i, u := range us {
		out[i] = true
		for c := range r.current {
			if c.pool == u.pool && c.index == u.index && c.p.addr == u.p.addr {
				out[i] = false
				break
			}
		}
	}
	return out
}

func (r *Router) retire(u *upstream, forgetMetrics bool) {
	u.dropCred(true)
	u.closeConns()
	if forgetMetrics {
		r.metrics.forget(u)
	}
}

// HasPool reports whether the current config has pool name.
func (r *Router) HasPool(name string) bool {
	_, ok := r.Pool(name)
	return ok
}

// Pool returns the current configuration of pool name.
func (r *Router) Pool(name string) (PoolConfig, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pools[name]
	if !ok {
		return PoolConfig{}, false
	}
	return clonePool(p.cfg), true
}

// SecretNames lists (sorted, unique) the password_secret names of the
// current pools and of pools still used by open sessions: the daemon puts
// their values into every session's scrub scope.
func (r *Router) SecretNames() []string {
	r.mu.Lock()
	seen := map[string]bool{}
	for u := range r.current {
		if s := u.cfg.PasswordSecret; s != "" {
			seen[s] = true
		}
	}
	for u := range r.orphans {
		if s := u.cfg.PasswordSecret; s != "" {
			seen[s] = true
		}
	}
	r.mu.Unlock()
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// OpenSession starts a Forwarder for a session using pool name: a local
// forward proxy on its own 127.0.0.1 port whose traffic leaves only through
// that pool. ErrUnknownPool if the pool does not exist.
func (r *Router) OpenSession(ctx context.Context, name string) (*Forwarder, error) {
	return r.OpenSessionWith(ctx, name, SessionOptions{})
}

// SessionOptions configure one session's Forwarder.
type SessionOptions struct {
	// RestrictPeers (launch mode, where the daemon starts the browser):
	// the forwarder serves only connections from the process tree given to
	// Forwarder.AllowProcessTree, and none before it is called. Attach mode
	// cannot use it (the shared Chrome is not the daemon's child and may
	// run elsewhere).
	RestrictPeers bool
}

// OpenSessionWith is OpenSession with options.
func (r *Router) OpenSessionWith(ctx context.Context, name string, o SessionOptions) (*Forwarder, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	p, ok := r.pools[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownPool, name)
	}
	f, err := newForwarder(r, p, o)
	if err != nil {
		return nil, err
	}
	for _, u := range p.ups {
		u.refs++
	}
	r.fwds[f] = struct{}{}
	return f, nil
}

// release is called once by a closing Forwarder.
func (r *Router) release(f *Forwarder) {
	var retire []*upstream
	r.mu.Lock()
	if _, ok := r.fwds[f]; ok {
		delete(r.fwds, f)
		for _, u := range f.pool.ups {
			u.refs--
			if u.refs == 0 && r.orphans[u] {
				delete(r.orphans, u)
				retire = append(retire, u)
			}
		}
	}
	forget := r.forgettable(retire)
	r.mu.Unlock()
	for i, u := range retire {
		r.retire(u, forget[i])
	}
}

// Close stops health checks, closes every Forwarder and destroys every
// cached credential. It is safe to call more than once.
func (r *Router) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	if r.cancel != nil {
		r.cancel()
	}
	fwds := make([]*Forwarder, 0, len(r.fwds))
	for f := range r.fwds {
		fwds = append(fwds, f)
	}
	r.mu.Unlock()
	r.wg.Wait()
	var errs []error
	for _, f := range fwds {
		if err := f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	r.mu.Lock()
	all := make([]*upstream, 0, len(r.current)+len(r.orphans))
	for u := range r.current {
		all = append(all, u)
	}
	for u := range r.orphans {
		all = append(all, u)
	}
	r.orphans = map[*upstream]bool{}
	r.mu.Unlock()
	for _, u := range all {
		u.dropCred(true)
		u.closeConns()
	}
	return errors.Join(errs...)
}
