//! The UserInfo endpoint (OIDC Core §5.3): GET and POST, bearer token per RFC 6750 §2.1 / §2.2.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use tessera_core::OAuthError;
use tessera_core::error::{AuthScheme, ErrorCode};
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

fn is_bearer_scheme(authorization: &str) -> bool {
    authorization
        .trim()
        .split(' ')
        .next()
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer"))
}

fn fail(e: OAuthError) -> Response {
    // RFC 6750 §3: a request refused for its credentials (missing, malformed, sent twice, or
    // not enabling access) MUST be answered with a `WWW-Authenticate: Bearer` challenge. The
    // 401 without an error code for a request with no credentials is decided in `crate::error`.
    let e = match e.code {
        ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable => e,
        _ if e.challenge.is_none() => e.with_challenge(Some(AuthScheme::Bearer)),
        _ => e,
    };
    ApiError(e).into_response()
}

pub(super) async fn userinfo(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    auth: Result<Authorization, ApiError>,
    body: Bytes,
) -> Response {
    let auth = match auth {
        Ok(Authorization(a)) => a,
        Err(ApiError(e)) => return fail(e),
    };
    let form = if method == Method::POST && is_form(&headers) {
        match tessera_core::oauth::params::Params::parse(&body) {
            Ok(p) => p,
            Err(e) => return fail(e.into()),
        }
    } else {
        Default::default()
    };
    let source = match (auth.as_deref(), form.get("access_token")) {
        // An `Authorization` header of another scheme (say, Basic added by a proxy) does not
        // carry an access token: the body's token is the only one.
        (Some(h), Some(t)) if !is_bearer_scheme(h) => BearerSource::Body(t),
        // RFC 6750 §2: more than one method is invalid_request.
        (Some(_), Some(_)) => {
            return fail(OAuthError::invalid_request(
                "the access token was sent in more than one way",
            ));
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
