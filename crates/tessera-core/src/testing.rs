//! Test support shared by the unit tests of every core module (and by other crates' tests with
//! the `testing` feature): a complete in-memory [`Store`] and an [`Engine`] builder.
//!
//! [`MemoryStore`] follows the contracts documented in [`crate::store`] and the semantics of the
//! SQL backends: every operation that must be atomic runs under one lock; expired entries count
//! as absent; spent refresh tokens and consumed codes are kept so reuse is detected; revocation
//! of a grant is sticky. It is not meant for production (nothing is persisted).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::Value;

use crate::authn::Chain;
use crate::clock::{ManualClock, UnixTime};
use crate::engine::{Engine, EngineParts};
use crate::keys::KeyManager;
use crate::lockout::{
    self, Admission, AttemptOutcome, LockoutKey, LockoutKind, LockoutPolicy, LockoutRecord, Settled,
};
use crate::model::{
    AuthCode, Client, CodeRedemption, Grant, KeyRecord, RefreshRotation, RefreshToken, Session,
    User,
};
use crate::secrets::{MasterKey, PasswordHasher, PasswordParams};
use crate::settings::Settings;
use crate::store::{
    ClientStore, GrantStore, KeyStore, LockoutStore, MetaStore, ReplayStore, SessionStore, Store,
    StoreError, StoreResult, UserStore,
};

/// Grace period during which a consumed code is kept after its expiry (same as the SQL stores).
pub const CONSUMED_CODE_GRACE_SECS: i64 = 86_400;

#[derive(Debug, Clone)]
struct CodeRow {
    code: AuthCode,
    consumed_at: Option<UnixTime>,
}

#[derive(Debug, Clone)]
struct RefreshRow {
    token: RefreshToken,
    spent_at: Option<UnixTime>,
}

#[derive(Debug, Default)]
struct Data {
    clients: BTreeMap<String, Client>,
    users: BTreeMap<String, User>,
    keys: Vec<KeyRecord>,
    grants: HashMap<String, Grant>,
    codes: HashMap<String, CodeRow>,
    refresh: HashMap<String, RefreshRow>,
    revoked: HashMap<String, UnixTime>,
    sessions: HashMap<String, Session>,
    consents: HashMap<(String, String), String>,
    replay: HashMap<String, UnixTime>,
    meta: HashMap<String, Value>,
    lockout: HashMap<String, LockoutRecord>,
}

/// An in-memory store. Clones share the same data (like pool handles).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    data: Arc<Mutex<Data>>,
    /// When set, every operation fails with `StoreError::Unavailable` (outage tests).
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulate an outage: every operation answers `Unavailable` until switched back.
    pub fn set_unavailable(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    fn lock(&self) -> StoreResult<MutexGuard<'_, Data>> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable("memory store switched off".into()));
        }
        self.data
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }
}

