//! Signing keys: generation, staged rotation and the published JWK Set.
//!
//! Lifecycle of a key (all times in the store, so every node agrees):
//!
//! ```text
//!   created ──publish_at──▶ published ──activate_at──▶ signing ──retire_at──▶ retired ──remove_at──▶ gone
//!                           (in JWKS,                   (newest active         (in JWKS,
//!                            not signing)                key of its alg)        not signing)
//! ```
//!
//! A rotation publishes the next key `jwks_max_age` before it starts signing, so relying
//! parties' caches already hold it; the retired key stays published for the longest token
//! lifetime plus `jwks_max_age`, so every token it signed can still be verified.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use tessera_jose::{Algorithm, SigningKey, VerifyingKey};

use crate::clock::UnixTime;
use crate::model::KeyRecord;
use crate::secrets::{MasterKey, random_token};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key {kid}: {reason}")]
    Invalid { kid: String, reason: String },
    #[error("no active signing key for {0}")]
    NoActiveKey(Algorithm),
    #[error("key generation failed: {0}")]
    Generate(String),
}

struct LoadedKey {
    record: KeyRecord,
    alg: Algorithm,
    signer: Arc<SigningKey>,
    verifier: Arc<VerifyingKey>,
}

#[derive(Default)]
struct KeyCache {
    keys: Vec<LoadedKey>,
    loaded_at: UnixTime,
}

/// The key ring as this node sees it; reloaded from the store periodically and after changes.
pub struct KeyManager {
    master: MasterKey,
    cache: RwLock<KeyCache>,
    rotation_period: u64,
    prepublish: u64,
    retain_after_retire: u64,
}

impl std::fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManager").finish_non_exhaustive()
    }
}

/// What `tessera keys list` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyStatus {
    pub kid: String,
    pub alg: String,
    pub state: &'static str,
    pub created_at: UnixTime,
    pub publish_at: UnixTime,
    pub activate_at: UnixTime,
    pub retire_at: Option<UnixTime>,
    pub remove_at: Option<UnixTime>,
}

fn seal_context(kid: &str) -> String {
    format!("signing-key:{kid}")
}

impl KeyManager {
    /// `prepublish` = JWKS max-age; `retain_after_retire` = longest token lifetime + max-age.
    pub fn new(
        master: MasterKey,
        rotation_period: u64,
        prepublish: u64,
        retain_after_retire: u64,
    ) -> Self {
        Self {
            master,
            cache: RwLock::new(KeyCache::default()),
            rotation_period,
            prepublish,
            retain_after_retire,
        }
    }

