//! The replay writer's own connection to the SQLite file (rusqlite, on the same SQLite library
//! as sqlx). A replay batch is written synchronously by the task that gathered it: no hand-off
//! to sqlx's per-connection worker thread, which costs two context switches per batch on a busy
//! core and was the largest part of the durable replay check's cost.
//!
//! Two rules keep the async runtime from ever waiting on SQLite here:
//! - it never waits for SQLite's write lock (busy timeout 0): when another connection is
//!   writing, [`DirectError::Busy`] sends the batch through the pooled writer instead;
//! - its commits never checkpoint (`wal_autocheckpoint = 0`), which would put a copy of the WAL
//!   and an `fsync` on the request path; after every [`CHECKPOINT_EVERY`] keys it asks for a
//!   checkpoint on a blocking thread, which keeps the WAL file bounded.
//!
//! Durability is unchanged: WAL with `synchronous = NORMAL`, like every other connection, and a
//! caller is answered only after the statement that decides its key has committed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, ffi::ErrorCode};

/// Replay keys written directly between two checkpoint requests (about one WAL frame each).
const CHECKPOINT_EVERY: usize = 8192;
/// What a reset WAL file is truncated to (SQLite's `journal_size_limit`).
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// Insert each key, or take over an entry that has expired at `$2`; a live entry makes the
/// conditional update affect no row. Returns the keys written (first uses). `WHERE true`
/// resolves the parsing ambiguity of an upsert on a SELECT (SQLite docs).
pub(crate) const INSERT_REPLAY_ROWS: &str = "INSERT INTO replay (key, expires_at) \
     SELECT value ->> 0, value ->> 1 FROM json_each($1) WHERE true \
     ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at \
     WHERE replay.expires_at <= $2 \
     RETURNING key";

#[derive(Debug)]
pub(crate) enum DirectError {
    /// Another connection holds the write lock: use the pooled writer for this batch.
    Busy,
    /// Anything else; the connection is reopened next time and this batch goes through the
    /// pooled writer (which reports the error if the database is really broken).
    Failed(String),
}

pub(crate) struct DirectWriter {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
    written_since_checkpoint: AtomicUsize,
    checkpointer: Arc<Checkpointer>,
}

impl std::fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    // The file is already in WAL mode (the pooled writer set it); these are per connection.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // A WAL grown large once (a burst) is cut back when it is next reset.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)?;
    Ok(conn)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

impl DirectWriter {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            conn: Mutex::new(None),
            written_since_checkpoint: AtomicUsize::new(0),
            checkpointer: Arc::new(Checkpointer {
                path: path.to_owned(),
                running: AtomicBool::new(false),
                conn: Mutex::new(None),
            }),
        }
    }

    /// Writes `rows` (a JSON array of `[key, expires_at]`, `count` of them) with
    /// [`INSERT_REPLAY_ROWS`] and returns the keys written.
    pub(crate) fn insert(
        &self,
        rows_json: &str,
        now: i64,
        count: usize,
    ) -> Result<HashSet<String>, DirectError> {
        let mut slot = self
            .conn
            .lock()
            .map_err(|_| DirectError::Failed("direct replay connection poisoned".into()))?;
        if slot.is_none() {
            *slot = Some(
                open(&self.path, Duration::ZERO).map_err(|e| DirectError::Failed(e.to_string()))?,
            );
        }
        let Some(conn) = slot.as_ref() else {
            return Err(DirectError::Failed("no direct replay connection".into()));
        };
        let result = conn
            .prepare_cached(INSERT_REPLAY_ROWS)
            .and_then(|mut stmt| {
                // Collecting runs the statement to SQLITE_DONE, which commits it.
                stmt.query_map(rusqlite::params![rows_json, now], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<HashSet<String>>>()
            });
        match result {
            Ok(keys) => {
                self.note_written(count);
                Ok(keys)
            }
            // A failed autocommit statement is rolled back: the batch may be written again.
            Err(e) if is_busy(&e) => Err(DirectError::Busy),
            Err(e) => {
                *slot = None;
                Err(DirectError::Failed(e.to_string()))
            }
        }
    }

    fn note_written(&self, count: usize) {
        let before = self
            .written_since_checkpoint
            .fetch_add(count, Ordering::Relaxed);
        if before + count >= CHECKPOINT_EVERY {
            self.written_since_checkpoint.store(0, Ordering::Relaxed);
            self.checkpointer.clone().request();
        }
    }
}

/// Checkpoints on a blocking thread, one at a time, on a connection of their own.
struct Checkpointer {
    path: PathBuf,
    running: AtomicBool,
    conn: Mutex<Option<Connection>>,
}

impl Checkpointer {
    fn request(self: Arc<Self>) {
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.running.store(false, Ordering::Release);
            return;
        };
        runtime.spawn_blocking(move || {
            if let Err(e) = self.run() {
                tracing::warn!(target: "tessera::store", error = %e, "WAL checkpoint failed");
            }
            self.running.store(false, Ordering::Release);
        });
    }

    fn run(&self) -> Result<(), String> {
        let mut slot = self
            .conn
            .lock()
            .map_err(|_| "checkpoint connection poisoned".to_owned())?;
        if slot.is_none() {
            *slot = Some(open(&self.path, Duration::from_secs(5)).map_err(|e| e.to_string())?);
        }
        let Some(conn) = slot.as_ref() else {
            return Err("no checkpoint connection".into());
        };
        // PASSIVE copies the bulk without waiting for or blocking anyone. It cannot finish
        // while writes go on, and the WAL is only reused from its start after a checkpoint
        // that finished, so RESTART then copies the few frames written meanwhile, holding
        // writers off for that moment (the replay batches use the pooled writer, which waits),
        // and lets the next write start the WAL over: the file stays bounded.
        let result = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .and_then(|()| conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())));
        if result.is_err() {
            *slot = None;
        }
        result.map_err(|e| e.to_string())
    }
}
