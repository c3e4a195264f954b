//! Diagnostics: the run-time debug switch for authentication traces, the ring of recent traces,
//! the catalog of stable failure codes, and the "unredeemed codes" monitor.
//!
//! Everything here is pure bookkeeping (no I/O). The edge asks [`Diagnostics::begin`] whether to
//! record a trace for a request and hands the finished attempt to [`Diagnostics::finish`], which
//! keeps it (bounded ring, keyed by request id) when the switch says so.
//!
//! Scoped tracing (one user or client) cannot be decided when a request starts: the subject is
//! known only after parsing and authentication. While any scope is active every request records
//! a trace (the cost of a few small allocations per attempt, only while somebody is debugging),
//! and `finish` keeps it only when the attempt's user or client is in scope ("record, then
//! discard"). With the switch off, tracing costs one atomic load per request.
//!
//! Cause propagation (WebLogic's "Propagate Cause For Login Exception"): anonymous callers only
//! ever get the standard OAuth error (RFC 6749 §5.2); stored traces keep the root cause for the
//! admin API unless [`Diagnostics::set_propagate_cause`] turned that off, in which case admins
//! see the stable code, its explanation and remedy, but not the free-text cause.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::error::OAuthError;
use crate::oauth::RequestContext;
use crate::trace::{TraceHandle, TraceStep};

/// How many traces the ring keeps by default.
pub const DEFAULT_TRACE_CAPACITY: usize = 500;
/// Steps kept per trace (a runaway loop must not grow a record without bound).
pub const MAX_STEPS_PER_TRACE: usize = 256;

// ---------------------------------------------------------------------------------------------
// The switch.
// ---------------------------------------------------------------------------------------------

/// Who detailed tracing is on for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugState {
    /// Every attempt is traced.
    pub global: bool,
    /// Usernames (trimmed, lowercased) whose attempts are traced.
    pub users: Vec<String>,
    /// `client_id`s whose attempts are traced.
    pub clients: Vec<String>,
}

/// What [`DebugSwitch::mode`] says about a new request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceMode {
    Off,
    /// Global tracing: keep the trace.
    On,
    /// Scoped tracing: record, then keep only if the subject is in scope.
    Provisional,
}

#[derive(Debug, Default)]
struct Scopes {
    users: BTreeSet<String>,
    clients: BTreeSet<String>,
}

/// The run-time switch (`POST /admin/debug/authn`, `tessera debug authn on|off`). No restart.
#[derive(Debug, Default)]
pub struct DebugSwitch {
    global: AtomicBool,
    /// Fast path: whether any scope is set (checked before taking the lock).
    scoped: AtomicBool,
    scopes: RwLock<Scopes>,
}

fn norm_user(u: &str) -> String {
    u.trim().to_lowercase()
}

impl DebugSwitch {
    pub fn mode(&self) -> TraceMode {
        if self.global.load(Ordering::Relaxed) {
            TraceMode::On
        } else if self.scoped.load(Ordering::Relaxed) {
            TraceMode::Provisional
        } else {
            TraceMode::Off
        }
    }

    /// Switch tracing on or off. With neither `user` nor `client`: `on` traces everything and
    /// `off` switches every scope off too. With a scope, only that scope changes.
    pub fn set(&self, on: bool, user: Option<&str>, client: Option<&str>) -> DebugState {
        let user = user.map(norm_user).filter(|u| !u.is_empty());
        let client = client.map(str::trim).filter(|c| !c.is_empty());
        {
            let mut s = self.scopes.write().unwrap_or_else(|e| e.into_inner());
            match (user, client, on) {
                (None, None, true) => self.global.store(true, Ordering::Relaxed),
                (None, None, false) => {
                    self.global.store(false, Ordering::Relaxed);
                    s.users.clear();
                    s.clients.clear();
                }
                (u, c, on) => {
                    if let Some(u) = u {
                        if on {
                            s.users.insert(u);
                        } else {
                            s.users.remove(&u);
                        }
                    }
                    if let Some(c) = c {
                        if on {
                            s.clients.insert(c.to_owned());
                        } else {
                            s.clients.remove(c);
                        }
                    }
                }
            }
            self.scoped.store(
                !s.users.is_empty() || !s.clients.is_empty(),
                Ordering::Relaxed,
            );
        }
        self.state()
    }

    /// Whether an attempt by this user and/or client is traced.
    pub fn wants(&self, user: Option<&str>, client: Option<&str>) -> bool {
        match self.mode() {
            TraceMode::Off => false,
            TraceMode::On => true,
            TraceMode::Provisional => {
                let s = self.scopes.read().unwrap_or_else(|e| e.into_inner());
                user.is_some_and(|u| s.users.contains(&norm_user(u)))
                    || client.is_some_and(|c| s.clients.contains(c))
            }
        }
    }

    pub fn state(&self) -> DebugState {
        let s = self.scopes.read().unwrap_or_else(|e| e.into_inner());
        DebugState {
            global: self.global.load(Ordering::Relaxed),
            users: s.users.iter().cloned().collect(),
            clients: s.clients.iter().cloned().collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Trace records and the ring.
// ---------------------------------------------------------------------------------------------

/// One kept authentication trace.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TraceRecord {
    pub request_id: String,
    /// When the attempt finished (Unix seconds).
    pub at: UnixTime,
    /// "token", "login", "introspect", ...
    pub attempt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// "success" or "failure".
    pub decision: String,
    /// The OAuth error code (or the sign-in outcome word) on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The stable failure code from [`catalog`] when one applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// The root cause (internal detail; admin API only, and only with `propagate_cause`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    pub steps: Vec<TraceStep>,
}

impl TraceRecord {
    /// The record as the admin API shows it: without the free-text cause unless propagated.
    pub fn view(&self, propagate_cause: bool) -> TraceRecord {
        let mut r = self.clone();
        if !propagate_cause {
            r.cause = None;
        }
        r
    }
}

/// The bounded ring of recent traces (oldest dropped first).
#[derive(Debug)]
pub struct TraceRing {
    capacity: usize,
    inner: Mutex<VecDeque<Arc<TraceRecord>>>,
}

impl Default for TraceRing {
    fn default() -> Self {
        Self::new(DEFAULT_TRACE_CAPACITY)
    }
}

impl TraceRing {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(VecDeque::new()),
        }
    }
    pub fn push(&self, record: TraceRecord) -> Arc<TraceRecord> {
        let record = Arc::new(record);
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while q.len() >= self.capacity {
            q.pop_front();
        }
        q.push_back(record.clone());
        record
    }
    /// The newest trace with this request id.
    pub fn get(&self, request_id: &str) -> Option<Arc<TraceRecord>> {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().rev().find(|r| r.request_id == request_id).cloned()
    }
    /// Up to `limit` traces, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Arc<TraceRecord>> {
        let q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().rev().take(limit).cloned().collect()
    }
    pub fn len(&self) -> usize {
        self.inner.lock().map(|q| q.len()).unwrap_or_default()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the edge knows about a finished attempt.
#[derive(Debug, Clone, Default)]
pub struct Attempt<'a> {
    /// "token", "login", ...
    pub kind: &'a str,
    pub user: Option<&'a str>,
    pub client: Option<&'a str>,
    /// `None` = success.
    pub error: Option<AttemptError>,
}

