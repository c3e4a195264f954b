//! Result-code classification (RFC 4511 Appendix A, Active Directory `data XXX` sub-codes) and
//! client-side error description.

use std::io;

use tessera_core::authn::AccountState;

/// What an LDAP result means for a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 0: the operation succeeded.
    Success,
    /// A genuine credential rejection (counted by lockout).
    BadCredentials,
    /// The directory says the user does not exist (AD `data 525`).
    UnknownUser,
    /// The password may be right but the account may not log in (not counted by lockout).
    AccountState(AccountState),
    /// The directory refuses what we asked because of how Tessera or the service account is
    /// configured (rights, base DN, TLS required…). Unavailable, logged at error.
    Config,
    /// The directory cannot answer now (busy, unavailable, time limit, other). Unavailable,
    /// logged at warn.
    Unavailable,
}

/// Classify a result code and its diagnostic text, as returned to a *user* bind.
///
/// | code | class |
/// |---|---|
/// | 0 success | `Success` |
/// | 49 invalidCredentials | `BadCredentials`, unless the AD `data XXX` sub-code says otherwise: 525 → `UnknownUser`, 52e → `BadCredentials`, 530/531 → `Restricted`, 532 → `PasswordExpired`, 533 → `Disabled`, 701 → `Expired`, 773 → `MustChangePassword`, 775 → `LockedAtDirectory` |
/// | 53 unwillingToPerform | `AccountState`: `Restricted` by default; `LockedAtDirectory`, `Disabled`, `PasswordExpired` or `Expired` when the diagnostic says so (see below) |
/// | 19 constraintViolation | `AccountState(LockedAtDirectory)` (389-DS/Sun DS: "Exceed password retry limit") |
/// | 7, 8, 10, 13, 32, 34, 48, 50 | `Config` (authMethodNotSupported, strongerAuthRequired, referral, confidentialityRequired, noSuchObject, invalidDNSyntax, inappropriateAuthentication, insufficientAccessRights) |
/// | 51, 52, 3, 80 and anything else | `Unavailable` |
///
/// **53 on a user bind.** Tessera never sends an empty password (RFC 4513 §5.1.2: the one
/// case where OpenLDAP answers 53), so a 53 is the directory deliberately refusing this
/// account by policy: 389-DS answers 53 for an inactivated account, eDirectory for intruder
/// lockout and expired accounts. That is neither a wrong password (counting it would lock the
/// user out for something a password cannot fix) nor an outage (the directory answered). It
/// is therefore an account state, not counted by lockout, with the diagnostic text in the
/// trace for the administrator. OpenLDAP's ppolicy lockout answers 49 anyway.
pub fn classify(rc: u32, diagnostic: &str) -> Class {
    match rc {
        0 => Class::Success,
        49 => match ad_subcode(diagnostic).as_deref() {
            Some("525") => Class::UnknownUser,
            Some("52e") => Class::BadCredentials,
            Some("530") | Some("531") => Class::AccountState(AccountState::Restricted),
            Some("532") => Class::AccountState(AccountState::PasswordExpired),
            Some("533") => Class::AccountState(AccountState::Disabled),
            Some("701") => Class::AccountState(AccountState::Expired),
            Some("773") => Class::AccountState(AccountState::MustChangePassword),
            Some("775") => Class::AccountState(AccountState::LockedAtDirectory),
            _ => Class::BadCredentials,
        },
        53 => Class::AccountState(state_from_text(diagnostic)),
        19 => Class::AccountState(AccountState::LockedAtDirectory),
        // 10 referral (RFC 4511 §4.1.10): the entry is held by another server; referrals are
        // not chased, so that is a configuration error to fix, not an outage to wait out.
        7 | 8 | 10 | 13 | 32 | 34 | 48 | 50 => Class::Config,
        _ => Class::Unavailable,
    }
}

fn state_from_text(diagnostic: &str) -> AccountState {
    let d = diagnostic.to_ascii_lowercase();
    if d.contains("lock") || d.contains("retry limit") {
        AccountState::LockedAtDirectory
    } else if d.contains("inactivat") || d.contains("disabled") {
        AccountState::Disabled
    } else if d.contains("password") && d.contains("expired") {
        AccountState::PasswordExpired
    } else if d.contains("expired") {
        AccountState::Expired
    } else {
        AccountState::Restricted
    }
}

/// The Active Directory sub-code in a diagnostic such as
/// `80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563`,
/// lower-cased (`52e`).
pub fn ad_subcode(diagnostic: &str) -> Option<String> {
    let lower = diagnostic.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(pos) = rest.find("data ") {
        let after = &rest[pos + 5..];
        let code: String = after.chars().take_while(char::is_ascii_hexdigit).collect();
        let boundary_ok = pos == 0 || !rest.as_bytes()[pos - 1].is_ascii_alphanumeric();
        if boundary_ok && !code.is_empty() && code.len() <= 8 {
            return Some(code);
        }
        rest = after;
    }
    None
}

/// The RFC 4511 name of a result code.
pub fn result_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        13 => "confidentialityRequired",
        14 => "saslBindInProgress",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        19 => "constraintViolation",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        54 => "loopDetect",
        80 => "other",
        _ => "unknown",
    }
}

/// How a client-side (transport) failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// The connection was already closed (server restart, idle cut): a pooled connection that
    /// fails like this is stale, and the request never reached a live server.
    Closed,
    /// No answer within the deadline (a hung server).
    Timeout,
    /// TLS handshake or certificate failure.
    Tls,
    /// Any other socket error (refused, unreachable, DNS).
    Io,
    /// A protocol-level refusal during connection set-up (e.g. StartTLS refused).
    Refused,
    Other,
}

