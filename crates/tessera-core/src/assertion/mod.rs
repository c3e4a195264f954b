//! JWT assertions (RFC 7521 / RFC 7523): client authentication with `private_key_jwt` and
//! `client_secret_jwt`, and the jwt-bearer grant from service accounts and trusted issuers.
//!
//! - [`verify`]: the single validation pipeline (also behind `tessera assertion check`);
//! - [`keys`]: the `JwksSource` contract, the key cache, PEM public keys;
//! - [`trust`]: trusted-issuer configuration;
//! - [`keyfile`]: Google-format service-account key files and minting assertions from them.
//!
//! Audience policy (documented choice): client assertions must name this server as their
//! *sole* audience — by default the issuer identifier or the token endpoint URL (Authlib sends
//! the token endpoint, openid-client the issuer); `client_assertion_audience = "strict"` accepts
//! only the issuer (draft-ietf-oauth-rfc7523bis). Grant assertions may use either; service
//! accounts created by this server may also use Google's token URL (google-auth hard-codes it),
//! trusted external issuers never.

pub mod keyfile;
pub mod keys;
pub mod trust;
pub mod verify;

#[cfg(test)]
mod tests;

use serde::Serialize;

pub use keys::{
    FnJwksSource, JwksCache, JwksFetchError, JwksFuture, JwksSource, parse_public_key_pem,
};
pub use trust::{AllowedClients, TrustedAudience, TrustedIssuer};
pub use verify::{CheckLine, GOOGLE_TOKEN_AUDIENCE, GrantDecision, Purpose};

use crate::clock::UnixTime;
use crate::engine::{AuthenticatedClient, Endpoint, Engine};
use crate::error::{OAuthError, OAuthResult};
use crate::model::Client;
use crate::oauth::issue::AccessTokenRequest;
use crate::oauth::params::Params;
use crate::oauth::{RequestContext, TokenResponse};
use crate::trace::TraceHandle;
use verify::Run;

/// Client authentication by `client_assertion` (RFC 7523 §2.2, §3; OIDC Core §9). The same
/// audience rules apply at every endpoint that authenticates clients (token, introspection,
/// revocation): the token endpoint URL or the issuer identifies this server.
pub(crate) async fn authenticate_client(
    engine: &Engine,
    client_id: Option<&str>,
    assertion: &str,
    _endpoint: Endpoint,
    ctx: &RequestContext,
    now: UnixTime,
) -> OAuthResult<AuthenticatedClient> {
    let mut run = Run::new(engine, &ctx.trace, Purpose::ClientAuth, false);
    let client = run.client(client_id, assertion, now).await?;
    let method = client.token_endpoint_auth_method;
    Ok(AuthenticatedClient { client, method })
}

/// The jwt-bearer grant (RFC 7523 §2.1). `client` is the authenticated client, if the request
/// carried client credentials (optional, RFC 7523 §3.1; validated by the engine before).
pub(crate) async fn grant_jwt_bearer(
    engine: &Engine,
    client: Option<&Client>,
    params: &Params,
    ctx: &RequestContext,
    now: UnixTime,
) -> OAuthResult<TokenResponse> {
    let assertion = params.require("assertion")?;
    let audience = engine.resource_audience(params)?;
    let mut run = Run::new(engine, &ctx.trace, Purpose::Grant, false);
    let d = run
        .grant(assertion, client, params.get("scope"), now)
        .await?;
    let scope = d.scope.to_string();
    let (access_token, expires_in) = engine.issue_access_token(
        AccessTokenRequest {
            subject: d.subject,
            client_id: d.client_id,
            scope: scope.clone(),
            audience,
            // RFC 7521 §4.1: the token does not outlive the assertion.
            not_after: Some(d.not_after),
            extra: d.extra,
            ..Default::default()
        },
        now,
    )?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in,
        scope: (!scope.is_empty()).then_some(scope),
        refresh_token: None,
        id_token: None,
        issued_token_type: None,
    })
}

/// What `tessera assertion check` prints: every check and the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub purpose: Purpose,
    pub checks: Vec<CheckLine>,
    /// `None` when accepted; else `error: description`.
    pub rejection: Option<String>,
    /// When accepted: who the server would consider authenticated / the token subject.
    pub accepted_as: Option<String>,
}

impl Inspection {
    pub fn accepted(&self) -> bool {
        self.rejection.is_none()
    }

    /// One line per check: `✓ name  expected …  actual …`, then the verdict.
    pub fn render(&self) -> String {
        let width = self
            .checks
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            let mark = if c.ok { '✓' } else { '✗' };
            out.push_str(&format!(
                "{mark} {:<width$}  expected: {}\n  {:<width$}  actual:   {}\n",
                c.name, c.expected, "", c.actual
            ));
        }
        match (&self.rejection, &self.accepted_as) {
            (Some(r), _) => out.push_str(&format!("REJECTED: {r}\n")),
            (None, Some(a)) => out.push_str(&format!("ACCEPTED: {a}\n")),
            (None, None) => out.push_str("ACCEPTED\n"),
        }
        out
    }
}

fn rejection(e: &OAuthError) -> String {
    match &e.description {
        Some(d) => format!("{}: {d}", e.code),
        None => e.code.to_string(),
    }
}

/// Run the server's own validation on `assertion` without side effects (no `jti` is consumed)
/// and report every check. `client_id` is the client_id parameter (client auth) or the
/// presenting client to assume (grant; not authenticated here).
pub async fn inspect(
    engine: &Engine,
    assertion: &str,
    purpose: Purpose,
    client_id: Option<&str>,
    scope: Option<&str>,
    now: UnixTime,
) -> Inspection {
    let trace = TraceHandle::off();
    let mut run = Run::new(engine, &trace, purpose, true);
    let (rejection, accepted_as) = match purpose {
        Purpose::ClientAuth => match run.client(client_id, assertion, now).await {
            Ok(c) => (
                None,
                Some(format!(
                    "client '{}' ({})",
                    c.client_id,
                    c.token_endpoint_auth_method.as_str()
                )),
            ),
            Err(e) => (Some(rejection(&e)), None),
        },
        Purpose::Grant => {
            let presenter = match client_id {
                Some(id) => engine.store.get_client(id).await.ok().flatten(),
                None => None,
            };
            match run.grant(assertion, presenter.as_ref(), scope, now).await {
                Ok(d) => (
                    None,
                    Some(format!(
                        "{} '{}': token for subject '{}', client_id '{}', scope '{}', expiring by {}",
                        d.issuer_kind.replace('_', " "),
                        d.issuer,
                        d.subject,
                        d.client_id,
                        d.scope,
                        d.not_after
                    )),
                ),
                Err(e) => (Some(rejection(&e)), None),
            }
        }
    };
    Inspection {
        purpose,
        checks: run.checks,
        rejection,
        accepted_as,
    }
}
