//! Keys shared by the tests, generated once per test binary.

use std::sync::OnceLock;

use crate::{Algorithm, SigningKey};

/// One key per asymmetric algorithm (RSA generation is slow: do it once).
pub(crate) fn key(alg: Algorithm) -> SigningKey {
    static RSA: OnceLock<SigningKey> = OnceLock::new();
    static P256: OnceLock<SigningKey> = OnceLock::new();
    static P384: OnceLock<SigningKey> = OnceLock::new();
    static ED: OnceLock<SigningKey> = OnceLock::new();
    let slot = match alg.key_type() {
        crate::KeyType::Rsa => &RSA,
        crate::KeyType::Ec if alg == Algorithm::ES256 => &P256,
        crate::KeyType::Ec => &P384,
        crate::KeyType::Okp => &ED,
        crate::KeyType::Oct => panic!("no asymmetric key for {alg}"),
    };
    let base = slot.get_or_init(|| SigningKey::generate(alg, "test").unwrap());
    if base.alg() == alg {
        return base.clone().with_kid(format!("{alg}-key"));
    }
    // Same RSA key material under another RSA algorithm.
    SigningKey::from_pkcs8_der(alg, format!("{alg}-key"), &base.to_pkcs8_der()).unwrap()
}

/// Builds a compact token from raw JSON texts and signature bytes.
pub(crate) fn raw_token(header: &str, payload: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        crate::b64::base64url_encode(header),
        crate::b64::base64url_encode(payload),
        crate::b64::base64url_encode(signature)
    )
}
