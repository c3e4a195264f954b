//! Request extraction for OAuth endpoints: strict form bodies with a size limit, the
//! `Authorization` header, and per-request context (request id, source address).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, header};
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

/// A new request id: 32 hex characters, unique within the process (a bijective mix of a
/// counter started at a random offset), so, with overwhelming probability, across processes and
/// restarts too. Not a secret and not a sequence a client can read the request volume from;
/// cheaper than a random UUID per request (no system call).
pub fn next_request_id() -> String {
    static OFFSET: OnceLock<(u64, u64)> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (offset, prefix) = *OFFSET.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{:016x}", mix64(n.wrapping_add(offset)))
}

/// The splitmix64 finalizer: a bijection on u64 (xor-shifts and odd multipliers).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Per request: a request id (`RequestId` extension, `X-Request-Id` response header) and the
/// security headers every response carries unless a handler set them (`X-Content-Type-Options:
/// nosniff`, `Referrer-Policy: no-referrer`). One middleware for all three keeps the per-request
/// layer stack short.
pub async fn request_id_layer(mut req: Request, next: Next) -> Response {
    let id = next_request_id();
    let header = HeaderValue::from_str(&id).ok();
    req.extensions_mut().insert(RequestId(id));
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if let Some(v) = header {
        h.insert(HeaderName::from_static("x-request-id"), v);
    }
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
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
        let source_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let app = <AppState as axum::extract::FromRef<S>>::from_ref(state);
        let trace = app.engine.diagnostics.begin();
        Ok(Context(RequestContext {
            request_id,
            source_ip,
            trace,
        }))
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
                .map_err(|_| {
                    OAuthError::invalid_request("the Authorization header is not valid ASCII")
                        .into()
                }),
        }
    }
}

/// A strictly parsed `application/x-www-form-urlencoded` body (RFC 6749 §3.2: POST with this
/// media type; parameters not repeated; §3.1 empty values are omitted).
pub struct OAuthForm(pub Params);

fn is_form(ct: Option<&HeaderValue>) -> bool {
    ct.and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
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
        Params::parse(&bytes)
            .map(OAuthForm)
            .map_err(|e| ApiError(e.into()))
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
            return Err(
                OAuthError::invalid_request("the request body must be application/json").into(),
            );
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
