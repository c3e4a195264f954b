//! OpenID Connect RP-Initiated Logout 1.0 and Back-Channel Logout 1.0.

use serde_json::{Value, json};
use tessera_jose::{Limits, decode_compact};

use super::authorize::response_url;
use crate::clock::UnixTime;
use crate::engine::Engine;
use crate::error::{OAuthError, OAuthResult};
use crate::model::{Client, Session};
use crate::oauth::params::Params;
use crate::registration::ID_TOKEN_ALGS;
use crate::secrets::random_token;

/// Back-Channel Logout 1.0 §2.4: the event member of a logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Back-Channel Logout 1.0 §2.4 (and RFC 8725 §3.11): explicit typing of logout tokens.
pub const LOGOUT_TOKEN_TYP: &str = "logout+jwt";
/// Lifetime of a logout token, seconds (§2.4 recommends at most two minutes).
pub const LOGOUT_TOKEN_TTL: i64 = 120;

/// A logout token to POST to a client's `backchannel_logout_uri` (§2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutDelivery {
    pub client_id: String,
    pub uri: String,
    pub logout_token: String,
}

/// Delivers logout tokens. The HTTP implementation lives in `tessera-http`; it must return at
/// once and deliver in the background with a timeout (a slow client must not hold up logout).
pub trait BackchannelSender: Send + Sync + std::fmt::Debug {
    fn send(&self, delivery: LogoutDelivery);
}

/// For processes that never log users out (CLI tools): drops deliveries.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoBackchannel;

impl BackchannelSender for NoBackchannel {
    fn send(&self, delivery: LogoutDelivery) {
        tracing::debug!(client_id = %delivery.client_id, "back-channel logout not delivered: no sender configured");
    }
}

/// A validated logout request (RP-Initiated Logout 1.0 §2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogoutRequest {
    pub client_id: Option<String>,
    pub client_name: Option<String>,
    /// Verified against the client's registered `post_logout_redirect_uris`.
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    /// `sub` and `sid` of a valid `id_token_hint`.
    pub hint_subject: Option<String>,
    pub hint_sid: Option<String>,
}

/// What the logout did.
#[derive(Debug, Clone, Default)]
pub struct LogoutOutcome {
    pub ended: Option<Session>,
    /// Clients notified over the back channel.
    pub notified: Vec<String>,
}

fn bad(d: &'static str) -> OAuthError {
    OAuthError::invalid_request(d)
}

impl Engine {
    /// Check an end-session request. Errors are shown on a page, never redirected: the
    /// redirect target is only trusted once matched against a registered URI (§3).
    pub async fn end_session_request(
        &self,
        params: &Params,
        now: UnixTime,
    ) -> OAuthResult<LogoutRequest> {
        let mut req = LogoutRequest {
            state: params.get("state").map(str::to_owned),
            ..Default::default()
        };
        let mut hint_aud: Option<String> = None;
        if let Some(hint) = params.get("id_token_hint") {
            let claims = self
                .verify_own_id_token(hint, now)
                .ok_or_else(|| bad("id_token_hint is not a valid ID token from this server"))?;
            req.hint_subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
            req.hint_sid = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
            hint_aud = match (claims.get("azp"), claims.get("aud")) {
                (Some(Value::String(a)), _) | (None, Some(Value::String(a))) => Some(a.clone()),
                (None, Some(Value::Array(a))) => {
                    a.first().and_then(Value::as_str).map(str::to_owned)
                }
                _ => None,
            };
        }
        // §2: client_id, when given with a hint, must be the hint's audience.
        let client_id = match (params.get("client_id"), hint_aud) {
            (Some(c), Some(a)) if c != a => {
                return Err(bad("client_id does not match the id_token_hint"));
            }
            (Some(c), _) => Some(c.to_owned()),
            (None, a) => a,
        };
        let client: Option<Client> = match &client_id {
            Some(id) if id.len() <= 256 => self.store.get_client(id).await?.filter(|c| !c.disabled),
            _ => None,
        };
        if client_id.is_some() && client.is_none() {
            return Err(bad("the application is not registered"));
        }
        if let Some(uri) = params.get("post_logout_redirect_uri") {
            // §3: exact match with a registered value; without a client there is nothing to match.
            let Some(c) = &client else {
                return Err(bad(
                    "post_logout_redirect_uri needs client_id or id_token_hint",
                ));
            };
            if !c.post_logout_redirect_uris.iter().any(|r| r == uri) {
                return Err(bad(
                    "post_logout_redirect_uri is not registered for this application",
                ));
            }
            req.post_logout_redirect_uri = Some(uri.to_owned());
        }
        if params.get("state").is_some_and(|s| s.len() > 2048) {
            return Err(bad("state is too long"));
        }
        req.client_name = client
            .as_ref()
            .map(|c| c.client_name.clone().unwrap_or_else(|| c.client_id.clone()));
        req.client_id = client.map(|c| c.client_id);
        Ok(req)
    }

