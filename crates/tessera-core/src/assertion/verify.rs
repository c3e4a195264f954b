//! The one validation pipeline for JWT assertions, shared by the token endpoint (client
//! authentication and the jwt-bearer grant) and `tessera assertion check`. Every check is
//! recorded with what was expected and what the assertion carried — into the request trace and
//! into the report the CLI prints — and never the signature or any secret.

use serde::Serialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use tessera_jose::validate::{AudienceRule, ClaimFailure, Expectations, check_claims};
use tessera_jose::{
    Algorithm, Error as JoseError, HmacKey, Limits, UnverifiedJwt, VerifiedJwt, decode_compact,
};

use super::keys::{parse_jwks_value, parse_public_key_pem};
use super::trust::{AllowedClients, TrustedAudience, TrustedIssuer, matches_any};
use crate::clock::UnixTime;
use crate::engine::Engine;
use crate::error::{OAuthError, OAuthResult};
use crate::model::{AuthMethod, Client};
use crate::oauth::scope::Scope;
use crate::registration::{CLIENT_ASSERTION_ALGS, CLIENT_SECRET_JWT_ALGS};
use crate::trace::TraceHandle;

/// Google's token URL, hard-coded as `aud` by google-auth ≥ 2.0 whatever the key file says.
pub const GOOGLE_TOKEN_AUDIENCE: &str = "https://oauth2.googleapis.com/token";

/// What an assertion is being validated for (decides the error code: RFC 7523 §3.1 / §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// `client_assertion` (RFC 7523 §2.2): failures are `invalid_client`.
    ClientAuth,
    /// jwt-bearer grant `assertion` (RFC 7523 §2.1): failures are `invalid_grant`.
    Grant,
}

/// One check: what was expected, what the assertion carried, and the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckLine {
    pub name: String,
    pub expected: String,
    pub actual: String,
    pub ok: bool,
}

/// A successful grant validation: what the access token will say.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantDecision {
    /// "service_account" or "trusted_issuer".
    pub issuer_kind: &'static str,
    pub issuer: String,
    pub subject: String,
    pub client_id: String,
    pub scope: Scope,
    /// The assertion's `exp`: the token must not outlive it (RFC 7521 §4.1).
    pub not_after: UnixTime,
    /// Extra access-token claims (`act` for impersonation, RFC 8693 §4.1).
    pub extra: Map<String, Value>,
}

/// Records a check with [`Run::record`]; the texts of a passed check are only built when they
/// will be read (see `Run::collect`).
macro_rules! record {
    ($run:expr, $name:expr, $expected:expr, $actual:expr, $ok:expr $(,)?) => {{
        let ok: bool = $ok;
        if !ok || $run.collect {
            $run.record($name, $expected, $actual, ok);
        }
    }};
}

pub(crate) struct Run<'a> {
    pub engine: &'a Engine,
    trace: &'a TraceHandle,
    pub purpose: Purpose,
    pub checks: Vec<CheckLine>,
    /// `tessera assertion check`: no jti is consumed.
    dry_run: bool,
    /// Whether passed checks are recorded too (the CLI report or an active trace); failed
    /// checks always are. Skipping them keeps the hot path free of their text.
    collect: bool,
    first_error: Option<OAuthError>,
}

fn claim_str<'m>(claims: &'m Map<String, Value>, name: &str) -> Option<&'m str> {
    claims.get(name).and_then(Value::as_str)
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(96).collect();
    if s.chars().count() > 96 {
        out.push_str("...");
    }
    out
}

