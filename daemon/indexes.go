package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awnumar/memguard"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdpvault/cdpvault/cdpproxy"
	"github.com/cdpvault/cdpvault/geo"
	"github.com/cdpvault/cdpvault/inject"
	"github.com/cdpvault/cdpvault/redact"
	"github.com/cdpvault/cdpvault/secretstore"
)

// tenantIndex is the scrub index of one tenant, shared by its sessions. An
// index is swapped under mu's write lock and destroyed only after; scrubbing
// holds the read lock, so a running scrub never sees its index destroyed.
type tenantIndex struct {
	tenant  string
	t       *secretstore.Tenant
	mu      sync.RWMutex
	ix      *redact.Index
	rev     int64
	credRev int64
	// geoNames is the set of upstream password secrets the index holds: a
	// pool reload can name new ones without any revision changing.
	geoNames string
	refs     int // guarded by indexCache.mu
}

// Index implements scrub.Source; callers hold mu.RLock (see guarded).
func (ti *tenantIndex) Index() *redact.Index { return ti.ix }

// guarded runs the scrub interceptor under its index's read lock.
type guarded struct {
	inner cdpproxy.Interceptor
	ix    *tenantIndex
}

// Command needs no lock: the scrub interceptor reads no index on commands,
// and every client command passes here.
func (g guarded) Command(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message) (cdpproxy.Verdict, error) {
	return g.inner.Command(ctx, c, m)
}

func (g guarded) Event(ctx context.Context, c cdpproxy.Conn, m *cdpproxy.Message) (cdpproxy.Verdict, error) {
	g.ix.mu.RLock()
	defer g.ix.mu.RUnlock()
	return g.inner.Event(ctx, c, m)
}

func (g guarded) Close() { g.inner.Close() }

// indexCache keeps the scrub index of every tenant with a running session,
// current as secrets change (through the API at once, through the CLI of
// another process within refreshInterval), and, while any session runs, one
// index over every tenant for the daemon's own logs. Indexes hold their
// forms in locked (but readable) memory, so none is kept once the last
// session has ended: the daemon's memory then holds no plaintext form.
type indexCache struct {
	store      *secretstore.Store
	geo        *geo.Router
	credTenant string
	logger     *slog.Logger

	mu      sync.Mutex
	tenants map[string]*tenantIndex

	// logMu serialises log index builds; logUse is read-held by the log
	// handler while it scrubs, so the index may be destroyed under its
	// write lock.
	logMu   sync.Mutex
	logUse  sync.RWMutex
	logIx   atomic.Pointer[redact.Index]
	logRevs map[string]int64
}

const refreshInterval = time.Second

func newIndexCache() *indexCache {
	return &indexCache{tenants: map[string]*tenantIndex{}, logger: slog.New(slog.DiscardHandler)}
}

// acquire returns the tenant's index, building it on first use.
func (c *indexCache) acquire(ctx context.Context, t *secretstore.Tenant) (*tenantIndex, error) {
	c.mu.Lock()
	ti, ok := c.tenants[t.Name()]
	if !ok {
		ti = &tenantIndex{tenant: t.Name(), t: t, rev: -1, credRev: -1}
		c.tenants[t.Name()] = ti
	}
	ti.refs++
	c.mu.Unlock()
	if err := c.refresh(ctx, ti); err != nil {
		c.release(ti)
		return nil, err
	}
	if c.logIx.Load() == nil {
		if err := c.refreshLog(ctx, true); err != nil {
			c.logger.Error("log scrub index", "err", err)
		}
	}
	return ti, nil
}

// release drops a reference; the last one destroys the index.
func (c *indexCache) release(ti *tenantIndex) {
	c.mu.Lock()
	ti.refs--
	last := ti.refs == 0
	if last {
		delete(c.tenants, ti.tenant)
	}
	none := len(c.tenants) == 0
	c.mu.Unlock()
	if none {
		c.dropLogIndex()
	}
	if last {
		ti.mu.Lock()
		if ti.ix != nil {
			ti.ix.Destroy()
			ti.ix = nil
		}
		ti.mu.Unlock()
	}
}

// refreshAll rebuilds every live index that is out of date (after a pool
// reload, before the next tick).
func (c *indexCache) refreshAll(ctx context.Context) {
	c.mu.Lock()
	all := make([]*tenantIndex, 0, len(c.tenants))
	for _, ti := range c.tenants {
		all = append(all, ti)
	}
	c.mu.Unlock()
	for _, ti := range all {
		if err := c.refresh(ctx, ti); err != nil && ctx.Err() == nil {
			c.logger.Error("scrub index refresh", "tenant", ti.tenant, "err", err)
		}
	}
}

