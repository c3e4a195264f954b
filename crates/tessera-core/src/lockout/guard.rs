//! The lockout guard around the authentication chain (end users) and client authentication:
//! reserve an attempt before any provider runs, settle it afterwards, count, log and trace.

use serde_json::Map;

use super::{
    Admission, AttemptOutcome, LockoutCounts, LockoutKey, LockoutKind, LockoutMetrics,
    LockoutPolicy, LockoutStatus, Settled, rfc3339,
};
use crate::authn::{ChainResult, ControlFlag, Decision, Outcome, PasswordCredentials};
use crate::clock::UnixTime;
use crate::detail;
use crate::engine::Engine;
use crate::error::{AuthScheme, OAuthError, OAuthResult};
use crate::oauth::RequestContext;
use crate::oauth::client_auth::PresentedClient;
use crate::store::{StoreError, StoreResult};
use crate::trace::Trace;

/// The provider name reported when the lockout refused an attempt.
pub const LOCKOUT_PROVIDER: &str = "lockout";

/// The chain's verdict behind the lockout guard.
#[derive(Debug, Clone)]
pub struct UserAuthResult {
    /// When locked: `Denied { outcome: BadCredentials, provider: "lockout",
    /// credential_failure: false }`, so every caller shows the same generic message as for a
    /// wrong password by construction. `locked_until` tells the truth for logs and traces.
    pub decision: Decision,
    /// What each provider answered (empty when locked: no provider ran).
    pub outcomes: Vec<(String, ControlFlag, Outcome)>,
    /// Set when Tessera's lockout refused the attempt before any provider ran.
    pub locked_until: Option<UnixTime>,
}

impl UserAuthResult {
    pub fn is_locked(&self) -> bool {
        self.locked_until.is_some()
    }

    fn from_chain(r: ChainResult) -> Self {
        Self {
            decision: r.decision,
            outcomes: r.outcomes,
            locked_until: None,
        }
    }

    /// Refused while `failures + attempts in flight ≥ threshold` (not locked): reported as a
    /// temporary unavailability of the lockout itself, never as a credential failure.
    fn saturated(threshold: u32) -> Self {
        Self {
            decision: Decision::Unavailable {
                provider: LOCKOUT_PROVIDER.to_owned(),
                cause: format!(
                    "attempts in flight for this name reached the lockout threshold ({threshold}) \
                     with the failures already counted; refused without asking any provider \
                     until they finish"
                ),
                host: None,
            },
            outcomes: Vec::new(),
            locked_until: None,
        }
    }

    fn locked(until: UnixTime) -> Self {
        Self {
            decision: Decision::Denied {
                outcome: Outcome::BadCredentials,
                provider: LOCKOUT_PROVIDER.to_owned(),
                credential_failure: false,
            },
            outcomes: Vec::new(),
            locked_until: Some(until),
        }
    }
}

/// What lockout counts, from the chain's decision (§E5).
pub fn user_outcome(decision: &Decision) -> AttemptOutcome {
    match decision {
        Decision::Authenticated(_) => AttemptOutcome::Success,
        Decision::Denied {
            credential_failure: true,
            ..
        } => AttemptOutcome::CredentialFailure,
        Decision::Denied { .. } | Decision::Unavailable { .. } => AttemptOutcome::Neutral,
    }
}

/// A client authentication failure, and whether lockout counts it.
#[derive(Debug, Clone)]
pub struct ClientAuthFailure {
    pub error: OAuthError,
    /// A genuine credential rejection: unknown client, wrong secret, rejected assertion.
    pub counts: bool,
}

impl ClientAuthFailure {
    pub fn counted(error: OAuthError) -> Self {
        Self {
            error,
            counts: true,
        }
    }
}

/// Anything else (store errors, disabled client, expired secret, wrong method) is not counted.
impl From<OAuthError> for ClientAuthFailure {
    fn from(error: OAuthError) -> Self {
        Self {
            error,
            counts: false,
        }
    }
}

/// An active reservation on a client key, to settle after the authentication.
#[derive(Debug)]
pub struct ClientAttempt {
    key: LockoutKey,
    reserved: bool,
    /// The key had failures in its window: a success must reset them.
    had_failures: bool,
}

