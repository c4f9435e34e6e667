package secretstore

import (
	"context"
	"crypto/cipher"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/awnumar/memguard"
)

// Tenant is the only way to reach secrets, and it can only be obtained from Store.Tenant
// (operator scope) or Store.Authenticate (an API token): every query below is bound to its
// tenant id, so no code path reads a secret without a tenant scope. A handle of a tenant
// deleted later answers ErrNotFound.
type Tenant struct {
	s          *Store
	id         int64
	name       string
	keyVersion int
}

// Meta is a secret's metadata. It never holds the value.
type Meta struct {
	Name      string    `json:"name"`
	Kind      Kind      `json:"kind"`
	Version   int       `json:"version"`
	Origins   []string  `json:"origins"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// AuditRecord is one audited use of a secret (never its value). Strings longer than 512
// bytes are cut.
type AuditRecord struct {
	Time    time.Time `json:"time"`
	Session string    `json:"session"`
	Secret  string    `json:"secret"`
	Version int       `json:"version"`
	Origin  string    `json:"origin"`
	Sink    string    `json:"sink"`
	Result  string    `json:"result"`
	Reason  string    `json:"reason,omitempty"`
}

// Name is the tenant's name.
func (t *Tenant) Name() string {
	if t == nil {
		return ""
	}
	return t.name
}

// noScope stands in for the store of a nil or zero Tenant (one not obtained from
// Store.Tenant or Store.Authenticate): every operation on it fails with ErrClosed instead
// of panicking.
var noScope = func() *Store {
	s := &Store{log: slog.New(slog.DiscardHandler), pool: &bufPool{closed: true, sem: make(chan struct{}, 1)}}
	s.closed.Store(true)
	return s
}()

func (t *Tenant) store() *Store {
	if t == nil || t.s == nil {
		return noScope
	}
	return t.s
}

// gone reports that the tenant was deleted (possibly by another process) and drops its
// cached cipher, so its data key does not outlive the deletion in this process's memory.
func (t *Tenant) gone() error {
	t.s.forgetTenantKeys(t.id)
	return fmt.Errorf("tenant %q: %w", t.name, ErrNotFound)
}

func secretNotFound(name string) error { return fmt.Errorf("secret %q: %w", name, ErrNotFound) }

func splitOrigins(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, "\n")
}

// PutSecret stores value under name, creating the secret (created=true) or replacing it
// with a new version. The caller owns value and should wipe it afterwards; the store keeps
// only the ciphertext. origins are normalised with ValidOrigin; kind "" means password.
// The value is checked with CheckValue.
func (t *Tenant) PutSecret(ctx context.Context, name string, value []byte, origins []string, kind Kind) (meta Meta, created bool, err error) {
	s := t.store()
	defer s.track("put_secret", time.Now(), &err)
	if s.closed.Load() {
		return Meta{}, false, ErrClosed
	}
	if err := checkName("secret", name); err != nil {
		return Meta{}, false, err
	}
	k, err := ParseKind(string(kind))
	if err != nil {
		return Meta{}, false, err
	}
	if err := CheckValue(k, value); err != nil {
		return Meta{}, false, fmt.Errorf("secret %q: %w", name, err)
	}
	norm, err := normaliseOrigins(origins)
	if err != nil {
		return Meta{}, false, fmt.Errorf("secret %q: %w", name, err)
	}
	a, err := s.aead(ctx, t.id, t.keyVersion)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Meta{}, false, fmt.Errorf("tenant %q: %w", t.name, ErrNotFound)
		}
		return Meta{}, false, fmt.Errorf("put secret %q: %w", name, err)
	}
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, s.bumpRevision).ExecContext(ctx, t.id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return t.gone()
		}
		var oldVersion int
		var createdAt int64
		now := nowNano()
		err = tx.StmtContext(ctx, s.getVersion).QueryRowContext(ctx, t.id, name).Scan(&oldVersion, &createdAt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			created, oldVersion, createdAt = true, 0, now
		case err != nil:
			return err
		default:
			created = false
		}
		version := oldVersion + 1
		nonce := randomNonce()
		ct := a.Seal(nil, nonce, value, secretAD(t.id, t.keyVersion, name, version, k, norm))
		_, err = tx.StmtContext(ctx, s.upsertSecret).ExecContext(ctx, t.id, name, string(k), version, strings.Join(norm, "\n"), t.keyVersion, nonce, ct, createdAt, now)
		if err != nil {
			return err
		}
		meta = Meta{Name: name, Kind: k, Version: version, Origins: norm, CreatedAt: fromNano(createdAt), UpdatedAt: fromNano(now)}
		return nil
	})
	if err != nil {
		return Meta{}, false, fmt.Errorf("put secret %q: %w", name, err)
	}
	return meta, created, nil
}

// Secret returns a secret's metadata.
func (t *Tenant) Secret(ctx context.Context, name string) (_ Meta, err error) {
	s := t.store()
	defer s.track("get_meta", time.Now(), &err)
	if err := checkName("secret", name); err != nil {
		return Meta{}, err
	}
	if s.closed.Load() {
		return Meta{}, ErrClosed
	}
	m := Meta{Name: name}
	var origins string
	var created, updated int64
	err = s.db.QueryRowContext(ctx, `SELECT kind, version, origins, created_at, updated_at FROM secrets WHERE tenant_id = ? AND name = ?`, t.id, name).
		Scan(&m.Kind, &m.Version, &origins, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Meta{}, secretNotFound(name)
	}
	if err != nil {
		return Meta{}, fmt.Errorf("secret %q: %w", name, err)
	}
	m.Origins, m.CreatedAt, m.UpdatedAt = splitOrigins(origins), fromNano(created), fromNano(updated)
	return m, nil
}

// Secrets lists the tenant's secrets by name (metadata only).
func (t *Tenant) Secrets(ctx context.Context) (_ []Meta, err error) {
	s := t.store()
	defer s.track("list_secrets", time.Now(), &err)
	if s.closed.Load() {
		return nil, ErrClosed
	}
	rows, err := s.db.QueryContext(ctx, `SELECT name, kind, version, origins, created_at, updated_at FROM secrets WHERE tenant_id = ? ORDER BY name`, t.id)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	defer rows.Close()
	out := []Meta{}
	for rows.Next() {
		var m Meta
		var origins string
		var created, updated int64
		if err := rows.Scan(&m.Name, &m.Kind, &m.Version, &origins, &created, &updated); err != nil {
			return nil, fmt.Errorf("list secrets: %w", err)
		}
		m.Origins, m.CreatedAt, m.UpdatedAt = splitOrigins(origins), fromNano(created), fromNano(updated)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	return out, nil
}

// DeleteSecret deletes a secret: secure_delete zeroes its ciphertext in the database file
// and a checkpoint then truncates the WAL (best effort; readers in other processes may
// postpone it to a later checkpoint).
func (t *Tenant) DeleteSecret(ctx context.Context, name string) (err error) {
	s := t.store()
	defer s.track("delete_secret", time.Now(), &err)
	if s.closed.Load() {
		return ErrClosed
	}
	if err := checkName("secret", name); err != nil {
		return err
	}
	err = s.durableTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM secrets WHERE tenant_id = ? AND name = ?`, t.id, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return secretNotFound(name)
		}
		_, err = tx.ExecContext(ctx, `UPDATE tenants SET revision = revision + 1 WHERE id = ?`, t.id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete secret: %w", err)
	}
	// Best effort: move the zeroed page into the database file and truncate the WAL, so the
	// deleted ciphertext does not stay in old WAL frames. Failing that, the next checkpoint
	// (at the latest Close) removes it.
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.checkpoint(cctx); err != nil {
		s.log.Debug("checkpoint after secret delete", "err", err)
	}
	return nil
}

