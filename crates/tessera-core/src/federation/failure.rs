//! Upstream sign-in failures: one class per root cause, a stable code, an explanation and a
//! remedy, and the message administrators see in the log and the trace:
//!
//! `Exchanging authorization tokens with upstream 'corp' failed at token request:
//! [TSR-PROXY-403] proxy 127.0.0.1:3128 answered CONNECT idp.example:443 with "HTTP/1.1 403
//! Filtered". Remedy: …`
//!
//! Network classes reuse the codes of the diagnostics catalog (`crate::diagnostics::catalog`);
//! the classes specific to a relying party's exchange have `TSR-UPSTREAM-*` codes, listed in
//! [`UPSTREAM_CATALOG`] with the same shape.

use crate::diagnostics::catalog::{self, Category, Entry};

use super::{ProxyRefusal, TransportError, TransportKind};

/// Where in the flow it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Building the authorization request (needs discovery).
    Start,
    /// The browser came back: state, `iss`, error parameters.
    Callback,
    Discovery,
    TokenRequest,
    Jwks,
    IdToken,
    Userinfo,
    Linking,
    /// The chain's JAAS decision (control flags).
    Chain,
    Session,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "authorization request",
            Self::Callback => "callback",
            Self::Discovery => "discovery",
            Self::TokenRequest => "token request",
            Self::Jwks => "JWKS fetch",
            Self::IdToken => "ID token validation",
            Self::Userinfo => "userinfo",
            Self::Linking => "account linking",
            Self::Chain => "chain decision",
            Self::Session => "session",
        }
    }
}

/// The root cause class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureClass {
    /// The outbound proxy refused the tunnel; its status line is known.
    ProxyRefused(Box<ProxyRefusal>),
    Dns,
    ConnectionRefused,
    /// Connect timed out.
    Timeout,
    /// Connected, no answer in time.
    NoAnswer,
    /// The upstream's certificate is not trusted.
    TlsTrust,
    Tls,
    Connect,
    /// Unexpected HTTP status (discovery, JWKS, userinfo, or a token endpoint without an
    /// OAuth error body).
    HttpStatus(u16),
    /// The upstream refused our client authentication (RFC 6749 §5.2).
    InvalidClient,
    /// The upstream refused the code (expired, reused, redirect_uri or PKCE mismatch).
    InvalidGrant,
    /// Another OAuth error from the token endpoint.
    TokenError(String),
    /// Discovery metadata or an ID token carries another issuer.
    IssuerMismatch,
    /// Discovery metadata unusable (missing endpoints, not JSON).
    Discovery,
    /// The JWKS is unusable.
    JwksInvalid,
    /// The ID token's `kid` is not in the JWKS, even after a refetch.
    UnknownKey,
    /// The signature does not verify (tampered token, or wrong key).
    BadSignature,
    /// The ID token's `alg` is not accepted.
    AlgorithmRejected,
    /// `exp` has passed.
    Expired,
    /// `iat` too far in the future or the past: the clocks differ.
    ClockSkew,
    /// `aud` / `azp` do not name us (or name untrusted parties).
    AudienceMismatch,
    NonceMismatch,
    AtHashMismatch,
    /// A response is not what the protocol requires (no id_token, not JSON, missing `sub`).
    Malformed,
    /// The callback's `state` does not match this browser's pending sign-in.
    StateMismatch,
    /// The upstream answered the authorization request with an error (e.g. access_denied).
    UpstreamDenied(String),
    /// No local account is linked and the policy does not create or link one.
    NotLinked,
    /// The linked local account is disabled.
    AccountDisabled,
    UnknownUpstream,
    /// The chain's control flags refuse a sign-in through this upstream: the named provider
    /// (a REQUIRED or REQUISITE upstream) is mandatory.
    ChainRefused(String),
    Internal,
}

