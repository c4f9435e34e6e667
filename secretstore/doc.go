// Package secretstore owns cdpvault's encrypted, multi-tenant secret store: one SQLite file
// (modernc.org/sqlite, WAL) holding tenants, their secrets, API token hashes and an audit
// trail, plus the master key file that protects it. It knows SQLite and cryptography,
// nothing of HTTP or CDP.
//
// # Encryption
//
// Envelope encryption. A 32-byte master key (key-encryption key) lives in a memguard Enclave
// and is opened only while a data key is wrapped or unwrapped. Each tenant has a random
// 32-byte data key, stored only AES-256-GCM-wrapped under the master key (additional data:
// tenant id, data key version, master key version). Each secret value is AES-256-GCM under
// its tenant's data key with a fresh 12-byte random nonce; the additional data binds tenant
// id, secret name, secret version, data key version, kind and origins, so a ciphertext copied
// to another row or tenant, or an origin list edited in the file, fails to decrypt
// (ErrIntegrity). Master keys are identified in the file by HMAC-SHA256(key, "cdpvault
// master key id"), never stored.
//
// Decrypted values only exist in memguard LockedBuffers (Reveal, RevealAll) or in a small
// pool of long-lived LockedBuffers wiped after each use (RevealFunc). Unwrapped data keys
// exist only in LockedBuffers, but the AES-GCM ciphers built from them are cached per tenant
// in ordinary memory, because crypto/aes keeps its key schedule on the Go heap and there is
// no way to place it elsewhere; the alternative (opening the master key and rebuilding the
// cipher on every read) costs ~60 µs per read and leaves more key schedules behind as
// garbage. Deleting a tenant drops its cached cipher in this process.
//
// # Isolation
//
// Secrets are reachable only through a *Tenant, obtained from Store.Tenant (operator
// scope) or Store.Authenticate (API token); every query is bound to its tenant id. A name of
// another tenant answers exactly like a name that does not exist (ErrNotFound).
//
// # Master key rotation
//
//  1. With the daemon still running on the old key: RotateMasterKey(newKey) on a Store opened
//     with the old key (`cdpvault key rotate`). Every tenant data key gets a second wrapped
//     copy under the new key, recorded as the next master key version, in one transaction.
//     Data is not re-encrypted; running processes keep working.
//  2. Install the new key file and restart the daemon (and use it for the CLI).
//  3. RetireMasterKeys on a Store opened with the new key deletes the old wrapped copies and
//     the old key's record and truncates the WAL. From then on the old key cannot open the
//     store (ErrWrongMasterKey); destroy the old key file. RetireMasterKeys refuses while a
//     tenant has no copy under the current key (e.g. it was created by a process still on the
//     old key between steps 1 and 2; running step 1 again fills such gaps).
//
// # Deletion
//
// secure_delete is on, so deleted rows are overwritten with zeros in the file. DeleteTenant
// removes the tenant's wrapped keys, secrets, tokens and audit records in one transaction and
// then runs wal_checkpoint(TRUNCATE): the data key is gone from the database, its WAL and
// shm (crypto-shredding), so backups taken afterwards hold nothing of the tenant.
//
// # Concurrency
//
// Several processes (the daemon and CLI invocations) may use the file at once: WAL mode,
// busy_timeout, BEGIN IMMEDIATE for every write transaction, writes serialised in-process,
// and whole-transaction retries with backoff on SQLITE_BUSY.
//
// # Durability
//
// Every acknowledged write survives a crash of the process (tested with SIGKILL). Writes that
// matter for security (tenant create/delete, token create/revoke, secret delete, master key
// rotate/retire, migrations) commit with synchronous=FULL, so they and every earlier commit
// also survive a power loss. Routine writes (PutSecret, AppendAudit, token last-use) commit
// with synchronous=NORMAL, SQLite's recommended WAL setting: the file stays consistent after
// a power loss, but the most recent such commits may be lost until the next FULL commit or
// checkpoint (Close checkpoints, so a CLI `secret set` is on disk when the command exits).
// The fsync per PutSecret would otherwise bound sets to the disk's fsync rate.
//
// # Memory
//
// Each LockedBuffer costs three pages of address space and at least one page of mlocked
// memory. memguard's answer to a failed mlock is to wipe every buffer and enclave key of the
// process and panic, so the store checks the RLIMIT_MEMLOCK headroom (VmLck, CAP_IPC_LOCK;
// cached briefly) before it allocates and fails that call with ErrMemlock instead. Callers
// must still destroy Reveal's buffers promptly and bound how many they hold at once.
// RevealFunc uses at most 4 buffers of one page each, kept until Close.
//
// # Performance
//
// A fresh LockedBuffer costs ~25-35 µs (mmap, mlock, two mprotects, a random canary; the
// reverse on Destroy) and contends across cores, which caps Reveal at roughly 30,000/s on
// two cores. RevealFunc decrypts into pooled LockedBuffers and runs at the speed of the SQL
// read (well above 50,000/s); use it on hot paths that only need the value briefly.
package secretstore
