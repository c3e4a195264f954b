//! A small per-node read cache with a time-to-live, for records read on every request
//! (clients, client lockout state). Entries are kept for at most `ttl` of monotonic time, so
//! a change made on another node is seen within `ttl`; changes made through this node
//! invalidate at once. The map is bounded: when full it is cleared, which only costs reads.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TtlCache<V> {
    ttl: Duration,
    max_entries: usize,
    map: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.map.lock().ok()?;
        let (at, v) = map.get(key)?;
        (at.elapsed() < self.ttl).then(|| v.clone())
    }

    pub fn put(&self, key: &str, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= self.max_entries && !map.contains_key(key) {
                map.clear();
            }
            map.insert(key.to_owned(), (Instant::now(), value));
        }
    }

    pub fn invalidate(&self, key: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(key);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut map) = self.map.lock() {
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_invalidates_and_stays_bounded() {
        let c = TtlCache::new(Duration::from_millis(50), 2);
        c.put("a", 1);
        assert_eq!(c.get("a"), Some(1));
        c.invalidate("a");
        assert_eq!(c.get("a"), None);
        c.put("a", 1);
        c.put("b", 2);
        c.put("c", 3);
        assert_eq!(c.get("a"), None, "cleared when full");
        assert_eq!(c.get("c"), Some(3));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.get("c"), None);
        let off = TtlCache::new(Duration::ZERO, 2);
        off.put("a", 1);
        assert_eq!(off.get("a"), None);
    }
}
