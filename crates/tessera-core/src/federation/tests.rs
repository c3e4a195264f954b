//! Unit tests of the pure parts: metadata and issuer match, failure codes and messages,
//! configuration validation. The flow itself is tested end to end (crates/tessera/tests/e2e).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use super::config::RawUpstream;
use super::failure::{FailureClass, Stage, UPSTREAM_CATALOG, UpstreamFailure};
use super::keys::{discovery_url, parse_metadata};
use super::{LinkPolicy, ProxyRefusal, UpstreamClientAuth};

#[test]
fn discovery_requires_the_exact_issuer() {
    let doc = json!({
        "issuer": "https://idp.example/t/",
        "authorization_endpoint": "https://idp.example/a",
        "token_endpoint": "https://idp.example/t",
        "jwks_uri": "https://idp.example/k",
    });
    assert!(parse_metadata("https://idp.example/t/", &doc).is_ok());
    // A trailing slash is a different issuer (RFC 8414 §3.3: identical).
    assert_eq!(
        parse_metadata("https://idp.example/t", &doc),
        Err(FailureClass::IssuerMismatch)
    );
    let mut no_jwks = doc.clone();
    no_jwks.as_object_mut().unwrap().remove("jwks_uri");
    assert_eq!(
        parse_metadata("https://idp.example/t/", &no_jwks),
        Err(FailureClass::Discovery)
    );
    assert_eq!(
        discovery_url("https://idp.example/t/"),
        "https://idp.example/t/.well-known/openid-configuration"
    );
}

#[test]
fn every_class_has_a_catalogued_code_and_a_remedy() {
    let proxy = ProxyRefusal {
        proxy: "127.0.0.1:3128".into(),
        target: "idp.example:443".into(),
        status_line: "403 Forbidden".into(),
        status: 403,
    };
    let classes = [
        FailureClass::ProxyRefused(Box::new(proxy)),
        FailureClass::Dns,
        FailureClass::ConnectionRefused,
        FailureClass::Timeout,
        FailureClass::NoAnswer,
        FailureClass::TlsTrust,
        FailureClass::Tls,
        FailureClass::HttpStatus(500),
        FailureClass::InvalidClient,
        FailureClass::InvalidGrant,
        FailureClass::TokenError("invalid_scope".into()),
        FailureClass::IssuerMismatch,
        FailureClass::Discovery,
        FailureClass::JwksInvalid,
        FailureClass::UnknownKey,
        FailureClass::BadSignature,
        FailureClass::AlgorithmRejected,
        FailureClass::Expired,
        FailureClass::ClockSkew,
        FailureClass::AudienceMismatch,
        FailureClass::NonceMismatch,
        FailureClass::AtHashMismatch,
        FailureClass::Malformed,
        FailureClass::StateMismatch,
        FailureClass::UpstreamDenied("access_denied".into()),
        FailureClass::NotLinked,
        FailureClass::AccountDisabled,
        FailureClass::UnknownUpstream,
        FailureClass::Internal,
    ];
    for c in &classes {
        let entry = c
            .entry()
            .unwrap_or_else(|| panic!("{} is not catalogued", c.code()));
        assert!(!entry.remedy.is_empty() && !c.remedy().is_empty());
    }
    // Our own codes do not collide with the diagnostics catalog.
    for e in UPSTREAM_CATALOG {
        assert!(
            crate::diagnostics::catalog::lookup(e.code).is_none(),
            "{}",
            e.code
        );
    }
}

#[test]
fn the_message_names_upstream_stage_code_cause_and_remedy() {
    let f = UpstreamFailure::new(
        "corp",
        Stage::TokenRequest,
        FailureClass::ProxyRefused(Box::new(ProxyRefusal {
            proxy: "127.0.0.1:3128".into(),
            target: "login.corp.example:443".into(),
            status_line: "403 Filtered".into(),
            status: 403,
        })),
        "https://login.corp.example/token",
    );
    assert_eq!(
        f.message(),
        "Exchanging authorization tokens with upstream 'corp' failed at token request: \
         [TSR-PROXY-403] proxy 127.0.0.1:3128 answered CONNECT login.corp.example:443 with \
         \"403 Filtered\": https://login.corp.example/token. Remedy: allow CONNECT to \
         login.corp.example:443 at the proxy 127.0.0.1:3128, or add login.corp.example to the \
         egress no_proxy list (Java: http.nonProxyHosts) if it is reachable directly"
    );
    let start = UpstreamFailure::new("corp", Stage::Start, FailureClass::Dns, "x");
    assert!(
        start
            .message()
            .starts_with("Starting sign-in with upstream 'corp' failed")
    );
}

fn raw() -> RawUpstream {
    RawUpstream {
        name: "corp".into(),
        issuer: "https://idp.example".into(),
        client_id: "tessera".into(),
        client_secret_env: Some("CORP_SECRET".into()),
        ..RawUpstream::default()
    }
}

