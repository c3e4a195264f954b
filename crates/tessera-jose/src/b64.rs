//! Strict base64url without padding (RFC 7515 §2, Appendix C).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::Error;

/// Encodes `bytes` as base64url without padding.
pub fn base64url_encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Appends the base64url (no padding) encoding of `bytes` to `out`.
pub fn base64url_encode_into(bytes: impl AsRef<[u8]>, out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(bytes, out);
}

/// Decodes base64url strictly: alphabet `A-Z a-z 0-9 - _` only, no padding,
/// no whitespace, and no non-zero trailing bits (non-canonical encodings).
pub fn base64url_decode(input: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(input)
        .map_err(|_| Error::Malformed("invalid base64url"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_padding_and_foreign_chars() {
        assert_eq!(base64url_decode("YQ").unwrap(), b"a");
        for bad in ["YQ==", "YQ=", "Y Q", "YQ\n", "a+b/", "YR", "Y", "é"] {
            assert!(base64url_decode(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(base64url_decode("").unwrap(), b"");
        assert_eq!(base64url_encode([0xfb, 0xff]), "-_8");
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let s = base64url_encode(&bytes);
            prop_assert!(!s.contains('='));
            prop_assert_eq!(base64url_decode(&s).unwrap(), bytes);
        }

        #[test]
        fn decode_never_panics(s in ".*") {
            let _ = base64url_decode(&s);
        }
    }
}
