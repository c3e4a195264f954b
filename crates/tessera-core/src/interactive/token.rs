//! The `authorization_code` (RFC 6749 §4.1.3) and `refresh_token` (RFC 6749 §6) grants.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::authorize::REDIRECT_URI_SENT;
use super::id_token::IdTokenFacts;
use crate::clock::UnixTime;
use crate::engine::Engine;
use crate::error::{OAuthError, OAuthResult};
use crate::model::{AuthCode, Client, CodeRedemption, RefreshRotation, RefreshToken};
use crate::oauth::TokenResponse;
use crate::oauth::issue::AccessTokenRequest;
use crate::oauth::params::Params;
use crate::oauth::scope::Scope;
use crate::secrets::random_token;

/// What a refresh token remembers of the original authentication (kept in its `claims`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RefreshContext {
    pub auth_time: UnixTime,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub sid: Option<String>,
    /// Released claims (filtered by the original scope).
    pub claims: Map<String, Value>,
}

impl RefreshContext {
    fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
    fn from_map(m: &Map<String, Value>) -> Self {
        serde_json::from_value(Value::Object(m.clone())).unwrap_or_default()
    }
}

/// RFC 7636 §4.1: 43–128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.6: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let computed = B64.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

fn check_pkce(code: &AuthCode, verifier: Option<&str>) -> OAuthResult<()> {
    match (&code.code_challenge, verifier) {
        (None, None) => Ok(()),
        // A verifier without a challenge means the code was not bound to it: refuse
        // (RFC 9700 §2.1.1, PKCE downgrade protection).
        (None, Some(_)) => Err(OAuthError::invalid_grant(
            "code_verifier sent but the authorization request had no code_challenge",
        )),
        (Some(_), None) => Err(OAuthError::invalid_grant("code_verifier is required")),
        (Some(_), Some(v)) if !valid_verifier(v) => {
            Err(OAuthError::invalid_grant("code_verifier is malformed"))
        }
        (Some(c), Some(v)) => {
            if code.code_challenge_method.as_deref().unwrap_or("S256") == "S256"
                && pkce_s256_matches(v, c)
            {
                Ok(())
            } else {
                let method = code.code_challenge_method.as_deref().unwrap_or("S256");
                let computed = B64.encode(digest::digest(&digest::SHA256, v.as_bytes()));
                Err(
                    OAuthError::invalid_grant("code_verifier does not match the code_challenge")
                        .with_cause(format!(
                            "BASE64URL(SHA256(code_verifier)) is '{computed}', the authorization \
                             request's code_challenge is '{c}' (method {method}): the relying \
                             party sent the verifier of another authorization request"
                        )),
                )
            }
        }
    }
}

