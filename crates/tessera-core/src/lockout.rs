//! Soft account lockout (WebLogic's UserLockoutManager, spec digest §B5–B7, §E5): repeated
//! credential failures lock a *name* inside Tessera for a while, so that guessing never reaches
//! the directory often enough to lock the account there for good.
//!
//! # Policies and keys
//!
//! Two independent [`LockoutPolicy`] values live in [`crate::settings::Settings`]:
//!
//! - **end users** (`user_lockout`): the key is the *submitted* username, folded at least as
//!   coarsely as a directory matches names ([`normalize_username`]: case, compatibility forms,
//!   invisible characters, spaces). Unknown users are counted exactly like known ones, so a lock (or its
//!   absence) reveals nothing about which accounts exist.
//! - **clients / service accounts** (`client_lockout`): failed `client_secret_*` or assertion
//!   authentication. The key is (`client_id`, source address) by default
//!   ([`ClientLockoutScope::ClientAndSource`]), so an attacker elsewhere cannot lock a working
//!   service out; `ClientOnly` keys on `client_id` alone (stronger against distributed guessing,
//!   but anyone who knows a `client_id` can then deny it service).
//!
//! # The threshold: the n-th failure locks
//!
//! `threshold = n` means *n wrong passwords per window reach the providers, and the n-th one
//! locks*. WebLogic's `LockoutThreshold` locks when the count is *greater than* the threshold,
//! i.e. on failure n+1. We deliberately chose the n-th: the threshold is then exactly the number
//! of directory binds an attacker gets per window, which is the number an administrator compares
//! with the directory's own hard lockout (ppolicy `pwdMaxFailure`, AD lockout threshold). Keep
//! `threshold` below that number (and, if the directory never forgets failures, enable
//! `progressive` or set the directory's failure-count interval). To port a WebLogic setting
//! `LockoutThreshold = k`, use `threshold = k + 1`.
//!
//! # Defaults (end users; WebLogic's values)
//!
//! enabled, enforce, threshold 5, reset window 5 min, lock 30 min, no progression.
//! Clients default to threshold 10, window 5 min, lock 15 min: machine clients retry
//! automatically and a misconfigured one should recover on its own soon after it is fixed.
//!
//! # State machine (one record per key)
//!
//! ```text
//!                    failure (count < n)            failure (count + 1 == n, enforce)
//!   ┌──────────┐  ───────────────────────► ┌─────────────┐ ─────────────────────────► ┌──────────┐
//!   │  CLEAN   │                           │  COUNTING   │                            │  LOCKED  │
//!   │(no record)│ ◄─────────────────────── │ failures=k  │                            │ until T  │
//!   └──────────┘   success / window ends   └─────────────┘                            └──────────┘
//!        ▲            (now ≥ first + window)      │  ▲ failure (k+1 < n): k+1                │
//!        │                                        └──┘                                      │
//!        │                 lock expires (now ≥ T) or admin clear                            │
//!        └──────────────────────────────────────────────────────────────────────────────────┘
//!
//!   LOCKED: every attempt is refused before any provider runs ("attempt while locked").
//!   monitor-only: COUNTING → n-th failure raises the lockout alert and counts it, but the
//!   record never enters LOCKED.
//!   progressive: the k-th consecutive lock lasts duration·factor^(k−1), capped at `max`; the
//!   streak is forgotten after a success, or after one `max` period without a new lock.
//! ```
//!
//! # Race-freedom: attempt reservations
//!
//! The lock must be checked *before* the providers run, so 200 concurrent wrong passwords would
//! all pass a plain "is it locked?" check before the first failure is recorded. Instead every
//! attempt takes a *reservation* ([`begin_attempt`]): it is admitted only while
//! `failures + in_flight < threshold`, and admission increments `in_flight` in the same atomic
//! store operation. [`finish_attempt`] converts the reservation into a failure (possibly
//! locking), resets the record on success, or just releases it (provider unavailable,
//! account-state denial). So at most `threshold` attempts per window ever reach a provider,
//! across all nodes sharing the store. Reservations carry a lease ([`RESERVATION_LEASE_SECS`]):
//! a node that dies between the two calls cannot block a name for longer than that.
//! While saturated (`failures + in_flight ≥ threshold` but not locked) an attempt is refused
//! without asking a provider; the guard reports it as "temporarily unavailable", not as a bad
//! password, since no password was checked (it happens while attempts for the name are stuck,
//! e.g. on a hung directory, or one failure away from locking).
//!
//! The functions here are pure (state in, decision out, `now` passed in). The store
//! ([`crate::store::LockoutStore`]) applies them under a row lock (a transaction), so this module
//! is the only place with lockout logic.
//!
//! # What counts (§E5)
//!
//! Only genuine credential rejections: wrong password, unknown user, empty password
//! ([`crate::authn::Decision::Denied`] with `credential_failure`). Never an unavailable provider
//! (an outage would otherwise lock everyone out), never an account-state denial (the password
//! was right). A success resets the counter.
//!
//! # Trade-offs for administrators
//!
//! Lockout is itself a denial-of-service lever: anyone who knows a username can keep it locked
//! by sending `threshold` wrong passwords per lock period. Shorter locks and `monitor_only`
//! reduce that; progressive locks slow down guessing more but prolong such denial. Unknown
//! names create records too (so nothing is revealed); they expire after the window, and
//! [`crate::store::LockoutStore::lockout_collect_expired`] keeps the table bounded.