/// Codes specific to upstream sign-in (the network classes use the catalog's codes).
pub const UPSTREAM_CATALOG: &[Entry] = &[
    Entry {
        code: "TSR-UPSTREAM-INVALID-CLIENT",
        title: "upstream refused our client authentication",
        category: Category::Config,
        explanation: "The upstream's token endpoint answered invalid_client: the client id, secret or signing key configured for this upstream is not the one registered there (or the secret expired).",
        remedy: "Compare client_id and the secret / key of [[upstreams]] with the client registration at the upstream IdP; check the client authentication method it expects.",
    },
    Entry {
        code: "TSR-UPSTREAM-INVALID-GRANT",
        title: "upstream refused the authorization code",
        category: Category::Attempt,
        explanation: "The upstream's token endpoint answered invalid_grant: the code expired or was already used, or the redirect_uri or PKCE verifier differs from the authorization request.",
        remedy: "Retry the sign-in; if it keeps failing, check that the redirect URI registered at the upstream is exactly Tessera's callback URL and that the clocks agree.",
    },
    Entry {
        code: "TSR-UPSTREAM-TOKEN-ERROR",
        title: "upstream token endpoint returned an error",
        category: Category::Config,
        explanation: "The upstream's token endpoint answered with an OAuth error other than invalid_client or invalid_grant.",
        remedy: "Read the error and description in the cause; check the client registration at the upstream (grant types, scopes).",
    },
    Entry {
        code: "TSR-UPSTREAM-UNKNOWN-KEY",
        title: "ID token signed with an unknown key",
        category: Category::Config,
        explanation: "The ID token's kid is not in the upstream's JWKS, even after fetching the JWKS again.",
        remedy: "Check that jwks_uri in the upstream's discovery document publishes its signing keys; if it just rotated keys, wait for the refetch interval (jwks_min_refetch) and retry.",
    },
    Entry {
        code: "TSR-UPSTREAM-SIGNATURE",
        title: "ID token signature invalid",
        category: Category::Config,
        explanation: "The ID token's signature does not verify with the upstream's published key: the token was altered on the way, or the upstream signs with another key than it publishes.",
        remedy: "Look for something that rewrites responses between Tessera and the upstream (TLS-intercepting proxy); otherwise report it to the upstream's administrators.",
    },
    Entry {
        code: "TSR-UPSTREAM-ALG",
        title: "ID token algorithm not accepted",
        category: Category::Config,
        explanation: "The ID token's alg is not among the algorithms the upstream advertises (id_token_signing_alg_values_supported) or id_token_algs allows; none and HMAC are never accepted.",
        remedy: "Align id_token_algs with the upstream's configuration.",
    },
    Entry {
        code: "TSR-UPSTREAM-EXPIRED",
        title: "ID token expired",
        category: Category::Attempt,
        explanation: "The ID token's exp has passed (beyond the allowed clock skew).",
        remedy: "Retry; if it persists, check the clocks of this server and the upstream (NTP).",
    },
    Entry {
        code: "TSR-UPSTREAM-CLOCK-SKEW",
        title: "ID token issued at an implausible time",
        category: Category::Infra,
        explanation: "The ID token's iat is further in the future or the past than clock_skew / max_id_token_age allow: this server's clock and the upstream's differ.",
        remedy: "Synchronise the clocks (NTP) of this server and the upstream; raise clock_skew only as a stop-gap.",
    },
    Entry {
        code: "TSR-UPSTREAM-AUDIENCE",
        title: "ID token audience mismatch",
        category: Category::Config,
        explanation: "The ID token's aud does not contain our client_id, names audiences that are not trusted, or azp is not our client_id.",
        remedy: "Check client_id of [[upstreams]]; add other legitimate audiences to trusted_audiences.",
    },
    Entry {
        code: "TSR-UPSTREAM-NONCE",
        title: "ID token nonce mismatch",
        category: Category::Attempt,
        explanation: "The ID token's nonce is not the one sent with this browser's authorization request (replay or mixed-up sign-ins).",
        remedy: "Retry the sign-in from the start in one browser tab.",
    },
    Entry {
        code: "TSR-UPSTREAM-AT-HASH",
        title: "access token hash mismatch",
        category: Category::Config,
        explanation: "The ID token's at_hash does not match the access token returned with it.",
        remedy: "Look for something altering token responses; otherwise report it to the upstream's administrators.",
    },
    Entry {
        code: "TSR-UPSTREAM-MALFORMED",
        title: "upstream response malformed",
        category: Category::Config,
        explanation: "A response of the upstream is not what OpenID Connect requires (no id_token, no Bearer access token, not JSON, no sub, userinfo for another subject).",
        remedy: "Check that the upstream is an OpenID provider and that the openid scope is requested.",
    },
    Entry {
        code: "TSR-UPSTREAM-STATE",
        title: "sign-in state mismatch",
        category: Category::Attempt,
        explanation: "The callback's state does not match the sign-in this browser started (cookie missing or expired, another tab, a callback already used, or a forged callback).",
        remedy: "Start the sign-in again from the application; cookies must be enabled.",
    },
    Entry {
        code: "TSR-UPSTREAM-DENIED",
        title: "upstream refused the sign-in",
        category: Category::Attempt,
        explanation: "The upstream answered the authorization request with an error (the user cancelled, or the upstream refused the client).",
        remedy: "Read the upstream's error in the cause; access_denied usually means the user cancelled or is not assigned to the application at the upstream.",
    },
    Entry {
        code: "TSR-UPSTREAM-NOT-LINKED",
        title: "no local account for the upstream identity",
        category: Category::Config,
        explanation: "The upstream identity is not linked to a local account, and the linking policy (deny, or link_verified_email without a verified matching email) does not create or link one.",
        remedy: "Link the identity to a local account, or change linking in [[upstreams]] (jit creates accounts on first sign-in).",
    },
    Entry {
        code: "TSR-UPSTREAM-ACCOUNT-DISABLED",
        title: "linked local account disabled",
        category: Category::Config,
        explanation: "The local account linked to the upstream identity is disabled.",
        remedy: "Enable the local account if the user should sign in.",
    },
    Entry {
        code: "TSR-UPSTREAM-CHAIN",
        title: "sign-in refused by the chain's control flags",
        category: Category::Config,
        explanation: "The upstream signed the user in, but another upstream is REQUIRED or REQUISITE: every sign-in must come through that one.",
        remedy: "Sign in with the mandatory upstream, or set its flag to SUFFICIENT in [[upstreams]].",
    },
    Entry {
        code: "TSR-UPSTREAM-UNKNOWN",
        title: "unknown upstream",
        category: Category::Config,
        explanation: "The sign-in names an upstream that is not configured or is disabled.",
        remedy: "Check [[upstreams]]: name and enabled.",
    },
];

