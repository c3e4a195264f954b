//! Discovery (OIDC Discovery 1.0 §4, RFC 8414 §3), JWKS and health.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;

pub(super) async fn discovery(State(s): State<AppState>) -> Response {
    let mut r = Json(s.engine.discovery_document()).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// Public keys only, cacheable for `jwks_max_age` (a new key is published that long before it
/// signs).
pub(super) async fn jwks(State(s): State<AppState>) -> Response {
    let now = s.engine.now();
    let mut r = Json(s.engine.keys.jwks(now)).into_response();
    let cc = format!("public, max-age={}", s.engine.settings.jwks_max_age);
    if let Ok(v) = HeaderValue::from_str(&cc) {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    r
}

pub(super) async fn health(State(s): State<AppState>) -> Response {
    match s.engine.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(e) => {
            tracing::warn!(cause = %e, "health check: store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}
