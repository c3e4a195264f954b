//! Password sign-in through the authentication chain, browser sessions and consent.
//!
//! Sessions live in the store ([`crate::store::SessionStore`]); the cookie holds a random
//! 256-bit value and the store only its keyed hash. The OIDC `sid` is another random value, so
//! the cookie never leaves the browser.

use serde_json::{Map, Value};

use super::authorize::{AuthorizeError, ErrorRedirect, Step};
use super::transaction::Transaction;
use crate::authn::{AccountState, Decision, Outcome, PasswordCredentials, Principal};
use crate::clock::UnixTime;
use crate::engine::Engine;
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::model::Session;
use crate::oauth::RequestContext;
use crate::oauth::scope::Scope;
use crate::secrets::random_token;

/// Why a sign-in failed, as the login page may tell it.
#[derive(Debug, Clone)]
pub enum SignInError {
    /// Wrong password, unknown user or empty password: one generic message for all, so the
    /// page never reveals whether an account exists.
    InvalidCredentials,
    /// The password was right but the account may not sign in.
    AccountState(AccountState),
    /// The chain could not decide (a directory is down): try again later.
    Unavailable,
    /// Storage failure while creating the session.
    Internal(OAuthError),
}

impl PartialEq for SignInError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::AccountState(a), Self::AccountState(b)) => a == b,
            (Self::Internal(a), Self::Internal(b)) => a.code == b.code,
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

/// A new session: `cookie` goes into the session cookie, never anywhere else.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub cookie: String,
    pub session: Session,
}

/// The claims a principal supports, by OIDC Core §5.1 name.
pub fn principal_claims(p: &Principal) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("preferred_username".into(), p.username.clone().into());
    let mut opt = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), v.clone().into());
        }
    };
    opt("name", &p.name);
    opt("given_name", &p.given_name);
    opt("family_name", &p.family_name);
    if let Some(e) = &p.email {
        m.insert("email".into(), e.clone().into());
        m.insert("email_verified".into(), p.email_verified.into());
    }
    m.insert("groups".into(), p.groups.clone().into());
    m
}

impl Engine {
    /// The session behind a session cookie, if it is live.
    pub async fn load_session(
        &self,
        cookie: Option<&str>,
        now: UnixTime,
    ) -> OAuthResult<Option<Session>> {
        let Some(c) = cookie.filter(|c| !c.is_empty() && c.len() <= 128) else {
            return Ok(None);
        };
        Ok(self
            .store
            .get_session(&self.master.hash_token(c), now)
            .await?)
    }

    /// Authenticate through the chain and open a session. A previous session of the same
    /// subject in this browser (`previous_cookie`) is replaced but keeps its `sid` and the
    /// clients it signed in to, so back-channel logout still reaches them.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn sign_in(
        &self,
        credentials: &PasswordCredentials,
        previous_cookie: Option<&str>,
        ctx: &RequestContext,
        now: UnixTime,
    ) -> Result<SignedIn, SignInError> {
        let mut trace = crate::trace::Trace::new(ctx.trace.is_on());
        let outcome = self
            .authenticate_user_traced(credentials, ctx, &mut trace)
            .await;
        for s in trace.into_steps() {
            ctx.trace.step(s.component, s.step, s.outcome, || s.detail);
        }
        let principal = match outcome.decision {
            Decision::Authenticated(p) => p,
            Decision::Denied {
                outcome,
                provider,
                credential_failure,
            } => {
                tracing::info!(
                    target: "tessera::security",
                    event = "login_failed",
                    username = %credentials.username,
                    provider = %provider,
                    outcome = outcome.label(),
                    credential_failure,
                    request_id = %ctx.request_id,
                    source_ip = ?ctx.source_ip,
                    "sign-in refused"
                );
                return Err(match outcome {
                    Outcome::AccountState(s) => SignInError::AccountState(s),
                    _ => SignInError::InvalidCredentials,
                });
            }
            Decision::Unavailable {
                provider,
                cause,
                host,
            } => {
                tracing::warn!(
                    target: "tessera::security",
                    event = "login_unavailable",
                    provider = %provider,
                    cause = %cause,
                    host = ?host,
                    request_id = %ctx.request_id,
                    "sign-in could not be decided"
                );
                return Err(SignInError::Unavailable);
            }
        };
        let previous = self
            .load_session(previous_cookie, now)
            .await
            .map_err(SignInError::Internal)?;
        let (sid, clients) = match previous {
            Some(p) if p.subject == principal.subject => {
                self.store
                    .delete_session(&p.id_hash)
                    .await
                    .map_err(|e| SignInError::Internal(e.into()))?;
                (p.sid, p.clients)
            }
            _ => (
                random_token().map_err(|e| SignInError::Internal(OAuthError::server_error(e)))?,
                Vec::new(),
            ),
        };
        let cookie =
            random_token().map_err(|e| SignInError::Internal(OAuthError::server_error(e)))?;
        let amr = if principal.amr.is_empty() {
            vec!["pwd".to_owned()]
        } else {
            principal.amr.clone()
        };
        let session = Session {
            id_hash: self.master.hash_token(&cookie),
            sid,
            subject: principal.subject.clone(),
            username: principal.username.clone(),
            auth_time: now,
            amr,
            acr: None,
            claims: principal_claims(&principal),
            clients,
            created_at: now,
            expires_at: now + self.settings.session_ttl as i64,
        };
        self.store
            .put_session(&session)
            .await
            .map_err(|e| SignInError::Internal(e.into()))?;
        tracing::info!(
            target: "tessera::security",
            event = "login",
            subject = %session.subject,
            provider = %principal.provider,
            request_id = %ctx.request_id,
            "signed in"
        );
        Ok(SignedIn { cookie, session })
    }

    /// The consent page's answer (OIDC Core §3.1.2.4). Approval is remembered for the union of
    /// the scopes approved so far; a denial is `access_denied` to the client.
    pub async fn consent(
        &self,
        tx: Transaction,
        session_cookie: Option<&str>,
        approve: bool,
        now: UnixTime,
    ) -> Result<Step, AuthorizeError> {
        let req = &tx.request;
        let redirect = ErrorRedirect {
            redirect_uri: req.redirect_uri.clone(),
            state: req.state.clone(),
        };
        let fail = |e: OAuthError| AuthorizeError::from_oauth(e, Some(redirect.clone()));
        let client = self.interaction_client(&tx).await.map_err(fail)?;
        let Some(session) = self.load_session(session_cookie, now).await.map_err(fail)? else {
            // The session ended while the page was open: sign in again.
            return Ok(Step::Login(Box::new(tx)));
        };
        if !approve {
            tracing::info!(target: "tessera::security", event = "consent_denied", subject = %session.subject, client_id = %client.client_id, "consent denied");
            return Err(fail(OAuthError::new(
                ErrorCode::AccessDenied,
                "the user denied the request",
            )));
        }
        let mut all = self
            .store
            .get_consent(&session.subject, &client.client_id)
            .await
            .map_err(|e| fail(e.into()))?
            .and_then(|s| Scope::parse(&s).ok())
            .unwrap_or_default()
            .tokens()
            .to_vec();
        all.extend(
            Scope::parse(&req.scope)
                .map_err(fail)?
                .tokens()
                .iter()
                .cloned(),
        );
        let all = Scope::from_tokens(all);
        self.store
            .put_consent(&session.subject, &client.client_id, &all.to_string())
            .await
            .map_err(|e| fail(e.into()))?;
        let url = self
            .issue_code(&client, req, &session, true, now)
            .await
            .map_err(fail)?;
        Ok(Step::Redirect(url))
    }
}