impl Engine {
    /// Authenticate an end user through the chain, behind the soft lockout: the lock is checked
    /// (and an attempt reserved) before any provider runs, only genuine credential failures are
    /// counted, and a success resets the count. The trace goes to `ctx.trace`.
    pub async fn authenticate_user(
        &self,
        credentials: &PasswordCredentials,
        ctx: &RequestContext,
    ) -> UserAuthResult {
        let mut trace = Trace::new(ctx.trace.is_on());
        let result = self
            .authenticate_user_traced(credentials, ctx, &mut trace)
            .await;
        for s in trace.into_steps() {
            ctx.trace.step(s.component, s.step, s.outcome, || s.detail);
        }
        result
    }

    /// As [`Engine::authenticate_user`], recording into `trace`.
    pub async fn authenticate_user_traced(
        &self,
        credentials: &PasswordCredentials,
        ctx: &RequestContext,
        trace: &mut Trace,
    ) -> UserAuthResult {
        let policy = self.settings.user_lockout;
        if !policy.enabled {
            return UserAuthResult::from_chain(self.chain.authenticate(credentials, trace).await);
        }
        let key = LockoutKey::user(&credentials.username);
        let source = ctx.source_ip.map(|ip| ip.to_string());
        let now = self.now();
        let reserved = match self.store.lockout_begin_attempt(&policy, &key, now).await {
            Ok((Admission::Proceed { reserved }, _)) => reserved,
            Ok((Admission::Locked { until, locked }, _)) => {
                LockoutMetrics::inc(&self.lockout_metrics.attempts_while_locked_total);
                let why = if locked { "locked" } else { "saturated" };
                // Review fix: a saturated name is not locked; its `until` is only when the
                // reservations in flight lapse. The log and trace used to say "locked until T"
                // for it too, sending administrators looking for a lock that does not exist.
                let message = if locked {
                    format!("locked until {}", rfc3339(until))
                } else {
                    format!(
                        "not locked: {} attempts are counted or in flight (the threshold);                          refused until one finishes (at the latest {})",
                        policy.threshold,
                        rfc3339(until)
                    )
                };
                tracing::warn!(
                    target: "tessera::security",
                    event = "login_locked",
                    username = %key.name,
                    source_ip = ?ctx.source_ip,
                    request_id = %ctx.request_id,
                    state = why,
                    "attempt refused: {message}"
                );
                trace.step("lockout", "check", why, || {
                    detail! {
                        "message" => message.clone(),
                        "until" => until,
                        "user" => key.name.clone(),
                    }
                });
                if !locked {
                    // Saturated: no provider was asked, so this is no verdict on the password.
                    // Answer "try again shortly" rather than "invalid username or password"
                    // (while a directory hangs, the attempts in flight are the outage's own).
                    return UserAuthResult::saturated(policy.threshold);
                }
                return UserAuthResult::locked(until);
            }
            Err(e) => {
                // Fail closed: without the shared counter the lock cannot be enforced.
                tracing::warn!(target: "tessera::security", event = "lockout_store_unavailable", error = %e, request_id = %ctx.request_id, "lockout state unavailable");
                trace.step("lockout", "check", "unavailable", Map::new);
                return UserAuthResult {
                    decision: Decision::Unavailable {
                        provider: LOCKOUT_PROVIDER.to_owned(),
                        cause: e.to_string(),
                        host: None,
                    },
                    outcomes: Vec::new(),
                    locked_until: None,
                };
            }
        };
        trace.step("lockout", "check", "ok", Map::new);
        let result = self.chain.authenticate(credentials, trace).await;
        let outcome = user_outcome(&result.decision);
        let settled = self
            .store
            .lockout_finish_attempt(
                &policy,
                &key,
                reserved,
                outcome,
                source.as_deref(),
                self.now(),
            )
            .await;
        self.report_settled(LockoutKind::User, &key, &policy, settled, ctx, trace);
        UserAuthResult::from_chain(result)
    }

