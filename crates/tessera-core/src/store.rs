//! Storage contracts. Narrow traits per concern; `tessera-store` implements all of them for
//! SQLite and PostgreSQL, and one conformance suite checks both. Every operation that must be
//! race-free across nodes (code redemption, refresh rotation, replay check) is a single atomic
//! store operation, never a read followed by a write in the caller.

use async_trait::async_trait;
use serde_json::Value;

use crate::clock::UnixTime;
use crate::lockout::{
    Admission, AttemptOutcome, LockoutKey, LockoutKind, LockoutPolicy, LockoutRecord, Settled,
};
use crate::model::{
    AuthCode, Client, CodeRedemption, Grant, KeyRecord, RefreshRotation, RefreshToken, Session,
    User,
};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be reached (connection refused, pool timeout, database down).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness constraint refused the write.
    #[error("already exists: {0}")]
    Conflict(String),
    /// Stored data could not be decoded (corruption or a schema mismatch).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait ClientStore: Send + Sync {
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<Client>>;
    /// Insert; `Conflict` if the id exists.
    async fn create_client(&self, client: &Client) -> StoreResult<()>;
    /// Insert or replace.
    async fn put_client(&self, client: &Client) -> StoreResult<()>;
    /// Returns whether a client was deleted.
    async fn delete_client(&self, client_id: &str) -> StoreResult<bool>;
    async fn list_clients(&self) -> StoreResult<Vec<Client>>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn get_user(&self, username: &str) -> StoreResult<Option<User>>;
    async fn get_user_by_subject(&self, subject: &str) -> StoreResult<Option<User>>;
    /// Insert; `Conflict` if the username exists.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    /// Replace an existing user; returns false if absent.
    async fn update_user(&self, user: &User) -> StoreResult<bool>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>>;
    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()>;
    /// Set `retire_at` / `remove_at` of a key; returns false if absent.
    async fn update_key_schedule(
        &self,
        kid: &str,
        retire_at: Option<UnixTime>,
        remove_at: Option<UnixTime>,
    ) -> StoreResult<bool>;
    /// Remove keys whose `remove_at` has passed.
    async fn delete_removed_keys(&self, now: UnixTime) -> StoreResult<u64>;
}

#[async_trait]
pub trait GrantStore: Send + Sync {
    async fn put_grant(&self, grant: &Grant) -> StoreResult<()>;
    async fn get_grant(&self, grant_id: &str) -> StoreResult<Option<Grant>>;
    /// Mark revoked (idempotent) and delete the grant's refresh tokens.
    async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> StoreResult<()>;

    async fn put_code(&self, code: &AuthCode) -> StoreResult<()>;
    /// Atomically consume a code. An expired code is `NotFound`.
    async fn redeem_code(&self, code_hash: &str, now: UnixTime) -> StoreResult<CodeRedemption>;

    async fn put_refresh_token(&self, token: &RefreshToken) -> StoreResult<()>;
    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>>;
    /// Atomically spend `old_hash` and store `new`; a spent token yields `Reused`.
    /// An expired token is `NotFound`.
    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new: &RefreshToken,
        now: UnixTime,
    ) -> StoreResult<RefreshRotation>;
    /// Delete one refresh token (RFC 7009); returns whether it existed.
    async fn delete_refresh_token(&self, token_hash: &str) -> StoreResult<bool>;

    /// Record a revoked access token id until its expiry (RFC 7009).
    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> StoreResult<()>;
    async fn is_access_token_revoked(&self, jti: &str) -> StoreResult<bool>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn put_session(&self, session: &Session) -> StoreResult<()>;
    /// An expired session is `None`.
    async fn get_session(&self, id_hash: &str, now: UnixTime) -> StoreResult<Option<Session>>;
    async fn add_session_client(&self, id_hash: &str, client_id: &str) -> StoreResult<()>;
    async fn delete_session(&self, id_hash: &str) -> StoreResult<Option<Session>>;

    async fn get_consent(&self, subject: &str, client_id: &str) -> StoreResult<Option<String>>;
    async fn put_consent(&self, subject: &str, client_id: &str, scope: &str) -> StoreResult<()>;
}

