//! Keys, parsed once and reused: [`SigningKey`] (asymmetric private),
//! [`VerifyingKey`] (public) and [`HmacKey`] (shared secret).

use std::fmt;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, EcdsaVerificationAlgorithm, Ed25519KeyPair,
    KeyPair as _, ParsedPublicKey, RsaEncoding, RsaKeyPair, RsaParameters, RsaPublicKeyComponents,
};
use aws_lc_rs::{digest, hmac, rsa};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::alg::{Algorithm, KeyType};
use crate::b64::base64url_encode;
use crate::error::Error;
use crate::jwk::{Jwk, ThumbprintInput};
use crate::jws;

/// RSA modulus bounds in bits (RFC 7518 §3.3: 2048 or larger; 8192 is aws-lc's cap).
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// The elliptic curves supported for ECDSA (RFC 7518 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EcCurve {
    /// NIST P-256, used with ES256.
    P256,
    /// NIST P-384, used with ES384.
    P384,
}

impl EcCurve {
    /// The JWK `crv` name.
    pub const fn name(self) -> &'static str {
        match self {
            EcCurve::P256 => "P-256",
            EcCurve::P384 => "P-384",
        }
    }

    /// The only algorithm usable with this curve.
    pub const fn alg(self) -> Algorithm {
        match self {
            EcCurve::P256 => Algorithm::ES256,
            EcCurve::P384 => Algorithm::ES384,
        }
    }

    /// Coordinate length in octets (RFC 7518 §6.2.1.2: x and y are full length).
    pub const fn coordinate_len(self) -> usize {
        match self {
            EcCurve::P256 => 32,
            EcCurve::P384 => 48,
        }
    }

    pub(crate) fn from_crv(crv: &str) -> Option<EcCurve> {
        match crv {
            "P-256" => Some(EcCurve::P256),
            "P-384" => Some(EcCurve::P384),
            _ => None,
        }
    }

    fn verification(self) -> &'static EcdsaVerificationAlgorithm {
        // Fixed-length r||s signatures (RFC 7518 §3.4), not DER.
        match self {
            EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
        }
    }

    fn signing(self) -> &'static EcdsaSigningAlgorithm {
        match self {
            EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        }
    }

    fn for_alg(alg: Algorithm) -> Option<EcCurve> {
        match alg {
            Algorithm::ES256 => Some(EcCurve::P256),
            Algorithm::ES384 => Some(EcCurve::P384),
            _ => None,
        }
    }
}

