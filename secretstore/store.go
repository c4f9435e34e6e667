package secretstore

import (
	"context"
	"crypto/cipher"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awnumar/memguard"
	"github.com/prometheus/client_golang/prometheus"
	sqlite "modernc.org/sqlite"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

const (
	busyTimeout      = 5 * time.Second
	maxWriteAttempts = 8
	maxCachedKeys    = 1024
	revealPoolSize   = 4
	checkpointTries  = 20
)

// Options configure Open.
type Options struct {
	// Path of the SQLite file; its directory is created (mode 0700) when missing and the file
	// is created with mode 0600.
	Path string
	// MasterKey wraps every tenant data key (see LoadMasterKey). The Store keeps the enclave
	// and opens it only while wrapping or unwrapping a key.
	MasterKey *memguard.Enclave
	// Logger for operational events (never values). nil: discard.
	Logger *slog.Logger
	// Metrics registers cdpvault_store_operations_total{op,result} and
	// cdpvault_store_operation_duration_seconds{op} when non-nil. Registering twice on one
	// registry (two stores) shares the collectors.
	Metrics prometheus.Registerer
}

// Store is an encrypted, multi-tenant secret store in one SQLite file. It is safe for
// concurrent use, and several processes may open the same file at once.
type Store struct {
	db            *sql.DB
	path          string
	master        *memguard.Enclave
	masterVersion int
	log           *slog.Logger
	metrics       *metrics

	wsem chan struct{} // serialises this process's write transactions

	keysMu sync.Mutex
	keys   map[keyID]cipher.AEAD

	pool *bufPool

	getSecret    *sql.Stmt
	getRevision  *sql.Stmt
	tenantByName *sql.Stmt
	tokenByID    *sql.Stmt
	bumpRevision *sql.Stmt
	getVersion   *sql.Stmt
	upsertSecret *sql.Stmt

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

type keyID struct {
	tenant  int64
	version int
}

// Open opens (creating when needed) the store at o.Path: WAL journal, busy timeout,
// secure_delete, foreign keys, synchronous=FULL, and the embedded schema migrations. The
// master key must be one the store knows (any version not yet retired); a fresh store adopts
// it as version 1. An unknown key on an initialised store gives ErrWrongMasterKey.
func Open(ctx context.Context, o Options) (_ *Store, err error) {
	if o.Path == "" {
		return nil, errors.New("open store: no path given")
	}
	if o.MasterKey == nil {
		return nil, errors.New("open store: no master key given")
	}
	path, err := filepath.Abs(o.Path)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		f.Close()
	case errors.Is(err, fs.ErrExist):
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("store file is accessible to group or others", "path", path, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
		}
	default:
		return nil, fmt.Errorf("open store: %w", err)
	}

	s := &Store{
		path:   path,
		master: o.MasterKey,
		log:    log,
		wsem:   make(chan struct{}, 1),
		keys:   make(map[keyID]cipher.AEAD),
		pool:   &bufPool{sem: make(chan struct{}, revealPoolSize)},
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if o.Metrics != nil {
		if s.metrics, err = newMetrics(o.Metrics); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	s.db, err = sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.db.SetMaxOpenConns(8)
	s.db.SetMaxIdleConns(8)
	s.db.SetConnMaxIdleTime(5 * time.Minute)
	// The first connection to a fresh file switches it to WAL; SQLite answers
	// a second process doing the same at that moment with SQLITE_BUSY at
	// once, without the busy handler (seen in TestConcurrentOpenOfFreshStore).
	if err = s.retryBusy(ctx, "open", func() error { return s.db.PingContext(ctx) }); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err = s.migrate(ctx); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err = s.adoptMasterKey(ctx); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{
		{&s.getSecret, `SELECT kind, version, origins, key_version, nonce, ciphertext, created_at, updated_at FROM secrets WHERE tenant_id = ? AND name = ?`},
		{&s.getRevision, `SELECT revision FROM tenants WHERE id = ?`},
		{&s.tenantByName, `SELECT id, data_key_version FROM tenants WHERE name = ?`},
		{&s.tokenByID, `SELECT k.hash, k.last_used_at, t.id, t.name, t.data_key_version FROM tokens k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = ?`},
		{&s.bumpRevision, `UPDATE tenants SET revision = revision + 1 WHERE id = ?`},
		{&s.getVersion, `SELECT version, created_at FROM secrets WHERE tenant_id = ? AND name = ?`},
		{&s.upsertSecret, `INSERT INTO secrets (tenant_id, name, kind, version, origins, key_version, nonce, ciphertext, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (tenant_id, name) DO UPDATE SET kind = excluded.kind, version = excluded.version, origins = excluded.origins,
				key_version = excluded.key_version, nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at`},
	} {
		if *p.st, err = s.db.PrepareContext(ctx, p.q); err != nil {
			return nil, fmt.Errorf("open store: prepare: %w", err)
		}
	}
	log.Debug("store opened", "path", path, "master_key_version", s.masterVersion)
	return s, nil
}

func dsn(path string) string {
	u := url.URL{Scheme: "file", OmitHost: true, Path: path}
	q := []string{
		"_pragma=" + url.QueryEscape("busy_timeout("+strconv.Itoa(int(busyTimeout/time.Millisecond))+")"),
		"_pragma=" + url.QueryEscape("journal_mode(WAL)"),
		"_pragma=" + url.QueryEscape("synchronous(NORMAL)"), // durableTx raises it to FULL per transaction
		"_pragma=" + url.QueryEscape("foreign_keys(1)"),
		"_pragma=" + url.QueryEscape("secure_delete(1)"),
		"_pragma=" + url.QueryEscape("temp_store(2)"),
		// Truncate the WAL whenever it is reset after a checkpoint, so stale frames (old
		// ciphertexts of replaced or deleted secrets) do not linger past the file's end.
		"_pragma=" + url.QueryEscape("journal_size_limit(0)"),
		"_txlock=immediate",
	}
	return u.String() + "?" + strings.Join(q, "&")
}

// Close checkpoints and truncates the WAL and closes the database. It is safe on a nil
// Store, after a failed Open and more than once.
func (s *Store) Close() error {
	if s == nil {
		return nil
	}
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.pool.close()
		s.keysMu.Lock()
		clear(s.keys)
		s.keysMu.Unlock()
		if s.db == nil {
			return
		}
		for _, st := range []*sql.Stmt{s.getSecret, s.getRevision, s.tenantByName, s.tokenByID, s.bumpRevision, s.getVersion, s.upsertSecret} {
			if st != nil {
				st.Close()
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.checkpoint(ctx); err != nil {
			s.log.Warn("wal checkpoint on close", "err", err)
		}
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var one int
	if err := s.db.QueryRowContext(ctx, `SELECT 1 FROM schema_version LIMIT 1`).Scan(&one); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

// MasterKeyVersion is the version of the master key this Store was opened with.
func (s *Store) MasterKeyVersion() int { return s.masterVersion }

// migrate applies the embedded migrations newer than the schema_version of the file.
func (s *Store) migrate(ctx context.Context) error {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return err
	}
	type mig struct {
		version int
		name    string
	}
	var migs []mig
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return fmt.Errorf("migration %s: name must start with a positive number and _", e.Name())
		}
		migs = append(migs, mig{v, e.Name()})
	}
	sort.Slice(migs, func(i, j int) bool { return migs[i].version < migs[j].version })
	latest := migs[len(migs)-1].version
	return s.durableTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
			return fmt.Errorf("schema_version: %w", err)
		}
		var cur int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&cur); err != nil {
			return fmt.Errorf("schema_version: %w", err)
		}
		if cur > latest {
			return fmt.Errorf("store schema version %d is newer than this binary supports (%d); upgrade cdpvault", cur, latest)
		}
		for _, m := range migs {
			if m.version <= cur {
				continue
			}
			body, err := migrationFS.ReadFile("migrations/" + m.name)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, applied_at) VALUES (?, ?)`, m.version, time.Now().UnixNano()); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			s.log.Info("store schema migrated", "version", m.version)
		}
		return nil
	})
}

// adoptMasterKey finds the version of the store's master key by its fingerprint; a store
// that has no master key yet adopts this one as version 1.
func (s *Store) adoptMasterKey(ctx context.Context) error {
	fp, err := fingerprint(s.master)
	if err != nil {
		return err
	}
	return s.durableTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT version FROM master_keys WHERE fingerprint = ?`, fp).Scan(&s.masterVersion)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM master_keys`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("the store was initialised with a different master key (or this key was retired): %w", ErrWrongMasterKey)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO master_keys (version, fingerprint, created_at) VALUES (1, ?, ?)`, fp, time.Now().UnixNano()); err != nil {
			return err
		}
		s.masterVersion = 1
		return nil
	})
}

