package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/awnumar/memguard"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cdpvault/cdpvault/api"
	"github.com/cdpvault/cdpvault/browser"
	"github.com/cdpvault/cdpvault/cdpproxy"
	"github.com/cdpvault/cdpvault/geo"
	"github.com/cdpvault/cdpvault/inject"
	"github.com/cdpvault/cdpvault/redact"
	"github.com/cdpvault/cdpvault/scrub"
	"github.com/cdpvault/cdpvault/sdnotify"
	"github.com/cdpvault/cdpvault/secretstore"
)

// MinMemlock is the RLIMIT_MEMLOCK below which serve refuses to start:
// memguard locks every decrypted value and every scrub index's forms, and a
// smaller limit makes those allocations fail at run time instead.
const MinMemlock = 4 << 20

// ShutdownTimeout bounds a graceful stop.
const ShutdownTimeout = 10 * time.Second

// ErrForced is returned when a second signal cut a graceful stop short.
var ErrForced = errors.New("forced stop on second signal")

// daemon is one running `cdpvault serve`.
type daemon struct {
	cfg       Config
	overrides Overrides
	getenv    func(string) string
	logger    *slog.Logger
	level     *slog.LevelVar

	store    *secretstore.Store
	reg      *prometheus.Registry
	proxy    *cdpproxy.Proxy
	geo      *geo.Router
	geoM     *geo.Metrics
	indexes  *indexCache
	sessions *sessionManager
	injectM  *inject.Metrics
	// injectBySecret is nil unless metrics.secret_name_labels is on.
	injectBySecret *prometheus.CounterVec
	scrubM         *scrub.Metrics
}

// checkMemlock refuses to run with too little lockable memory.
func checkMemlock() error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(unix_RLIMIT_MEMLOCK, &rl); err != nil {
		return fmt.Errorf("read RLIMIT_MEMLOCK: %w", err)
	}
	if rl.Cur != ^uint64(0) && rl.Cur < MinMemlock {
		return fmt.Errorf("RLIMIT_MEMLOCK is %d KiB; cdpvault needs at least %d KiB of lockable memory for memguard (raise it with LimitMEMLOCK= in the unit or ulimit -l)", rl.Cur>>10, MinMemlock>>10)
	}
	return nil
}

const unix_RLIMIT_MEMLOCK = 8 // RLIMIT_MEMLOCK on Linux

// newLogger builds the JSON (or text) logger with a level that SIGHUP can
// change, wrapped so that no secret value known to the daemon reaches it.
func newLogger(cfg Config, stderr *os.File, ix func() *redact.Index, mu *sync.RWMutex) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	l, _ := parseLevel(cfg.Log.Level)
	level.Set(l)
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if cfg.Log.Format == "text" {
		h = slog.NewTextHandler(stderr, opts)
	} else {
		h = slog.NewJSONHandler(stderr, opts)
	}
	return slog.New(lockedHandler{inner: redact.NewHandler(h, ix), mu: mu}), level
}

// lockedHandler holds mu's read lock while a record is scrubbed and written,
// so the log index can be destroyed under the write lock at any moment.
type lockedHandler struct {
	inner slog.Handler
	mu    *sync.RWMutex
}

func (h lockedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h lockedHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.inner.Handle(ctx, r)
}

func (h lockedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return lockedHandler{inner: h.inner.WithAttrs(as), mu: h.mu}
}

func (h lockedHandler) WithGroup(name string) slog.Handler {
	return lockedHandler{inner: h.inner.WithGroup(name), mu: h.mu}
}

// openStoreWith loads the master key and opens the store of cfg.
func openStoreWith(ctx context.Context, cfg Config, getenv func(string) string, reg prometheus.Registerer) (*secretstore.Store, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	path, create := cfg.MasterKeyPath(getenv)
	key, err := secretstore.LoadMasterKey(path, create)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	st, err := secretstore.Open(ctx, secretstore.Options{Path: cfg.StorePath(), MasterKey: key, Metrics: reg})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return st, nil
}