fn algs_text(algs: &[Algorithm]) -> String {
    algs.iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'a> Run<'a> {
    pub fn new(
        engine: &'a Engine,
        trace: &'a TraceHandle,
        purpose: Purpose,
        dry_run: bool,
    ) -> Self {
        let collect = dry_run || trace.is_on();
        Self {
            engine,
            trace,
            purpose,
            checks: Vec::with_capacity(if collect { 16 } else { 2 }),
            collect,
            dry_run,
            first_error: None,
        }
    }

    fn record(
        &mut self,
        name: &str,
        expected: impl Into<String>,
        actual: impl Into<String>,
        ok: bool,
    ) {
        let (expected, actual) = (expected.into(), actual.into());
        self.trace.step(
            "assertion",
            format!("check:{name}"),
            if ok { "ok" } else { "failed" },
            || {
                crate::detail! {"expected" => expected.clone(), "actual" => actual.clone()}
            },
        );
        self.checks.push(CheckLine {
            name: name.to_owned(),
            expected,
            actual,
            ok,
        });
    }

    /// The error for this purpose (RFC 7523 §3.1 `invalid_grant`, §3.2 `invalid_client`).
    pub fn fail(&self, description: impl Into<Cow<'static, str>>) -> OAuthError {
        match self.purpose {
            Purpose::ClientAuth => OAuthError::invalid_client(description),
            Purpose::Grant => OAuthError::invalid_grant(description),
        }
    }

    /// Remember the first failure but keep checking (so the report shows everything).
    fn note(&mut self, e: OAuthError) {
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }

    fn take_error(&mut self) -> OAuthResult<()> {
        match self.first_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Size limit, compact JWS structure, `alg` (never `none`), `crit`, JWE (RFC 7515, 7519).
    pub fn decode(&mut self, assertion: &str) -> OAuthResult<UnverifiedJwt> {
        let max = self.engine.settings.max_jwt_bytes;
        let size_ok = assertion.len() <= max;
        record!(
            self,
            "size",
            format!("at most {max} bytes"),
            format!("{} bytes", assertion.len()),
            size_ok,
        );
        if !size_ok {
            return Err(self.fail(format!("assertion is larger than {max} bytes")));
        }
        let limits = Limits {
            max_token_bytes: max,
            ..Limits::default()
        };
        let jwt = match decode_compact(assertion, &limits) {
            Ok(j) => j,
            Err(e) => {
                record!(
                    self,
                    "format",
                    "a signed JWT (compact JWS, alg not none, no unknown crit)",
                    e.to_string(),
                    false,
                );
                let msg = match e {
                    JoseError::AlgNone => "alg none is not allowed".to_owned(),
                    other => other.to_string(),
                };
                return Err(self.fail(msg));
            }
        };
        let h = jwt.header();
        record!(
            self,
            "format",
            "a signed JWT (compact JWS)",
            format!("JWS, alg {}", h.alg),
            true,
        );
        record!(
            self,
            "kid",
            "optional",
            h.kid
                .as_deref()
                .map(short)
                .unwrap_or_else(|| "(absent)".into()),
            true,
        );
        record!(
            self,
            "typ",
            "optional (JWT or client-authentication+jwt)",
            h.typ.clone().unwrap_or_else(|| "(absent)".into()),
            true,
        );
        // RFC 8725 §3.10 / the jose crate: key references in the header are never followed.
        let ignored = h.ignored_key_references();
        record!(
            self,
            "key references",
            "jku, x5u, jwk, x5c never used",
            if ignored.is_empty() {
                "none".to_owned()
            } else {
                format!("{} present, ignored", ignored.join(", "))
            },
            true,
        );
        Ok(jwt)
    }

    fn check_alg(
        &mut self,
        jwt: &UnverifiedJwt,
        allowed: &[Algorithm],
        whose: &str,
    ) -> OAuthResult<()> {
        let alg = jwt.header().alg;
        let ok = allowed.contains(&alg);
        record!(
            self,
            "alg",
            format!("one of [{}]", algs_text(allowed)),
            alg.as_str(),
            ok,
        );
        if ok {
            Ok(())
        } else {
            Err(self.fail(format!("alg {alg} is not allowed for this {whose}")))
        }
    }

    fn describe_key_error(&self, e: &JoseError, jwt: &UnverifiedJwt, whose: &str) -> OAuthError {
        let alg = jwt.header().alg;
        match e {
            JoseError::InvalidSignature | JoseError::KidMismatch => self.fail("signature invalid"),
            JoseError::UnknownKey => match jwt.header().kid.as_deref() {
                Some(kid) => self.fail(format!("no key of this {whose} has kid '{}'", short(kid))),
                None => self.fail(format!("no key of this {whose} can verify {alg}")),
            },
            JoseError::KeyAlgorithmMismatch => {
                self.fail(format!("the key of this {whose} cannot be used with {alg}"))
            }
            JoseError::AlgorithmNotAllowed { alg } => {
                self.fail(format!("alg {alg} is not allowed for this {whose}"))
            }
            other => self.fail(other.to_string()),
        }
    }

    fn record_signature(
        &mut self,
        result: &Result<VerifiedJwt, JoseError>,
        jwt: &UnverifiedJwt,
        source: &str,
    ) {
        if result.is_ok() && !self.collect {
            return;
        }
        let actual = match result {
            Ok(v) => format!(
                "valid (key {})",
                v.key_id()
                    .map(short)
                    .unwrap_or_else(|| "without kid".into())
            ),
            // Which key the token asked for: the administrator compares it with the jwks.
            Err(e @ JoseError::UnknownKey) => format!(
                "{e}: kid '{}', alg {}",
                jwt.header()
                    .kid
                    .as_deref()
                    .map(short)
                    .unwrap_or_else(|| "(absent)".into()),
                jwt.header().alg
            ),
            Err(e) => e.to_string(),
        };
        record!(
            self,
            "signature",
            format!("valid under {source}"),
            actual,
            result.is_ok(),
        );
    }

    /// Verify with keys registered inline (`jwks`, PEM) or published at a `jwks_uri`
    /// (cached; one rate-limited refetch on an unknown `kid`, OIDC Core §10.1.1).
    async fn verify_asymmetric(
        &mut self,
        jwt: &UnverifiedJwt,
        allowed: &[Algorithm],
        keys: KeySource<'_>,
        whose: &str,
        now: UnixTime,
    ) -> OAuthResult<VerifiedJwt> {
        let cache = &self.engine.jwks;
        let (result, source) = match keys {
            KeySource::Inline { id, doc } => match cache.local_keys(id, doc, parse_jwks_value) {
                Ok(k) => (
                    jwt.verify_with_any(&k[..], allowed),
                    format!("the {whose}'s registered jwks"),
                ),
                Err(e) => {
                    record!(
                        self,
                        "signature",
                        "a usable registered key",
                        e.clone(),
                        false
                    );
                    return Err(self
                        .fail(format!("the {whose}'s registered keys are unusable"))
                        .with_cause(e));
                }
            },
            KeySource::Pem { id, pem } => {
                let doc = Value::String(pem.to_owned());
                let parsed = cache.local_keys(id, &doc, |d| {
                    parse_public_key_pem(d.as_str().unwrap_or_default()).map(|k| vec![k])
                });
                match parsed {
                    Ok(k) => (
                        jwt.verify_with_any(&k[..], allowed),
                        format!("the {whose}'s PEM public key"),
                    ),
                    Err(e) => {
                        record!(
                            self,
                            "signature",
                            "a usable PEM public key",
                            e.clone(),
                            false
                        );
                        return Err(self
                            .fail(format!("the {whose}'s public key is unusable"))
                            .with_cause(e));
                    }
                }
            }
            KeySource::Uri(uri) => {
                let source = format!("keys from {}", short(uri));
                let first = match cache.remote_keys(uri, now, false).await {
                    Ok(k) => k,
                    Err(e) => {
                        record!(
                            self,
                            "signature",
                            source,
                            format!("could not fetch keys: {}", e.class),
                            false,
                        );
                        return Err(self
                            .fail(format!(
                                "could not fetch the {whose}'s jwks_uri: {}",
                                e.class
                            ))
                            .with_cause(e.detail));
                    }
                };
                let mut result = jwt.verify_with_any(&first.keys, allowed);
                let retry = match &result {
                    Err(JoseError::UnknownKey) => true,
                    Err(JoseError::InvalidSignature) => jwt.header().kid.is_none(),
                    _ => false,
                };
                if retry && !first.fetched {
                    match cache.remote_keys(uri, now, true).await {
                        Ok(again) if again.fetched => {
                            record!(
                                self,
                                "jwks refresh",
                                "refetch once on unknown key",
                                "refetched",
                                true,
                            );
                            result = jwt.verify_with_any(&again.keys, allowed);
                        }
                        Ok(_) => record!(
                            self,
                            "jwks refresh",
                            "refetch once on unknown key",
                            "rate-limited (recently fetched)",
                            true,
                        ),
                        Err(e) => {
                            record!(
                                self,
                                "jwks refresh",
                                "refetch once on unknown key",
                                format!("failed: {}", e.class),
                                false,
                            );
                            return Err(self
                                .fail(format!(
                                    "could not fetch the {whose}'s jwks_uri: {}",
                                    e.class
                                ))
                                .with_cause(e.detail));
                        }
                    }
                }
                (result, source)
            }
            KeySource::None => {
                record!(
                    self,
                    "signature",
                    "registered keys",
                    "the issuer has no keys",
                    false,
                );
                return Err(self.fail(format!("this {whose} has no registered keys")));
            }
        };
        self.record_signature(&result, jwt, &source);
        result.map_err(|e| self.describe_key_error(&e, jwt, whose))
    }

    /// RFC 7519 claims with this server's rules; records every check; the error is the first
    /// failure, phrased for the client.
    fn check_claims(
        &mut self,
        claims: &Map<String, Value>,
        exp: &Expectations,
        audiences: &[String],
    ) -> OAuthResult<()> {
        let report = check_claims(claims, exp);
        for c in &report.checks {
            record!(self, c.name, c.expected.clone(), c.actual.clone(), c.ok);
        }
        let Some(f) = report.first_failure else {
            return Ok(());
        };
        let msg: String = match f {
            ClaimFailure::AudienceMismatch
            | ClaimFailure::MissingAudience
            | ClaimFailure::MalformedClaim("aud") => {
                audience_failure(claims.get("aud"), &exp.audience, audiences)
            }
            ClaimFailure::Expired => "assertion has expired".into(),
            ClaimFailure::NotYetValid => "assertion is not yet valid".into(),
            ClaimFailure::IssuedInFuture => "assertion was issued in the future (iat)".into(),
            ClaimFailure::LifetimeTooLong => {
                format!(
                    "assertion lifetime exceeds {} seconds",
                    exp.max_lifetime.unwrap_or_default()
                )
            }
            ClaimFailure::MissingJti => "jti claim is missing".into(),
            ClaimFailure::SubjectMismatch if self.purpose == Purpose::ClientAuth => {
                "sub must equal the client_id (iss)".into()
            }
            other => other.to_string(),
        };
        Err(self.fail(msg))
    }

    /// Single use of `jti` until `exp` + skew, in the shared store (durable, cross-node).
    async fn replay(
        &mut self,
        key: String,
        claims: &Map<String, Value>,
        now: UnixTime,
    ) -> OAuthResult<()> {
        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .unwrap_or(now as f64)
            .ceil() as i64;
        let until = exp.saturating_add(self.engine.settings.clock_skew as i64);
        if self.dry_run {
            record!(
                self,
                "jti replay",
                "not used before",
                "not checked (dry run: jti not consumed)",
                true,
            );
            return Ok(());
        }
        let first = self.engine.store.remember_once(&key, until, now).await?;
        record!(
            self,
            "jti replay",
            "not used before",
            if first { "first use" } else { "already used" },
            first,
        );
        if first {
            Ok(())
        } else {
            Err(self.fail("jti has already been used"))
        }
    }

    fn expectations(&self, now: UnixTime, audience: AudienceRule) -> Expectations {
        let s = &self.engine.settings;
        let mut e = Expectations::new(now, audience);
        e.leeway = s.clock_skew;
        e.max_lifetime = Some(s.max_assertion_lifetime);
        e
    }

    // --- client authentication (RFC 7523 §2.2, §3; OIDC Core §9) ---------------------------

    pub async fn client(
        &mut self,
        client_id_param: Option<&str>,
        assertion: &str,
        now: UnixTime,
    ) -> OAuthResult<std::sync::Arc<Client>> {
        let jwt = self.decode(assertion)?;
        let iss = claim_str(jwt.claims(), "iss").map(str::to_owned);
        // RFC 7521 §4.2: a client_id parameter must identify the same client as the assertion.
        if let Some(cid) = client_id_param {
            let ok = iss.as_deref() == Some(cid);
            record!(
                self,
                "client_id",
                format!(
                    "equal to iss ({})",
                    iss.as_deref()
                        .map(short)
                        .unwrap_or_else(|| "(absent)".into())
                ),
                short(cid),
                ok,
            );
            if !ok {
                return Err(self.fail("client_id does not match the assertion"));
            }
        }
        let Some(client_id) = iss else {
            let (actual, msg) = iss_problem(jwt.claims());
            record!(self, "iss", "the client_id", actual, false);
            return Err(self.fail(msg));
        };
        let client = match self.engine.client(&client_id).await? {
            Some(c) if !c.disabled => c,
            found => {
                let what = if found.is_some() {
                    "disabled"
                } else {
                    "unknown"
                };
                record!(
                    self,
                    "client",
                    "a registered, enabled client",
                    format!("{} ({what})", short(&client_id)),
                    false,
                );
                return Err(self
                    .fail("unknown client")
                    .with_cause(format!("client '{client_id}' is {what}")));
            }
        };
        let method = client.token_endpoint_auth_method;
        let method_ok = matches!(
            method,
            AuthMethod::PrivateKeyJwt | AuthMethod::ClientSecretJwt
        );
        record!(
            self,
            "client",
            "registered for private_key_jwt or client_secret_jwt",
            format!("{} ({})", short(&client_id), method.as_str()),
            method_ok,
        );
        if !method_ok {
            return Err(self.fail(format!(
                "client is registered for {}, not a client assertion",
                method.as_str()
            )));
        }
        let allowed = client_algs(&client);
        self.check_alg(&jwt, &allowed, "client")?;

        let verified = if method == AuthMethod::ClientSecretJwt {
            self.verify_client_secret_jwt(&jwt, &client, &allowed, now)
        } else {
            let id = format!("client:{client_id}");
            let source = match (&client.jwks, &client.jwks_uri) {
                (Some(doc), _) => KeySource::Inline { id: &id, doc },
                (None, Some(uri)) => KeySource::Uri(uri),
                _ => KeySource::None,
            };
            self.verify_asymmetric(&jwt, &allowed, source, "client", now)
                .await
        };
        if let Err(e) = verified {
            self.note(e);
        }

        // RFC 7523 §3 + OIDC Core §9: iss = sub = client_id, aud identifies this server as the
        // sole audience (rfc7523bis), exp required, jti required.
        let audiences = client_audiences(self.engine);
        let mut exp = self.expectations(now, AudienceRule::SoleOf(audiences.clone()));
        exp.issuer = Some(vec![client_id.clone()]);
        exp.subject = Some(client_id.clone());
        exp.require_sub = true;
        exp.require_jti = true;
        if let Err(e) = self.check_claims(jwt.claims(), &exp, &audiences) {
            self.note(e);
        }
        self.take_error()?;
        if let Some(jti) = claim_str(jwt.claims(), "jti") {
            self.replay(format!("client-jti:{client_id}:{jti}"), jwt.claims(), now)
                .await?;
        }
        Ok(client)
    }

    fn verify_client_secret_jwt(
        &mut self,
        jwt: &UnverifiedJwt,
        client: &Client,
        allowed: &[Algorithm],
        now: UnixTime,
    ) -> OAuthResult<VerifiedJwt> {
        let alg = jwt.header().alg;
        // OIDC Core §9: HMAC keyed with the octets of the client secret, which is stored sealed
        // (AES-256-GCM under the master key, context "client-secret:<client_id>").
        let secret = match &client.secret_sealed {
            Some(sealed) => self.engine.master.unseal(
                sealed,
                &crate::registration::client_secret_context(&client.client_id),
            ),
            None => {
                record!(
                    self,
                    "signature",
                    "the client secret (HMAC)",
                    "no recoverable secret registered",
                    false,
                );
                return Err(self
                    .fail("client authentication failed")
                    .with_cause("client_secret_jwt client has no sealed secret"));
            }
        };
        let secret = match secret {
            Ok(s) => zeroize_later(s),
            Err(e) => {
                record!(
                    self,
                    "signature",
                    "the client secret (HMAC)",
                    "secret cannot be unsealed",
                    false,
                );
                return Err(self.fail("client authentication failed").with_cause(e));
            }
        };
        if client.client_secret_expires_at != 0 && client.client_secret_expires_at <= now {
            record!(
                self,
                "secret expiry",
                "not expired",
                format!("expired at {}", client.client_secret_expires_at),
                false,
            );
            return Err(self.fail("client secret has expired"));
        }
        let key = HmacKey::new(alg, &secret.0)
            .map_err(|e| self.fail("client authentication failed").with_cause(e))?;
        // RFC 7518 §3.2: the key must be at least as long as the hash output (HS384: 48 octets,
        // HS512: 64); a shorter secret is refused rather than used below its strength.
        if !key.meets_rfc7518_minimum() {
            record!(
                self,
                "signature",
                format!("a client secret long enough for {alg} (RFC 7518 §3.2)"),
                "the client secret is shorter than the hash output",
                false,
            );
            return Err(self.fail(format!(
                "the client secret is too short for {alg} (RFC 7518 §3.2); use HS256 or a longer secret"
            )));
        }
        let result = jwt.verify_hmac(&key, allowed);
        self.record_signature(&result, jwt, "the client secret (HMAC)");
        result.map_err(|e| self.describe_key_error(&e, jwt, "client"))
    }

    // --- jwt-bearer grant (RFC 7523 §2.1, §3) -----------------------------------------------

    pub async fn grant(
        &mut self,
        assertion: &str,
        presenter: Option<&Client>,
        scope_param: Option<&str>,
        now: UnixTime,
    ) -> OAuthResult<GrantDecision> {
        let jwt = self.decode(assertion)?;
        let Some(iss) = claim_str(jwt.claims(), "iss").map(str::to_owned) else {
            let (actual, msg) = iss_problem(jwt.claims());
            record!(
                self,
                "iss",
                "a service account or a trusted issuer",
                actual,
                false,
            );
            return Err(self.fail(msg));
        };
        let settings = self.engine.settings.clone();
        if let Some(t) = settings.trusted_issuers.iter().find(|t| t.issuer == iss) {
            record!(
                self,
                "issuer",
                "a service account or a trusted issuer",
                format!("trusted issuer {}", short(&iss)),
                true,
            );
            return self.trusted(&jwt, t, presenter, scope_param, now).await;
        }
        match self.engine.client(&iss).await? {
            Some(c) if c.service_account.is_some() => {
                record!(
                    self,
                    "issuer",
                    "a service account or a trusted issuer",
                    format!("service account {}", short(&iss)),
                    !c.disabled,
                );
                if c.disabled {
                    return Err(self.fail("service account is disabled"));
                }
                self.service_account(&jwt, &c, presenter, scope_param, now)
                    .await
            }
            _ => {
                record!(
                    self,
                    "issuer",
                    "a service account or a trusted issuer",
                    short(&iss),
                    false,
                );
                Err(self.fail("unknown issuer"))
            }
        }
    }

    async fn service_account(
        &mut self,
        jwt: &UnverifiedJwt,
        account: &Client,
        presenter: Option<&Client>,
        scope_param: Option<&str>,
        now: UnixTime,
    ) -> OAuthResult<GrantDecision> {
        let id = account.client_id.clone();
        let allowed = match account
            .token_endpoint_auth_signing_alg
            .as_deref()
            .and_then(|a| a.parse::<Algorithm>().ok())
        {
            Some(a) if !a.is_hmac() => vec![a],
            _ => CLIENT_ASSERTION_ALGS.to_vec(),
        };
        self.check_alg(jwt, &allowed, "service account")?;
        let cache_id = format!("client:{id}");
        let source = match (&account.jwks, &account.jwks_uri) {
            (Some(doc), _) => KeySource::Inline { id: &cache_id, doc },
            (None, Some(uri)) => KeySource::Uri(uri),
            _ => KeySource::None,
        };
        if let Err(e) = self
            .verify_asymmetric(jwt, &allowed, source, "service account", now)
            .await
        {
            self.note(e);
        }
        // Audience: this server (issuer or token endpoint), and — only for service-account keys
        // this server issued — Google's token URL, which google-auth hard-codes.
        let mut audiences = vec![
            self.engine.settings.issuer.clone(),
            self.engine.settings.token_endpoint(),
        ];
        if self.engine.settings.accept_google_audience {
            audiences.push(GOOGLE_TOKEN_AUDIENCE.to_owned());
        }
        let mut exp = self.expectations(now, AudienceRule::SoleOf(audiences.clone()));
        exp.issuer = Some(vec![id.clone()]);
        if let Err(e) = self.check_claims(jwt.claims(), &exp, &audiences) {
            self.note(e);
        }
        // Subject: the account itself, or someone it may impersonate (allow-list only).
        let sub = claim_str(jwt.claims(), "sub");
        let subject = match sub {
            None => id.clone(),
            Some(s) if s == id => id.clone(),
            Some(s) => {
                let patterns = account
                    .service_account
                    .as_ref()
                    .map(|sa| sa.may_impersonate.clone())
                    .unwrap_or_default();
                let ok = matches_any(&patterns, s);
                record!(
                    self,
                    "impersonation",
                    if patterns.is_empty() {
                        "none allowed".to_owned()
                    } else {
                        format!("one of [{}]", patterns.join(", "))
                    },
                    short(s),
                    ok,
                );
                if !ok {
                    self.note(self.fail(format!(
                        "service account may not impersonate '{}'",
                        short(s)
                    )));
                }
                s.to_owned()
            }
        };
        let allowed_scope = self
            .engine
            .client_scope(account)
            .without(&["openid", "offline_access"]);
        let scope = self.scope(
            scope_param,
            jwt.claims(),
            &allowed_scope,
            &format!("service account '{id}'"),
        );
        self.take_error()?;
        let scope = scope?;
        if let Some(jti) = claim_str(jwt.claims(), "jti").filter(|j| !j.is_empty()) {
            self.replay(format!("grant-jti:{id}:{jti}"), jwt.claims(), now)
                .await?;
        }
        let mut extra = Map::new();
        if subject != id {
            // RFC 8693 §4.1: the account acts on behalf of the subject.
            extra.insert("act".into(), serde_json::json!({ "sub": id }));
        }
        Ok(GrantDecision {
            issuer_kind: "service_account",
            issuer: id.clone(),
            subject,
            client_id: presenter.map(|c| c.client_id.clone()).unwrap_or(id),
            scope,
            not_after: not_after(jwt.claims(), now),
            extra,
        })
    }

    async fn trusted(
        &mut self,
        jwt: &UnverifiedJwt,
        t: &TrustedIssuer,
        presenter: Option<&Client>,
        scope_param: Option<&str>,
        now: UnixTime,
    ) -> OAuthResult<GrantDecision> {
        // Which clients may present this issuer's assertions. A public client (method `none`)
        // only named itself: it counts as unauthenticated.
        let presenter = presenter.filter(|c| !c.is_public());
        let (expected, ok, err) = match (&t.allowed_clients, presenter) {
            (AllowedClients::Any, _) => ("any caller".to_owned(), true, None),
            (AllowedClients::Authenticated, Some(_)) => {
                ("an authenticated client".to_owned(), true, None)
            }
            (AllowedClients::Authenticated, None) | (AllowedClients::List(_), None) => (
                "an authenticated client".to_owned(),
                false,
                Some(OAuthError::invalid_client(
                    "client authentication is required to present assertions from this issuer",
                )),
            ),
            (AllowedClients::List(ids), Some(c)) => {
                let ok = ids.iter().any(|i| i == &c.client_id);
                (
                    format!("one of [{}]", ids.join(", ")),
                    ok,
                    (!ok).then(|| {
                        OAuthError::unauthorized_client(format!(
                            "client '{}' may not present assertions from this issuer",
                            c.client_id
                        ))
                    }),
                )
            }
        };
        record!(
            self,
            "presenter",
            expected,
            presenter
                .map(|c| short(&c.client_id))
                .unwrap_or_else(|| "(unauthenticated)".into()),
            ok,
        );
        if let Some(e) = err {
            return Err(e);
        }
        let allowed = if t.algorithms.is_empty() {
            CLIENT_ASSERTION_ALGS.to_vec()
        } else {
            t.algorithms.clone()
        };
        let allowed: Vec<Algorithm> = allowed.into_iter().filter(|a| !a.is_hmac()).collect();
        self.check_alg(jwt, &allowed, "issuer")?;
        let cache_id = format!("trusted:{}", t.issuer);
        let source = match (&t.jwks, &t.jwks_uri, &t.public_key_pem) {
            (Some(doc), _, _) => KeySource::Inline { id: &cache_id, doc },
            (None, Some(uri), _) => KeySource::Uri(uri),
            (None, None, Some(pem)) => KeySource::Pem { id: &cache_id, pem },
            _ => KeySource::None,
        };
        if let Err(e) = self
            .verify_asymmetric(jwt, &allowed, source, "issuer", now)
            .await
        {
            self.note(e);
        }
        let s = &self.engine.settings;
        // Never Google's audience here: an assertion made for Google must not be replayable.
        let audiences = match t.audience {
            TrustedAudience::Issuer => vec![s.issuer.clone()],
            TrustedAudience::TokenEndpoint => vec![s.token_endpoint()],
            TrustedAudience::Either => vec![s.issuer.clone(), s.token_endpoint()],
        };
        let mut exp = self.expectations(now, AudienceRule::SoleOf(audiences.clone()));
        exp.issuer = Some(vec![t.issuer.clone()]);
        exp.require_sub = true; // RFC 7523 §3 item 2
        exp.max_lifetime = Some(t.max_lifetime.unwrap_or(s.max_assertion_lifetime));
        if let Err(e) = self.check_claims(jwt.claims(), &exp, &audiences) {
            self.note(e);
        }
        // Subject mapping and rules.
        let principal = claim_str(jwt.claims(), &t.subject_claim).map(str::to_owned);
        let subject = match principal {
            None => {
                record!(
                    self,
                    "subject",
                    format!("claim '{}' present (a string)", t.subject_claim),
                    "(absent)",
                    false,
                );
                self.note(self.fail(format!(
                    "claim '{}' (the subject) is missing",
                    t.subject_claim
                )));
                String::new()
            }
            Some(p) => {
                let ok = matches_any(&t.allowed_subjects, &p);
                let expected = if t.allowed_subjects.is_empty() {
                    "none allowed (allowed_subjects is empty)".to_owned()
                } else {
                    format!("one of [{}]", t.allowed_subjects.join(", "))
                };
                record!(self, "subject", expected, short(&p), ok);
                if !ok {
                    self.note(self.fail(format!(
                        "subject '{}' is not allowed for this issuer",
                        short(&p)
                    )));
                }
                p
            }
        };
        let allowed_scope = Scope::from_tokens(t.allowed_scopes.iter().cloned());
        let scope = self.scope(scope_param, jwt.claims(), &allowed_scope, "this issuer");
        self.take_error()?;
        let scope = scope?;
        // Asserted identities skip passwords but not account state (disabled local users).
        if let Some(u) = self.engine.store.get_user(&subject).await? {
            record!(
                self,
                "account",
                "enabled",
                if u.disabled { "disabled" } else { "enabled" },
                !u.disabled,
            );
            if u.disabled {
                return Err(self.fail("the subject's account is disabled"));
            }
        }
        if let Some(jti) = claim_str(jwt.claims(), "jti").filter(|j| !j.is_empty()) {
            self.replay(format!("grant-jti:{}:{jti}", t.issuer), jwt.claims(), now)
                .await?;
        }
        Ok(GrantDecision {
            issuer_kind: "trusted_issuer",
            issuer: t.issuer.clone(),
            subject,
            client_id: presenter
                .map(|c| c.client_id.clone())
                .unwrap_or_else(|| t.issuer.clone()),
            scope,
            not_after: not_after(jwt.claims(), now),
            extra: Map::new(),
        })
    }

    /// Requested scope: the `scope` parameter, else the `scope` claim; `""` or absent means
    /// nothing requested, so the pre-defined default applies (RFC 6749 §3.3). It must be within
    /// what is allowed (RFC 7521 §4.1), else `invalid_scope`.
    fn scope(
        &mut self,
        param: Option<&str>,
        claims: &Map<String, Value>,
        allowed: &Scope,
        what: &str,
    ) -> OAuthResult<Scope> {
        let claim = match claims.get("scope") {
            None => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(Scope::parse(s)?),
            Some(_) => {
                record!(
                    self,
                    "scope",
                    "a space-separated string",
                    "not a string",
                    false
                );
                return Err(OAuthError::invalid_scope(
                    "the scope claim must be a string",
                ));
            }
        };
        let param = param.map(Scope::parse).transpose()?;
        let requested = match (param, claim) {
            (Some(p), Some(c)) => {
                if let Some(t) = p.first_outside(&c) {
                    record!(
                        self,
                        "scope",
                        format!("within the assertion's scope claim [{c}]"),
                        p.to_string(),
                        false,
                    );
                    return Err(OAuthError::invalid_scope(format!(
                        "scope '{t}' exceeds the assertion's scope claim"
                    )));
                }
                Some(p)
            }
            (p, c) => p.or(c),
        };
        let granted = match requested {
            Some(r) => {
                let res = r.ensure_within(allowed, what);
                record!(
                    self,
                    "scope",
                    format!("within [{allowed}]"),
                    r.to_string(),
                    res.is_ok(),
                );
                res?;
                r
            }
            None => {
                record!(
                    self,
                    "scope",
                    format!("within [{allowed}]"),
                    format!("(none requested: default [{allowed}])"),
                    true,
                );
                allowed.clone()
            }
        };
        Ok(granted)
    }
}

struct Zeroizing(Vec<u8>);
impl Drop for Zeroizing {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            *b = 0;
        }
    }
}
fn zeroize_later(v: Vec<u8>) -> Zeroizing {
    Zeroizing(v)
}

