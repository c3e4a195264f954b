//! Mapping of sqlx and serde_json errors to [`StoreError`].
//!
//! Messages never carry bind values or stored documents (either may hold secrets or their
//! hashes): only the error class, the SQLSTATE / SQLite code, the constraint or table name and,
//! for messages that cannot echo input values, the database's own message.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tessera_core::store::StoreError;

/// Maps a sqlx error: connection / pool / I/O → `Unavailable`, unique violation → `Conflict`,
/// decode failures → `Corrupt`, everything else → `Backend`.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Io(e) => StoreError::Unavailable(format!("i/o error: {e}")),
        sqlx::Error::Tls(e) => StoreError::Unavailable(format!("tls error: {e}")),
        sqlx::Error::PoolTimedOut => {
            StoreError::Unavailable("timed out waiting for a database connection".into())
        }
        sqlx::Error::PoolClosed => StoreError::Unavailable("connection pool closed".into()),
        sqlx::Error::WorkerCrashed => {
            StoreError::Unavailable("database worker thread crashed".into())
        }
        sqlx::Error::Protocol(_) => StoreError::Unavailable("database protocol error".into()),
        sqlx::Error::Database(db) => database_err(db.as_ref()),
        sqlx::Error::ColumnDecode { index, .. } => {
            StoreError::Corrupt(format!("column {index} could not be decoded"))
        }
        sqlx::Error::Decode(_) => StoreError::Corrupt("a column could not be decoded".into()),
        sqlx::Error::ColumnNotFound(c) => StoreError::Corrupt(format!("column {c} not found")),
        sqlx::Error::Configuration(_) => {
            // The source may quote the URL (and its password): do not echo it.
            StoreError::Backend("invalid database configuration".into())
        }
        sqlx::Error::Encode(_) => StoreError::Backend("a value could not be encoded".into()),
        sqlx::Error::Migrate(e) => StoreError::Backend(format!("migration failed: {e}")),
        other => StoreError::Backend(error_class(&other).into()),
    }
}

fn error_class(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::RowNotFound => "row not found",
        sqlx::Error::TypeNotFound { .. } => "type not found",
        sqlx::Error::ColumnIndexOutOfBounds { .. } => "column index out of bounds",
        sqlx::Error::InvalidArgument(_) => "invalid argument",
        sqlx::Error::BeginFailed => "could not begin a transaction",
        _ => "database driver error",
    }
}

fn database_err(db: &dyn sqlx::error::DatabaseError) -> StoreError {
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    if db.is_unique_violation() {
        let what = db
            .constraint()
            .or(db.table())
            .unwrap_or("unique constraint");
        return StoreError::Conflict(format!("unique violation on {what}"));
    }
    // PostgreSQL SQLSTATE classes: 08 connection exception, 53 insufficient resources,
    // 57P0x operator intervention / cannot connect now, 28 invalid authorization.
    let pg_unavailable = code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code.starts_with("28");
    // SQLite primary result codes: 5 BUSY, 6 LOCKED, 10 IOERR, 13 FULL, 14 CANTOPEN
    // (extended codes carry the primary one in the low byte).
    let sqlite_unavailable = code
        .parse::<i64>()
        .map(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14))
        .unwrap_or(false);
    // SQLSTATE class 22 (data exception) messages may quote the offending input value.
    let message = if code.starts_with("22") {
        "data exception"
    } else {
        db.message()
    };
    let text = if code.is_empty() {
        format!("database error: {message}")
    } else {
        format!("database error {code}: {message}")
    };
    if pg_unavailable || sqlite_unavailable {
        StoreError::Unavailable(text)
    } else {
        StoreError::Backend(text)
    }
}

/// Serializes a record as its JSON document.
pub(crate) fn encode<T: Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode {what}: {}", e.classify_str())))
}

/// Decodes a stored JSON document; a bad document is `Corrupt` (the content is not quoted).
pub(crate) fn decode<T: DeserializeOwned>(table: &str, doc: &str) -> Result<T, StoreError> {
    serde_json::from_str(doc).map_err(|e| {
        StoreError::Corrupt(format!(
            "invalid JSON document in {table} ({} at line {} column {})",
            e.classify_str(),
            e.line(),
            e.column()
        ))
    })
}

trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}

impl ClassifyStr for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "i/o error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected shape",
            serde_json::error::Category::Eof => "truncated document",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_error_does_not_quote_content() {
        let doc = r#"{"grant_id": "g", "expires_at": "s3cret"}"#;
        let err = decode::<tessera_core::model::Grant>("grants", doc).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Corrupt(_)));
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn io_is_unavailable() {
        let e = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(db_err(e), StoreError::Unavailable(_)));
        assert!(matches!(
            db_err(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
    }
}
