//! Tessera storage: the [`tessera_core::store::Store`] trait implemented on SQLite (the
//! embedded default, [`SqliteStore`]) and PostgreSQL ([`PgStore`], for several server processes
//! sharing one database), with embedded migrations (`migrations/sqlite/`,
//! `migrations/postgres/`).
//!
//! What this crate owns:
//! - the schema and its migrations, and the mapping of records to rows (a JSON document column
//!   beside the columns used for lookups, expiry and atomic state changes);
//! - the atomicity the core relies on: code redemption, refresh rotation, replay detection,
//!   first-start meta values and grant revocation are each one statement or one transaction,
//!   race-free across processes on one PostgreSQL database (and across pools on one SQLite file);
//! - the mapping of driver errors to [`StoreError`] (never quoting bind values or documents).
//!
//! What it must not do: protocol decisions (validating, hashing or interpreting tokens and
//! clients is `tessera-core`'s job), reading the system clock (`now` is always a parameter),
//! compile-time checked queries (builds need no database), or logging secrets.

mod common;
mod error;
mod lockout;
mod postgres;
mod sqlite;
mod sqlite_direct;

use std::path::Path;
use std::sync::Arc;

use tessera_core::store::{Store, StoreError};

pub use common::CONSUMED_CODE_GRACE_SECS;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Opens the store named by `url_or_path` and applies pending migrations:
/// `postgres://…` / `postgresql://…` → [`PgStore`]; `sqlite::memory:` → an in-memory SQLite
/// database; `sqlite://PATH`, `sqlite:PATH` or a plain path → a SQLite file.
pub async fn open_store(url_or_path: &str) -> Result<Arc<dyn Store>, StoreError> {
    open(url_or_path, true).await
}

/// As [`open_store`] but without migrating (for diagnostics such as `tessera doctor`, which
/// report [`Store::schema_version`] instead of changing the schema).
pub async fn open_store_without_migrating(url_or_path: &str) -> Result<Arc<dyn Store>, StoreError> {
    open(url_or_path, false).await
}

async fn open(url_or_path: &str, migrate: bool) -> Result<Arc<dyn Store>, StoreError> {
    match parse_location(url_or_path)? {
        Location::Postgres(url) => {
            let store = PgStore::connect(url).await?;
            if migrate {
                store.migrate().await?;
            }
            Ok(Arc::new(store))
        }
        Location::SqliteMemory => {
            let store = SqliteStore::memory().await?;
            if migrate {
                store.migrate().await?;
            }
            Ok(Arc::new(store))
        }
        Location::SqliteFile(path) => {
            let store = SqliteStore::open(path).await?;
            if migrate {
                store.migrate().await?;
            }
            Ok(Arc::new(store))
        }
    }
}

#[derive(Debug, PartialEq)]
enum Location<'a> {
    Postgres(&'a str),
    SqliteMemory,
    SqliteFile(&'a Path),
}

fn parse_location(s: &str) -> Result<Location<'_>, StoreError> {
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        return Ok(Location::Postgres(s));
    }
    let rest = match s.strip_prefix("sqlite:") {
        Some(rest) => rest.strip_prefix("//").unwrap_or(rest),
        None => {
            if let Some((scheme, _)) = s.split_once("://") {
                // Only the scheme is quoted: the rest may hold credentials.
                return Err(StoreError::Backend(format!(
                    "unsupported store URL scheme {scheme:?} (use postgres://, sqlite: or a path)"
                )));
            }
            s
        }
    };
    if rest == ":memory:" {
        return Ok(Location::SqliteMemory);
    }
    if rest.is_empty() || rest.contains('?') {
        return Err(StoreError::Backend(
            "a SQLite location must be a file path (URL query options are not supported)".into(),
        ));
    }
    Ok(Location::SqliteFile(Path::new(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            parse_location("postgres://u:p@h/db").unwrap(),
            Location::Postgres("postgres://u:p@h/db")
        );
        assert!(matches!(
            parse_location("postgresql://h/db").unwrap(),
            Location::Postgres(_)
        ));
        assert_eq!(
            parse_location("sqlite::memory:").unwrap(),
            Location::SqliteMemory
        );
        assert_eq!(
            parse_location("sqlite:///var/lib/t.db").unwrap(),
            Location::SqliteFile(Path::new("/var/lib/t.db"))
        );
        assert_eq!(
            parse_location("sqlite:data/t.db").unwrap(),
            Location::SqliteFile(Path::new("data/t.db"))
        );
        assert_eq!(
            parse_location("t.db").unwrap(),
            Location::SqliteFile(Path::new("t.db"))
        );
        let err = parse_location("mysql://user:hunter2@h/db")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mysql") && !err.contains("hunter2"), "{err}");
        assert!(parse_location("sqlite:").is_err());
    }
}
