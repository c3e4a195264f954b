//! Hosts with health tracking, and bounded connection pools.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ldap3::Ldap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// First back-off after a host failed; doubled on each further failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(5);
/// Longest back-off of a failed host.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    Plain,
    StartTls,
    Ldaps,
}

impl TlsMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TlsMode::Plain => "none",
            TlsMode::StartTls => "starttls",
            TlsMode::Ldaps => "ldaps",
        }
    }
}

#[derive(Debug, Default)]
struct Health {
    failures: u32,
    down_until: Option<Instant>,
    last_cause: Option<String>,
}

/// One configured server.
#[derive(Debug)]
pub(crate) struct Host {
    /// `scheme://host:port` (normalized, with the default port filled in).
    pub url: String,
    /// `host:port` for a plain TCP connect.
    pub addr: String,
    pub tls: TlsMode,
    health: Mutex<Health>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Host {
    pub(crate) fn new(url: String, addr: String, tls: TlsMode) -> Self {
        Self {
            url,
            addr,
            tls,
            health: Mutex::new(Health::default()),
        }
    }

    /// How long the host is still skipped, and why, if it is in back-off.
    pub(crate) fn down_for(&self) -> Option<(Duration, String)> {
        let h = lock(&self.health);
        let until = h.down_until?;
        let now = Instant::now();
        (until > now).then(|| (until - now, h.last_cause.clone().unwrap_or_default()))
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down_for().is_some()
    }

    /// Record a failure; returns the back-off now applied.
    pub(crate) fn mark_down(&self, cause: &str) -> Duration {
        let mut h = lock(&self.health);
        h.failures = h.failures.saturating_add(1);
        let factor = 1u32 << h.failures.saturating_sub(1).min(8);
        let backoff = MIN_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF);
        h.down_until = Some(Instant::now() + backoff);
        h.last_cause = Some(cause.to_string());
        backoff
    }

    /// Record a success; returns true if the host was failing before.
    pub(crate) fn mark_up(&self) -> bool {
        let mut h = lock(&self.health);
        let was = h.failures > 0;
        *h = Health::default();
        was
    }
}

/// A connection checked out of a pool. Dropping it closes the connection; [`Pool::put`] keeps
/// it for reuse.
pub(crate) struct Conn {
    pub ldap: Ldap,
    pub host: usize,
    /// Taken from the idle list rather than opened for this request.
    pub reused: bool,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    pub(crate) fn new(ldap: Ldap, host: usize, reused: bool, permit: OwnedSemaphorePermit) -> Self {
        Self {
            ldap,
            host,
            reused,
            _permit: permit,
        }
    }
}

pub(crate) struct Idle {
    pub ldap: Ldap,
    pub host: usize,
    pub since: Instant,
}

/// A bounded pool: at most `size` connections exist (checked out + idle). A permit is held by
/// each checked-out connection; idle connections exist only while no permit needs them, so
/// checked-out + idle ≤ size.
pub(crate) struct Pool {
    pub name: &'static str,
    pub size: usize,
    sem: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    pub(crate) fn new(name: &'static str, size: usize) -> Self {
        Self {
            name,
            size,
            sem: Arc::new(Semaphore::new(size)),
            idle: Mutex::new(Vec::with_capacity(size)),
        }
    }

    /// Wait up to `wait` for a free slot. The flag says whether the caller had to queue (every
    /// slot was taken when it asked).
    pub(crate) async fn permit(&self, wait: Duration) -> Option<(OwnedSemaphorePermit, bool)> {
        if let Ok(p) = self.sem.clone().try_acquire_owned() {
            return Some((p, false));
        }
        match tokio::time::timeout(wait, self.sem.clone().acquire_owned()).await {
            Ok(Ok(p)) => Some((p, true)),
            _ => None,
        }
    }

    /// The most recently used idle connection.
    pub(crate) fn pop(&self) -> Option<Idle> {
        lock(&self.idle).pop()
    }

    /// Keep a connection for reuse.
    pub(crate) fn put(&self, conn: Conn) {
        let Conn {
            ldap,
            host,
            _permit,
            ..
        } = conn;
        let mut idle = lock(&self.idle);
        if idle.len() < self.size {
            idle.push(Idle {
                ldap,
                host,
                since: Instant::now(),
            });
        }
        // The permit is released after the connection is back in the idle list.
        drop(idle);
        drop(_permit);
    }

    /// Close idle connections older than `max_idle`, already closed, or to a host in back-off.
    pub(crate) fn reap(&self, max_idle: Duration, hosts: &[Host]) -> usize {
        let mut idle = lock(&self.idle);
        let before = idle.len();
        idle.retain_mut(|c| {
            c.since.elapsed() < max_idle
                && !c.ldap.is_closed()
                && !hosts.get(c.host).is_some_and(Host::is_down)
        });
        before - idle.len()
    }

    /// Number of idle connections (tests, diagnostics).
    pub(crate) fn idle_len(&self) -> usize {
        lock(&self.idle).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let h = Host::new("ldap://h:389".into(), "h:389".into(), TlsMode::Plain);
        assert!(!h.is_down());
        let b: Vec<_> = (0..7).map(|_| h.mark_down("refused").as_secs()).collect();
        assert_eq!(b, vec![5, 10, 20, 40, 60, 60, 60]);
        let (left, cause) = h.down_for().unwrap();
        assert!(left <= MAX_BACKOFF && cause == "refused");
        assert!(h.mark_up());
        assert!(!h.is_down());
        assert!(!h.mark_up());
        assert_eq!(h.mark_down("x"), MIN_BACKOFF);
    }

    #[tokio::test]
    async fn pool_is_bounded() {
        let p = Pool::new("service", 2);
        let a = p.permit(Duration::from_millis(10)).await;
        let b = p.permit(Duration::from_millis(10)).await;
        assert!(
            matches!((&a, &b), (Some((_, false)), Some((_, false)))),
            "free slots: no queueing"
        );
        assert!(p.permit(Duration::from_millis(20)).await.is_none());
        let waiter = tokio::spawn({
            let sem = p.sem.clone();
            async move {
                let p = Pool {
                    name: "service",
                    size: 2,
                    sem,
                    idle: Mutex::new(Vec::new()),
                };
                p.permit(Duration::from_secs(5))
                    .await
                    .map(|(_, queued)| queued)
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a);
        assert_eq!(
            waiter.await.unwrap(),
            Some(true),
            "a slot freed while waiting: queued"
        );
        assert_eq!(p.idle_len(), 0);
    }
}
