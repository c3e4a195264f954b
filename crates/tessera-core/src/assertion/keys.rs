//! Verification keys for assertions: the `JwksSource` contract (implemented outside core, which
//! does no I/O), a cache of fetched `jwks_uri` documents and of parsed inline keys, and a small
//! SPKI/PKCS#1 PEM reader for trusted issuers configured with a public key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::Value;
use tessera_jose::{EcCurve, JwkSet, VerifyingKey};

use crate::clock::UnixTime;

/// Why a JWK Set could not be fetched. `class` is a short word safe for clients ("timeout",
/// "dns", "http status 404", ...); `detail` stays internal (logs, `OAuthError::cause`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksFetchError {
    pub class: String,
    pub detail: String,
}

impl std::fmt::Display for JwksFetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class, self.detail)
    }
}

/// Fetches JWK Sets over the network. Core defines the contract; the binary adapts
/// `tessera_egress::HttpClient::fetch_jwks` to it (core stays free of I/O, egress free of core).
#[async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch(&self, uri: &str) -> Result<JwkSet, JwksFetchError>;
}

#[derive(Clone)]
struct Remote {
    keys: Option<Arc<[VerifyingKey]>>,
    fetched_at: UnixTime,
    last_attempt: UnixTime,
    last_error: Option<JwksFetchError>,
}

#[derive(Clone)]
struct Local {
    doc: Value,
    keys: Arc<[VerifyingKey]>,
}

/// What [`JwksCache::remote_keys`] returned.
#[derive(Clone)]
pub struct RemoteKeys {
    pub keys: Arc<[VerifyingKey]>,
    /// True when the document was fetched by this call.
    pub fetched: bool,
    pub fetched_at: UnixTime,
}

/// Keys for assertion verification, parsed once and reused:
/// - `jwks_uri` documents, kept `ttl` seconds; a refetch on an unknown `kid` (OIDC Core §10.1.1)
///   happens at most once per `min_refetch` seconds per URI, and failed fetches are not retried
///   within that interval either (a misbehaving client cannot make the server hammer a host);
///   when a refresh after expiry fails, the stale keys keep serving;
/// - inline JWK Sets and PEM keys, re-parsed only when the registered document changes.
pub struct JwksCache {
    source: Option<Arc<dyn JwksSource>>,
    ttl: i64,
    min_refetch: i64,
    remote: Mutex<HashMap<String, Remote>>,
    local: Mutex<HashMap<String, Local>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("has_source", &self.source.is_some())
            .field("ttl", &self.ttl)
            .field("min_refetch", &self.min_refetch)
            .finish_non_exhaustive()
    }
}

impl Default for JwksCache {
    /// No network source: `jwks_uri` keys cannot be fetched (inline keys work).
    fn default() -> Self {
        Self::new(None)
    }
}

/// Default time a fetched JWK Set is used before it is fetched again, seconds.
pub const DEFAULT_JWKS_TTL: u64 = 300;
/// Default minimum interval between two fetches of one URI, seconds.
pub const DEFAULT_MIN_REFETCH: u64 = 30;