// changed is called after the API wrote a tenant's secrets.
func (c *indexCache) changed(tenant string) {
	c.mu.Lock()
	ti := c.tenants[tenant]
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ti != nil {
		if err := c.refresh(ctx, ti); err != nil {
			c.logger.Error("scrub index refresh", "tenant", tenant, "err", err)
		}
	}
	if c.logIx.Load() != nil {
		if err := c.refreshLog(ctx, true); err != nil {
			c.logger.Error("log scrub index refresh", "err", err)
		}
	}
}

// refresh rebuilds ti if its tenant's (or the geo credentials') secrets
// changed since the last build.
func (c *indexCache) refresh(ctx context.Context, ti *tenantIndex) error {
	rev, err := ti.t.Revision(ctx)
	if err != nil {
		return fmt.Errorf("revision: %w", err)
	}
	credRev := int64(0)
	var cred *secretstore.Tenant
	if c.geo != nil && c.credTenant != "" {
		cred, err = c.store.Tenant(ctx, c.credTenant)
		if err == nil {
			if credRev, err = cred.Revision(ctx); err != nil {
				return fmt.Errorf("revision: %w", err)
			}
		} else if !errors.Is(err, secretstore.ErrNotFound) {
			return fmt.Errorf("credentials tenant: %w", err)
		}
	}
	geoNames := ""
	if cred != nil {
		geoNames = strings.Join(c.geo.SecretNames(), "\x00")
	}
	ti.mu.RLock()
	same := ti.ix != nil && ti.rev == rev && ti.credRev == credRev && ti.geoNames == geoNames
	ti.mu.RUnlock()
	if same {
		return nil
	}
	b := redact.NewBuilder()
	defer b.Destroy()
	if err := ti.t.RevealAll(ctx, func(m secretstore.Meta, v *memguard.LockedBuffer) error {
		return addScrubForms(b, m, v.Bytes())
	}); err != nil {
		return fmt.Errorf("load secrets: %w", err)
	}
	if cred != nil {
		for _, name := range c.geo.SecretNames() {
			v, _, err := cred.Reveal(ctx, name)
			if errors.Is(err, secretstore.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("geo credential: %w", err)
			}
			err = b.Add(name, v.Bytes())
			v.Destroy()
			if err != nil {
				return fmt.Errorf("geo credential: %w", err)
			}
		}
	}
	ix, err := b.Build()
	if err != nil {
		return fmt.Errorf("build index: %w", err)
	}
	ti.mu.Lock()
	old := ti.ix
	ti.ix, ti.rev, ti.credRev, ti.geoNames = ix, rev, credRev, geoNames
	ti.mu.Unlock()
	if old != nil {
		old.Destroy()
	}
	return nil
}

// addScrubForms adds secret m's value v to b, and for a TOTP seed the
// other ways sites print the same seed: without spaces or padding, and in
// groups of four, each in upper and in lower case (the store keeps the
// seed as the operator typed it; a 2FA settings page may show it another
// way). Forms shorter than redact.MinValueLen are left out; every scratch
// copy is wiped.
func addScrubForms(b *redact.Builder, m secretstore.Meta, v []byte) error {
	if err := b.Add(m.Name, v); err != nil {
		return err
	}
	if m.Kind != secretstore.KindTOTP {
		return nil
	}
	compact := make([]byte, 0, len(v))
	for _, c := range v {
		if c != ' ' && c != '=' {
			compact = append(compact, c)
		}
	}
	grouped := make([]byte, 0, len(compact)+len(compact)/4)
	for i, c := range compact {
		if i > 0 && i%4 == 0 {
			grouped = append(grouped, ' ')
		}
		grouped = append(grouped, c)
	}
	defer memguard.WipeBytes(compact[:cap(compact)])
	defer memguard.WipeBytes(grouped[:cap(grouped)])
	for _, form := range [][]byte{compact, grouped} {
		for _, upper := range []bool{true, false} {
			setASCIICase(form, upper)
			if len(form) < redact.MinValueLen || bytes.Equal(form, v) {
				continue
			}
			if err := b.Add(m.Name, form); err != nil {
				return err
			}
		}
	}
	return nil
}

