//! JWT claim validation (RFC 7519 §4.1, RFC 7523 §3) that reports every check.
//!
//! Time rules, with `now` and `leeway` supplied by the caller:
//! - `exp`: invalid when `exp <= now - leeway` ("on or after" exp is invalid,
//!   RFC 7519 §4.1.4), so `exp == now - leeway` is already expired;
//! - `nbf`: invalid when `nbf > now + leeway` (valid "after or equal", §4.1.5);
//! - `iat`: invalid when `iat > now + leeway`; too old when
//!   `now - iat > max_iat_age + leeway`;
//! - lifetime: `exp - iat` (else `exp - nbf`, else `exp - now`) must be
//!   `<= max_lifetime`, so an exactly one-hour assertion passes a 3600 s cap.
//!
//! `exp`/`nbf`/`iat` must be JSON numbers (integer or fractional NumericDate,
//! RFC 7519 §2); strings are [`ClaimFailure::MalformedClaim`].

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Which audience values are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudienceRule {
    /// `aud` (string or array) must contain at least one of these (RFC 7519 §4.1.3).
    Any(Vec<String>),
    /// `aud` must be exactly one value — a string or a one-element array — equal
    /// to one of these (draft-ietf-oauth-rfc7523bis: the issuer as sole audience).
    SoleOf(Vec<String>),
}

/// What the claims must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    /// Current time, seconds since the epoch.
    pub now: i64,
    /// Allowed clock skew in seconds.
    pub leeway: u64,
    /// Accepted issuers (simple string comparison); `None` = not checked.
    pub issuer: Option<Vec<String>>,
    /// Required subject; `None` = not compared.
    pub subject: Option<String>,
    /// Require `sub` to be present even when `subject` is `None`.
    pub require_sub: bool,
    /// Audience rule.
    pub audience: AudienceRule,
    /// Require `exp` (RFC 7523 §3 item 4).
    pub require_exp: bool,
    /// Require `iat`.
    pub require_iat: bool,
    /// Require a non-empty string `jti`.
    pub require_jti: bool,
    /// Maximum lifetime in seconds (see module docs).
    pub max_lifetime: Option<u64>,
    /// Maximum age of `iat` in seconds.
    pub max_iat_age: Option<u64>,
}

impl Expectations {
    /// Defaults: no leeway, issuer and subject not checked, `exp` required,
    /// nothing else required, no lifetime or age caps.
    pub fn new(now: i64, audience: AudienceRule) -> Expectations {
        Expectations {
            now,
            leeway: 0,
            issuer: None,
            subject: None,
            require_sub: false,
            audience,
            require_exp: true,
            require_iat: false,
            require_jti: false,
            max_lifetime: None,
            max_iat_age: None,
        }
    }
}

/// Why a claim check failed. `Display` texts are safe for `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimFailure {
    /// No `iss`.
    #[error("iss claim is missing")]
    MissingIssuer,
    /// `iss` is not an accepted issuer.
    #[error("Issuer validation failed")]
    IssuerMismatch,
    /// No `sub`.
    #[error("sub claim is missing")]
    MissingSubject,
    /// `sub` differs from the expected subject.
    #[error("Subject validation failed")]
    SubjectMismatch,
    /// No `aud`.
    #[error("aud claim is missing")]
    MissingAudience,
    /// `aud` does not satisfy the rule (RFC 7521 §4.1.1 example text).
    #[error("Audience validation failed")]
    AudienceMismatch,
    /// `exp` has passed (RFC 7521 §4.2.1 example text).
    #[error("assertion has expired")]
    Expired,
    /// No `exp`.
    #[error("exp claim is missing")]
    MissingExp,
    /// `nbf` is in the future.
    #[error("assertion is not yet valid (nbf is in the future)")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("assertion was issued in the future (iat)")]
    IssuedInFuture,
    /// No `iat` although required.
    #[error("iat claim is missing")]
    MissingIat,
    /// The lifetime exceeds the maximum (or is unbounded: no `exp`).
    #[error("assertion lifetime exceeds the allowed maximum")]
    LifetimeTooLong,
    /// `iat` is older than allowed.
    #[error("assertion was issued too long ago (iat)")]
    IatTooOld,
    /// No usable `jti`.
    #[error("jti claim is missing")]
    MissingJti,
    /// A claim has the wrong JSON type; the name is one of ours.
    #[error("{0} claim is malformed")]
    MalformedClaim(&'static str),
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `lifetime` or `jti`.
    pub name: &'static str,
    /// What was expected, in words.
    pub expected: String,
    /// What the token carried (compact JSON, truncated) or `(absent)`.
    pub actual: String,
    /// Whether it passed.
    pub ok: bool,
    /// The failure, when not ok.
    pub failure: Option<ClaimFailure>,
}

