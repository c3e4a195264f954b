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

fn opt_string(
    map: &Map<String, Value>,
    name: &str,
    bad: &'static str,
) -> Result<Option<String>, Error> {
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

/// Whether a token that is not three segments is a JWE in compact serialization: five
/// base64url segments (RFC 7516 §7.1, §9) whose first is a JSON object (the JOSE header).
/// Anything else with five segments — two JWTs joined by a space, `....` — is merely
/// malformed, and saying "encrypted" would mislead (RFC 7521 §4.2: one JWT only).
fn looks_like_jwe(token: &str, limits: &Limits) -> bool {
    let segments: Vec<&str> = token.split('.').collect();
    segments.len() == 5
        && segments.iter().all(|s| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && base64url_decode(segments[0])
            .ok()
            .is_some_and(|h| json::parse_object(&h, limits.max_depth).is_ok())
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
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(if looks_like_jwe(token, limits) {
            Error::Jwe
        } else {
            Error::Malformed("a compact JWS has exactly three segments")
        });
    };
    if h64.is_empty() {
        return Err(Error::Malformed("header segment is empty"));
    }
    let header_bytes =
        base64url_decode(h64).map_err(|_| Error::Malformed("header is not base64url"))?;
    let header_json = json::parse_object(&header_bytes, limits.max_depth)
        .map_err(|e| json_reason(e, Part::Header))?;
    let header = parse_header(&header_json, limits)?;

    // RFC 7515 §5.2 step 7: an empty signature would be an unsecured JWS.
    if s64.is_empty() {
        return Err(Error::Malformed("signature segment is empty"));
    }
    let signature =
        base64url_decode(s64).map_err(|_| Error::Malformed("signature is not base64url"))?;

    let payload =
        base64url_decode(p64).map_err(|_| Error::Malformed("payload is not base64url"))?;
    let claims =
        json::parse_object(&payload, limits.max_depth).map_err(|e| json_reason(e, Part::Claims))?;

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
        if alg.is_hmac() || !key.supports(alg) {
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
    pub fn verify_with_any(
        &self,
        keys: &[VerifyingKey],
        allowed: &[Algorithm],
    ) -> Result<VerifiedJwt, Error> {
        let alg = self.check_allowed(allowed)?;
        if alg.is_hmac() {
            return Err(Error::KeyAlgorithmMismatch);
        }
        let candidates: Vec<&VerifyingKey> = match self.header.kid.as_deref() {
            Some(kid) => {
                let same: Vec<&VerifyingKey> =
                    keys.iter().filter(|k| k.kid() == Some(kid)).collect();
                if same.is_empty() {
                    keys.iter()
                        .filter(|k| k.kid().is_none() && k.supports(alg))
                        .collect()
                } else {
                    let compatible: Vec<&VerifyingKey> =
                        same.into_iter().filter(|k| k.supports(alg)).collect();
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
            if key
                .verify(alg, self.signing_input.as_bytes(), &self.signature)
                .is_ok()
            {
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
    let header =
        serde_json::to_vec(&OutHeader { alg, kid, typ }).map_err(|_| Error::Serialize("header"))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkeys::{key, raw_token};
    use crate::{HmacKey, Jwk, SigningKey};
    use proptest::prelude::*;
    use serde_json::json;

    const L: Limits = Limits::DEFAULT;
    const ASYMMETRIC: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    fn claims() -> Value {
        json!({"iss": "client-1", "sub": "client-1", "aud": "https://as.example", "exp": 1_900_000_000, "jti": "j1"})
    }

    fn decode_err(token: &str) -> Error {
        decode_compact(token, &L).unwrap_err()
    }

    // RFC 7515 Appendix A.2 / A.3 payload.
    const RFC_PAYLOAD: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";

    #[test]
    fn rfc7515_a2_rs256_vector() {
        let jwk = Jwk::from_json(br#"{"kty":"RSA",
            "n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
            "e":"AQAB"}"#).unwrap();
        let key = jwk.to_verifying_key().unwrap();
        let token = format!(
            "eyJhbGciOiJSUzI1NiJ9.{RFC_PAYLOAD}.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
        );
        let jwt = decode_compact(&token, &L).unwrap();
        let verified = jwt.verify(&key, &[Algorithm::RS256]).unwrap();
        assert_eq!(verified.claims()["iss"], "joe");
        assert_eq!(verified.claims()["http://example.com/is_root"], true);
        // Same token, PS256 not allowed for it and RS384 would be a different algorithm.
        assert_eq!(
            jwt.verify(&key, &[Algorithm::PS256]).unwrap_err(),
            Error::AlgorithmNotAllowed {
                alg: Algorithm::RS256
            }
        );
    }

    #[test]
    fn rfc7515_a3_es256_vector() {
        let jwk = Jwk::from_json(
            br#"{"kty":"EC","crv":"P-256",
            "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#,
        )
        .unwrap();
        let key = jwk.to_verifying_key().unwrap();
        let token = format!(
            "eyJhbGciOiJFUzI1NiJ9.{RFC_PAYLOAD}.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
        );
        let verified = decode_compact(&token, &L)
            .unwrap()
            .verify(&key, &[Algorithm::ES256])
            .unwrap();
        assert_eq!(verified.claims()["exp"], 1_300_819_380);
    }

    #[test]
    fn rfc7515_a1_hs256_vector() {
        let k = crate::b64::base64url_decode(
            "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
        )
        .unwrap();
        let key = HmacKey::new(Algorithm::HS256, &k).unwrap();
        let token = format!(
            "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.{RFC_PAYLOAD}.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
        let jwt = decode_compact(&token, &L).unwrap();
        assert_eq!(jwt.header().typ.as_deref(), Some("JWT"));
        jwt.verify_hmac(&key, &[Algorithm::HS256]).unwrap();
        let wrong = HmacKey::new(Algorithm::HS256, b"another secret").unwrap();
        assert_eq!(
            jwt.verify_hmac(&wrong, &[Algorithm::HS256]).unwrap_err(),
            Error::InvalidSignature
        );
    }

    #[test]
    fn rfc8037_a4_ed25519_vector() {
        let x =
            crate::b64::base64url_decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        let key = VerifyingKey::from_ed25519(&x).unwrap();
        let input = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let sig = crate::b64::base64url_decode(
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg",
        )
        .unwrap();
        key.verify(Algorithm::EdDSA, input, &sig).unwrap();
        assert_eq!(
            key.verify(Algorithm::EdDSA, b"tampered", &sig),
            Err(Error::InvalidSignature)
        );

        // The RFC's private key d as PKCS#8 v1: Ed25519 is deterministic.
        let d =
            crate::b64::base64url_decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap();
        let mut pkcs8 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        pkcs8.extend_from_slice(&d);
        let signer = SigningKey::from_pkcs8_der(Algorithm::EdDSA, "rfc8037", &pkcs8).unwrap();
        assert_eq!(signer.sign(input).unwrap(), sig);
        assert_eq!(
            signer.public_jwk().x.as_deref(),
            Some("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
        );
        // RFC 8037 §A.3 thumbprint.
        assert_eq!(
            signer.verifying_key().thumbprint_sha256(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn round_trip_every_asymmetric_alg_including_jwk_export() {
        for alg in ASYMMETRIC {
            let signer = key(alg);
            let token = signer.sign_jwt(Some("JWT"), &claims()).unwrap();
            let jwt = decode_compact(&token, &L).unwrap();
            assert_eq!(jwt.header().alg, alg);
            assert_eq!(jwt.header().kid.as_deref(), Some(signer.kid()));
            assert_eq!(jwt.header().typ.as_deref(), Some("JWT"));
            let v = jwt.verify(&signer.verifying_key(), &[alg]).unwrap();
            assert_eq!(v.claims()["jti"], "j1");
            assert_eq!(v.key_id(), Some(signer.kid()));

            // JWK export -> JSON -> import -> verify.
            let json = serde_json::to_vec(&signer.public_jwk()).unwrap();
            let imported = Jwk::from_json(&json).unwrap().to_verifying_key().unwrap();
            assert_eq!(imported.alg(), Some(alg));
            jwt.verify(&imported, &[alg]).unwrap();
        }
    }

    #[test]
    fn round_trip_hmac_algs() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let key = HmacKey::new(alg, b"client secret octets").unwrap();
            let token = key.sign_jwt(None, &claims()).unwrap();
            let jwt = decode_compact(&token, &L).unwrap();
            assert_eq!(jwt.header().typ, None);
            assert_eq!(jwt.header().kid, None);
            jwt.verify_hmac(&key, &[alg]).unwrap();
            // An HMAC key for another HS algorithm is a mismatch, not a MAC failure.
            let other = HmacKey::new(
                if alg == Algorithm::HS256 {
                    Algorithm::HS512
                } else {
                    Algorithm::HS256
                },
                b"x",
            )
            .unwrap();
            assert_eq!(
                jwt.verify_hmac(&other, &[alg]).unwrap_err(),
                Error::KeyAlgorithmMismatch
            );
        }
    }

    #[test]
    fn header_layout_of_signed_tokens() {
        let token = key(Algorithm::ES256)
            .sign_jwt(Some("client-authentication+jwt"), &claims())
            .unwrap();
        let header = token.split('.').next().unwrap();
        let text = String::from_utf8(crate::b64::base64url_decode(header).unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"alg":"ES256","kid":"ES256-key","typ":"client-authentication+jwt"}"#
        );
        // ECDSA signatures are fixed-length r||s.
        let sig = token.rsplit('.').next().unwrap();
        assert_eq!(crate::b64::base64url_decode(sig).unwrap().len(), 64);
    }

    #[test]
    fn signing_non_object_claims_fails() {
        let k = key(Algorithm::EdDSA);
        assert_eq!(
            k.sign_jwt(None, &json!([1, 2])).unwrap_err(),
            Error::Serialize("claims must be a JSON object")
        );
        assert!(k.sign_jwt(None, "text").is_err());
    }

    #[test]
    fn alg_none_rejected_in_any_case() {
        for alg in ["none", "None", "NONE"] {
            let t = raw_token(&format!(r#"{{"alg":"{alg}"}}"#), r#"{"iss":"a"}"#, b"");
            assert_eq!(decode_err(&t), Error::AlgNone, "{alg}");
            let t = raw_token(&format!(r#"{{"alg":"{alg}"}}"#), r#"{"iss":"a"}"#, b"sig");
            assert_eq!(decode_err(&t), Error::AlgNone, "{alg}");
        }
        // RFC 7515 A.5 verbatim.
        assert_eq!(
            decode_err(&format!("eyJhbGciOiJub25lIn0.{RFC_PAYLOAD}.")),
            Error::AlgNone
        );
    }

    #[test]
    fn unknown_alg_rejected() {
        let t = raw_token(r#"{"alg":"ES512"}"#, "{}", b"s");
        assert_eq!(decode_err(&t), Error::UnsupportedAlgorithm("ES512".into()));
        let t = raw_token(r#"{"alg":"rs256"}"#, "{}", b"s");
        assert!(matches!(decode_err(&t), Error::UnsupportedAlgorithm(_)));
        let t = raw_token(r#"{"alg":256}"#, "{}", b"s");
        assert_eq!(decode_err(&t), Error::Malformed("alg is not a string"));
        let t = raw_token(r#"{"typ":"JWT"}"#, "{}", b"s");
        assert_eq!(decode_err(&t), Error::Malformed("header has no alg"));
    }

    #[test]
    fn hs256_token_against_rsa_and_ec_public_keys_is_key_confusion() {
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            let public = key(alg).verifying_key();
            // The classic attack: MAC with the public key's published bytes.
            let secret = serde_json::to_vec(&key(alg).public_jwk()).unwrap();
            let forged = HmacKey::new(Algorithm::HS256, &secret)
                .unwrap()
                .sign_jwt(None, &claims())
                .unwrap();
            let jwt = decode_compact(&forged, &L).unwrap();
            assert_eq!(
                jwt.verify(&public, &[Algorithm::HS256, alg]).unwrap_err(),
                Error::KeyAlgorithmMismatch
            );
            assert_eq!(
                jwt.verify_with_any(std::slice::from_ref(&public), &[Algorithm::HS256, alg])
                    .unwrap_err(),
                Error::KeyAlgorithmMismatch
            );
            assert_eq!(
                public.verify(Algorithm::HS256, b"x", b"y"),
                Err(Error::KeyAlgorithmMismatch)
            );
        }
    }

    #[test]
    fn alg_not_in_allow_list() {
        let token = key(Algorithm::RS256).sign_jwt(None, &claims()).unwrap();
        let jwt = decode_compact(&token, &L).unwrap();
        let err = jwt
            .verify(&key(Algorithm::RS256).verifying_key(), &[Algorithm::ES256])
            .unwrap_err();
        assert_eq!(
            err,
            Error::AlgorithmNotAllowed {
                alg: Algorithm::RS256
            }
        );
        assert_eq!(
            err.to_string(),
            "signature algorithm RS256 is not allowed here"
        );
        assert!(
            jwt.verify(&key(Algorithm::RS256).verifying_key(), &[])
                .is_err()
        );
    }

    #[test]
    fn es256_token_with_rsa_key_and_cross_type_mismatches() {
        let token = key(Algorithm::ES256).sign_jwt(None, &claims()).unwrap();
        let jwt = decode_compact(&token, &L).unwrap();
        let rsa = key(Algorithm::RS256).verifying_key();
        assert_eq!(
            jwt.verify(&rsa, &[Algorithm::ES256]).unwrap_err(),
            Error::KeyAlgorithmMismatch
        );
        let p384 = key(Algorithm::ES384).verifying_key();
        assert_eq!(
            jwt.verify(&p384, &[Algorithm::ES256]).unwrap_err(),
            Error::KeyAlgorithmMismatch
        );
        // An RS256-pinned key does not verify PS256 even though the type matches.
        let ps = key(Algorithm::PS256).sign_jwt(None, &claims()).unwrap();
        let ps = decode_compact(&ps, &L).unwrap();
        assert_eq!(
            ps.verify(&rsa, &[Algorithm::PS256]).unwrap_err(),
            Error::KeyAlgorithmMismatch
        );
    }

    #[test]
    fn tampered_payload_and_signature_fail() {
        let signer = key(Algorithm::ES256);
        let token = signer.sign_jwt(None, &claims()).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let evil = crate::b64::base64url_encode(r#"{"iss":"client-1","sub":"admin"}"#);
        parts[1] = &evil;
        let jwt = decode_compact(&parts.join("."), &L).unwrap();
        assert_eq!(
            jwt.verify(&signer.verifying_key(), &[Algorithm::ES256])
                .unwrap_err(),
            Error::InvalidSignature
        );

        let mut sig = token.clone();
        let last = sig.pop().unwrap();
        sig.push(if last == 'A' { 'Q' } else { 'A' });
        if let Ok(jwt) = decode_compact(&sig, &L) {
            assert!(
                jwt.verify(&signer.verifying_key(), &[Algorithm::ES256])
                    .is_err()
            );
        }
        // Signature from another key.
        let other = SigningKey::generate(Algorithm::ES256, "ES256-key").unwrap();
        let jwt = decode_compact(&other.sign_jwt(None, &claims()).unwrap(), &L).unwrap();
        assert_eq!(
            jwt.verify(&signer.verifying_key(), &[Algorithm::ES256])
                .unwrap_err(),
            Error::InvalidSignature
        );
    }

    #[test]
    fn wrong_kid() {
        let signer = key(Algorithm::EdDSA);
        let token = signer
            .clone()
            .with_kid("other")
            .sign_jwt(None, &claims())
            .unwrap();
        let jwt = decode_compact(&token, &L).unwrap();
        assert_eq!(
            jwt.verify(&signer.verifying_key(), &[Algorithm::EdDSA])
                .unwrap_err(),
            Error::KidMismatch
        );
        assert_eq!(
            jwt.verify_with_any(&[signer.verifying_key()], &[Algorithm::EdDSA])
                .unwrap_err(),
            Error::UnknownKey
        );
    }

    #[test]
    fn verify_with_any_selection() {
        let ed = key(Algorithm::EdDSA);
        let es = key(Algorithm::ES256);
        let keys = [es.verifying_key(), ed.verifying_key()];
        let allowed = [Algorithm::ES256, Algorithm::EdDSA];

        // kid present and matching.
        let t = decode_compact(&ed.sign_jwt(None, &claims()).unwrap(), &L).unwrap();
        assert_eq!(
            t.verify_with_any(&keys, &allowed).unwrap().key_id(),
            Some("EdDSA-key")
        );

        // No kid (Authlib): every compatible key is tried.
        let bare = HmacKeyless::sign_without_kid(&ed);
        let t = decode_compact(&bare, &L).unwrap();
        assert_eq!(t.header().kid, None);
        assert_eq!(
            t.verify_with_any(&keys, &allowed).unwrap().key_id(),
            Some("EdDSA-key")
        );

        // Token kid unknown, but a key without kid exists: it is tried.
        let unnamed = VerifyingKey::from_ed25519(
            &crate::b64::base64url_decode(ed.public_jwk().x.as_deref().unwrap()).unwrap(),
        )
        .unwrap();
        let t = decode_compact(
            &ed.clone()
                .with_kid("rotated")
                .sign_jwt(None, &claims())
                .unwrap(),
            &L,
        )
        .unwrap();
        assert_eq!(
            t.verify_with_any(&[es.verifying_key(), unnamed], &allowed)
                .unwrap()
                .key_id(),
            None
        );

        // kid matches a key of the wrong type.
        let t = decode_compact(
            &ed.clone()
                .with_kid("ES256-key")
                .sign_jwt(None, &claims())
                .unwrap(),
            &L,
        )
        .unwrap();
        assert_eq!(
            t.verify_with_any(&keys, &allowed).unwrap_err(),
            Error::KeyAlgorithmMismatch
        );

        // No compatible key at all / empty set.
        let t = decode_compact(&bare, &L).unwrap();
        assert_eq!(
            t.verify_with_any(&[es.verifying_key()], &allowed)
                .unwrap_err(),
            Error::UnknownKey
        );
        assert_eq!(
            t.verify_with_any(&[], &allowed).unwrap_err(),
            Error::UnknownKey
        );

        // Compatible keys that do not verify.
        let stranger = SigningKey::generate(Algorithm::EdDSA, "s").unwrap();
        let t = decode_compact(&HmacKeyless::sign_without_kid(&stranger), &L).unwrap();
        assert_eq!(
            t.verify_with_any(&keys, &allowed).unwrap_err(),
            Error::InvalidSignature
        );
    }

    /// Signs like Authlib: header without `kid`.
    struct HmacKeyless;
    impl HmacKeyless {
        fn sign_without_kid(key: &SigningKey) -> String {
            encode_compact(key.alg(), None, Some("JWT"), &claims(), |i| key.sign(i)).unwrap()
        }
    }

    #[test]
    fn crit_rejected_unless_understood() {
        let t = raw_token(r#"{"alg":"ES256","crit":["exp"],"exp":1}"#, "{}", b"s");
        assert_eq!(decode_err(&t), Error::CritUnsupported("exp".into()));
        let t = raw_token(r#"{"alg":"ES256","crit":[]}"#, "{}", b"s");
        assert_eq!(
            decode_err(&t),
            Error::Malformed("crit must be a non-empty array")
        );
        let t = raw_token(r#"{"alg":"ES256","crit":"exp"}"#, "{}", b"s");
        assert_eq!(
            decode_err(&t),
            Error::Malformed("crit must be a non-empty array")
        );
        let t = raw_token(r#"{"alg":"ES256","crit":["kid"],"kid":"a"}"#, "{}", b"s");
        assert_eq!(
            decode_err(&t),
            Error::Malformed("crit lists a registered header parameter")
        );

        let limits = Limits {
            understood_crit: &["http://example.invalid/ext"],
            ..Limits::DEFAULT
        };
        let t = raw_token(
            r#"{"alg":"ES256","crit":["http://example.invalid/ext"],"http://example.invalid/ext":true}"#,
            "{}",
            b"s",
        );
        let jwt = decode_compact(&t, &limits).unwrap();
        assert_eq!(
            jwt.header().crit.as_deref(),
            Some(&["http://example.invalid/ext".to_owned()][..])
        );
        let t = raw_token(
            r#"{"alg":"ES256","crit":["http://example.invalid/ext"]}"#,
            "{}",
            b"s",
        );
        assert_eq!(
            decode_compact(&t, &limits).unwrap_err(),
            Error::Malformed("crit lists a parameter that is absent")
        );
    }

    #[test]
    fn b64_and_zip_headers_rejected() {
        let t = raw_token(r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#, "{}", b"s");
        assert_eq!(decode_err(&t), Error::UnsupportedHeader("b64"));
        let t = raw_token(r#"{"alg":"HS256","b64":true}"#, "{}", b"s");
        assert_eq!(decode_err(&t), Error::UnsupportedHeader("b64"));
        let t = raw_token(r#"{"alg":"HS256","zip":"DEF"}"#, "{}", b"s");
        assert_eq!(decode_err(&t), Error::UnsupportedHeader("zip"));
    }

    #[test]
    fn padding_and_invalid_base64_rejected() {
        let good = raw_token(r#"{"alg":"ES256"}"#, r#"{"a":1}"#, b"sig");
        assert!(decode_compact(&good, &L).is_ok());
        let parts: Vec<&str> = good.split('.').collect();
        for (i, mutate) in [(0, "="), (1, "=="), (2, "=")] {
            let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
            p[i].push_str(mutate);
            assert!(
                matches!(decode_err(&p.join(".")), Error::Malformed(_)),
                "segment {i}"
            );
        }
        for bad in ["+", "/", " ", "\n", "%", "é"] {
            for i in 0..3 {
                let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
                p[i].insert_str(1, bad);
                assert!(
                    matches!(decode_err(&p.join(".")), Error::Malformed(_)),
                    "{bad:?} in {i}"
                );
            }
        }
        // Empty segments.
        assert_eq!(
            decode_err(&format!(".{}.{}", parts[1], parts[2])),
            Error::Malformed("header segment is empty")
        );
        assert_eq!(
            decode_err(&format!("{}.{}.", parts[0], parts[1])),
            Error::Malformed("signature segment is empty")
        );
        assert_eq!(
            decode_err(&format!("{}..{}", parts[0], parts[2])),
            Error::Malformed("claims are not valid JSON")
        );
    }

    #[test]
    fn segment_counts() {
        let good = raw_token(r#"{"alg":"ES256"}"#, r#"{"a":1}"#, b"sig");
        let p: Vec<&str> = good.split('.').collect();
        let three = Error::Malformed("a compact JWS has exactly three segments");
        assert_eq!(decode_err(p[0]), three);
        assert_eq!(decode_err(&format!("{}.{}", p[0], p[1])), three);
        assert_eq!(decode_err(&format!("{good}.{}", p[2])), three);
        assert_eq!(decode_err(&format!("{good}.x.y")), Error::Jwe);
        assert_eq!(decode_err(""), three);
        // Five segments that are not a JWE: two JWTs joined by a space, empty or
        // non-base64url segments, a header that is not JSON.
        assert_eq!(decode_err(&format!("{good} {good}")), three);
        assert_eq!(decode_err(&format!("{good},{good}")), three);
        assert_eq!(decode_err("...."), three);
        assert_eq!(decode_err("a.b.c.d.e"), three);
        assert_eq!(decode_err(&format!("{}.a.b.c.d", p[1])), Error::Jwe);
        assert_eq!(
            decode_err(&format!("bm90IGpzb24.{}.{}.x.y", p[1], p[2])),
            three
        );
        // A JWE-style header in three segments is still refused.
        let t = raw_token(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#, "{}", b"s");
        assert_eq!(decode_err(&t), Error::Jwe);
    }

    #[test]
    fn oversized_token_rejected() {
        let big = json!({"x": "a".repeat(20_000)}).to_string();
        let t = raw_token(r#"{"alg":"ES256"}"#, &big, b"s");
        assert_eq!(decode_err(&t), Error::TooLarge);
        let roomy = Limits {
            max_token_bytes: 64 * 1024,
            ..Limits::DEFAULT
        };
        assert!(decode_compact(&t, &roomy).is_ok());
    }

    #[test]
    fn duplicate_names_rejected() {
        let t = raw_token(r#"{"alg":"ES256"}"#, r#"{"sub":"a","sub":"admin"}"#, b"s");
        assert_eq!(decode_err(&t), Error::Malformed("duplicate claim name"));
        let t = raw_token(r#"{"alg":"ES256","alg":"HS256"}"#, "{}", b"s");
        assert_eq!(
            decode_err(&t),
            Error::Malformed("duplicate member name in header")
        );
    }

    #[test]
    fn non_object_header_and_claims_rejected() {
        for header in [r#"["alg","ES256"]"#, r#""ES256""#, "null", "not json"] {
            let t = raw_token(header, "{}", b"s");
            assert!(
                matches!(decode_err(&t), Error::Malformed(m) if m.starts_with("header")),
                "{header}"
            );
        }
        for payload in ["[1]", "\"text\"", "123", "Example of Ed25519 signing"] {
            let t = raw_token(r#"{"alg":"ES256"}"#, payload, b"s");
            assert!(
                matches!(decode_err(&t), Error::Malformed(m) if m.starts_with("claims")),
                "{payload}"
            );
        }
    }

    #[test]
    fn nesting_depth_limited() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(20), "]".repeat(20));
        let t = raw_token(r#"{"alg":"ES256"}"#, &deep, b"s");
        assert_eq!(decode_err(&t), Error::Malformed("claims nesting too deep"));
    }

    #[test]
    fn embedded_key_references_recorded_not_used() {
        let t = raw_token(
            r#"{"alg":"RS256","jku":"https://evil.example/jwks","x5u":"https://evil.example/c","jwk":{"kty":"RSA"},"x5c":["MII"],"x5t":"abc","x5t#S256":"def"}"#,
            "{}",
            b"s",
        );
        let jwt = decode_compact(&t, &L).unwrap();
        let h = jwt.header();
        assert!(h.has_jku && h.has_x5u && h.has_jwk && h.has_x5c);
        assert_eq!(h.ignored_key_references(), ["jku", "x5u", "jwk", "x5c"]);
        assert_eq!(h.x5t.as_deref(), Some("abc"));
        assert_eq!(h.x5t_s256.as_deref(), Some("def"));
        let t = raw_token(r#"{"alg":"RS256","kid":7}"#, "{}", b"s");
        assert_eq!(decode_err(&t), Error::Malformed("kid is not a string"));
    }

    #[test]
    fn google_style_header_with_spaces_parses() {
        let t = raw_token(
            r#"{"typ": "JWT", "alg": "RS256", "kid": "abc123"}"#,
            r#"{"iss": "sa@p.iam.gserviceaccount.com", "scope": ""}"#,
            b"s",
        );
        let jwt = decode_compact(&t, &L).unwrap();
        assert_eq!(jwt.header().kid.as_deref(), Some("abc123"));
        assert_eq!(
            jwt.unverified_issuer(),
            Some("sa@p.iam.gserviceaccount.com")
        );
        assert_eq!(jwt.header_json().len(), 3);
    }

    #[test]
    fn claims_as_typed() {
        #[derive(serde::Deserialize)]
        struct C {
            iss: String,
            exp: i64,
        }
        let k = key(Algorithm::EdDSA);
        let jwt = decode_compact(&k.sign_jwt(None, &claims()).unwrap(), &L).unwrap();
        let v = jwt.verify(&k.verifying_key(), &[Algorithm::EdDSA]).unwrap();
        let c: C = v.claims_as().unwrap();
        assert_eq!((c.iss.as_str(), c.exp), ("client-1", 1_900_000_000));
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Wrong {
            missing: String,
        }
        assert_eq!(v.claims_as::<Wrong>().unwrap_err(), Error::ClaimsShape);
        assert_eq!(v.into_claims().len(), 5);
    }

    #[test]
    fn error_texts_are_safe() {
        let t = raw_token(r#"{"alg":"\"<script>\\"}"#, "{}", b"s");
        let text = decode_err(&t).to_string();
        assert!(!text.contains('"') && !text.contains('\\'), "{text}");
        let sig_b64 = "c2lnbmF0dXJl";
        assert!(!text.contains(sig_b64));
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            ".{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn decode_never_panics_on_strings(s in ".{0,400}") {
            let _ = decode_compact(&s, &L);
        }

        #[test]
        fn decode_never_panics_on_dotted_base64(a in ".{0,60}", b in ".{0,60}", c in proptest::collection::vec(any::<u8>(), 0..80), dots in 0usize..6) {
            let mut t = format!("{}.{}", crate::b64::base64url_encode(&a), crate::b64::base64url_encode(&b));
            for _ in 0..dots { t.push('.'); }
            t.push_str(&crate::b64::base64url_encode(&c));
            let _ = decode_compact(&t, &L);
        }

        #[test]
        fn decode_never_panics_on_json_fragments(h in "[{}\\[\\]\":,a-z0-9 ]{0,40}", p in "[{}\\[\\]\":,a-z0-9 ]{0,40}") {
            let _ = decode_compact(&raw_token(&h, &p, b"s"), &L);
        }

        #[test]
        fn arbitrary_claims_round_trip(entries in proptest::collection::btree_map("[a-z]{1,8}", json_value(), 0..8)) {
            let claims: Map<String, Value> = entries.into_iter().collect();
            let k = key(Algorithm::EdDSA);
            let token = k.sign_jwt(Some("JWT"), &claims).unwrap();
            let jwt = decode_compact(&token, &Limits { max_token_bytes: 1 << 20, ..Limits::DEFAULT }).unwrap();
            let v = jwt.verify(&k.verifying_key(), &[Algorithm::EdDSA]).unwrap();
            prop_assert_eq!(v.claims(), &claims);
            let h = HmacKey::new(Algorithm::HS256, b"s3cret").unwrap();
            let token = h.sign_jwt(None, &claims).unwrap();
            let jwt = decode_compact(&token, &Limits { max_token_bytes: 1 << 20, ..Limits::DEFAULT }).unwrap();
            let v = jwt.verify_hmac(&h, &[Algorithm::HS256]).unwrap();
            prop_assert_eq!(v.claims(), &claims);
        }
    }
}
