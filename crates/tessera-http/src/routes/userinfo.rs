//! The UserInfo endpoint (OIDC Core §5.3): GET and POST, bearer token per RFC 6750 §2.1 / §2.2.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::OAuthError;
use tessera_core::interactive::userinfo::{BearerSource, bearer_from_header, missing_token};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Authorization;

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn fail(e: OAuthError) -> Response {
    // RFC 6750 §3.1: a request without any credentials is 401 with a bare challenge.
    let missing = e.description.is_none() && e.code == tessera_core::ErrorCode::InvalidRequest;
    let mut r = ApiError(e).into_response();
    if missing {
        *r.status_mut() = StatusCode::UNAUTHORIZED;
    }
    r
}

pub(super) async fn userinfo(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Authorization(auth): Authorization,
    body: Bytes,
) -> Response {
    let form = if method == Method::POST && is_form(&headers) {
        match tessera_core::oauth::params::Params::parse(&body) {
            Ok(p) => p,
            Err(e) => return fail(e.into()),
        }
    } else {
        Default::default()
    };
    let source = match (auth.as_deref(), form.get("access_token")) {
        // RFC 6750 §2: more than one method is invalid_request.
        (Some(_), Some(_)) => {
            return fail(
                OAuthError::invalid_request("the access token was sent in more than one way")
                    .with_challenge(Some(tessera_core::error::AuthScheme::Bearer)),
            );
        }
        (Some(h), None) => match bearer_from_header(h) {
            Ok(t) => BearerSource::Header(t),
            Err(e) => return fail(e),
        },
        (None, Some(t)) => BearerSource::Body(t),
        (None, None) => return fail(missing_token()),
    };
    match s.engine.userinfo(source, s.engine.now()).await {
        Ok(claims) => {
            let mut r = Json(claims).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => fail(e),
    }
}