#[async_trait]
impl ClientStore for MemoryStore {
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<Client>> {
        Ok(self.lock()?.clients.get(client_id).cloned())
    }
    async fn create_client(&self, client: &Client) -> StoreResult<()> {
        let mut d = self.lock()?;
        if d.clients.contains_key(&client.client_id) {
            return Err(StoreError::Conflict("unique violation on clients".into()));
        }
        d.clients.insert(client.client_id.clone(), client.clone());
        Ok(())
    }
    async fn put_client(&self, client: &Client) -> StoreResult<()> {
        self.lock()?
            .clients
            .insert(client.client_id.clone(), client.clone());
        Ok(())
    }
    async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
        Ok(self.lock()?.clients.remove(client_id).is_some())
    }
    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        Ok(self.lock()?.clients.values().cloned().collect())
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn get_user(&self, username: &str) -> StoreResult<Option<User>> {
        Ok(self.lock()?.users.get(username).cloned())
    }
    async fn get_user_by_subject(&self, subject: &str) -> StoreResult<Option<User>> {
        Ok(self
            .lock()?
            .users
            .values()
            .find(|u| u.subject == subject)
            .cloned())
    }
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let mut d = self.lock()?;
        if d.users.contains_key(&user.username)
            || d.users.values().any(|u| u.subject == user.subject)
        {
            return Err(StoreError::Conflict("unique violation on users".into()));
        }
        d.users.insert(user.username.clone(), user.clone());
        Ok(())
    }
    async fn update_user(&self, user: &User) -> StoreResult<bool> {
        let mut d = self.lock()?;
        if !d.users.contains_key(&user.username) {
            return Ok(false);
        }
        if d.users
            .values()
            .any(|u| u.subject == user.subject && u.username != user.username)
        {
            return Err(StoreError::Conflict(
                "unique violation on users.subject".into(),
            ));
        }
        d.users.insert(user.username.clone(), user.clone());
        Ok(true)
    }
    async fn list_users(&self) -> StoreResult<Vec<User>> {
        Ok(self.lock()?.users.values().cloned().collect())
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        let mut keys = self.lock()?.keys.clone();
        keys.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
        Ok(keys)
    }
    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        let mut d = self.lock()?;
        if d.keys.iter().any(|k| k.kid == key.kid) {
            return Err(StoreError::Conflict(
                "unique violation on signing_keys".into(),
            ));
        }
        d.keys.push(key.clone());
        Ok(())
    }
    async fn update_key_schedule(
        &self,
        kid: &str,
        retire_at: Option<UnixTime>,
        remove_at: Option<UnixTime>,
    ) -> StoreResult<bool> {
        let mut d = self.lock()?;
        match d.keys.iter_mut().find(|k| k.kid == kid) {
            Some(k) => {
                k.retire_at = retire_at;
                k.remove_at = remove_at;
                Ok(true)
            }
            None => Ok(false),
        }
    }
    async fn delete_removed_keys(&self, now: UnixTime) -> StoreResult<u64> {
        let mut d = self.lock()?;
        let before = d.keys.len();
        d.keys.retain(|k| k.remove_at.is_none_or(|t| t > now));
        Ok((before - d.keys.len()) as u64)
    }
}