mod guard;

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

pub use guard::{ClientAttempt, ClientAuthFailure, LOCKOUT_PROVIDER, UserAuthResult, user_outcome};

/// How long an attempt reservation lasts when it is never finished (a crashed node), seconds.
/// Longer than any provider call (LDAP timeouts are seconds).
pub const RESERVATION_LEASE_SECS: i64 = 120;

/// Enforce locks, or only count and alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockoutMode {
    Enforce,
    /// Count failures, raise the lockout event and metrics, never refuse an attempt.
    MonitorOnly,
}

/// Progressive lock durations: the k-th consecutive lock lasts `duration · factor^(k−1)`,
/// capped at `max` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progressive {
    pub factor: u32,
    pub max: u64,
}

/// One lockout policy (end users or clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutPolicy {
    /// When false nothing is counted or locked. Default true.
    pub enabled: bool,
    pub mode: LockoutMode,
    /// Failures per window that reach the providers; the n-th locks (≥ 1). Default 5.
    pub threshold: u32,
    /// Seconds from the first failure during which failures accumulate. Default 300.
    pub reset_window: u64,
    /// Lock duration, seconds. Default 1800.
    pub lock_duration: u64,
    pub progressive: Option<Progressive>,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self::users()
    }
}

impl LockoutPolicy {
    /// End-user defaults: threshold 5, window 5 min, lock 30 min (WebLogic's).
    pub fn users() -> Self {
        Self {
            enabled: true,
            mode: LockoutMode::Enforce,
            threshold: 5,
            reset_window: 300,
            lock_duration: 1800,
            progressive: None,
        }
    }

    /// Client defaults: threshold 10, window 5 min, lock 15 min.
    pub fn clients() -> Self {
        Self {
            threshold: 10,
            lock_duration: 900,
            ..Self::users()
        }
    }

    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::users()
        }
    }

    fn threshold(&self) -> u32 {
        self.threshold.max(1)
    }

    /// The duration of the `nth` consecutive lock (1-based).
    pub fn lock_duration_for(&self, nth: u32) -> u64 {
        match self.progressive {
            None => self.lock_duration,
            Some(p) => {
                let mut d = self.lock_duration;
                for _ in 1..nth.max(1) {
                    d = d.saturating_mul(u64::from(p.factor.max(1)));
                    if d >= p.max {
                        break;
                    }
                }
                d.min(p.max.max(self.lock_duration))
            }
        }
    }

    /// How long a lock streak is remembered after its lock ends (progressive only).
    fn streak_memory(&self) -> u64 {
        match self.progressive {
            None => 0,
            Some(p) => p.max.max(self.lock_duration),
        }
    }
}

/// Which names the client policy keys on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientLockoutScope {
    /// (`client_id`, source address): an attacker elsewhere cannot lock the client out. Default.
    ClientAndSource,
    /// `client_id` alone.
    ClientOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockoutKind {
    User,
    Client,
}

