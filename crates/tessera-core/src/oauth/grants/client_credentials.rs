//! RFC 6749 §4.4 client credentials grant.

use crate::engine::Engine;
use crate::error::{OAuthError, OAuthResult};
use crate::model::Client;
use crate::oauth::TokenResponse;
use crate::oauth::issue::AccessTokenRequest;
use crate::oauth::params::Params;
use crate::oauth::scope::Scope;

impl Engine {
    pub(crate) async fn grant_client_credentials(
        &self,
        client: &Client,
        params: &Params,
        now: i64,
    ) -> OAuthResult<TokenResponse> {
        // §4.4: only confidential clients (they authenticated before we got here).
        if client.is_public() {
            return Err(OAuthError::unauthorized_client(
                "public clients cannot use the client_credentials grant",
            ));
        }
        let allowed = self
            .client_scope(client)
            .without(&["openid", "offline_access"]);
        let scope = match params.get("scope") {
            Some(s) => {
                let requested = Scope::parse(s)?;
                if requested.contains("openid") || requested.contains("offline_access") {
                    return Err(OAuthError::invalid_scope(
                        "scopes 'openid' and 'offline_access' need a user; not available with client_credentials",
                    ));
                }
                requested.ensure_within(&allowed, &format!("client '{}'", client.client_id))?;
                requested
            }
            // §3.3: without a scope, the pre-defined default is what the client registered.
            None => allowed,
        };
        let audience = self.resource_audience(params)?;
        let (access_token, expires_in) = self.issue_access_token(
            AccessTokenRequest {
                subject: client.client_id.clone(),
                client_id: client.client_id.clone(),
                scope: scope.to_string(),
                audience,
                ..Default::default()
            },
            now,
        )?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            scope: (!scope.is_empty()).then(|| scope.to_string()),
            refresh_token: None,
            id_token: None,
            issued_token_type: None,
        })
    }
}
