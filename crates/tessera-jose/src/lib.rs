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