fn rsa_verification(alg: Algorithm) -> Option<&'static RsaParameters> {
    match alg {
        Algorithm::RS256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Some(&signature::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Some(&signature::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Some(&signature::RSA_PSS_2048_8192_SHA512),
        _ => None,
    }
}

fn rsa_signing(alg: Algorithm) -> Option<&'static dyn RsaEncoding> {
    match alg {
        Algorithm::RS256 => Some(&signature::RSA_PKCS1_SHA256),
        Algorithm::RS384 => Some(&signature::RSA_PKCS1_SHA384),
        Algorithm::RS512 => Some(&signature::RSA_PKCS1_SHA512),
        Algorithm::PS256 => Some(&signature::RSA_PSS_SHA256),
        Algorithm::PS384 => Some(&signature::RSA_PSS_SHA384),
        Algorithm::PS512 => Some(&signature::RSA_PSS_SHA512),
        _ => None,
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        Some(first) => (be.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

// ---------------------------------------------------------------------------
// VerifyingKey
// ---------------------------------------------------------------------------

// Always behind an `Arc`, so the variant size difference is irrelevant.
#[allow(clippy::large_enum_variant)]
enum PublicInner {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        bits: usize,
        /// One parsed key per RSA algorithm (RS256..PS512), built on first use.
        parsed: [OnceLock<ParsedPublicKey>; 6],
    },
    Ec {
        curve: EcCurve,
        /// Uncompressed SEC1 point 0x04 || x || y.
        point: Vec<u8>,
        parsed: ParsedPublicKey,
    },
    Ed25519 {
        x: Vec<u8>,
        parsed: ParsedPublicKey,
    },
}

/// A public key parsed once, for verifying JWS signatures.
///
/// Key/algorithm compatibility is enforced: RSA keys verify `RS*`/`PS*` only,
/// P-256 keys `ES256` only, P-384 keys `ES384` only, Ed25519 keys `EdDSA` only,
/// and no `HS*` algorithm is ever accepted (no key confusion). A key may also be
/// pinned to one algorithm (the JWK `alg` member).
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    inner: Arc<PublicInner>,
}

impl VerifyingKey {
    /// An RSA public key from big-endian modulus and exponent (leading zero
    /// octets are tolerated). The modulus must be 2048 to 8192 bits.
    pub fn from_rsa_components(n: &[u8], e: &[u8]) -> Result<VerifyingKey, Error> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = bit_len(n);
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(Error::InvalidKey(format!(
                "RSA modulus is {bits} bits; {RSA_MIN_BITS} to {RSA_MAX_BITS} are accepted"
            )));
        }
        // RFC 8017 §3.1: 3 <= e < n, e odd. More than 64 bits is never legitimate.
        let e_ok = e.len() <= 8
            && e.last().is_some_and(|b| b & 1 == 1)
            && (e.len() > 1 || e.first().is_some_and(|b| *b >= 3));
        if !e_ok {
            return Err(Error::InvalidKey("RSA public exponent is invalid".into()));
        }
        let key = VerifyingKey {
            kid: None,
            alg: None,
            inner: Arc::new(PublicInner::Rsa {
                n: n.to_vec(),
                e: e.to_vec(),
                bits,
                parsed: Default::default(),
            }),
        };
        // Validate now rather than at first use.
        key.rsa_parsed(Algorithm::RS256)?;
        Ok(key)
    }

    /// An EC public key from its affine coordinates; the point is validated
    /// (on the curve, not the identity).
    pub fn from_ec_coordinates(curve: EcCurve, x: &[u8], y: &[u8]) -> Result<VerifyingKey, Error> {
        let len = curve.coordinate_len();
        if x.len() != len || y.len() != len {
            return Err(Error::InvalidKey(format!(
                "{} coordinates must be {len} octets each",
                curve.name()
            )));
        }
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Self::from_ec_point(curve, point)
    }

    fn from_ec_point(curve: EcCurve, point: Vec<u8>) -> Result<VerifyingKey, Error> {
        let parsed = ParsedPublicKey::new(curve.verification(), &point)
            .map_err(|_| Error::InvalidKey(format!("not a valid {} point", curve.name())))?;
        Ok(VerifyingKey {
            kid: None,
            alg: None,
            inner: Arc::new(PublicInner::Ec {
                curve,
                point,
                parsed,
            }),
        })
    }

    /// An Ed25519 public key from its 32 octets (RFC 8037 §2).
    pub fn from_ed25519(x: &[u8]) -> Result<VerifyingKey, Error> {
        if x.len() != signature::ED25519_PUBLIC_KEY_LEN {
            return Err(Error::InvalidKey(
                "Ed25519 public keys are 32 octets".into(),
            ));
        }
        let parsed = ParsedPublicKey::new(&signature::ED25519, x)
            .map_err(|_| Error::InvalidKey("not a valid Ed25519 public key".into()))?;
        Ok(VerifyingKey {
            kid: None,
            alg: None,
            inner: Arc::new(PublicInner::Ed25519 {
                x: x.to_vec(),
                parsed,
            }),
        })
    }

    /// Sets the key id.
    pub fn with_kid(mut self, kid: impl Into<String>) -> VerifyingKey {
        self.kid = Some(kid.into());
        self
    }

    /// Pins the key to one algorithm, which must be compatible with it.
    pub fn restrict_to(mut self, alg: Algorithm) -> Result<VerifyingKey, Error> {
        if !self.type_supports(alg) {
            return Err(Error::KeyAlgorithmMismatch);
        }
        self.alg = Some(alg);
        Ok(self)
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm this key is pinned to, if any.
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        match &*self.inner {
            PublicInner::Rsa { .. } => KeyType::Rsa,
            PublicInner::Ec { .. } => KeyType::Ec,
            PublicInner::Ed25519 { .. } => KeyType::Okp,
        }
    }

    /// The RSA modulus size in bits, for RSA keys.
    pub fn rsa_bits(&self) -> Option<usize> {
        match &*self.inner {
            PublicInner::Rsa { bits, .. } => Some(*bits),
            _ => None,
        }
    }

    /// Whether this key can verify `alg` (type compatibility and pin).
    pub fn supports(&self, alg: Algorithm) -> bool {
        self.type_supports(alg) && self.alg.is_none_or(|pinned| pinned == alg)
    }

    fn type_supports(&self, alg: Algorithm) -> bool {
        match &*self.inner {
            PublicInner::Rsa { .. } => rsa_verification(alg).is_some(),
            PublicInner::Ec { curve, .. } => curve.alg() == alg,
            PublicInner::Ed25519 { .. } => alg == Algorithm::EdDSA,
        }
    }

    fn rsa_parsed(&self, alg: Algorithm) -> Result<&ParsedPublicKey, Error> {
        let PublicInner::Rsa { n, e, parsed, .. } = &*self.inner else {
            return Err(Error::KeyAlgorithmMismatch);
        };
        let params = rsa_verification(alg).ok_or(Error::KeyAlgorithmMismatch)?;
        let slot = parsed.get(alg.index()).ok_or(Error::KeyAlgorithmMismatch)?;
        if let Some(key) = slot.get() {
            return Ok(key);
        }
        let key = RsaPublicKeyComponents {
            n: n.as_slice(),
            e: e.as_slice(),
        }
        .to_parsed_public_key(params)
        .map_err(|_| Error::InvalidKey("RSA public key rejected".into()))?;
        // A concurrent initialisation may win; either value is equivalent.
        let _ = slot.set(key);
        slot.get().ok_or(Error::Crypto("key cache"))
    }

    /// Verifies a raw JWS signature over `signing_input`.
    pub fn verify(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), Error> {
        // RFC 8725 §3.1/§3.2: the key decides which algorithms are possible.
        if !self.supports(alg) {
            return Err(Error::KeyAlgorithmMismatch);
        }
        let parsed = match &*self.inner {
            PublicInner::Rsa { .. } => self.rsa_parsed(alg)?,
            PublicInner::Ec { parsed, .. } | PublicInner::Ed25519 { parsed, .. } => parsed,
        };
        parsed
            .verify_sig(signing_input, signature)
            .map_err(|_| Error::InvalidSignature)
    }

    /// The public JWK: `kty`, `kid`, `use` = `sig`, `alg` (when pinned) and
    /// the public parameters only.
    pub fn to_jwk(&self) -> Jwk {
        let mut jwk = Jwk {
            kty: self.key_type().as_str().to_owned(),
            kid: self.kid.clone(),
            use_: Some("sig".to_owned()),
            alg: self.alg.map(|a| a.as_str().to_owned()),
            ..Jwk::default()
        };
        match &*self.inner {
            PublicInner::Rsa { n, e, .. } => {
                jwk.n = Some(base64url_encode(n));
                jwk.e = Some(base64url_encode(e));
            }
            PublicInner::Ec { curve, point, .. } => {
                let len = curve.coordinate_len();
                jwk.crv = Some(curve.name().to_owned());
                jwk.x = point.get(1..1 + len).map(base64url_encode);
                jwk.y = point.get(1 + len..).map(base64url_encode);
            }
            PublicInner::Ed25519 { x, .. } => {
                jwk.crv = Some("Ed25519".to_owned());
                jwk.x = Some(base64url_encode(x));
            }
        }
        jwk
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url (a good `kid`).
    pub fn thumbprint_sha256(&self) -> String {
        match &*self.inner {
            PublicInner::Rsa { n, e, .. } => ThumbprintInput::Rsa {
                e: &base64url_encode(e),
                n: &base64url_encode(n),
            }
            .digest(),
            PublicInner::Ec { curve, point, .. } => {
                let len = curve.coordinate_len();
                let x = point.get(1..1 + len).unwrap_or_default();
                let y = point.get(1 + len..).unwrap_or_default();
                ThumbprintInput::Ec {
                    crv: curve.name(),
                    x: &base64url_encode(x),
                    y: &base64url_encode(y),
                }
                .digest()
            }
            PublicInner::Ed25519 { x, .. } => ThumbprintInput::Okp {
                crv: "Ed25519",
                x: &base64url_encode(x),
            }
            .digest(),
        }
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("VerifyingKey");
        d.field("kid", &self.kid).field("alg", &self.alg);
        match &*self.inner {
            PublicInner::Rsa { bits, .. } => d.field("rsa_bits", bits),
            PublicInner::Ec { curve, .. } => d.field("curve", &curve.name()),
            PublicInner::Ed25519 { .. } => d.field("curve", &"Ed25519"),
        };
        d.finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// SigningKey
// ---------------------------------------------------------------------------

enum PrivateInner {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// An asymmetric private key for one algorithm, parsed once: RSA (2048 bits or
/// more) for `RS*`/`PS*`, P-256 for `ES256`, P-384 for `ES384`, Ed25519 for `EdDSA`.
///
/// Cloning is cheap (shared).
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    inner: Arc<PrivateInner>,
    pkcs8: Arc<Zeroizing<Vec<u8>>>,
    public: VerifyingKey,
}

fn invalid(msg: &str) -> Error {
    Error::InvalidKey(msg.to_owned())
}

impl SigningKey {
    /// Generates a new key: RSA 2048 for `RS*`/`PS*`, P-256 / P-384 for
    /// `ES256` / `ES384`, Ed25519 for `EdDSA`. `HS*` is rejected.
    pub fn generate(alg: Algorithm, kid: impl Into<String>) -> Result<SigningKey, Error> {
        let inner = match alg.key_type() {
            KeyType::Rsa => PrivateInner::Rsa(
                RsaKeyPair::generate(rsa::KeySize::Rsa2048)
                    .map_err(|_| Error::Crypto("RSA key generation failed"))?,
            ),
            KeyType::Ec => {
                let curve = EcCurve::for_alg(alg).ok_or(Error::KeyAlgorithmMismatch)?;
                PrivateInner::Ec(
                    EcdsaKeyPair::generate(curve.signing())
                        .map_err(|_| Error::Crypto("EC key generation failed"))?,
                )
            }
            KeyType::Okp => PrivateInner::Ed25519(
                Ed25519KeyPair::generate()
                    .map_err(|_| Error::Crypto("Ed25519 key generation failed"))?,
            ),
            KeyType::Oct => return Err(invalid("HMAC algorithms use HmacKey, not SigningKey")),
        };
        Self::from_inner(alg, kid.into(), inner)
    }

    /// Parses a PKCS#8 (RFC 5208 / 5958) DER private key for `alg`.
    pub fn from_pkcs8_der(
        alg: Algorithm,
        kid: impl Into<String>,
        der: &[u8],
    ) -> Result<SigningKey, Error> {
        let inner = match alg.key_type() {
            KeyType::Rsa => {
                let kp = RsaKeyPair::from_pkcs8(der)
                    .map_err(|_| invalid("not an RSA PKCS#8 private key"))?;
                PrivateInner::Rsa(kp)
            }
            KeyType::Ec => {
                let curve = EcCurve::for_alg(alg).ok_or(Error::KeyAlgorithmMismatch)?;
                let kp = EcdsaKeyPair::from_pkcs8(curve.signing(), der).map_err(|_| {
                    Error::InvalidKey(format!("not a {} PKCS#8 private key", curve.name()))
                })?;
                PrivateInner::Ec(kp)
            }
            KeyType::Okp => {
                // PKCS#8 v1 or v2 (v2's public key is checked against the seed).
                let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|_| invalid("not an Ed25519 PKCS#8 private key"))?;
                PrivateInner::Ed25519(kp)
            }
            KeyType::Oct => return Err(invalid("HMAC algorithms use HmacKey, not SigningKey")),
        };
        Self::from_inner(alg, kid.into(), inner)
    }

    /// Parses a PEM `-----BEGIN PRIVATE KEY-----` (PKCS#8) block.
    pub fn from_pkcs8_pem(
        alg: Algorithm,
        kid: impl Into<String>,
        pem_text: &str,
    ) -> Result<SigningKey, Error> {
        let block = pem::parse(pem_text).map_err(|_| invalid("not a PEM document"))?;
        match block.tag() {
            "PRIVATE KEY" => {}
            "ENCRYPTED PRIVATE KEY" => {
                return Err(invalid("encrypted PKCS#8 keys are not supported"));
            }
            _ => {
                return Err(invalid(
                    "PEM block is not PKCS#8 'PRIVATE KEY' (convert with openssl pkcs8 -topk8 -nocrypt)",
                ));
            }
        }
        let der = Zeroizing::new(block.into_contents());
        Self::from_pkcs8_der(alg, kid, &der)
    }

    fn from_inner(alg: Algorithm, kid: String, inner: PrivateInner) -> Result<SigningKey, Error> {
        let (pkcs8, public) = match &inner {
            PrivateInner::Rsa(kp) => {
                if rsa_signing(alg).is_none() {
                    return Err(Error::KeyAlgorithmMismatch);
                }
                if kp.public_modulus_len() * 8 < RSA_MIN_BITS {
                    return Err(invalid("RSA signing keys must be at least 2048 bits"));
                }
                let der: Pkcs8V1Der<'static> = kp
                    .as_der()
                    .map_err(|_| Error::Crypto("PKCS#8 encoding failed"))?;
                let pk = kp.public_key();
                let public = VerifyingKey::from_rsa_components(
                    pk.modulus().big_endian_without_leading_zero(),
                    pk.exponent().big_endian_without_leading_zero(),
                )?;
                (Zeroizing::new(der.as_ref().to_vec()), public)
            }
            PrivateInner::Ec(kp) => {
                let curve = EcCurve::for_alg(alg).ok_or(Error::KeyAlgorithmMismatch)?;
                let doc = kp
                    .to_pkcs8v1()
                    .map_err(|_| Error::Crypto("PKCS#8 encoding failed"))?;
                let public = VerifyingKey::from_ec_point(curve, kp.public_key().as_ref().to_vec())?;
                (Zeroizing::new(doc.as_ref().to_vec()), public)
            }
            PrivateInner::Ed25519(kp) => {
                if alg != Algorithm::EdDSA {
                    return Err(Error::KeyAlgorithmMismatch);
                }
                let doc = kp
                    .to_pkcs8v1()
                    .map_err(|_| Error::Crypto("PKCS#8 encoding failed"))?;
                let public = VerifyingKey::from_ed25519(kp.public_key().as_ref())?;
                (Zeroizing::new(doc.as_ref().to_vec()), public)
            }
        };
        let public = public.with_kid(kid.clone()).restrict_to(alg)?;
        Ok(SigningKey {
            kid,
            alg,
            inner: Arc::new(inner),
            pkcs8: Arc::new(pkcs8),
            public,
        })
    }

    /// Returns the same key under another `kid` (for example its thumbprint).
    pub fn with_kid(mut self, kid: impl Into<String>) -> SigningKey {
        let kid = kid.into();
        self.public = self.public.with_kid(kid.clone());
        self.kid = kid;
        self
    }

    /// The private key as PKCS#8 v1 DER, for storage.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.pkcs8.as_slice().to_vec())
    }

    /// The private key as PEM `-----BEGIN PRIVATE KEY-----` (PKCS#8), the
    /// form Google service-account key files carry.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        use base64::Engine as _;
        let b64 =
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.pkcs8.as_slice()));
        let mut out = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / 64 + 64));
        out.push_str("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            // base64 output is ASCII, so every chunk is valid UTF-8.
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END PRIVATE KEY-----\n");
        out
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK (`kty`, `kid`, `use` = `sig`, `alg`, public parameters).
    pub fn public_jwk(&self) -> Jwk {
        self.public.to_jwk()
    }

    /// The matching verifying key (same `kid`, pinned to [`Self::alg`]).
    pub fn verifying_key(&self) -> VerifyingKey {
        self.public.clone()
    }

    /// Signs `claims` as a compact JWS with header `{alg, kid, typ?}`.
    pub fn sign_jwt<T: Serialize + ?Sized>(
        &self,
        typ: Option<&str>,
        claims: &T,
    ) -> Result<String, Error> {
        jws::encode_compact(self.alg, Some(&self.kid), typ, claims, |input| {
            self.sign(input)
        })
    }

    /// The raw JWS signature over `signing_input` (ECDSA as fixed-length
    /// r || s, RFC 7518 §3.4).
    pub fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, Error> {
        let rng = SystemRandom::new();
        match &*self.inner {
            PrivateInner::Rsa(kp) => {
                let encoding = rsa_signing(self.alg).ok_or(Error::KeyAlgorithmMismatch)?;
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(encoding, &rng, signing_input, &mut sig)
                    .map_err(|_| Error::Crypto("RSA signing failed"))?;
                Ok(sig)
            }
            PrivateInner::Ec(kp) => kp
                .sign(&rng, signing_input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::Crypto("ECDSA signing failed")),
            PrivateInner::Ed25519(kp) => kp
                .try_sign(signing_input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::Crypto("Ed25519 signing failed")),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// HmacKey
// ---------------------------------------------------------------------------

/// A shared-secret key for `HS256`/`HS384`/`HS512`.
///
/// For `client_secret_jwt` the key is the UTF-8 octets of the client secret
/// (OIDC Core §9). No minimum length is imposed beyond non-empty: RFC 7518
/// §3.2's "key of the same size as the hash output or larger" is a duty of
/// whoever *issues* the secret, and verification must accept the secrets that
/// exist. [`HmacKey::meets_rfc7518_minimum`] reports it for diagnostics.
#[derive(Clone)]
pub struct HmacKey {
    alg: Algorithm,
    key: hmac::Key,
    secret_len: usize,
}

impl HmacKey {
    /// A key for `alg` (must be `HS*`) from secret octets (must be non-empty).
    pub fn new(alg: Algorithm, secret: &[u8]) -> Result<HmacKey, Error> {
        let algorithm = match alg {
            Algorithm::HS256 => hmac::HMAC_SHA256,
            Algorithm::HS384 => hmac::HMAC_SHA384,
            Algorithm::HS512 => hmac::HMAC_SHA512,
            _ => return Err(Error::KeyAlgorithmMismatch),
        };
        if secret.is_empty() {
            return Err(invalid("HMAC secret is empty"));
        }
        Ok(HmacKey {
            alg,
            key: hmac::Key::new(algorithm, secret),
            secret_len: secret.len(),
        })
    }

    /// The algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Whether the secret is at least as long as the hash output (RFC 7518 §3.2).
    pub fn meets_rfc7518_minimum(&self) -> bool {
        self.secret_len >= self.key.algorithm().digest_algorithm().output_len()
    }

    /// The MAC over `signing_input`.
    pub fn sign(&self, signing_input: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key, signing_input).as_ref().to_vec()
    }

    /// Verifies a MAC in constant time.
    pub fn verify(&self, signing_input: &[u8], tag: &[u8]) -> Result<(), Error> {
        hmac::verify(&self.key, signing_input, tag).map_err(|_| Error::InvalidSignature)
    }

    /// Signs `claims` as a compact JWS with header `{alg, typ?}`.
    pub fn sign_jwt<T: Serialize + ?Sized>(
        &self,
        typ: Option<&str>,
        claims: &T,
    ) -> Result<String, Error> {
        jws::encode_compact(self.alg, None, typ, claims, |input| Ok(self.sign(input)))
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// SHA-256 then base64url.
pub(crate) fn sha256_b64(data: &[u8]) -> String {
    base64url_encode(digest::digest(&digest::SHA256, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkeys::key;

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

    #[test]
    fn pkcs8_der_and_pem_round_trip() {
        for alg in ASYMMETRIC {
            let k = key(alg);
            let der = k.to_pkcs8_der();
            let again = SigningKey::from_pkcs8_der(alg, k.kid(), &der).unwrap();
            assert_eq!(again.public_jwk(), k.public_jwk(), "{alg}");
            let pem = k.to_pkcs8_pem();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
            assert!(pem.lines().all(|l| l.len() <= 64));
            let from_pem = SigningKey::from_pkcs8_pem(alg, "pem", &pem).unwrap();
            assert_eq!(*from_pem.to_pkcs8_der(), *der);
            // A signature by the reloaded key verifies with the original public key.
            let sig = from_pem.sign(b"input").unwrap();
            k.verifying_key().verify(alg, b"input", &sig).unwrap();
        }
    }

    #[test]
    fn pem_with_crlf_parses_and_wrong_tags_are_refused() {
        let k = key(Algorithm::ES256);
        let crlf = k.to_pkcs8_pem().replace('\n', "\r\n");
        SigningKey::from_pkcs8_pem(Algorithm::ES256, "k", &crlf).unwrap();
        let rsa_tag = k
            .to_pkcs8_pem()
            .replace("BEGIN PRIVATE KEY", "BEGIN RSA PRIVATE KEY")
            .replace("END PRIVATE KEY", "END RSA PRIVATE KEY");
        let err = SigningKey::from_pkcs8_pem(Algorithm::ES256, "k", &rsa_tag).unwrap_err();
        assert!(err.to_string().contains("PKCS#8"), "{err}");
        assert!(SigningKey::from_pkcs8_pem(Algorithm::ES256, "k", "garbage").is_err());
        let enc = k
            .to_pkcs8_pem()
            .replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY");
        assert!(SigningKey::from_pkcs8_pem(Algorithm::ES256, "k", &enc).is_err());
    }

    #[test]
    fn pkcs8_of_the_wrong_type_or_curve_is_refused() {
        let p256 = key(Algorithm::ES256).to_pkcs8_der();
        assert!(matches!(
            SigningKey::from_pkcs8_der(Algorithm::ES384, "k", &p256),
            Err(Error::InvalidKey(_))
        ));
        assert!(matches!(
            SigningKey::from_pkcs8_der(Algorithm::RS256, "k", &p256),
            Err(Error::InvalidKey(_))
        ));
        assert!(matches!(
            SigningKey::from_pkcs8_der(Algorithm::EdDSA, "k", &p256),
            Err(Error::InvalidKey(_))
        ));
        let ed = key(Algorithm::EdDSA).to_pkcs8_der();
        assert!(matches!(
            SigningKey::from_pkcs8_der(Algorithm::ES256, "k", &ed),
            Err(Error::InvalidKey(_))
        ));
        assert!(SigningKey::from_pkcs8_der(Algorithm::HS256, "k", &ed).is_err());
        assert!(SigningKey::from_pkcs8_der(Algorithm::RS256, "k", b"\x30\x00").is_err());
    }

    #[test]
    fn generate_rejects_hmac_and_produces_expected_shapes() {
        assert!(SigningKey::generate(Algorithm::HS256, "k").is_err());
        let rsa = key(Algorithm::RS256);
        assert_eq!(rsa.verifying_key().rsa_bits(), Some(2048));
        assert_eq!(rsa.sign(b"x").unwrap().len(), 256);
        assert_eq!(key(Algorithm::ES384).sign(b"x").unwrap().len(), 96);
        assert_eq!(key(Algorithm::EdDSA).sign(b"x").unwrap().len(), 64);
        let jwk = key(Algorithm::ES384).public_jwk();
        assert_eq!(
            (
                jwk.kty.as_str(),
                jwk.crv.as_deref(),
                jwk.alg.as_deref(),
                jwk.use_.as_deref()
            ),
            ("EC", Some("P-384"), Some("ES384"), Some("sig"))
        );
        assert_eq!(jwk.x.as_deref().map(str::len), Some(64));
        assert!(!jwk.has_private_members());
        let json = serde_json::to_string(&rsa.public_jwk()).unwrap();
        for private in ["\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"dq\"", "\"qi\""] {
            assert!(!json.contains(private), "{json}");
        }
    }

    #[test]
    fn with_kid_updates_public_side() {
        let k = key(Algorithm::EdDSA).with_kid("new");
        assert_eq!(k.kid(), "new");
        assert_eq!(k.verifying_key().kid(), Some("new"));
        assert_eq!(k.public_jwk().kid.as_deref(), Some("new"));
    }

    #[test]
    fn thumbprints_agree_between_key_and_jwk() {
        for alg in [
            Algorithm::RS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            let k = key(alg);
            assert_eq!(
                k.verifying_key().thumbprint_sha256(),
                k.public_jwk().thumbprint_sha256().unwrap()
            );
        }
    }

    #[test]
    fn rsa_modulus_of_1024_bits_rejected() {
        let mut n = vec![0xffu8; 128];
        n[127] = 0xfb;
        let err = VerifyingKey::from_rsa_components(&n, &[1, 0, 1]).unwrap_err();
        assert_eq!(
            err,
            Error::InvalidKey("RSA modulus is 1024 bits; 2048 to 8192 are accepted".into())
        );
        // 2047 bits (top bit clear) is also too small; leading zero octets are ignored.
        let mut n = vec![0xffu8; 256];
        n[0] = 0x7f;
        assert!(VerifyingKey::from_rsa_components(&n, &[1, 0, 1]).is_err());
        let mut padded = vec![0u8];
        padded.extend(vec![0xffu8; 256]);
        assert!(VerifyingKey::from_rsa_components(&padded, &[1, 0, 1]).is_ok());
        assert!(VerifyingKey::from_rsa_components(&vec![0xffu8; 1025], &[1, 0, 1]).is_err());
    }

    #[test]
    fn rsa_exponent_checked() {
        let n = vec![0xffu8; 256];
        for e in [&[][..], &[1], &[2], &[1, 0, 0], &[1; 9]] {
            assert!(VerifyingKey::from_rsa_components(&n, e).is_err(), "{e:?}");
        }
        assert!(VerifyingKey::from_rsa_components(&n, &[3]).is_ok());
    }

    #[test]
    fn ec_point_not_on_curve_rejected() {
        let jwk = key(Algorithm::ES256).public_jwk();
        let x = crate::b64::base64url_decode(jwk.x.as_deref().unwrap()).unwrap();
        let mut y = crate::b64::base64url_decode(jwk.y.as_deref().unwrap()).unwrap();
        VerifyingKey::from_ec_coordinates(EcCurve::P256, &x, &y).unwrap();
        y[31] ^= 1;
        assert!(matches!(
            VerifyingKey::from_ec_coordinates(EcCurve::P256, &x, &y),
            Err(Error::InvalidKey(_))
        ));
        // Identity-like and short coordinates.
        assert!(VerifyingKey::from_ec_coordinates(EcCurve::P256, &[0; 32], &[0; 32]).is_err());
        assert!(VerifyingKey::from_ec_coordinates(EcCurve::P256, &x[1..], &y).is_err());
        // A P-256 point presented as P-384.
        assert!(VerifyingKey::from_ec_coordinates(EcCurve::P384, &x, &y).is_err());
    }

    #[test]
    fn ed25519_length_checked() {
        assert!(VerifyingKey::from_ed25519(&[1; 31]).is_err());
        assert!(VerifyingKey::from_ed25519(&[1; 33]).is_err());
    }

    #[test]
    fn restrict_to_requires_compatibility() {
        let rsa = key(Algorithm::RS256).verifying_key();
        assert!(rsa.clone().restrict_to(Algorithm::ES256).is_err());
        assert!(rsa.clone().restrict_to(Algorithm::HS256).is_err());
        let ed = key(Algorithm::EdDSA).verifying_key();
        assert!(ed.supports(Algorithm::EdDSA));
        assert!(!ed.supports(Algorithm::ES256));
        assert_eq!(ed.key_type(), KeyType::Okp);
    }

    #[test]
    fn one_rsa_key_verifies_every_rsa_alg_when_unpinned() {
        let der = key(Algorithm::RS256).to_pkcs8_der();
        let jwk = key(Algorithm::RS256).public_jwk();
        let unpinned = VerifyingKey::from_rsa_components(
            &crate::b64::base64url_decode(jwk.n.as_deref().unwrap()).unwrap(),
            &crate::b64::base64url_decode(jwk.e.as_deref().unwrap()).unwrap(),
        )
        .unwrap();
        for alg in &ASYMMETRIC[..6] {
            let signer = SigningKey::from_pkcs8_der(*alg, "k", &der).unwrap();
            let sig = signer.sign(b"m").unwrap();
            unpinned.verify(*alg, b"m", &sig).unwrap();
            // Twice: second use hits the cached parsed key.
            unpinned.verify(*alg, b"m", &sig).unwrap();
            assert_eq!(
                unpinned.verify(*alg, b"n", &sig),
                Err(Error::InvalidSignature)
            );
        }
    }

    #[test]
    fn hmac_key_rules() {
        assert_eq!(
            HmacKey::new(Algorithm::RS256, b"x").unwrap_err(),
            Error::KeyAlgorithmMismatch
        );
        assert!(matches!(
            HmacKey::new(Algorithm::HS256, b""),
            Err(Error::InvalidKey(_))
        ));
        let short = HmacKey::new(Algorithm::HS256, b"short").unwrap();
        assert!(!short.meets_rfc7518_minimum());
        assert!(
            HmacKey::new(Algorithm::HS256, &[7; 32])
                .unwrap()
                .meets_rfc7518_minimum()
        );
        assert!(
            !HmacKey::new(Algorithm::HS512, &[7; 32])
                .unwrap()
                .meets_rfc7518_minimum()
        );
        let tag = short.sign(b"data");
        short.verify(b"data", &tag).unwrap();
        assert_eq!(
            short.verify(b"data", &tag[..31]),
            Err(Error::InvalidSignature)
        );
        assert_eq!(short.verify(b"datb", &tag), Err(Error::InvalidSignature));
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let k = key(Algorithm::EdDSA);
        let text = format!(
            "{k:?} {:?} {:?}",
            k.verifying_key(),
            HmacKey::new(Algorithm::HS256, b"topsecret").unwrap()
        );
        assert!(!text.contains("topsecret"));
        assert!(!text.contains(k.public_jwk().x.as_deref().unwrap()));
        assert!(text.contains("EdDSA-key"));
    }
}