impl LockoutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Client => "client",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "client" => Some(Self::Client),
            _ => None,
        }
    }
}

/// What a lockout record is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LockoutKey {
    pub kind: LockoutKind,
    /// Normalized username, or the `client_id`.
    pub name: String,
    /// Source address, for client keys scoped by source.
    pub source: Option<String>,
}

impl LockoutKey {
    /// An end user, by the submitted name ([`normalize_username`]).
    pub fn user(submitted: &str) -> Self {
        Self {
            kind: LockoutKind::User,
            name: normalize_username(submitted),
            source: None,
        }
    }

    pub fn client(
        client_id: &str,
        source: Option<std::net::IpAddr>,
        scope: ClientLockoutScope,
    ) -> Self {
        let source = match scope {
            ClientLockoutScope::ClientOnly => None,
            ClientLockoutScope::ClientAndSource => Some(
                source
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|| "unknown".to_owned()),
            ),
        };
        Self {
            kind: LockoutKind::Client,
            name: client_id.to_owned(),
            source,
        }
    }

    /// The storage identifier: `user:NAME`, `client:ID` or `client:ID@SOURCE`.
    pub fn id(&self) -> String {
        match &self.source {
            Some(s) => format!("{}:{}@{}", self.kind.as_str(), self.name, s),
            None => format!("{}:{}", self.kind.as_str(), self.name),
        }
    }
}

/// The lockout key of a submitted username: Unicode compatibility-normalized (NFKC) and
/// lower-cased, invisible format characters dropped, whitespace trimmed and collapsed to single
/// spaces.
///
/// Directories match names loosely: OpenLDAP's `caseIgnoreMatch` (uid, cn) applies Unicode
/// compatibility normalization and insignificant-space handling (RFC 4518 §2), so `ｄａｖｅ`
/// (fullwidth), `𝐝𝐚𝐯𝐞` (mathematical bold), `ⓓave` or `ⅾave` all find and bind `uid=dave`. Each
/// spelling under its own key would get `threshold` more directory binds and could trip the
/// directory's hard lockout after all, so the key is at least as coarse as any provider's
/// matching (a coarser key only merges look-alike names, which is harmless).
pub fn normalize_username(submitted: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    let folded: String = submitted
        .nfkc()
        .flat_map(char::to_lowercase)
        .collect::<String>()
        .nfkc()
        .collect();
    let mut out = String::with_capacity(folded.len());
    let mut space = false;
    for c in folded.chars() {
        if is_ignorable(c) {
            continue;
        }
        // NFKC already maps no-break and ideographic spaces to U+0020.
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if std::mem::take(&mut space) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Format characters a directory ignores when matching (RFC 3454 table B.1, bidi controls);
/// NFKC keeps them.
fn is_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The stored state of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutRecord {
    pub key: LockoutKey,
    /// Credential failures in the current window.
    pub failures: u32,
    /// First failure of the current window (meaningful when `failures > 0`).
    pub window_start: UnixTime,
    pub last_failure_at: Option<UnixTime>,
    /// Source address of the last failure.
    pub last_source: Option<String>,
    /// Admitted attempts not finished yet.
    pub in_flight: u32,
    /// When the reservations lapse (crash safety).
    pub in_flight_until: UnixTime,
    /// End of the current lock; after it, end of the last lock while its streak is remembered.
    pub locked_until: Option<UnixTime>,
    /// Consecutive locks (progressive durations).
    pub lock_count: u32,
    /// When the record carries no information any more (garbage collection).
    pub expires_at: UnixTime,
}

impl LockoutRecord {
    fn fresh(key: &LockoutKey) -> Self {
        Self {
            key: key.clone(),
            failures: 0,
            window_start: 0,
            last_failure_at: None,
            last_source: None,
            in_flight: 0,
            in_flight_until: 0,
            locked_until: None,
            lock_count: 0,
            expires_at: 0,
        }
    }

    pub fn is_locked(&self, now: UnixTime) -> bool {
        self.locked_until.is_some_and(|t| t > now)
    }

    /// Failures that still count at `now` (0 once the window or the lock is over).
    pub fn live_failures(&self, policy: &LockoutPolicy, now: UnixTime) -> u32 {
        let mut r = self.clone();
        normalize(&mut r, policy, now);
        r.failures
    }
}

/// Bring a record up to date at `now`: lapse reservations, forget failures from before the
/// end of a lock, close an expired window, forget an old lock streak. After a lock ends,
/// `locked_until` stays as the end of the last lock while the streak is remembered
/// (progressive durations); [`LockoutRecord::is_locked`] compares it with `now`.
fn normalize(r: &mut LockoutRecord, policy: &LockoutPolicy, now: UnixTime) {
    if r.in_flight_until <= now {
        r.in_flight = 0;
    }
    if let Some(until) = r.locked_until.filter(|u| *u <= now) {
        if r.failures > 0 && r.window_start < until {
            r.failures = 0;
        }
        if until.saturating_add(policy.streak_memory() as i64) <= now {
            r.locked_until = None;
            r.lock_count = 0;
        }
    }
    if !r.is_locked(now)
        && r.failures > 0
        && r.window_start.saturating_add(policy.reset_window as i64) <= now
    {
        r.failures = 0;
    }
}

/// When a record stops carrying information (it can be deleted then).
fn expiry(r: &LockoutRecord, policy: &LockoutPolicy) -> UnixTime {
    let mut t = r.in_flight_until;
    if r.failures > 0 {
        t = t.max(r.window_start.saturating_add(policy.reset_window as i64));
    }
    if let Some(until) = r.locked_until {
        t = t.max(until.saturating_add(policy.streak_memory() as i64));
    }
    t
}

/// `None` when the record is empty (the store deletes it).
fn finish_record(mut r: LockoutRecord, policy: &LockoutPolicy) -> Option<LockoutRecord> {
    r.expires_at = expiry(&r, policy);
    let empty =
        r.failures == 0 && r.in_flight == 0 && r.locked_until.is_none() && r.lock_count == 0;
    (!empty).then_some(r)
}

/// The answer to "may this attempt reach the providers?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; a reservation was taken when `reserved` (finish it with [`finish_attempt`]).
    Proceed { reserved: bool },
    /// Refused without calling any provider.
    Locked {
        until: UnixTime,
        /// true: locked; false: saturated by attempts in flight.
        locked: bool,
    },
}

/// The outcome of an admitted attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Success,
    /// A genuine credential rejection (counted).
    CredentialFailure,
    /// Not counted: provider unavailable, account-state denial, internal error.
    Neutral,
}