// sealed is a secret row as read from the database, before decryption.
type sealed struct {
	meta       Meta
	keyVersion int
	nonce, ct  []byte
}

func (t *Tenant) load(ctx context.Context, name string) (sealed, error) {
	var r sealed
	var origins string
	var created, updated int64
	r.meta.Name = name
	err := t.s.getSecret.QueryRowContext(ctx, t.id, name).Scan(&r.meta.Kind, &r.meta.Version, &origins, &r.keyVersion, &r.nonce, &r.ct, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return r, secretNotFound(name)
	}
	if err != nil {
		return r, fmt.Errorf("secret %q: %w", name, err)
	}
	r.meta.Origins, r.meta.CreatedAt, r.meta.UpdatedAt = splitOrigins(origins), fromNano(created), fromNano(updated)
	return r, nil
}

// cipherFor returns the AEAD and additional data that open r.
func (t *Tenant) cipherFor(ctx context.Context, r *sealed) (cipher.AEAD, []byte, error) {
	a, err := t.s.aead(ctx, t.id, r.keyVersion)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil, secretNotFound(r.meta.Name)
		}
		return nil, nil, fmt.Errorf("secret %q: %w", r.meta.Name, err)
	}
	return a, secretAD(t.id, r.keyVersion, r.meta.Name, r.meta.Version, r.meta.Kind, r.meta.Origins), nil
}

