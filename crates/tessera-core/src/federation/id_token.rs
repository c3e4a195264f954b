//! ID token validation for the upstream's tokens (OIDC Core §3.1.3.7), each check traced with
//! expected and actual values (never the token or its signature):
//!
//! 1. the JWS parses strictly; `alg` is one the upstream advertises (or `id_token_algs`
//!    allows), never `none` (unrepresentable in tessera-jose) and never HMAC;
//! 2. the signature verifies with the upstream's JWKS; an unknown `kid` refetches the JWKS
//!    once (rate-limited, see [`super::keys`]);
//! 3. `iss` equals the issuer exactly;
//! 4. `aud` contains our `client_id`, and any other audience is trusted; with several
//!    audiences `azp` must be present, and when present it must be our `client_id`;
//! 5. `exp` is after now (minus skew); `iat` is not after now (plus skew) and not older than
//!    `max_id_token_age` (plus skew); `nbf`, when present, is not after now (plus skew);
//! 6. `nonce` equals the one sent;
//! 7. `at_hash`, when present and an access token came with it, matches;
//! 8. `sub` is a non-empty string.

use serde_json::{Map, Value};
use tessera_jose::{Algorithm, Limits, decode_compact};

use super::Upstream;
use super::failure::{FailureClass, Stage, UpstreamFailure};
use super::keys::Metadata;
use crate::clock::UnixTime;
use crate::trace::TraceHandle;

/// What the token must satisfy.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub nonce: &'a str,
    pub access_token: Option<&'a str>,
    pub now: UnixTime,
}

/// The algorithms accepted for this upstream's ID tokens.
pub fn accepted_algs(up: &Upstream, meta: &Metadata) -> Vec<Algorithm> {
    let mut algs: Vec<Algorithm> = if up.config.id_token_algs.is_empty() {
        meta.id_token_signing_alg_values_supported
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    } else {
        up.config.id_token_algs.clone()
    };
    if algs.is_empty() {
        // OIDC Discovery §3: RS256 is the default and must be supported.
        algs.push(Algorithm::RS256);
    }
    algs.retain(|a| !a.is_hmac());
    algs
}

fn num(claims: &Map<String, Value>, k: &str) -> Option<i64> {
    claims.get(k).and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
    })
}

fn show(v: Option<&Value>) -> Value {
    v.cloned().unwrap_or(Value::String("(absent)".into()))
}