#[test]
fn configuration_is_validated() {
    let env = |k: &str| (k == "CORP_SECRET").then(|| "s3cret".to_owned());
    let no_file = |p: &str| Err(format!("no file {p}"));
    let c = raw().build(&env, &no_file).unwrap();
    assert!(matches!(c.auth, UpstreamClientAuth::SecretBasic(_)));
    assert_eq!(c.linking, LinkPolicy::Jit);
    assert_eq!(c.scope_param(), "openid profile email");
    assert_eq!(c.clock_skew, 60);

    let errors = |r: RawUpstream| r.build(&|_| None, &no_file).unwrap_err();
    let e = errors(raw());
    assert!(
        e.iter()
            .any(|(k, m)| k == "client_auth_method" && m.contains("CORP_SECRET"))
    );
    let e = errors(RawUpstream {
        name: "a b".into(),
        issuer: "http://idp.example".into(),
        client_auth_method: Some("none".into()),
        clock_skew: Some(3600),
        id_token_algs: Some(vec!["HS256".into(), "none".into()]),
        ..raw()
    });
    let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
    for k in [
        "name",
        "issuer",
        "client_auth_method",
        "clock_skew",
        "id_token_algs",
    ] {
        assert!(keys.contains(&k), "{k} in {e:?}");
    }
    // private_key_jwt reads and parses the key.
    let pem = tessera_jose::SigningKey::generate(tessera_jose::Algorithm::ES256, "k")
        .unwrap()
        .to_pkcs8_pem();
    let c = RawUpstream {
        client_auth_method: Some("private_key_jwt".into()),
        client_secret_env: None,
        private_key_file: Some("key.pem".into()),
        private_key_alg: Some("ES256".into()),
        ..raw()
    }
    .build(&|_| None, &|_| Ok(pem.to_string()))
    .unwrap();
    assert_eq!(c.auth.method(), "private_key_jwt");
}

/// The control-flag semantics of the module documentation, on the chain's own decision.
#[test]
fn control_flags_of_a_redirect_based_provider() {
    use crate::authn::{AccountState, ControlFlag, Decision, Outcome, Principal, decide_outcomes};
    let flags = [
        ControlFlag::Sufficient,
        ControlFlag::Optional,
        ControlFlag::Required,
        ControlFlag::Requisite,
    ];
    let config = |flag| {
        let mut c = super::UpstreamConfig::new(
            "corp",
            "https://corp.example",
            "tessera",
            UpstreamClientAuth::SecretBasic(crate::secret::Secret::new("s")),
        );
        c.flag = flag;
        c
    };
    let me = Principal {
        subject: "u1".into(),
        ..Principal::default()
    };
    for flag in flags {
        // Back from the upstream: its result alone decides, a REQUIRED password provider is
        // ignored.
        let d = decide_outcomes(&[
            ("corp".into(), flag, Outcome::Authenticated(me.clone())),
            (
                "local".into(),
                ControlFlag::Required,
                Outcome::NotApplicable,
            ),
        ]);
        assert!(matches!(d, Decision::Authenticated(_)), "{flag:?}: {d:?}");
        // Its answer to a password sign-in.
        let answer = config(flag).answer_to_other_sign_in();
        let mandatory = matches!(flag, ControlFlag::Required | ControlFlag::Requisite);
        assert_eq!(config(flag).is_mandatory(), mandatory);
        if mandatory {
            assert_eq!(answer, Outcome::AccountState(AccountState::Restricted));
        } else {
            assert_eq!(answer, Outcome::NotApplicable);
        }
        let d = decide_outcomes(&[
            ("corp".into(), flag, answer),
            (
                "local".into(),
                ControlFlag::Required,
                Outcome::Authenticated(me.clone()),
            ),
        ]);
        assert_eq!(
            matches!(d, Decision::Authenticated(_)),
            !mandatory,
            "{flag:?}: {d:?}"
        );
    }
    assert_eq!(
        config(ControlFlag::Sufficient).flag,
        super::UpstreamConfig::new(
            "x",
            "https://x.example",
            "c",
            UpstreamClientAuth::SecretBasic(crate::secret::Secret::new("s"))
        )
        .flag,
        "SUFFICIENT is the default"
    );
}

#[test]
fn chain_refusal_has_a_code_and_a_remedy() {
    let f = UpstreamFailure::new(
        "partner",
        Stage::Chain,
        FailureClass::ChainRefused("corp".into()),
        "upstream 'corp' is REQUIRED: every sign-in must come through it",
    );
    assert_eq!(f.code(), "TSR-UPSTREAM-CHAIN");
    assert!(f.message().contains("failed at chain decision: [TSR-UPSTREAM-CHAIN] refused by the authentication chain ('corp' is mandatory)"));
    assert!(f.class.remedy().contains("SUFFICIENT"));
}