/// Describe an ldap3 error without any secret (ldap3 errors never contain the password).
pub(crate) fn describe(e: &ldap3::LdapError) -> (Transport, String) {
    use ldap3::LdapError as E;
    match e {
        E::Io { source } => describe_io(source),
        E::Timeout { .. } => (Transport::Timeout, "timeout".into()),
        E::Rustls { source } => (Transport::Tls, format!("TLS: {source}")),
        E::DNSName { source } => (Transport::Tls, format!("TLS server name: {source}")),
        E::OpSend { .. }
        | E::ResultRecv { .. }
        | E::IdScrubSend { .. }
        | E::MiscSend { .. }
        | E::EndOfStream => (Transport::Closed, "connection closed".into()),
        E::LdapResult { result } => (
            Transport::Refused,
            format!(
                "{} ({}){}",
                result_name(result.rc),
                result.rc,
                if result.text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", result.text)
                }
            ),
        ),
        other => (Transport::Other, other.to_string()),
    }
}

pub(crate) fn describe_io(e: &io::Error) -> (Transport, String) {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return (Transport::Tls, format!("TLS: {tls}"));
    }
    use io::ErrorKind as K;
    let kind = match e.kind() {
        K::ConnectionReset
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::NotConnected => Transport::Closed,
        K::TimedOut => Transport::Timeout,
        _ => Transport::Io,
    };
    let text = match e.kind() {
        K::ConnectionRefused => "connection refused".to_string(),
        K::ConnectionReset => "connection reset".to_string(),
        _ => e.to_string(),
    };
    (kind, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use AccountState as S;

    fn ad(code: &str) -> String {
        format!(
            "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {code}, v4563\0"
        )
    }

    #[test]
    fn classification_table() {
        let cases: &[(u32, String, Class)] = &[
            (0, String::new(), Class::Success),
            (49, String::new(), Class::BadCredentials),
            (49, "Invalid credentials".into(), Class::BadCredentials),
            (49, ad("52e"), Class::BadCredentials),
            (49, ad("52E"), Class::BadCredentials),
            (49, ad("525"), Class::UnknownUser),
            (49, ad("530"), Class::AccountState(S::Restricted)),
            (49, ad("531"), Class::AccountState(S::Restricted)),
            (49, ad("532"), Class::AccountState(S::PasswordExpired)),
            (49, ad("533"), Class::AccountState(S::Disabled)),
            (49, ad("701"), Class::AccountState(S::Expired)),
            (49, ad("773"), Class::AccountState(S::MustChangePassword)),
            (49, ad("775"), Class::AccountState(S::LockedAtDirectory)),
            (49, ad("999"), Class::BadCredentials),
            (
                53,
                "unauthenticated bind (DN with no password) disallowed".into(),
                Class::AccountState(S::Restricted),
            ),
            (
                53,
                "Account inactivated. Contact system administrator.".into(),
                Class::AccountState(S::Disabled),
            ),
            (
                53,
                "NDS error: login lockout (-197)".into(),
                Class::AccountState(S::LockedAtDirectory),
            ),
            (
                53,
                "Password expired".into(),
                Class::AccountState(S::PasswordExpired),
            ),
            (
                19,
                "Exceed password retry limit. Please try later.".into(),
                Class::AccountState(S::LockedAtDirectory),
            ),
            (48, String::new(), Class::Config),
            (50, String::new(), Class::Config),
            (32, String::new(), Class::Config),
            (13, "TLS confidentiality required".into(), Class::Config),
            (8, String::new(), Class::Config),
            (10, String::new(), Class::Config),
            (51, String::new(), Class::Unavailable),
            (52, String::new(), Class::Unavailable),
            (3, String::new(), Class::Unavailable),
            (80, String::new(), Class::Unavailable),
            (1, String::new(), Class::Unavailable),
            (4242, String::new(), Class::Unavailable),
        ];
        for (rc, diag, want) in cases {
            assert_eq!(classify(*rc, diag), *want, "rc {rc} {diag:?}");
        }
    }

    #[test]
    fn subcode_parsing() {
        assert_eq!(ad_subcode(&ad("52e")).as_deref(), Some("52e"));
        assert_eq!(ad_subcode("... DATA 775,").as_deref(), Some("775"));
        assert_eq!(ad_subcode("no sub-code here"), None);
        assert_eq!(ad_subcode("metadata 52e"), None); // "data" inside a word
        assert_eq!(ad_subcode("data x, data 533").as_deref(), Some("533"));
        assert_eq!(ad_subcode(""), None);
    }

    #[test]
    fn names() {
        assert_eq!(result_name(49), "invalidCredentials");
        assert_eq!(result_name(50), "insufficientAccessRights");
        assert_eq!(result_name(9999), "unknown");
    }

    #[test]
    fn client_errors() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            describe_io(&refused),
            (Transport::Io, "connection refused".into())
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(describe_io(&reset).0, Transport::Closed);
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let (kind, text) = describe_io(&tls);
        assert_eq!(kind, Transport::Tls);
        assert!(text.starts_with("TLS: invalid peer certificate"), "{text}");
        let e = ldap3::LdapError::EndOfStream;
        assert_eq!(describe(&e).0, Transport::Closed);
    }
}