func runServe(ctx context.Context, g Overrides, args []string, stdio IO) error {
	c := newCommand("serve")
	c.overrides = g
	c.fs.StringVar(&c.overrides.Listen, "listen", "", "CDP and API listen address")
	c.fs.StringVar(&c.overrides.MetricsListen, "metrics-listen", "", "metrics listen address")
	if err := c.parse(args); err != nil {
		return err
	}
	if len(c.args) > 0 {
		return usagef("serve takes no arguments")
	}
	cfg, err := LoadConfig(c.overrides, stdio.Getenv)
	if err != nil {
		return fmt.Errorf("config: %w", oneLine(err))
	}
	if err := checkMemlock(); err != nil {
		return err
	}
	d := &daemon{cfg: cfg, overrides: c.overrides, getenv: stdio.Getenv}
	return d.run(ctx, stdio)
}

func (d *daemon) run(ctx context.Context, stdio IO) (err error) {
	// Signals first: memguard's handler resets signal handling when
	// installed. SIGINT goes through memguard so that its state is wiped
	// on the way out; SIGTERM and SIGHUP are ours.
	sigs := make(chan os.Signal, 4)
	memguard.CatchSignal(func(s os.Signal) { sigs <- s; waitForever() }, os.Interrupt)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	stderr, _ := stdio.Stderr.(*os.File)
	if stderr == nil {
		stderr = os.Stderr
	}
	d.indexes = newIndexCache()
	d.logger, d.level = newLogger(d.cfg, stderr, d.indexes.logIndex, &d.indexes.logUse)
	d.indexes.logger = d.logger

	d.reg = prometheus.NewRegistry()
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.reg.MustRegister(buildInfo())

	d.store, err = openStoreWith(ctx, d.cfg, d.getenv, d.reg)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := d.store.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}()
	d.indexes.store = d.store

	if len(d.cfg.Geo.Pools) > 0 {
		if err := d.startGeo(ctx); err != nil {
			return err
		}
		defer d.geo.Close()
	}
	d.indexes.geo = d.geo
	d.indexes.credTenant = d.cfg.Geo.CredentialsTenant

	proxyMetrics := cdpproxy.NewMetrics(d.reg)
	d.proxy = cdpproxy.New(cdpproxy.Options{
		AllowOrigins: d.cfg.AllowOrigins,
		Logger:       d.logger,
		Metrics:      proxyMetrics,
		Discovery:    d.scrubDiscovery,
	})
	d.injectM = inject.NewMetrics(d.reg)
	if d.cfg.Metrics.SecretNameLabels {
		// Opted in by the operator: names are tenant data, values never.
		d.injectBySecret = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdpvault_secret_injections_by_secret_total",
			Help: "Injection attempts by tenant, secret name and result (metrics.secret_name_labels).",
		}, []string{"tenant", "secret", "result"})
		d.reg.MustRegister(d.injectBySecret)
	}
	d.scrubM = scrub.NewMetrics(d.reg)
	d.sessions = newSessionManager(d)
	if d.cfg.Chrome.URL == "" {
		// Profiles of browsers killed with a previous daemon (SIGKILL).
		if n, err := browser.RemoveStaleProfiles(""); err != nil {
			d.logger.Warn("stale browser profiles", "err", err)
		} else if n > 0 {
			d.logger.Info("removed stale browser profiles", "count", n)
		}
	}
	d.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cdpvault_ready",
		Help: "1 when the daemon is ready to serve (as /readyz), else 0.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if d.ready(ctx) != nil {
			return 0
		}
		return 1
	}))

	apiHandler := api.New(api.Options{
		Store:          d.store,
		Sessions:       d.sessions,
		AllowOrigins:   d.cfg.AllowOrigins,
		Logger:         d.logger,
		Metrics:        api.NewMetrics(d.reg),
		Ready:          d.ready,
		SecretsChanged: d.indexes.changed,
	})
	mux := http.NewServeMux()
	mux.Handle("/session/", refusePlaceholderURLs(d.guardDiscovery(d.proxy)))
	mux.Handle("/", apiHandler)

	ln, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	mln, err := net.Listen("tcp", d.cfg.MetricsListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("metrics listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(d.logger.Handler(), slog.LevelWarn)}
	msrv := &http.Server{Handler: metricsMux(d.reg), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- msrv.Serve(mln) }()

	bgctx, stopBG := context.WithCancel(ctx)
	defer stopBG()
	go d.indexes.refreshLoop(bgctx)
	go d.pruneAudit(bgctx)
	if d.geo != nil {
		d.geo.Start(bgctx)
	}
	d.logger.Info("listening", "addr", ln.Addr().String(), "metrics_addr", mln.Addr().String(),
		"mode", d.mode(), "data_dir", d.cfg.DataDir, "master_key_version", d.store.MasterKeyVersion())
	_ = sdnotify.Ready()
	go func() {
		// Pings stop while the store does not answer, so systemd restarts
		// a hung daemon.
		_ = sdnotify.WatchdogLoop(bgctx, func() bool {
			pctx, cancel := context.WithTimeout(bgctx, 5*time.Second)
			defer cancel()
			return d.store.Ping(pctx) == nil
		})
	}()

	for {
		select {
		case <-ctx.Done():
			return d.shutdown(srv, msrv, sigs)
		case err := <-errc:
			if errors.Is(err, http.ErrServerClosed) {
				continue
			}
			d.shutdown(srv, msrv, sigs)
			return fmt.Errorf("serve: %w", err)
		case s := <-sigs:
			if s == syscall.SIGHUP {
				d.reload()
				continue
			}
			d.logger.Info("stopping", "signal", s.String())
			return d.shutdown(srv, msrv, sigs)
		}
	}
}

// waitForever blocks memguard's signal goroutine while the daemon shuts
// down; the process exits from main when run returns.
func waitForever() { select {} }

func (d *daemon) mode() string {
	if d.cfg.Chrome.URL != "" {
		return "attach"
	}
	return "launch"
}

// shutdown stops in order within ShutdownTimeout: no new requests, close
// frames to every client, browsers stopped; the store is closed by run. A
// second signal forces an immediate stop (browsers are still killed).
func (d *daemon) shutdown(srv, msrv *http.Server, sigs <-chan os.Signal) error {
	_ = sdnotify.Stopping()
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Shutdown(ctx)
		_ = d.proxy.Shutdown(ctx)
		d.sessions.closeAll("daemon stopping")
		_ = msrv.Shutdown(ctx)
		d.indexes.destroy()
	}()
	for {
		select {
		case <-done:
			d.logger.Info("stopped")
			return nil
		case s := <-sigs:
			if s == syscall.SIGHUP {
				continue
			}
			d.logger.Warn("second signal: forcing stop", "signal", s.String())
			d.sessions.killAll()
			return ErrForced
		case <-ctx.Done():
			d.sessions.killAll()
			return fmt.Errorf("shutdown: %w", ctx.Err())
		}
	}
}

