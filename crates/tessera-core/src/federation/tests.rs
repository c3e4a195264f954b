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

// ---------------------------------------------------------------------------------------------
// ID token validation (OIDC Core §3.1.3.7) over a fake upstream that serves only its JWKS.

mod id_token_checks {
    use std::sync::Arc;

    use async_trait::async_trait;
    use serde_json::{Value, json};
    use tessera_jose::{Algorithm, SigningKey};

    use super::super::id_token::{Expected, validate};
    use super::super::keys::Metadata;
    use super::super::{
        FailureClass, HttpReply, ProxyRefusal, TransportError, Upstream, UpstreamClientAuth,
        UpstreamConfig, UpstreamHttp,
    };
    use crate::trace::TraceHandle;

    const NOW: i64 = 1_700_000_000;
    const ISS: &str = "https://idp.example";

    struct Jwks(Vec<u8>);

    #[async_trait]
    impl UpstreamHttp for Jwks {
        async fn get(&self, _: &str, _: &str, _: Option<&str>) -> Result<Vec<u8>, TransportError> {
            Ok(self.0.clone())
        }
        async fn post_form(
            &self,
            _: &str,
            _: &[(String, String)],
            _: Option<(&str, &str)>,
        ) -> Result<HttpReply, TransportError> {
            unreachable!("no token request here")
        }
        async fn proxy_refusal(&self, _: &str) -> Option<ProxyRefusal> {
            None
        }
    }

    fn setup() -> (SigningKey, Upstream, Metadata) {
        let key = SigningKey::generate(Algorithm::ES256, "k1").unwrap();
        let jwks = serde_json::to_vec(&json!({ "keys": [key.public_jwk()] })).unwrap();
        let config = UpstreamConfig::new(
            "corp",
            ISS,
            "tessera",
            UpstreamClientAuth::SecretBasic(crate::secret::Secret::new("s")),
        );
        let meta = Metadata {
            issuer: ISS.into(),
            authorization_endpoint: format!("{ISS}/authorize"),
            token_endpoint: format!("{ISS}/token"),
            jwks_uri: format!("{ISS}/jwks"),
            userinfo_endpoint: None,
            id_token_signing_alg_values_supported: vec!["ES256".into()],
            token_endpoint_auth_methods_supported: Vec::new(),
            authorization_response_iss_parameter_supported: false,
        };
        (key, Upstream::new(config, Arc::new(Jwks(jwks))), meta)
    }

    fn claims() -> Value {
        json!({
            "iss": ISS,
            "sub": "u-1",
            "aud": "tessera",
            "exp": NOW + 300,
            "iat": NOW,
            "nonce": "n-1",
        })
    }

    /// Sign `claims` (with `edit` applied) and validate: the failure's class, or `None`.
    async fn outcome(edit: impl FnOnce(&mut Value)) -> Option<FailureClass> {
        let (key, up, meta) = setup();
        let mut c = claims();
        edit(&mut c);
        let token = key.sign_jwt(Some("JWT"), &c).unwrap();
        let expected = Expected {
            nonce: "n-1",
            access_token: None,
            now: NOW,
        };
        validate(&up, &meta, &token, &expected, &TraceHandle::on())
            .await
            .err()
            .map(|f| f.class)
    }