func (t *Tenant) integrityError(name string) error {
	t.s.log.Error("secret failed authentication: ciphertext altered or moved", "tenant", t.name, "secret", name)
	return fmt.Errorf("secret %q: %w", name, ErrIntegrity)
}

// Reveal decrypts a secret straight into a new LockedBuffer of exactly the value's length.
// The caller must Destroy it. Each call allocates locked memory (mmap + mlock, ~25 µs); hot
// paths that only need the value briefly should use RevealFunc.
func (t *Tenant) Reveal(ctx context.Context, name string) (_ *memguard.LockedBuffer, _ Meta, err error) {
	s := t.store()
	defer s.track("reveal", time.Now(), &err)
	if err := checkName("secret", name); err != nil {
		return nil, Meta{}, err
	}
	if s.closed.Load() {
		return nil, Meta{}, ErrClosed
	}
	r, err := t.load(ctx, name)
	if err != nil {
		return nil, Meta{}, err
	}
	buf, err := t.open(ctx, &r)
	if err != nil {
		return nil, Meta{}, err
	}
	return buf, r.meta, nil
}

func (t *Tenant) open(ctx context.Context, r *sealed) (*memguard.LockedBuffer, error) {
	a, ad, err := t.cipherFor(ctx, r)
	if err != nil {
		return nil, err
	}
	if len(r.ct) <= tagLen || len(r.ct)-tagLen > MaxValueLen || len(r.nonce) != nonceLen {
		return nil, t.integrityError(r.meta.Name)
	}
	buf, err := newLocked(len(r.ct) - tagLen)
	if err != nil {
		return nil, err
	}
	if _, err := openInto(a, buf.Bytes(), r.nonce, r.ct, ad); err != nil {
		buf.Destroy()
		return nil, t.integrityError(r.meta.Name)
	}
	return buf, nil
}

// RevealFunc decrypts a secret into one of a few long-lived LockedBuffers kept by the Store
// and calls fn with it; the bytes are wiped when fn returns. value aliases locked memory and
// is valid only during fn: fn must not keep it, nor turn it into a string. This is the fast
// path (no locked-memory allocation per call); at most a handful run at once, others wait.
func (t *Tenant) RevealFunc(ctx context.Context, name string, fn func(m Meta, value []byte) error) (err error) {
	s := t.store()
	defer s.track("reveal", time.Now(), &err)
	if err := checkName("secret", name); err != nil {
		return err
	}
	if s.closed.Load() {
		return ErrClosed
	}
	r, err := t.load(ctx, name)
	if err != nil {
		return err
	}
	a, ad, err := t.cipherFor(ctx, &r)
	if err != nil {
		return err
	}
	buf, err := s.pool.get(ctx)
	if err != nil {
		return err
	}
	value, err := openInto(a, buf.Bytes(), r.nonce, r.ct, ad)
	if err != nil {
		s.pool.put(buf, buf.Size())
		return t.integrityError(name)
	}
	defer s.pool.put(buf, len(value))
	return fn(r.meta, value)
}

