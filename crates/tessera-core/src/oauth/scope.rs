//! Scope parsing and checks (RFC 6749 §3.3).

use crate::error::{OAuthError, OAuthResult};

/// A set of scope tokens in request order, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(Vec<String>);

/// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
fn valid_token(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

impl Scope {
    pub fn parse(s: &str) -> OAuthResult<Self> {
        let mut out: Vec<String> = Vec::new();
        for t in s.split(' ').filter(|t| !t.is_empty()) {
            if !valid_token(t) {
                return Err(OAuthError::invalid_scope(
                    "scope contains an invalid character",
                ));
            }
            if !out.iter().any(|x| x == t) {
                out.push(t.to_owned());
            }
        }
        Ok(Self(out))
    }

    pub fn from_tokens<I: IntoIterator<Item = S>, S: Into<String>>(it: I) -> Self {
        let mut out: Vec<String> = Vec::new();
        for t in it {
            let t = t.into();
            if !out.contains(&t) {
                out.push(t);
            }
        }
        Self(out)
    }

    pub fn contains(&self, t: &str) -> bool {
        self.0.iter().any(|x| x == t)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn tokens(&self) -> &[String] {
        &self.0
    }
    pub fn without(&self, drop: &[&str]) -> Self {
        Self(
            self.0
                .iter()
                .filter(|t| !drop.contains(&t.as_str()))
                .cloned()
                .collect(),
        )
    }
    /// The first token not in `allowed`.
    pub fn first_outside(&self, allowed: &Scope) -> Option<&str> {
        self.0
            .iter()
            .find(|t| !allowed.contains(t))
            .map(String::as_str)
    }
    /// Fail with `invalid_scope` naming the first token not in `allowed`.
    pub fn ensure_within(&self, allowed: &Scope, what: &str) -> OAuthResult<()> {
        match self.first_outside(allowed) {
            Some(t) => Err(OAuthError::invalid_scope(format!(
                "scope '{t}' is not allowed for {what}"
            ))),
            None => Ok(()),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dedups_and_rejects_bad_chars() {
        assert_eq!(Scope::parse("a  b a").unwrap().to_string(), "a b");
        assert!(Scope::parse("a \"b\"").is_err());
        assert!(Scope::parse("a\\b").is_err());
        assert!(Scope::parse("é").is_err());
    }

    #[test]
    fn within() {
        let allowed = Scope::parse("a b").unwrap();
        assert!(
            Scope::parse("a")
                .unwrap()
                .ensure_within(&allowed, "x")
                .is_ok()
        );
        let e = Scope::parse("a c")
            .unwrap()
            .ensure_within(&allowed, "client x")
            .unwrap_err();
        assert_eq!(
            e.description.as_deref(),
            Some("scope 'c' is not allowed for client x")
        );
    }
}
