package secretstore

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/awnumar/memguard"
)

// TenantInfo describes a tenant for operators; it holds no secret material.
type TenantInfo struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Secrets   int       `json:"secrets"`
}

// CreateTenant creates a tenant with a fresh random data key, wrapped under the master key
// this Store was opened with. ErrExists if the name is taken.
func (s *Store) CreateTenant(ctx context.Context, name string) (err error) {
	defer s.track("create_tenant", time.Now(), &err)
	if err := checkName("tenant", name); err != nil {
		return err
	}
	err = s.durableTx(ctx, func(tx *sql.Tx) error {
		now := nowNano()
		res, err := tx.ExecContext(ctx, `INSERT INTO tenants (name, created_at, revision, data_key_version) VALUES (?, ?, 0, 1)`, name, now)
		if isConstraint(err) {
			return fmt.Errorf("tenant %q: %w", name, ErrExists)
		}
		if err != nil {
			return err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		dk, err := newLocked(dataKeyLen)
		if err != nil {
			return err
		}
		defer dk.Destroy()
		if _, err := rand.Read(dk.Bytes()); err != nil {
			return err
		}
		var nonce, wrapped []byte
		if err := withMasterKey(s.master, func(kek cipher.AEAD) error {
			nonce, wrapped = wrapKey(kek, dk.Bytes(), id, 1, s.masterVersion)
			return nil
		}); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO tenant_keys (tenant_id, key_version, master_version, nonce, wrapped, created_at) VALUES (?, 1, ?, ?, ?, ?)`,
			id, s.masterVersion, nonce, wrapped, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("create tenant: %w", err)
	}
	s.log.Info("tenant created", "tenant", name)
	return nil
}

// ListTenants lists every tenant by name with its number of secrets.
func (s *Store) ListTenants(ctx context.Context) (_ []TenantInfo, err error) {
	defer s.track("list_tenants", time.Now(), &err)
	if s.closed.Load() {
		return nil, ErrClosed
	}
	rows, err := s.db.QueryContext(ctx, `SELECT t.name, t.created_at, COUNT(s.name) FROM tenants t LEFT JOIN secrets s ON s.tenant_id = t.id GROUP BY t.id ORDER BY t.name`)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	defer rows.Close()
	out := []TenantInfo{}
	for rows.Next() {
		var ti TenantInfo
		var created int64
		if err := rows.Scan(&ti.Name, &created, &ti.Secrets); err != nil {
			return nil, fmt.Errorf("list tenants: %w", err)
		}
		ti.CreatedAt = fromNano(created)
		out = append(out, ti)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return out, nil
}

// DeleteTenant crypto-shreds a tenant: its wrapped data keys, secrets, tokens and audit
// records are deleted in one transaction (secure_delete zeroes the freed content), then the
// WAL is checkpointed and truncated so no old page survives in the -wal file. When the
// checkpoint cannot complete because another connection keeps reading, the deletion stands
// and the error wraps ErrCheckpointIncomplete.
func (s *Store) DeleteTenant(ctx context.Context, name string) (err error) {
	defer s.track("delete_tenant", time.Now(), &err)
	if err := checkName("tenant", name); err != nil {
		return err
	}
	var id int64
	err = s.durableTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT id FROM tenants WHERE name = ?`, name).Scan(&id); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("tenant %q: %w", name, ErrNotFound)
			}
			return err
		}
		for _, q := range []string{
			`DELETE FROM tenant_keys WHERE tenant_id = ?`,
			`DELETE FROM secrets WHERE tenant_id = ?`,
			`DELETE FROM tokens WHERE tenant_id = ?`,
			`DELETE FROM audit WHERE tenant_id = ?`,
			`DELETE FROM tenants WHERE id = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete tenant: %w", err)
	}
	s.forgetTenantKeys(id)
	s.log.Info("tenant deleted", "tenant", name)
	if err := s.checkpoint(ctx); err != nil {
		s.log.Warn("tenant deleted but wal checkpoint incomplete", "tenant", name, "err", err)
		return fmt.Errorf("delete tenant %q: deleted, but %w", name, err)
	}
	return nil
}

// Tenant returns the handle for a tenant in operator scope (CLI, daemon configuration).
// ErrNotFound if there is no such tenant.
func (s *Store) Tenant(ctx context.Context, name string) (_ *Tenant, err error) {
	defer s.track("tenant", time.Now(), &err)
	if err := checkName("tenant", name); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	t := &Tenant{s: s, name: name}
	if err := s.tenantByName.QueryRowContext(ctx, name).Scan(&t.id, &t.keyVersion); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("tenant %q: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("tenant %q: %w", name, err)
	}
	if _, err := s.aead(ctx, t.id, t.keyVersion); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("tenant %q: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("tenant %q: %w", name, err)
	}
	return t, nil
}

// RotateMasterKey wraps every tenant data key (as readable under the master key this Store
// was opened with) under newKey too, recording newKey as a new master key version, all in one
// transaction. Nothing is re-encrypted and the old wrapped keys stay, so processes still
// running on the old key keep working. Restart them with the new key, then call
// RetireMasterKeys from a Store opened with the new key to remove the old version.
//
// Running it again with a newKey the store already knows adds the wrapped copies that are
// missing (for instance tenants created by a process still on the old key) and returns that
// key's version.
func (s *Store) RotateMasterKey(ctx context.Context, newKey *memguard.Enclave) (version int, err error) {
	defer s.track("rotate_master_key", time.Now(), &err)
	if newKey == nil {
		return 0, errors.New("rotate master key: no new key given")
	}
	fp, err := fingerprint(newKey)
	if err != nil {
		return 0, fmt.Errorf("rotate master key: %w", err)
	}
	var added, missing int
	err = s.durableTx(ctx, func(tx *sql.Tx) error {
		added, missing = 0, 0
		err := tx.QueryRowContext(ctx, `SELECT version FROM master_keys WHERE fingerprint = ?`, fp).Scan(&version)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM master_keys`).Scan(&version); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO master_keys (version, fingerprint, created_at) VALUES (?, ?, ?)`, version, fp, nowNano()); err != nil {
				return err
			}
		case err != nil:
			return err
		case version == s.masterVersion:
			return fmt.Errorf("the new key is the master key this store is already open with (version %d): %w", version, ErrExists)
		}
		type wk struct {
			tenant         int64
			keyVersion     int
			nonce, wrapped []byte
		}
		var todo []wk
		rows, err := tx.QueryContext(ctx, `SELECT k.tenant_id, k.key_version, k.nonce, k.wrapped FROM tenant_keys k
			WHERE k.master_version = ? AND NOT EXISTS (SELECT 1 FROM tenant_keys n
				WHERE n.tenant_id = k.tenant_id AND n.key_version = k.key_version AND n.master_version = ?)`, s.masterVersion, version)
		if err != nil {
			return err
		}
		for rows.Next() {
			var w wk
			if err := rows.Scan(&w.tenant, &w.keyVersion, &w.nonce, &w.wrapped); err != nil {
				rows.Close()
				return err
			}
			todo = append(todo, w)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		now := nowNano()
		err = withMasterKey(s.master, func(oldKEK cipher.AEAD) error {
			return withMasterKey(newKey, func(newKEK cipher.AEAD) error {
				for _, w := range todo {
					dk, err := unwrapKey(oldKEK, w.nonce, w.wrapped, w.tenant, w.keyVersion, s.masterVersion)
					if err != nil {
						return fmt.Errorf("tenant id %d: %w", w.tenant, err)
					}
					nonce, wrapped := wrapKey(newKEK, dk.Bytes(), w.tenant, w.keyVersion, version)
					dk.Destroy()
					if _, err := tx.ExecContext(ctx, `INSERT INTO tenant_keys (tenant_id, key_version, master_version, nonce, wrapped, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
						w.tenant, w.keyVersion, version, nonce, wrapped, now); err != nil {
						return err
					}
					added++
				}
				return nil
			})
		})
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM tenants t WHERE NOT EXISTS (SELECT 1 FROM tenant_keys k
			WHERE k.tenant_id = t.id AND k.key_version = t.data_key_version AND k.master_version = ?)`, version).Scan(&missing)
	})
	if err != nil {
		return 0, fmt.Errorf("rotate master key: %w", err)
	}
	s.log.Info("master key rotated", "new_version", version, "wrapped_keys_added", added)
	if missing > 0 {
		s.log.Warn("tenants without a key under the new master key version; run key rotate with the master key they use", "version", version, "tenants", missing)
	}
	return version, nil
}

// RetireMasterKeys deletes the wrapped keys and records of every master key version except
// the one this Store was opened with, then checkpoints the WAL. It refuses, changing nothing,
// when a tenant has no data key wrapped under the current version. Afterwards an old key
// fails to open the store (ErrWrongMasterKey).
func (s *Store) RetireMasterKeys(ctx context.Context) (removed int, err error) {
	defer s.track("retire_master_keys", time.Now(), &err)
	err = s.durableTx(ctx, func(tx *sql.Tx) error {
		var missing int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM tenants t WHERE NOT EXISTS (SELECT 1 FROM tenant_keys k
			WHERE k.tenant_id = t.id AND k.key_version = t.data_key_version AND k.master_version = ?)`, s.masterVersion).Scan(&missing); err != nil {
			return err
		}
		if missing > 0 {
			return fmt.Errorf("refusing: %d tenant(s) have no data key under master key version %d; run key rotate with the master key they use first", missing, s.masterVersion)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tenant_keys WHERE master_version <> ?`, s.masterVersion); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM master_keys WHERE version <> ?`, s.masterVersion)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		removed = int(n)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("retire master keys: %w", err)
	}
	s.log.Info("old master key versions retired", "removed", removed, "current_version", s.masterVersion)
	if err := s.checkpoint(ctx); err != nil {
		return removed, fmt.Errorf("retire master keys: retired, but %w", err)
	}
	return removed, nil
}
