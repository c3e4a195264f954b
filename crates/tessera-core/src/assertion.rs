//! JWT assertions (RFC 7521 / RFC 7523): client authentication and the jwt-bearer grant.

use crate::clock::UnixTime;
use crate::engine::{AuthenticatedClient, Endpoint, Engine};
use crate::error::{OAuthError, OAuthResult};
use crate::model::Client;
use crate::oauth::params::Params;
use crate::oauth::{RequestContext, TokenResponse};

pub(crate) async fn authenticate_client(
    _engine: &Engine,
    _client_id: Option<&str>,
    _assertion: &str,
    _endpoint: Endpoint,
    _ctx: &RequestContext,
    _now: UnixTime,
) -> OAuthResult<AuthenticatedClient> {
    Err(OAuthError::invalid_client("client assertions are not enabled on this server"))
}

pub(crate) async fn grant_jwt_bearer(
    _engine: &Engine,
    _client: Option<&Client>,
    _params: &Params,
    _ctx: &RequestContext,
    _now: UnixTime,
) -> OAuthResult<TokenResponse> {
    Err(OAuthError::new(
        crate::error::ErrorCode::UnsupportedGrantType,
        "the jwt-bearer grant is not enabled on this server",
    ))
}