/// What finishing an attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Nothing to report (success, neutral, or lockout disabled).
    Released,
    /// A failure was counted; `failures` is the count in the window now.
    Counted { failures: u32 },
    /// This failure locked the key.
    LockedNow { until: UnixTime, failures: u32 },
    /// Monitor-only: this failure would have locked the key.
    WouldLock { failures: u32 },
}

/// Pure: may an attempt on this key go ahead? Returns the new state (`None` = delete).
pub fn begin_attempt(
    policy: &LockoutPolicy,
    key: &LockoutKey,
    state: Option<&LockoutRecord>,
    now: UnixTime,
) -> (Option<LockoutRecord>, Admission) {
    if !policy.enabled {
        return (state.cloned(), Admission::Proceed { reserved: false });
    }
    let mut r = state.cloned().unwrap_or_else(|| LockoutRecord::fresh(key));
    normalize(&mut r, policy, now);
    if policy.mode == LockoutMode::MonitorOnly {
        return (
            finish_record(r, policy),
            Admission::Proceed { reserved: false },
        );
    }
    if let Some(until) = r.locked_until.filter(|u| *u > now) {
        return (
            finish_record(r, policy),
            Admission::Locked {
                until,
                locked: true,
            },
        );
    }
    if r.failures.saturating_add(r.in_flight) >= policy.threshold() {
        let until = r.in_flight_until;
        return (
            finish_record(r, policy),
            Admission::Locked {
                until,
                locked: false,
            },
        );
    }
    r.in_flight += 1;
    r.in_flight_until = now + RESERVATION_LEASE_SECS;
    (
        finish_record(r, policy),
        Admission::Proceed { reserved: true },
    )
}