fn upstream_entry(code: &str) -> Option<&'static Entry> {
    UPSTREAM_CATALOG.iter().find(|e| e.code == code)
}

impl FailureClass {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ProxyRefused(p) => match p.status {
                403 => "TSR-PROXY-403",
                407 => "TSR-PROXY-407",
                _ => "TSR-PROXY-REFUSED",
            },
            Self::Dns => "TSR-NET-DNS",
            Self::ConnectionRefused => "TSR-NET-REFUSED",
            Self::Timeout => "TSR-NET-TIMEOUT",
            Self::NoAnswer => "TSR-NET-NO-ANSWER",
            Self::TlsTrust => "TSR-TLS-UNTRUSTED",
            Self::Tls | Self::Connect => "TSR-TLS-HANDSHAKE",
            Self::HttpStatus(_) => "TSR-HTTP-STATUS",
            Self::InvalidClient => "TSR-UPSTREAM-INVALID-CLIENT",
            Self::InvalidGrant => "TSR-UPSTREAM-INVALID-GRANT",
            Self::TokenError(_) => "TSR-UPSTREAM-TOKEN-ERROR",
            Self::IssuerMismatch => "TSR-OIDC-ISSUER",
            Self::Discovery => "TSR-OIDC-DISCOVERY",
            Self::JwksInvalid => "TSR-JWKS-INVALID",
            Self::UnknownKey => "TSR-UPSTREAM-UNKNOWN-KEY",
            Self::BadSignature => "TSR-UPSTREAM-SIGNATURE",
            Self::AlgorithmRejected => "TSR-UPSTREAM-ALG",
            Self::Expired => "TSR-UPSTREAM-EXPIRED",
            Self::ClockSkew => "TSR-UPSTREAM-CLOCK-SKEW",
            Self::AudienceMismatch => "TSR-UPSTREAM-AUDIENCE",
            Self::NonceMismatch => "TSR-UPSTREAM-NONCE",
            Self::AtHashMismatch => "TSR-UPSTREAM-AT-HASH",
            Self::Malformed => "TSR-UPSTREAM-MALFORMED",
            Self::StateMismatch => "TSR-UPSTREAM-STATE",
            Self::UpstreamDenied(_) => "TSR-UPSTREAM-DENIED",
            Self::NotLinked => "TSR-UPSTREAM-NOT-LINKED",
            Self::AccountDisabled => "TSR-UPSTREAM-ACCOUNT-DISABLED",
            Self::UnknownUpstream => "TSR-UPSTREAM-UNKNOWN",
            Self::ChainRefused(_) => "TSR-UPSTREAM-CHAIN",
            Self::Internal => "TSR-INTERNAL",
        }
    }

    /// Code, title, explanation and remedy (diagnostics catalog first, then ours).
    pub fn entry(&self) -> Option<&'static Entry> {
        let code = self.code();
        catalog::lookup(code).or_else(|| upstream_entry(code))
    }

    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ProxyRefused(_) => "proxy_refused",
            Self::Dns => "dns",
            Self::ConnectionRefused => "connection_refused",
            Self::Timeout => "timeout",
            Self::NoAnswer => "no_answer",
            Self::TlsTrust => "tls_trust",
            Self::Tls => "tls",
            Self::Connect => "connect",
            Self::HttpStatus(_) => "http_status",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::TokenError(_) => "token_error",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::Discovery => "discovery",
            Self::JwksInvalid => "jwks_invalid",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::AlgorithmRejected => "alg_rejected",
            Self::Expired => "expired",
            Self::ClockSkew => "clock_skew",
            Self::AudienceMismatch => "audience_mismatch",
            Self::NonceMismatch => "nonce_mismatch",
            Self::AtHashMismatch => "at_hash_mismatch",
            Self::Malformed => "malformed",
            Self::StateMismatch => "state_mismatch",
            Self::UpstreamDenied(_) => "upstream_denied",
            Self::NotLinked => "not_linked",
            Self::AccountDisabled => "account_disabled",
            Self::UnknownUpstream => "unknown_upstream",
            Self::ChainRefused(_) => "chain_refused",
            Self::Internal => "internal",
        }
    }

    /// The class in words (the detail follows it in the message).
    pub fn describe(&self) -> String {
        match self {
            Self::ProxyRefused(p) => format!(
                "proxy {} answered CONNECT {} with \"{}\"",
                p.proxy, p.target, p.status_line
            ),
            Self::Dns => "DNS lookup failed".into(),
            Self::ConnectionRefused => "connection refused".into(),
            Self::Timeout => "connect timed out".into(),
            Self::NoAnswer => "no answer before the timeout".into(),
            Self::TlsTrust => "TLS certificate not trusted".into(),
            Self::Tls => "TLS handshake failed".into(),
            Self::Connect => "connection failed".into(),
            Self::HttpStatus(s) => format!("unexpected HTTP status {s}"),
            Self::InvalidClient => "the upstream answered invalid_client".into(),
            Self::InvalidGrant => "the upstream answered invalid_grant".into(),
            Self::TokenError(e) => format!("the upstream answered {e}"),
            Self::IssuerMismatch => "issuer mismatch".into(),
            Self::Discovery => "discovery metadata unusable".into(),
            Self::JwksInvalid => "JWKS unusable".into(),
            Self::UnknownKey => "unknown signing key".into(),
            Self::BadSignature => "ID token signature invalid".into(),
            Self::AlgorithmRejected => "ID token algorithm not accepted".into(),
            Self::Expired => "ID token expired".into(),
            Self::ClockSkew => "clock skew beyond tolerance".into(),
            Self::AudienceMismatch => "ID token audience mismatch".into(),
            Self::NonceMismatch => "nonce mismatch".into(),
            Self::AtHashMismatch => "at_hash mismatch".into(),
            Self::Malformed => "malformed upstream response".into(),
            Self::StateMismatch => "state mismatch".into(),
            Self::UpstreamDenied(e) => format!("the upstream refused the sign-in ({e})"),
            Self::NotLinked => "no linked local account".into(),
            Self::AccountDisabled => "linked local account is disabled".into(),
            Self::UnknownUpstream => "unknown or disabled upstream".into(),
            Self::ChainRefused(p) => {
                format!("refused by the authentication chain ('{p}' is mandatory)")
            }
            Self::Internal => "internal error".into(),
        }
    }

    /// What to do about it. Proxy and DNS remedies name the host.
    pub fn remedy(&self) -> String {
        match self {
            Self::ProxyRefused(p) if p.status == 407 => format!(
                "the proxy {} requires authentication: configure proxy credentials, or exempt {} from the proxy (no_proxy)",
                p.proxy,
                host_of_target(&p.target)
            ),
            Self::ProxyRefused(p) => format!(
                "allow CONNECT to {} at the proxy {}, or add {} to the egress no_proxy list (Java: http.nonProxyHosts) if it is reachable directly",
                p.target,
                p.proxy,
                host_of_target(&p.target)
            ),
            _ => self
                .entry()
                .map(|e| e.remedy.to_owned())
                .unwrap_or_else(|| "see the cause".into()),
        }
    }

    /// Classes that mean "we could not reach or use the upstream", not "this user's attempt
    /// was wrong". None of these counts toward any lockout.
    pub fn is_infrastructure(&self) -> bool {
        self.entry().is_some_and(|e| e.category == Category::Infra)
    }
}

