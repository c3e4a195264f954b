//! JOSE for Tessera: JWK / JWK Set (RFC 7517, 7518, 7638, 8037), JWS compact
//! serialization (RFC 7515), JWT decoding and claim validation (RFC 7519, 7523)
//! and key generation.
//!
//! This crate owns:
//! - strict parsing of compact JWS tokens ([`decode_compact`]) with size, depth,
//!   duplicate-member, `alg: none`, `crit` and JWE checks;
//! - signing and verification with keys that are parsed **once** ([`SigningKey`],
//!   [`VerifyingKey`], [`HmacKey`]) and reused for every signature;
//! - claim validation that reports every check ([`validate::check_claims`]).
//!
//! It must not: perform I/O (no JWKS fetching, `jku`/`x5u`/`jwk`/`x5c` are only
//! *recorded*, never followed), read the clock (time is passed in), or implement
//! cryptography itself (all primitives come from `aws-lc-rs`; this crate only
//! does base64url, JSON and a little byte plumbing).
//!
//! ```
//! use tessera_jose::validate::{AudienceRule, Expectations, check_claims};
//! use tessera_jose::{Algorithm, Limits, SigningKey, decode_compact};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::generate(Algorithm::ES256, "k1")?; // parse/generate once, reuse
//! let now = 1_800_000_000;
//! let token = key.sign_jwt(
//!     Some("JWT"),
//!     &serde_json::json!({"iss": "c1", "sub": "c1", "aud": "https://as.example", "exp": now + 60}),
//! )?;
//!
//! let jwt = decode_compact(&token, &Limits::DEFAULT)?; // strict, unverified
//! let verified = jwt.verify(&key.verifying_key(), &[Algorithm::ES256])?;
//! let expect = Expectations {
//!     issuer: Some(vec!["c1".into()]),
//!     ..Expectations::new(now, AudienceRule::SoleOf(vec!["https://as.example".into()]))
//! };
//! let report = check_claims(verified.claims(), &expect);
//! assert!(report.is_ok());
//! # Ok(())
//! # }
//! ```
//!
//! Errors ([`Error`], [`validate::ClaimFailure`]) have `Display` texts that are
//! safe to show to clients: they never contain signatures or key material, and
//! attacker-supplied strings are truncated and stripped of `"` and `\`.

mod alg;
pub mod b64;
mod error;
mod json;
mod jwk;
mod jws;
mod keys;
pub mod validate;

pub use alg::{Algorithm, KeyType};
pub use error::Error;
pub use jwk::{Jwk, JwkSet, SkippedKey};
pub use jws::{Header, Limits, UnverifiedJwt, VerifiedJwt, decode_compact};
pub use keys::{EcCurve, HmacKey, SigningKey, VerifyingKey};

#[cfg(test)]
mod testkeys;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<SigningKey>();
        assert_send_sync::<VerifyingKey>();
        assert_send_sync::<HmacKey>();
        assert_send_sync::<Jwk>();
        assert_send_sync::<JwkSet>();
        assert_send_sync::<UnverifiedJwt>();
        assert_send_sync::<VerifiedJwt>();
        assert_send_sync::<Error>();
    }
}
