//! Discovery metadata and the JWKS of an upstream, cached per upstream.
//!
//! - Discovery (OIDC Discovery 1.0 §4): `{issuer}/.well-known/openid-configuration`; the
//!   document's `issuer` must equal the configured issuer exactly (§4.3, RFC 8414 §3.3), else
//!   the metadata is rejected. Kept `discovery_ttl` seconds.
//! - JWKS: kept `jwks_ttl` seconds. An ID token whose `kid` is not in the cached set makes one
//!   refetch (OIDC Core §10.1.1), at most once per `jwks_min_refetch` seconds per upstream, so
//!   an upstream's key rotation needs no restart and a flood of forged `kid`s cannot make the
//!   server hammer the upstream.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tessera_jose::{JwkSet, VerifyingKey};

use super::failure::{FailureClass, Stage, UpstreamFailure};
use super::{TransportError, Upstream};
use crate::clock::UnixTime;
use crate::trace::TraceHandle;

/// Largest accepted discovery document or JWKS, bytes.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The parts of the discovery document the relying party uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub userinfo_endpoint: Option<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// RFC 9207 §3: the upstream sends `iss` in authorization responses.
    pub authorization_response_iss_parameter_supported: bool,
}

#[derive(Default)]
struct Inner {
    metadata: Option<(Arc<Metadata>, UnixTime)>,
    jwks: Option<(Arc<[VerifyingKey]>, UnixTime)>,
    /// Last JWKS fetch attempt (successful or not).
    jwks_attempt: Option<UnixTime>,
    /// Bumped by every successful JWKS fetch.
    jwks_generation: u64,
}

/// Per-upstream cache.
#[derive(Default)]
pub struct Cache {
    inner: Mutex<Inner>,
    /// One JWKS fetch at a time per upstream. A sign-in that waited for another's fetch (the
    /// upstream rotated its keys, many callbacks arrive at once) uses that fetch's keys instead
    /// of failing on the stale set or fetching again.
    fetch: tokio::sync::Mutex<()>,
}