fn released(claims: &Map<String, Value>) -> Map<String, Value> {
    claims
        .iter()
        .filter(|(k, _)| !k.starts_with("_tessera"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// RFC 6749 §4.1.3 + OIDC Core §3.1.3: exchange a code.
pub(crate) async fn grant_authorization_code(
    engine: &Engine,
    client: &Client,
    params: &Params,
    now: UnixTime,
) -> OAuthResult<TokenResponse> {
    let code = params.require("code")?;
    if code.len() > 256 {
        return Err(OAuthError::invalid_grant(
            "the authorization code is invalid or has expired",
        ));
    }
    let c = match engine
        .store
        .redeem_code(&engine.master.hash_token(code), now)
        .await?
    {
        CodeRedemption::Redeemed(c) => c,
        CodeRedemption::NotFound => {
            return Err(OAuthError::invalid_grant(
                "the authorization code is invalid or has expired",
            ));
        }
        CodeRedemption::AlreadyUsed { grant_id } => {
            // RFC 6749 §4.1.2: a code used twice revokes everything issued from it.
            engine.store.revoke_grant(&grant_id, now).await?;
            tracing::warn!(target: "tessera::security", event = "code_reuse", client_id = %client.client_id, grant_id = %grant_id, "authorization code reused; grant revoked");
            return Err(
                OAuthError::invalid_grant("the authorization code was already used").with_cause(
                    format!(
                        "client '{}' presented a code that was already redeemed; grant {grant_id} \
                         and every token issued from it are revoked (RFC 6749 §4.1.2)",
                        client.client_id
                    ),
                ),
            );
        }
    };
    if c.client_id != client.client_id {
        // RFC 6749 §4.1.3: the code is bound to the client it was issued to. Someone else holds
        // it, so the grant is compromised.
        engine.store.revoke_grant(&c.grant_id, now).await?;
        return Err(OAuthError::invalid_grant(
            "the authorization code was issued to another client",
        )
        .with_cause(format!(
            "code of '{}' presented by '{}'",
            c.client_id, client.client_id
        )));
    }
    engine.diagnostics.code_redeemed(&client.client_id, now);
    // RFC 6749 §4.1.3: redirect_uri required and identical if the request carried it.
    let sent = c
        .claims
        .get(REDIRECT_URI_SENT)
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match params.get("redirect_uri") {
        Some(r) if r != c.redirect_uri => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            )
            .with_cause(format!(
                "token request redirect_uri '{r}' is not identical to the authorization \
                 request's '{}'",
                c.redirect_uri
            )));
        }
        None if sent => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri is required: the authorization request carried one",
            ));
        }
        _ => {}
    }
    check_pkce(&c, params.get("code_verifier"))?;
    match engine.store.get_grant(&c.grant_id).await? {
        Some(g) if g.revoked_at.is_none() => {}
        _ => {
            return Err(OAuthError::invalid_grant(
                "the authorization has been revoked",
            ));
        }
    }
    let scope = Scope::parse(&c.scope)?;
    let claims = released(&c.claims);
    let ctx = RefreshContext {
        auth_time: c.auth_time,
        amr: c.amr.clone(),
        acr: c.acr.clone(),
        sid: c.session_id.clone(),
        claims,
    };
    let refresh = if scope.contains("offline_access") {
        let token = random_token().map_err(OAuthError::server_error)?;
        let expires_at = now + engine.settings.refresh_token_ttl as i64;
        engine
            .store
            .put_refresh_token(&RefreshToken {
                token_hash: engine.master.hash_token(&token),
                grant_id: c.grant_id.clone(),
                client_id: client.client_id.clone(),
                subject: c.subject.clone(),
                scope: c.scope.clone(),
                issued_at: now,
                expires_at,
                claims: ctx.to_map(),
            })
            .await?;
        Some(token)
    } else {
        None
    };
    respond(
        engine,
        client,
        &c.subject,
        &scope,
        &c.grant_id,
        &ctx,
        c.nonce.as_deref(),
        refresh,
        now,
    )
}

/// Access token, ID token (for `openid`) and the response.
#[allow(clippy::too_many_arguments)]
fn respond(
    engine: &Engine,
    client: &Client,
    subject: &str,
    scope: &Scope,
    grant_id: &str,
    ctx: &RefreshContext,
    nonce: Option<&str>,
    refresh_token: Option<String>,
    now: UnixTime,
) -> OAuthResult<TokenResponse> {
    // The released claims ride in the access token, so the UserInfo endpoint can answer for
    // every provider, and for as long as the token lives (RFC 9068 §2.2.3.1).
    let userinfo_claims = super::id_token::filter_claims(&ctx.claims, scope);
    let (access_token, expires_in) = engine.issue_access_token(
        AccessTokenRequest {
            subject: subject.to_owned(),
            client_id: client.client_id.clone(),
            scope: scope.to_string(),
            audience: None,
            auth_time: Some(ctx.auth_time),
            grant_id: Some(grant_id.to_owned()),
            not_after: None,
            extra: userinfo_claims.clone(),
        },
        now,
    )?;
    let id_token = if scope.contains("openid") {
        Some(engine.issue_id_token(
            client,
            &IdTokenFacts {
                subject,
                auth_time: ctx.auth_time,
                nonce,
                amr: &ctx.amr,
                acr: ctx.acr.as_deref(),
                sid: ctx.sid.as_deref(),
                access_token: Some(&access_token),
                claims: Some(&userinfo_claims),
            },
            now,
        )?)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in,
        scope: Some(scope.to_string()),
        refresh_token,
        id_token,
        issued_token_type: None,
    })
}

fn bad_refresh() -> OAuthError {
    OAuthError::invalid_grant("the refresh token is invalid, expired or revoked")
}