// setASCIICase upper- or lower-cases the ASCII letters of b in place
// (bytes.ToUpper would leave an unwiped copy).
func setASCIICase(b []byte, upper bool) {
	for i, c := range b {
		switch {
		case upper && c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case !upper && c >= 'A' && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
}

// logIndex is the index the log handler scrubs with.
func (c *indexCache) logIndex() *redact.Index { return c.logIx.Load() }

// refreshLog rebuilds the log index over every tenant when any changed.
func (c *indexCache) refreshLog(ctx context.Context, force bool) error {
	if c.store == nil {
		return nil
	}
	c.logMu.Lock()
	defer c.logMu.Unlock()
	tenants, err := c.store.ListTenants(ctx)
	if err != nil {
		return fmt.Errorf("list tenants: %w", err)
	}
	revs := make(map[string]int64, len(tenants))
	handles := make([]*secretstore.Tenant, 0, len(tenants))
	for _, ti := range tenants {
		t, err := c.store.Tenant(ctx, ti.Name)
		if err != nil {
			continue // removed meanwhile
		}
		r, err := t.Revision(ctx)
		if err != nil {
			return fmt.Errorf("revision: %w", err)
		}
		revs[ti.Name] = r
		handles = append(handles, t)
	}
	if !force && c.logIx.Load() != nil && sameRevs(revs, c.logRevs) {
		return nil
	}
	b := redact.NewBuilder()
	defer b.Destroy()
	for _, t := range handles {
		if err := t.RevealAll(ctx, func(m secretstore.Meta, v *memguard.LockedBuffer) error {
			return addScrubForms(b, m, v.Bytes())
		}); err != nil {
			return fmt.Errorf("load secrets: %w", err)
		}
	}
	ix, err := b.Build()
	if err != nil {
		return fmt.Errorf("build log index: %w", err)
	}
	c.mu.Lock()
	none := len(c.tenants) == 0
	c.mu.Unlock()
	if none { // the last session ended while this index was built
		ix.Destroy()
		return nil
	}
	c.setLogIndex(ix, revs)
	return nil
}

// dropLogIndex destroys the log index once no session runs.
func (c *indexCache) dropLogIndex() {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	c.setLogIndex(nil, nil)
}

// setLogIndex swaps the log index (logMu held) and destroys the old one once
// no log call is scrubbing with it.
func (c *indexCache) setLogIndex(ix *redact.Index, revs map[string]int64) {
	c.logUse.Lock()
	old := c.logIx.Swap(ix)
	c.logUse.Unlock()
	if old != nil {
		old.Destroy()
	}
	c.logRevs = revs
}

func sameRevs(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// refreshLoop keeps indexes current with changes made by other processes.
func (c *indexCache) refreshLoop(ctx context.Context) {
	t := time.NewTicker(refreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.refreshAll(ctx)
		if c.logIx.Load() != nil {
			if err := c.refreshLog(ctx, false); err != nil && ctx.Err() == nil {
				c.logger.Error("log scrub index refresh", "err", err)
			}
		}
	}
}

// destroy wipes every index (shutdown).
func (c *indexCache) destroy() {
	c.mu.Lock()
	for name, ti := range c.tenants {
		ti.mu.Lock()
		if ti.ix != nil {
			ti.ix.Destroy()
			ti.ix = nil
		}
		ti.mu.Unlock()
		delete(c.tenants, name)
	}
	c.mu.Unlock()
	c.dropLogIndex()
}

// tenantAudit stores injection audit records in the tenant's log.
type tenantAudit struct {
	t        *secretstore.Tenant
	session  string
	logger   *slog.Logger
	bySecret *prometheus.CounterVec // nil unless opted in
}

func (a tenantAudit) Audit(ctx context.Context, r inject.Record) {
	rec := secretstore.AuditRecord{
		Time: r.Time, Session: a.session, Secret: r.Secret, Version: r.Version,
		Origin: r.Origin, Sink: r.Sink, Result: r.Result, Reason: r.Reason,
	}
	if rec.Time.IsZero() {
		rec.Time = time.Now().UTC()
	}
	if a.bySecret != nil {
		a.bySecret.WithLabelValues(a.t.Name(), r.Secret, r.Result).Inc()
	}
	if err := a.t.AppendAudit(context.WithoutCancel(ctx), rec); err != nil {
		a.logger.Error("audit append", "session", a.session, "err", err)
	}
}
