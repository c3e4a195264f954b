//! Building search filters from user input (RFC 4515 §3) and reading DNs (RFC 4514).

use std::borrow::Cow;

/// Longest accepted login name, in bytes.
pub const MAX_USERNAME_BYTES: usize = 256;

/// Why a login name is refused before any LDAP traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsernameRejection {
    Empty,
    TooLong,
    ControlCharacter,
}

impl UsernameRejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong => "too_long",
            Self::ControlCharacter => "control_character",
        }
    }
}

/// Accept a login name for the user search: not empty, at most [`MAX_USERNAME_BYTES`], no
/// control characters (C0 including NUL, DEL, C1).
pub fn check_username(username: &str) -> Result<(), UsernameRejection> {
    if username.trim().is_empty() {
        return Err(UsernameRejection::Empty);
    }
    if username.len() > MAX_USERNAME_BYTES {
        return Err(UsernameRejection::TooLong);
    }
    if username.chars().any(char::is_control) {
        return Err(UsernameRejection::ControlCharacter);
    }
    Ok(())
}

/// Escape an assertion value (RFC 4515 §3): `*`, `(`, `)`, `\` and NUL become `\2a`, `\28`,
/// `\29`, `\5c`, `\00`. Rust strings are valid UTF-8, so no other octet needs escaping.
pub fn escape_value(value: &str) -> Cow<'_, str> {
    ldap3::ldap_escape(value)
}

/// Replace every `placeholder` in `template` with `value` in one pass (the inserted text is
/// never scanned again, so a value containing the placeholder is harmless).
pub(crate) fn substitute(template: &str, placeholder: &str, value: &str) -> String {
    template.replace(placeholder, value)
}

/// The user search filter: `{username}` in `template` replaced by the escaped login name.
pub fn user_filter(template: &str, username: &str) -> String {
    substitute(template, "{username}", &escape_value(username))
}

/// The group search filter: `{dn}` in `template` replaced by the escaped user DN.
pub fn group_filter(template: &str, dn: &str) -> String {
    substitute(template, "{dn}", &escape_value(dn))
}

