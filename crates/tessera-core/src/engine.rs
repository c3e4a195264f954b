//! The engine: everything a request needs (settings, store, keys, master key, clock, chain),
//! and the entry points the HTTP edge calls. One call per request: the edge extracts, calls
//! the engine, and maps the result to the wire.

use std::sync::Arc;

use crate::authn::Chain;
use crate::clock::{SharedClock, UnixTime};
use crate::error::{OAuthError, OAuthResult};
use crate::keys::KeyManager;
use crate::lockout::{AttemptOutcome, ClientAuthFailure};
use crate::model::{AuthMethod, Client};
use crate::oauth::client_auth::{self, PresentedClient};
use crate::oauth::params::Params;
use crate::oauth::scope::Scope;
use crate::oauth::{RequestContext, TokenResponse, grant_type};
use crate::secrets::{MasterKey, PasswordHasher};
use crate::settings::Settings;
use crate::store::Store;

pub struct Engine {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyManager>,
    pub master: MasterKey,
    pub clock: SharedClock,
    pub passwords: PasswordHasher,
    pub chain: Chain,
    /// Delivers back-channel logout tokens (the HTTP sender lives in tessera-http).
    pub backchannel: Arc<dyn crate::interactive::BackchannelSender>,
    /// Keys for client and grant assertions: parsed inline keys and cached `jwks_uri`
    /// documents. `Engine::new` sets one without a network source; the binary replaces it with
    /// `JwksCache::new(Some(source))` to enable `jwks_uri`.
    pub jwks: crate::assertion::JwksCache,
    /// Soft-lockout counters (see `crate::lockout`), exported on `/metrics`.
    pub lockout_metrics: Arc<crate::lockout::LockoutMetrics>,
    /// Debug switch, recent authentication traces, failure catalog, unredeemed-code monitor.
    pub diagnostics: Arc<crate::diagnostics::Diagnostics>,
    /// Upstream OpenID providers (`crate::federation`); the binary installs the configured ones.
    pub upstreams: crate::federation::Upstreams,
    /// Client records read on every token request (see `crate::cache`).
    client_cache: crate::cache::TtlCache<Option<Arc<Client>>>,
    /// Client lockout state, read on every client authentication.
    pub(crate) client_lock_cache: crate::cache::TtlCache<Option<crate::lockout::LockoutRecord>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

/// A client that proved who it is (or a public client identified by `client_id`).
#[derive(Debug, Clone)]
pub struct AuthenticatedClient {
    pub client: Arc<Client>,
    pub method: AuthMethod,
}

/// Which endpoint is authenticating the client (assertion audiences may differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Introspection,
    Revocation,
}

/// What an [`Engine`] is built from; fields added to the engine later get defaults in
/// [`Engine::new`], so callers keep compiling.
pub struct EngineParts {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyManager>,
    pub master: MasterKey,
    pub clock: SharedClock,
    pub passwords: PasswordHasher,
    pub chain: Chain,
}

