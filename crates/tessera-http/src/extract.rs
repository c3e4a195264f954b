//! Request extraction for OAuth endpoints: strict form bodies with a size limit, the
//! `Authorization` header, and per-request context (request id, source address).

use std::net::SocketAddr;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tessera_core::OAuthError;
use tessera_core::oauth::RequestContext;
use tessera_core::oauth::params::Params;

use crate::AppState;
use crate::error::ApiError;

/// The request id, set by [`request_id_layer`] and echoed in `X-Request-Id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub async fn request_id_layer(mut req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Who is calling: request id, source address, and the authentication trace (recording when
/// the diagnostics switch is on globally or for any user/client; see
/// `tessera_core::diagnostics`).
pub struct Context(pub RequestContext);

impl<S> FromRequestParts<S> for Context
where
    S: Send + Sync,
    AppState: axum::extract::FromRef<S>,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let source_ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let app = <AppState as axum::extract::FromRef<S>>::from_ref(state);
        let trace = app.engine.diagnostics.begin();
        Ok(Context(RequestContext { request_id, source_ip, trace }))
    }
}

/// The raw `Authorization` header, if any and if it is valid ASCII.
pub struct Authorization(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Authorization {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(OAuthError::invalid_request("more than one Authorization header").into());
        }
        match first {
            None => Ok(Authorization(None)),
            Some(v) => v
                .to_str()
                .map(|s| Authorization(Some(s.to_owned())))
                .map_err(|_| OAuthError::invalid_request("the Authorization header is not valid ASCII").into()),
        }
    }
}

/// A strictly parsed `application/x-www-form-urlencoded` body (RFC 6749 §3.2: POST with this
/// media type; parameters not repeated; §3.1 empty values are omitted).
pub struct OAuthForm(pub Params);

fn is_form(ct: Option<&HeaderValue>) -> bool {
    ct.and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

impl FromRequest<AppState> for OAuthForm {
    type Rejection = ApiError;
    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_form(req.headers().get(header::CONTENT_TYPE)) {
            return Err(OAuthError::invalid_request(
                "the request body must be application/x-www-form-urlencoded",
            )
            .into());
        }
        let limit = state.engine.settings.max_body_bytes;
        let bytes = to_bytes(req.into_body(), limit).await.map_err(|_| {
            OAuthError::invalid_request(format!("the request body is larger than {limit} bytes"))
        })?;
        Params::parse(&bytes).map(OAuthForm).map_err(|e| ApiError(e.into()))
    }
}

/// A JSON body with a size limit (registration), errors in RFC 7591 form.
pub struct JsonBody(pub serde_json::Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;
    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, Self::Rejection> {
        let ct_ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !ct_ok {
            return Err(OAuthError::invalid_request("the request body must be application/json").into());
        }
        let limit = state.engine.settings.max_body_bytes;
        let bytes = to_bytes(req.into_body(), limit).await.map_err(|_| {
            OAuthError::invalid_request(format!("the request body is larger than {limit} bytes"))
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            OAuthError::new(
                tessera_core::ErrorCode::InvalidClientMetadata,
                format!("the request body is not valid JSON: {e}"),
            )
            .into()
        })
    }
}