/// The value of the first RDN of a DN, unescaped (RFC 4514 §3):
/// `cn=Erin O\'Brien\, Jr.,ou=groups,…` gives `Erin O'Brien, Jr.`.
pub fn first_rdn_value(dn: &str) -> Option<String> {
    let bytes = dn.as_bytes();
    let eq = dn.find('=')?;
    let mut out = Vec::new();
    let mut i = eq + 1;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 3;
                } else if let Some(&c) = bytes.get(i + 1) {
                    out.push(c);
                    i += 2;
                } else {
                    i += 1;
                }
            }
            b',' | b'+' | b';' => break,
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    let s = String::from_utf8_lossy(&out).trim().to_string();
    if s.is_empty() { None } else { Some(s) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: &str = crate::config::DEFAULT_USER_FILTER;

    #[test]
    fn escaping() {
        assert_eq!(escape_value("alice"), "alice");
        assert_eq!(escape_value("*"), "\\2a");
        assert_eq!(escape_value(")(uid=*"), "\\29\\28uid=\\2a");
        assert_eq!(escape_value("\\"), "\\5c");
        assert_eq!(escape_value("a\0b"), "a\\00b");
        assert_eq!(escape_value("Jürgen 山田"), "Jürgen 山田");
        assert_eq!(
            user_filter(T, "alice)(|(uid=*"),
            "(&(uid=alice\\29\\28|\\28uid=\\2a)(objectClass=inetOrgPerson))"
        );
        // A value containing the placeholder is inserted literally, not expanded again.
        assert_eq!(
            user_filter("(uid={username})", "{username}"),
            "(uid={username})"
        );
        assert_eq!(
            group_filter(crate::config::DEFAULT_GROUP_FILTER, "cn=a\\,b (x),dc=e"),
            "(&(objectClass=groupOfNames)(member=cn=a\\5c,b \\28x\\29,dc=e))"
        );
        // Every result parses as a filter.
        for u in ["*", ")(uid=*", "alice)(|(uid=*", "\\", "a\0", "Jürgen"] {
            assert!(ldap3::parse_filter(user_filter(T, u)).is_ok(), "{u:?}");
        }
    }

    #[test]
    fn usernames() {
        assert_eq!(check_username("alice"), Ok(()));
        assert_eq!(check_username("Jürgen.Müller@example.com"), Ok(()));
        assert_eq!(check_username("*"), Ok(())); // escaped, then matches nothing
        assert_eq!(check_username(""), Err(UsernameRejection::Empty));
        assert_eq!(check_username("  "), Err(UsernameRejection::Empty));
        assert_eq!(
            check_username("a\0"),
            Err(UsernameRejection::ControlCharacter)
        );
        assert_eq!(
            check_username("a\nb"),
            Err(UsernameRejection::ControlCharacter)
        );
        assert_eq!(
            check_username("a\u{85}"),
            Err(UsernameRejection::ControlCharacter)
        );
        assert_eq!(check_username(&"a".repeat(256)), Ok(()));
        assert_eq!(
            check_username(&"a".repeat(257)),
            Err(UsernameRejection::TooLong)
        );
        assert_eq!(
            check_username(&"x".repeat(10_000)),
            Err(UsernameRejection::TooLong)
        );
    }

    #[test]
    fn rdn_values() {
        assert_eq!(
            first_rdn_value("cn=admins,ou=groups,dc=example,dc=com").as_deref(),
            Some("admins")
        );
        assert_eq!(
            first_rdn_value("CN=Erin O\\'Brien\\, Jr.,OU=x").as_deref(),
            Some("Erin O'Brien, Jr.")
        );
        assert_eq!(first_rdn_value("cn=a\\2cb,dc=x").as_deref(), Some("a,b"));
        assert_eq!(
            first_rdn_value("cn=J\\c3\\bcrgen").as_deref(),
            Some("Jürgen")
        );
        assert_eq!(first_rdn_value("nonsense"), None);
        assert_eq!(first_rdn_value("cn=,dc=x"), None);
    }

    /// Strip the escaped value back out: every `\` must start a two-hex-digit escape and no
    /// special character may appear unescaped.
    fn escaped_is_clean(s: &str) -> bool {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'\\' => {
                    let ok = b
                        .get(i + 1..i + 3)
                        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
                    if !ok {
                        return false;
                    }
                    i += 3;
                }
                b'(' | b')' | b'*' | 0 => return false,
                _ => i += 1,
            }
        }
        true
    }

    proptest! {
        #[test]
        fn filter_from_any_username_is_safe(u in any::<String>()) {
            let escaped = escape_value(&u).into_owned();
            prop_assert!(escaped_is_clean(&escaped));
            let f = user_filter(T, &u);
            // The template structure is preserved: prefix and suffix untouched, value in between.
            let (pre, post) = T.split_once("{username}").unwrap();
            prop_assert!(f.starts_with(pre) && f.ends_with(post));
            prop_assert_eq!(&f[pre.len()..f.len() - post.len()], escaped.as_str());
            // The filter parses, and the parentheses of the result are exactly the template's.
            prop_assert!(ldap3::parse_filter(&f).is_ok());
            let parens = |s: &str| s.chars().filter(|c| matches!(c, '(' | ')')).collect::<String>();
            prop_assert_eq!(parens(&f), parens(T));
        }

        #[test]
        fn special_heavy_usernames(u in "[()*\\\\\\x00a-z=|&!]{0,40}") {
            let f = user_filter("(|(uid={username})(mail={username}))", &u);
            prop_assert!(ldap3::parse_filter(&f).is_ok());
            prop_assert_eq!(f.matches('(').count(), 3);
            prop_assert_eq!(f.matches(')').count(), 3);
            prop_assert!(!f.contains('*'));
        }
    }
}