#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Remember `key` until `expires_at`. Returns true if it was not already remembered
    /// (first use), false on a replay. Atomic across nodes; an expired entry counts as absent.
    async fn remember_once(
        &self,
        key: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool>;
}

#[async_trait]
pub trait MetaStore: Send + Sync {
    async fn get_meta(&self, key: &str) -> StoreResult<Option<Value>>;
    /// Insert unless present; returns the value now stored (the existing one if it was there).
    /// Lets nodes racing at first start agree on one value.
    async fn put_meta_if_absent(&self, key: &str, value: &Value) -> StoreResult<Value>;
    async fn put_meta(&self, key: &str, value: &Value) -> StoreResult<()>;
}

/// Soft-lockout state (see [`crate::lockout`]). The store applies the pure transitions of
/// [`crate::lockout`] to one key's record under a lock (one transaction, the row or key locked
/// for its duration), so concurrent attempts on every node see each other's reservations.
#[async_trait]
pub trait LockoutStore: Send + Sync {
    /// Atomically apply [`crate::lockout::begin_attempt`] to `key`'s record; returns the admission and
    /// the record as stored afterwards.
    async fn lockout_begin_attempt(
        &self,
        policy: &LockoutPolicy,
        key: &LockoutKey,
        now: UnixTime,
    ) -> StoreResult<(Admission, Option<LockoutRecord>)>;
    /// Atomically apply [`crate::lockout::finish_attempt`] to `key`'s record.
    async fn lockout_finish_attempt(
        &self,
        policy: &LockoutPolicy,
        key: &LockoutKey,
        reserved: bool,
        outcome: AttemptOutcome,
        source: Option<&str>,
        now: UnixTime,
    ) -> StoreResult<(Settled, Option<LockoutRecord>)>;
    /// The records of a name (a client scoped by source has one per source address).
    async fn lockout_find(&self, kind: LockoutKind, name: &str) -> StoreResult<Vec<LockoutRecord>>;
    /// Every record that has not expired at `now`, ordered by kind and name.
    async fn lockout_list(&self, now: UnixTime) -> StoreResult<Vec<LockoutRecord>>;
    /// Delete the records of a name (an administrator's unlock); returns what was deleted.
    async fn lockout_clear(&self, kind: LockoutKind, name: &str)
    -> StoreResult<Vec<LockoutRecord>>;
    /// Delete records that carry no information any more; returns how many.
    async fn lockout_collect_expired(&self, now: UnixTime) -> StoreResult<u64>;

    /// Read-only: the lock on `key` if it is locked at `now`.
    async fn lockout_check_locked(
        &self,
        key: &LockoutKey,
        now: UnixTime,
    ) -> StoreResult<Option<LockoutRecord>> {
        let id = key.id();
        Ok(self
            .lockout_find(key.kind, &key.name)
            .await?
            .into_iter()
            .find(|r| r.key.id() == id && r.is_locked(now)))
    }
}

/// The whole store, as the server holds it (`Arc<dyn Store>`).
#[async_trait]
pub trait Store:
    ClientStore
    + UserStore
    + KeyStore
    + GrantStore
    + SessionStore
    + ReplayStore
    + MetaStore
    + LockoutStore
{
    /// "sqlite" or "postgres".
    fn backend(&self) -> &'static str;
    /// A cheap round trip, for readiness and `tessera doctor`.
    async fn ping(&self) -> StoreResult<()>;
    /// The applied schema version and the one this build expects.
    async fn schema_version(&self) -> StoreResult<(i64, i64)>;
    /// Delete expired codes, tokens, sessions, replay entries and lockout records; returns rows
    /// removed.
    async fn collect_garbage(&self, now: UnixTime) -> StoreResult<u64>;
}