/// RFC 6749 §6 with rotation (RFC 9700 §4.14.2): every use spends the token and returns a new
/// one; presenting a spent token revokes the whole grant (the family).
pub(crate) async fn grant_refresh_token(
    engine: &Engine,
    client: &Client,
    params: &Params,
    now: UnixTime,
) -> OAuthResult<TokenResponse> {
    let presented = params.require("refresh_token")?;
    if presented.len() > 256 {
        return Err(bad_refresh());
    }
    let old_hash = engine.master.hash_token(presented);
    let Some(old) = engine.store.get_refresh_token(&old_hash).await? else {
        // Spent, expired, revoked or unknown: find out whether it is a reuse.
        return Err(detect_reuse(engine, client, &old_hash, now).await);
    };
    if old.client_id != client.client_id {
        // RFC 6749 §6: the refresh token is bound to the client it was issued to.
        return Err(bad_refresh().with_cause(format!(
            "refresh token of '{}' presented by '{}'",
            old.client_id, client.client_id
        )));
    }
    // A disabled local account refreshes no more: its grant is revoked with the family.
    // (Directory and upstream accounts are judged by their provider at the next sign-in.)
    if let Some(user) = engine.store.get_user_by_subject(&old.subject).await?
        && user.disabled
    {
        engine.store.revoke_grant(&old.grant_id, now).await?;
        return Err(OAuthError::invalid_grant("the user's account is disabled")
            .with_cause(format!("local user '{}' is disabled", user.username)));
    }
    let original = Scope::parse(&old.scope)?;
    // RFC 6749 §6: the scope may only narrow; the new refresh token keeps the original.
    let scope = match params.get("scope") {
        Some(s) => {
            let asked = Scope::parse(s)?;
            asked.ensure_within(&original, "this refresh token")?;
            asked
        }
        None => original,
    };
    let token = random_token().map_err(OAuthError::server_error)?;
    let new = RefreshToken {
        token_hash: engine.master.hash_token(&token),
        grant_id: old.grant_id.clone(),
        client_id: old.client_id.clone(),
        subject: old.subject.clone(),
        scope: old.scope.clone(),
        issued_at: now,
        // Absolute lifetime: rotation does not extend the family.
        expires_at: old.expires_at,
        claims: old.claims.clone(),
    };
    match engine
        .store
        .rotate_refresh_token(&old_hash, &new, now)
        .await?
    {
        RefreshRotation::Rotated(_) => {}
        RefreshRotation::Reused { grant_id } => {
            // A concurrent use won the race: treat as reuse.
            engine.store.revoke_grant(&grant_id, now).await?;
            tracing::warn!(target: "tessera::security", event = "refresh_reuse", client_id = %client.client_id, grant_id = %grant_id, "refresh token reused; grant revoked");
            return Err(bad_refresh());
        }
        RefreshRotation::NotFound => return Err(bad_refresh()),
    }
    let ctx = RefreshContext::from_map(&old.claims);
    respond(
        engine,
        client,
        &old.subject,
        &scope,
        &old.grant_id,
        &ctx,
        None,
        Some(token),
        now,
    )
}

/// Classify a refresh token that is not live: a spent one (reuse) revokes its grant.
async fn detect_reuse(
    engine: &Engine,
    client: &Client,
    old_hash: &str,
    now: UnixTime,
) -> OAuthError {
    // Rotation is the one store operation that tells "spent" from "unknown"; the placeholder
    // is never stored (a live token would have been found above).
    let probe = RefreshToken {
        token_hash: String::new(),
        grant_id: String::new(),
        client_id: client.client_id.clone(),
        subject: String::new(),
        scope: String::new(),
        issued_at: now,
        expires_at: now,
        claims: Map::new(),
    };
    match engine
        .store
        .rotate_refresh_token(old_hash, &probe, now)
        .await
    {
        Ok(RefreshRotation::Reused { grant_id }) => {
            if let Err(e) = engine.store.revoke_grant(&grant_id, now).await {
                return e.into();
            }
            tracing::warn!(target: "tessera::security", event = "refresh_reuse", client_id = %client.client_id, grant_id = %grant_id, "refresh token reused; grant revoked");
            bad_refresh()
        }
        Ok(_) => bad_refresh(),
        Err(e) => e.into(),
    }
}
