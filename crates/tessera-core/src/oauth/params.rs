//! Strict `application/x-www-form-urlencoded` parsing for OAuth endpoints.
//!
//! RFC 6749 §3.1/§3.2: parameters sent without a value are treated as omitted, and request
//! parameters MUST NOT be included more than once. Unlike lenient decoders, invalid
//! percent-encoding and invalid UTF-8 are errors, not silently passed through.

use std::collections::BTreeMap;

use crate::error::OAuthError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("parameter '{0}' is included more than once")]
    Duplicate(String),
    #[error("invalid percent-encoding in the request body")]
    BadPercentEncoding,
    #[error("the request body is not valid UTF-8")]
    BadUtf8,
    #[error("too many parameters")]
    TooMany,
}

impl From<FormError> for OAuthError {
    fn from(e: FormError) -> Self {
        OAuthError::invalid_request(e.to_string())
    }
}

/// Decoded parameters; empty values are kept out (treated as omitted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

const MAX_PARAMS: usize = 64;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode one name or value (`+` is a space), strictly.
pub fn decode_component(raw: &[u8]) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = raw.get(i + 1).copied().and_then(hex);
                let lo = raw.get(i + 2).copied().and_then(hex);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(FormError::BadPercentEncoding),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::BadUtf8)
}

impl Params {
    pub fn parse(body: &[u8]) -> Result<Self, FormError> {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut names = std::collections::BTreeSet::new();
        for pair in body.split(|b| *b == b'&') {
            if pair.is_empty() {
                continue;
            }
            if names.len() >= MAX_PARAMS {
                return Err(FormError::TooMany);
            }
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(p) => (&pair[..p], &pair[p + 1..]),
                None => (pair, &b""[..]),
            };
            let name = decode_component(name)?;
            let value = decode_component(value)?;
            if !names.insert(name.clone()) {
                return Err(FormError::Duplicate(name));
            }
            if !value.is_empty() {
                seen.insert(name, value);
            }
        }
        Ok(Self(seen))
    }

    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        Self(pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter '{name}'")))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_treats_empty_as_omitted() {
        let p = Params::parse(b"grant_type=client_credentials&scope=&a+b=c%20d").unwrap();
        assert_eq!(p.get("grant_type"), Some("client_credentials"));
        assert_eq!(p.get("scope"), None);
        assert_eq!(p.get("a b"), Some("c d"));
    }

    #[test]
    fn rejects_duplicates_even_when_empty() {
        assert_eq!(
            Params::parse(b"a=1&a=2"),
            Err(FormError::Duplicate("a".into()))
        );
        assert_eq!(
            Params::parse(b"a=&a=2"),
            Err(FormError::Duplicate("a".into()))
        );
        assert_eq!(
            Params::parse(b"a=1&%61=2"),
            Err(FormError::Duplicate("a".into()))
        );
    }

    #[test]
    fn rejects_bad_encoding() {
        assert_eq!(Params::parse(b"a=%zz"), Err(FormError::BadPercentEncoding));
        assert_eq!(Params::parse(b"a=%4"), Err(FormError::BadPercentEncoding));
        assert_eq!(Params::parse(b"a=%ff"), Err(FormError::BadUtf8));
        assert_eq!(Params::parse(&[b'a', b'=', 0xc3]), Err(FormError::BadUtf8));
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Params::parse(&body);
        }

        #[test]
        fn round_trips(pairs in proptest::collection::btree_map("[a-z_]{1,12}", "\\PC{1,20}", 0..10)) {
            let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs.iter()).finish();
            let p = Params::parse(body.as_bytes()).unwrap();
            for (k, v) in &pairs {
                prop_assert_eq!(p.get(k), Some(v.as_str()));
            }
        }
    }
}