    fn load_record(&self, record: KeyRecord) -> Result<LoadedKey, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            kid: record.kid.clone(),
            reason,
        };
        let alg: Algorithm = record
            .alg
            .parse()
            .map_err(|_| invalid(format!("unknown alg {}", record.alg)))?;
        let der = self
            .master
            .unseal(&record.private_sealed, &seal_context(&record.kid))
            .map_err(|e| invalid(e.to_string()))?;
        let signer = SigningKey::from_pkcs8_der(alg, record.kid.clone(), &der)
            .map_err(|e| invalid(e.to_string()))?;
        let verifier = signer.verifying_key();
        Ok(LoadedKey {
            record,
            alg,
            signer: Arc::new(signer),
            verifier: Arc::new(verifier),
        })
    }

    /// Re-read every key from the store. Keys that fail to load are reported, not fatal.
    pub async fn reload(
        &self,
        store: &dyn Store,
        now: UnixTime,
    ) -> Result<Vec<KeyError>, KeyError> {
        let records = store.list_keys().await?;
        let mut keys = Vec::with_capacity(records.len());
        let mut errors = Vec::new();
        for r in records {
            if r.remove_at.is_some_and(|t| t <= now) {
                continue;
            }
            match self.load_record(r) {
                Ok(k) => keys.push(k),
                Err(e) => errors.push(e),
            }
        }
        if let Ok(mut c) = self.cache.write() {
            *c = KeyCache {
                keys,
                loaded_at: now,
            };
        }
        Ok(errors)
    }

    pub fn loaded_at(&self) -> UnixTime {
        self.cache.read().map(|c| c.loaded_at).unwrap_or(0)
    }

    async fn create_key(
        &self,
        store: &dyn Store,
        alg: Algorithm,
        now: UnixTime,
        activate_at: UnixTime,
    ) -> Result<String, KeyError> {
        let kid = random_token().map_err(|e| KeyError::Generate(e.to_string()))?[..16].to_owned();
        let key = SigningKey::generate(alg, kid.clone())
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let sealed = self
            .master
            .seal(&key.to_pkcs8_der(), &seal_context(&kid))
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let public_jwk = serde_json::to_value(key.public_jwk())
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        store
            .insert_key(&KeyRecord {
                kid: kid.clone(),
                alg: alg.to_string(),
                private_sealed: sealed,
                public_jwk,
                created_at: now,
                publish_at: now,
                activate_at,
                retire_at: None,
                remove_at: None,
            })
            .await?;
        Ok(kid)
    }

    /// Make sure every alg in `algs` has a signing key (first start: one active at once), and
    /// rotate keys older than the rotation period. Returns the kids created.
    pub async fn ensure(
        &self,
        store: &dyn Store,
        algs: &[Algorithm],
        now: UnixTime,
    ) -> Result<Vec<String>, KeyError> {
        self.reload(store, now).await?;
        let mut created = Vec::new();
        for &alg in algs {
            let (has_signer, has_pending, due) = {
                let cache = self.cache.read().map_err(|_| KeyError::NoActiveKey(alg))?;
                let active = Self::active_of(&cache.keys, alg, now);
                let pending = cache.keys.iter().any(|k| {
                    k.alg == alg && k.record.activate_at > now && k.record.retire_at.is_none()
                });
                let due = active
                    .is_some_and(|k| k.record.activate_at + self.rotation_period as i64 <= now);
                (active.is_some(), pending, due)
            };
            if !has_signer {
                created.push(self.create_key(store, alg, now, now).await?);
            } else if due && !has_pending {
                created.push(self.rotate(store, alg, now).await?);
            }
        }
        if !created.is_empty() {
            self.reload(store, now).await?;
        }
        Ok(created)
    }

    /// Staged rotation: publish a new key now, let it sign after `prepublish`; retire the
    /// current signer then, and unpublish it after `retain_after_retire`.
    pub async fn rotate(
        &self,
        store: &dyn Store,
        alg: Algorithm,
        now: UnixTime,
    ) -> Result<String, KeyError> {
        self.reload(store, now).await?;
        let activate_at = now + self.prepublish as i64;
        let current: Vec<String> = {
            let cache = self.cache.read().map_err(|_| KeyError::NoActiveKey(alg))?;
            cache
                .keys
                .iter()
                .filter(|k| k.alg == alg && k.record.retire_at.is_none())
                .map(|k| k.record.kid.clone())
                .collect()
        };
        let kid = self.create_key(store, alg, now, activate_at).await?;
        for old in current {
            store
                .update_key_schedule(
                    &old,
                    Some(activate_at),
                    Some(activate_at + self.retain_after_retire as i64),
                )
                .await?;
        }
        self.reload(store, now).await?;
        Ok(kid)
    }

    fn active_of(keys: &[LoadedKey], alg: Algorithm, now: UnixTime) -> Option<&LoadedKey> {
        keys.iter()
            .filter(|k| {
                k.alg == alg
                    && k.record.activate_at <= now
                    && k.record.retire_at.is_none_or(|t| t > now)
            })
            .max_by(|a, b| {
                (a.record.activate_at, &a.record.kid).cmp(&(b.record.activate_at, &b.record.kid))
            })
    }

    /// The key that signs `alg` now.
    pub fn signer(&self, alg: Algorithm, now: UnixTime) -> Result<Arc<SigningKey>, KeyError> {
        let cache = self.cache.read().map_err(|_| KeyError::NoActiveKey(alg))?;
        Self::active_of(&cache.keys, alg, now)
            .map(|k| k.signer.clone())
            .ok_or(KeyError::NoActiveKey(alg))
    }

    /// A published key by kid (to verify tokens this server issued).
    pub fn verifier(&self, kid: &str, now: UnixTime) -> Option<Arc<VerifyingKey>> {
        let cache = self.cache.read().ok()?;
        cache
            .keys
            .iter()
            .find(|k| k.record.kid == kid && k.record.publish_at <= now)
            .map(|k| k.verifier.clone())
    }

    /// The JWK Set: public parts of every published key (RFC 7517 §5).
    pub fn jwks(&self, now: UnixTime) -> Value {
        let keys: Vec<Value> = self
            .cache
            .read()
            .map(|c| {
                c.keys
                    .iter()
                    .filter(|k| {
                        k.record.publish_at <= now && k.record.remove_at.is_none_or(|t| t > now)
                    })
                    .map(|k| k.record.public_jwk.clone())
                    .collect()
            })
            .unwrap_or_default();
        serde_json::json!({ "keys": keys })
    }

    pub fn status(&self, now: UnixTime) -> Vec<KeyStatus> {
        let Ok(cache) = self.cache.read() else {
            return Vec::new();
        };
        let mut active: BTreeMap<Algorithm, String> = BTreeMap::new();
        for k in &cache.keys {
            if let Some(a) = Self::active_of(&cache.keys, k.alg, now) {
                active.insert(k.alg, a.record.kid.clone());
            }
        }
        cache
            .keys
            .iter()
            .map(|k| {
                let r = &k.record;
                let state = if active.get(&k.alg) == Some(&r.kid) {
                    "signing"
                } else if r.activate_at > now {
                    "next"
                } else if r.retire_at.is_some_and(|t| t <= now) {
                    "retired"
                } else {
                    "published"
                };
                KeyStatus {
                    kid: r.kid.clone(),
                    alg: r.alg.clone(),
                    state,
                    created_at: r.created_at,
                    publish_at: r.publish_at,
                    activate_at: r.activate_at,
                    retire_at: r.retire_at,
                    remove_at: r.remove_at,
                }
            })
            .collect()
    }

    /// Algorithms this node can sign with now.
    pub fn signing_algs(&self, now: UnixTime) -> Vec<Algorithm> {
        let Ok(cache) = self.cache.read() else {
            return Vec::new();
        };
        let mut algs: Vec<Algorithm> = cache
            .keys
            .iter()
            .filter(|k| Self::active_of(&cache.keys, k.alg, now).is_some())
            .map(|k| k.alg)
            .collect();
        algs.sort();
        algs.dedup();
        algs
    }
}
