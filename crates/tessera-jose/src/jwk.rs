//! JWK and JWK Set (RFC 7517, RFC 7518 §6, RFC 8037 §2) and thumbprints (RFC 7638).

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::alg::{Algorithm, KeyType};
use crate::b64::base64url_decode;
use crate::error::{Error, sanitize};
use crate::json;
use crate::keys::{EcCurve, VerifyingKey, sha256_b64};

/// A JSON Web Key holding **public** parameters only.
///
/// Unknown members are ignored (RFC 7517 §4). Private members (`d`, `p`, `q`,
/// `dp`, `dq`, `qi`, `oth`, `k`) are never stored: their presence is recorded
/// and [`Jwk::to_verifying_key`] rejects such a JWK.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawJwk")]
pub struct Jwk {
    /// Key type (`RSA`, `EC`, `OKP`, `oct`, or anything else, kept verbatim).
    pub kty: String,
    /// Key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Public key use (`sig`, `enc`).
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Key operations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    /// Intended algorithm, kept verbatim (may name an algorithm we do not support).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Curve (`EC`, `OKP`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// RSA modulus, base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent, base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC x coordinate or OKP public key, base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate, base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip)]
    pub(crate) private_members: bool,
}

/// The wire form: public members plus private ones, read only to be detected.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<IgnoredAny>,
    p: Option<IgnoredAny>,
    q: Option<IgnoredAny>,
    dp: Option<IgnoredAny>,
    dq: Option<IgnoredAny>,
    qi: Option<IgnoredAny>,
    oth: Option<IgnoredAny>,
    k: Option<IgnoredAny>,
}

impl From<RawJwk> for Jwk {
    fn from(r: RawJwk) -> Jwk {
        let private_members = [&r.d, &r.p, &r.q, &r.dp, &r.dq, &r.qi, &r.oth, &r.k]
            .iter()
            .any(|m| m.is_some());
        Jwk {
            kty: r.kty,
            kid: r.kid,
            use_: r.use_,
            key_ops: r.key_ops,
            alg: r.alg,
            crv: r.crv,
            n: r.n,
            e: r.e,
            x: r.x,
            y: r.y,
            private_members,
        }
    }
}

/// Canonical RFC 7638 §3.2 input: required members, lexicographic order, no whitespace.
pub(crate) enum ThumbprintInput<'a> {
    Rsa {
        e: &'a str,
        n: &'a str,
    },
    Ec {
        crv: &'a str,
        x: &'a str,
        y: &'a str,
    },
    Okp {
        crv: &'a str,
        x: &'a str,
    },
}

impl ThumbprintInput<'_> {
    pub(crate) fn digest(&self) -> String {
        // serde_json string escaping is the JSON escaping RFC 7638 §3.3 asks for.
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let canonical = match self {
            ThumbprintInput::Rsa { e, n } => {
                format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, q(e), q(n))
            }
            ThumbprintInput::Ec { crv, x, y } => {
                format!(
                    r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
                    q(crv),
                    q(x),
                    q(y)
                )
            }
            ThumbprintInput::Okp { crv, x } => {
                format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, q(crv), q(x))
            }
        };
        sha256_b64(canonical.as_bytes())
    }
}

fn member<'a>(value: &'a Option<String>, what: &'static str) -> Result<&'a str, Error> {
    value
        .as_deref()
        .ok_or_else(|| Error::InvalidKey(format!("JWK lacks {what}")))
}

fn decode_member(value: &Option<String>, what: &'static str) -> Result<Vec<u8>, Error> {
    base64url_decode(member(value, what)?)
        .map_err(|_| Error::InvalidKey(format!("JWK member {what} is not base64url")))
}

impl Jwk {
    /// Whether the JWK carried private key members when parsed.
    pub fn has_private_members(&self) -> bool {
        self.private_members
    }

    /// Parses a single JWK from JSON (duplicate members rejected).
    pub fn from_json(bytes: &[u8]) -> Result<Jwk, Error> {
        if bytes.len() > JwkSet::DEFAULT_MAX_BYTES {
            return Err(Error::TooLarge);
        }
        let map = json::parse_object(bytes, 4)
            .map_err(|_| Error::Malformed("JWK is not a valid JSON object"))?;
        Jwk::deserialize(&serde_json::Value::Object(map))
            .map_err(|_| Error::Malformed("JWK member has the wrong type"))
    }

