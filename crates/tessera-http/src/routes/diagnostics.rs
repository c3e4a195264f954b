//! Diagnostics admin API (`docs/diagnostics.md`): the run-time authentication debug switch and
//! the recent traces.
//!
//! - `POST /admin/debug/authn` `{"on": true, "user": "alice"?, "client": "rp"?}`: switch detailed
//!   tracing on or off, globally or for one user / client (no restart). Answers the new state.
//! - `GET /admin/debug/authn`: the current state.
//! - `GET /admin/traces/{request_id}`: one kept trace (404 when not kept or already evicted).
//! - `GET /admin/traces?limit=N`: the newest traces (default 50, at most the ring size).
//!
//! Authenticated like the lockout API: bearer `Settings::admin_token`, compared by
//! `Engine::admin_token_matches`; 404 when no token is configured. Traces carry the root cause
//! only while `propagate_cause` is on; anonymous OAuth callers never see it (RFC 6749 §5.2
//! bodies carry `error` and `error_description` only).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tessera_core::OAuthError;
use tessera_core::diagnostics::{Attempt, AttemptError};
use tessera_core::oauth::RequestContext;
use tessera_core::oauth::params::Params;

use super::admin::refuse;
use super::no_store;
use crate::AppState;

fn bad_request(what: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": "invalid_request", "error_description": what.into() })),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DebugRequest {
    on: bool,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    client: Option<String>,
}

/// `POST /admin/debug/authn`.
pub(super) async fn set_debug(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    let req: DebugRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad_request(format!(
                "expected {{\"on\": bool, \"user\"?: string, \"client\"?: string}}: {e}"
            ));
        }
    };
    let state = s
        .engine
        .diagnostics
        .switch
        .set(req.on, req.user.as_deref(), req.client.as_deref());
    tracing::info!(
        target: "tessera::diagnostics",
        on = req.on,
        user = ?req.user,
        client = ?req.client,
        "authentication debug tracing switched"
    );
    no_store(Json(state).into_response())
}

/// `GET /admin/debug/authn`.
pub(super) async fn get_debug(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    no_store(Json(s.engine.diagnostics.switch.state()).into_response())
}

/// `GET /admin/traces/{request_id}`.
pub(super) async fn show_trace(
    State(s): State<AppState>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    let d = &s.engine.diagnostics;
    match d.traces.get(&request_id) {
        Some(r) => no_store(Json(r.view(d.propagate_cause())).into_response()),
        None => no_store(
            (
                StatusCode::NOT_FOUND,
                Json(json!({
                    "error": "not_found",
                    "error_description": format!(
                        "no trace kept for request {request_id}: tracing was off for it, or it was evicted \
                         (the last {} are kept); switch it on with `tessera debug authn on`",
                        tessera_core::diagnostics::DEFAULT_TRACE_CAPACITY
                    ),
                })),
            )
                .into_response(),
        ),
    }
}

/// `GET /admin/traces?limit=N`.
pub(super) async fn list_traces(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    let mut limit = 50usize;
    for (k, v) in form_urlencoded::parse(q.as_deref().unwrap_or_default().as_bytes()) {
        if k == "limit" {
            match v.parse::<usize>() {
                Ok(n) => limit = n,
                Err(_) => return bad_request("limit must be a non-negative integer"),
            }
        }
    }
    let d = &s.engine.diagnostics;
    let propagate = d.propagate_cause();
    let traces: Vec<Value> = d
        .traces
        .recent(limit)
        .iter()
        .filter_map(|r| serde_json::to_value(r.view(propagate)).ok())
        .collect();
    no_store(
        Json(json!({
            "debug": d.switch.state(),
            "kept": d.traces.len(),
            "traces": traces,
        }))
        .into_response(),
    )
}

/// The unverified `iss`/`sub` of a JWT (scoping the debug switch only, never a decision).
fn unverified_claims(jwt: &str) -> Option<serde_json::Map<String, Value>> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Who a token request is about: (user, client), as far as the request says.
pub(crate) fn token_subjects(
    authorization: Option<&str>,
    params: &Params,
) -> (Option<String>, Option<String>) {
    let mut client = tessera_core::oauth::client_auth::extract(authorization, params)
        .ok()
        .and_then(|p| p.client_id_hint().map(str::to_owned))
        .or_else(|| params.get("client_id").map(str::to_owned));
    if client.is_none()
        && let Some(c) = params.get("client_assertion").and_then(unverified_claims)
    {
        client = c.get("iss").and_then(Value::as_str).map(str::to_owned);
    }
    let user = params
        .get("assertion")
        .and_then(unverified_claims)
        .and_then(|c| c.get("sub").and_then(Value::as_str).map(str::to_owned))
        .or_else(|| params.get("username").map(str::to_owned));
    (user, client)
}

/// Keep the trace of a finished attempt when the debug switch wants it (global, or this user /
/// client). The one call every authentication entry point makes after the attempt.
pub(crate) fn record_attempt(
    s: &AppState,
    ctx: &RequestContext,
    kind: &str,
    user: Option<&str>,
    client: Option<&str>,
    error: Option<AttemptError>,
) {
    if !ctx.trace.is_on() {
        return;
    }
    let e = &s.engine;
    e.diagnostics.finish(
        ctx,
        Attempt {
            kind,
            user,
            client,
            error,
        },
        e.now(),
    );
}

/// [`record_attempt`] for the token endpoint.
pub(crate) fn record_token_attempt<T>(
    s: &AppState,
    ctx: &RequestContext,
    authorization: Option<&str>,
    params: &Params,
    result: &Result<T, OAuthError>,
) {
    if !ctx.trace.is_on() {
        return;
    }
    let (user, client) = token_subjects(authorization, params);
    let kind = match params.get("grant_type") {
        Some(gt) => format!("token:{gt}"),
        None => "token".to_owned(),
    };
    record_attempt(
        s,
        ctx,
        &kind,
        user.as_deref(),
        client.as_deref(),
        result.as_ref().err().map(AttemptError::from),
    );
}