/// Why the `aud` check failed, for `error_description` (RFC 7521 §4.1.1 / §4.2.1 example text
/// first). The accepted values are this server's public identifiers, never a secret.
fn audience_failure(aud: Option<&Value>, rule: &AudienceRule, audiences: &[String]) -> String {
    let expected = audiences.join(" or ");
    let ours = |v: &Value| v.as_str().is_some_and(|a| audiences.iter().any(|w| w == a));
    match aud {
        None => format!("Audience validation failed: aud claim is missing (expected {expected})"),
        Some(Value::String(_)) => format!("Audience validation failed: expected {expected}"),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => match rule {
            AudienceRule::SoleOf(_) if items.len() > 1 && items.iter().any(ours) => {
                format!("Audience validation failed: expected {expected} as the only audience")
            }
            _ => format!("Audience validation failed: expected {expected}"),
        },
        Some(_) => format!(
            "Audience validation failed: aud must be a string or an array of strings (expected {expected})"
        ),
    }
}

/// What is wrong with an `iss` that is not a usable string: absent, or not a string
/// (RFC 7519 §4.1.1: a StringOrURI). Returns (trace text, error_description).
fn iss_problem(claims: &Map<String, Value>) -> (&'static str, &'static str) {
    match claims.get("iss") {
        None => ("(absent)", "iss claim is missing"),
        Some(_) => ("(not a string)", "iss claim is malformed"),
    }
}