fn host_of_target(target: &str) -> &str {
    match target.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => target,
    }
}

impl From<&TransportError> for FailureClass {
    fn from(e: &TransportError) -> Self {
        match &e.kind {
            TransportKind::Dns => Self::Dns,
            TransportKind::Refused => Self::ConnectionRefused,
            TransportKind::Timeout => Self::Timeout,
            TransportKind::NoAnswer => Self::NoAnswer,
            TransportKind::TlsTrust => Self::TlsTrust,
            TransportKind::Tls => Self::Tls,
            TransportKind::Proxy(p) => Self::ProxyRefused(Box::new(p.clone())),
            TransportKind::Connect => Self::Connect,
            TransportKind::HttpStatus(s) => Self::HttpStatus(*s),
            TransportKind::TooLarge | TransportKind::InvalidUrl | TransportKind::Other => {
                Self::Malformed
            }
        }
    }
}

/// A failed upstream sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFailure {
    pub upstream: String,
    pub stage: Stage,
    pub class: FailureClass,
    /// The root message (never a secret, token or signature).
    pub detail: String,
}

impl UpstreamFailure {
    pub fn new(
        upstream: impl Into<String>,
        stage: Stage,
        class: FailureClass,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            upstream: upstream.into(),
            stage,
            class,
            detail: detail.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        self.class.code()
    }

    /// "Exchanging authorization tokens with upstream 'NAME' failed" (or, before the user
    /// left for the upstream, "Starting sign-in with upstream 'NAME' failed").
    pub fn headline(&self) -> String {
        match self.stage {
            Stage::Start => format!("Starting sign-in with upstream '{}' failed", self.upstream),
            _ => format!(
                "Exchanging authorization tokens with upstream '{}' failed",
                self.upstream
            ),
        }
    }

    /// The cause: class in words, then the root message.
    pub fn cause(&self) -> String {
        let class = self.class.describe();
        if self.detail.is_empty() || self.detail == class {
            class
        } else {
            format!("{class}: {}", self.detail)
        }
    }

    /// The full line for the log and the trace.
    pub fn message(&self) -> String {
        format!(
            "{} at {}: [{}] {}. Remedy: {}",
            self.headline(),
            self.stage.as_str(),
            self.code(),
            self.cause(),
            self.class.remedy()
        )
    }
}

impl std::fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for UpstreamFailure {}