    /// An ID token this server signed (signature, issuer). Expiry is not checked: an
    /// `id_token_hint` may be expired (RP-Initiated Logout 1.0 §2; at the authorization
    /// endpoint it only names the user).
    pub(crate) fn verify_own_id_token(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Option<serde_json::Map<String, Value>> {
        let limits = Limits {
            max_token_bytes: self.settings.max_jwt_bytes,
            ..Limits::default()
        };
        let jwt = decode_compact(token, &limits).ok()?;
        // An ID token, not another JWT this server signs (access or logout tokens: RFC 8725
        // §3.11 explicit typing).
        if jwt
            .header()
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return None;
        }
        let key = self.keys.verifier(jwt.header().kid.as_deref()?, now)?;
        let verified = jwt.verify(&key, &ID_TOKEN_ALGS).ok()?;
        let claims = verified.into_claims();
        (claims.get("iss").and_then(Value::as_str) == Some(self.settings.issuer.as_str()))
            .then_some(claims)
    }

    /// §2: the OP must ask the user unless an `id_token_hint` belongs to the current session:
    /// the signed-in subject and, when the hint carries one, the session's `sid` (a hint from
    /// another session of the same user, e.g. in another browser, does not).
    pub fn logout_needs_confirmation(
        &self,
        req: &LogoutRequest,
        session: Option<&Session>,
    ) -> bool {
        match session {
            None => false,
            Some(s) => {
                req.hint_subject.as_deref() != Some(s.subject.as_str())
                    || req.hint_sid.as_deref().is_some_and(|sid| sid != s.sid)
            }
        }
    }

    /// Where the browser goes after logout (§3: with `state` if one was sent).
    pub fn post_logout_url(&self, req: &LogoutRequest) -> Option<String> {
        let uri = req.post_logout_redirect_uri.as_ref()?;
        let pairs: Vec<(&str, &str)> = req.state.iter().map(|s| ("state", s.as_str())).collect();
        response_url(uri, &pairs)
    }

    /// End the browser's session and notify, over the back channel, every client it signed in
    /// to that registered a `backchannel_logout_uri` (Back-Channel Logout 1.0 §2.5).
    pub async fn logout(
        &self,
        session_cookie: Option<&str>,
        now: UnixTime,
    ) -> OAuthResult<LogoutOutcome> {
        let Some(cookie) = session_cookie.filter(|c| !c.is_empty() && c.len() <= 128) else {
            return Ok(LogoutOutcome::default());
        };
        let Some(session) = self
            .store
            .delete_session(&self.master.hash_token(cookie))
            .await?
        else {
            return Ok(LogoutOutcome::default());
        };
        tracing::info!(target: "tessera::security", event = "logout", subject = %session.subject, "signed out");
        // The session is gone: from here on nothing may fail the user's logout, and one
        // client that cannot be notified must not keep the others from being notified.
        let mut notified = Vec::new();
        for client_id in &session.clients {
            let client = match self.store.get_client(client_id).await {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(target: "tessera::security", event = "backchannel_logout_failed", client_id = %client_id, cause = %e, "back-channel logout not sent: the client could not be read");
                    continue;
                }
            };
            let Some(uri) = client.backchannel_logout_uri.clone() else {
                continue;
            };
            match self.logout_token(&client, &session, now) {
                Ok(logout_token) => {
                    self.backchannel.send(LogoutDelivery {
                        client_id: client.client_id.clone(),
                        uri,
                        logout_token,
                    });
                    notified.push(client.client_id.clone());
                }
                Err(e) => {
                    tracing::error!(target: "tessera::security", event = "backchannel_logout_failed", client_id = %client.client_id, cause = %e, "back-channel logout not sent: could not sign a logout token")
                }
            }
        }
        Ok(LogoutOutcome {
            ended: Some(session),
            notified,
        })
    }

    /// Back-Channel Logout 1.0 §2.4: iss, aud, iat, exp, jti, events, sub and sid; never a nonce.
    pub fn logout_token(
        &self,
        client: &Client,
        session: &Session,
        now: UnixTime,
    ) -> OAuthResult<String> {
        let alg = self.id_token_alg(client)?;
        let claims = json!({
            "iss": self.settings.issuer,
            "aud": client.client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_TTL,
            "jti": random_token().map_err(OAuthError::server_error)?,
            "sub": session.subject,
            "sid": session.sid,
            "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
        });
        let signer = self
            .keys
            .signer(alg, now)
            .map_err(OAuthError::server_error)?;
        signer
            .sign_jwt(Some(LOGOUT_TOKEN_TYP), &claims)
            .map_err(OAuthError::server_error)
    }
}
