//! The crate's error type. Every `Display` text is safe to send to a client.

use crate::alg::Algorithm;

/// Errors from parsing, signing and verifying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token or JSON is structurally invalid; the reason is a fixed text.
    #[error("malformed JWT: {0}")]
    Malformed(&'static str),
    /// The input exceeds the configured size limit.
    #[error("the token or document is larger than allowed")]
    TooLarge,
    /// `alg` is `none` (in any letter case): unsecured JWS are never accepted.
    #[error("unsigned JWTs (alg none) are not accepted")]
    AlgNone,
    /// `alg` names an algorithm this crate does not implement (sanitized copy).
    #[error("unsupported signature algorithm '{0}'")]
    UnsupportedAlgorithm(String),
    /// The token's algorithm is valid but not in the caller's allow-list.
    #[error("signature algorithm {alg} is not allowed here")]
    AlgorithmNotAllowed {
        /// The algorithm the token declared.
        alg: Algorithm,
    },
    /// The key cannot be used with the requested algorithm (includes any HMAC
    /// algorithm presented to an asymmetric key).
    #[error("the key cannot be used with this signature algorithm")]
    KeyAlgorithmMismatch,
    /// The signature or MAC does not verify.
    #[error("signature verification failed")]
    InvalidSignature,
    /// No candidate key (by `kid`, type and algorithm) was found.
    #[error("no key matches the token's key id and algorithm")]
    UnknownKey,
    /// The token names a `kid` different from the single key it was checked with.
    #[error("the token's key id does not match the key")]
    KidMismatch,
    /// `crit` lists an extension this crate does not understand (RFC 7515 §4.1.11).
    #[error("critical header parameter '{0}' is not supported")]
    CritUnsupported(String),
    /// A header parameter that changes processing and is not supported (`b64`, `zip`).
    #[error("header parameter '{0}' is not supported")]
    UnsupportedHeader(&'static str),
    /// The token is a JWE (encrypted), which this crate does not handle.
    #[error("encrypted JWTs (JWE) are not supported")]
    Jwe,
    /// The key is unusable; the text is ours, never key material.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The key type or curve is not supported (sanitized copy).
    #[error("unsupported key type or curve '{0}'")]
    UnsupportedKey(String),
    /// A JWK expected to be public carries private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`).
    #[error("a public key was expected but the JWK contains private key members")]
    PrivateKeyMaterial,
    /// Verified claims could not be deserialized into the requested type.
    #[error("the claims do not have the expected shape")]
    ClaimsShape,
    /// Serializing a header or claims failed, or claims were not a JSON object.
    #[error("serialization failed: {0}")]
    Serialize(&'static str),
    /// The cryptographic library reported a failure.
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
}

/// A copy of untrusted text fit for an error message: at most 40 characters,
/// printable ASCII only, without `"` or `\` (RFC 6749 §5.2 `error_description`).
pub(crate) fn sanitize(input: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = input
        .chars()
        .take(MAX)
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if input.chars().count() > MAX {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_quotes_and_truncates() {
        assert_eq!(sanitize("a\"b\\c\nd"), "a?b?c?d");
        let long = "x".repeat(100);
        assert_eq!(sanitize(&long), format!("{}...", "x".repeat(40)));
        assert_eq!(sanitize("é"), "?");
    }

    #[test]
    fn display_never_quotes() {
        let e = Error::UnsupportedAlgorithm(sanitize("HS\"1"));
        let text = e.to_string();
        assert!(!text.contains('"') && !text.contains('\\'), "{text}");
    }
}
