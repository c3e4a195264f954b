//! Every assertion rule has a test here that fails when the rule is removed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tessera_jose::b64::base64url_encode;
use tessera_jose::{Algorithm, HmacKey, JwkSet, Limits, SigningKey, decode_compact};

use super::keyfile::{MintOptions, mint, new_service_account};
use super::*;
use crate::engine::Endpoint;
use crate::error::ErrorCode;
use crate::model::{AuthMethod, Client, User};
use crate::oauth::grant_type;
use crate::settings::{ClientAssertionAudience, Settings};
use crate::store::{ClientStore, UserStore};
use crate::testing::{MemoryStore, test_engine};

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://id.example.com";
const TOKEN_EP: &str = "https://id.example.com/token";

fn settings() -> Settings {
    Settings::new(ISSUER)
}

async fn engine_with(settings: Settings) -> (Engine, MemoryStore) {
    test_engine(settings, NOW).await.unwrap()
}

fn es256(kid: &str) -> SigningKey {
    SigningKey::generate(Algorithm::ES256, kid).unwrap()
}

fn rsa_key() -> SigningKey {
    static RSA: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    RSA.get_or_init(|| SigningKey::generate(Algorithm::RS256, "rsa").unwrap())
        .clone()
}

fn jwks_of(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| serde_json::to_value(k.public_jwk()).unwrap()).collect::<Vec<_>>() })
}

/// Sign with an explicit header (for crit, jku, missing kid, ...).
fn sign_raw(key: &SigningKey, header: Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        base64url_encode(serde_json::to_vec(&header).unwrap()),
        base64url_encode(serde_json::to_vec(claims).unwrap())
    );
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", base64url_encode(sig))
}

fn sign_hmac(secret: &[u8], alg: Algorithm, claims: &Value) -> String {
    HmacKey::new(alg, secret)
        .unwrap()
        .sign_jwt(Some("JWT"), claims)
        .unwrap()
}

fn client_claims(client_id: &str) -> Value {
    json!({
        "iss": client_id, "sub": client_id, "aud": TOKEN_EP,
        "iat": NOW, "exp": NOW + 60, "jti": format!("jti-{}", rand::random::<u64>()),
    })
}

fn with(mut v: Value, k: &str, val: Value) -> Value {
    v[k] = val;
    v
}

fn without(mut v: Value, k: &str) -> Value {
    v.as_object_mut().unwrap().remove(k);
    v
}

