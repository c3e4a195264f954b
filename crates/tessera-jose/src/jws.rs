//! JWS compact serialization (RFC 7515 §3.1, §7.1): strict decoding and encoding.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::alg::Algorithm;
use crate::b64::{base64url_decode, base64url_encode_into};
use crate::error::{Error, sanitize};
use crate::json::{self, JsonError};
use crate::keys::{HmacKey, VerifyingKey};

/// Limits and options for [`decode_compact`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum length of the whole compact token in bytes.
    pub max_token_bytes: usize,
    /// Maximum JSON nesting depth of header and claims (top-level object = 1).
    pub max_depth: usize,
    /// `crit` extensions the caller understands and enforces itself
    /// (RFC 7515 §4.1.11). Empty by default: any `crit` is rejected.
    pub understood_crit: &'static [&'static str],
}

impl Limits {
    /// 16 KiB, depth 16, no `crit` extensions understood.
    pub const DEFAULT: Limits = Limits {
        max_token_bytes: 16 * 1024,
        max_depth: 16,
        understood_crit: &[],
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The decoded JOSE header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// `alg` (never `none`).
    pub alg: Algorithm,
    /// `kid`.
    pub kid: Option<String>,
    /// `typ`, e.g. `JWT` or `client-authentication+jwt`.
    pub typ: Option<String>,
    /// `cty`.
    pub cty: Option<String>,
    /// `crit`, only ever holding understood names.
    pub crit: Option<Vec<String>>,
    /// `x5t` (SHA-1 certificate thumbprint; a lookup hint, e.g. Entra ID).
    pub x5t: Option<String>,
    /// `x5t#S256`.
    pub x5t_s256: Option<String>,
    /// `jku` was present. Never fetched or used.
    pub has_jku: bool,
    /// `x5u` was present. Never fetched or used.
    pub has_x5u: bool,
    /// `jwk` was present. Never used for verification.
    pub has_jwk: bool,
    /// `x5c` was present. Never used for verification.
    pub has_x5c: bool,
}

impl Header {
    /// Names of the key-carrying/key-locating parameters that were present and
    /// ignored (`jku`, `x5u`, `jwk`, `x5c`), for reporting.
    pub fn ignored_key_references(&self) -> Vec<&'static str> {
        [
            (self.has_jku, "jku"),
            (self.has_x5u, "x5u"),
            (self.has_jwk, "jwk"),
            (self.has_x5c, "x5c"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect()
    }
}

/// A structurally valid JWS whose signature has **not** been checked.
#[derive(Debug, Clone)]
pub struct UnverifiedJwt {
    header: Header,
    header_json: Map<String, Value>,
    claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

/// A JWT whose signature has been verified (claims still need [`crate::validate`]).
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    header: Header,
    claims: Map<String, Value>,
    key_id: Option<String>,
}

/// Header names registered by RFC 7515 §4.1; they may not appear in `crit`.
const REGISTERED: [&str; 11] = [
    "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit",
];

fn json_reason(err: JsonError, part: Part) -> Error {
    Error::Malformed(match (part, err) {
        (Part::Header, JsonError::NotObject) => "header is not a JSON object",
        (Part::Header, JsonError::Duplicate) => "duplicate member name in header",
        (Part::Header, JsonError::TooDeep) => "header nesting too deep",
        (Part::Header, JsonError::Syntax) => "header is not valid JSON",
        (Part::Claims, JsonError::NotObject) => "claims are not a JSON object",
        (Part::Claims, JsonError::Duplicate) => "duplicate claim name",
        (Part::Claims, JsonError::TooDeep) => "claims nesting too deep",
        (Part::Claims, JsonError::Syntax) => "claims are not valid JSON",
    })
}

#[derive(Clone, Copy)]
enum Part {
    Header,
    Claims,
}

fn opt_string(map: &Map<String, Value>, name: &str, bad: &'static str) -> Result<Option<String>, Error> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::Malformed(bad)),
    }
}

fn parse_header(map: &Map<String, Value>, limits: &Limits) -> Result<Header, Error> {
    // RFC 7516 §4.1.2: `enc` marks a JWE.
    if map.contains_key("enc") {
        return Err(Error::Jwe);
    }
    let alg = match map.get("alg") {
        None => return Err(Error::Malformed("header has no alg")),
        Some(Value::String(s)) => s.parse::<Algorithm>()?,
        Some(_) => return Err(Error::Malformed("alg is not a string")),
    };
    // RFC 7797 unencoded payloads change what is signed: refuse.
    if map.contains_key("b64") {
        return Err(Error::UnsupportedHeader("b64"));
    }
    if map.contains_key("zip") {
        return Err(Error::UnsupportedHeader("zip"));
    }
    // RFC 7515 §4.1.11.
    let crit = match map.get("crit") {
        None => None,
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut names = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(name) = item else {
                    return Err(Error::Malformed("crit entries must be strings"));
                };
                if REGISTERED.contains(&name.as_str()) {
                    return Err(Error::Malformed("crit lists a registered header parameter"));
                }
                if !limits.understood_crit.contains(&name.as_str()) {
                    return Err(Error::CritUnsupported(sanitize(name)));
                }
                if !map.contains_key(name) {
                    return Err(Error::Malformed("crit lists a parameter that is absent"));
                }
                names.push(name.clone());
            }
            Some(names)
        }
        Some(_) => return Err(Error::Malformed("crit must be a non-empty array")),
    };
    Ok(Header {
        alg,
        kid: opt_string(map, "kid", "kid is not a string")?,
        typ: opt_string(map, "typ", "typ is not a string")?,
        cty: opt_string(map, "cty", "cty is not a string")?,
        crit,
        x5t: opt_string(map, "x5t", "x5t is not a string")?,
        x5t_s256: opt_string(map, "x5t#S256", "x5t#S256 is not a string")?,
        has_jku: map.contains_key("jku"),
        has_x5u: map.contains_key("x5u"),
        has_jwk: map.contains_key("jwk"),
        has_x5c: map.contains_key("x5c"),
    })
}