    /// The algorithm named by `alg`, if present and supported.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.alg.as_deref().and_then(|a| a.parse().ok())
    }

    /// Whether this JWK is a candidate for verifying `alg`: matching `kty` and
    /// `crv`, `alg` absent or equal, `use` absent or `sig`, `key_ops` absent or
    /// containing `verify` (RFC 7517 §4.2–4.4).
    pub fn is_candidate_for(&self, alg: Algorithm) -> bool {
        if alg.is_hmac() || self.kty != alg.key_type().as_str() {
            return false;
        }
        let crv_ok = match alg.key_type() {
            KeyType::Ec => {
                self.crv
                    .as_deref()
                    .and_then(EcCurve::from_crv)
                    .map(EcCurve::alg)
                    == Some(alg)
            }
            KeyType::Okp => self.crv.as_deref() == Some("Ed25519"),
            _ => true,
        };
        crv_ok
            && self.alg.as_deref().is_none_or(|a| a == alg.as_str())
            && self.use_.as_deref().is_none_or(|u| u == "sig")
            && self
                .key_ops
                .as_ref()
                .is_none_or(|ops| ops.iter().any(|o| o == "verify"))
    }

    /// Parses the public key once. Rejects private members, `use` other than
    /// `sig`, `key_ops` without `verify`, unsupported `kty`/`crv`/`alg`, RSA
    /// moduli under 2048 bits and EC points not on the curve.
    pub fn to_verifying_key(&self) -> Result<VerifyingKey, Error> {
        if self.private_members {
            return Err(Error::PrivateKeyMaterial);
        }
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(Error::InvalidKey("JWK use is not sig".into()));
        }
        if self
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
        {
            return Err(Error::InvalidKey(
                "JWK key_ops does not include verify".into(),
            ));
        }
        let alg = match self.alg.as_deref() {
            Some(a) => Some(a.parse::<Algorithm>()?),
            None => None,
        };
        let key = match self.kty.as_str() {
            "RSA" => {
                let n = decode_member(&self.n, "n")?;
                let e = decode_member(&self.e, "e")?;
                VerifyingKey::from_rsa_components(&n, &e)?
            }
            "EC" => {
                let crv = member(&self.crv, "crv")?;
                let curve =
                    EcCurve::from_crv(crv).ok_or_else(|| Error::UnsupportedKey(sanitize(crv)))?;
                let x = decode_member(&self.x, "x")?;
                let y = decode_member(&self.y, "y")?;
                VerifyingKey::from_ec_coordinates(curve, &x, &y)?
            }
            "OKP" => {
                let crv = member(&self.crv, "crv")?;
                if crv != "Ed25519" {
                    return Err(Error::UnsupportedKey(sanitize(crv)));
                }
                VerifyingKey::from_ed25519(&decode_member(&self.x, "x")?)?
            }
            other => return Err(Error::UnsupportedKey(sanitize(other))),
        };
        let key = match &self.kid {
            Some(kid) => key.with_kid(kid.clone()),
            None => key,
        };
        match alg {
            Some(alg) => key.restrict_to(alg),
            None => Ok(key),
        }
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url. Errors when `kty` is not
    /// `RSA`, `EC` or `OKP` or a required member is missing.
    pub fn thumbprint_sha256(&self) -> Result<String, Error> {
        let input = match self.kty.as_str() {
            "RSA" => ThumbprintInput::Rsa {
                e: member(&self.e, "e")?,
                n: member(&self.n, "n")?,
            },
            "EC" => ThumbprintInput::Ec {
                crv: member(&self.crv, "crv")?,
                x: member(&self.x, "x")?,
                y: member(&self.y, "y")?,
            },
            "OKP" => ThumbprintInput::Okp {
                crv: member(&self.crv, "crv")?,
                x: member(&self.x, "x")?,
            },
            other => return Err(Error::UnsupportedKey(sanitize(other))),
        };
        Ok(input.digest())
    }
}

/// A JWK Set (RFC 7517 §5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// A JWK Set member that was ignored or unusable, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// Position in the set's `keys` array.
    pub index: usize,
    /// Its `kid`, when readable.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: Error,
}

impl JwkSet {
    /// Default size limit for a JWK Set document.
    pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;

    /// Parses a JWK Set of at most `max_bytes`. Members that are not valid
    /// JWK objects are ignored (RFC 7517 §5 "SHOULD ignore").
    pub fn from_slice(bytes: &[u8], max_bytes: usize) -> Result<JwkSet, Error> {
        Self::from_slice_with_report(bytes, max_bytes).map(|(set, _)| set)
    }