/// All checks, in the order `iss, sub, aud, exp, nbf, iat, lifetime, jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every check, whether it passed or not.
    pub checks: Vec<Check>,
    /// The first failure in check order.
    pub first_failure: Option<ClaimFailure>,
}

impl Report {
    /// True when every check passed.
    pub fn is_ok(&self) -> bool {
        self.first_failure.is_none()
    }

    /// `Err(first failure)` unless every check passed.
    pub fn result(&self) -> Result<(), ClaimFailure> {
        self.first_failure.map_or(Ok(()), Err)
    }

    /// The check with this name.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Every failure, in check order.
    pub fn failures(&self) -> impl Iterator<Item = ClaimFailure> + '_ {
        self.checks.iter().filter_map(|c| c.failure)
    }
}

const ABSENT: &str = "(absent)";
const MAX_ACTUAL: usize = 256;

fn show(value: Option<&Value>) -> String {
    let Some(value) = value else {
        return ABSENT.to_owned();
    };
    let mut s = value.to_string();
    if s.len() > MAX_ACTUAL {
        let mut cut = MAX_ACTUAL;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn list(values: &[String]) -> String {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}", Value::from(v.as_str()));
    }
    out
}

struct Builder {
    checks: Vec<Check>,
}

impl Builder {
    fn push(
        &mut self,
        name: &'static str,
        expected: String,
        actual: String,
        failure: Option<ClaimFailure>,
    ) {
        self.checks.push(Check {
            name,
            expected,
            actual,
            ok: failure.is_none(),
            failure,
        });
    }
}

/// A NumericDate: `Ok(None)` when absent, `Err` when not a JSON number.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<f64>, ClaimFailure> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or(ClaimFailure::MalformedClaim(name)),
        Some(_) => Err(ClaimFailure::MalformedClaim(name)),
    }
}