/// Validate `token`; returns the verified claims.
pub async fn validate(
    up: &Upstream,
    meta: &Metadata,
    token: &str,
    expected: &Expected<'_>,
    trace: &TraceHandle,
) -> Result<Map<String, Value>, UpstreamFailure> {
    let cfg = &up.config;
    let component = format!("upstream:{}", cfg.name);
    let fail = |class: FailureClass, detail: String| {
        UpstreamFailure::new(&cfg.name, Stage::IdToken, class, detail)
    };
    let check = |name: &str, ok: bool, expected: Value, actual: Value| {
        trace.step(
            &component,
            format!("check:{name}"),
            if ok { "ok" } else { "failed" },
            || {
                crate::detail! {"expected" => expected, "actual" => actual}
            },
        );
    };

    let jwt = decode_compact(token, &Limits::DEFAULT).map_err(|e| {
        let class = match e {
            tessera_jose::Error::AlgNone | tessera_jose::Error::UnsupportedAlgorithm(_) => {
                FailureClass::AlgorithmRejected
            }
            _ => FailureClass::Malformed,
        };
        check("jws", false, "a signed JWT".into(), e.to_string().into());
        fail(class, format!("the id_token does not parse: {e}"))
    })?;
    let algs = accepted_algs(up, meta);
    let alg = jwt.header().alg;
    let alg_names: Vec<&str> = algs.iter().map(|a| a.as_str()).collect();
    let alg_ok = algs.contains(&alg);
    check("alg", alg_ok, alg_names.clone().into(), alg.as_str().into());
    if !alg_ok {
        return Err(fail(
            FailureClass::AlgorithmRejected,
            format!("alg {alg} is not one of {}", alg_names.join(", ")),
        ));
    }
    let kid = jwt.header().kid.clone();
    let kid_shown = kid.clone().unwrap_or_else(|| "(none)".into());

    // Signature, with one JWKS refetch on an unknown kid.
    let (keys, fetched) = up.jwks(meta, expected.now, false, trace).await?;
    let mut result = jwt.verify_with_any(&keys, &algs);
    if matches!(result, Err(tessera_jose::Error::UnknownKey)) && !fetched {
        trace.step(&component, "check:kid", "unknown", || {
            crate::detail! {"kid" => kid_shown, "action" => "refetch JWKS"}
        });
        let (keys, refetched) = up.jwks(meta, expected.now, true, trace).await?;
        if refetched {
            result = jwt.verify_with_any(&keys, &algs);
        }
    }
    let verified = match result {
        Ok(v) => {
            check(
                "signature",
                true,
                "valid".into(),
                Value::String(format!(
                    "verified with kid {}",
                    v.key_id().unwrap_or("(none)")
                )),
            );
            v
        }
        Err(tessera_jose::Error::UnknownKey) => {
            let known: Vec<String> = up.cached_kids().unwrap_or_default();
            check("kid", false, known.clone().into(), kid_shown.clone().into());
            return Err(fail(
                FailureClass::UnknownKey,
                format!(
                    "kid {kid_shown} is not in the JWKS at {} (published: {}); refetches are limited to one per {} s",
                    meta.jwks_uri,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    },
                    cfg.jwks_min_refetch
                ),
            ));
        }
        Err(e) => {
            check("signature", false, "valid".into(), e.to_string().into());
            let class = match e {
                tessera_jose::Error::AlgorithmNotAllowed { .. }
                | tessera_jose::Error::KeyAlgorithmMismatch => FailureClass::AlgorithmRejected,
                _ => FailureClass::BadSignature,
            };
            return Err(fail(class, format!("kid {kid_shown}, alg {alg}: {e}")));
        }
    };
    let claims = verified.into_claims();

    // iss
    let iss = claims.get("iss").and_then(Value::as_str);
    let ok = iss == Some(cfg.issuer.as_str());
    check(
        "iss",
        ok,
        cfg.issuer.clone().into(),
        show(claims.get("iss")),
    );
    if !ok {
        return Err(fail(
            FailureClass::IssuerMismatch,
            format!(
                "id_token iss {} is not the configured issuer \"{}\"",
                show(claims.get("iss")),
                cfg.issuer
            ),
        ));
    }

    // aud / azp
    // RFC 7519 §4.1.3: aud is a string or an array of strings. An entry that is not a string
    // is kept (as its JSON text) so that it counts as an untrusted audience (OIDC Core
    // §3.1.3.7 item 3) instead of being dropped and the token accepted.
    let auds: Vec<String> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let untrusted: Vec<&String> = auds
        .iter()
        .filter(|a| **a != cfg.client_id && !cfg.trusted_audiences.contains(a))
        .collect();
    let aud_ok = auds.contains(&cfg.client_id) && untrusted.is_empty();
    check(
        "aud",
        aud_ok,
        cfg.client_id.clone().into(),
        show(claims.get("aud")),
    );
    if !aud_ok {
        let why = if auds.contains(&cfg.client_id) {
            format!("untrusted extra audiences {untrusted:?}")
        } else {
            format!("our client_id \"{}\" is not in aud", cfg.client_id)
        };
        return Err(fail(
            FailureClass::AudienceMismatch,
            format!("aud {}: {why}", show(claims.get("aud"))),
        ));
    }
    let azp = claims.get("azp").and_then(Value::as_str);
    let azp_ok = match azp {
        Some(a) => a == cfg.client_id,
        None => auds.len() == 1,
    };
    if azp.is_some() || auds.len() > 1 {
        check(
            "azp",
            azp_ok,
            cfg.client_id.clone().into(),
            show(claims.get("azp")),
        );
    }
    if !azp_ok {
        return Err(fail(
            FailureClass::AudienceMismatch,
            format!(
                "azp {} is not our client_id \"{}\" (required with several audiences)",
                show(claims.get("azp")),
                cfg.client_id
            ),
        ));
    }

    // exp, iat
    let now = expected.now;
    let skew = cfg.clock_skew as i64;
    let exp = num(&claims, "exp");
    let exp_ok = exp.is_some_and(|e| now < e + skew);
    check(
        "exp",
        exp_ok,
        Value::String(format!("after now ({now}) - skew {skew}s")),
        show(claims.get("exp")),
    );
    if !exp_ok {
        return Err(match exp {
            None => fail(
                FailureClass::Malformed,
                "id_token has no numeric exp".into(),
            ),
            Some(e) => fail(
                FailureClass::Expired,
                format!(
                    "exp {e} is {} s before this server's time {now} (allowed skew {skew} s)",
                    now - e
                ),
            ),
        });
    }
    let iat = num(&claims, "iat");
    let max_age = cfg.max_id_token_age as i64;
    let iat_ok = iat.is_some_and(|i| i <= now + skew && now - i <= max_age + skew);
    check(
        "iat",
        iat_ok,
        Value::String(format!(
            "between now - {max_age}s and now + {skew}s (now = {now})"
        )),
        show(claims.get("iat")),
    );
    if !iat_ok {
        return Err(match iat {
            None => fail(
                FailureClass::Malformed,
                "id_token has no numeric iat".into(),
            ),
            Some(i) if i > now => fail(
                FailureClass::ClockSkew,
                format!(
                    "iat {i} is {} s in the future of this server's time {now} (allowed skew {skew} s): the clocks differ",
                    i - now
                ),
            ),
            Some(i) => fail(
                FailureClass::ClockSkew,
                format!(
                    "iat {i} is {} s in the past of this server's time {now} (max age {max_age} s + skew {skew} s): the clocks differ",
                    now - i
                ),
            ),
        });
    }

    // nbf: optional in an ID token, but when present the token "MUST NOT be accepted for
    // processing" before it (RFC 7519 §4.1.5), with the same skew.
    if let Some(v) = claims.get("nbf") {
        let nbf = num(&claims, "nbf");
        let nbf_ok = nbf.is_some_and(|n| n <= now + skew);
        check(
            "nbf",
            nbf_ok,
            Value::String(format!("not after now ({now}) + skew {skew}s")),
            v.clone(),
        );
        match nbf {
            None => {
                return Err(fail(
                    FailureClass::Malformed,
                    "id_token nbf is not a number".into(),
                ));
            }
            Some(n) if !nbf_ok => {
                return Err(fail(
                    FailureClass::ClockSkew,
                    format!(
                        "nbf {n} is {} s in the future of this server's time {now} (allowed skew {skew} s): the clocks differ",
                        n - now
                    ),
                ));
            }
            Some(_) => {}
        }
    }

    // nonce
    let nonce = claims.get("nonce").and_then(Value::as_str);
    let nonce_ok = nonce.is_some_and(|n| {
        subtle::ConstantTimeEq::ct_eq(n.as_bytes(), expected.nonce.as_bytes()).into()
    });
    let nonce_actual = match (nonce, nonce_ok) {
        (_, true) => "(matches)",
        (Some(_), false) => "(differs)",
        (None, false) => "(absent)",
    };
    check(
        "nonce",
        nonce_ok,
        "the nonce of this sign-in".into(),
        nonce_actual.into(),
    );
    if !nonce_ok {
        return Err(fail(
            FailureClass::NonceMismatch,
            if nonce.is_some() {
                "the id_token's nonce is not the one sent with this sign-in".into()
            } else {
                "the id_token has no nonce although one was sent".into()
            },
        ));
    }

    // at_hash
    if let (Some(at), Some(h)) = (
        expected.access_token,
        claims.get("at_hash").and_then(Value::as_str),
    ) {
        let want = crate::interactive::id_token::at_hash(at, alg);
        let ok = want == h;
        check("at_hash", ok, "hash of the access token".into(), h.into());
        if !ok {
            return Err(fail(
                FailureClass::AtHashMismatch,
                "at_hash does not match the access token returned with the id_token".into(),
            ));
        }
    }

    // sub
    let sub_ok = claims
        .get("sub")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty() && s.len() <= 255);
    check(
        "sub",
        sub_ok,
        "a non-empty string".into(),
        show(claims.get("sub")),
    );
    if !sub_ok {
        return Err(fail(
            FailureClass::Malformed,
            "the id_token has no usable sub".into(),
        ));
    }
    Ok(claims)
}

impl Upstream {
    /// The kids of the cached JWKS (for messages).
    pub(crate) fn cached_kids(&self) -> Option<Vec<String>> {
        self.cache.kids()
    }
}