#[async_trait]
impl GrantStore for MemoryStore {
    async fn put_grant(&self, grant: &Grant) -> StoreResult<()> {
        let mut d = self.lock()?;
        let mut g = grant.clone();
        // Revocation is sticky: writing an older copy never un-revokes.
        if let Some(existing) = d.grants.get(&grant.grant_id) {
            g.revoked_at = existing.revoked_at.or(grant.revoked_at);
        }
        d.grants.insert(g.grant_id.clone(), g);
        Ok(())
    }
    async fn get_grant(&self, grant_id: &str) -> StoreResult<Option<Grant>> {
        Ok(self.lock()?.grants.get(grant_id).cloned())
    }
    async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> StoreResult<()> {
        let mut d = self.lock()?;
        if let Some(g) = d.grants.get_mut(grant_id) {
            g.revoked_at = g.revoked_at.or(Some(now));
        }
        d.refresh.retain(|_, r| r.token.grant_id != grant_id);
        Ok(())
    }
    async fn put_code(&self, code: &AuthCode) -> StoreResult<()> {
        let mut d = self.lock()?;
        if d.codes.contains_key(&code.code_hash) {
            return Err(StoreError::Conflict(
                "unique violation on auth_codes".into(),
            ));
        }
        d.codes.insert(
            code.code_hash.clone(),
            CodeRow {
                code: code.clone(),
                consumed_at: None,
            },
        );
        Ok(())
    }
    async fn redeem_code(&self, code_hash: &str, now: UnixTime) -> StoreResult<CodeRedemption> {
        let mut d = self.lock()?;
        let Some(row) = d.codes.get_mut(code_hash) else {
            return Ok(CodeRedemption::NotFound);
        };
        if row.consumed_at.is_some() {
            return Ok(CodeRedemption::AlreadyUsed {
                grant_id: row.code.grant_id.clone(),
            });
        }
        if row.code.expires_at <= now {
            return Ok(CodeRedemption::NotFound);
        }
        row.consumed_at = Some(now);
        Ok(CodeRedemption::Redeemed(row.code.clone()))
    }
    async fn put_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        let mut d = self.lock()?;
        if d.refresh.contains_key(&token.token_hash) {
            return Err(StoreError::Conflict(
                "unique violation on refresh_tokens".into(),
            ));
        }
        d.refresh.insert(
            token.token_hash.clone(),
            RefreshRow {
                token: token.clone(),
                spent_at: None,
            },
        );
        Ok(())
    }
    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        Ok(self
            .lock()?
            .refresh
            .get(token_hash)
            .filter(|r| r.spent_at.is_none())
            .map(|r| r.token.clone()))
    }
    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new: &RefreshToken,
        now: UnixTime,
    ) -> StoreResult<RefreshRotation> {
        let mut d = self.lock()?;
        if d.grants
            .get(&new.grant_id)
            .is_some_and(|g| g.revoked_at.is_some())
        {
            return Ok(RefreshRotation::NotFound);
        }
        let grant_id = match d.refresh.get_mut(old_hash) {
            None => return Ok(RefreshRotation::NotFound),
            Some(r) if r.spent_at.is_some() => {
                return Ok(RefreshRotation::Reused {
                    grant_id: r.token.grant_id.clone(),
                });
            }
            Some(r) if r.token.expires_at <= now => return Ok(RefreshRotation::NotFound),
            Some(r) => r.token.grant_id.clone(),
        };
        if grant_id != new.grant_id {
            return Err(StoreError::Backend(
                "rotation must keep the refresh token's grant".into(),
            ));
        }
        if d.refresh.contains_key(&new.token_hash) {
            return Err(StoreError::Conflict(
                "unique violation on refresh_tokens".into(),
            ));
        }
        if let Some(r) = d.refresh.get_mut(old_hash) {
            r.spent_at = Some(now);
        }
        d.refresh.insert(
            new.token_hash.clone(),
            RefreshRow {
                token: new.clone(),
                spent_at: None,
            },
        );
        Ok(RefreshRotation::Rotated(new.clone()))
    }
    async fn delete_refresh_token(&self, token_hash: &str) -> StoreResult<bool> {
        Ok(self.lock()?.refresh.remove(token_hash).is_some())
    }
    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> StoreResult<()> {
        let mut d = self.lock()?;
        let e = d.revoked.entry(jti.to_owned()).or_insert(expires_at);
        *e = (*e).max(expires_at);
        Ok(())
    }
    async fn is_access_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        Ok(self.lock()?.revoked.contains_key(jti))
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn put_session(&self, session: &Session) -> StoreResult<()> {
        self.lock()?
            .sessions
            .insert(session.id_hash.clone(), session.clone());
        Ok(())
    }
    async fn get_session(&self, id_hash: &str, now: UnixTime) -> StoreResult<Option<Session>> {
        Ok(self
            .lock()?
            .sessions
            .get(id_hash)
            .filter(|s| s.expires_at > now)
            .cloned())
    }
    async fn add_session_client(&self, id_hash: &str, client_id: &str) -> StoreResult<()> {
        let mut d = self.lock()?;
        if let Some(s) = d.sessions.get_mut(id_hash)
            && !s.clients.iter().any(|c| c == client_id)
        {
            s.clients.push(client_id.to_owned());
        }
        Ok(())
    }
    async fn delete_session(&self, id_hash: &str) -> StoreResult<Option<Session>> {
        Ok(self.lock()?.sessions.remove(id_hash))
    }
    async fn get_consent(&self, subject: &str, client_id: &str) -> StoreResult<Option<String>> {
        Ok(self
            .lock()?
            .consents
            .get(&(subject.to_owned(), client_id.to_owned()))
            .cloned())
    }
    async fn put_consent(&self, subject: &str, client_id: &str, scope: &str) -> StoreResult<()> {
        self.lock()?
            .consents
            .insert((subject.to_owned(), client_id.to_owned()), scope.to_owned());
        Ok(())
    }
}

#[async_trait]
impl ReplayStore for MemoryStore {
    async fn remember_once(
        &self,
        key: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut d = self.lock()?;
        match d.replay.get(key) {
            Some(&until) if until > now => Ok(false),
            _ => {
                d.replay.insert(key.to_owned(), expires_at);
                Ok(true)
            }
        }
    }
}

#[async_trait]
impl MetaStore for MemoryStore {
    async fn get_meta(&self, key: &str) -> StoreResult<Option<Value>> {
        Ok(self.lock()?.meta.get(key).cloned())
    }
    async fn put_meta_if_absent(&self, key: &str, value: &Value) -> StoreResult<Value> {
        let mut d = self.lock()?;
        Ok(d.meta
            .entry(key.to_owned())
            .or_insert_with(|| value.clone())
            .clone())
    }
    async fn put_meta(&self, key: &str, value: &Value) -> StoreResult<()> {
        self.lock()?.meta.insert(key.to_owned(), value.clone());
        Ok(())
    }
}

