//! Interactive sign-in: authorization code, refresh tokens, ID tokens, sessions.

use crate::clock::UnixTime;
use crate::engine::Engine;
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::model::Client;
use crate::oauth::TokenResponse;
use crate::oauth::params::Params;

pub(crate) async fn grant_authorization_code(
    _engine: &Engine,
    _client: &Client,
    _params: &Params,
    _now: UnixTime,
) -> OAuthResult<TokenResponse> {
    Err(OAuthError::new(ErrorCode::UnsupportedGrantType, "authorization_code is not enabled on this server"))
}

pub(crate) async fn grant_refresh_token(
    _engine: &Engine,
    _client: &Client,
    _params: &Params,
    _now: UnixTime,
) -> OAuthResult<TokenResponse> {
    Err(OAuthError::new(ErrorCode::UnsupportedGrantType, "refresh_token is not enabled on this server"))
}
