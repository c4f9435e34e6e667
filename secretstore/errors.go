package secretstore

import (
	"errors"
	"fmt"
)

// Errors returned by the store. Test for them with errors.Is; the returned errors wrap them
// with context (a tenant, secret or token name, never a value).
var (
	// ErrNotFound: no such tenant, secret or token in the caller's scope. A secret or token
	// of another tenant gives exactly this error too.
	ErrNotFound = errors.New("not found")
	// ErrExists: a tenant with that name already exists.
	ErrExists = errors.New("already exists")
	// ErrInvalidName: a tenant, secret or token name (or token label) is malformed.
	ErrInvalidName = errors.New("invalid name")
	// ErrInvalidValue: a secret value (or its kind) is refused. The message never holds the value.
	ErrInvalidValue = errors.New("invalid secret value")
	// ErrInvalidKind: the kind is not one of password, text, totp. It wraps ErrInvalidValue.
	ErrInvalidKind = fmt.Errorf("%w: unknown kind", ErrInvalidValue)
	// ErrInvalidOrigin: an origin is not "*" or scheme://host[:port] with scheme http or https.
	ErrInvalidOrigin = errors.New("invalid origin")
	// ErrUnauthorized: an API token is malformed, unknown, revoked or belongs to a deleted tenant.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrWrongMasterKey: the master key is not one this store knows, or a tenant's data key is
	// not wrapped under the master key version the store was opened with.
	ErrWrongMasterKey = errors.New("wrong master key")
	// ErrIntegrity: a stored ciphertext or wrapped key failed authentication (altered, truncated,
	// or copied to another row or tenant). Nothing is returned in that case.
	ErrIntegrity = errors.New("integrity check failed")
	// ErrCheckpointIncomplete: a destructive operation (tenant delete, key retirement) committed,
	// but the WAL could not be checkpointed and truncated because another connection was
	// reading; the old pages leave the WAL file at the next successful checkpoint (Close does one).
	ErrCheckpointIncomplete = errors.New("wal checkpoint incomplete")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store closed")
)