#[async_trait]
impl LockoutStore for MemoryStore {
    async fn lockout_begin_attempt(
        &self,
        policy: &LockoutPolicy,
        key: &LockoutKey,
        now: UnixTime,
    ) -> StoreResult<(Admission, Option<LockoutRecord>)> {
        let mut d = self.lock()?;
        let id = key.id();
        let (next, admission) = lockout::begin_attempt(policy, key, d.lockout.get(&id), now);
        match &next {
            Some(r) => d.lockout.insert(id, r.clone()),
            None => d.lockout.remove(&id),
        };
        Ok((admission, next))
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
        let mut d = self.lock()?;
        let id = key.id();
        let (next, settled) = lockout::finish_attempt(
            policy,
            key,
            d.lockout.get(&id),
            reserved,
            outcome,
            source,
            now,
        );
        match &next {
            Some(r) => d.lockout.insert(id, r.clone()),
            None => d.lockout.remove(&id),
        };
        Ok((settled, next))
    }
    async fn lockout_find(&self, kind: LockoutKind, name: &str) -> StoreResult<Vec<LockoutRecord>> {
        let d = self.lock()?;
        let mut out: Vec<LockoutRecord> = d
            .lockout
            .values()
            .filter(|r| r.key.kind == kind && r.key.name == name)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.key.source.cmp(&b.key.source));
        Ok(out)
    }
    async fn lockout_list(&self, now: UnixTime) -> StoreResult<Vec<LockoutRecord>> {
        let d = self.lock()?;
        let mut out: Vec<LockoutRecord> = d
            .lockout
            .values()
            .filter(|r| r.expires_at > now)
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            (a.key.kind.as_str(), &a.key.name, &a.key.source).cmp(&(
                b.key.kind.as_str(),
                &b.key.name,
                &b.key.source,
            ))
        });
        Ok(out)
    }
    async fn lockout_clear(
        &self,
        kind: LockoutKind,
        name: &str,
    ) -> StoreResult<Vec<LockoutRecord>> {
        let mut d = self.lock()?;
        let ids: Vec<String> = d
            .lockout
            .iter()
            .filter(|(_, r)| r.key.kind == kind && r.key.name == name)
            .map(|(id, _)| id.clone())
            .collect();
        Ok(ids.iter().filter_map(|id| d.lockout.remove(id)).collect())
    }
    async fn lockout_collect_expired(&self, now: UnixTime) -> StoreResult<u64> {
        let mut d = self.lock()?;
        let before = d.lockout.len();
        d.lockout.retain(|_, r| r.expires_at > now);
        Ok((before - d.lockout.len()) as u64)
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }
    async fn ping(&self) -> StoreResult<()> {
        self.lock().map(|_| ())
    }
    async fn schema_version(&self) -> StoreResult<(i64, i64)> {
        drop(self.lock()?);
        Ok((1, 1))
    }
    async fn collect_garbage(&self, now: UnixTime) -> StoreResult<u64> {
        let mut d = self.lock()?;
        let count = |d: &Data| {
            d.codes.len()
                + d.refresh.len()
                + d.revoked.len()
                + d.sessions.len()
                + d.replay.len()
                + d.grants.len()
                + d.lockout.len()
        };
        let before = count(&d);
        let grace = now.saturating_sub(CONSUMED_CODE_GRACE_SECS);
        d.codes.retain(|_, c| {
            !(c.code.expires_at <= now && (c.consumed_at.is_none() || c.code.expires_at <= grace))
        });
        d.refresh.retain(|_, r| r.token.expires_at > now);
        d.revoked.retain(|_, exp| *exp > now);
        d.sessions.retain(|_, s| s.expires_at > now);
        d.replay.retain(|_, exp| *exp > now);
        d.lockout.retain(|_, r| r.expires_at > now);
        let live: std::collections::HashSet<String> = d
            .refresh
            .values()
            .map(|r| r.token.grant_id.clone())
            .chain(d.codes.values().map(|c| c.code.grant_id.clone()))
            .collect();
        d.grants
            .retain(|id, g| g.expires_at > now || live.contains(id));
        let after = count(&d);
        Ok((before - after) as u64)
    }
}

