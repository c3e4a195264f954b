//! RFC 7662 token introspection and RFC 7009 revocation.

use serde_json::{Map, Value, json};
use tessera_jose::{Limits, decode_compact};

use crate::clock::UnixTime;
use crate::engine::Engine;
use crate::error::OAuthResult;
use crate::model::Client;
use crate::oauth::issue::ACCESS_TOKEN_TYP;
use crate::oauth::params::Params;

/// A token this server issued, as found.
enum Found {
    Access(Map<String, Value>),
    Refresh(crate::model::RefreshToken),
}

impl Engine {
    /// Verify an access token this server signed (signature, type, issuer, expiry, revocation).
    pub async fn verify_access_token(
        &self,
        token: &str,
        now: UnixTime,
    ) -> OAuthResult<Option<Map<String, Value>>> {
        let limits = Limits {
            max_token_bytes: self.settings.max_jwt_bytes,
            ..Limits::default()
        };
        let Ok(jwt) = decode_compact(token, &limits) else {
            return Ok(None);
        };
        if jwt.header().typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return Ok(None);
        }
        let Some(kid) = jwt.header().kid.as_deref() else {
            return Ok(None);
        };
        let Some(key) = self.keys.verifier(kid, now) else {
            return Ok(None);
        };
        let Ok(verified) = jwt.verify(&key, &[self.settings.access_token_alg, jwt.header().alg])
        else {
            return Ok(None);
        };
        let claims = verified.claims().clone();
        if claims.get("iss").and_then(Value::as_str) != Some(self.settings.issuer.as_str()) {
            return Ok(None);
        }
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if exp <= now {
            return Ok(None);
        }
        if let Some(jti) = claims.get("jti").and_then(Value::as_str)
            && self.store.is_access_token_revoked(jti).await?
        {
            return Ok(None);
        }
        if let Some(gid) = claims.get("gid").and_then(Value::as_str) {
            match self.store.get_grant(gid).await? {
                Some(g) if g.revoked_at.is_none() => {}
                _ => return Ok(None),
            }
        }
        // RFC 7592 §2.3: the tokens of a deleted client are no longer active; nor are those of
        // a client an operator disabled. (A trusted issuer's assertion presented without client
        // authentication names the issuer, which is no client.)
        if let Some(client_id) = claims.get("client_id").and_then(Value::as_str)
            && !self
                .settings
                .trusted_issuers
                .iter()
                .any(|t| t.issuer == client_id)
        {
            match self.client(client_id).await? {
                Some(c) if !c.disabled => {}
                _ => return Ok(None),
            }
        }
        Ok(Some(claims))
    }

    async fn find_token(
        &self,
        token: &str,
        hint: Option<&str>,
        now: UnixTime,
    ) -> OAuthResult<Option<Found>> {
        // RFC 7009 §2.1 / RFC 7662 §2.1: the hint only orders the search.
        let refresh_first = hint == Some("refresh_token");
        for round in 0..2 {
            let try_refresh = (round == 0) == refresh_first;
            if try_refresh {
                if token.len() <= 128
                    && let Some(rt) = self
                        .store
                        .get_refresh_token(&self.master.hash_token(token))
                        .await?
                    && rt.expires_at > now
                {
                    return Ok(Some(Found::Refresh(rt)));
                }
            } else if let Some(claims) = self.verify_access_token(token, now).await? {
                return Ok(Some(Found::Access(claims)));
            }
        }
        Ok(None)
    }

    /// RFC 7662 §2.2 response for an authenticated caller.
    pub async fn introspect(
        &self,
        caller: &Client,
        params: &Params,
        now: UnixTime,
    ) -> OAuthResult<Value> {
        let token = params.require("token")?;
        let inactive = json!({ "active": false });
        match self
            .find_token(token, params.get("token_type_hint"), now)
            .await?
        {
            Some(Found::Access(claims)) => {
                let mut out = Map::new();
                out.insert("active".into(), true.into());
                out.insert("token_type".into(), "Bearer".into());
                for k in [
                    "iss",
                    "sub",
                    "aud",
                    "exp",
                    "iat",
                    "nbf",
                    "jti",
                    "scope",
                    "client_id",
                    "auth_time",
                ] {
                    if let Some(v) = claims.get(k) {
                        out.insert(k.into(), v.clone());
                    }
                }
                Ok(Value::Object(out))
            }
            // A refresh token is only described to the client it was issued to.
            Some(Found::Refresh(rt)) if rt.client_id == caller.client_id => {
                let grant = self.store.get_grant(&rt.grant_id).await?;
                if grant.as_ref().is_none_or(|g| g.revoked_at.is_some()) {
                    return Ok(inactive);
                }
                // RFC 7662 §2.2: `token_type` is an access token type (RFC 6749 §5.1, §7.1,
                // e.g. "Bearer"); a refresh token has none, so the member is left out.
                Ok(json!({
                    "active": true,
                    "client_id": rt.client_id,
                    "sub": rt.subject,
                    "scope": rt.scope,
                    "exp": rt.expires_at,
                    "iat": rt.issued_at,
                    "iss": self.settings.issuer,
                }))
            }
            _ => Ok(inactive),
        }
    }

    /// RFC 7009 §2.1: revoke a token issued to the caller. Unknown, invalid or foreign tokens
    /// still answer 200 (§2.2), so the response says nothing about them.
    pub async fn revoke(&self, caller: &Client, params: &Params, now: UnixTime) -> OAuthResult<()> {
        let token = params.require("token")?;
        match self
            .find_token(token, params.get("token_type_hint"), now)
            .await?
        {
            Some(Found::Refresh(rt)) if rt.client_id == caller.client_id => {
                // §2.1: revoking a refresh token SHOULD revoke every token of the same grant.
                self.store.revoke_grant(&rt.grant_id, now).await?;
            }
            Some(Found::Access(claims))
                if claims.get("client_id").and_then(Value::as_str)
                    == Some(caller.client_id.as_str()) =>
            {
                if let (Some(jti), Some(exp)) = (
                    claims.get("jti").and_then(Value::as_str),
                    claims.get("exp").and_then(Value::as_i64),
                ) {
                    self.store.revoke_access_token(jti, exp).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
