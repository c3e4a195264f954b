//! SQLite backend: the embedded default (one file, WAL).
//!
//! Two pools on the file. SQLite admits one writer at a time; connections that try to write
//! concurrently get `SQLITE_BUSY` and sleep in its busy handler (milliseconds at a time), which
//! is where tail latency came from under load. So:
//! - **one writer connection** (`writer`): every statement that writes and every `BEGIN
//!   IMMEDIATE` transaction goes through it, so writers queue in-process (on the pool) instead
//!   of sleeping in SQLite; another process writing the same file (the CLI while a server runs)
//!   still waits on the busy timeout;
//! - **a read pool** (`pool`, read-only connections): WAL readers run in parallel with the
//!   writer and see every transaction committed before they start.
//!
//! Replay checks (`remember_once`, one per client or grant assertion) are group-committed:
//! concurrent calls are queued and written by one statement per batch ([`ReplayBatcher`]), so
//! the durable single-use check costs one write per batch instead of one per request. The
//! batch is written on a direct connection of its own ([`crate::sqlite_direct`]) without a
//! hand-off to a worker thread, and through the pooled writer whenever another connection holds
//! the write lock. Each caller still gets its answer only after the statement that decides it
//! has committed.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::{mpsc, oneshot};

use crate::common::impl_store;
use crate::lockout::impl_lockout;
use crate::sqlite_direct::{DirectError, DirectWriter, INSERT_REPLAY_ROWS};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// Read connections per file-backed store. WAL readers run in parallel with each other and
/// with the writer.
const READ_CONNECTIONS: u32 = 8;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// WAL frames between automatic checkpoints of the pooled writer (SQLite's default is 1000).
/// Replay batches, the bulk of the writes under load, go through the direct connection, which
/// has its own checkpoint schedule (`sqlite_direct`); this covers the other writes and the
/// replay batches that fall back to the pool. A checkpoint writes each distinct page once,
/// however often it changed, so fewer, larger checkpoints rewrite hot pages less often.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 8192;
/// Most keys written by one replay statement (the JSON array is one bind value).
const REPLAY_BATCH_MAX: usize = 512;
/// How many times the replay writer yields to gather more checks into one batch.
const REPLAY_GATHER_YIELDS: usize = 3;

/// The SQLite store. Cheap to clone (the pools and the replay queue are shared).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads (read-only connections on a file; the single connection of an in-memory store).
    pool: SqlitePool,
    /// Writes: one connection (the same single connection for an in-memory store).
    writer: SqlitePool,
    replay: ReplayBatcher,
}

