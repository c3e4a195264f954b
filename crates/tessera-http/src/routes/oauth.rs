//! Token (RFC 6749 §3.2), introspection (RFC 7662) and revocation (RFC 7009) endpoints.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tessera_core::OAuthError;
use tessera_core::engine::Endpoint;
use tessera_core::error::{AuthScheme, ErrorCode};
use tessera_core::oauth::client_auth;

use super::no_store;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Authorization, Context, OAuthForm};

pub(super) async fn token(
    State(s): State<AppState>,
    Context(ctx): Context,
    Authorization(auth): Authorization,
    OAuthForm(params): OAuthForm,
) -> Result<Response, ApiError> {
    let result = s.engine.token(auth.as_deref(), &params, &ctx).await;
    super::diagnostics::record_token_attempt(&s, &ctx, auth.as_deref(), &params, &result);
    Ok(no_store(Json(result?).into_response()))
}

async fn authenticated_caller(
    s: &AppState,
    ctx: &tessera_core::oauth::RequestContext,
    auth: Option<&str>,
    params: &tessera_core::oauth::params::Params,
    endpoint: Endpoint,
) -> Result<std::sync::Arc<tessera_core::model::Client>, ApiError> {
    let presented =
        client_auth::extract(auth, params).map_err(|e| presented_invalid(e, endpoint))?;
    if let client_auth::PresentedClient::Anonymous { client_id } = &presented {
        // RFC 7009 §2.1: the server validates the client's credentials "in case of a
        // confidential client"; a public client identifies itself with `client_id` and may
        // revoke its own tokens (`authenticate_client` admits a bare `client_id` only for a
        // client registered with `none`). RFC 7662 §2.1: introspection always requires client
        // authentication.
        if endpoint != Endpoint::Revocation || client_id.is_none() {
            return Err(OAuthError::invalid_client("client authentication is required").into());
        }
    }
    s.engine
        .authenticate_client(&presented, endpoint, ctx)
        .await
        .map(|c| c.client)
        .map_err(|e| presented_invalid(e, endpoint))
}

/// RFC 7662 §2.3: a caller of the introspection endpoint whose client credentials are invalid
/// gets a 401 (RFC 6749 §5.2) whatever the mechanism it used, and a 401 carries a challenge
/// (RFC 9110 §15.5.2). Elsewhere RFC 6749 §5.2 applies unchanged (401 only for the
/// `Authorization` header).
fn presented_invalid(e: OAuthError, endpoint: Endpoint) -> ApiError {
    if endpoint == Endpoint::Introspection
        && e.code == ErrorCode::InvalidClient
        && e.challenge.is_none()
    {
        return e.with_challenge(Some(AuthScheme::Basic)).into();
    }
    e.into()
}

pub(super) async fn introspect(
    State(s): State<AppState>,
    Context(ctx): Context,
    Authorization(auth): Authorization,
    OAuthForm(params): OAuthForm,
) -> Result<Response, ApiError> {
    let caller =
        authenticated_caller(&s, &ctx, auth.as_deref(), &params, Endpoint::Introspection).await?;
    let now = s.engine.now();
    let body = s.engine.introspect(&caller, &params, now).await?;
    Ok(no_store(Json(body).into_response()))
}

pub(super) async fn revoke(
    State(s): State<AppState>,
    Context(ctx): Context,
    Authorization(auth): Authorization,
    OAuthForm(params): OAuthForm,
) -> Result<Response, ApiError> {
    let caller =
        authenticated_caller(&s, &ctx, auth.as_deref(), &params, Endpoint::Revocation).await?;
    let now = s.engine.now();
    s.engine.revoke(&caller, &params, now).await?;
    // RFC 7009 §2.2: 200 whether or not the token was valid.
    Ok(no_store(StatusCode::OK.into_response()))
}
