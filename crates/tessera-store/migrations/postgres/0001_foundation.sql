-- Tessera schema 0001 (PostgreSQL): the foundation tables.
-- Records are JSON documents (TEXT, serde_json; not JSONB, so both backends store the same
-- bytes) with the columns needed for lookups, expiry and atomic state changes beside them.
-- Times are seconds since the Unix epoch (BIGINT).
-- Keep the logical shape identical to migrations/sqlite/0001_foundation.sql.

CREATE TABLE clients (
    client_id  TEXT PRIMARY KEY,
    doc        TEXT NOT NULL,
    -- informational only (database clock); never used by logic
    updated_at BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM now())::BIGINT)
);

CREATE TABLE users (
    username TEXT PRIMARY KEY,
    subject  TEXT NOT NULL UNIQUE,
    doc      TEXT NOT NULL
);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    private_sealed TEXT NOT NULL,
    public_jwk     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    publish_at     BIGINT NOT NULL,
    activate_at    BIGINT NOT NULL,
    retire_at      BIGINT,
    remove_at      BIGINT
);
CREATE INDEX signing_keys_remove_at ON signing_keys (remove_at);

CREATE TABLE grants (
    grant_id   TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    doc        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- authoritative (overrides the document's field); once set it is never cleared
    revoked_at BIGINT
);
CREATE INDEX grants_expires_at ON grants (expires_at);
CREATE INDEX grants_subject ON grants (subject);

CREATE TABLE auth_codes (
    code_hash   TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL,
    doc         TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    consumed_at BIGINT
);
CREATE INDEX auth_codes_grant_id ON auth_codes (grant_id);
CREATE INDEX auth_codes_expires_at ON auth_codes (expires_at);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id   TEXT NOT NULL,
    doc        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    spent_at   BIGINT
);
CREATE INDEX refresh_tokens_grant_id ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    doc        TEXT NOT NULL,
    expires_at BIGINT NOT NULL
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
    key        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX replay_expires_at ON replay (expires_at);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