    /// The lockout key of a client authentication, when credentials were presented.
    pub fn client_lockout_key(
        &self,
        presented: &PresentedClient,
        ctx: &RequestContext,
    ) -> Option<LockoutKey> {
        if !self.settings.client_lockout.enabled {
            return None;
        }
        let client_id = match presented {
            PresentedClient::Anonymous { .. } => return None,
            PresentedClient::Basic { client_id, .. } | PresentedClient::Post { client_id, .. } => {
                client_id.clone()
            }
            PresentedClient::Assertion {
                client_id: Some(id),
                ..
            } => id.clone(),
            PresentedClient::Assertion {
                client_id: None,
                assertion,
            } => unverified_subject(assertion, self.settings.max_jwt_bytes)?,
        };
        Some(LockoutKey::client(
            &client_id,
            ctx.source_ip,
            self.settings.client_lockout_scope,
        ))
    }

    /// The jwt-bearer grant presented without client authentication (RFC 7523 §3.1; the Google
    /// key-file flow): the assertion is the service account's credential, so the client policy
    /// guards it under its `iss`, like a client secret. A trusted issuer (an STS speaking for
    /// many callers) is not locked by the grants of one. Every `invalid_grant` counts except a
    /// key source that could not be fetched (an outage); a locked account gets `invalid_grant`.
    pub(crate) async fn guarded_anonymous_jwt_bearer(
        &self,
        params: &crate::oauth::params::Params,
        ctx: &RequestContext,
        now: UnixTime,
    ) -> OAuthResult<crate::oauth::TokenResponse> {
        let key = params
            .get("assertion")
            .and_then(|a| unverified_claim(a, "iss", self.settings.max_jwt_bytes))
            .filter(|iss| {
                self.settings.client_lockout.enabled
                    && !self
                        .settings
                        .trusted_issuers
                        .iter()
                        .any(|t| &t.issuer == iss)
            })
            .map(|iss| LockoutKey::client(&iss, ctx.source_ip, self.settings.client_lockout_scope));
        let Some(key) = key else {
            return crate::assertion::grant_jwt_bearer(self, None, params, ctx, now).await;
        };
        let attempt = self
            .client_lockout_begin(key, None, ctx)
            .await
            .map_err(|e| {
                if e.code == crate::ErrorCode::InvalidClient {
                    let cause = e.cause.clone().unwrap_or_default();
                    OAuthError::invalid_grant("the assertion was rejected").with_cause(cause)
                } else {
                    e
                }
            })?;
        let result = crate::assertion::grant_jwt_bearer(self, None, params, ctx, now).await;
        let outcome = match &result {
            Ok(_) => AttemptOutcome::Success,
            Err(e)
                if e.code == crate::ErrorCode::InvalidGrant
                    && !e
                        .description
                        .as_deref()
                        .is_some_and(|d| d.starts_with("could not fetch")) =>
            {
                AttemptOutcome::CredentialFailure
            }
            Err(_) => AttemptOutcome::Neutral,
        };
        self.client_lockout_finish(attempt, outcome, ctx).await;
        result
    }

    /// Check a client's lock before authenticating it; a locked key is `invalid_client` at once.
    ///
    /// Unlike end users, clients take no in-flight reservation: a confidential client may run
    /// any number of requests in parallel and must never be refused by its own concurrency.
    /// Its secrets are 256-bit random values (or signed assertions), so the lock exists to stop
    /// guessing and to alert, not to bound concurrent attempts. The check is read-only and
    /// served from a per-node cache for at most `client_cache_ttl_ms`; only failures (and a
    /// success that must reset a count) write to the store.
    pub async fn client_lockout_begin(
        &self,
        key: LockoutKey,
        challenge: Option<AuthScheme>,
        ctx: &RequestContext,
    ) -> OAuthResult<ClientAttempt> {
        let now = self.now();
        let id = key.id();
        let record = match self.client_lock_cache.get(&id) {
            Some(hit) => hit,
            None => {
                let found = self
                    .store
                    .lockout_find(key.kind, &key.name)
                    .await?
                    .into_iter()
                    .find(|r| r.key.id() == id);
                self.client_lock_cache.put(&id, found.clone());
                found
            }
        };
        let until = record
            .as_ref()
            .and_then(|r| r.locked_until.filter(|_| r.is_locked(now)));
        let Some(until) = until else {
            let policy = self.settings.client_lockout;
            let had_failures = record.is_some_and(|r| r.live_failures(&policy, now) > 0);
            return Ok(ClientAttempt {
                key,
                reserved: false,
                had_failures,
            });
        };
        LockoutMetrics::inc(&self.lockout_metrics.attempts_while_locked_total);
        tracing::warn!(
            target: "tessera::security",
            event = "client_auth_locked",
            client_id = %key.name,
            source_ip = ?ctx.source_ip,
            request_id = %ctx.request_id,
            "client authentication refused: locked until {}",
            rfc3339(until)
        );
        ctx.trace.step("lockout", "check", "locked", || {
            detail! { "message" => format!("locked until {}", rfc3339(until)), "until" => until }
        });
        Err(OAuthError::invalid_client("client authentication failed")
            .with_cause(format!(
                "client '{}' locked until {}",
                key.name,
                rfc3339(until)
            ))
            .with_challenge(challenge))
    }