/// Pure: record the outcome of an attempt admitted by [`begin_attempt`].
pub fn finish_attempt(
    policy: &LockoutPolicy,
    key: &LockoutKey,
    state: Option<&LockoutRecord>,
    reserved: bool,
    outcome: AttemptOutcome,
    source: Option<&str>,
    now: UnixTime,
) -> (Option<LockoutRecord>, Settled) {
    if !policy.enabled {
        return (state.cloned(), Settled::Released);
    }
    let mut r = state.cloned().unwrap_or_else(|| LockoutRecord::fresh(key));
    normalize(&mut r, policy, now);
    if reserved {
        r.in_flight = r.in_flight.saturating_sub(1);
    }
    let settled = match outcome {
        AttemptOutcome::Neutral => Settled::Released,
        AttemptOutcome::Success => {
            // A success resets the count and the streak, but not a lock another concurrent
            // attempt has just set (locks end by expiry or an administrator only).
            if !r.is_locked(now) {
                r.failures = 0;
                r.lock_count = 0;
                r.locked_until = None;
            }
            Settled::Released
        }
        AttemptOutcome::CredentialFailure => {
            if r.failures == 0 {
                r.window_start = now;
            }
            r.failures = r.failures.saturating_add(1);
            r.last_failure_at = Some(now);
            r.last_source = source.map(str::to_owned);
            if r.is_locked(now) {
                Settled::Counted {
                    failures: r.failures,
                }
            } else if r.failures >= policy.threshold() {
                match policy.mode {
                    LockoutMode::Enforce => {
                        r.lock_count = r.lock_count.saturating_add(1);
                        let until =
                            now.saturating_add(policy.lock_duration_for(r.lock_count) as i64);
                        r.locked_until = Some(until);
                        Settled::LockedNow {
                            until,
                            failures: r.failures,
                        }
                    }
                    // Alert once per window, when the count reaches the threshold.
                    LockoutMode::MonitorOnly if r.failures == policy.threshold() => {
                        Settled::WouldLock {
                            failures: r.failures,
                        }
                    }
                    LockoutMode::MonitorOnly => Settled::Counted {
                        failures: r.failures,
                    },
                }
            } else {
                Settled::Counted {
                    failures: r.failures,
                }
            }
        }
    };
    (finish_record(r, policy), settled)
}

/// Administrative view of a record at `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutStatus {
    pub kind: LockoutKind,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub locked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<UnixTime>,
    pub failure_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<UnixTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure_source: Option<String>,
    pub lock_count: u32,
}

impl LockoutStatus {
    pub fn of(r: &LockoutRecord, policy: &LockoutPolicy, now: UnixTime) -> Self {
        let mut n = r.clone();
        normalize(&mut n, policy, now);
        Self {
            kind: r.key.kind,
            name: r.key.name.clone(),
            source: r.key.source.clone(),
            locked: n.is_locked(now),
            locked_until: n.locked_until.filter(|u| *u > now),
            failure_count: n.failures,
            last_failure_at: r.last_failure_at,
            last_failure_source: r.last_source.clone(),
            lock_count: n.lock_count,
        }
    }
}

/// Process-wide lockout counters (WebLogic's UserLockoutManagerRuntimeMBean). Totals count what
/// this process saw; `locked_now` and users-with-failures come from the shared store.
#[derive(Debug, Default)]
pub struct LockoutMetrics {
    pub lockouts_total: AtomicU64,
    pub invalid_attempts_total: AtomicU64,
    pub attempts_while_locked_total: AtomicU64,
    pub unlocks_total: AtomicU64,
    pub would_lock_total: AtomicU64,
    pub users_with_failures_high_water: AtomicU64,
}

impl LockoutMetrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
    /// Raise the high-water mark of users with unexpired failures.
    pub fn observe_users_with_failures(&self, n: u64) {
        self.users_with_failures_high_water
            .fetch_max(n, Ordering::Relaxed);
    }
}

/// Counts at one moment, from the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockoutCounts {
    pub users_locked: u64,
    pub clients_locked: u64,
    pub users_with_failures: u64,
}

/// `2024-05-01T12:00:00Z` for a Unix time (UTC), for logs and traces.
pub fn rfc3339(t: UnixTime) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests;
