package secretstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/awnumar/memguard"
)

// Token format: "cdpv_" + id + "_" + secret, where id is 16 lowercase hex characters (8
// random bytes, not secret: it is the lookup key and appears in ListTokens) and secret is 32
// random bytes in unpadded base64url (43 characters). Only SHA-256 of the whole token is
// stored; a token is 256 bits of entropy, so a slow hash would add nothing.
const (
	tokenPrefix    = "cdpv_"
	tokenIDLen     = 16
	tokenSecretLen = 43
	tokenLen       = len(tokenPrefix) + tokenIDLen + 1 + tokenSecretLen
	maxLabelLen    = 128
	touchInterval  = time.Minute
)

// TokenInfo describes an API token; the token itself is shown only once, by CreateToken.
type TokenInfo struct {
	ID         string     `json:"id"`
	Label      string     `json:"label"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"` // updated at most once a minute
}

// tokenHashEqual compares two SHA-256 token hashes in constant time (a variable so a test
// can check that both the unknown-id and the wrong-secret path go through it).
var tokenHashEqual = func(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// dummyHash is compared against when a token id is unknown, so that path costs the same.
var dummyHash = sha256.Sum256([]byte("cdpvault dummy token"))

func checkLabel(label string) error {
	if len(label) > maxLabelLen || !utf8.ValidString(label) {
		return fmt.Errorf("token label: at most %d bytes of UTF-8: %w", maxLabelLen, ErrInvalidName)
	}
	for _, r := range label {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("token label: control characters are not allowed: %w", ErrInvalidName)
		}
	}
	return nil
}

// CreateToken creates an API token for a tenant and returns it; it cannot be shown again.
func (s *Store) CreateToken(ctx context.Context, tenant, label string) (token string, info TokenInfo, err error) {
	defer s.track("create_token", time.Now(), &err)
	if err := checkName("tenant", tenant); err != nil {
		return "", TokenInfo{}, err
	}
	if err := checkLabel(label); err != nil {
		return "", TokenInfo{}, err
	}
	var raw [8 + 32]byte
	defer memguard.WipeBytes(raw[:])
	if _, err := rand.Read(raw[:]); err != nil {
		return "", TokenInfo{}, fmt.Errorf("create token: %w", err)
	}
	id := hex.EncodeToString(raw[:8])
	token = tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(raw[8:])
	sum := sha256.Sum256([]byte(token))
	now := time.Now()
	err = s.durableTx(ctx, func(tx *sql.Tx) error {
		var tid int64
		if err := tx.QueryRowContext(ctx, `SELECT id FROM tenants WHERE name = ?`, tenant).Scan(&tid); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("tenant %q: %w", tenant, ErrNotFound)
			}
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO tokens (id, tenant_id, label, hash, created_at) VALUES (?, ?, ?, ?, ?)`, id, tid, label, sum[:], now.UnixNano())
		return err
	})
	if err != nil {
		return "", TokenInfo{}, fmt.Errorf("create token: %w", err)
	}
	s.log.Info("token created", "tenant", tenant, "token_id", id)
	return token, TokenInfo{ID: id, Label: label, CreatedAt: fromNano(now.UnixNano())}, nil
}

// parseTokenID checks the token's shape and returns its public id.
func parseTokenID(token string) (string, bool) {
	if len(token) != tokenLen || token[:len(tokenPrefix)] != tokenPrefix || token[len(tokenPrefix)+tokenIDLen] != '_' {
		return "", false
	}
	id := token[len(tokenPrefix) : len(tokenPrefix)+tokenIDLen]
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	sec := token[len(tokenPrefix)+tokenIDLen+1:]
	for i := 0; i < len(sec); i++ {
		if c := sec[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", false
		}
	}
	return id, true
}

// Authenticate returns the tenant an API token belongs to. Every failure (malformed,
// unknown, revoked, tenant deleted, wrong secret part) is ErrUnauthorized and nothing else;
// the hashes are compared in constant time, and an unknown id costs a comparison too.
func (s *Store) Authenticate(ctx context.Context, token string) (_ *Tenant, err error) {
	defer s.track("authenticate", time.Now(), &err)
	if s.closed.Load() {
		return nil, ErrClosed
	}
	id, ok := parseTokenID(token)
	if !ok {
		return nil, ErrUnauthorized
	}
	sum := sha256.Sum256([]byte(token))
	var hash []byte
	var lastUsed sql.NullInt64
	t := &Tenant{s: s}
	err = s.tokenByID.QueryRowContext(ctx, id).Scan(&hash, &lastUsed, &t.id, &t.name, &t.keyVersion)
	if errors.Is(err, sql.ErrNoRows) {
		tokenHashEqual(sum[:], dummyHash[:])
		return nil, ErrUnauthorized
	}
	if err != nil {
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	if !tokenHashEqual(sum[:], hash) {
		return nil, ErrUnauthorized
	}
	if _, err := s.aead(ctx, t.id, t.keyVersion); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, ErrUnauthorized
		}
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	if now := time.Now(); !lastUsed.Valid || now.Sub(fromNano(lastUsed.Int64)) >= touchInterval {
		if err := s.writeTx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE tokens SET last_used_at = ? WHERE id = ?`, now.UnixNano(), id)
			return err
		}); err != nil {
			s.log.Warn("could not record token use", "token_id", id, "err", err)
		}
	}
	return t, nil
}

// ListTokens lists a tenant's tokens (ids and labels, never the tokens).
func (s *Store) ListTokens(ctx context.Context, tenant string) (_ []TokenInfo, err error) {
	defer s.track("list_tokens", time.Now(), &err)
	if err := checkName("tenant", tenant); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	var tid int64
	var kv int
	if err := s.tenantByName.QueryRowContext(ctx, tenant).Scan(&tid, &kv); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("tenant %q: %w", tenant, ErrNotFound)
		}
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, label, created_at, last_used_at FROM tokens WHERE tenant_id = ? ORDER BY created_at, id`, tid)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	out := []TokenInfo{}
	for rows.Next() {
		var ti TokenInfo
		var created int64
		var used sql.NullInt64
		if err := rows.Scan(&ti.ID, &ti.Label, &created, &used); err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		ti.CreatedAt = fromNano(created)
		if used.Valid {
			u := fromNano(used.Int64)
			ti.LastUsedAt = &u
		}
		out = append(out, ti)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// RevokeToken deletes a tenant's token by id. A token of another tenant is ErrNotFound,
// exactly like an unknown id.
func (s *Store) RevokeToken(ctx context.Context, tenant, id string) (err error) {
	defer s.track("revoke_token", time.Now(), &err)
	if err := checkName("tenant", tenant); err != nil {
		return err
	}
	if len(id) > 64 || !utf8.ValidString(id) {
		return fmt.Errorf("token %q: %w", clip(id), ErrNotFound)
	}
	err = s.durableTx(ctx, func(tx *sql.Tx) error {
		var tid int64
		if err := tx.QueryRowContext(ctx, `SELECT id FROM tenants WHERE name = ?`, tenant).Scan(&tid); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("tenant %q: %w", tenant, ErrNotFound)
			}
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE id = ? AND tenant_id = ?`, id, tid)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("token %q: %w", clip(id), ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	s.log.Info("token revoked", "tenant", tenant, "token_id", id)
	return nil
}