fn not_after(claims: &Map<String, Value>, now: UnixTime) -> UnixTime {
    claims
        .get("exp")
        .and_then(Value::as_f64)
        .map(|e| e.floor() as i64)
        .unwrap_or(now)
}

pub(crate) enum KeySource<'k> {
    Inline { id: &'k str, doc: &'k Value },
    Uri(&'k str),
    Pem { id: &'k str, pem: &'k str },
    None,
}

/// The audiences a client assertion may carry as its sole `aud` (RFC 7523 §3 item 3 as
/// deployed; `Strict` = rfc7523bis: the issuer identifier only).
pub fn client_audiences(engine: &Engine) -> Vec<String> {
    let s = &engine.settings;
    match s.client_assertion_audience {
        crate::settings::ClientAssertionAudience::Strict => vec![s.issuer.clone()],
        crate::settings::ClientAssertionAudience::IssuerOrTokenEndpoint => {
            vec![s.issuer.clone(), s.token_endpoint()]
        }
    }
}

/// The algorithms a client's assertions may use: its `token_endpoint_auth_signing_alg` when
/// registered, else the set of its method (never `none`; HMAC only for `client_secret_jwt`).
pub fn client_algs(client: &Client) -> Vec<Algorithm> {
    let family: &[Algorithm] = match client.token_endpoint_auth_method {
        AuthMethod::ClientSecretJwt => &CLIENT_SECRET_JWT_ALGS,
        AuthMethod::PrivateKeyJwt => &CLIENT_ASSERTION_ALGS,
        _ => &[],
    };
    match client
        .token_endpoint_auth_signing_alg
        .as_deref()
        .and_then(|a| a.parse::<Algorithm>().ok())
    {
        Some(a) if family.contains(&a) => vec![a],
        Some(_) => Vec::new(),
        None => family.to_vec(),
    }
}