impl Cache {
    /// The kids of the cached JWKS.
    pub(crate) fn kids(&self) -> Option<Vec<String>> {
        let g = self.inner.lock().ok()?;
        let (keys, _) = g.jwks.as_ref()?;
        Some(
            keys.iter()
                .map(|k| k.kid().unwrap_or("(no kid)").to_owned())
                .collect(),
        )
    }
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn url_field(v: &Value, key: &str) -> Result<String, String> {
    match v.get(key).and_then(Value::as_str) {
        Some(s) if url::Url::parse(s).is_ok() => Ok(s.to_owned()),
        Some(_) => Err(format!("{key} is not an absolute URL")),
        None => Err(format!("{key} is missing")),
    }
}

/// Parse a discovery document and check its issuer against the configured one.
pub fn parse_metadata(configured_issuer: &str, doc: &Value) -> Result<Metadata, FailureClass> {
    let issuer = doc
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if issuer != configured_issuer {
        return Err(FailureClass::IssuerMismatch);
    }
    let need = |k: &str| url_field(doc, k).map_err(|_| FailureClass::Discovery);
    Ok(Metadata {
        issuer: issuer.to_owned(),
        authorization_endpoint: need("authorization_endpoint")?,
        token_endpoint: need("token_endpoint")?,
        jwks_uri: need("jwks_uri")?,
        userinfo_endpoint: url_field(doc, "userinfo_endpoint").ok(),
        id_token_signing_alg_values_supported: strings(
            doc,
            "id_token_signing_alg_values_supported",
        ),
        token_endpoint_auth_methods_supported: strings(
            doc,
            "token_endpoint_auth_methods_supported",
        ),
        authorization_response_iss_parameter_supported: doc
            .get("authorization_response_iss_parameter_supported")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// Why the document is unusable, in words (for the detail of a discovery failure).
fn discovery_detail(configured: &str, doc: &Value, class: &FailureClass) -> String {
    match class {
        FailureClass::IssuerMismatch => format!(
            "configured issuer \"{configured}\", discovery document says \"{}\" (they must be identical, RFC 8414 §3.3)",
            doc.get("issuer")
                .and_then(Value::as_str)
                .unwrap_or("(absent)")
        ),
        _ => {
            for k in ["authorization_endpoint", "token_endpoint", "jwks_uri"] {
                if let Err(e) = url_field(doc, k) {
                    return e;
                }
            }
            "unusable discovery document".into()
        }
    }
}

/// The discovery URL of an issuer (OIDC Discovery §4.1: a trailing `/` is removed first).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

impl Upstream {
    pub(crate) async fn transport_failure(
        &self,
        stage: Stage,
        url: &str,
        e: TransportError,
    ) -> UpstreamFailure {
        let mut class = FailureClass::from(&e);
        let mut detail = format!("{} ({url})", e.detail);
        // hyper/reqwest drop the proxy's answer to CONNECT: ask the proxy again.
        if !matches!(
            class,
            FailureClass::HttpStatus(_) | FailureClass::ProxyRefused(_)
        ) && let Some(refusal) = self.http.proxy_refusal(url).await
        {
            detail = format!("{}; the request failed with: {}", url, e.detail);
            class = FailureClass::ProxyRefused(Box::new(refusal));
        }
        UpstreamFailure::new(&self.config.name, stage, class, detail)
    }

    /// Discovery metadata (cached).
    pub async fn metadata(
        &self,
        stage: Stage,
        now: UnixTime,
        trace: &TraceHandle,
    ) -> Result<Arc<Metadata>, UpstreamFailure> {
        if let Ok(g) = self.cache.inner.lock()
            && let Some((m, at)) = &g.metadata
            && now - at < self.config.discovery_ttl as i64
        {
            return Ok(m.clone());
        }
        let url = discovery_url(&self.config.issuer);
        let component = format!("upstream:{}", self.config.name);
        let body = match self.http.get(&url, "application/json", None).await {
            Ok(b) => b,
            Err(e) => {
                let f = self.transport_failure(stage, &url, e).await;
                trace.step(&component, "discovery", "failed", || {
                    crate::detail! {"url" => url, "code" => f.code(), "cause" => f.cause()}
                });
                return Err(f);
            }
        };
        let doc: Value = match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                let f = UpstreamFailure::new(
                    &self.config.name,
                    stage,
                    FailureClass::Discovery,
                    format!("{url} did not return a JSON object"),
                );
                trace.step(&component, "discovery", "failed", || {
                    crate::detail! {"url" => url, "code" => f.code()}
                });
                return Err(f);
            }
        };
        match parse_metadata(&self.config.issuer, &doc) {
            Ok(m) => {
                trace.step(&component, "discovery", "ok", || {
                    crate::detail! {
                        "url" => url,
                        "issuer" => m.issuer,
                        "token_endpoint" => m.token_endpoint,
                        "jwks_uri" => m.jwks_uri,
                    }
                });
                let m = Arc::new(m);
                if let Ok(mut g) = self.cache.inner.lock() {
                    g.metadata = Some((m.clone(), now));
                }
                Ok(m)
            }
            Err(class) => {
                let detail = discovery_detail(&self.config.issuer, &doc, &class);
                trace.step(&component, "check:issuer", "failed", || {
                    crate::detail! {
                        "expected" => self.config.issuer,
                        "actual" => doc.get("issuer").cloned().unwrap_or(Value::Null),
                        "code" => class.code(),
                    }
                });
                Err(UpstreamFailure::new(
                    &self.config.name,
                    stage,
                    class,
                    detail,
                ))
            }
        }
    }

    /// The cached JWKS, fetched when absent or older than `jwks_ttl`, or when `refresh` is
    /// asked and the last attempt is at least `jwks_min_refetch` seconds old. Returns the keys
    /// and whether this call fetched them.
    pub(crate) async fn jwks(
        &self,
        meta: &Metadata,
        now: UnixTime,
        refresh: bool,
        trace: &TraceHandle,
    ) -> Result<(Arc<[VerifyingKey]>, bool), UpstreamFailure> {
        let component = format!("upstream:{}", self.config.name);
        let lock_inner = || {
            self.cache
                .inner
                .lock()
                .map_err(|_| self.internal(Stage::Jwks, "JWKS cache lock poisoned"))
        };
        let seen_generation = {
            let g = lock_inner()?;
            if !refresh
                && let Some((k, at)) = &g.jwks
                && now - at < self.config.jwks_ttl as i64
            {
                return Ok((k.clone(), false));
            }
            g.jwks_generation
        };
        let _one_fetch = self.cache.fetch.lock().await;
        {
            let mut g = lock_inner()?;
            if g.jwks_generation != seen_generation
                && let Some((k, _)) = &g.jwks
            {
                // Fetched by another sign-in while this one waited: as fresh as it gets.
                trace.step(&component, "jwks_refetch", "shared", || {
                    crate::detail! {"reason" => "fetched by a concurrent sign-in"}
                });
                return Ok((k.clone(), true));
            }
            let fresh = g
                .jwks
                .as_ref()
                .filter(|(_, at)| now - at < self.config.jwks_ttl as i64)
                .map(|(k, _)| k.clone());
            let may_refetch = g
                .jwks_attempt
                .is_none_or(|t| now - t >= self.config.jwks_min_refetch as i64);
            match (fresh, refresh) {
                (Some(k), false) => return Ok((k, false)),
                (Some(k), true) if !may_refetch => {
                    let last = g.jwks_attempt.map(|t| now - t).unwrap_or_default();
                    trace.step(&component, "jwks_refetch", "skipped", || {
                        crate::detail! {
                            "reason" => "rate limit",
                            "last_fetch_secs_ago" => last,
                            "min_refetch_secs" => self.config.jwks_min_refetch,
                        }
                    });
                    return Ok((k, false));
                }
                _ => {}
            }
            g.jwks_attempt = Some(now);
        }
        let url = meta.jwks_uri.clone();
        let body = match self
            .http
            .get(&url, "application/jwk-set+json, application/json", None)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                let f = self.transport_failure(Stage::Jwks, &url, e).await;
                trace.step(&component, "jwks_fetch", "failed", || {
                    crate::detail! {"url" => url, "code" => f.code(), "cause" => f.cause()}
                });
                return Err(f);
            }
        };
        let set = JwkSet::from_slice(&body, MAX_DOCUMENT_BYTES).map_err(|e| {
            UpstreamFailure::new(
                &self.config.name,
                Stage::Jwks,
                FailureClass::JwksInvalid,
                format!("{url}: {e}"),
            )
        })?;
        let (keys, skipped) = set.verifying_keys();
        let kids: Vec<String> = keys
            .iter()
            .map(|k| k.kid().unwrap_or("(no kid)").to_owned())
            .collect();
        trace.step(&component, "jwks_fetch", "ok", || {
            crate::detail! {
                "url" => url,
                "reason" => if refresh { "unknown kid" } else { "cache empty or expired" },
                "kids" => kids,
                "skipped" => skipped.len(),
            }
        });
        if keys.is_empty() {
            return Err(UpstreamFailure::new(
                &self.config.name,
                Stage::Jwks,
                FailureClass::JwksInvalid,
                format!("{url} holds no usable signing key"),
            ));
        }
        let keys: Arc<[VerifyingKey]> = keys.into();
        if let Ok(mut g) = self.cache.inner.lock() {
            g.jwks = Some((keys.clone(), now));
            g.jwks_generation += 1;
        }
        Ok((keys, true))
    }

    pub(crate) fn internal(&self, stage: Stage, detail: impl Into<String>) -> UpstreamFailure {
        UpstreamFailure::new(&self.config.name, stage, FailureClass::Internal, detail)
    }

    /// Forget cached metadata and keys (tests, and an administrator's "reload").
    pub fn clear_cache(&self) {
        if let Ok(mut g) = self.cache.inner.lock() {
            *g = Inner::default();
        }
    }
}