impl Engine {
    pub fn new(p: EngineParts) -> Self {
        let cache_ttl = std::time::Duration::from_millis(p.settings.client_cache_ttl_ms);
        Self {
            settings: p.settings,
            store: p.store,
            keys: p.keys,
            master: p.master,
            clock: p.clock,
            passwords: p.passwords,
            chain: p.chain,
            backchannel: Arc::new(crate::interactive::NoBackchannel),
            jwks: crate::assertion::JwksCache::default(),
            lockout_metrics: Arc::default(),
            diagnostics: Arc::default(),
            upstreams: crate::federation::Upstreams::default(),
            client_cache: crate::cache::TtlCache::new(cache_ttl, 10_000),
            client_lock_cache: crate::cache::TtlCache::new(cache_ttl, 10_000),
        }
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// A client record, from this node's short-lived cache or the store (shared, not copied:
    /// it is read on every token request).
    pub async fn client(&self, client_id: &str) -> crate::store::StoreResult<Option<Arc<Client>>> {
        if let Some(hit) = self.client_cache.get(client_id) {
            return Ok(hit);
        }
        let found = self.store.get_client(client_id).await?.map(Arc::new);
        self.client_cache.put(client_id, found.clone());
        Ok(found)
    }

    /// Drop a cached client record after changing it through this node.
    pub fn forget_client(&self, client_id: &str) {
        self.client_cache.invalidate(client_id);
    }

    /// The scopes a client may request: its registered `scope`, else everything supported.
    pub fn client_scope(&self, client: &Client) -> Scope {
        match &client.scope {
            Some(s) => Scope::parse(s).unwrap_or_default(),
            None => Scope::from_tokens(self.settings.scopes_supported.iter().cloned()),
        }
    }

    /// RFC 8707 `resource` → access token audience (absolute URI without fragment).
    pub fn resource_audience(&self, params: &Params) -> OAuthResult<Option<String>> {
        let Some(resource) = params.get("resource") else {
            return Ok(None);
        };
        match url::Url::parse(resource) {
            Ok(u) if u.fragment().is_none() => Ok(Some(resource.to_owned())),
            _ => Err(OAuthError::new(
                crate::error::ErrorCode::InvalidRequest,
                "resource must be an absolute URI without a fragment (RFC 8707 §2)",
            )),
        }
    }

    /// Authenticate the caller of an endpoint (RFC 6749 §2.3, §3.2.1).
    /// `required = false` admits public clients identified by `client_id` only.
    /// Presented credentials go through the client soft lockout (`crate::lockout`), keyed by
    /// (`client_id`, source address) by default: a locked key is refused before any check, and
    /// only genuine credential rejections are counted.
    pub async fn authenticate_client(
        &self,
        presented: &PresentedClient,
        endpoint: Endpoint,
        ctx: &RequestContext,
    ) -> OAuthResult<AuthenticatedClient> {
        let Some(key) = self.client_lockout_key(presented, ctx) else {
            return self
                .authenticate_client_unguarded(presented, endpoint, ctx)
                .await
                .map_err(|f| f.error);
        };
        let attempt = self
            .client_lockout_begin(key, presented.challenge(), ctx)
            .await?;
        let result = self
            .authenticate_client_unguarded(presented, endpoint, ctx)
            .await;
        let outcome = match &result {
            Ok(_) => AttemptOutcome::Success,
            Err(f) if f.counts => AttemptOutcome::CredentialFailure,
            Err(_) => AttemptOutcome::Neutral,
        };
        self.client_lockout_finish(attempt, outcome, ctx).await;
        result.map_err(|f| f.error)
    }

    async fn authenticate_client_unguarded(
        &self,
        presented: &PresentedClient,
        endpoint: Endpoint,
        ctx: &RequestContext,
    ) -> Result<AuthenticatedClient, ClientAuthFailure> {
        let now = self.now();
        let challenge = presented.challenge();
        if let PresentedClient::Assertion {
            client_id,
            assertion,
        } = presented
        {
            return self
                .authenticate_client_assertion(client_id.as_deref(), assertion, endpoint, ctx, now)
                .await
                .map_err(|e| {
                    // A key source that could not be fetched is an outage, not a bad credential.
                    let outage = e
                        .description
                        .as_deref()
                        .is_some_and(|d| d.starts_with("could not fetch"));
                    ClientAuthFailure {
                        counts: e.code == crate::error::ErrorCode::InvalidClient && !outage,
                        error: e,
                    }
                });
        }
        let Some(client_id) = presented.client_id_hint() else {
            return Err(
                OAuthError::invalid_client("client authentication is required")
                    .with_challenge(challenge)
                    .into(),
            );
        };
        let client = match self.client(client_id).await.map_err(OAuthError::from)? {
            Some(c) if !c.disabled => c,
            Some(_) => {
                return Err(OAuthError::invalid_client("client authentication failed")
                    .with_cause(format!("client '{client_id}' is disabled"))
                    .with_challenge(challenge)
                    .into());
            }
            None => {
                // Same work as a real check: no timing difference for unknown ids.
                let _ = self.master.verify_client_secret("", "");
                let e = OAuthError::invalid_client("client authentication failed")
                    .with_cause(format!("unknown client '{client_id}'"))
                    .with_challenge(challenge);
                // Counted like a wrong secret, so a lock reveals nothing about which ids exist.
                return Err(ClientAuthFailure::counted(e));
            }
        };
        client_auth::check_method(&client, presented)?;
        match presented {
            PresentedClient::Basic { secret, .. } | PresentedClient::Post { secret, .. } => {
                let Some(hash) = client.secret_hash.as_deref() else {
                    return Err(OAuthError::invalid_client("client authentication failed")
                        .with_cause("client has no secret")
                        .with_challenge(challenge)
                        .into());
                };
                if !self.master.verify_client_secret(secret.expose(), hash) {
                    return Err(ClientAuthFailure::counted(
                        OAuthError::invalid_client("client authentication failed")
                            .with_cause(format!("wrong secret for client '{client_id}'"))
                            .with_challenge(challenge),
                    ));
                }
                // RFC 7591 §3.2.1: 0 means the secret never expires.
                if client.client_secret_expires_at != 0 && client.client_secret_expires_at <= now {
                    return Err(OAuthError::invalid_client("client secret has expired")
                        .with_challenge(challenge)
                        .into());
                }
                let method = client.token_endpoint_auth_method;
                Ok(AuthenticatedClient { client, method })
            }
            PresentedClient::Anonymous { .. } => Ok(AuthenticatedClient {
                client,
                method: AuthMethod::None,
            }),
            PresentedClient::Assertion { .. } => {
                Err(OAuthError::server_error("unreachable: assertion handled above").into())
            }
        }
    }

    /// Client assertions (`private_key_jwt`, `client_secret_jwt`): see `crate::assertion`.
    async fn authenticate_client_assertion(
        &self,
        client_id: Option<&str>,
        assertion: &str,
        endpoint: Endpoint,
        ctx: &RequestContext,
        now: UnixTime,
    ) -> OAuthResult<AuthenticatedClient> {
        crate::assertion::authenticate_client(self, client_id, assertion, endpoint, ctx, now).await
    }

    /// The token endpoint (RFC 6749 §3.2): common checks, then one grant.
    pub async fn token(
        &self,
        authorization: Option<&str>,
        params: &Params,
        ctx: &RequestContext,
    ) -> OAuthResult<TokenResponse> {
        let gt = params.require("grant_type")?;
        if !grant_type::ALL.contains(&gt) {
            return Err(OAuthError::new(
                crate::error::ErrorCode::UnsupportedGrantType,
                format!("grant_type '{gt}' is not supported"),
            ));
        }
        let presented = client_auth::extract(authorization, params)?;
        // RFC 7523 §3.1: client authentication is optional for the jwt-bearer grant.
        let client = if gt == grant_type::JWT_BEARER
            && matches!(presented, PresentedClient::Anonymous { client_id: None })
        {
            None
        } else {
            let c = self
                .authenticate_client(&presented, Endpoint::Token, ctx)
                .await?;
            if !c.client.allows_grant(gt) {
                return Err(OAuthError::unauthorized_client(format!(
                    "client '{}' is not allowed to use grant_type '{gt}'",
                    c.client.client_id
                )));
            }
            Some(c)
        };
        let now = self.now();
        match (gt, client) {
            (grant_type::CLIENT_CREDENTIALS, Some(c)) => {
                self.grant_client_credentials(&c.client, params, now).await
            }
            (grant_type::JWT_BEARER, Some(c)) => {
                crate::assertion::grant_jwt_bearer(self, Some(&c.client), params, ctx, now).await
            }
            (grant_type::JWT_BEARER, None) => {
                self.guarded_anonymous_jwt_bearer(params, ctx, now).await
            }
            (grant_type::AUTHORIZATION_CODE, Some(c)) => {
                crate::interactive::grant_authorization_code(self, &c.client, params, now).await
            }
            (grant_type::REFRESH_TOKEN, Some(c)) => {
                crate::interactive::grant_refresh_token(self, &c.client, params, now).await
            }
            _ => Err(OAuthError::invalid_client(
                "client authentication is required",
            )),
        }
    }
}