impl JwksCache {
    pub fn new(source: Option<Arc<dyn JwksSource>>) -> Self {
        Self {
            source,
            ttl: DEFAULT_JWKS_TTL as i64,
            min_refetch: DEFAULT_MIN_REFETCH as i64,
            remote: Mutex::new(HashMap::new()),
            local: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_timing(mut self, ttl: u64, min_refetch: u64) -> Self {
        self.ttl = ttl as i64;
        self.min_refetch = min_refetch as i64;
        self
    }

    pub fn has_source(&self) -> bool {
        self.source.is_some()
    }

    /// Keys published at `uri`. `refresh = true` asks for a new fetch (unknown `kid`); it is
    /// honoured only when the last attempt is at least `min_refetch` seconds old.
    pub async fn remote_keys(
        &self,
        uri: &str,
        now: UnixTime,
        refresh: bool,
    ) -> Result<RemoteKeys, JwksFetchError> {
        let Some(source) = &self.source else {
            return Err(JwksFetchError {
                class: "no outbound HTTP client".into(),
                detail: "this server was built without a JWKS source".into(),
            });
        };
        let stale = {
            let mut map = self.remote.lock().map_err(|_| poisoned())?;
            match map.get_mut(uri) {
                Some(e) => {
                    let fresh = e.keys.is_some() && now - e.fetched_at < self.ttl;
                    let may_fetch = now - e.last_attempt >= self.min_refetch;
                    if fresh && (!refresh || !may_fetch) {
                        return Ok(RemoteKeys {
                            keys: e.keys.clone().unwrap_or_else(empty),
                            fetched: false,
                            fetched_at: e.fetched_at,
                        });
                    }
                    if !may_fetch {
                        match (&e.keys, &e.last_error) {
                            (Some(k), _) => {
                                return Ok(RemoteKeys {
                                    keys: k.clone(),
                                    fetched: false,
                                    fetched_at: e.fetched_at,
                                });
                            }
                            (None, Some(err)) => return Err(err.clone()),
                            // The first fetch is still running elsewhere: fetch too.
                            (None, None) => {}
                        }
                    }
                    e.last_attempt = now;
                    e.keys.clone().map(|k| (k, e.fetched_at))
                }
                None => {
                    map.insert(
                        uri.to_owned(),
                        Remote {
                            keys: None,
                            fetched_at: 0,
                            last_attempt: now,
                            last_error: None,
                        },
                    );
                    None
                }
            }
        };
        let result = source.fetch(uri).await;
        let mut map = self.remote.lock().map_err(|_| poisoned())?;
        let entry = map.entry(uri.to_owned()).or_insert(Remote {
            keys: None,
            fetched_at: 0,
            last_attempt: now,
            last_error: None,
        });
        match result {
            Ok(set) => {
                let (keys, _skipped) = set.verifying_keys();
                let keys: Arc<[VerifyingKey]> = keys.into();
                entry.keys = Some(keys.clone());
                entry.fetched_at = now;
                entry.last_error = None;
                Ok(RemoteKeys {
                    keys,
                    fetched: true,
                    fetched_at: now,
                })
            }
            Err(err) => {
                entry.last_error = Some(err.clone());
                match stale {
                    // Expired but still the best we have; an explicit refresh reports the failure.
                    Some((keys, fetched_at)) if !refresh => Ok(RemoteKeys {
                        keys,
                        fetched: false,
                        fetched_at,
                    }),
                    _ => Err(err),
                }
            }
        }
    }

    /// Keys from a registered document (inline JWKS or PEM), parsed once per change of `doc`.
    pub fn local_keys(
        &self,
        id: &str,
        doc: &Value,
        parse: impl FnOnce(&Value) -> Result<Vec<VerifyingKey>, String>,
    ) -> Result<Arc<[VerifyingKey]>, String> {
        if let Ok(map) = self.local.lock()
            && let Some(l) = map.get(id).filter(|l| &l.doc == doc)
        {
            return Ok(l.keys.clone());
        }
        let keys: Arc<[VerifyingKey]> = parse(doc)?.into();
        if let Ok(mut map) = self.local.lock() {
            map.insert(
                id.to_owned(),
                Local {
                    doc: doc.clone(),
                    keys: keys.clone(),
                },
            );
        }
        Ok(keys)
    }
}

fn empty() -> Arc<[VerifyingKey]> {
    Arc::from(Vec::new())
}

fn poisoned() -> JwksFetchError {
    JwksFetchError {
        class: "internal".into(),
        detail: "JWKS cache lock poisoned".into(),
    }
}

/// Parse an inline JWK Set (registered `jwks`) into verifying keys; unusable members are
/// skipped, but a set without any usable key is an error.
pub fn parse_jwks_value(doc: &Value) -> Result<Vec<VerifyingKey>, String> {
    let bytes = serde_json::to_vec(doc).map_err(|e| e.to_string())?;
    let set = JwkSet::from_slice(&bytes, JwkSet::DEFAULT_MAX_BYTES).map_err(|e| e.to_string())?;
    let (keys, skipped) = set.verifying_keys();
    if keys.is_empty() {
        let why = skipped
            .first()
            .map(|s| s.reason.to_string())
            .unwrap_or_else(|| "no keys".into());
        return Err(format!("no usable key in the JWK Set ({why})"));
    }
    Ok(keys)
}

// --- PEM public keys (RFC 5280 SubjectPublicKeyInfo, RFC 8017 RSAPublicKey) -----------------

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// One DER TLV: (tag, contents, rest).
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let bad = || "malformed DER".to_owned();
    let (&tag, rest) = input.split_first().ok_or_else(bad)?;
    let (&first, mut rest) = rest.split_first().ok_or_else(bad)?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad());
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | b as usize;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(bad());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), String> {
    let (tag, body, rest) = tlv(input)?;
    if tag != want {
        return Err(format!(
            "unexpected DER tag 0x{tag:02x} (wanted 0x{want:02x})"
        ));
    }
    Ok((body, rest))
}

