-- Tessera schema 0002 (SQLite): soft-lockout state (tessera_core::lockout).
-- One row per key (`user:NAME`, `client:ID` or `client:ID@SOURCE`). Rows are read and written
-- only inside a write transaction (BEGIN IMMEDIATE), which serializes attempts on every pool
-- sharing the file. Times are seconds since the Unix epoch.
-- Keep the logical shape identical to migrations/postgres/0002_lockout.sql.

CREATE TABLE lockout (
    key_id          TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL,
    name            TEXT NOT NULL,
    source          TEXT,
    failures        INTEGER NOT NULL,
    window_start    INTEGER NOT NULL,
    last_failure_at INTEGER,
    last_source     TEXT,
    in_flight       INTEGER NOT NULL,
    in_flight_until INTEGER NOT NULL,
    locked_until    INTEGER,
    lock_count      INTEGER NOT NULL,
    -- computed by the policy: after this the row carries no information (garbage collection)
    expires_at      INTEGER NOT NULL
);
CREATE INDEX lockout_kind_name ON lockout (kind, name);
CREATE INDEX lockout_expires_at ON lockout (expires_at);
