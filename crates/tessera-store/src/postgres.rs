//! PostgreSQL backend: for several server processes sharing one database.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::common::impl_store;
use crate::lockout::impl_lockout;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

const MAX_CONNECTIONS: u32 = 16;
/// Bounds connecting too: an unreachable database is `Unavailable` after this, not a hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_LIFETIME: Duration = Duration::from_secs(1800);

/// The PostgreSQL store. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Checks that the database answers (one connection, at most 5 s), then sets up a pool of
    /// up to 16 connections with a 5 s acquire timeout.
    /// The URL is never echoed in errors (it may hold a password).
    /// Does not migrate: call [`PgStore::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::Backend("invalid PostgreSQL URL".into()))?
            .application_name("tessera");
        // One direct attempt first: a refused connection or bad credentials fail at once
        // (the pool would retry until its acquire timeout), and a silent server is bounded.
        let probe = tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| StoreError::Unavailable("timed out connecting to PostgreSQL".into()))?
            .map_err(db_err)?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(IDLE_TIMEOUT)
            .max_lifetime(MAX_LIFETIME)
            .connect_lazy_with(options);
        let _ = probe.close().await;
        Ok(Self { pool })
    }

    /// Applies the embedded migrations (`migrations/postgres/`) that are not applied yet, under
    /// sqlx's advisory lock (nodes starting together are safe).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| db_err(e.into()))
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The pool writes go through: the same pool (PostgreSQL serializes with row locks).
    fn writer(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool.begin().await.map_err(db_err)
    }

    async fn applied_version(&self) -> Result<i64, StoreError> {
        let (exists,): (bool,) =
            sqlx::query_as("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        if !exists {
            return Ok(0);
        }
        let (v,): (i64,) =
            sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(v)
    }

    fn expected_version() -> i64 {
        MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
    }
}

impl_store!(
    store = PgStore,
    backend = "postgres",
    for_update = " FOR UPDATE",
    for_share = " FOR SHARE",
    remember_once = direct,
);
impl_lockout!(
    store = PgStore,
    key_lock = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
);