/// A failed attempt: the protocol error word, the safe description and the internal cause.
#[derive(Debug, Clone, Default)]
pub struct AttemptError {
    pub error: String,
    pub description: Option<String>,
    pub cause: Option<String>,
}

impl From<&OAuthError> for AttemptError {
    fn from(e: &OAuthError) -> Self {
        Self {
            error: e.code.as_str().to_owned(),
            description: e.description.as_deref().map(str::to_owned),
            cause: e.cause.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The service the engine holds.
// ---------------------------------------------------------------------------------------------

/// The engine's diagnostics (`Engine::diagnostics`).
#[derive(Debug)]
pub struct Diagnostics {
    pub switch: DebugSwitch,
    pub traces: TraceRing,
    propagate_cause: AtomicBool,
    pub unredeemed: UnredeemedCodes,
}

impl Default for Diagnostics {
    fn default() -> Self {
        Self {
            switch: DebugSwitch::default(),
            traces: TraceRing::default(),
            propagate_cause: AtomicBool::new(true),
            unredeemed: UnredeemedCodes::default(),
        }
    }
}

impl Diagnostics {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            traces: TraceRing::new(capacity),
            ..Self::default()
        }
    }

    /// Whether stored traces keep the root cause for the admin API. Default true.
    pub fn propagate_cause(&self) -> bool {
        self.propagate_cause.load(Ordering::Relaxed)
    }
    pub fn set_propagate_cause(&self, on: bool) {
        self.propagate_cause.store(on, Ordering::Relaxed);
    }

    /// The trace handle for a new request: on when tracing is global or any scope is active.
    pub fn begin(&self) -> TraceHandle {
        match self.switch.mode() {
            TraceMode::Off => TraceHandle::off(),
            TraceMode::On | TraceMode::Provisional => TraceHandle::on(),
        }
    }

    /// Keep the attempt's trace when the switch wants this user/client; discard it otherwise.
    /// Returns the kept record.
    pub fn finish(
        &self,
        ctx: &RequestContext,
        attempt: Attempt<'_>,
        now: UnixTime,
    ) -> Option<Arc<TraceRecord>> {
        if !ctx.trace.is_on() || !self.switch.wants(attempt.user, attempt.client) {
            return None;
        }
        let mut steps = ctx.trace.steps();
        steps.truncate(MAX_STEPS_PER_TRACE);
        let classified = attempt
            .error
            .as_ref()
            .and_then(|e| catalog::classify_step(&steps, e));
        let entry = classified.map(|(e, _)| e);
        let (error, cause) = match &attempt.error {
            Some(e) => {
                // Without an explicit cause (sign-in pages), the decisive step is the cause.
                let from_step = || {
                    classified
                        .and_then(|(_, i)| i)
                        .and_then(|i| steps.get(i))
                        .map(|s| step_cause(s, attempt.user))
                };
                (Some(e.error.clone()), e.cause.clone().or_else(from_step))
            }
            None => (None, None),
        };
        let record = TraceRecord {
            request_id: ctx.request_id.clone(),
            at: now,
            attempt: attempt.kind.to_owned(),
            user: attempt.user.map(str::to_owned),
            client: attempt.client.map(str::to_owned),
            source_ip: ctx.source_ip.map(|ip| ip.to_string()),
            decision: if attempt.error.is_some() {
                "failure".into()
            } else {
                "success".into()
            },
            error,
            code: entry.map(|e| e.code.to_owned()),
            explanation: entry.map(|e| e.explanation.to_owned()),
            remedy: entry.map(|e| e.remedy.to_owned()),
            cause,
            steps,
        };
        tracing::debug!(
            target: "tessera::diagnostics",
            request_id = %record.request_id,
            attempt = %record.attempt,
            decision = %record.decision,
            code = ?record.code,
            "authentication trace kept"
        );
        Some(self.traces.push(record))
    }

    /// Record that a code was issued to `client_id` (call where codes are issued). Logs the
    /// warning once per window when the client redeems none.
    pub fn code_issued(&self, client_id: &str, now: UnixTime) -> Option<UnredeemedAlert> {
        let alert = self.unredeemed.issued(client_id, now)?;
        tracing::warn!(
            target: "tessera::diagnostics",
            code = catalog::UNREDEEMED_CODES,
            client_id = %alert.client_id,
            issued = alert.issued,
            window_secs = alert.window_secs,
            "{}",
            alert.message()
        );
        Some(alert)
    }

    /// Record that `client_id` redeemed a code (call on a successful code exchange).
    pub fn code_redeemed(&self, client_id: &str, now: UnixTime) {
        self.unredeemed.redeemed(client_id, now);
    }
}

/// A decisive trace step as a cause: "user 'u': provider:local verify → bad_credentials (…)".
fn step_cause(s: &TraceStep, user: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(u) = user {
        out.push_str(&format!("user '{u}': "));
    }
    out.push_str(&format!("{} {} → {}", s.component, s.step, s.outcome));
    let text = ["message", "cause", "error"]
        .iter()
        .find_map(|k| s.detail.get(*k).and_then(|v| v.as_str()))
        .map(str::to_owned)
        .or_else(|| {
            (!s.detail.is_empty()).then(|| serde_json::Value::Object(s.detail.clone()).to_string())
        });
    if let Some(t) = text {
        out.push_str(&format!(" ({t})"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Unredeemed authorization codes.
// ---------------------------------------------------------------------------------------------

/// "client X was issued 5 codes in 10 min and redeemed none".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnredeemedAlert {
    pub client_id: String,
    pub issued: usize,
    pub window_secs: u64,
}

impl UnredeemedAlert {
    pub fn message(&self) -> String {
        format!(
            "client {} was issued {} codes in {} min and redeemed none: its server probably cannot \
             reach the token endpoint — run `tessera probe` on it",
            self.client_id,
            self.issued,
            self.window_secs / 60
        )
    }
}

#[derive(Debug, Default)]
struct ClientCodes {
    issued: VecDeque<UnixTime>,
    last_redeemed: Option<UnixTime>,
    alerted_at: Option<UnixTime>,
}

/// Tracks issued and redeemed codes per client over a sliding window.
#[derive(Debug)]
pub struct UnredeemedCodes {
    threshold: usize,
    window_secs: u64,
    max_clients: usize,
    clients: Mutex<HashMap<String, ClientCodes>>,
    alerts_total: AtomicU64,
}

impl Default for UnredeemedCodes {
    fn default() -> Self {
        Self::new(5, 600)
    }
}

impl UnredeemedCodes {
    pub fn new(threshold: usize, window_secs: u64) -> Self {
        Self {
            threshold: threshold.max(1),
            window_secs,
            max_clients: 10_000,
            clients: Mutex::new(HashMap::new()),
            alerts_total: AtomicU64::new(0),
        }
    }

    /// Alerts raised by this process (`tessera_unredeemed_code_alerts_total`).
    pub fn alerts_total(&self) -> u64 {
        self.alerts_total.load(Ordering::Relaxed)
    }

    pub fn issued(&self, client_id: &str, now: UnixTime) -> Option<UnredeemedAlert> {
        let window = self.window_secs as i64;
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max_clients && !map.contains_key(client_id) {
            // Forget clients with nothing in the window; if that is not enough, stop tracking
            // new ones rather than grow without bound.
            map.retain(|_, c| c.issued.back().is_some_and(|t| now - t < window));
            if map.len() >= self.max_clients {
                return None;
            }
        }
        let c = map.entry(client_id.to_owned()).or_default();
        while c.issued.front().is_some_and(|t| now - t >= window) {
            c.issued.pop_front();
        }
        c.issued.push_back(now);
        // Only codes issued after the last redemption count: the server reached us since.
        let unredeemed = match c.last_redeemed {
            Some(r) => c.issued.iter().filter(|t| **t > r).count(),
            None => c.issued.len(),
        };
        let recently_alerted = c.alerted_at.is_some_and(|a| now - a < window);
        if unredeemed >= self.threshold && !recently_alerted {
            c.alerted_at = Some(now);
            self.alerts_total.fetch_add(1, Ordering::Relaxed);
            return Some(UnredeemedAlert {
                client_id: client_id.to_owned(),
                issued: unredeemed,
                window_secs: self.window_secs,
            });
        }
        None
    }

    pub fn redeemed(&self, client_id: &str, now: UnixTime) {
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get_mut(client_id) {
            c.last_redeemed = Some(now);
            c.alerted_at = None;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The catalog of stable failure codes.
// ---------------------------------------------------------------------------------------------

/// Every internal failure class with a stable code, an explanation and a remedy. Listed in
/// `docs/errors.md` (a test keeps the two in step).
pub mod catalog {
    use serde::Serialize;

    use super::AttemptError;
    use crate::trace::TraceStep;

    /// Who usually fixes it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Category {
        /// Network, proxy, DNS, a dependency down: the infrastructure team.
        Infra,
        /// A setting of Tessera, a client or a directory: the administrator.
        Config,
        /// This attempt only (a wrong password, a replayed token): nothing to fix server-side.
        Attempt,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    pub struct Entry {
        pub code: &'static str,
        pub title: &'static str,
        pub category: Category,
        pub explanation: &'static str,
        pub remedy: &'static str,
    }

    pub const UNREDEEMED_CODES: &str = "TSR-CODE-UNREDEEMED";

    macro_rules! entries {
        ($($code:literal, $cat:ident, $title:literal, $expl:literal, $remedy:literal;)+) => {
            pub const CATALOG: &[Entry] = &[$(Entry {
                code: $code, title: $title, category: Category::$cat,
                explanation: $expl, remedy: $remedy,
            }),+];
        };
    }

    entries! {
        // --- outbound connections (egress probe, JWKS, upstream IdPs) ---
        "TSR-NET-DNS", Infra, "host name does not resolve",
            "The DNS lookup of the target host failed (no such name, or no resolver answer).",
            "Check the host name for typos; check the resolver of this machine (`getent hosts HOST`); if the host is only reachable through the proxy, configure the proxy.";
        "TSR-NET-REFUSED", Infra, "connection refused",
            "The target host answered the TCP connection with a reset: nothing listens on that port.",
            "Check the port and that the service is running; check firewalls that reject rather than drop.";
        "TSR-NET-TIMEOUT", Infra, "connect timed out",
            "No TCP connection could be established within the connect timeout (a firewall dropping packets, or a host down).",
            "Check routing and firewalls between this host and the target; raise the connect timeout only if the path is known to be slow.";
        "TSR-NET-NO-ANSWER", Infra, "server accepted but never answered",
            "The TCP connection (and TLS, if any) succeeded but no response arrived before the timeout: the server is hung or overloaded.",
            "Check the health of the server (is it paused, out of threads, stuck on a backend?); the timeout protects Tessera meanwhile.";
        "TSR-PROXY-DOWN", Infra, "proxy unreachable",
            "The configured forward proxy could not be reached (refused, timeout or DNS failure for the proxy itself).",
            "Check the proxy URL and that the proxy runs; or remove the proxy setting if this host has direct access.";
        "TSR-PROXY-403", Infra, "proxy refused CONNECT",
            "The forward proxy answered the CONNECT request for the target with 403: its policy does not allow a tunnel to that host and port (RFC 9110 §9.3.6: any non-2xx answer means no tunnel).",
            "Add the target host to NO_PROXY / http.nonProxyHosts if it is reachable directly, or ask the proxy administrators to allow CONNECT to host:port.";
        "TSR-PROXY-407", Config, "proxy requires authentication",
            "The forward proxy answered CONNECT with 407 Proxy Authentication Required.",
            "Configure proxy credentials, or bypass the proxy for this host with NO_PROXY / http.nonProxyHosts.";
        "TSR-PROXY-REFUSED", Infra, "proxy answered CONNECT with an error",
            "The forward proxy answered CONNECT with a non-2xx status other than 403/407 (e.g. 502 when it cannot reach the target itself).",
            "Read the proxy's status line and log; 502/504 usually mean the proxy cannot reach the target either.";
        "TSR-TLS-UNTRUSTED", Config, "certificate not trusted",
            "The TLS certificate of the target is signed by a CA this host does not trust (rustls: invalid peer certificate: UnknownIssuer; Java: PKIX path building failed).",
            "Add the issuing CA to the configured CA bundle (egress.extra_ca_file / --ca-file), or fix the server to send its full chain.";
        "TSR-TLS-HANDSHAKE", Infra, "TLS handshake failed",
            "The TLS handshake failed for another reason: name mismatch, expired certificate, no common protocol, or a non-TLS server.",
            "Compare the certificate's names and validity with the URL (`openssl s_client -connect HOST:PORT -servername HOST`); check that the port speaks TLS.";
        "TSR-HTTP-STATUS", Config, "unexpected HTTP status",
            "The server answered, but with a status other than the expected 2xx (wrong path, authentication, or a redirect that is not followed).",
            "Check the URL; open it with curl from this host through the same proxy.";
        "TSR-OIDC-DISCOVERY", Config, "discovery document invalid",
            "The OpenID Provider metadata could not be read or lacks a required member (OIDC Discovery §3).",
            "Check that ISSUER/.well-known/openid-configuration returns the provider's JSON metadata.";
        "TSR-OIDC-ISSUER", Config, "issuer mismatch",
            "The issuer in the discovery document is not identical to the issuer URL used to fetch it (RFC 8414 §3.3: must be rejected).",
            "Configure the exact issuer string the provider publishes (scheme, host, port, path, trailing slash).";
        "TSR-JWKS-INVALID", Config, "JWK Set unusable",
            "The jwks_uri did not return a valid JWK Set (RFC 7517 §5) or it holds no usable key.",
            "Check the jwks_uri in the client registration or the discovery document and what it returns.";
        // --- LDAP ---
        "TSR-LDAP-001", Infra, "directory unreachable",
            "No LDAP host could be connected to (connection refused, DNS failure or connect timeout). Logins through this provider are answered 'temporarily unavailable' and are not counted as failures.",
            "Check that the directory runs and that this host can reach it (`tessera doctor`); add a second host to `urls` for failover.";
        "TSR-LDAP-002", Infra, "directory not answering",
            "The TCP connection succeeded but the LDAP operation timed out: the directory is hung, paused or overloaded.",
            "Check the directory server's health and load; `operation_timeout` bounds the wait meanwhile.";
        "TSR-LDAP-003", Config, "service account bind failed",
            "The bind as the configured service account (bind_dn) was rejected, usually 49 invalidCredentials: wrong bind_password, or the account is locked or expired at the directory.",
            "Fix bind_dn / bind_password (bind_password_env); test with `ldapwhoami -x -D BIND_DN -W -H URL`.";
        "TSR-LDAP-004", Config, "search base does not exist",
            "The user search failed with 32 noSuchObject: user_base_dn does not exist, or the service account may not read it.",
            "Fix user_base_dn; check the directory's ACLs for the service account.";
        "TSR-LDAP-005", Config, "user found more than once",
            "The user filter matched more than one entry, so the login cannot be attributed to one account.",
            "Narrow user_base_dn or user_filter so that a login name matches exactly one entry.";
        "TSR-LDAP-006", Config, "LDAP TLS failure",
            "StartTLS or LDAPS to the directory failed (untrusted CA, name mismatch).",
            "Configure the directory's CA in the provider's ca_file; use the host name the certificate names.";
        // --- end-user authentication ---
        "TSR-AUTHN-UNKNOWN-USER", Attempt, "unknown user",
            "No provider knows this login name. The user is told 'invalid username or password'; the attempt counts towards the lockout like a bad password.",
            "Check the spelling of the login name and the provider's user_filter; `tessera doctor --user NAME` looks the name up.";
        "TSR-AUTHN-BAD-PASSWORD", Attempt, "bad password",
            "The user exists but the password was rejected (LDAP 49 on the user bind, or the local hash did not match).",
            "Nothing to fix server-side; the user may reset the password. Repeated failures lock the account.";
        "TSR-AUTHN-LOCKED", Attempt, "account locked",
            "The account is locked, by Tessera's soft lockout or by the directory's password policy.",
            "Wait for the lock to expire, or unlock: `tessera lockout clear NAME` (Tessera) or delete pwdAccountLockedTime (OpenLDAP ppolicy).";
        "TSR-AUTHN-ACCOUNT-STATE", Config, "account may not sign in",
            "The credentials may be right but the account is disabled, expired, must change its password, or is restricted.",
            "Fix the account at its source (local user store or directory).";
        "TSR-AUTHN-EMPTY-PASSWORD", Attempt, "empty password",
            "An empty password was refused before contacting any backend (RFC 4513 §5.1.2: an empty password is an unauthenticated bind).",
            "Nothing to fix: the user must type a password.";
        // --- client authentication ---
        "TSR-CLIENT-UNKNOWN", Config, "unknown client",
            "No client is registered with this client_id.",
            "Register the client (`tessera client add`) or fix the client_id in the relying party's configuration.";
        "TSR-CLIENT-SECRET", Config, "wrong client secret",
            "The client_secret does not match the registered one.",
            "Copy the current secret into the relying party's configuration, or issue a new one.";
        "TSR-CLIENT-DISABLED", Config, "client disabled",
            "The client is registered but disabled.",
            "Enable the client again if it should be used.";
        "TSR-CLIENT-LOCKED", Attempt, "client locked",
            "Too many failed client authentications: the client is locked for a while (soft lockout).",
            "Fix the client's credentials first, then `tessera lockout clear CLIENT_ID`.";
        // --- JWT assertions (RFC 7523) ---
        "TSR-ASSERT-AUD", Config, "assertion audience mismatch",
            "The assertion's aud does not name this server (RFC 7523 §3: the token endpoint URL or the issuer).",
            "Make the client put the issuer or the token endpoint URL in aud; see client_assertion_audience.";
        "TSR-ASSERT-EXP", Attempt, "assertion expired",
            "The assertion's exp is in the past (beyond the allowed clock skew).",
            "Mint a fresh assertion per request; if they are fresh, the client's clock is behind: sync it with NTP.";
        "TSR-ASSERT-SKEW", Config, "assertion not yet valid (clock skew)",
            "The assertion's nbf or iat lies in the future beyond the allowed skew: the client's clock is ahead of this server's.",
            "Synchronise both clocks with NTP; `clock_skew` allows a small difference.";
        "TSR-ASSERT-ISS", Config, "assertion issuer not accepted",
            "The assertion's iss is neither the client_id (client authentication) nor a trusted issuer (grant).",
            "Set iss (and sub) to the client_id, or add the issuer to trusted_issuers.";
        "TSR-ASSERT-SIG", Config, "assertion signature invalid",
            "The signature does not verify under the registered key: the client signs with another key than the one registered.",
            "Register the client's current public key (jwks or jwks_uri), or make the client sign with the registered key.";
        "TSR-ASSERT-KID", Config, "assertion key unknown",
            "No registered key matches the assertion's kid, even after refetching the jwks_uri once (OIDC Core §10.1.1).",
            "Publish the new key at the jwks_uri (or register it) before the client starts signing with it.";
        "TSR-ASSERT-JTI", Attempt, "assertion replayed",
            "An assertion with this jti was already used (RFC 7523 §3: single use).",
            "Mint a new assertion, with a new jti, for every request.";
        "TSR-ASSERT-JWKS", Infra, "client key source unreachable",
            "The client's jwks_uri could not be fetched; this is an outage, not a bad credential, and is not counted by the lockout.",
            "Run `tessera probe` against the jwks_uri host from the server; check egress proxy settings.";
        "TSR-ASSERT-INVALID", Config, "assertion rejected",
            "Another assertion check failed (format, alg, typ, subject, lifetime, scope): the trace shows expected and actual values.",
            "Compare the failed check's expected and actual values in the trace (`tessera trace show ID`) or with `tessera assertion check`.";
        // --- authorization request (RFC 6749 §4.1.1) ---
        "TSR-AUTHZ-REDIRECT", Config, "redirect_uri not registered",
            "The authorization request's redirect_uri is not one of the client's registered redirect URIs (exact string match, RFC 6749 §3.1.2.3, RFC 9700 §4.1.3), or it is missing while several are registered. The user gets an error page and is not redirected (RFC 6749 §4.1.2.1).",
            "Register the exact callback URL the relying party sends (scheme, host, port, path, trailing slash) with the client, or fix the relying party's redirect URI setting; the trace shows the URI sent and the registered ones.";
        // --- authorization code exchange (RFC 6749 §4.1.3) ---
        "TSR-GRANT-REDIRECT", Config, "redirect_uri mismatch",
            "The redirect_uri of the token request is not identical to the one of the authorization request (RFC 6749 §4.1.3).",
            "Make the relying party send exactly the same redirect_uri in both requests (scheme, host, port, path, trailing slash).";
        "TSR-GRANT-CODE-REUSED", Attempt, "authorization code reused",
            "The code was already redeemed; every token issued from it has been revoked (RFC 6749 §4.1.2).",
            "Find why the relying party redeems a code twice (retries, two nodes sharing a callback); a reuse may also mean the code leaked.";
        "TSR-GRANT-CODE-INVALID", Attempt, "authorization code invalid or expired",
            "The code is unknown or expired (codes live code_ttl seconds).",
            "Redeem codes immediately; a slow or failing token request from the relying party shows up here (see TSR-CODE-UNREDEEMED).";
        "TSR-GRANT-PKCE", Attempt, "PKCE verifier mismatch",
            "The code_verifier does not hash to the code_challenge of the authorization request (RFC 7636 §4.6).",
            "Make the relying party keep the verifier of this very authorization request (per browser session) and send it unchanged.";
        "TSR-CODE-UNREDEEMED", Infra, "codes issued but never redeemed",
            "A client keeps receiving authorization codes but never redeems them: its server probably cannot reach the token endpoint (proxy, firewall, TLS trust).",
            "Run `tessera probe ISSUER` on the relying party's host with its proxy settings.";
        // --- this server ---
        "TSR-STORE-DOWN", Infra, "store unreachable",
            "The database could not be reached or answered an error.",
            "Check the database server and database_url; `tessera doctor` shows the connection error.";
        "TSR-STORE-SCHEMA", Config, "store not migrated",
            "The database schema is older (or newer) than this build expects.",
            "Run `tessera migrate` with this build (or use the build that matches the schema).";
        "TSR-KEYS", Config, "signing keys not in order",
            "No active signing key for a configured algorithm, or the rotation is overdue.",
            "Run `tessera keys rotate` (a running server rotates on schedule by itself; check that one runs).";
        "TSR-CLOCK", Infra, "clock out of sync",
            "This host's clock differs by more than 30 s from a reference clock: the `Date` header of an upstream IdP or remote JWKS host that `tessera doctor` reached (the store has no clock API). Tokens will look expired or not yet valid elsewhere.",
            "Synchronise the clock with NTP (chrony, systemd-timesyncd).";
        "TSR-INTERNAL", Infra, "internal error",
            "An unexpected internal failure; the log line with the same request id has the details.",
            "Look up the request id in the server log; report it if the cause is not clear.";
    }

    pub fn lookup(code: &str) -> Option<&'static Entry> {
        CATALOG.iter().find(|e| e.code == code)
    }

    fn get(code: &str) -> Option<&'static Entry> {
        lookup(code)
    }

    fn detail_str<'a>(s: &'a TraceStep, key: &str) -> &'a str {
        s.detail
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    }

    fn detail_num(s: &TraceStep, key: &str) -> Option<i64> {
        s.detail.get(key).and_then(|v| v.as_i64())
    }

    /// The catalog entry for a low-level error text (LDAP errors, connect errors).
    fn network_text(text: &str, ldap: bool) -> Option<&'static Entry> {
        let t = text.to_ascii_lowercase();
        if t.contains("timeout") || t.contains("timed out") {
            // A connect that timed out vs. an operation that did: LDAP ops are the hang case.
            return get(if ldap {
                "TSR-LDAP-002"
            } else {
                "TSR-NET-TIMEOUT"
            });
        }
        if t.contains("certificate") || t.contains("tls") || t.contains("unknownissuer") {
            return get(if ldap {
                "TSR-LDAP-006"
            } else {
                "TSR-TLS-HANDSHAKE"
            });
        }
        if t.contains("refused")
            || t.contains("lookup")
            || t.contains("dns")
            || t.contains("unreachable")
        {
            return get(if ldap {
                "TSR-LDAP-001"
            } else {
                "TSR-NET-REFUSED"
            });
        }
        None
    }

    /// Classify a failed attempt: the first decisive failed step of the trace, else the
    /// error's description and cause.
    pub fn classify(steps: &[TraceStep], error: &AttemptError) -> Option<&'static Entry> {
        classify_step(steps, error).map(|(e, _)| e)
    }

    /// [`classify`], with the index of the decisive step when a step decided.
    pub fn classify_step(
        steps: &[TraceStep],
        error: &AttemptError,
    ) -> Option<(&'static Entry, Option<usize>)> {
        steps
            .iter()
            .enumerate()
            .find_map(|(i, s)| step_entry(s).map(|e| (e, Some(i))))
            .or_else(|| from_error(error).map(|e| (e, None)))
    }

    /// The entry a failed step decides, if it is decisive.
    fn step_entry(s: &TraceStep) -> Option<&'static Entry> {
        let failed = !matches!(s.outcome.as_str(), "ok" | "skipped" | "reused" | "chosen");
        if !failed {
            return None;
        }
        if s.component == "lockout" && s.step == "check" {
            // The user path records the user name, the client path the client_id.
            return get(if s.detail.contains_key("user") {
                "TSR-AUTHN-LOCKED"
            } else {
                "TSR-CLIENT-LOCKED"
            });
        }
        if s.component == "assertion" {
            let actual = detail_str(s, "actual").to_ascii_lowercase();
            let code = match s.step.as_str() {
                "check:aud" => "TSR-ASSERT-AUD",
                "check:exp" => "TSR-ASSERT-EXP",
                "check:nbf" | "check:iat" => "TSR-ASSERT-SKEW",
                "check:iss" | "check:issuer" => "TSR-ASSERT-ISS",
                "check:jti replay" => "TSR-ASSERT-JTI",
                "check:signature" | "check:jwks refresh" => {
                    if actual.contains("could not fetch") || actual.starts_with("failed:") {
                        "TSR-ASSERT-JWKS"
                    } else if actual.contains("no key matches") || actual.contains("key id") {
                        "TSR-ASSERT-KID"
                    } else {
                        "TSR-ASSERT-SIG"
                    }
                }
                _ => "TSR-ASSERT-INVALID",
            };
            return get(code);
        }
        if let Some(provider) = s.component.strip_prefix("provider:") {
            let ldap = !provider.is_empty() && s.detail.contains_key("host");
            let code = detail_num(s, "code");
            let text = format!(
                "{} {} {}",
                detail_str(s, "error"),
                detail_str(s, "cause"),
                detail_str(s, "diagnostic")
            );
            match (s.step.as_str(), s.outcome.as_str()) {
                ("connect", _) => {
                    if let Some(e) = network_text(&text, true) {
                        return Some(e);
                    }
                    return get("TSR-LDAP-001");
                }
                ("service_bind", _) => {
                    if code.is_some() {
                        return get("TSR-LDAP-003");
                    }
                    return network_text(&text, true).or_else(|| get("TSR-LDAP-003"));
                }
                ("search" | "user_search", _) => {
                    if code == Some(32) {
                        return get("TSR-LDAP-004");
                    }
                    if let Some(e) = network_text(&text, true) {
                        return Some(e);
                    }
                }
                ("user_bind", outcome) => {
                    if outcome.contains("lock")
                        || detail_str(s, "ppolicy")
                            .to_ascii_lowercase()
                            .contains("lock")
                    {
                        return get("TSR-AUTHN-LOCKED");
                    }
                    if outcome == "account_state" {
                        return get("TSR-AUTHN-ACCOUNT-STATE");
                    }
                    if code == Some(49) || outcome == "bad_credentials" {
                        return get("TSR-AUTHN-BAD-PASSWORD");
                    }
                    if let Some(e) = network_text(&text, true) {
                        return Some(e);
                    }
                }
                ("result", "unavailable") => {
                    let cause = detail_str(s, "cause").to_ascii_lowercase();
                    if cause.contains("more than one")
                        || cause.contains("entries")
                        || cause.contains("twice")
                        || cause.contains("ambiguous")
                    {
                        return get("TSR-LDAP-005");
                    }
                    if let Some(e) = network_text(&cause, true) {
                        return Some(e);
                    }
                    return get("TSR-LDAP-001");
                }
                (_, "unknown_user") => return get("TSR-AUTHN-UNKNOWN-USER"),
                (_, "bad_credentials") => return get("TSR-AUTHN-BAD-PASSWORD"),
                (_, "empty_password") => return get("TSR-AUTHN-EMPTY-PASSWORD"),
                (_, "disabled") => return get("TSR-AUTHN-ACCOUNT-STATE"),
                _ => {}
            }
            let _ = ldap;
        }
        if s.component == "chain" && s.step.starts_with("provider:") {
            let code = match s.outcome.as_str() {
                "unknown_user" => "TSR-AUTHN-UNKNOWN-USER",
                "bad_credentials" => "TSR-AUTHN-BAD-PASSWORD",
                "empty_password" => "TSR-AUTHN-EMPTY-PASSWORD",
                "account_state" => "TSR-AUTHN-ACCOUNT-STATE",
                "unavailable" => {
                    let cause = detail_str(s, "cause");
                    return network_text(cause, true).or_else(|| get("TSR-LDAP-001"));
                }
                _ => return None,
            };
            return get(code);
        }
        None
    }

