//! The per-provider login cache (`cache_ttl`, `cache_size`): login name → (user DN, mapped
//! principal with its groups), filled only after a successful full login.
//!
//! It holds no password and no bind result: a cached login still binds as the cached DN with
//! the password given, so the directory checks the password and the account state every time.
//! What may be stale for up to `cache_ttl` is the DN, the attributes and the groups.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tessera_core::authn::Principal;

/// What a successful login found.
#[derive(Debug, Clone)]
pub(crate) struct CachedLogin {
    pub dn: String,
    pub principal: Principal,
}

struct Slot {
    stored: Instant,
    login: CachedLogin,
}

/// Why a lookup missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    Disabled,
    Absent,
    Expired,
}

impl Miss {
    pub fn as_str(self) -> &'static str {
        match self {
            Miss::Disabled => "disabled",
            Miss::Absent => "absent",
            Miss::Expired => "expired",
        }
    }
}

/// A bounded TTL map; when full, expired entries are dropped, then everything.
pub(crate) struct LoginCache {
    ttl: Duration,
    size: usize,
    map: Mutex<HashMap<String, Slot>>,
}

impl LoginCache {
    pub fn new(ttl: Duration, size: usize) -> Self {
        Self {
            ttl,
            size,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.size > 0
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding the lock cannot leave the map inconsistent (single calls).
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `username` and its age, unless absent or expired (then removed).
    pub fn get(&self, username: &str) -> Result<(CachedLogin, Duration), Miss> {
        if !self.enabled() {
            return Err(Miss::Disabled);
        }
        let mut map = self.lock();
        let Some(slot) = map.get(username) else {
            return Err(Miss::Absent);
        };
        let age = slot.stored.elapsed();
        if age >= self.ttl {
            map.remove(username);
            return Err(Miss::Expired);
        }
        Ok((slot.login.clone(), age))
    }

    pub fn insert(&self, username: &str, login: CachedLogin) {
        if !self.enabled() {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.size && !map.contains_key(username) {
            let ttl = self.ttl;
            map.retain(|_, s| s.stored.elapsed() < ttl);
            if map.len() >= self.size {
                map.clear();
            }
        }
        map.insert(
            username.to_owned(),
            Slot {
                stored: Instant::now(),
                login,
            },
        );
    }

    /// Drop the entry of `username`; whether there was one.
    pub fn remove(&self, username: &str) -> bool {
        if !self.enabled() {
            return false;
        }
        self.lock().remove(username).is_some()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(dn: &str) -> CachedLogin {
        CachedLogin {
            dn: dn.into(),
            principal: Principal {
                subject: dn.into(),
                ..Principal::default()
            },
        }
    }

    #[test]
    fn hit_miss_expiry_and_removal() {
        // A TTL long enough that a loaded test machine does not expire the entry early.
        let c = LoginCache::new(Duration::from_millis(400), 10);
        assert_eq!(c.get("alice").unwrap_err(), Miss::Absent);
        c.insert("alice", login("uid=alice"));
        let (l, age) = c.get("alice").unwrap();
        assert_eq!(l.dn, "uid=alice");
        assert!(age < Duration::from_millis(400));
        // Exact key: no case folding, no escaping.
        assert_eq!(c.get("Alice").unwrap_err(), Miss::Absent);
        assert!(c.remove("alice"));
        assert!(!c.remove("alice"));
        c.insert("alice", login("uid=alice"));
        std::thread::sleep(Duration::from_millis(450));
        assert_eq!(c.get("alice").unwrap_err(), Miss::Expired);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn bounded() {
        let c = LoginCache::new(Duration::from_secs(60), 3);
        for u in ["a", "b", "c"] {
            c.insert(u, login(u));
        }
        assert_eq!(c.len(), 3);
        // Replacing an existing key does not evict.
        c.insert("a", login("a2"));
        assert_eq!(c.len(), 3);
        // Full of live entries: cleared, then the new one stored.
        c.insert("d", login("d"));
        assert_eq!(c.len(), 1);
        assert!(c.get("d").is_ok() && c.get("a").is_err());
    }

    #[test]
    fn disabled() {
        for c in [
            LoginCache::new(Duration::ZERO, 10),
            LoginCache::new(Duration::from_secs(60), 0),
        ] {
            c.insert("alice", login("uid=alice"));
            assert_eq!(c.get("alice").unwrap_err(), Miss::Disabled);
            assert_eq!(c.len(), 0);
        }
    }
}