// writeTx runs fn in a BEGIN IMMEDIATE transaction, one at a time in this process, retrying
// the whole transaction when SQLite reports the database busy or locked (another process).
// fn may run more than once and must not have effects outside tx. The commit survives a
// crash of the process; see durableTx for one that also survives a power loss.
func (s *Store) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.write(ctx, false, fn)
}

// durableTx is writeTx with synchronous=FULL for this transaction: the WAL is fsynced before
// the commit returns, which makes this and every earlier commit survive a power loss. Used
// for operations whose loss would matter for security (revocations, deletions, key changes).
func (s *Store) durableTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.write(ctx, true, fn)
}

func (s *Store) write(ctx context.Context, durable bool, fn func(tx *sql.Tx) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.wsem }()
	return s.retryBusy(ctx, "write", func() error { return s.tryTx(ctx, durable, fn) })
}

// retryBusy runs try until it succeeds, fails otherwise than with
// SQLITE_BUSY/LOCKED, or has been busy maxWriteAttempts times, with
// jittered exponential backoff in between.
func (s *Store) retryBusy(ctx context.Context, what string, try func() error) error {
	backoff := time.Millisecond
	for attempt := 1; ; attempt++ {
		err := try()
		if err == nil || !isBusy(err) || attempt >= maxWriteAttempts {
			return err
		}
		s.log.Debug("store busy, retrying", "what", what, "attempt", attempt)
		d := backoff/2 + rand.N(backoff)
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

func (s *Store) tryTx(ctx context.Context, durable bool, fn func(tx *sql.Tx) error) error {
	var tx *sql.Tx
	var err error
	if durable {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `PRAGMA synchronous = FULL`); err != nil {
			return err
		}
		defer func() {
			if _, err := conn.ExecContext(context.Background(), `PRAGMA synchronous = NORMAL`); err != nil {
				conn.Raw(func(any) error { return driver.ErrBadConn }) // drop the connection rather than leave it slow
			}
		}()
		tx, err = conn.BeginTx(ctx, nil) // BEGIN IMMEDIATE via _txlock
		if err != nil {
			return err
		}
	} else if tx, err = s.db.BeginTx(ctx, nil); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// isBusy: SQLITE_BUSY (5) or SQLITE_LOCKED (6), any extended code.
func isBusy(err error) bool {
	c := sqliteCode(err) & 0xff
	return c == 5 || c == 6
}

// isConstraint: SQLITE_CONSTRAINT (19), any extended code.
func isConstraint(err error) bool { return sqliteCode(err)&0xff == 19 }

// checkpoint copies the WAL into the database file and truncates it to zero bytes, so pages
// that held deleted rows leave the WAL file. It retries while readers block it.
func (s *Store) checkpoint(ctx context.Context) error {
	backoff := 5 * time.Millisecond
	for i := 0; ; i++ {
		var busy, logFrames, done int
		err := s.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done)
		if err == nil && busy == 0 {
			return nil
		}
		if err != nil && !isBusy(err) {
			return fmt.Errorf("wal checkpoint: %w", err)
		}
		if i >= checkpointTries {
			return fmt.Errorf("wal checkpoint: another connection kept reading: %w", ErrCheckpointIncomplete)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wal checkpoint: %w: %w", ctx.Err(), ErrCheckpointIncomplete)
		}
		if backoff < 100*time.Millisecond {
			backoff *= 2
		}
	}
}

// PruneAudit deletes audit records older than before, for every tenant, and returns how
// many were deleted. The daemon may call it periodically to bound the audit table.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (removed int64, err error) {
	defer s.track("prune_audit", time.Now(), &err)
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM audit WHERE time < ?`, before.UnixNano())
		if err != nil {
			return err
		}
		removed, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune audit: %w", err)
	}
	return removed, nil
}

// aead returns the cipher for a tenant's data key, unwrapping it under the master key on
// first use. The unwrapped key only ever sits in a LockedBuffer; the cached cipher.AEAD holds
// the AES key schedule in ordinary memory (crypto/aes offers no other way), which is the
// price of not opening the master key enclave on every read.
func (s *Store) aead(ctx context.Context, tenantID int64, keyVersion int) (cipher.AEAD, error) {
	id := keyID{tenantID, keyVersion}
	s.keysMu.Lock()
	a, ok := s.keys[id]
	s.keysMu.Unlock()
	if ok {
		return a, nil
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	var nonce, wrapped []byte
	err := s.db.QueryRowContext(ctx, `SELECT nonce, wrapped FROM tenant_keys WHERE tenant_id = ? AND key_version = ? AND master_version = ?`,
		tenantID, keyVersion, s.masterVersion).Scan(&nonce, &wrapped)
	if errors.Is(err, sql.ErrNoRows) {
		var one int
		if err := s.db.QueryRowContext(ctx, `SELECT 1 FROM tenants WHERE id = ?`, tenantID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("tenant data key is not wrapped under master key version %d (run key rotate with the master key it was created under): %w", s.masterVersion, ErrWrongMasterKey)
	}
	if err != nil {
		return nil, fmt.Errorf("read tenant key: %w", err)
	}
	err = withMasterKey(s.master, func(kek cipher.AEAD) error {
		dk, err := unwrapKey(kek, nonce, wrapped, tenantID, keyVersion, s.masterVersion)
		if err != nil {
			return err
		}
		defer dk.Destroy()
		a, err = newGCM(dk.Bytes())
		return err
	})
	if err != nil {
		s.log.Error("tenant data key failed to unwrap", "tenant_id", tenantID, "err", err)
		return nil, err
	}
	s.keysMu.Lock()
	if len(s.keys) >= maxCachedKeys {
		for k := range s.keys { // evict an arbitrary entry
			delete(s.keys, k)
			break
		}
	}
	s.keys[id] = a
	s.keysMu.Unlock()
	return a, nil
}

func (s *Store) forgetTenantKeys(tenantID int64) {
	s.keysMu.Lock()
	for k := range s.keys {
		if k.tenant == tenantID {
			delete(s.keys, k)
		}
	}
	s.keysMu.Unlock()
}

// bufPool lends a few long-lived LockedBuffers of MaxValueLen bytes, so the hot reveal path
// pays no mmap/mlock per call. At most cap(sem) exist; they are wiped on return.
type bufPool struct {
	sem    chan struct{}
	mu     sync.Mutex
	closed bool
	free   []*memguard.LockedBuffer
}

func (p *bufPool) get(ctx context.Context) (*memguard.LockedBuffer, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		<-p.sem
		return nil, ErrClosed
	}
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		return b, nil
	}
	b, err := newLocked(MaxValueLen)
	if err != nil {
		<-p.sem
		return nil, err
	}
	return b, nil
}

func (p *bufPool) put(b *memguard.LockedBuffer, used int) {
	memguard.WipeBytes(b.Bytes()[:used])
	p.mu.Lock()
	if p.closed {
		b.Destroy()
	} else {
		p.free = append(p.free, b)
	}
	p.mu.Unlock()
	<-p.sem
}

func (p *bufPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, b := range p.free {
		b.Destroy()
	}
	p.free = nil
}

func nowNano() int64 { return time.Now().UnixNano() }

func fromNano(n int64) time.Time { return time.Unix(0, n).UTC() }