    fn from_error(e: &AttemptError) -> Option<&'static Entry> {
        let d = e
            .description
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let c = e.cause.as_deref().unwrap_or_default().to_ascii_lowercase();
        let code = match e.error.as_str() {
            "invalid_grant" if d.contains("redirect_uri") => "TSR-GRANT-REDIRECT",
            "invalid_request" if d.contains("redirect_uri") => "TSR-AUTHZ-REDIRECT",
            "invalid_grant" if d.contains("already used") => "TSR-GRANT-CODE-REUSED",
            "invalid_grant" if d.contains("code_verifier") || d.contains("pkce") => {
                "TSR-GRANT-PKCE"
            }
            "invalid_grant" if d.contains("authorization code") => "TSR-GRANT-CODE-INVALID",
            "invalid_client" if c.contains("unknown client") => "TSR-CLIENT-UNKNOWN",
            "invalid_client" if c.contains("wrong secret") => "TSR-CLIENT-SECRET",
            "invalid_client" if c.contains("disabled") => "TSR-CLIENT-DISABLED",
            "invalid_client" if c.contains("locked") => "TSR-CLIENT-LOCKED",
            "invalid_client" | "invalid_grant" if d.contains("audience") => "TSR-ASSERT-AUD",
            "invalid_client" | "invalid_grant" if d.contains("expired") => "TSR-ASSERT-EXP",
            "invalid_client" | "invalid_grant" if d.contains("jwks_uri") => "TSR-ASSERT-JWKS",
            "temporarily_unavailable" if c.contains("ldap") || c.contains("directory") => {
                "TSR-LDAP-001"
            }
            "temporarily_unavailable" => "TSR-STORE-DOWN",
            "server_error" => "TSR-INTERNAL",
            _ => return None,
        };
        get(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detail;
    use crate::error::OAuthError;

    fn ctx(trace: TraceHandle) -> RequestContext {
        RequestContext {
            request_id: "req-1".into(),
            source_ip: None,
            trace,
        }
    }

    #[test]
    fn switch_is_off_by_default_and_scopes_work() {
        let d = Diagnostics::default();
        assert_eq!(d.switch.mode(), TraceMode::Off);
        assert!(!d.begin().is_on());
        d.switch.set(true, Some(" Alice "), None);
        assert_eq!(d.switch.mode(), TraceMode::Provisional);
        assert!(d.begin().is_on());
        assert!(d.switch.wants(Some("alice"), None));
        assert!(!d.switch.wants(Some("bob"), Some("other")));
        d.switch.set(true, None, Some("rp"));
        assert!(d.switch.wants(None, Some("rp")));
        d.switch.set(false, Some("ALICE"), None);
        assert!(!d.switch.wants(Some("alice"), None));
        assert_eq!(d.switch.state().clients, vec!["rp".to_owned()]);
        d.switch.set(true, None, None);
        assert!(d.switch.wants(Some("anyone"), None));
        d.switch.set(false, None, None);
        assert_eq!(d.switch.state(), DebugState::default());
        assert_eq!(d.switch.mode(), TraceMode::Off);
    }

    #[test]
    fn finish_keeps_in_scope_and_discards_the_rest() {
        let d = Diagnostics::default();
        d.switch.set(true, None, Some("rp"));
        let c = ctx(d.begin());
        c.trace
            .step("lockout", "check", "locked", || detail! {"until" => 1});
        let err = OAuthError::invalid_client("client authentication failed")
            .with_cause("client 'rp' locked until then");
        let kept = d
            .finish(
                &c,
                Attempt {
                    kind: "token",
                    client: Some("rp"),
                    error: Some((&err).into()),
                    ..Attempt::default()
                },
                10,
            )
            .unwrap();
        assert_eq!(kept.code.as_deref(), Some("TSR-CLIENT-LOCKED"));
        assert_eq!(kept.decision, "failure");
        assert_eq!(d.traces.get("req-1").unwrap().steps.len(), 1);

        let mut other = ctx(d.begin());
        other.request_id = "req-2".into();
        let discarded = d.finish(
            &other,
            Attempt {
                kind: "token",
                client: Some("someone-else"),
                ..Attempt::default()
            },
            10,
        );
        assert!(discarded.is_none());
        assert!(d.traces.get("req-2").is_none());
        // Off: nothing is recorded at all.
        d.switch.set(false, None, None);
        assert!(d.finish(&ctx(d.begin()), Attempt::default(), 1).is_none());
    }

    #[test]
    fn cause_is_withheld_without_propagation() {
        let d = Diagnostics::default();
        d.switch.set(true, None, None);
        let err = OAuthError::invalid_client("x").with_cause("wrong secret for client 'rp'");
        let r = d
            .finish(
                &ctx(d.begin()),
                Attempt {
                    kind: "token",
                    client: Some("rp"),
                    error: Some((&err).into()),
                    ..Attempt::default()
                },
                1,
            )
            .unwrap();
        assert_eq!(r.code.as_deref(), Some("TSR-CLIENT-SECRET"));
        assert!(r.view(true).cause.is_some());
        assert!(r.view(false).cause.is_none());
        assert!(r.view(false).remedy.is_some());
    }

    #[test]
    fn ring_is_bounded_and_newest_first() {
        let ring = TraceRing::new(3);
        for i in 0..5 {
            ring.push(TraceRecord {
                request_id: format!("r{i}"),
                at: i,
                attempt: "token".into(),
                user: None,
                client: None,
                source_ip: None,
                decision: "success".into(),
                error: None,
                code: None,
                explanation: None,
                remedy: None,
                cause: None,
                steps: vec![],
            });
        }
        assert_eq!(ring.len(), 3);
        assert!(ring.get("r1").is_none());
        let ids: Vec<_> = ring
            .recent(2)
            .iter()
            .map(|r| r.request_id.clone())
            .collect();
        assert_eq!(ids, ["r4", "r3"]);
    }

    #[test]
    fn unredeemed_codes_alert_once_and_reset_on_redemption() {
        let u = UnredeemedCodes::new(5, 600);
        for i in 0..4 {
            assert!(u.issued("rp", 1000 + i).is_none());
        }
        let alert = u.issued("rp", 1010).unwrap();
        assert_eq!(alert.issued, 5);
        assert_eq!(
            alert.message(),
            "client rp was issued 5 codes in 10 min and redeemed none: its server probably \
             cannot reach the token endpoint — run `tessera probe` on it"
        );
        // No second alert within the window.
        assert!(u.issued("rp", 1020).is_none());
        assert_eq!(u.alerts_total(), 1);
        // A client that redeems is fine.
        for i in 0..10 {
            u.issued("good", 1000 + i);
            u.redeemed("good", 1000 + i);
        }
        assert!(u.issued("good", 1100).is_none());
        // Codes older than the window do not count.
        let v = UnredeemedCodes::new(5, 600);
        for i in 0..10 {
            assert!(v.issued("slow", i * 200).is_none(), "{i}");
        }
    }

    #[test]
    fn classifies_trace_steps() {
        let step = |component: &str, step: &str, outcome: &str, detail| TraceStep {
            at_ms: 0,
            component: component.into(),
            step: step.into(),
            outcome: outcome.into(),
            detail,
        };
        let err = AttemptError::default();
        let cases = [
            (
                step("assertion", "check:aud", "failed", detail! {}),
                "TSR-ASSERT-AUD",
            ),
            (
                step("assertion", "check:exp", "failed", detail! {}),
                "TSR-ASSERT-EXP",
            ),
            (
                step("assertion", "check:iat", "failed", detail! {}),
                "TSR-ASSERT-SKEW",
            ),
            (
                step("assertion", "check:jti replay", "failed", detail! {}),
                "TSR-ASSERT-JTI",
            ),
            (
                step(
                    "assertion",
                    "check:signature",
                    "failed",
                    detail! {"actual" => "no key matches the token's key id and algorithm"},
                ),
                "TSR-ASSERT-KID",
            ),
            (
                step(
                    "assertion",
                    "check:signature",
                    "failed",
                    detail! {"actual" => "signature verification failed"},
                ),
                "TSR-ASSERT-SIG",
            ),
            (
                step(
                    "provider:corp",
                    "service_bind",
                    "failed",
                    detail! {"code" => 49, "host" => "h"},
                ),
                "TSR-LDAP-003",
            ),
            (
                step(
                    "provider:corp",
                    "search",
                    "failed",
                    detail! {"code" => 32, "host" => "h"},
                ),
                "TSR-LDAP-004",
            ),
            (
                step(
                    "provider:corp",
                    "connect",
                    "failed",
                    detail! {"error" => "I/O error: Connection refused (os error 111)", "host" => "h"},
                ),
                "TSR-LDAP-001",
            ),
            (
                step(
                    "provider:corp",
                    "result",
                    "unavailable",
                    detail! {"cause" => "operation timed out after 1000 ms"},
                ),
                "TSR-LDAP-002",
            ),
            (
                step("chain", "provider:local", "unknown_user", detail! {}),
                "TSR-AUTHN-UNKNOWN-USER",
            ),
            (
                step(
                    "provider:local",
                    "verify_password",
                    "bad_credentials",
                    detail! {},
                ),
                "TSR-AUTHN-BAD-PASSWORD",
            ),
        ];
        for (s, code) in cases {
            let got = catalog::classify(std::slice::from_ref(&s), &err).map(|e| e.code);
            assert_eq!(got, Some(code), "{s:?}");
        }
    }

    #[test]
    fn classifies_grant_errors_by_description() {
        let e = |d: &str| AttemptError {
            error: "invalid_grant".into(),
            description: Some(d.into()),
            cause: None,
        };
        let c = |a: AttemptError| catalog::classify(&[], &a).map(|e| e.code);
        assert_eq!(
            c(e("redirect_uri does not match the authorization request")),
            Some("TSR-GRANT-REDIRECT")
        );
        assert_eq!(
            c(e("the authorization code was already used")),
            Some("TSR-GRANT-CODE-REUSED")
        );
        assert_eq!(
            c(e("code_verifier does not match the code_challenge")),
            Some("TSR-GRANT-PKCE")
        );
        assert_eq!(
            c(e("the authorization code is invalid or has expired")),
            Some("TSR-GRANT-CODE-INVALID")
        );
    }

    #[test]
    fn catalog_codes_are_unique_and_complete() {
        let mut seen = std::collections::BTreeSet::new();
        for e in catalog::CATALOG {
            assert!(seen.insert(e.code), "duplicate {}", e.code);
            assert!(e.code.starts_with("TSR-"));
            assert!(!e.explanation.is_empty() && !e.remedy.is_empty());
        }
        assert!(catalog::lookup(catalog::UNREDEEMED_CODES).is_some());
    }

    /// `docs/errors.md` lists exactly the codes of the catalog (one `### CODE` heading each).
    #[test]
    fn docs_errors_md_lists_exactly_the_catalog() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md");
        let text = std::fs::read_to_string(path).expect("docs/errors.md");
        let documented: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("### "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| c.starts_with("TSR-"))
            .collect();
        let in_code: Vec<&str> = catalog::CATALOG.iter().map(|e| e.code).collect();
        let missing: Vec<_> = in_code.iter().filter(|c| !documented.contains(c)).collect();
        let extra: Vec<_> = documented.iter().filter(|c| !in_code.contains(c)).collect();
        assert!(missing.is_empty(), "docs/errors.md lacks {missing:?}");
        assert!(
            extra.is_empty(),
            "docs/errors.md lists unknown codes {extra:?}"
        );
        assert_eq!(documented.len(), in_code.len(), "a code is listed twice");
    }

    /// … and with the catalog's own words: the title, the explanation and the remedy the
    /// commands print (the codes alone let the two drift apart).
    #[test]
    fn docs_errors_md_says_what_the_catalog_says() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md");
        let text = std::fs::read_to_string(path).expect("docs/errors.md");
        for e in catalog::CATALOG {
            let start = text
                .find(&format!("### {} — {}\n", e.code, e.title))
                .unwrap_or_else(|| panic!("docs/errors.md: no heading '{} — {}'", e.code, e.title));
            let section = &text[start..];
            let section = &section[..section[4..].find("\n### ").map_or(section.len(), |i| i + 4)];
            let category = serde_json::to_value(e.category).unwrap();
            for (what, expected) in [
                (
                    "category",
                    format!("*Category:* {}", category.as_str().unwrap()),
                ),
                ("explanation", e.explanation.to_owned()),
                ("remedy", format!("**Remedy:** {}", e.remedy)),
            ] {
                assert!(
                    section.contains(&expected),
                    "docs/errors.md {}: the {what} differs from the catalog: {expected}",
                    e.code
                );
            }
        }
    }
}