    /// Settle a client attempt with its outcome.
    pub async fn client_lockout_finish(
        &self,
        attempt: ClientAttempt,
        outcome: AttemptOutcome,
        ctx: &RequestContext,
    ) {
        let nothing_to_record = match outcome {
            AttemptOutcome::Neutral => true,
            AttemptOutcome::Success => !attempt.had_failures,
            AttemptOutcome::CredentialFailure => false,
        };
        if nothing_to_record && !attempt.reserved {
            return;
        }
        self.client_lock_cache.invalidate(&attempt.key.id());
        let policy = self.settings.client_lockout;
        let source = ctx.source_ip.map(|ip| ip.to_string());
        let settled = self
            .store
            .lockout_finish_attempt(
                &policy,
                &attempt.key,
                attempt.reserved,
                outcome,
                source.as_deref(),
                self.now(),
            )
            .await;
        ctx.trace.with(|t| {
            self.report_settled(LockoutKind::Client, &attempt.key, &policy, settled, ctx, t)
        });
    }

    fn report_settled(
        &self,
        kind: LockoutKind,
        key: &LockoutKey,
        policy: &LockoutPolicy,
        settled: StoreResult<(Settled, Option<super::LockoutRecord>)>,
        ctx: &RequestContext,
        trace: &mut Trace,
    ) {
        let m = &self.lockout_metrics;
        match settled {
            Ok((Settled::Released, _)) => {}
            Ok((Settled::Counted { failures }, _)) => {
                LockoutMetrics::inc(&m.invalid_attempts_total);
                trace.step("lockout", "count", "counted", || {
                    detail! { "failures" => failures, "threshold" => policy.threshold }
                });
            }
            Ok((Settled::LockedNow { until, failures }, _)) => {
                LockoutMetrics::inc(&m.invalid_attempts_total);
                LockoutMetrics::inc(&m.lockouts_total);
                tracing::warn!(
                    target: "tessera::security",
                    event = "lockout",
                    kind = kind.as_str(),
                    name = %key.name,
                    source_ip = ?ctx.source_ip,
                    failures,
                    request_id = %ctx.request_id,
                    "locked until {}",
                    rfc3339(until)
                );
                trace.step("lockout", "count", "locked", || {
                    detail! { "message" => format!("locked until {}", rfc3339(until)), "until" => until, "failures" => failures }
                });
            }
            Ok((Settled::WouldLock { failures }, _)) => {
                LockoutMetrics::inc(&m.invalid_attempts_total);
                LockoutMetrics::inc(&m.lockouts_total);
                LockoutMetrics::inc(&m.would_lock_total);
                tracing::warn!(
                    target: "tessera::security",
                    event = "lockout_monitor_only",
                    kind = kind.as_str(),
                    name = %key.name,
                    source_ip = ?ctx.source_ip,
                    failures,
                    request_id = %ctx.request_id,
                    "threshold reached (monitor-only: not locked)"
                );
                trace.step(
                    "lockout",
                    "count",
                    "would_lock",
                    || detail! { "failures" => failures },
                );
            }
            Err(e) => {
                // The reservation lapses by itself after its lease.
                tracing::error!(target: "tessera::security", event = "lockout_store_error", error = %e, request_id = %ctx.request_id, "could not record the attempt");
                trace.step("lockout", "count", "store_error", Map::new);
            }
        }
    }