// RevealAll calls fn for every secret of the tenant in name order, each value decrypted
// into its own LockedBuffer that is destroyed when fn returns (one at a time). It stops at
// the first error, from fn or from a secret that fails to decrypt (fail closed: a scrub index
// built from a partial set would be incomplete).
func (t *Tenant) RevealAll(ctx context.Context, fn func(m Meta, value *memguard.LockedBuffer) error) (err error) {
	s := t.store()
	defer s.track("reveal_all", time.Now(), &err)
	if s.closed.Load() {
		return ErrClosed
	}
	// Read every row first so no read transaction stays open while fn runs.
	rows, err := s.db.QueryContext(ctx, `SELECT name, kind, version, origins, key_version, nonce, ciphertext, created_at, updated_at FROM secrets WHERE tenant_id = ? ORDER BY name`, t.id)
	if err != nil {
		return fmt.Errorf("reveal all: %w", err)
	}
	var all []sealed
	for rows.Next() {
		var r sealed
		var origins string
		var created, updated int64
		if err := rows.Scan(&r.meta.Name, &r.meta.Kind, &r.meta.Version, &origins, &r.keyVersion, &r.nonce, &r.ct, &created, &updated); err != nil {
			rows.Close()
			return fmt.Errorf("reveal all: %w", err)
		}
		r.meta.Origins, r.meta.CreatedAt, r.meta.UpdatedAt = splitOrigins(origins), fromNano(created), fromNano(updated)
		all = append(all, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reveal all: %w", err)
	}
	for i := range all {
		buf, err := t.open(ctx, &all[i])
		if err != nil {
			return err
		}
		err = fn(all[i].meta, buf)
		buf.Destroy()
		if err != nil {
			return err
		}
	}
	return nil
}

// Revision changes whenever a secret of the tenant is created, replaced or deleted, by any
// process. It is one indexed read; compare it to decide whether derived state (a scrub
// index) is stale.
func (t *Tenant) Revision(ctx context.Context) (_ int64, err error) {
	s := t.store()
	if s.closed.Load() {
		return 0, ErrClosed
	}
	var rev int64
	err = s.getRevision.QueryRowContext(ctx, t.id).Scan(&rev)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, t.gone()
	}
	if err != nil {
		return 0, fmt.Errorf("revision: %w", err)
	}
	return rev, nil
}

const maxAuditField = 512

func cutField(s string) string {
	if len(s) <= maxAuditField {
		return s
	}
	cut := maxAuditField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// AppendAudit records one use of a secret. A zero Time means now.
func (t *Tenant) AppendAudit(ctx context.Context, r AuditRecord) (err error) {
	s := t.store()
	defer s.track("append_audit", time.Now(), &err)
	if s.closed.Load() {
		return ErrClosed
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO audit (tenant_id, time, session, secret, version, origin, sink, result, reason)
			SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?)`,
			t.id, r.Time.UnixNano(), cutField(r.Session), cutField(r.Secret), r.Version, cutField(r.Origin), cutField(r.Sink), cutField(r.Result), cutField(r.Reason), t.id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return t.gone()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

// Audit returns up to limit records, newest first (limit <= 0 means 100; at most 10000).
func (t *Tenant) Audit(ctx context.Context, limit int) (_ []AuditRecord, err error) {
	s := t.store()
	defer s.track("audit", time.Now(), &err)
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 10000)
	rows, err := s.db.QueryContext(ctx, `SELECT time, session, secret, version, origin, sink, result, reason FROM audit WHERE tenant_id = ? ORDER BY id DESC LIMIT ?`, t.id, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	out := []AuditRecord{}
	for rows.Next() {
		var r AuditRecord
		var ts int64
		if err := rows.Scan(&ts, &r.Session, &r.Secret, &r.Version, &r.Origin, &r.Sink, &r.Result, &r.Reason); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		r.Time = fromNano(ts)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return out, nil
}