    #[tokio::test]
    async fn a_valid_token_passes() {
        assert_eq!(outcome(|_| {}).await, None);
        // Several audiences, all trusted, with azp = our client: accepted.
        let (key, mut up, meta) = setup();
        up.config.trusted_audiences = vec!["api".into()];
        let mut c = claims();
        c["aud"] = json!(["tessera", "api"]);
        c["azp"] = json!("tessera");
        let token = key.sign_jwt(Some("JWT"), &c).unwrap();
        let exp = Expected {
            nonce: "n-1",
            access_token: None,
            now: NOW,
        };
        assert!(
            validate(&up, &meta, &token, &exp, &TraceHandle::off())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn each_claim_check_fails_with_its_class() {
        type Edit = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(&str, Edit, FailureClass)> = vec![
            (
                "iss",
                Box::new(|c| c["iss"] = json!("https://idp.example/")),
                FailureClass::IssuerMismatch,
            ),
            (
                "aud",
                Box::new(|c| c["aud"] = json!("other")),
                FailureClass::AudienceMismatch,
            ),
            (
                "untrusted extra aud",
                Box::new(|c| {
                    c["aud"] = json!(["tessera", "other"]);
                    c["azp"] = json!("tessera");
                }),
                FailureClass::AudienceMismatch,
            ),
            (
                // RFC 7519 §4.1.3: a non-string audience is not silently dropped.
                "non-string aud entry",
                Box::new(|c| c["aud"] = json!(["tessera", 42])),
                FailureClass::AudienceMismatch,
            ),
            (
                "azp of another client",
                Box::new(|c| c["azp"] = json!("other")),
                FailureClass::AudienceMismatch,
            ),
            (
                "exp",
                Box::new(|c| c["exp"] = json!(NOW - 61)),
                FailureClass::Expired,
            ),
            (
                "iat in the future",
                Box::new(|c| c["iat"] = json!(NOW + 61)),
                FailureClass::ClockSkew,
            ),
            (
                // RFC 7519 §4.1.5: not before nbf (plus skew).
                "nbf in the future",
                Box::new(|c| c["nbf"] = json!(NOW + 61)),
                FailureClass::ClockSkew,
            ),
            (
                "nbf not a number",
                Box::new(|c| c["nbf"] = json!("soon")),
                FailureClass::Malformed,
            ),
            (
                "nonce",
                Box::new(|c| c["nonce"] = json!("n-2")),
                FailureClass::NonceMismatch,
            ),
            (
                "no nonce",
                Box::new(|c| {
                    c.as_object_mut().unwrap().remove("nonce");
                }),
                FailureClass::NonceMismatch,
            ),
        ];
        for (name, edit, want) in cases {
            assert_eq!(outcome(edit).await, Some(want), "{name}");
        }
        // Within the skew: accepted.
        assert_eq!(outcome(|c| c["nbf"] = json!(NOW + 59)).await, None);
        assert_eq!(outcome(|c| c["exp"] = json!(NOW - 59)).await, None);
    }

    #[tokio::test]
    async fn several_audiences_need_azp() {
        let (key, mut up, meta) = setup();
        up.config.trusted_audiences = vec!["api".into()];
        let mut c = claims();
        c["aud"] = json!(["tessera", "api"]);
        let token = key.sign_jwt(Some("JWT"), &c).unwrap();
        let exp = Expected {
            nonce: "n-1",
            access_token: None,
            now: NOW,
        };
        let f = validate(&up, &meta, &token, &exp, &TraceHandle::off())
            .await
            .unwrap_err();
        assert_eq!(f.class, FailureClass::AudienceMismatch, "{f}");
    }

    /// Serves its current JWKS, slowly, and counts the fetches.
    struct Rotating {
        body: std::sync::Mutex<Vec<u8>>,
        fetches: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl UpstreamHttp for Rotating {
        async fn get(&self, _: &str, _: &str, _: Option<&str>) -> Result<Vec<u8>, TransportError> {
            self.fetches
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Ok(self.body.lock().unwrap().clone())
        }
        async fn post_form(
            &self,
            _: &str,
            _: &[(String, String)],
            _: Option<(&str, &str)>,
        ) -> Result<HttpReply, TransportError> {
            unreachable!("no token request here")
        }
        async fn proxy_refusal(&self, _: &str) -> Option<ProxyRefusal> {
            None
        }
    }

    /// OIDC Core §10.1.1: after the upstream rotates its key, sign-ins arriving together all
    /// pass: one refetch, the others wait for it instead of failing on the stale set.
    #[tokio::test]
    async fn concurrent_sign_ins_after_a_rotation_share_one_refetch() {
        let (old, _, meta) = setup();
        let jwks_of = |k: &SigningKey| serde_json::to_vec(&json!({ "keys": [k.public_jwk()] }));
        let http = Arc::new(Rotating {
            body: std::sync::Mutex::new(jwks_of(&old).unwrap()),
            fetches: Default::default(),
        });
        let config = UpstreamConfig::new(
            "corp",
            ISS,
            "tessera",
            UpstreamClientAuth::SecretBasic(crate::secret::Secret::new("s")),
        );
        let up = Arc::new(Upstream::new(config, http.clone()));
        // A sign-in two minutes earlier fetched the old key set.
        let earlier = Expected {
            nonce: "n-1",
            access_token: None,
            now: NOW - 120,
        };
        let mut c = claims();
        c["iat"] = json!(NOW - 120);
        let token = old.sign_jwt(Some("JWT"), &c).unwrap();
        assert!(
            validate(&up, &meta, &token, &earlier, &TraceHandle::off())
                .await
                .is_ok()
        );
        // The upstream rotates.
        let new = SigningKey::generate(Algorithm::ES256, "k2").unwrap();
        *http.body.lock().unwrap() = jwks_of(&new).unwrap();
        let token = Arc::new(new.sign_jwt(Some("JWT"), &claims()).unwrap());
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (up, meta, token) = (up.clone(), meta.clone(), token.clone());
                tokio::spawn(async move {
                    let exp = Expected {
                        nonce: "n-1",
                        access_token: None,
                        now: NOW,
                    };
                    validate(&up, &meta, &token, &exp, &TraceHandle::off())
                        .await
                        .map_err(|f| f.to_string())
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(
            http.fetches.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the first fetch and one refetch"
        );
    }

    #[tokio::test]
    async fn hmac_and_unadvertised_algorithms_are_refused() {
        let (_, up, meta) = setup();
        let exp = Expected {
            nonce: "n-1",
            access_token: None,
            now: NOW,
        };
        // An RS256 token when the upstream advertises ES256 only.
        let rsa = SigningKey::generate(Algorithm::RS256, "k1").unwrap();
        let token = rsa.sign_jwt(Some("JWT"), &claims()).unwrap();
        let f = validate(&up, &meta, &token, &exp, &TraceHandle::off())
            .await
            .unwrap_err();
        assert_eq!(f.class, FailureClass::AlgorithmRejected, "{f}");
        // HS256 keyed with anything: never, even when advertised.
        let mut meta = meta;
        meta.id_token_signing_alg_values_supported = vec!["HS256".into(), "none".into()];
        let hs = tessera_jose::HmacKey::new(Algorithm::HS256, b"0123456789abcdef0123456789abcdef")
            .unwrap();
        let token = hs.sign_jwt(Some("JWT"), &claims()).unwrap();
        let f = validate(&up, &meta, &token, &exp, &TraceHandle::off())
            .await
            .unwrap_err();
        assert_eq!(f.class, FailureClass::AlgorithmRejected, "{f}");
    }
}

#[test]
fn upstream_error_text_is_sanitized() {
    assert_eq!(
        super::flow::sanitize("bad\nINFO forged \"x\" \\ é", 300),
        "bad?INFO forged ?x? ? ?"
    );
    assert_eq!(super::flow::sanitize("access_denied", 6), "access");
}
