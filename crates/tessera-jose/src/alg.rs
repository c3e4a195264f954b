//! JWS algorithms (RFC 7518 §3.1, RFC 8037 §3.1) and key types (RFC 7518 §6.1).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, sanitize};

/// A supported JWS algorithm. `none` is deliberately not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 and MGF1-SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384 and MGF1-SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512 and MGF1-SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519 (RFC 8037; only the Ed25519 curve is supported).
    EdDSA,
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
}

/// A JWK key type (`kty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `RSA`
    Rsa,
    /// `EC`
    Ec,
    /// `OKP` (RFC 8037)
    Okp,
    /// `oct` (symmetric)
    Oct,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 12] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
    ];

    /// The registered JOSE name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    /// True for the HMAC algorithms (`HS*`).
    pub const fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }

    /// The key type this algorithm needs.
    pub const fn key_type(self) -> KeyType {
        match self {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyType::Rsa,
            Algorithm::ES256 | Algorithm::ES384 => KeyType::Ec,
            Algorithm::EdDSA => KeyType::Okp,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => KeyType::Oct,
        }
    }

    /// The position in [`Algorithm::ALL`].
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    /// Exact, case-sensitive match (RFC 7515 §4.1.1: `alg` is case-sensitive),
    /// except that `none` in any case is reported as [`Error::AlgNone`].
    ///
    /// `Ed25519` (RFC 9864's fully-specified name) is read as [`Algorithm::EdDSA`], which is
    /// exactly EdDSA over the Ed25519 curve here: openid-client 6 / oauth4webapi 3 sign with
    /// Ed25519 keys under that name.
    fn from_str(s: &str) -> Result<Self, Error> {
        if let Some(alg) = Algorithm::ALL.iter().find(|a| a.as_str() == s) {
            return Ok(*alg);
        }
        if s == "Ed25519" {
            return Ok(Algorithm::EdDSA);
        }
        if s.eq_ignore_ascii_case("none") {
            return Err(Error::AlgNone);
        }
        Err(Error::UnsupportedAlgorithm(sanitize(s)))
    }
}

impl Serialize for Algorithm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl KeyType {
    /// The registered `kty` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa => "RSA",
            KeyType::Ec => "EC",
            KeyType::Okp => "OKP",
            KeyType::Oct => "oct",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = Error;

    /// Case-sensitive (RFC 7517 §4.1).
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "RSA" => Ok(KeyType::Rsa),
            "EC" => Ok(KeyType::Ec),
            "OKP" => Ok(KeyType::Okp),
            "oct" => Ok(KeyType::Oct),
            other => Err(Error::UnsupportedKey(sanitize(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (i, alg) in Algorithm::ALL.iter().enumerate() {
            assert_eq!(alg.index(), i);
            assert_eq!(alg.to_string().parse::<Algorithm>(), Ok(*alg));
            let json = serde_json::to_string(alg).unwrap();
            assert_eq!(serde_json::from_str::<Algorithm>(&json).unwrap(), *alg);
        }
    }

    #[test]
    fn none_in_any_case_is_alg_none() {
        for s in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(s.parse::<Algorithm>(), Err(Error::AlgNone));
        }
    }

    #[test]
    fn fully_specified_ed25519_is_eddsa() {
        // RFC 9864 §2.2; sent by openid-client 6 for Ed25519 keys.
        assert_eq!("Ed25519".parse::<Algorithm>(), Ok(Algorithm::EdDSA));
        assert!("ed25519".parse::<Algorithm>().is_err());
        assert!("Ed448".parse::<Algorithm>().is_err());
    }

    #[test]
    fn unknown_and_wrong_case_rejected() {
        assert!(matches!(
            "rs256".parse::<Algorithm>(),
            Err(Error::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            "ES512".parse::<Algorithm>(),
            Err(Error::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            "".parse::<Algorithm>(),
            Err(Error::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn key_types() {
        assert!(Algorithm::HS384.is_hmac());
        assert!(!Algorithm::PS256.is_hmac());
        assert_eq!(Algorithm::PS512.key_type(), KeyType::Rsa);
        assert_eq!(Algorithm::ES384.key_type(), KeyType::Ec);
        assert_eq!(Algorithm::EdDSA.key_type(), KeyType::Okp);
        assert_eq!(Algorithm::HS256.key_type(), KeyType::Oct);
        assert_eq!("oct".parse::<KeyType>(), Ok(KeyType::Oct));
        assert!("rsa".parse::<KeyType>().is_err());
    }
}