// reload re-reads the config file on SIGHUP: the log level and geo pools
// change; sessions keep running. Other keys need a restart.
func (d *daemon) reload() {
	cfg, err := LoadConfig(d.overrides, d.getenv)
	if err != nil {
		d.logger.Error("reload: config rejected, keeping the running one", "err", oneLine(err).Error())
		return
	}
	_ = sdnotify.Reloading()
	defer sdnotify.Ready()
	if l, err := parseLevel(cfg.Log.Level); err == nil {
		d.level.Set(l)
	}
	if d.geo != nil {
		if err := d.geo.Reload(cfg.Geo.geoPools()); err != nil {
			d.logger.Error("reload: geo pools", "err", err)
		} else {
			d.cfg.Geo = cfg.Geo
			// New upstream passwords join every session's scrub scope
			// before any new session can use them.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			d.indexes.refreshAll(ctx)
			cancel()
		}
	} else if len(cfg.Geo.Pools) > 0 {
		d.logger.Warn("reload: geo pools were added; they take effect after a restart")
	}
	d.cfg.Log = cfg.Log
	d.logger.Info("reloaded", "log_level", d.level.Level().String())
}

func (d *daemon) startGeo(ctx context.Context) error {
	credTenant := d.cfg.Geo.CredentialsTenant
	d.geoM = geo.NewMetrics(d.reg)
	r, err := geo.New(geo.Options{
		Pools:   d.cfg.Geo.geoPools(),
		Logger:  d.logger,
		Metrics: d.geoM,
		Credentials: func(ctx context.Context, name string) (*memguard.LockedBuffer, error) {
			t, err := d.store.Tenant(ctx, credTenant)
			if err != nil {
				return nil, fmt.Errorf("credentials tenant: %w", err)
			}
			buf, _, err := t.Reveal(ctx, name)
			if err != nil {
				return nil, fmt.Errorf("upstream password: %w", err)
			}
			return buf, nil
		},
	})
	if err != nil {
		return fmt.Errorf("geo: %w", err)
	}
	d.geo = r
	return nil
}

