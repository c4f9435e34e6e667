-- 0001: initial schema. Applied once, inside a BEGIN IMMEDIATE transaction, by Open.
-- Times are Unix nanoseconds (UTC). No column ever holds a plaintext secret value or key.

-- Every master key this store has been wrapped under, identified by a keyed fingerprint
-- (HMAC-SHA256(key, "cdpvault master key id")), never by the key itself.
CREATE TABLE master_keys (
    version     INTEGER PRIMARY KEY,
    fingerprint BLOB    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

-- AUTOINCREMENT: a deleted tenant's id is never reused, so nothing bound to an old id
-- (additional data of ciphertexts, cached keys) can ever match a new tenant.
CREATE TABLE tenants (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL UNIQUE,
    created_at       INTEGER NOT NULL,
    revision         INTEGER NOT NULL DEFAULT 0,
    data_key_version INTEGER NOT NULL DEFAULT 1
);

-- A tenant's data key, AES-256-GCM wrapped under one master key version. Rotation adds rows
-- for the new master version; retirement deletes the others.
CREATE TABLE tenant_keys (
    tenant_id      INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key_version    INTEGER NOT NULL,
    master_version INTEGER NOT NULL REFERENCES master_keys(version),
    nonce          BLOB    NOT NULL,
    wrapped        BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key_version, master_version)
) WITHOUT ROWID;

-- One row per secret (the current version only: replacing a value overwrites the old
-- ciphertext, and secure_delete zeroes it). origins is the normalised list joined by "\n".
CREATE TABLE secrets (
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    origins     TEXT    NOT NULL,
    key_version INTEGER NOT NULL,
    nonce       BLOB    NOT NULL,
    ciphertext  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- API tokens: only a SHA-256 hash of the whole token is kept; id is the public lookup prefix.
CREATE TABLE tokens (
    id           TEXT    PRIMARY KEY,
    tenant_id    INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    label        TEXT    NOT NULL,
    hash         BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX tokens_tenant ON tokens (tenant_id);

CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    time      INTEGER NOT NULL,
    session   TEXT    NOT NULL,
    secret    TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    origin    TEXT    NOT NULL,
    sink      TEXT    NOT NULL,
    result    TEXT    NOT NULL,
    reason    TEXT    NOT NULL
);
CREATE INDEX audit_tenant ON audit (tenant_id, id);