impl SqliteStore {
    /// Opens (creating the file and its parent directory if missing) a database file:
    /// WAL journal, `synchronous=NORMAL`, foreign keys on, a 5 s busy timeout; one writer
    /// connection (checkpointing every 8192 WAL frames) and up to 8 read-only connections.
    /// Does not migrate: call [`SqliteStore::migrate`].
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await.map_err(|e| {
                StoreError::Unavailable(format!("cannot create the database directory: {e}"))
            })?;
        }
        let write_options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        // The writer is opened first: it creates the file and switches it to WAL (a property
        // of the file), which the read-only connections then use.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // A file connection that is never shared: a ping per acquire is one more
            // thread hand-off per write and finds nothing.
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(write_options)
            .await
            .map_err(db_err)?;
        let read_options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(read_options)
            .await
            .map_err(db_err)?;
        Ok(Self {
            replay: ReplayBatcher::new(writer.clone(), Some(DirectWriter::new(path))),
            pool,
            writer,
        })
    }

    /// A private in-memory database, for tests. One connection that is never recycled (the
    /// database lives exactly as long as it), so every caller sees the same data; it serves
    /// reads and writes alike.
    /// Does not migrate: call [`SqliteStore::migrate`].
    pub async fn memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(db_err)?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(db_err)?;
        Ok(Self {
            replay: ReplayBatcher::new(pool.clone(), None),
            writer: pool.clone(),
            pool,
        })
    }

    /// Applies the embedded migrations (`migrations/sqlite/`) that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.writer)
            .await
            .map_err(|e| db_err(e.into()))
    }

    /// Closes the pools, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    /// The pool every write goes through.
    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        // Take the write lock up front (waiting up to the busy timeout) instead of upgrading a
        // read lock later, which fails with SQLITE_BUSY under WAL without waiting.
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }

    async fn remember_once_batched(
        &self,
        key: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.replay.remember_once(key, expires_at, now).await
    }

    async fn applied_version(&self) -> Result<i64, StoreError> {
        let exists: Option<(String,)> = sqlx::query_as(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        if exists.is_none() {
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

/// One queued `remember_once` call.
struct ReplayRequest {
    key: String,
    expires_at: i64,
    now: i64,
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

/// Group commit of replay checks: callers queue their key; one task per store takes everything
/// queued, writes it with one statement per distinct `now` on the writer connection, and
/// answers each caller. Under load a batch holds roughly every request in flight; alone, a call
/// is one statement as before. The task is started on the first call, on the caller's runtime,
/// and again if that runtime has gone; it ends when the store (every clone) is dropped.
#[derive(Clone)]
struct ReplayBatcher {
    writer: SqlitePool,
    /// The file's direct connection for replay batches (none for an in-memory store).
    direct: Option<Arc<DirectWriter>>,
    queue: Arc<Mutex<Option<mpsc::UnboundedSender<ReplayRequest>>>>,
}

impl std::fmt::Debug for ReplayBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayBatcher").finish_non_exhaustive()
    }
}

impl ReplayBatcher {
    fn new(writer: SqlitePool, direct: Option<DirectWriter>) -> Self {
        Self {
            writer,
            direct: direct.map(Arc::new),
            queue: Arc::new(Mutex::new(None)),
        }
    }

    async fn remember_once(
        &self,
        key: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        let request = ReplayRequest {
            key: key.to_owned(),
            expires_at,
            now,
            reply,
        };
        {
            let mut queue = self
                .queue
                .lock()
                .map_err(|_| StoreError::Backend("replay queue poisoned".into()))?;
            let sent = match queue.as_ref() {
                Some(tx) => match tx.send(request) {
                    Ok(()) => None,
                    // The task is gone (its runtime shut down): start another below.
                    Err(mpsc::error::SendError(r)) => Some(r),
                },
                None => Some(request),
            };
            if let Some(request) = sent {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(replay_writer(self.writer.clone(), self.direct.clone(), rx));
                tx.send(request)
                    .map_err(|_| StoreError::Unavailable("replay writer did not start".into()))?;
                *queue = Some(tx);
            }
        }
        Self::wait(answer).await
    }

    async fn wait(answer: oneshot::Receiver<Result<bool, StoreError>>) -> Result<bool, StoreError> {
        answer
            .await
            .map_err(|_| StoreError::Unavailable("replay writer stopped".into()))?
    }
}

async fn replay_writer(
    writer: SqlitePool,
    direct: Option<Arc<DirectWriter>>,
    mut rx: mpsc::UnboundedReceiver<ReplayRequest>,
) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        // Let the request tasks that are ready run up to their own replay check before the
        // batch goes out: on a busy runtime this gathers many checks into one statement
        // (one commit, far fewer pages written) instead of one per request.
        for _ in 0..REPLAY_GATHER_YIELDS {
            let before = batch.len();
            while batch.len() < REPLAY_BATCH_MAX {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if batch.len() >= REPLAY_BATCH_MAX || (batch.len() == before && before > 1) {
                break;
            }
            tokio::task::yield_now().await;
        }
        write_replay_batch(&writer, direct.as_deref(), std::mem::take(&mut batch)).await;
    }
}

/// Writes one batch and answers every caller in it. A key repeated within the batch is
/// decided once: its first caller gets the answer, the others `false` (the key is taken).
async fn write_replay_batch(
    writer: &SqlitePool,
    direct: Option<&DirectWriter>,
    batch: Vec<ReplayRequest>,
) {
    // Group index of each request (None: a repeat of a key seen earlier in the batch).
    let mut group_of: Vec<Option<usize>> = Vec::with_capacity(batch.len());
    // One group per distinct `now`: (now, [(key, expires_at)]) of first occurrences.
    let mut groups: Vec<(i64, Vec<(&str, i64)>)> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::with_capacity(batch.len());
    for r in &batch {
        if !seen.insert(r.key.as_str()) {
            group_of.push(None);
            continue;
        }
        let g = groups
            .iter()
            .position(|(now, _)| *now == r.now)
            .unwrap_or(groups.len());
        match groups.get_mut(g) {
            Some((_, rows)) => rows.push((r.key.as_str(), r.expires_at)),
            None => groups.push((r.now, vec![(r.key.as_str(), r.expires_at)])),
        }
        group_of.push(Some(g));
    }
    let mut written: Vec<Result<HashSet<String>, StoreError>> = Vec::with_capacity(groups.len());
    for (now, rows) in &groups {
        written.push(insert_replay_rows(writer, direct, rows, *now).await);
    }
    for (r, g) in batch.into_iter().zip(group_of) {
        let answer = match g.map(|g| written.get(g)) {
            None => Ok(false),
            Some(Some(Ok(keys))) => Ok(keys.contains(&r.key)),
            Some(Some(Err(e))) => Err(clone_error(e)),
            Some(None) => Err(StoreError::Backend("replay key not written".into())),
        };
        // The caller may have gone (request cancelled): nothing to do.
        let _ = r.reply.send(answer);
    }
}

/// One statement for many keys ([`INSERT_REPLAY_ROWS`]): on the direct connection when it can
/// take the write lock at once, else on the pooled writer. Returns the keys written (those seen
/// for the first time).
async fn insert_replay_rows(
    writer: &SqlitePool,
    direct: Option<&DirectWriter>,
    rows: &[(&str, i64)],
    now: i64,
) -> Result<HashSet<String>, StoreError> {
    let json = serde_json::to_string(rows)
        .map_err(|_| StoreError::Backend("could not encode replay keys".into()))?;
    if let Some(direct) = direct {
        match direct.insert(&json, now, rows.len()) {
            Ok(keys) => return Ok(keys),
            Err(DirectError::Busy) => {}
            Err(DirectError::Failed(e)) => {
                tracing::debug!(target: "tessera::store", error = %e, "direct replay write failed; using the pooled writer");
            }
        }
    }
    let written: Vec<(String,)> = sqlx::query_as(INSERT_REPLAY_ROWS)
        .bind(json)
        .bind(now)
        .fetch_all(writer)
        .await
        .map_err(db_err)?;
    Ok(written.into_iter().map(|(k,)| k).collect())
}

/// `StoreError` is not `Clone`; every caller of a failed batch gets the same error.
fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Backend(m) => StoreError::Backend(m.clone()),
        other => StoreError::Backend(other.to_string()),
    }
}

impl_store!(
    store = SqliteStore,
    backend = "sqlite",
    for_update = "",
    for_share = "",
    remember_once = batched,
);
impl_lockout!(store = SqliteStore, key_lock = "");