// pruneAudit drops audit records older than audit.retention, hourly.
func (d *daemon) pruneAudit(ctx context.Context) {
	if d.cfg.Audit.Retention <= 0 {
		return
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		n, err := d.store.PruneAudit(ctx, time.Now().Add(-d.cfg.Audit.Retention))
		if err != nil && ctx.Err() == nil {
			d.logger.Warn("audit prune", "err", err)
		} else if n > 0 {
			d.logger.Info("audit pruned", "records", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ready is /readyz: the store answers and a browser can be had.
func (d *daemon) ready(ctx context.Context) error {
	if err := d.store.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if d.cfg.Chrome.URL != "" {
		b, err := browser.Attach(ctx, d.cfg.Chrome.URL)
		if err != nil {
			return fmt.Errorf("chrome: %w", err)
		}
		_ = b.Close()
		return nil
	}
	if err := browser.CheckStartable(ctx, d.browserOptions(nil, nil)); err != nil {
		return fmt.Errorf("browser: %w", err)
	}
	return nil
}

// refusePlaceholderURLs refuses discovery requests that carry a placeholder
// in their URL (PUT /json/new?<url> would open a page whose URL holds it):
// placeholders are honoured in input commands only. WebSocket upgrades carry
// none in practice and are refused as well if they do.
func refusePlaceholderURLs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if inject.Contains([]byte(r.RequestURI)) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, "cdpvault: placeholder not allowed in a discovery URL\n")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// guardDiscovery refuses discovery requests a session in attach mode may
// not make (they would open pages outside its own contexts).
func (d *daemon) guardDiscovery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, _ := strings.CutPrefix(r.URL.Path, "/session/")
		token, sub, _ := strings.Cut(rest, "/")
		if !d.sessions.discoveryAllowed(token, "/"+sub) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, "cdpvault: sessions in attach mode open pages only in their own browser context\n")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// scrubDiscovery hides other sessions' targets (attach mode) and scrubs
// discovery JSON with the session tenant's index.
func (d *daemon) scrubDiscovery(s *cdpproxy.Session, body []byte) ([]byte, error) {
	ti, ok := s.Values.(*tenantIndex)
	if !ok {
		return nil, errors.New("session has no scrub index")
	}
	filtered, err := d.sessions.filterDiscovery(s.Token, body)
	if err != nil {
		return nil, fmt.Errorf("filter discovery: %w", err)
	}
	copied := len(filtered) > 0 && (len(body) == 0 || &filtered[0] != &body[0])
	ti.mu.RLock()
	defer ti.mu.RUnlock()
	out, err := scrub.ScrubDiscovery(ti.ix, filtered)
	if copied && (err != nil || len(out) == 0 || &out[0] != &filtered[0]) {
		clear(filtered) // an intermediate copy: the proxy wipes only body and the result
	}
	return out, err
}

func metricsMux(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// buildInfo is cdpvault_build_info{version,goversion} = 1.
func buildInfo() prometheus.Collector {
	version := "devel"
	goversion := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goversion = bi.GoVersion
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				version = s.Value[:12]
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "cdpvault_build_info",
		Help:        "Build information; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goversion},
	})
	g.Set(1)
	return g
}