fn rsa_public_key(der: &[u8]) -> Result<VerifyingKey, String> {
    let (seq, _) = expect(der, 0x30)?;
    let (n, rest) = expect(seq, 0x02)?;
    let (e, _) = expect(rest, 0x02)?;
    VerifyingKey::from_rsa_components(n, e).map_err(|e| e.to_string())
}

fn spki(der: &[u8]) -> Result<VerifyingKey, String> {
    let (seq, _) = expect(der, 0x30)?;
    let (alg_id, rest) = expect(seq, 0x30)?;
    let (bits, _) = expect(rest, 0x03)?;
    let (oid, params) = expect(alg_id, 0x06)?;
    let (&unused, key) = bits.split_first().ok_or("empty BIT STRING")?;
    if unused != 0 {
        return Err("BIT STRING with unused bits".into());
    }
    if oid == OID_RSA {
        rsa_public_key(key)
    } else if oid == OID_EC {
        let (curve_oid, _) = expect(params, 0x06)?;
        let curve = match curve_oid {
            c if c == OID_P256 => EcCurve::P256,
            c if c == OID_P384 => EcCurve::P384,
            _ => return Err("unsupported EC curve (P-256 and P-384 are supported)".into()),
        };
        let (&form, xy) = key.split_first().ok_or("empty EC point")?;
        if form != 0x04 || xy.len() % 2 != 0 {
            return Err("EC point must be uncompressed".into());
        }
        let (x, y) = xy.split_at(xy.len() / 2);
        VerifyingKey::from_ec_coordinates(curve, x, y).map_err(|e| e.to_string())
    } else if oid == OID_ED25519 {
        VerifyingKey::from_ed25519(key).map_err(|e| e.to_string())
    } else {
        Err("unsupported public key algorithm".into())
    }
}

/// Parse a PEM public key: `BEGIN PUBLIC KEY` (SPKI: RSA, P-256, P-384, Ed25519) or
/// `BEGIN RSA PUBLIC KEY` (PKCS#1). Private keys and certificates are refused.
pub fn parse_public_key_pem(pem: &str) -> Result<VerifyingKey, String> {
    let text = pem.trim();
    let (label, body) = ["PUBLIC KEY", "RSA PUBLIC KEY"]
        .iter()
        .find_map(|label| {
            let begin = format!("-----BEGIN {label}-----");
            let end = format!("-----END {label}-----");
            let start = text.find(&begin)? + begin.len();
            let stop = text[start..].find(&end)? + start;
            Some((*label, &text[start..stop]))
        })
        .ok_or("expected a PEM block 'BEGIN PUBLIC KEY' or 'BEGIN RSA PUBLIC KEY'")?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "PEM body is not base64".to_owned())?;
    if label == "RSA PUBLIC KEY" {
        rsa_public_key(&der)
    } else {
        spki(&der)
    }
}

/// The future a [`FnJwksSource`] closure returns.
pub type JwksFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<JwkSet, JwksFetchError>> + Send>>;

/// A [`JwksSource`] from a closure, so the composition root can plug in the outbound HTTP
/// client without implementing an async trait:
/// `FnJwksSource::new(move |uri| { let c = http.clone(); Box::pin(async move { … }) })`.
pub struct FnJwksSource<F>(F);

impl<F> FnJwksSource<F>
where
    F: Fn(String) -> JwksFuture + Send + Sync,
{
    pub fn new(f: F) -> Self {
        Self(f)
    }
}

#[async_trait]
impl<F> JwksSource for FnJwksSource<F>
where
    F: Fn(String) -> JwksFuture + Send + Sync,
{
    async fn fetch(&self, uri: &str) -> Result<JwkSet, JwksFetchError> {
        (self.0)(uri.to_owned()).await
    }
}
