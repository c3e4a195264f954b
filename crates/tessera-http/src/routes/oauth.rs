//! Token (RFC 6749 §3.2), introspection (RFC 7662) and revocation (RFC 7009) endpoints.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tessera_core::OAuthError;
use tessera_core::engine::Endpoint;
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
    let presented = client_auth::extract(auth, params)?;
    if matches!(presented, client_auth::PresentedClient::Anonymous { .. }) {
        // RFC 7662 §2.1 / RFC 7009 §2.1: these endpoints require client authentication.
        return Err(OAuthError::invalid_client("client authentication is required").into());
    }
    Ok(s.engine
        .authenticate_client(&presented, endpoint, ctx)
        .await?
        .client)
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