    /// Every unexpired lockout record, as administrators see it.
    pub async fn lockout_list(&self) -> StoreResult<Vec<LockoutStatus>> {
        let now = self.now();
        let records = self.store.lockout_list(now).await?;
        let list: Vec<LockoutStatus> = records
            .iter()
            .map(|r| LockoutStatus::of(r, self.lockout_policy(r.key.kind), now))
            .filter(|s| s.locked || s.failure_count > 0)
            .collect();
        self.lockout_metrics.observe_users_with_failures(
            list.iter()
                .filter(|s| s.kind == LockoutKind::User && s.failure_count > 0)
                .count() as u64,
        );
        Ok(list)
    }

    /// The records of one name: a username (normalized), else a `client_id`.
    pub async fn lockout_status(&self, name: &str) -> StoreResult<Vec<LockoutStatus>> {
        let now = self.now();
        let mut out = Vec::new();
        for (kind, n) in [
            (LockoutKind::User, super::normalize_username(name)),
            (LockoutKind::Client, name.to_owned()),
        ] {
            for r in self.store.lockout_find(kind, &n).await? {
                out.push(LockoutStatus::of(&r, self.lockout_policy(kind), now));
            }
        }
        Ok(out)
    }

    /// An administrator's unlock of a name (user and client records); returns what was cleared.
    pub async fn lockout_clear(&self, name: &str) -> StoreResult<Vec<LockoutStatus>> {
        let now = self.now();
        let mut out = Vec::new();
        for (kind, n) in [
            (LockoutKind::User, super::normalize_username(name)),
            (LockoutKind::Client, name.to_owned()),
        ] {
            for r in self.store.lockout_clear(kind, &n).await? {
                let s = LockoutStatus::of(&r, self.lockout_policy(kind), now);
                if s.locked {
                    LockoutMetrics::inc(&self.lockout_metrics.unlocks_total);
                }
                out.push(s);
            }
        }
        self.client_lock_cache.clear();
        if !out.is_empty() {
            tracing::warn!(target: "tessera::security", event = "lockout_cleared", name = %name, records = out.len(), "lockout cleared by an administrator");
        }
        Ok(out)
    }

    /// Counts at this moment (for the `locked_now` gauges); also raises the high-water mark.
    pub async fn lockout_counts(&self) -> Result<LockoutCounts, StoreError> {
        let list = self.lockout_list().await?;
        let mut c = LockoutCounts::default();
        for s in &list {
            match (s.kind, s.locked) {
                (LockoutKind::User, true) => c.users_locked += 1,
                (LockoutKind::Client, true) => c.clients_locked += 1,
                _ => {}
            }
            if s.kind == LockoutKind::User && s.failure_count > 0 {
                c.users_with_failures += 1;
            }
        }
        Ok(c)
    }

    /// Whether `presented` is the configured admin bearer token (constant time). Always false
    /// when no token is configured: the admin API is then disabled.
    pub fn admin_token_matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        let Some(expected) = self.settings.admin_token.as_ref().filter(|t| !t.is_empty()) else {
            return false;
        };
        // Compare fixed-length digests so the length of the token does not leak either.
        let a = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, presented.as_bytes());
        let b = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, expected.expose().as_bytes());
        a.as_ref().ct_eq(b.as_ref()).into()
    }

    fn lockout_policy(&self, kind: LockoutKind) -> &LockoutPolicy {
        match kind {
            LockoutKind::User => &self.settings.user_lockout,
            LockoutKind::Client => &self.settings.client_lockout,
        }
    }
}

/// The `sub` of a JWT, without verifying anything (only to key the lockout; a client assertion's
/// `sub` is its `client_id`, RFC 7523 §3).
fn unverified_subject(jwt: &str, max_bytes: usize) -> Option<String> {
    unverified_claim(jwt, "sub", max_bytes)
}

/// A string claim of a JWT, without verifying anything (only to key the lockout).
fn unverified_claim(jwt: &str, claim: &str, max_bytes: usize) -> Option<String> {
    if jwt.len() > max_bytes {
        return None;
    }
    let payload = jwt.split('.').nth(1)?;
    let bytes = tessera_jose::b64::base64url_decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let value = v.get(claim)?.as_str()?;
    (!value.is_empty() && value.len() <= 256).then(|| value.to_owned())
}

#[cfg(test)]
mod tests;