    /// Like [`JwkSet::from_slice`], also returning the ignored members.
    pub fn from_slice_with_report(
        bytes: &[u8],
        max_bytes: usize,
    ) -> Result<(JwkSet, Vec<SkippedKey>), Error> {
        if bytes.len() > max_bytes {
            return Err(Error::TooLarge);
        }
        let map = json::parse_object(bytes, 8)
            .map_err(|_| Error::Malformed("JWK Set is not a valid JSON object"))?;
        let Some(serde_json::Value::Array(entries)) = map.get("keys") else {
            return Err(Error::Malformed("JWK Set has no keys array"));
        };
        let mut keys = Vec::with_capacity(entries.len());
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match Jwk::deserialize(entry) {
                Ok(jwk) => keys.push(jwk),
                Err(_) => skipped.push(SkippedKey {
                    index,
                    kid: entry.get("kid").and_then(|k| k.as_str()).map(sanitize),
                    reason: Error::Malformed("JWK member missing or of the wrong type"),
                }),
            }
        }
        Ok((JwkSet { keys }, skipped))
    }

    /// Candidate JWKs for verifying `alg` (see [`Jwk::is_candidate_for`]);
    /// when `kid` is given, only keys with exactly that `kid`.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Vec<&Jwk> {
        self.keys
            .iter()
            .filter(|k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
            .filter(|k| k.is_candidate_for(alg))
            .collect()
    }

    /// Parses every member into a [`VerifyingKey`]; unusable members (private,
    /// `enc`, unsupported, invalid) are returned separately with the reason.
    pub fn verifying_keys(&self) -> (Vec<VerifyingKey>, Vec<SkippedKey>) {
        let mut ok = Vec::with_capacity(self.keys.len());
        let mut skipped = Vec::new();
        for (index, jwk) in self.keys.iter().enumerate() {
            match jwk.to_verifying_key() {
                Ok(key) => ok.push(key),
                Err(reason) => skipped.push(SkippedKey {
                    index,
                    kid: jwk.kid.clone(),
                    reason,
                }),
            }
        }
        (ok, skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkeys::key;

    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    fn jwk(json: &str) -> Jwk {
        Jwk::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        let j = jwk(&format!(
            r#"{{"kty":"RSA","n":"{RFC7638_N}","e":"AQAB","alg":"RS256","kid":"2011-04-29"}}"#
        ));
        assert_eq!(
            j.thumbprint_sha256().unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let key = j.to_verifying_key().unwrap();
        assert_eq!(
            key.thumbprint_sha256(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(key.kid(), Some("2011-04-29"));
        assert_eq!(key.alg(), Some(Algorithm::RS256));
        assert!(jwk(r#"{"kty":"oct"}"#).thumbprint_sha256().is_err());
        assert!(
            jwk(r#"{"kty":"EC","crv":"P-256","x":"AA"}"#)
                .thumbprint_sha256()
                .is_err()
        );
    }

    #[test]
    fn private_members_rejected() {
        // RFC 7515 A.3 key including d.
        let j = jwk(
            r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#,
        );
        assert!(j.has_private_members());
        assert_eq!(j.to_verifying_key().unwrap_err(), Error::PrivateKeyMaterial);
        // The private value is not kept, so it cannot be re-serialized.
        let out = serde_json::to_string(&j).unwrap();
        assert!(!out.contains("jpsQ") && !out.contains("\"d\""), "{out}");
        for member in ["p", "q", "dp", "dq", "qi", "oth", "k"] {
            let j = jwk(&format!(
                r#"{{"kty":"RSA","n":"{RFC7638_N}","e":"AQAB","{member}":"AA"}}"#
            ));
            assert_eq!(
                j.to_verifying_key().unwrap_err(),
                Error::PrivateKeyMaterial,
                "{member}"
            );
        }
        assert_eq!(
            jwk(r#"{"kty":"oct","k":"c2VjcmV0"}"#)
                .to_verifying_key()
                .unwrap_err(),
            Error::PrivateKeyMaterial
        );
    }

    #[test]
    fn unknown_kty_and_crv_rejected() {
        assert_eq!(
            jwk(r#"{"kty":"foo"}"#).to_verifying_key().unwrap_err(),
            Error::UnsupportedKey("foo".into())
        );
        assert_eq!(
            jwk(r#"{"kty":"oct"}"#).to_verifying_key().unwrap_err(),
            Error::UnsupportedKey("oct".into())
        );
        assert_eq!(
            jwk(r#"{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}"#)
                .to_verifying_key()
                .unwrap_err(),
            Error::UnsupportedKey("P-521".into())
        );
        assert_eq!(
            jwk(r#"{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}"#)
                .to_verifying_key()
                .unwrap_err(),
            Error::UnsupportedKey("secp256k1".into())
        );
        assert_eq!(
            jwk(r#"{"kty":"OKP","crv":"X25519","x":"AA"}"#)
                .to_verifying_key()
                .unwrap_err(),
            Error::UnsupportedKey("X25519".into())
        );
        assert!(matches!(
            jwk(r#"{"kty":"RSA","e":"AQAB"}"#).to_verifying_key(),
            Err(Error::InvalidKey(_))
        ));
        assert!(matches!(
            jwk(&format!(r#"{{"kty":"RSA","n":"{RFC7638_N}=","e":"AQAB"}}"#)).to_verifying_key(),
            Err(Error::InvalidKey(_))
        ));
    }

    #[test]
    fn jwk_alg_use_and_key_ops_enforced() {
        let base = key(Algorithm::ES256).public_jwk();
        let mut j = base.clone();
        j.alg = Some("RS256".into());
        assert_eq!(
            j.to_verifying_key().unwrap_err(),
            Error::KeyAlgorithmMismatch
        );
        j.alg = Some("ECDH-ES".into());
        assert!(matches!(
            j.to_verifying_key(),
            Err(Error::UnsupportedAlgorithm(_))
        ));
        j.alg = Some("none".into());
        assert_eq!(j.to_verifying_key().unwrap_err(), Error::AlgNone);
        let mut j = base.clone();
        j.use_ = Some("enc".into());
        assert!(matches!(j.to_verifying_key(), Err(Error::InvalidKey(_))));
        let mut j = base.clone();
        j.key_ops = Some(vec!["sign".into()]);
        assert!(j.to_verifying_key().is_err());
        j.key_ops = Some(vec!["verify".into()]);
        assert!(j.to_verifying_key().is_ok());
        let mut j = base;
        j.alg = None;
        j.use_ = None;
        assert_eq!(j.to_verifying_key().unwrap().alg(), None);
    }

    #[test]
    fn unknown_members_ignored_duplicates_rejected() {
        let j = jwk(&format!(
            r#"{{"kty":"RSA","n":"{RFC7638_N}","e":"AQAB","x5c":["MIIB"],"ext":true,"whatever":{{"a":1}}}}"#
        ));
        assert!(j.to_verifying_key().is_ok());
        assert!(Jwk::from_json(br#"{"kty":"RSA","kty":"EC"}"#).is_err());
        assert!(Jwk::from_json(br#"{"kty":5}"#).is_err());
        assert!(Jwk::from_json(b"[]").is_err());
    }

    #[test]
    fn jwk_set_parse_find_and_limits() {
        let es = key(Algorithm::ES256).public_jwk();
        let ed = key(Algorithm::EdDSA).public_jwk();
        let rsa = key(Algorithm::RS256).public_jwk();
        let mut enc = rsa.clone();
        enc.kid = Some("enc-key".into());
        enc.use_ = Some("enc".into());
        enc.alg = Some("RSA-OAEP".into());
        let set = JwkSet {
            keys: vec![es.clone(), ed.clone(), rsa.clone(), enc],
        };
        let mut json = serde_json::to_value(&set).unwrap();
        json["keys"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"kty": 1, "kid": "bad\"kid"}));
        json["keys"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!("not an object"));
        let bytes = serde_json::to_vec(&json).unwrap();

        let (parsed, skipped) =
            JwkSet::from_slice_with_report(&bytes, JwkSet::DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(parsed, set);
        assert_eq!(skipped.len(), 2);
        assert_eq!(
            (skipped[0].index, skipped[0].kid.as_deref()),
            (4, Some("bad?kid"))
        );

        assert_eq!(parsed.find(Some("ES256-key"), Algorithm::ES256), vec![&es]);
        assert!(parsed.find(Some("ES256-key"), Algorithm::ES384).is_empty());
        assert!(parsed.find(Some("nope"), Algorithm::ES256).is_empty());
        assert_eq!(parsed.find(None, Algorithm::EdDSA), vec![&ed]);
        assert_eq!(parsed.find(None, Algorithm::RS256), vec![&rsa]);
        assert!(parsed.find(None, Algorithm::PS256).is_empty()); // rsa is pinned to RS256
        assert!(parsed.find(None, Algorithm::HS256).is_empty());

        let (keys, unusable) = parsed.verifying_keys();
        assert_eq!(keys.len(), 3);
        assert_eq!(unusable.len(), 1);
        assert_eq!(unusable[0].kid.as_deref(), Some("enc-key"));

        assert_eq!(
            JwkSet::from_slice(&bytes, 100).unwrap_err(),
            Error::TooLarge
        );
        assert!(JwkSet::from_slice(br#"{"keys":{}}"#, 1000).is_err());
        assert!(JwkSet::from_slice(br#"{"nokeys":[]}"#, 1000).is_err());
        assert!(JwkSet::from_slice(br#"{"keys":[],"keys":[]}"#, 1000).is_err());
        assert_eq!(
            JwkSet::from_slice(br#"{"keys":[]}"#, 1000)
                .unwrap()
                .keys
                .len(),
            0
        );
    }
}
