//! The one mapping from protocol errors to HTTP responses (RFC 6749 §5.2, RFC 6750 §3,
//! RFC 7591 §3.2.2). Internal causes are logged here, once, and never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use tessera_core::error::{AuthScheme, ErrorCode, OAuthError};

/// Realm in `WWW-Authenticate` challenges.
pub const REALM: &str = "tessera";

/// An `OAuthError` on its way out.
#[derive(Debug)]
pub struct ApiError(pub OAuthError);

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        Self(e)
    }
}

/// RFC 6750 §3.1: a request that carried no usable bearer credentials (none at all, or an
/// unsupported scheme) is answered with a bare challenge: 401, no error code.
pub fn is_bare_bearer_challenge(e: &OAuthError) -> bool {
    e.challenge == Some(AuthScheme::Bearer)
        && e.code == ErrorCode::InvalidRequest
        && e.description.is_none()
}

pub fn status_of(e: &OAuthError) -> StatusCode {
    if is_bare_bearer_challenge(e) {
        return StatusCode::UNAUTHORIZED;
    }
    match e.code {
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        // RFC 6749 §5.2: 401 when the client authenticated through the Authorization header.
        ErrorCode::InvalidClient if e.challenge.is_some() => StatusCode::UNAUTHORIZED,
        ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        ErrorCode::AccessDenied => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn quote(s: &str) -> String {
    s.replace(['"', '\\'], "'")
}

/// The `WWW-Authenticate` value for a challenge (RFC 7617 §2, RFC 6750 §3).
pub fn challenge_value(e: &OAuthError) -> Option<String> {
    match e.challenge? {
        AuthScheme::Basic => Some(format!("Basic realm=\"{REALM}\", charset=\"UTF-8\"")),
        AuthScheme::Bearer => {
            let mut v = format!("Bearer realm=\"{REALM}\"");
            if !is_bare_bearer_challenge(e) {
                v.push_str(&format!(", error=\"{}\"", e.code.as_str()));
            }
            if let Some(d) = e.safe_description() {
                v.push_str(&format!(", error_description=\"{}\"", quote(&d)));
            }
            Some(v)
        }
    }
}

pub fn log_cause(e: &OAuthError) {
    match (e.code, &e.cause) {
        (ErrorCode::ServerError, Some(c)) => {
            tracing::error!(target: "tessera::error", error = %e.code, cause = %c, "internal error")
        }
        (ErrorCode::TemporarilyUnavailable, Some(c)) => {
            tracing::warn!(target: "tessera::error", error = %e.code, cause = %c, "dependency unavailable")
        }
        (code, Some(c)) => {
            tracing::info!(target: "tessera::security", error = %code, cause = %c, description = ?e.description, "request rejected")
        }
        (code, None) => {
            tracing::debug!(target: "tessera::security", error = %code, description = ?e.description, "request rejected")
        }
    }
}

/// JSON body of an error response.
pub fn error_body(e: &OAuthError) -> Value {
    let mut body = Map::new();
    body.insert("error".into(), Value::String(e.code.as_str().into()));
    if let Some(d) = e.safe_description() {
        body.insert("error_description".into(), Value::String(d));
    }
    Value::Object(body)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        log_cause(&e);
        let mut resp = if is_bare_bearer_challenge(&e) {
            // RFC 6750 §3.1: no error code or other error information, in the header or the
            // body, when the request carried no bearer credentials.
            status_of(&e).into_response()
        } else {
            (status_of(&e), Json(error_body(&e))).into_response()
        };
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(c) = challenge_value(&e).and_then(|c| HeaderValue::from_str(&c).ok()) {
            h.insert(header::WWW_AUTHENTICATE, c);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let basic = OAuthError::invalid_client("x").with_challenge(Some(AuthScheme::Basic));
        assert_eq!(status_of(&basic), StatusCode::UNAUTHORIZED);
        assert_eq!(
            status_of(&OAuthError::invalid_client("x")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(&OAuthError::invalid_grant("x")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(&OAuthError::server_error("boom")),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status_of(&OAuthError::temporarily_unavailable("ldap down")),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            challenge_value(&basic).as_deref(),
            Some("Basic realm=\"tessera\", charset=\"UTF-8\"")
        );
    }

    #[test]
    fn bare_bearer_challenge_is_401_without_error_code() {
        // RFC 6750 §3.1: no credentials → 401 and no error information.
        let bare =
            OAuthError::bare(ErrorCode::InvalidRequest).with_challenge(Some(AuthScheme::Bearer));
        assert_eq!(status_of(&bare), StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenge_value(&bare).as_deref(),
            Some("Bearer realm=\"tessera\"")
        );
        let resp = ApiError(bare).into_response();
        assert!(resp.headers().get(header::CONTENT_TYPE).is_none());
        // A malformed request keeps its 400 and its error attribute.
        let malformed = OAuthError::invalid_request("x").with_challenge(Some(AuthScheme::Bearer));
        assert_eq!(status_of(&malformed), StatusCode::BAD_REQUEST);
        assert_eq!(
            challenge_value(&malformed).as_deref(),
            Some("Bearer realm=\"tessera\", error=\"invalid_request\", error_description=\"x\"")
        );
    }

    #[test]
    fn server_error_body_leaks_nothing() {
        let body = error_body(&OAuthError::server_error(
            "password=hunter2 in the database",
        ));
        assert_eq!(body, serde_json::json!({"error": "server_error"}));
    }
}