async fn add_pkjwt_client(store: &MemoryStore, id: &str, jwks: Value, alg: Option<&str>) {
    store
        .put_client(&Client {
            client_id: id.into(),
            grant_types: vec![grant_type::CLIENT_CREDENTIALS.into()],
            token_endpoint_auth_method: AuthMethod::PrivateKeyJwt,
            token_endpoint_auth_signing_alg: alg.map(str::to_owned),
            jwks: Some(jwks),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn auth(
    engine: &Engine,
    client_id: Option<&str>,
    jwt: &str,
) -> OAuthResult<AuthenticatedClient> {
    authenticate_client(
        engine,
        client_id,
        jwt,
        Endpoint::Token,
        &RequestContext::default(),
        NOW,
    )
    .await
}

fn desc(e: &OAuthError) -> String {
    e.description.as_deref().unwrap_or_default().to_owned()
}

#[track_caller]
fn assert_client_err(r: OAuthResult<AuthenticatedClient>, want: &str) {
    match r {
        Ok(c) => panic!("accepted {}; wanted '{want}'", c.client.client_id),
        Err(e) => {
            assert_eq!(e.code, ErrorCode::InvalidClient, "{e}");
            assert_eq!(desc(&e), want, "{e}");
        }
    }
}

/// An engine with one private_key_jwt client "app" whose ES256 key is returned.
async fn pkjwt_setup(settings: Settings) -> (Engine, MemoryStore, SigningKey) {
    let (engine, store) = engine_with(settings).await;
    let key = es256("k1");
    add_pkjwt_client(&store, "app", jwks_of(&[&key]), None).await;
    (engine, store, key)
}

fn sign(key: &SigningKey, claims: &Value) -> String {
    key.sign_jwt(Some("JWT"), claims).unwrap()
}

// --- client authentication: audience ------------------------------------------------------

#[tokio::test]
async fn aud_issuer_and_token_endpoint_accepted_by_default() {
    let (engine, _, key) = pkjwt_setup(settings()).await;
    for aud in [json!(ISSUER), json!(TOKEN_EP), json!([ISSUER])] {
        let jwt = sign(&key, &with(client_claims("app"), "aud", aud.clone()));
        let c = auth(&engine, None, &jwt)
            .await
            .unwrap_or_else(|e| panic!("{aud}: {e}"));
        assert_eq!(c.client.client_id, "app");
        assert_eq!(c.method, AuthMethod::PrivateKeyJwt);
    }
}

#[tokio::test]
async fn aud_other_or_several_rejected() {
    let (engine, _, key) = pkjwt_setup(settings()).await;
    let want = format!("Audience validation failed: expected {ISSUER} or {TOKEN_EP}");
    for aud in [
        json!("https://other.example.com"),
        json!(["https://other.example.com"]),
        json!([]),
        json!(GOOGLE_TOKEN_AUDIENCE),
        json!("https://id.example.com/"),
    ] {
        let jwt = sign(&key, &with(client_claims("app"), "aud", aud));
        assert_client_err(auth(&engine, None, &jwt).await, &want);
    }
    // The error says why: this server must be the *sole* audience (rfc7523bis §4 b.).
    for aud in [
        json!([ISSUER, "https://other.example.com"]),
        json!([ISSUER, TOKEN_EP]),
    ] {
        let jwt = sign(&key, &with(client_claims("app"), "aud", aud));
        assert_client_err(
            auth(&engine, None, &jwt).await,
            &format!("{want} as the only audience"),
        );
    }
    let jwt = sign(&key, &without(client_claims("app"), "aud"));
    assert_client_err(
        auth(&engine, None, &jwt).await,
        &format!(
            "Audience validation failed: aud claim is missing (expected {ISSUER} or {TOKEN_EP})"
        ),
    );
    let jwt = sign(&key, &with(client_claims("app"), "aud", json!(7)));
    assert_client_err(
        auth(&engine, None, &jwt).await,
        &format!(
            "Audience validation failed: aud must be a string or an array of strings (expected {ISSUER} or {TOKEN_EP})"
        ),
    );
}

#[tokio::test]
async fn strict_mode_accepts_only_the_issuer() {
    let mut s = settings();
    s.client_assertion_audience = ClientAssertionAudience::Strict;
    let (engine, _, key) = pkjwt_setup(s).await;
    let jwt = sign(&key, &with(client_claims("app"), "aud", json!(ISSUER)));
    assert!(auth(&engine, None, &jwt).await.is_ok());
    let jwt = sign(&key, &with(client_claims("app"), "aud", json!(TOKEN_EP)));
    assert_client_err(
        auth(&engine, None, &jwt).await,
        &format!("Audience validation failed: expected {ISSUER}"),
    );
}

// --- client authentication: time -----------------------------------------------------------

#[tokio::test]
async fn exp_boundary_with_skew() {
    let (engine, _, key) = pkjwt_setup(settings()).await;
    let skew = engine.settings.clock_skew as i64;
    let base = json!({"iss": "app", "sub": "app", "aud": ISSUER});
    let ok = sign(
        &key,
        &with(
            with(base.clone(), "exp", json!(NOW - skew + 1)),
            "jti",
            json!("a"),
        ),
    );
    assert!(auth(&engine, None, &ok).await.is_ok());
    let expired = sign(
        &key,
        &with(
            with(base.clone(), "exp", json!(NOW - skew)),
            "jti",
            json!("b"),
        ),
    );
    assert_client_err(auth(&engine, None, &expired).await, "assertion has expired");
    let no_exp = sign(&key, &with(base, "jti", json!("c")));
    assert_client_err(auth(&engine, None, &no_exp).await, "exp claim is missing");
}

#[tokio::test]
async fn nbf_and_iat_with_skew() {
    let (engine, _, key) = pkjwt_setup(settings()).await;
    let skew = engine.settings.clock_skew as i64;
    // openid-client: nbf = iat, possibly slightly ahead of our clock.
    let c = with(
        with(client_claims("app"), "nbf", json!(NOW + skew)),
        "iat",
        json!(NOW + skew),
    );
    assert!(auth(&engine, None, &sign(&key, &c)).await.is_ok());
    let c = with(client_claims("app"), "nbf", json!(NOW + skew + 1));
    assert_client_err(
        auth(&engine, None, &sign(&key, &c)).await,
        "assertion is not yet valid",
    );
    let c = with(client_claims("app"), "iat", json!(NOW + skew + 1));
    assert_client_err(
        auth(&engine, None, &sign(&key, &c)).await,
        "assertion was issued in the future (iat)",
    );
}

#[tokio::test]
async fn lifetime_cap_admits_one_hour() {
    let (engine, _, key) = pkjwt_setup(settings()).await;
    let max = engine.settings.max_assertion_lifetime as i64;
    assert_eq!(max, 3660);
    // Authlib: exp - iat = 3600.
    let c = with(
        with(client_claims("app"), "iat", json!(NOW)),
        "exp",
        json!(NOW + 3600),
    );
    assert!(auth(&engine, None, &sign(&key, &c)).await.is_ok());
    let c = with(
        with(client_claims("app"), "iat", json!(NOW)),
        "exp",
        json!(NOW + max),
    );
    assert!(auth(&engine, None, &sign(&key, &c)).await.is_ok());
    let c = with(
        with(client_claims("app"), "iat", json!(NOW)),
        "exp",
        json!(NOW + max + 1),
    );
    assert_client_err(
        auth(&engine, None, &sign(&key, &c)).await,
        "assertion lifetime exceeds 3660 seconds",
    );
    // Without iat: exp - now.
    let c = with(
        without(client_claims("app"), "iat"),
        "exp",
        json!(NOW + max + 1),
    );
    assert_client_err(
        auth(&engine, None, &sign(&key, &c)).await,
        "assertion lifetime exceeds 3660 seconds",
    );
}

// --- client authentication: jti --------------------------------------------------------------

#[tokio::test]
async fn jti_required_and_single_use() {
    let (engine, store, key) = pkjwt_setup(settings()).await;
    let c = without(client_claims("app"), "jti");
    assert_client_err(
        auth(&engine, None, &sign(&key, &c)).await,
        "jti claim is missing",
    );
    let c = with(client_claims("app"), "jti", json!(""));
    assert_client_err(
        auth(&engine, None, &sign(&key, &c)).await,
        "jti claim is missing",
    );

    let c = with(client_claims("app"), "jti", json!("once"));
    let jwt = sign(&key, &c);
    assert!(auth(&engine, None, &jwt).await.is_ok());
    assert_client_err(auth(&engine, None, &jwt).await, "jti has already been used");
    // A fresh signature over the same jti is still a replay.
    assert_client_err(
        auth(&engine, None, &sign(&key, &c)).await,
        "jti has already been used",
    );
    // The entry lives in the shared store until exp + skew.
    use crate::store::ReplayStore;
    let until = NOW + 60 + engine.settings.clock_skew as i64;
    assert!(
        !store
            .remember_once("client-jti:app:once", until, until - 1)
            .await
            .unwrap()
    );
    assert!(
        store
            .remember_once("client-jti:app:once", until + 100, until)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn store_outage_is_temporarily_unavailable_not_a_bad_assertion() {
    let (engine, store, key) = pkjwt_setup(settings()).await;
    let jwt = sign(&key, &client_claims("app"));
    store.set_unavailable(true);
    let e = auth(&engine, None, &jwt).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::TemporarilyUnavailable);
}

// --- client authentication: identity -------------------------------------------------------

#[tokio::test]
async fn iss_sub_and_client_id_must_agree() {
    let (engine, _, key) = pkjwt_setup(settings()).await;
    let c = with(client_claims("app"), "sub", json!("someone-else"));
    assert_client_err(
        auth(&engine, None, &sign(&key, &c)).await,
        "sub must equal the client_id (iss)",
    );
    let c = without(client_claims("app"), "sub");
    assert_client_err(
        auth(&engine, None, &sign(&key, &c)).await,
        "sub claim is missing",
    );
    // openid-client repeats client_id in the body.
    assert!(
        auth(&engine, Some("app"), &sign(&key, &client_claims("app")))
            .await
            .is_ok()
    );
    let r = auth(&engine, Some("other"), &sign(&key, &client_claims("app"))).await;
    assert_client_err(r, "client_id does not match the assertion");
    let c = without(client_claims("app"), "iss");
    assert_client_err(
        auth(&engine, None, &sign(&key, &c)).await,
        "iss claim is missing",
    );
    // Present but not a string (RFC 7519 §4.1.1): malformed, not missing.
    for bad in [json!(["app"]), json!(7), json!(null)] {
        let c = with(client_claims("app"), "iss", bad.clone());
        assert_client_err(
            auth(&engine, None, &sign(&key, &c)).await,
            "iss claim is malformed",
        );
    }
    assert_client_err(
        auth(&engine, None, &sign(&key, &client_claims("nobody"))).await,
        "unknown client",
    );
}

#[tokio::test]
async fn client_must_be_registered_for_a_jwt_method() {
    let (engine, store, key) = pkjwt_setup(settings()).await;
    let mut c = store.get_client("app").await.unwrap().unwrap();
    c.token_endpoint_auth_method = AuthMethod::ClientSecretBasic;
    store.put_client(&c).await.unwrap();
    engine.forget_client("app");
    let r = auth(&engine, None, &sign(&key, &client_claims("app"))).await;
    assert_client_err(
        r,
        "client is registered for client_secret_basic, not a client assertion",
    );
    c.token_endpoint_auth_method = AuthMethod::PrivateKeyJwt;
    c.disabled = true;
    store.put_client(&c).await.unwrap();
    engine.forget_client("app");
    assert_client_err(
        auth(&engine, None, &sign(&key, &client_claims("app"))).await,
        "unknown client",
    );
}

// --- client authentication: algorithms and keys --------------------------------------------

#[tokio::test]
async fn alg_none_is_refused() {
    let (engine, _, _) = pkjwt_setup(settings()).await;
    let claims = client_claims("app");
    let jwt = format!(
        "{}.{}.{}",
        base64url_encode(br#"{"alg":"none"}"#),
        base64url_encode(serde_json::to_vec(&claims).unwrap()),
        base64url_encode(b"x")
    );
    assert_client_err(auth(&engine, None, &jwt).await, "alg none is not allowed");
    let unsigned = format!(
        "{}.{}.",
        base64url_encode(br#"{"alg":"none"}"#),
        base64url_encode(b"{}")
    );
    assert_eq!(
        auth(&engine, None, &unsigned).await.unwrap_err().code,
        ErrorCode::InvalidClient
    );
}

#[tokio::test]
async fn hmac_with_a_public_key_is_refused() {
    let (engine, _, key) = pkjwt_setup(settings()).await;
    // Key confusion: HS256 keyed with the public JWK's bytes.
    let public = serde_json::to_vec(&key.public_jwk()).unwrap();
    let jwt = sign_hmac(&public, Algorithm::HS256, &client_claims("app"));
    assert_client_err(
        auth(&engine, None, &jwt).await,
        "alg HS256 is not allowed for this client",
    );
    // And the jose layer refuses HS* on an asymmetric key even if a list allowed it.
    let unverified = decode_compact(&jwt, &Limits::default()).unwrap();
    assert!(
        unverified
            .verify_with_any(&[key.verifying_key()], &[Algorithm::HS256])
            .is_err()
    );
}

#[tokio::test]
async fn alg_outside_the_registered_one_is_refused() {
    let (engine, store, key) = pkjwt_setup(settings()).await;
    let rsa = rsa_key();
    add_pkjwt_client(&store, "pinned", jwks_of(&[&key, &rsa]), Some("ES256")).await;
    let jwt = sign(&rsa, &client_claims("pinned"));
    assert_client_err(
        auth(&engine, None, &jwt).await,
        "alg RS256 is not allowed for this client",
    );
    assert!(
        auth(&engine, None, &sign(&key, &client_claims("pinned")))
            .await
            .is_ok()
    );
}

/// Regression: openid-client 6 (oauth4webapi 3) signs with an Ed25519 key under RFC 9864's
/// fully-specified `alg` "Ed25519", not "EdDSA"; it was refused as an unsupported algorithm.
#[tokio::test]
async fn ed25519_fully_specified_alg_is_eddsa() {
    let (engine, store, _) = pkjwt_setup(settings()).await;
    let ed = SigningKey::generate(Algorithm::EdDSA, "ed").unwrap();
    add_pkjwt_client(&store, "ed-pinned", jwks_of(&[&ed]), Some("EdDSA")).await;
    add_pkjwt_client(&store, "ed-any", jwks_of(&[&ed]), None).await;
    for id in ["ed-pinned", "ed-any"] {
        let jwt = sign_raw(
            &ed,
            json!({"alg": "Ed25519", "kid": "ed"}),
            &client_claims(id),
        );
        let c = auth(&engine, Some(id), &jwt).await.unwrap();
        assert_eq!(c.client.client_id, id);
    }
    // Still pinned: an ES256-only client refuses it.
    let es = es256("es");
    add_pkjwt_client(&store, "es-only", jwks_of(&[&es, &ed]), Some("ES256")).await;
    let jwt = sign_raw(
        &ed,
        json!({"alg": "Ed25519", "kid": "ed"}),
        &client_claims("es-only"),
    );
    assert_client_err(
        auth(&engine, None, &jwt).await,
        "alg EdDSA is not allowed for this client",
    );
}

#[tokio::test]
async fn unknown_kid_and_missing_kid() {
    let (engine, store, key) = pkjwt_setup(settings()).await;
    let stranger = es256("zzz");
    assert_client_err(
        auth(&engine, None, &sign(&stranger, &client_claims("app"))).await,
        "no key of this client has kid 'zzz'",
    );
    // Authlib sends no kid: every compatible key is tried.
    let k2 = es256("k2");
    let rsa = rsa_key();
    add_pkjwt_client(&store, "multi", jwks_of(&[&key, &k2, &rsa]), None).await;
    let jwt = sign_raw(
        &k2,
        json!({"typ": "JWT", "alg": "ES256"}),
        &client_claims("multi"),
    );
    assert!(auth(&engine, None, &jwt).await.is_ok());
    let jwt = sign_raw(&stranger, json!({"alg": "ES256"}), &client_claims("multi"));
    assert_client_err(auth(&engine, None, &jwt).await, "signature invalid");
}

#[tokio::test]
async fn tampered_signature_and_payload() {
    let (engine, _, key) = pkjwt_setup(settings()).await;
    let jwt = sign(&key, &client_claims("app"));
    let (head, sig) = jwt.rsplit_once('.').unwrap();
    let mut bytes = tessera_jose::b64::base64url_decode(sig).unwrap();
    bytes[5] ^= 1;
    let tampered = format!("{head}.{}", base64url_encode(bytes));
    assert_client_err(auth(&engine, None, &tampered).await, "signature invalid");
    // Claims swapped under the same signature.
    let parts: Vec<&str> = jwt.split('.').collect();
    let other = base64url_encode(
        serde_json::to_vec(&with(client_claims("app"), "exp", json!(NOW + 3000))).unwrap(),
    );
    assert_client_err(
        auth(&engine, None, &format!("{}.{other}.{}", parts[0], parts[2])).await,
        "signature invalid",
    );
}

#[tokio::test]
async fn unknown_crit_is_refused() {
    let (engine, _, key) = pkjwt_setup(settings()).await;
    let jwt = sign_raw(
        &key,
        json!({"alg": "ES256", "kid": "k1", "crit": ["exp-ext"], "exp-ext": 1}),
        &client_claims("app"),
    );
    let e = auth(&engine, None, &jwt).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidClient);
    assert!(desc(&e).contains("critical header parameter"), "{e}");
}

#[tokio::test]
async fn jku_and_embedded_jwk_are_never_trusted() {
    let (engine, _, key) = pkjwt_setup(settings()).await;
    // A jku next to a valid signature changes nothing (never fetched).
    let jwt = sign_raw(
        &key,
        json!({"alg": "ES256", "kid": "k1", "jku": "https://evil.example/jwks"}),
        &client_claims("app"),
    );
    let trace = crate::trace::TraceHandle::on();
    let ctx = RequestContext {
        trace: trace.clone(),
        ..Default::default()
    };
    assert!(
        authenticate_client(&engine, None, &jwt, Endpoint::Token, &ctx, NOW)
            .await
            .is_ok()
    );
    let steps = trace.steps();
    let refs = steps
        .iter()
        .find(|s| s.step == "check:key references")
        .unwrap();
    assert_eq!(refs.detail["actual"], json!("jku present, ignored"));
    // An attacker's key embedded as `jwk` does not verify anything.
    let evil = es256("k1");
    let evil_jwk = serde_json::to_value(evil.public_jwk()).unwrap();
    let jwt = sign_raw(
        &evil,
        json!({"alg": "ES256", "kid": "k1", "jwk": evil_jwk}),
        &client_claims("app"),
    );
    assert_client_err(auth(&engine, None, &jwt).await, "signature invalid");
}

#[tokio::test]
async fn size_limit() {
    let mut s = settings();
    s.max_jwt_bytes = 1024;
    let (engine, _, key) = pkjwt_setup(s).await;
    let big = with(client_claims("app"), "pad", json!("x".repeat(2000)));
    assert_client_err(
        auth(&engine, None, &sign(&key, &big)).await,
        "assertion is larger than 1024 bytes",
    );
}

#[tokio::test]
async fn client_secret_jwt_uses_the_sealed_secret() {
    let (engine, store) = engine_with(settings()).await;
    let mut client = Client {
        client_id: "hs".into(),
        token_endpoint_auth_method: AuthMethod::ClientSecretJwt,
        grant_types: vec![grant_type::CLIENT_CREDENTIALS.into()],
        ..Default::default()
    };
    let secret = crate::registration::set_new_secret(&engine, &mut client).unwrap();
    store.put_client(&client).await.unwrap();
    let jwt = sign_hmac(secret.as_bytes(), Algorithm::HS256, &client_claims("hs"));
    let c = auth(&engine, None, &jwt).await.unwrap();
    assert_eq!(c.method, AuthMethod::ClientSecretJwt);
    // Generated secrets key every HMAC alg (RFC 7518 §3.2: HS512 needs 64 octets).
    assert!(secret.len() >= 64, "{}", secret.len());
    let jwt = sign_hmac(secret.as_bytes(), Algorithm::HS512, &client_claims("hs"));
    assert!(auth(&engine, None, &jwt).await.is_ok());
    let jwt = sign_hmac(
        b"not-the-secret-not-the-secret-xx",
        Algorithm::HS256,
        &client_claims("hs"),
    );
    assert_client_err(auth(&engine, None, &jwt).await, "signature invalid");
    // An asymmetric alg is not in the client_secret_jwt family.
    let jwt = sign(&es256("x"), &client_claims("hs"));
    assert_client_err(
        auth(&engine, None, &jwt).await,
        "alg ES256 is not allowed for this client",
    );
    // An operator-set secret shorter than the hash output is refused for that alg (HS512 needs
    // 64 octets), and still works for HS256 (32).
    let short = "an-operator-chosen-secret-of-48-characters-xxxxx";
    crate::registration::set_secret(&engine.master, &mut client, short).unwrap();
    store.put_client(&client).await.unwrap();
    engine.forget_client("hs");
    let jwt = sign_hmac(short.as_bytes(), Algorithm::HS512, &client_claims("hs"));
    assert_client_err(
        auth(&engine, None, &jwt).await,
        "the client secret is too short for HS512 (RFC 7518 §3.2); use HS256 or a longer secret",
    );
    let jwt = sign_hmac(short.as_bytes(), Algorithm::HS384, &client_claims("hs"));
    assert!(
        auth(&engine, None, &jwt).await.is_ok(),
        "48 octets key HS384"
    );
    // Expired secret.
    client.client_secret_expires_at = NOW - 1;
    store.put_client(&client).await.unwrap();
    engine.forget_client("hs");
    let jwt = sign_hmac(secret.as_bytes(), Algorithm::HS256, &client_claims("hs"));
    assert_client_err(auth(&engine, None, &jwt).await, "client secret has expired");
}

// --- jwks_uri ---------------------------------------------------------------------------------

struct FakeSource {
    set: std::sync::Mutex<Result<JwkSet, JwksFetchError>>,
    fetches: AtomicUsize,
}

#[async_trait::async_trait]
impl JwksSource for FakeSource {
    async fn fetch(&self, _uri: &str) -> Result<JwkSet, JwksFetchError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.set.lock().unwrap().clone()
    }
}

fn set_of(keys: &[&SigningKey]) -> JwkSet {
    serde_json::from_value(jwks_of(keys)).unwrap()
}

#[tokio::test]
async fn jwks_uri_is_cached_refetched_on_unknown_kid_and_rate_limited() {
    let (mut engine, store) = engine_with(settings()).await;
    let k1 = es256("k1");
    let k2 = es256("k2");
    let source = Arc::new(FakeSource {
        set: std::sync::Mutex::new(Ok(set_of(&[&k1]))),
        fetches: AtomicUsize::new(0),
    });
    engine.jwks = JwksCache::new(Some(source.clone()));
    store
        .put_client(&Client {
            client_id: "remote".into(),
            token_endpoint_auth_method: AuthMethod::PrivateKeyJwt,
            jwks_uri: Some("https://rp.example/jwks".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let at = |key: &SigningKey, now: i64| {
        sign(
            key,
            &with(
                with(client_claims("remote"), "iat", json!(now)),
                "exp",
                json!(now + 60),
            ),
        )
    };
    let engine = &engine;
    let run = |jwt: String, now: i64| async move {
        authenticate_client(
            engine,
            None,
            &jwt,
            Endpoint::Token,
            &RequestContext::default(),
            now,
        )
        .await
    };
    assert!(run(at(&k1, NOW), NOW).await.is_ok());
    assert!(run(at(&k1, NOW + 1), NOW + 1).await.is_ok());
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1, "cached");
    // Rotation: k2 appears; the unknown kid triggers one refetch... but not within 30 s.
    *source.set.lock().unwrap() = Ok(set_of(&[&k1, &k2]));
    let e = run(at(&k2, NOW + 10), NOW + 10).await.unwrap_err();
    assert_eq!(desc(&e), "no key of this client has kid 'k2'");
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1, "rate-limited");
    assert!(run(at(&k2, NOW + 31), NOW + 31).await.is_ok());
    assert_eq!(source.fetches.load(Ordering::SeqCst), 2, "one refetch");
    // An unknown kid right after does not refetch again.
    let e = run(at(&es256("k3"), NOW + 32), NOW + 32).await.unwrap_err();
    assert_eq!(desc(&e), "no key of this client has kid 'k3'");
    assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
    // After the TTL a fetch failure keeps the stale keys serving.
    *source.set.lock().unwrap() = Err(JwksFetchError {
        class: "timeout".into(),
        detail: "10 s".into(),
    });
    assert!(run(at(&k1, NOW + 400), NOW + 400).await.is_ok());
    assert_eq!(source.fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn jwks_uri_fetch_failure_is_invalid_client_with_class_only() {
    let (mut engine, store) = engine_with(settings()).await;
    let source = Arc::new(FakeSource {
        set: std::sync::Mutex::new(Err(JwksFetchError {
            class: "dns".into(),
            detail: "no such host rp.internal".into(),
        })),
        fetches: AtomicUsize::new(0),
    });
    engine.jwks = JwksCache::new(Some(source.clone()));
    store
        .put_client(&Client {
            client_id: "remote".into(),
            token_endpoint_auth_method: AuthMethod::PrivateKeyJwt,
            jwks_uri: Some("https://rp.internal/jwks".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let jwt = sign(&es256("k1"), &client_claims("remote"));
    let e = auth(&engine, None, &jwt).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidClient);
    assert_eq!(desc(&e), "could not fetch the client's jwks_uri: dns");
    assert_eq!(e.cause.as_deref(), Some("no such host rp.internal"));
    // Failures are not retried within the refetch interval.
    let _ = auth(&engine, None, &sign(&es256("k1"), &client_claims("remote"))).await;
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
    // Without any source configured.
    engine.jwks = JwksCache::default();
    let e = auth(&engine, None, &sign(&es256("k1"), &client_claims("remote")))
        .await
        .unwrap_err();
    assert_eq!(
        desc(&e),
        "could not fetch the client's jwks_uri: no outbound HTTP client"
    );
}

// --- jwt-bearer grant: service accounts ------------------------------------------------------

struct Sa {
    engine: Engine,
    key_file: String,
    email: String,
}

async fn sa_setup(settings: Settings, impersonate: Vec<String>, scope: Option<&str>) -> Sa {
    let (engine, store) = engine_with(settings).await;
    let new = new_service_account(
        &engine.settings,
        "robot",
        impersonate,
        scope.map(str::to_owned),
        NOW,
    )
    .unwrap();
    store.create_client(&new.client).await.unwrap();
    Sa {
        engine,
        key_file: new.key_file.to_string(),
        email: new.key_file.client_email,
    }
}

/// What google-auth 2.x sends: RS256, kid, iss = client_email, aud = Google, scope claim,
/// one hour, no jti, no nbf.
fn google_claims(email: &str, scope: &str) -> Value {
    json!({"iss": email, "aud": GOOGLE_TOKEN_AUDIENCE, "scope": scope, "iat": NOW, "exp": NOW + 3600})
}

fn sa_sign(key_file: &str, claims: &Value) -> String {
    let kf: keyfile::ServiceAccountKeyFile = serde_json::from_str(key_file).unwrap();
    let key =
        SigningKey::from_pkcs8_pem(Algorithm::RS256, kf.private_key_id.clone(), &kf.private_key)
            .unwrap();
    sign_raw(
        &key,
        json!({"typ": "JWT", "alg": "RS256", "kid": kf.private_key_id}),
        claims,
    )
}

fn grant_params(assertion: &str, extra: &[(&str, &str)]) -> Params {
    let mut pairs = vec![
        ("grant_type".to_owned(), grant_type::JWT_BEARER.to_owned()),
        ("assertion".to_owned(), assertion.to_owned()),
    ];
    pairs.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Params::from_pairs(pairs)
}

async fn grant(
    engine: &Engine,
    client: Option<&Client>,
    assertion: &str,
    extra: &[(&str, &str)],
) -> OAuthResult<TokenResponse> {
    grant_jwt_bearer(
        engine,
        client,
        &grant_params(assertion, extra),
        &RequestContext::default(),
        NOW,
    )
    .await
}

fn token_claims(t: &TokenResponse) -> serde_json::Map<String, Value> {
    decode_compact(&t.access_token, &Limits::default())
        .unwrap()
        .claims()
        .clone()
}

#[track_caller]
fn assert_grant_err(r: OAuthResult<TokenResponse>, code: ErrorCode, want: &str) {
    match r {
        Ok(_) => panic!("accepted; wanted '{want}'"),
        Err(e) => {
            assert_eq!(e.code, code, "{e}");
            assert_eq!(desc(&e), want, "{e}");
        }
    }
}

#[tokio::test]
async fn google_auth_style_assertion_gets_a_token() {
    let sa = sa_setup(settings(), vec![], Some("profile email")).await;
    let jwt = sa_sign(&sa.key_file, &google_claims(&sa.email, ""));
    let t = grant(&sa.engine, None, &jwt, &[]).await.unwrap();
    let claims = token_claims(&t);
    assert_eq!(claims["sub"], json!(sa.email));
    assert_eq!(claims["client_id"], json!(sa.email));
    // scope "" = nothing requested: the account's registered scope.
    assert_eq!(t.scope.as_deref(), Some("profile email"));
    // No jti in google-auth assertions: the same assertion works again (replay bounded by exp).
    assert!(grant(&sa.engine, None, &jwt, &[]).await.is_ok());
    // Also the mint helper (same shape).
    let minted = mint(
        &sa.key_file,
        &MintOptions {
            audience: Some(ISSUER.into()),
            ..Default::default()
        },
        NOW,
    )
    .unwrap();
    assert!(grant(&sa.engine, None, &minted, &[]).await.is_ok());
}

#[tokio::test]
async fn google_audience_only_when_enabled() {
    let mut s = settings();
    s.accept_google_audience = false;
    let sa = sa_setup(s, vec![], None).await;
    let jwt = sa_sign(&sa.key_file, &google_claims(&sa.email, ""));
    assert_grant_err(
        grant(&sa.engine, None, &jwt, &[]).await,
        ErrorCode::InvalidGrant,
        &format!("Audience validation failed: expected {ISSUER} or {TOKEN_EP}"),
    );
    for aud in [ISSUER, TOKEN_EP] {
        let jwt = sa_sign(
            &sa.key_file,
            &with(google_claims(&sa.email, ""), "aud", json!(aud)),
        );
        assert!(grant(&sa.engine, None, &jwt, &[]).await.is_ok(), "{aud}");
    }
    let jwt = sa_sign(
        &sa.key_file,
        &with(
            google_claims(&sa.email, ""),
            "aud",
            json!([ISSUER, TOKEN_EP]),
        ),
    );
    assert_eq!(
        grant(&sa.engine, None, &jwt, &[]).await.unwrap_err().code,
        ErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn scope_claim_empty_missing_and_outside() {
    let sa = sa_setup(settings(), vec![], Some("profile email")).await;
    let e = &sa.engine;
    let t = grant(
        e,
        None,
        &sa_sign(
            &sa.key_file,
            &without(google_claims(&sa.email, ""), "scope"),
        ),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(t.scope.as_deref(), Some("profile email"));
    let t = grant(
        e,
        None,
        &sa_sign(&sa.key_file, &google_claims(&sa.email, "email")),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(t.scope.as_deref(), Some("email"));
    assert_eq!(token_claims(&t)["scope"], json!("email"));
    assert_grant_err(
        grant(
            e,
            None,
            &sa_sign(&sa.key_file, &google_claims(&sa.email, "email groups")),
            &[],
        )
        .await,
        ErrorCode::InvalidScope,
        &format!(
            "scope 'groups' is not allowed for service account '{}'",
            sa.email
        ),
    );
    // The scope parameter wins, within the claim.
    let jwt = sa_sign(&sa.key_file, &google_claims(&sa.email, "profile email"));
    let t = grant(e, None, &jwt, &[("scope", "profile")]).await.unwrap();
    assert_eq!(t.scope.as_deref(), Some("profile"));
    let jwt = sa_sign(&sa.key_file, &google_claims(&sa.email, "profile"));
    assert_eq!(
        grant(e, None, &jwt, &[("scope", "email")])
            .await
            .unwrap_err()
            .code,
        ErrorCode::InvalidScope
    );
}

#[tokio::test]
async fn token_never_outlives_the_assertion() {
    let sa = sa_setup(settings(), vec![], None).await;
    let claims = with(google_claims(&sa.email, ""), "exp", json!(NOW + 100));
    let t = grant(&sa.engine, None, &sa_sign(&sa.key_file, &claims), &[])
        .await
        .unwrap();
    assert_eq!(t.expires_in, 100);
    assert_eq!(token_claims(&t)["exp"], json!(NOW + 100));
    // A one-hour assertion still gets the normal (shorter) token lifetime.
    let t = grant(
        &sa.engine,
        None,
        &sa_sign(&sa.key_file, &google_claims(&sa.email, "")),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(t.expires_in, sa.engine.settings.access_token_ttl);
}

#[tokio::test]
async fn impersonation_only_by_allow_list() {
    let sa = sa_setup(settings(), vec!["*@corp.example".into()], None).await;
    let c = with(
        google_claims(&sa.email, ""),
        "sub",
        json!("alice@corp.example"),
    );
    let t = grant(&sa.engine, None, &sa_sign(&sa.key_file, &c), &[])
        .await
        .unwrap();
    let claims = token_claims(&t);
    assert_eq!(claims["sub"], json!("alice@corp.example"));
    assert_eq!(claims["act"], json!({"sub": sa.email}));
    let c = with(
        google_claims(&sa.email, ""),
        "sub",
        json!("mallory@evil.example"),
    );
    assert_grant_err(
        grant(&sa.engine, None, &sa_sign(&sa.key_file, &c), &[]).await,
        ErrorCode::InvalidGrant,
        "service account may not impersonate 'mallory@evil.example'",
    );
    // sub = the account itself is no impersonation.
    let c = with(google_claims(&sa.email, ""), "sub", json!(sa.email));
    assert!(
        grant(&sa.engine, None, &sa_sign(&sa.key_file, &c), &[])
            .await
            .is_ok()
    );

    let plain = sa_setup(settings(), vec![], None).await;
    let c = with(
        google_claims(&plain.email, ""),
        "sub",
        json!("alice@corp.example"),
    );
    assert_grant_err(
        grant(&plain.engine, None, &sa_sign(&plain.key_file, &c), &[]).await,
        ErrorCode::InvalidGrant,
        "service account may not impersonate 'alice@corp.example'",
    );
}

#[tokio::test]
async fn grant_jti_is_single_use_when_present() {
    let sa = sa_setup(settings(), vec![], None).await;
    let jwt = sa_sign(
        &sa.key_file,
        &with(google_claims(&sa.email, ""), "jti", json!("g1")),
    );
    assert!(grant(&sa.engine, None, &jwt, &[]).await.is_ok());
    assert_grant_err(
        grant(&sa.engine, None, &jwt, &[]).await,
        ErrorCode::InvalidGrant,
        "jti has already been used",
    );
}

#[tokio::test]
async fn grant_failures_are_precise_and_never_5xx() {
    let sa = sa_setup(settings(), vec![], None).await;
    let e = &sa.engine;
    let other = new_service_account(&e.settings, "ghost", vec![], None, NOW).unwrap();
    let ghost = sa_sign(
        &other.key_file.to_string(),
        &google_claims(&other.key_file.client_email, ""),
    );
    assert_grant_err(
        grant(e, None, &ghost, &[]).await,
        ErrorCode::InvalidGrant,
        "unknown issuer",
    );
    let c = with(google_claims(&sa.email, ""), "exp", json!(NOW - 3600));
    assert_grant_err(
        grant(e, None, &sa_sign(&sa.key_file, &c), &[]).await,
        ErrorCode::InvalidGrant,
        "assertion has expired",
    );
    let c = with(
        with(google_claims(&sa.email, ""), "iat", json!(NOW)),
        "exp",
        json!(NOW + 7200),
    );
    assert_grant_err(
        grant(e, None, &sa_sign(&sa.key_file, &c), &[]).await,
        ErrorCode::InvalidGrant,
        "assertion lifetime exceeds 3660 seconds",
    );
    // Signed by another key under the account's name.
    let forged = sign_raw(
        &rsa_key(),
        json!({"alg": "RS256"}),
        &google_claims(&sa.email, ""),
    );
    assert_grant_err(
        grant(e, None, &forged, &[]).await,
        ErrorCode::InvalidGrant,
        "signature invalid",
    );
    for junk in [
        "",
        "a.b.c",
        "x",
        "eyJhbGciOiJSUzI1NiJ9.e30.AAAA",
        &"a".repeat(20_000),
    ] {
        if let Err(err) = grant(e, None, junk, &[]).await {
            assert!(
                !matches!(
                    err.code,
                    ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable
                ),
                "{junk:.20}: {err}"
            );
        }
    }
    assert_eq!(
        grant(e, None, "", &[]).await.unwrap_err().code,
        ErrorCode::InvalidRequest
    );
}

// --- jwt-bearer grant: trusted issuers -------------------------------------------------------

const STS: &str = "https://sts.example.com";

async fn trusted_setup(
    configure: impl FnOnce(&mut TrustedIssuer),
) -> (Engine, MemoryStore, SigningKey) {
    let key = es256("sts-1");
    let mut t = TrustedIssuer::new(STS);
    t.jwks = Some(jwks_of(&[&key]));
    t.allowed_subjects = vec!["svc-*".into(), "alice".into()];
    t.allowed_scopes = vec!["api.read".into(), "api.write".into()];
    t.allowed_clients = AllowedClients::Any;
    configure(&mut t);
    t.validate().unwrap();
    let mut s = settings();
    s.trusted_issuers = vec![t];
    let (engine, store) = engine_with(s).await;
    (engine, store, key)
}

fn sts_claims(sub: &str) -> Value {
    json!({"iss": STS, "sub": sub, "aud": TOKEN_EP, "iat": NOW, "exp": NOW + 300})
}

#[tokio::test]
async fn trusted_issuer_subjects_and_mapping() {
    let (engine, store, key) = trusted_setup(|_| {}).await;
    let t = grant(&engine, None, &sign(&key, &sts_claims("svc-billing")), &[])
        .await
        .unwrap();
    assert_eq!(token_claims(&t)["sub"], json!("svc-billing"));
    assert_eq!(token_claims(&t)["client_id"], json!(STS));
    assert_eq!(t.scope.as_deref(), Some("api.read api.write"));
    assert!(
        grant(&engine, None, &sign(&key, &sts_claims("alice")), &[])
            .await
            .is_ok()
    );
    assert_grant_err(
        grant(&engine, None, &sign(&key, &sts_claims("bob")), &[]).await,
        ErrorCode::InvalidGrant,
        "subject 'bob' is not allowed for this issuer",
    );
    assert_grant_err(
        grant(
            &engine,
            None,
            &sign(&key, &without(sts_claims("alice"), "sub")),
            &[],
        )
        .await,
        ErrorCode::InvalidGrant,
        "sub claim is missing",
    );
    // Account state still applies to asserted identities.
    store
        .create_user(&User {
            username: "alice".into(),
            subject: "u-alice".into(),
            disabled: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_grant_err(
        grant(&engine, None, &sign(&key, &sts_claims("alice")), &[]).await,
        ErrorCode::InvalidGrant,
        "the subject's account is disabled",
    );

    // Subject from another claim; "*" admits any subject.
    let (engine, _, key) = trusted_setup(|t| {
        t.subject_claim = "email".into();
        t.allowed_subjects = vec!["*".into()];
    })
    .await;
    let c = with(
        sts_claims("opaque-123"),
        "email",
        json!("carol@corp.example"),
    );
    let t = grant(&engine, None, &sign(&key, &c), &[]).await.unwrap();
    assert_eq!(token_claims(&t)["sub"], json!("carol@corp.example"));
    assert_grant_err(
        grant(&engine, None, &sign(&key, &sts_claims("x")), &[]).await,
        ErrorCode::InvalidGrant,
        "claim 'email' (the subject) is missing",
    );
}

#[tokio::test]
async fn trusted_issuer_never_accepts_google_audience_and_pins_its_audience() {
    let (engine, _, key) = trusted_setup(|t| t.audience = TrustedAudience::Issuer).await;
    let c = with(sts_claims("alice"), "aud", json!(GOOGLE_TOKEN_AUDIENCE));
    assert_grant_err(
        grant(&engine, None, &sign(&key, &c), &[]).await,
        ErrorCode::InvalidGrant,
        &format!("Audience validation failed: expected {ISSUER}"),
    );
    assert_eq!(
        grant(&engine, None, &sign(&key, &sts_claims("alice")), &[])
            .await
            .unwrap_err()
            .code,
        ErrorCode::InvalidGrant
    );
    let c = with(sts_claims("alice"), "aud", json!(ISSUER));
    assert!(grant(&engine, None, &sign(&key, &c), &[]).await.is_ok());
}

/// RFC 7521 §4.1.1: a refused grant assertion gets `invalid_grant` with a description that
/// names the actual problem — a missing `aud`, a non-string `iss`, or this server named next to
/// another audience (sole-audience policy, RFC 7523 §3: "additional restrictions and policy
/// are at the discretion of the authorization server").
#[tokio::test]
async fn grant_audience_and_issuer_failures_are_described_precisely() {
    let (engine, _, key) = trusted_setup(|_| {}).await;
    let both = format!("{ISSUER} or {TOKEN_EP}");
    for aud in [
        json!([TOKEN_EP, "https://rs.example.com"]),
        json!([ISSUER, TOKEN_EP]),
    ] {
        let c = with(sts_claims("alice"), "aud", aud);
        assert_grant_err(
            grant(&engine, None, &sign(&key, &c), &[]).await,
            ErrorCode::InvalidGrant,
            &format!("Audience validation failed: expected {both} as the only audience"),
        );
    }
    let c = with(
        sts_claims("alice"),
        "aud",
        json!(["https://rs.example.com"]),
    );
    assert_grant_err(
        grant(&engine, None, &sign(&key, &c), &[]).await,
        ErrorCode::InvalidGrant,
        &format!("Audience validation failed: expected {both}"),
    );
    let c = without(sts_claims("alice"), "aud");
    assert_grant_err(
        grant(&engine, None, &sign(&key, &c), &[]).await,
        ErrorCode::InvalidGrant,
        &format!("Audience validation failed: aud claim is missing (expected {both})"),
    );
    let c = with(sts_claims("alice"), "aud", json!({"aud": TOKEN_EP}));
    assert_grant_err(
        grant(&engine, None, &sign(&key, &c), &[]).await,
        ErrorCode::InvalidGrant,
        &format!(
            "Audience validation failed: aud must be a string or an array of strings (expected {both})"
        ),
    );
    for iss in [json!([STS]), json!(1)] {
        let c = with(sts_claims("alice"), "iss", iss);
        assert_grant_err(
            grant(&engine, None, &sign(&key, &c), &[]).await,
            ErrorCode::InvalidGrant,
            "iss claim is malformed",
        );
    }
    let c = without(sts_claims("alice"), "iss");
    assert_grant_err(
        grant(&engine, None, &sign(&key, &c), &[]).await,
        ErrorCode::InvalidGrant,
        "iss claim is missing",
    );
}

/// RFC 7521 §4.2: `client_assertion` holds one JWT. Two JWTs joined by a space split into five
/// segments, but they are not an encrypted JWT, and the description must not say so.
#[tokio::test]
async fn two_jwts_in_one_parameter_are_malformed_not_jwe() {
    let (engine, _, key) = pkjwt_setup(settings()).await;
    let one = sign(&key, &client_claims("app"));
    let two = format!("{one} {}", sign(&key, &client_claims("app")));
    assert_client_err(
        auth(&engine, None, &two).await,
        "malformed JWT: a compact JWS has exactly three segments",
    );
    let (engine, _, key) = trusted_setup(|_| {}).await;
    let one = sign(&key, &sts_claims("alice"));
    assert_grant_err(
        grant(&engine, None, &format!("{one} {one}"), &[]).await,
        ErrorCode::InvalidGrant,
        "malformed JWT: a compact JWS has exactly three segments",
    );
    // A real JWE (five segments, JSON header with enc) is named as such.
    let jwe = format!(
        "{}.a.b.c.d",
        base64url_encode(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)
    );
    assert_grant_err(
        grant(&engine, None, &jwe, &[]).await,
        ErrorCode::InvalidGrant,
        "encrypted JWTs (JWE) are not supported",
    );
}

#[tokio::test]
async fn trusted_issuer_allowed_clients() {
    let app = Client {
        client_id: "gateway".into(),
        ..Default::default()
    };
    let other = Client {
        client_id: "other".into(),
        ..Default::default()
    };
    let (engine, _, key) =
        trusted_setup(|t| t.allowed_clients = AllowedClients::List(vec!["gateway".into()])).await;
    let jwt = sign(&key, &sts_claims("alice"));
    let t = grant(&engine, Some(&app), &jwt, &[]).await.unwrap();
    assert_eq!(token_claims(&t)["client_id"], json!("gateway"));
    assert_grant_err(
        grant(&engine, Some(&other), &jwt, &[]).await,
        ErrorCode::UnauthorizedClient,
        "client 'other' may not present assertions from this issuer",
    );
    assert_grant_err(
        grant(&engine, None, &jwt, &[]).await,
        ErrorCode::InvalidClient,
        "client authentication is required to present assertions from this issuer",
    );
    let (engine, _, key) =
        trusted_setup(|t| t.allowed_clients = AllowedClients::Authenticated).await;
    let jwt = sign(&key, &sts_claims("alice"));
    assert!(grant(&engine, Some(&other), &jwt, &[]).await.is_ok());
    // A public client only names itself: not authenticated.
    let public = Client {
        client_id: "spa".into(),
        token_endpoint_auth_method: AuthMethod::None,
        ..Default::default()
    };
    assert_eq!(
        grant(&engine, Some(&public), &jwt, &[])
            .await
            .unwrap_err()
            .code,
        ErrorCode::InvalidClient
    );
    assert_eq!(
        grant(&engine, None, &jwt, &[]).await.unwrap_err().code,
        ErrorCode::InvalidClient
    );
}

#[tokio::test]
async fn trusted_issuer_scope_lifetime_and_algs() {
    let (engine, _, key) = trusted_setup(|t| {
        t.max_lifetime = Some(120);
        t.algorithms = vec![Algorithm::ES256];
    })
    .await;
    assert_grant_err(
        grant(&engine, None, &sign(&key, &sts_claims("alice")), &[]).await,
        ErrorCode::InvalidGrant,
        "assertion lifetime exceeds 120 seconds",
    );
    let c = with(sts_claims("alice"), "exp", json!(NOW + 100));
    let t = grant(&engine, None, &sign(&key, &c), &[("scope", "api.read")])
        .await
        .unwrap();
    assert_eq!(t.scope.as_deref(), Some("api.read"));
    assert_eq!(t.expires_in, 100);
    assert_grant_err(
        grant(&engine, None, &sign(&key, &c), &[("scope", "api.admin")]).await,
        ErrorCode::InvalidScope,
        "scope 'api.admin' is not allowed for this issuer",
    );
    let rsa_signed = sign(&rsa_key(), &c);
    assert_grant_err(
        grant(&engine, None, &rsa_signed, &[]).await,
        ErrorCode::InvalidGrant,
        "alg RS256 is not allowed for this issuer",
    );
}

fn p256_spki_pem(key: &SigningKey) -> String {
    let jwk = serde_json::to_value(key.public_jwk()).unwrap();
    let x = tessera_jose::b64::base64url_decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = tessera_jose::b64::base64url_decode(jwk["y"].as_str().unwrap()).unwrap();
    let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    der.push(4);
    der.extend(x);
    der.extend(y);
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
}

#[tokio::test]
async fn trusted_issuer_with_a_pem_key() {
    let pem_key = es256("ignored");
    let pem = p256_spki_pem(&pem_key);
    let (engine, _, _) = trusted_setup(|t| {
        t.jwks = None;
        t.public_key_pem = Some(pem.clone());
    })
    .await;
    let jwt = sign_raw(&pem_key, json!({"alg": "ES256"}), &sts_claims("alice"));
    assert!(grant(&engine, None, &jwt, &[]).await.is_ok());
    assert_grant_err(
        grant(&engine, None, &sign(&es256("x"), &sts_claims("alice")), &[]).await,
        ErrorCode::InvalidGrant,
        "signature invalid",
    );
    assert!(
        parse_public_key_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
            .is_err()
    );
}

// --- the CLI's check, the trace, metadata -----------------------------------------------------

#[tokio::test]
async fn inspect_reports_every_check_without_consuming_the_jti() {
    let (engine, _, key) = pkjwt_setup(settings()).await;
    let jwt = sign(
        &key,
        &with(client_claims("app"), "aud", json!("https://wrong.example")),
    );
    let report = inspect(&engine, &jwt, Purpose::ClientAuth, None, None, NOW).await;
    assert!(!report.accepted());
    let aud = report.checks.iter().find(|c| c.name == "aud").unwrap();
    assert!(!aud.ok);
    assert_eq!(aud.actual, "\"https://wrong.example\"");
    assert!(aud.expected.contains(TOKEN_EP));
    assert!(report.checks.iter().any(|c| c.name == "signature" && c.ok));
    let text = report.render();
    assert!(
        text.contains("✗ aud") && text.contains("✓ signature"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "REJECTED: invalid_client: Audience validation failed: expected {ISSUER} or {TOKEN_EP}"
    )));

    let good = sign(&key, &client_claims("app"));
    let report = inspect(&engine, &good, Purpose::ClientAuth, None, None, NOW).await;
    assert!(report.accepted(), "{}", report.render());
    // Dry run: the real request still succeeds afterwards.
    assert!(auth(&engine, None, &good).await.is_ok());
}

#[tokio::test]
async fn trace_records_checks_but_never_the_signature() {
    let (engine, _, key) = pkjwt_setup(settings()).await;
    let jwt = sign(&key, &client_claims("app"));
    let sig = jwt.rsplit('.').next().unwrap().to_owned();
    let trace = crate::trace::TraceHandle::on();
    let ctx = RequestContext {
        trace: trace.clone(),
        ..Default::default()
    };
    authenticate_client(&engine, None, &jwt, Endpoint::Token, &ctx, NOW)
        .await
        .unwrap();
    let steps = trace.steps();
    for name in [
        "check:aud",
        "check:exp",
        "check:jti",
        "check:signature",
        "check:alg",
        "check:jti replay",
    ] {
        assert!(
            steps.iter().any(|s| s.step == name && s.outcome == "ok"),
            "{name} missing"
        );
    }
    let dump = serde_json::to_string(&steps).unwrap();
    assert!(!dump.contains(&sig));
}

#[tokio::test]
async fn discovery_lists_exactly_what_is_accepted() {
    let (engine, _) = engine_with(settings()).await;
    let doc = engine.discovery_document();
    let algs: Vec<String> =
        serde_json::from_value(doc["token_endpoint_auth_signing_alg_values_supported"].clone())
            .unwrap();
    let mut expected: Vec<String> = verify::client_algs(&Client {
        token_endpoint_auth_method: AuthMethod::PrivateKeyJwt,
        ..Default::default()
    })
    .into_iter()
    .chain(verify::client_algs(&Client {
        token_endpoint_auth_method: AuthMethod::ClientSecretJwt,
        ..Default::default()
    }))
    .map(|a| a.to_string())
    .collect();
    let mut got = algs.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert!(!algs.iter().any(|a| a.eq_ignore_ascii_case("none")));
    let methods = doc["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    for m in ["private_key_jwt", "client_secret_jwt"] {
        assert!(methods.contains(&json!(m)));
    }
    assert!(
        doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(grant_type::JWT_BEARER))
    );
}

#[tokio::test]
async fn service_account_key_file_has_what_google_libraries_read() {
    let (engine, store) = engine_with(settings()).await;
    let kf = keyfile::create_service_account(&engine, "robot", vec![], None, NOW)
        .await
        .unwrap();
    let v = serde_json::to_value(&kf).unwrap();
    for k in [
        "type",
        "project_id",
        "private_key_id",
        "private_key",
        "client_email",
        "client_id",
        "auth_uri",
        "token_uri",
        "auth_provider_x509_cert_url",
        "client_x509_cert_url",
        "universe_domain",
    ] {
        assert!(v.get(k).is_some(), "{k}");
    }
    assert_eq!(v["type"], "service_account");
    assert_eq!(v["client_email"], "robot@id.example.com");
    assert_eq!(v["token_uri"], TOKEN_EP);
    assert_eq!(kf.private_key_id.len(), 40);
    assert!(kf.private_key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let c = store
        .get_client("robot@id.example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.grant_types, vec![grant_type::JWT_BEARER.to_owned()]);
    assert!(c.service_account.is_some());
    assert!(
        !c.jwks.unwrap().to_string().contains("\"d\""),
        "no private key stored"
    );
    let dup = keyfile::create_service_account(&engine, "robot", vec![], None, NOW)
        .await
        .unwrap_err();
    assert_eq!(dup.code, ErrorCode::InvalidClientMetadata);
    assert!(
        keyfile::create_service_account(&engine, "bad name", vec![], None, NOW)
            .await
            .is_err()
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Whatever arrives as an assertion, the answer is a 4xx-class error, never a 5xx.
    #[test]
    fn arbitrary_assertions_never_cause_server_errors(s in "[A-Za-z0-9_.=-]{0,300}") {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let (engine, _, _) = pkjwt_setup(settings()).await;
            if let Err(e) = auth(&engine, None, &s).await {
                assert!(!matches!(e.code, ErrorCode::ServerError), "{e}");
            }
            if let Err(e) = grant(&engine, None, &s, &[]).await {
                assert!(!matches!(e.code, ErrorCode::ServerError), "{e}");
            }
        });
    }
}

/// RFC 7592 §2.3: once the client a token was issued to is deleted (or disabled), the token
/// is no longer active; a trusted issuer's token (its `client_id` names the issuer, which is
/// no client) stays active.
#[tokio::test]
async fn tokens_of_a_deleted_client_are_inactive() {
    let sa = sa_setup(settings(), vec![], Some("profile")).await;
    let jwt = sa_sign(&sa.key_file, &google_claims(&sa.email, ""));
    let t = grant(&sa.engine, None, &jwt, &[]).await.unwrap();
    assert!(
        sa.engine
            .verify_access_token(&t.access_token, NOW)
            .await
            .unwrap()
            .is_some()
    );
    sa.engine.store.delete_client(&sa.email).await.unwrap();
    sa.engine.forget_client(&sa.email);
    assert!(
        sa.engine
            .verify_access_token(&t.access_token, NOW)
            .await
            .unwrap()
            .is_none(),
        "the service account is gone"
    );

    let (engine, _, key) = trusted_setup(|_| {}).await;
    let t = grant(&engine, None, &sign(&key, &sts_claims("svc-billing")), &[])
        .await
        .unwrap();
    assert_eq!(token_claims(&t)["client_id"], json!(STS));
    assert!(
        engine
            .verify_access_token(&t.access_token, NOW)
            .await
            .unwrap()
            .is_some(),
        "a trusted issuer's token"
    );
}

/// Issue 8: a service account presenting jwt-bearer grants without client authentication is
/// guarded like a client secret: `threshold` rejected assertions lock its `iss` (per source
/// address), after which even a valid assertion is refused without being checked.
#[tokio::test]
async fn service_account_grants_are_guarded_by_the_client_lockout() {
    let mut s = settings();
    s.client_lockout.threshold = 3;
    let sa = sa_setup(s, vec![], Some("profile")).await;
    let ctx = RequestContext {
        request_id: "sa-lockout".into(),
        source_ip: Some([198, 51, 100, 9].into()),
        ..RequestContext::default()
    };
    let good = sa_sign(&sa.key_file, &google_claims(&sa.email, ""));
    let mut forged = good.clone();
    forged.pop();
    forged.push(if good.ends_with('A') { 'B' } else { 'A' });
    let (good_params, forged_params) = (grant_params(&good, &[]), grant_params(&forged, &[]));
    assert!(sa.engine.token(None, &good_params, &ctx).await.is_ok());
    for _ in 0..3 {
        let e = sa
            .engine
            .token(None, &forged_params, &ctx)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidGrant);
    }
    let e = sa.engine.token(None, &good_params, &ctx).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant, "locked: {e}");
    assert_eq!(desc(&e), "the assertion was rejected");
    let status = sa.engine.lockout_status(&sa.email).await.unwrap();
    assert!(status.iter().any(|r| r.locked), "{status:?}");
    // Another source address is not locked out (client_and_source scope).
    let elsewhere = RequestContext {
        source_ip: Some([203, 0, 113, 1].into()),
        ..ctx.clone()
    };
    assert!(
        sa.engine
            .token(None, &good_params, &elsewhere)
            .await
            .is_ok()
    );
}
