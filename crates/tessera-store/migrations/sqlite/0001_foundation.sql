-- Tessera schema 0001 (SQLite): the foundation tables.
-- Records are JSON documents (TEXT, serde_json) with the columns needed for lookups, expiry
-- and atomic state changes beside them. Times are seconds since the Unix epoch (INTEGER).
-- Keep the logical shape identical to migrations/postgres/0001_foundation.sql.

CREATE TABLE clients (
    client_id  TEXT PRIMARY KEY NOT NULL,
    doc        TEXT NOT NULL,
    -- informational only (database clock); never used by logic
    updated_at INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER))
);

CREATE TABLE users (
    username TEXT PRIMARY KEY NOT NULL,
    subject  TEXT NOT NULL UNIQUE,
    doc      TEXT NOT NULL
);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY NOT NULL,
    alg            TEXT NOT NULL,
    private_sealed TEXT NOT NULL,
    public_jwk     TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    publish_at     INTEGER NOT NULL,
    activate_at    INTEGER NOT NULL,
    retire_at      INTEGER,
    remove_at      INTEGER
);
CREATE INDEX signing_keys_remove_at ON signing_keys (remove_at);

CREATE TABLE grants (
    grant_id   TEXT PRIMARY KEY NOT NULL,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    doc        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    -- authoritative (overrides the document's field); once set it is never cleared
    revoked_at INTEGER
);
CREATE INDEX grants_expires_at ON grants (expires_at);
CREATE INDEX grants_subject ON grants (subject);

CREATE TABLE auth_codes (
    code_hash   TEXT PRIMARY KEY NOT NULL,
    grant_id    TEXT NOT NULL,
    doc         TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    consumed_at INTEGER
);
CREATE INDEX auth_codes_grant_id ON auth_codes (grant_id);
CREATE INDEX auth_codes_expires_at ON auth_codes (expires_at);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    grant_id   TEXT NOT NULL,
    doc        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    spent_at   INTEGER
);
CREATE INDEX refresh_tokens_grant_id ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY NOT NULL,
    subject    TEXT NOT NULL,
    doc        TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_subject ON sessions (subject);

CREATE TABLE consents (
    subject   TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope     TEXT NOT NULL,
    PRIMARY KEY (subject, client_id)
);

CREATE TABLE replay (
    key        TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX replay_expires_at ON replay (expires_at);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
