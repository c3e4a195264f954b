//! Soft-lockout state ([`tessera_core::store::LockoutStore`]) for both backends.
//!
//! The logic is not here: every change loads one key's row, applies the pure transition of
//! [`tessera_core::lockout`] and writes the result back, all in one transaction that holds the
//! key exclusively:
//! - SQLite: `BEGIN IMMEDIATE` takes the database write lock up front, so transactions of every
//!   pool on the file run one after the other;
//! - PostgreSQL: `pg_advisory_xact_lock(hashtextextended(key, 0))` serializes the transactions of
//!   every node on that key (a hash collision only serializes two unrelated keys). Under READ
//!   COMMITTED the `SELECT` after the lock sees the previous holder's commit.
//!
//! That is what makes attempt reservations race-free: 200 concurrent `begin_attempt`s on one
//! key see each other's `in_flight`, whichever node they run on.

/// Instantiated in `sqlite.rs` / `postgres.rs` (it needs the private `pool` for reads,
/// `writer()` and `begin_write()` for writes); `key_lock` is the statement that locks one key inside the transaction, or
/// `""` when the transaction itself is exclusive.
macro_rules! impl_lockout {
    (store = $store:ident, key_lock = $key_lock:literal $(,)?) => {
        mod lockout_impl {
            use ::tessera_core::clock::UnixTime;
            use ::tessera_core::lockout::{
                self, Admission, AttemptOutcome, LockoutKey, LockoutKind, LockoutPolicy, LockoutRecord,
                Settled,
            };
            use ::tessera_core::store::{LockoutStore, StoreError, StoreResult};

            use super::$store;
            use $crate::error::db_err;

            const COLUMNS: &str = "key_id, kind, name, source, failures, window_start, \
                last_failure_at, last_source, in_flight, in_flight_until, locked_until, \
                lock_count, expires_at";

            type Row = (
                String,
                String,
                String,
                Option<String>,
                i64,
                i64,
                Option<i64>,
                Option<String>,
                i64,
                i64,
                Option<i64>,
                i64,
                i64,
            );

            fn count(v: i64) -> Result<u32, StoreError> {
                u32::try_from(v).map_err(|_| StoreError::Corrupt("lockout counter out of range".into()))
            }

            fn decode(row: Row) -> Result<LockoutRecord, StoreError> {
                let (_, kind, name, source, failures, window_start, last_failure_at, last_source) =
                    (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
                let kind = LockoutKind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt("unknown lockout kind".into()))?;
                Ok(LockoutRecord {
                    key: LockoutKey { kind, name, source },
                    failures: count(failures)?,
                    window_start,
                    last_failure_at,
                    last_source,
                    in_flight: count(row.8)?,
                    in_flight_until: row.9,
                    locked_until: row.10,
                    lock_count: count(row.11)?,
                    expires_at: row.12,
                })
            }

            fn decode_all(rows: Vec<Row>) -> Result<Vec<LockoutRecord>, StoreError> {
                rows.into_iter().map(decode).collect()
            }

            impl $store {
                /// Load `key`'s row, apply `f`, store its result (`None` deletes), in one
                /// transaction holding the key.
                async fn lockout_apply<T, F>(
                    &self,
                    key: &LockoutKey,
                    f: F,
                ) -> StoreResult<(T, Option<LockoutRecord>)>
                where
                    F: FnOnce(Option<&LockoutRecord>) -> (Option<LockoutRecord>, T) + Send,
                    T: Send,
                {
                    let id = key.id();
                    let mut tx = self.begin_write().await?;
                    if !$key_lock.is_empty() {
                        sqlx::query($key_lock).bind(&id).execute(&mut *tx).await.map_err(db_err)?;
                    }
                    let sql = format!("SELECT {COLUMNS} FROM lockout WHERE key_id = $1");
                    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(&id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    let current = row.map(decode).transpose()?;
                    let (next, out) = f(current.as_ref());
                    match &next {
                        Some(r) => {
                            let sql = format!(
                                "INSERT INTO lockout ({COLUMNS}) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                                 ON CONFLICT (key_id) DO UPDATE SET \
                                 failures = excluded.failures, window_start = excluded.window_start, \
                                 last_failure_at = excluded.last_failure_at, \
                                 last_source = excluded.last_source, in_flight = excluded.in_flight, \
                                 in_flight_until = excluded.in_flight_until, \
                                 locked_until = excluded.locked_until, lock_count = excluded.lock_count, \
                                 expires_at = excluded.expires_at"
                            );
                            sqlx::query(sqlx::AssertSqlSafe(sql))
                                .bind(&id)
                                .bind(r.key.kind.as_str())
                                .bind(&r.key.name)
                                .bind(&r.key.source)
                                .bind(i64::from(r.failures))
                                .bind(r.window_start)
                                .bind(r.last_failure_at)
                                .bind(&r.last_source)
                                .bind(i64::from(r.in_flight))
                                .bind(r.in_flight_until)
                                .bind(r.locked_until)
                                .bind(i64::from(r.lock_count))
                                .bind(r.expires_at)
                                .execute(&mut *tx)
                                .await
                                .map_err(db_err)?;
                        }
                        None if current.is_some() => {
                            sqlx::query("DELETE FROM lockout WHERE key_id = $1")
                                .bind(&id)
                                .execute(&mut *tx)
                                .await
                                .map_err(db_err)?;
                        }
                        None => {}
                    }
                    tx.commit().await.map_err(db_err)?;
                    Ok((out, next))
                }
            }

            #[::async_trait::async_trait]
            impl LockoutStore for $store {
                async fn lockout_begin_attempt(
                    &self,
                    policy: &LockoutPolicy,
                    key: &LockoutKey,
                    now: UnixTime,
                ) -> StoreResult<(Admission, Option<LockoutRecord>)> {
                    self.lockout_apply(key, |cur| lockout::begin_attempt(policy, key, cur, now)).await
                }

                async fn lockout_finish_attempt(
                    &self,
                    policy: &LockoutPolicy,
                    key: &LockoutKey,
                    reserved: bool,
                    outcome: AttemptOutcome,
                    source: Option<&str>,
                    now: UnixTime,
                ) -> StoreResult<(Settled, Option<LockoutRecord>)> {
                    self.lockout_apply(key, |cur| {
                        lockout::finish_attempt(policy, key, cur, reserved, outcome, source, now)
                    })
                    .await
                }

                async fn lockout_find(
                    &self,
                    kind: LockoutKind,
                    name: &str,
                ) -> StoreResult<Vec<LockoutRecord>> {
                    let sql = format!(
                        "SELECT {COLUMNS} FROM lockout WHERE kind = $1 AND name = $2 ORDER BY key_id"
                    );
                    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(kind.as_str())
                        .bind(name)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db_err)?;
                    decode_all(rows)
                }

                async fn lockout_list(&self, now: UnixTime) -> StoreResult<Vec<LockoutRecord>> {
                    let sql = format!(
                        "SELECT {COLUMNS} FROM lockout WHERE expires_at > $1 ORDER BY kind, name, key_id"
                    );
                    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(now)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(db_err)?;
                    decode_all(rows)
                }

                async fn lockout_clear(
                    &self,
                    kind: LockoutKind,
                    name: &str,
                ) -> StoreResult<Vec<LockoutRecord>> {
                    let sql = format!(
                        "DELETE FROM lockout WHERE kind = $1 AND name = $2 RETURNING {COLUMNS}"
                    );
                    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(kind.as_str())
                        .bind(name)
                        .fetch_all(self.writer())
                        .await
                        .map_err(db_err)?;
                    decode_all(rows)
                }

                async fn lockout_collect_expired(&self, now: UnixTime) -> StoreResult<u64> {
                    let r = sqlx::query("DELETE FROM lockout WHERE expires_at <= $1")
                        .bind(now)
                        .execute(self.writer())
                        .await
                        .map_err(db_err)?;
                    Ok(r.rows_affected())
                }
            }
        }
    };
}

pub(crate) use impl_lockout;