/// Runs every check (never stopping at the first failure) and reports each.
pub fn check_claims(claims: &Map<String, Value>, exp: &Expectations) -> Report {
    let mut b = Builder {
        checks: Vec::with_capacity(8),
    };
    let now = exp.now as f64;
    let leeway = exp.leeway as f64;

    // iss (RFC 7523 §3 item 1: simple string comparison).
    let iss = claims.get("iss");
    let (expected, failure) = match &exp.issuer {
        None => ("not checked".to_owned(), None),
        Some(allowed) => {
            let failure = match iss {
                None => Some(ClaimFailure::MissingIssuer),
                Some(Value::String(s)) if allowed.iter().any(|a| a == s) => None,
                Some(Value::String(_)) => Some(ClaimFailure::IssuerMismatch),
                Some(_) => Some(ClaimFailure::MalformedClaim("iss")),
            };
            (format!("one of [{}]", list(allowed)), failure)
        }
    };
    b.push("iss", expected, show(iss), failure);

    // sub (RFC 7523 §3 item 2).
    let sub = claims.get("sub");
    let failure = match (sub, &exp.subject) {
        (Some(Value::String(s)), Some(want)) if s != want => Some(ClaimFailure::SubjectMismatch),
        (Some(Value::String(_)), _) => None,
        (Some(_), _) => Some(ClaimFailure::MalformedClaim("sub")),
        (None, Some(_)) => Some(ClaimFailure::MissingSubject),
        (None, None) if exp.require_sub => Some(ClaimFailure::MissingSubject),
        (None, None) => None,
    };
    let expected = match &exp.subject {
        Some(want) => Value::from(want.as_str()).to_string(),
        None if exp.require_sub => "present".to_owned(),
        None => "not checked".to_owned(),
    };
    b.push("sub", expected, show(sub), failure);

    // aud (RFC 7519 §4.1.3; rfc7523bis sole-audience rule).
    let aud = claims.get("aud");
    let values: Result<Vec<&str>, ClaimFailure> = match aud {
        None => Err(ClaimFailure::MissingAudience),
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or(ClaimFailure::MalformedClaim("aud")))
            .collect(),
        Some(_) => Err(ClaimFailure::MalformedClaim("aud")),
    };
    let (expected, failure) = match &exp.audience {
        AudienceRule::Any(allowed) => {
            let failure = match &values {
                Err(f) => Some(*f),
                Ok(v) if v.iter().any(|a| allowed.iter().any(|w| w == a)) => None,
                Ok(_) => Some(ClaimFailure::AudienceMismatch),
            };
            (format!("contains one of [{}]", list(allowed)), failure)
        }
        AudienceRule::SoleOf(allowed) => {
            let failure = match &values {
                Err(f) => Some(*f),
                Ok(v) if v.len() == 1 && allowed.iter().any(|w| w == v[0]) => None,
                Ok(_) => Some(ClaimFailure::AudienceMismatch),
            };
            (format!("exactly one of [{}]", list(allowed)), failure)
        }
    };
    b.push("aud", expected, show(aud), failure);

    // exp (RFC 7519 §4.1.4).
    let exp_at = numeric_date(claims, "exp");
    let failure = match exp_at {
        Err(f) => Some(f),
        Ok(None) if exp.require_exp => Some(ClaimFailure::MissingExp),
        Ok(None) => None,
        Ok(Some(t)) if t <= now - leeway => Some(ClaimFailure::Expired),
        Ok(Some(_)) => None,
    };
    let expected = format!(
        "{}after {} (now {}, leeway {}s)",
        if exp.require_exp { "present, " } else { "" },
        exp.now.saturating_sub_unsigned(exp.leeway),
        exp.now,
        exp.leeway
    );
    b.push("exp", expected, show(claims.get("exp")), failure);

    // nbf (RFC 7519 §4.1.5).
    let nbf_at = numeric_date(claims, "nbf");
    let failure = match nbf_at {
        Err(f) => Some(f),
        Ok(Some(t)) if t > now + leeway => Some(ClaimFailure::NotYetValid),
        Ok(_) => None,
    };
    let expected = format!(
        "absent or at most {}",
        exp.now.saturating_add_unsigned(exp.leeway)
    );
    b.push("nbf", expected, show(claims.get("nbf")), failure);

    // iat (RFC 7519 §4.1.6; RFC 7523 §3 item 6 "unreasonably far in the past").
    let iat_at = numeric_date(claims, "iat");
    let failure = match iat_at {
        Err(f) => Some(f),
        Ok(None) if exp.require_iat => Some(ClaimFailure::MissingIat),
        Ok(None) => None,
        Ok(Some(t)) if t > now + leeway => Some(ClaimFailure::IssuedInFuture),
        Ok(Some(t)) => match exp.max_iat_age {
            Some(age) if now - t > age as f64 + leeway => Some(ClaimFailure::IatTooOld),
            _ => None,
        },
    };
    let mut expected = format!(
        "{}at most {}",
        if exp.require_iat {
            "present, "
        } else {
            "absent or "
        },
        exp.now.saturating_add_unsigned(exp.leeway)
    );
    if let Some(age) = exp.max_iat_age {
        let _ = write!(
            expected,
            ", at least {}",
            exp.now
                .saturating_sub_unsigned(age.saturating_add(exp.leeway))
        );
    }
    b.push("iat", expected, show(claims.get("iat")), failure);

    // lifetime (RFC 7523 §3 item 4: may reject exp unreasonably far in the future).
    match exp.max_lifetime {
        None => b.push("lifetime", "not checked".to_owned(), String::new(), None),
        Some(max) => {
            let start = match (&iat_at, &nbf_at) {
                (Ok(Some(iat)), _) => Some(("iat", *iat)),
                (_, Ok(Some(nbf))) => Some(("nbf", *nbf)),
                _ => None,
            };
            let (from, start) = start.unwrap_or(("now", now));
            let (actual, failure) = match exp_at {
                Ok(Some(end)) => {
                    let lifetime = end - start;
                    let failure = (lifetime > max as f64).then_some(ClaimFailure::LifetimeTooLong);
                    (format!("{lifetime}s (exp - {from})"), failure)
                }
                // Without a usable exp the lifetime is unbounded.
                _ => (
                    "unbounded (no usable exp)".to_owned(),
                    Some(ClaimFailure::LifetimeTooLong),
                ),
            };
            b.push("lifetime", format!("at most {max}s"), actual, failure);
        }
    }

    // jti (RFC 7519 §4.1.7; OIDC Core §9 makes it REQUIRED for client auth).
    let jti = claims.get("jti");
    let failure = match jti {
        Some(Value::String(s)) if !s.is_empty() => None,
        Some(Value::String(_)) if exp.require_jti => Some(ClaimFailure::MissingJti),
        Some(Value::String(_)) => None,
        Some(_) => Some(ClaimFailure::MalformedClaim("jti")),
        None if exp.require_jti => Some(ClaimFailure::MissingJti),
        None => None,
    };
    let expected = if exp.require_jti {
        "present, non-empty"
    } else {
        "not required"
    };
    b.push("jti", expected.to_owned(), show(jti), failure);

    let first_failure = b.checks.iter().find_map(|c| c.failure);
    Report {
        checks: b.checks,
        first_failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const ISS: &str = "client-1";
    const AS: &str = "https://as.example";

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn good() -> Map<String, Value> {
        map(
            json!({"iss": ISS, "sub": ISS, "aud": AS, "exp": NOW + 60, "iat": NOW, "nbf": NOW, "jti": "j-1"}),
        )
    }

    fn strict() -> Expectations {
        Expectations {
            leeway: 30,
            issuer: Some(vec![ISS.to_owned()]),
            subject: Some(ISS.to_owned()),
            require_iat: true,
            require_jti: true,
            max_lifetime: Some(3600),
            max_iat_age: Some(600),
            ..Expectations::new(NOW, AudienceRule::SoleOf(vec![AS.to_owned()]))
        }
    }

    fn with(changes: Value) -> Map<String, Value> {
        let mut c = good();
        for (k, v) in map(changes) {
            if v.is_null() {
                c.remove(&k);
            } else {
                c.insert(k, v);
            }
        }
        c
    }

    fn first(c: &Map<String, Value>, e: &Expectations) -> Option<ClaimFailure> {
        check_claims(c, e).first_failure
    }

    #[test]
    fn all_checks_reported_with_expected_and_actual() {
        let r = check_claims(&good(), &strict());
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(r.result(), Ok(()));
        let names: Vec<&str> = r.checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            ["iss", "sub", "aud", "exp", "nbf", "iat", "lifetime", "jti"]
        );
        let aud = r.check("aud").unwrap();
        assert_eq!(aud.expected, r#"exactly one of ["https://as.example"]"#);
        assert_eq!(aud.actual, r#""https://as.example""#);
        let exp = r.check("exp").unwrap();
        assert_eq!(exp.actual, (NOW + 60).to_string());
        assert!(
            exp.expected.contains(&(NOW - 30).to_string()),
            "{}",
            exp.expected
        );
        assert_eq!(r.check("lifetime").unwrap().actual, "60s (exp - iat)");
    }

    #[test]
    fn runs_every_check_and_reports_all_failures() {
        let c = map(json!({"iss": "x", "aud": "y", "exp": NOW - 100, "iat": NOW + 100}));
        let r = check_claims(&c, &strict());
        assert_eq!(r.first_failure, Some(ClaimFailure::IssuerMismatch));
        let all: Vec<ClaimFailure> = r.failures().collect();
        assert_eq!(
            all,
            [
                ClaimFailure::IssuerMismatch,
                ClaimFailure::MissingSubject,
                ClaimFailure::AudienceMismatch,
                ClaimFailure::Expired,
                ClaimFailure::IssuedInFuture,
                ClaimFailure::MissingJti
            ]
        );
        assert_eq!(r.checks.len(), 8);
        assert_eq!(r.check("sub").unwrap().actual, "(absent)");
        assert!(!r.check("iss").unwrap().ok);
        assert!(r.check("nbf").unwrap().ok);
    }

    #[test]
    fn issuer_failures() {
        let e = strict();
        assert_eq!(
            first(&with(json!({"iss": null})), &e),
            Some(ClaimFailure::MissingIssuer)
        );
        assert_eq!(
            first(&with(json!({"iss": "other"})), &e),
            Some(ClaimFailure::IssuerMismatch)
        );
        assert_eq!(
            first(&with(json!({"iss": "CLIENT-1"})), &e),
            Some(ClaimFailure::IssuerMismatch)
        );
        assert_eq!(
            first(&with(json!({"iss": 5})), &e),
            Some(ClaimFailure::MalformedClaim("iss"))
        );
        let any = Expectations {
            issuer: Some(vec!["a".into(), ISS.into()]),
            ..strict()
        };
        assert_eq!(first(&good(), &any), None);
        let unchecked = Expectations {
            issuer: None,
            ..strict()
        };
        assert_eq!(first(&with(json!({"iss": null})), &unchecked), None);
    }

    #[test]
    fn subject_failures() {
        let e = strict();
        assert_eq!(
            first(&with(json!({"sub": null})), &e),
            Some(ClaimFailure::MissingSubject)
        );
        assert_eq!(
            first(&with(json!({"sub": "admin"})), &e),
            Some(ClaimFailure::SubjectMismatch)
        );
        assert_eq!(
            first(&with(json!({"sub": ["x"]})), &e),
            Some(ClaimFailure::MalformedClaim("sub"))
        );
        // Google service accounts send no sub: allowed unless required.
        let google = Expectations {
            subject: None,
            ..strict()
        };
        assert_eq!(first(&with(json!({"sub": null})), &google), None);
        let required = Expectations {
            require_sub: true,
            ..google
        };
        assert_eq!(
            first(&with(json!({"sub": null})), &required),
            Some(ClaimFailure::MissingSubject)
        );
    }

    #[test]
    fn audience_string_vs_array_and_sole_rule() {
        let any = Expectations {
            audience: AudienceRule::Any(vec![AS.into(), "https://as.example/token".into()]),
            ..strict()
        };
        assert_eq!(first(&with(json!({"aud": AS})), &any), None);
        assert_eq!(first(&with(json!({"aud": ["other", AS]})), &any), None);
        assert_eq!(
            first(&with(json!({"aud": "https://as.example/token"})), &any),
            None
        );
        assert_eq!(
            first(&with(json!({"aud": ["other"]})), &any),
            Some(ClaimFailure::AudienceMismatch)
        );
        assert_eq!(
            first(&with(json!({"aud": []})), &any),
            Some(ClaimFailure::AudienceMismatch)
        );
        assert_eq!(
            first(&with(json!({"aud": null})), &any),
            Some(ClaimFailure::MissingAudience)
        );
        assert_eq!(
            first(&with(json!({"aud": 7})), &any),
            Some(ClaimFailure::MalformedClaim("aud"))
        );
        assert_eq!(
            first(&with(json!({"aud": [AS, 7]})), &any),
            Some(ClaimFailure::MalformedClaim("aud"))
        );

        let sole = strict();
        assert_eq!(first(&with(json!({"aud": AS})), &sole), None);
        assert_eq!(first(&with(json!({"aud": [AS]})), &sole), None);
        assert_eq!(
            first(&with(json!({"aud": [AS, "https://other"]})), &sole),
            Some(ClaimFailure::AudienceMismatch)
        );
        assert_eq!(
            first(&with(json!({"aud": [AS, AS]})), &sole),
            Some(ClaimFailure::AudienceMismatch)
        );
        assert_eq!(
            first(&with(json!({"aud": "https://as.example/token"})), &sole),
            Some(ClaimFailure::AudienceMismatch)
        );
        assert_eq!(
            first(&with(json!({"aud": "https://as.example/"})), &sole),
            Some(ClaimFailure::AudienceMismatch)
        );
    }

    #[test]
    fn exp_boundaries_with_leeway() {
        let e = strict(); // leeway 30
        let lifetime_free = Expectations {
            max_lifetime: None,
            max_iat_age: None,
            ..e
        };
        // exp == now - leeway: "on or after" exp is invalid (RFC 7519 §4.1.4).
        let at = with(json!({"exp": NOW - 30, "iat": NOW - 100, "nbf": null}));
        assert_eq!(first(&at, &lifetime_free), Some(ClaimFailure::Expired));
        let just_inside = with(json!({"exp": NOW - 29, "iat": NOW - 100, "nbf": null}));
        assert_eq!(first(&just_inside, &lifetime_free), None);
        let fractional =
            with(json!({"exp": (NOW - 30) as f64 + 0.5, "iat": NOW - 100, "nbf": null}));
        assert_eq!(first(&fractional, &lifetime_free), None);
        let no_leeway = Expectations {
            leeway: 0,
            ..lifetime_free.clone()
        };
        assert_eq!(
            first(&with(json!({"exp": NOW})), &no_leeway),
            Some(ClaimFailure::Expired)
        );
        assert_eq!(first(&with(json!({"exp": NOW + 1})), &no_leeway), None);

        assert_eq!(
            first(&with(json!({"exp": null})), &lifetime_free),
            Some(ClaimFailure::MissingExp)
        );
        assert_eq!(
            first(&with(json!({"exp": "1900000000"})), &lifetime_free),
            Some(ClaimFailure::MalformedClaim("exp"))
        );
        let optional = Expectations {
            require_exp: false,
            ..lifetime_free
        };
        assert_eq!(first(&with(json!({"exp": null})), &optional), None);
        assert_eq!(ClaimFailure::Expired.to_string(), "assertion has expired");
    }

    #[test]
    fn nbf_boundaries() {
        let e = strict();
        assert_eq!(first(&with(json!({"nbf": NOW + 30})), &e), None);
        assert_eq!(
            first(&with(json!({"nbf": NOW + 31})), &e),
            Some(ClaimFailure::NotYetValid)
        );
        assert_eq!(
            first(&with(json!({"nbf": "soon"})), &e),
            Some(ClaimFailure::MalformedClaim("nbf"))
        );
        assert_eq!(first(&with(json!({"nbf": null})), &e), None);
    }

    #[test]
    fn iat_future_age_and_presence() {
        let e = strict(); // leeway 30, max_iat_age 600
        assert_eq!(first(&with(json!({"iat": NOW + 30})), &e), None);
        assert_eq!(
            first(&with(json!({"iat": NOW + 31})), &e),
            Some(ClaimFailure::IssuedInFuture)
        );
        // Too old: now - iat > 600 + 30. (exp/lifetime adjusted to isolate.)
        let old = with(json!({"iat": NOW - 631, "nbf": null}));
        let e2 = Expectations {
            max_lifetime: None,
            ..e.clone()
        };
        assert_eq!(first(&old, &e2), Some(ClaimFailure::IatTooOld));
        let edge = with(json!({"iat": NOW - 630, "nbf": null}));
        assert_eq!(first(&edge, &e2), None);
        assert_eq!(
            first(&with(json!({"iat": null})), &e),
            Some(ClaimFailure::MissingIat)
        );
        assert_eq!(
            first(&with(json!({"iat": true})), &e),
            Some(ClaimFailure::MalformedClaim("iat"))
        );
        let optional = Expectations {
            require_iat: false,
            ..e
        };
        assert_eq!(first(&with(json!({"iat": null})), &optional), None);
    }

    #[test]
    fn lifetime_limits() {
        let e = strict(); // max 3600
        // Authlib / google-auth: exactly one hour from iat passes.
        assert_eq!(
            first(&with(json!({"iat": NOW, "exp": NOW + 3600})), &e),
            None
        );
        assert_eq!(
            first(&with(json!({"iat": NOW, "exp": NOW + 3601})), &e),
            Some(ClaimFailure::LifetimeTooLong)
        );
        // Without iat: from nbf, then from now.
        let no_iat = Expectations {
            require_iat: false,
            ..e.clone()
        };
        let c = with(json!({"iat": null, "nbf": NOW - 100, "exp": NOW + 3550}));
        assert_eq!(first(&c, &no_iat), Some(ClaimFailure::LifetimeTooLong));
        let r = check_claims(&c, &no_iat);
        assert_eq!(r.check("lifetime").unwrap().actual, "3650s (exp - nbf)");
        let c = with(json!({"iat": null, "nbf": null, "exp": NOW + 3600}));
        assert_eq!(first(&c, &no_iat), None);
        let c = with(json!({"iat": null, "nbf": null, "exp": NOW + 3601}));
        assert_eq!(first(&c, &no_iat), Some(ClaimFailure::LifetimeTooLong));
        // No exp at all with a cap: unbounded.
        let lax = Expectations {
            require_exp: false,
            ..e
        };
        let r = check_claims(&with(json!({"exp": null})), &lax);
        assert_eq!(r.first_failure, Some(ClaimFailure::LifetimeTooLong));
    }

    #[test]
    fn jti_rules() {
        let e = strict();
        assert_eq!(
            first(&with(json!({"jti": null})), &e),
            Some(ClaimFailure::MissingJti)
        );
        assert_eq!(
            first(&with(json!({"jti": ""})), &e),
            Some(ClaimFailure::MissingJti)
        );
        assert_eq!(
            first(&with(json!({"jti": 12})), &e),
            Some(ClaimFailure::MalformedClaim("jti"))
        );
        let optional = Expectations {
            require_jti: false,
            ..e
        };
        assert_eq!(first(&with(json!({"jti": null})), &optional), None);
    }

    #[test]
    fn messages_are_safe_and_precise() {
        let all = [
            ClaimFailure::MissingIssuer,
            ClaimFailure::IssuerMismatch,
            ClaimFailure::MissingSubject,
            ClaimFailure::SubjectMismatch,
            ClaimFailure::MissingAudience,
            ClaimFailure::AudienceMismatch,
            ClaimFailure::Expired,
            ClaimFailure::MissingExp,
            ClaimFailure::NotYetValid,
            ClaimFailure::IssuedInFuture,
            ClaimFailure::MissingIat,
            ClaimFailure::LifetimeTooLong,
            ClaimFailure::IatTooOld,
            ClaimFailure::MissingJti,
            ClaimFailure::MalformedClaim("exp"),
        ];
        for f in all {
            let text = f.to_string();
            // RFC 6749 §5.2 error_description charset: no '"' or '\'.
            assert!(
                text.chars()
                    .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\'),
                "{text}"
            );
        }
        assert_eq!(
            ClaimFailure::AudienceMismatch.to_string(),
            "Audience validation failed"
        );
        assert_eq!(
            ClaimFailure::MalformedClaim("exp").to_string(),
            "exp claim is malformed"
        );
    }

    #[test]
    fn long_actual_values_truncated() {
        let c = with(json!({"iss": "x".repeat(1000)}));
        let r = check_claims(&c, &strict());
        let iss = r.check("iss").unwrap();
        assert!(iss.actual.len() <= 260 && iss.actual.ends_with("..."));
    }

    #[test]
    fn extreme_numbers_do_not_panic() {
        let e = Expectations {
            leeway: u64::MAX,
            max_iat_age: Some(u64::MAX),
            ..strict()
        };
        let c = with(json!({"exp": u64::MAX, "iat": i64::MIN, "nbf": 1e300}));
        let _ = check_claims(&c, &e);
        let e = Expectations { now: i64::MIN, ..e };
        let _ = check_claims(&c, &e);
    }
}
