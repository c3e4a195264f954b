//! The lockout manager's admin API (`/admin/lockout…`, documented in
//! `docs/admin-api.openapi.yaml`) and the Prometheus metrics (`/metrics`).
//!
//! The admin API is authenticated by the bearer token `Settings::admin_token` (compared in
//! constant time by the engine) and answers 404 when no token is configured, as if it did not
//! exist. `/metrics` is unauthenticated, like most Prometheus targets: it carries counts only,
//! never a name.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tessera_core::lockout::{LockoutMetrics, LockoutStatus};

use super::no_store;
use crate::AppState;

/// `None` when the caller may use the admin API; else the response to send.
pub(super) fn refuse(s: &AppState, headers: &HeaderMap) -> Option<Response> {
    if s.engine
        .settings
        .admin_token
        .as_ref()
        .is_none_or(|t| t.is_empty())
    {
        return Some(StatusCode::NOT_FOUND.into_response());
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    if presented.is_some_and(|t| s.engine.admin_token_matches(t)) {
        return None;
    }
    tracing::warn!(target: "tessera::security", event = "admin_auth_failed", "admin API: missing or wrong bearer token");
    // RFC 6750 §3.1: a request without a token gets a bare challenge; a wrong token gets
    // `error="invalid_token"` (review fix: both used to get the same bare challenge).
    let challenge = if presented.is_some() {
        "Bearer realm=\"tessera-admin\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"tessera-admin\""
    };
    let mut r = no_store(
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_token" })),
        )
            .into_response(),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    Some(r)
}

/// The token of `Authorization: Bearer TOKEN`. The scheme is case-insensitive (RFC 9110
/// §11.1; review fix: `BEARER` and `BeArEr` were refused) and the token is one `b64token`
/// (RFC 6750 §2.1): an empty token or one followed by anything else is no token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_matches(' ');
    (!token.is_empty() && !token.contains([' ', '\t'])).then_some(token)
}

fn store_failure(e: impl std::fmt::Display) -> Response {
    tracing::warn!(cause = %e, "admin API: store unavailable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": "temporarily_unavailable", "error_description": "the store is unavailable" })),
    )
        .into_response()
}

fn name_view(name: &str, records: &[LockoutStatus]) -> serde_json::Value {
    json!({
        "name": name,
        "locked": records.iter().any(|r| r.locked),
        "records": records,
    })
}

/// `GET /admin/lockout`: every name with failures or a lock.
pub(super) async fn list(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    match s.engine.lockout_list().await {
        Ok(records) => {
            let locked = records.iter().filter(|r| r.locked).count();
            no_store(Json(json!({ "locked_now": locked, "records": records })).into_response())
        }
        Err(e) => store_failure(e),
    }
}

/// `GET /admin/lockout/{name}`: the records of a username or `client_id` (none: not locked).
pub(super) async fn status(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    match s.engine.lockout_status(&name).await {
        Ok(records) => no_store(Json(name_view(&name, &records)).into_response()),
        Err(e) => store_failure(e),
    }
}

/// `DELETE /admin/lockout/{name}`: unlock a name and forget its failures.
pub(super) async fn clear(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    match s.engine.lockout_clear(&name).await {
        Ok(cleared) => {
            let unlocked = cleared.iter().filter(|r| r.locked).count();
            no_store(
                Json(json!({ "name": name, "cleared": cleared.len(), "unlocked": unlocked }))
                    .into_response(),
            )
        }
        Err(e) => store_failure(e),
    }
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
pub(super) async fn metrics(State(s): State<AppState>) -> Response {
    let counts = s.engine.lockout_counts().await;
    let m = &s.engine.lockout_metrics;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let get = LockoutMetrics::get;
    metric(
        "tessera_lockouts_total",
        "counter",
        "Keys locked by the soft lockout (monitor-only: would have been locked), this process.",
        &[("", get(&m.lockouts_total))],
    );
    metric(
        "tessera_lockout_invalid_attempts_total",
        "counter",
        "Genuine credential failures counted by the lockout, this process.",
        &[("", get(&m.invalid_attempts_total))],
    );
    metric(
        "tessera_lockout_attempts_while_locked_total",
        "counter",
        "Attempts refused because the key was locked, this process.",
        &[("", get(&m.attempts_while_locked_total))],
    );
    metric(
        "tessera_lockout_unlocks_total",
        "counter",
        "Locked keys cleared by an administrator, this process.",
        &[("", get(&m.unlocks_total))],
    );
    metric(
        "tessera_lockout_monitor_only_alerts_total",
        "counter",
        "Thresholds reached under a monitor-only policy, this process.",
        &[("", get(&m.would_lock_total))],
    );
    match counts {
        Ok(c) => {
            metric(
                "tessera_lockout_locked_now",
                "gauge",
                "Keys locked right now (shared store, all nodes).",
                &[
                    ("{kind=\"user\"}", c.users_locked),
                    ("{kind=\"client\"}", c.clients_locked),
                ],
            );
            metric(
                "tessera_lockout_users_with_failures",
                "gauge",
                "Users with unexpired failures right now (shared store).",
                &[("", c.users_with_failures)],
            );
        }
        Err(e) => tracing::warn!(cause = %e, "metrics: lockout store unavailable"),
    }
    metric(
        "tessera_lockout_users_with_failures_high_water",
        "gauge",
        "Highest number of users with unexpired failures this process has observed (sampled whenever /metrics or the admin list is read).",
        &[("", get(&m.users_with_failures_high_water))],
    );
    metric(
        "tessera_unredeemed_code_alerts_total",
        "counter",
        "Clients that were issued codes and redeemed none within the window (they probably cannot reach the token endpoint), this process.",
        &[("", s.engine.diagnostics.unredeemed.alerts_total())],
    );
    let mut r = (StatusCode::OK, out).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