/// A fixed master key for tests.
pub fn test_master_key() -> Result<MasterKey, String> {
    MasterKey::from_bytes(&[0x11; 32]).map_err(|e| e.to_string())
}

/// An engine over a fresh [`MemoryStore`] with an ES256 signing key, a manual clock at `now`,
/// cheap password hashing and an empty authentication chain.
pub async fn test_engine(
    settings: Settings,
    now: UnixTime,
) -> Result<(Engine, MemoryStore), String> {
    let store = MemoryStore::new();
    let master = test_master_key()?;
    let keys = KeyManager::new(
        master.clone(),
        settings.key_rotation_period,
        settings.jwks_max_age,
        7200,
    );
    let algs = [settings.access_token_alg];
    keys.ensure(&store, &algs, now)
        .await
        .map_err(|e| e.to_string())?;
    let passwords = PasswordHasher::new(PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    })
    .map_err(|e| e.to_string())?;
    let engine = Engine::new(EngineParts {
        settings: Arc::new(settings),
        store: Arc::new(store.clone()),
        keys: Arc::new(keys),
        master,
        clock: Arc::new(ManualClock::new(now)),
        passwords,
        chain: Chain::new(Vec::new()),
    });
    Ok((engine, store))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str, exp: UnixTime) -> Grant {
        Grant {
            grant_id: id.into(),
            client_id: "c".into(),
            subject: "s".into(),
            scope: String::new(),
            auth_time: None,
            session_id: None,
            created_at: 0,
            expires_at: exp,
            revoked_at: None,
        }
    }

    fn rt(hash: &str, gid: &str, exp: UnixTime) -> RefreshToken {
        RefreshToken {
            token_hash: hash.into(),
            grant_id: gid.into(),
            client_id: "c".into(),
            subject: "s".into(),
            scope: String::new(),
            issued_at: 0,
            expires_at: exp,
            claims: Default::default(),
        }
    }

    #[tokio::test]
    async fn replay_is_once_until_expiry() {
        let s = MemoryStore::new();
        assert!(s.remember_once("k", 100, 10).await.unwrap());
        assert!(!s.remember_once("k", 100, 99).await.unwrap());
        assert!(s.remember_once("k", 200, 100).await.unwrap());
        s.set_unavailable(true);
        assert!(matches!(
            s.remember_once("x", 1, 0).await,
            Err(StoreError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn refresh_rotation_detects_reuse_and_revocation() {
        let s = MemoryStore::new();
        s.put_grant(&grant("g", 1000)).await.unwrap();
        s.put_refresh_token(&rt("a", "g", 1000)).await.unwrap();
        assert!(matches!(
            s.rotate_refresh_token("a", &rt("b", "g", 1000), 1)
                .await
                .unwrap(),
            RefreshRotation::Rotated(_)
        ));
        assert!(s.get_refresh_token("a").await.unwrap().is_none());
        assert!(matches!(
            s.rotate_refresh_token("a", &rt("c", "g", 1000), 2)
                .await
                .unwrap(),
            RefreshRotation::Reused { .. }
        ));
        s.revoke_grant("g", 3).await.unwrap();
        assert!(s.get_refresh_token("b").await.unwrap().is_none());
        let mut g = grant("g", 1000);
        g.revoked_at = None;
        s.put_grant(&g).await.unwrap();
        assert_eq!(s.get_grant("g").await.unwrap().unwrap().revoked_at, Some(3));
    }

    #[tokio::test]
    async fn conflicts_and_meta() {
        let s = MemoryStore::new();
        let c = Client {
            client_id: "a".into(),
            ..Default::default()
        };
        s.create_client(&c).await.unwrap();
        assert!(matches!(
            s.create_client(&c).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            s.put_meta_if_absent("m", &Value::from(1)).await.unwrap(),
            Value::from(1)
        );
        assert_eq!(
            s.put_meta_if_absent("m", &Value::from(2)).await.unwrap(),
            Value::from(1)
        );
    }
}