/// Decodes a compact JWS strictly, without verifying it.
///
/// Rejects: tokens over `limits.max_token_bytes`; anything but exactly three
/// segments (five = JWE, [`Error::Jwe`]); base64url with padding or foreign
/// characters; a header or claims that are not JSON objects, contain duplicate
/// member names or nest too deeply; `alg` `none` ([`Error::AlgNone`]) or
/// unknown ([`Error::UnsupportedAlgorithm`]); `crit` with names not in
/// `limits.understood_crit`; `b64` and `zip`; an empty signature.
/// `jku`/`x5u`/`jwk`/`x5c` are recorded in [`Header`] and otherwise ignored.
pub fn decode_compact(token: &str, limits: &Limits) -> Result<UnverifiedJwt, Error> {
    if token.len() > limits.max_token_bytes {
        return Err(Error::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(if token.split('.').count() == 5 {
            Error::Jwe
        } else {
            Error::Malformed("a compact JWS has exactly three segments")
        });
    };
    if h64.is_empty() {
        return Err(Error::Malformed("header segment is empty"));
    }
    let header_bytes = base64url_decode(h64).map_err(|_| Error::Malformed("header is not base64url"))?;
    let header_json = json::parse_object(&header_bytes, limits.max_depth).map_err(|e| json_reason(e, Part::Header))?;
    let header = parse_header(&header_json, limits)?;

    // RFC 7515 §5.2 step 7: an empty signature would be an unsecured JWS.
    if s64.is_empty() {
        return Err(Error::Malformed("signature segment is empty"));
    }
    let signature = base64url_decode(s64).map_err(|_| Error::Malformed("signature is not base64url"))?;

    let payload = base64url_decode(p64).map_err(|_| Error::Malformed("payload is not base64url"))?;
    let claims = json::parse_object(&payload, limits.max_depth).map_err(|e| json_reason(e, Part::Claims))?;

    Ok(UnverifiedJwt {
        header,
        header_json,
        claims,
        signing_input: token[..h64.len() + 1 + p64.len()].to_owned(),
        signature,
    })
}

impl UnverifiedJwt {
    /// The decoded header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The full header object, including parameters not modelled in [`Header`].
    pub fn header_json(&self) -> &Map<String, Value> {
        &self.header_json
    }

    /// The claims, **unverified**: only for choosing a key (by `iss`, `kid`).
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The `iss` claim when it is a string (unverified; for key lookup).
    pub fn unverified_issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// The JWS signing input (`header.payload`).
    pub fn signing_input(&self) -> &str {
        &self.signing_input
    }

    fn check_allowed(&self, allowed: &[Algorithm]) -> Result<Algorithm, Error> {
        let alg = self.header.alg;
        // RFC 8725 §3.1: the caller's allow-list, never the token, decides.
        if !allowed.contains(&alg) {
            return Err(Error::AlgorithmNotAllowed { alg });
        }
        Ok(alg)
    }

    fn verified(&self, key_id: Option<&str>) -> VerifiedJwt {
        VerifiedJwt {
            header: self.header.clone(),
            claims: self.claims.clone(),
            key_id: key_id.map(str::to_owned),
        }
    }

    /// Verifies with one public key. The algorithm must be in `allowed` and
    /// compatible with the key; `HS*` is always refused here. When both the
    /// token and the key have a `kid`, they must be equal.
    pub fn verify(&self, key: &VerifyingKey, allowed: &[Algorithm]) -> Result<VerifiedJwt, Error> {
        let alg = self.check_allowed(allowed)?;
        if alg.is_hmac() {
            return Err(Error::KeyAlgorithmMismatch);
        }
        if let (Some(want), Some(have)) = (self.header.kid.as_deref(), key.kid())
            && want != have
        {
            return Err(Error::KidMismatch);
        }
        key.verify(alg, self.signing_input.as_bytes(), &self.signature)?;
        Ok(self.verified(key.kid()))
    }

    /// Verifies a MAC. The algorithm must be in `allowed` and equal the key's.
    pub fn verify_hmac(&self, key: &HmacKey, allowed: &[Algorithm]) -> Result<VerifiedJwt, Error> {
        let alg = self.check_allowed(allowed)?;
        if alg != key.alg() {
            return Err(Error::KeyAlgorithmMismatch);
        }
        key.verify(self.signing_input.as_bytes(), &self.signature)?;
        Ok(self.verified(None))
    }

    /// Verifies against a key set.
    ///
    /// With a `kid` in the header: the keys with that `kid` (none compatible →
    /// [`Error::KeyAlgorithmMismatch`]); when no key has it, keys *without* a
    /// `kid`; neither → [`Error::UnknownKey`]. Without a `kid` (Authlib sends
    /// none): every compatible key is tried. [`VerifiedJwt::key_id`] tells
    /// which key verified.
    pub fn verify_with_any(&self, keys: &[VerifyingKey], allowed: &[Algorithm]) -> Result<VerifiedJwt, Error> {
        let alg = self.check_allowed(allowed)?;
        if alg.is_hmac() {
            return Err(Error::KeyAlgorithmMismatch);
        }
        let candidates: Vec<&VerifyingKey> = match self.header.kid.as_deref() {
            Some(kid) => {
                let same: Vec<&VerifyingKey> = keys.iter().filter(|k| k.kid() == Some(kid)).collect();
                if same.is_empty() {
                    keys.iter().filter(|k| k.kid().is_none() && k.supports(alg)).collect()
                } else {
                    let compatible: Vec<&VerifyingKey> = same.into_iter().filter(|k| k.supports(alg)).collect();
                    if compatible.is_empty() {
                        return Err(Error::KeyAlgorithmMismatch);
                    }
                    compatible
                }
            }
            None => keys.iter().filter(|k| k.supports(alg)).collect(),
        };
        if candidates.is_empty() {
            return Err(Error::UnknownKey);
        }
        for key in candidates {
            if key.verify(alg, self.signing_input.as_bytes(), &self.signature).is_ok() {
                return Ok(self.verified(key.kid()));
            }
        }
        Err(Error::InvalidSignature)
    }
}

impl VerifiedJwt {
    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The verified claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// Consumes the token, returning the claims.
    pub fn into_claims(self) -> Map<String, Value> {
        self.claims
    }

    /// The `kid` of the key that verified the signature, if it had one.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// The claims deserialized into `T`.
    pub fn claims_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        T::deserialize(&Value::Object(self.claims.clone())).map_err(|_| Error::ClaimsShape)
    }
}

#[derive(Serialize)]
struct OutHeader<'a> {
    alg: Algorithm,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    typ: Option<&'a str>,
}

/// Builds `b64(header).b64(claims).b64(signature)`. The claims must serialize
/// to a JSON object (RFC 7519 §7.1: the JWT Claims Set is a JSON object).
pub(crate) fn encode_compact<T, F>(
    alg: Algorithm,
    kid: Option<&str>,
    typ: Option<&str>,
    claims: &T,
    sign: F,
) -> Result<String, Error>
where
    T: Serialize + ?Sized,
    F: FnOnce(&[u8]) -> Result<Vec<u8>, Error>,
{
    let header = serde_json::to_vec(&OutHeader { alg, kid, typ }).map_err(|_| Error::Serialize("header"))?;
    let payload = serde_json::to_vec(claims).map_err(|_| Error::Serialize("claims"))?;
    if payload.first() != Some(&b'{') {
        return Err(Error::Serialize("claims must be a JSON object"));
    }
    let mut out = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 700);
    base64url_encode_into(&header, &mut out);
    out.push('.');
    base64url_encode_into(&payload, &mut out);
    let signature = sign(out.as_bytes())?;
    out.push('.');
    base64url_encode_into(&signature, &mut out);
    Ok(out)
}
