-- Tessera schema 0002 (PostgreSQL): soft-lockout state (tessera_core::lockout).
-- One row per key (`user:NAME`, `client:ID` or `client:ID@SOURCE`). Every change runs in a
-- transaction holding a transaction-scoped advisory lock on the key, so all nodes sharing the
-- database serialize attempts on one key. Times are seconds since the Unix epoch.
-- Keep the logical shape identical to migrations/sqlite/0002_lockout.sql.

CREATE TABLE lockout (
    key_id          TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    name            TEXT NOT NULL,
    source          TEXT,
    failures        BIGINT NOT NULL,
    window_start    BIGINT NOT NULL,
    last_failure_at BIGINT,
    last_source     TEXT,
    in_flight       BIGINT NOT NULL,
    in_flight_until BIGINT NOT NULL,
    locked_until    BIGINT,
    lock_count      BIGINT NOT NULL,
    -- computed by the policy: after this the row carries no information (garbage collection)
    expires_at      BIGINT NOT NULL
);
CREATE INDEX lockout_kind_name ON lockout (kind, name);
CREATE INDEX lockout_expires_at ON lockout (expires_at);
