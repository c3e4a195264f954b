//! A Rust relying party: the `openidconnect` crate (4.x) registers itself (RFC 7591, with an
//! initial access token) and signs a user in against Tessera with discovery, the code flow
//! with PKCE through the real login and consent pages, ID-token validation (signature from the
//! JWKS, `iss`, `aud`, `exp`, `nonce`, `at_hash`), UserInfo and refresh — once per ID-token
//! algorithm Tessera offers (RS256 by default, ES256 and, with an EdDSA key configured in
//! `keys.algs`, EdDSA per client).

use crate::support::TestServer;
use crate::support::browser::{Browser, query};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreClientRegistrationRequest,
    CoreGenderClaim, CoreGrantType, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AuthorizationCode, CsrfToken, EmptyAdditionalClaims, HttpRequest,
    HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope,
    TokenResponse, UserInfoClaims,
};

const REDIRECT: &str = "http://127.0.0.1:9/rust-rp/cb";
const INITIAL_ACCESS_TOKEN: &str = "rust-rp-initial-access-token-0123456789";

/// The crate's HTTP client contract, served by the workspace's reqwest (no redirects followed,
/// as the crate requires).
async fn send(http: reqwest::Client, req: HttpRequest) -> Result<HttpResponse, reqwest::Error> {
    let (parts, body) = req.into_parts();
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
        .expect("an HTTP method the crate produced");
    let mut out = http.request(method, parts.uri.to_string()).body(body);
    for (name, value) in &parts.headers {
        out = out.header(name.as_str(), value.as_bytes());
    }
    let resp = out.send().await?;
    let mut b = openidconnect::http::Response::builder().status(resp.status().as_u16());
    for (name, value) in resp.headers() {
        b = b.header(name.as_str(), value.as_bytes());
    }
    Ok(b.body(resp.bytes().await?.to_vec())
        .expect("response parts"))
}

/// The user's part: the login page, then the consent page (a registered client is third
/// party); returns the redirect to the client.
async fn sign_in(b: &mut Browser, server: &TestServer, auth_url: &str) -> String {
    let login_url = b.follow_to(auth_url, &server.url("/login")).await;
    let login = b.get(&login_url).await;
    let next = b
        .submit_login(&login, "rs-user", "rs-password-1")
        .await
        .location()
        .to_owned();
    if next.starts_with(REDIRECT) {
        return next;
    }
    assert!(next.starts_with(&server.url("/consent")), "{next}");
    let consent = b.get(&next).await;
    let next = b
        .submit_consent(&consent, "allow")
        .await
        .location()
        .to_owned();
    if next.starts_with(REDIRECT) {
        next
    } else {
        b.follow_to(&next, REDIRECT).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openidconnect_crate_registers_and_completes_the_code_flow() {
    let server = TestServer::start(&format!(
        "[registration]\ninitial_access_token = \"{INITIAL_ACCESS_TOKEN}\"\n\
         [keys]\nalgs = [\"ES256\", \"RS256\", \"EdDSA\"]\n"
    ))
    .await;
    server.create_user("rs-user", "rs-password-1").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let call = |req: HttpRequest| send(http.clone(), req);

    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(server.base_url.clone()).unwrap(),
        &call,
    )
    .await
    .expect("discovery document and JWKS accepted by the crate");
    let registration_endpoint = metadata
        .registration_endpoint()
        .expect("registration_endpoint advertised")
        .clone();

    for (alg, name) in [
        (CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, "RS256"),
        (CoreJwsSigningAlgorithm::EcdsaP256Sha256, "ES256"),
        (CoreJwsSigningAlgorithm::EdDsa, "EdDSA"),
    ] {
        let registered = CoreClientRegistrationRequest::new(
            vec![RedirectUrl::new(REDIRECT.into()).unwrap()],
            Default::default(),
        )
        .set_grant_types(Some(vec![
            CoreGrantType::AuthorizationCode,
            CoreGrantType::RefreshToken,
        ]))
        .set_token_endpoint_auth_method(Some(CoreClientAuthMethod::ClientSecretBasic))
        .set_id_token_signed_response_alg(Some(alg))
        .set_initial_access_token(Some(AccessToken::new(INITIAL_ACCESS_TOKEN.into())))
        .register_async(&registration_endpoint, &call)
        .await
        .unwrap_or_else(|e| panic!("{name}: registration: {e:?}"));
        assert_eq!(
            registered
                .id_token_signed_response_alg()
                .map(|a| serde_json::to_value(a).unwrap()),
            Some(name.into()),
            "the registered metadata is echoed"
        );

        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            registered.client_id().clone(),
            registered.client_secret().cloned(),
        )
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (auth_url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("offline_access".into()))
            .set_pkce_challenge(challenge)
            .url();

        let mut b = Browser::new();
        let callback = sign_in(&mut b, &server, auth_url.as_str()).await;
        assert_eq!(
            query(&callback, "state").as_deref(),
            Some(state.secret().as_str())
        );
        assert_eq!(
            query(&callback, "iss").as_deref(),
            Some(server.base_url.as_str())
        );
        let code = query(&callback, "code").expect("code");

        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&call)
            .await
            .unwrap_or_else(|e| panic!("{name}: code exchange: {e:?}"));
        let id_token = tokens.id_token().expect("an ID token");
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &nonce)
            .unwrap_or_else(|e| panic!("{name}: ID token rejected by the crate: {e:?}"));
        assert_eq!(
            serde_json::to_value(id_token.signing_alg().unwrap()).unwrap(),
            name,
            "the client's id_token_signed_response_alg"
        );
        assert_eq!(claims.issuer().as_str(), server.base_url);
        assert_eq!(
            claims.preferred_username().map(|u| u.as_str()),
            Some("rs-user")
        );
        assert!(claims.auth_time().is_some());
        // OIDC Core §3.1.3.6: at_hash binds the access token to the ID token.
        let expected = AccessTokenHash::from_token(
            tokens.access_token(),
            id_token.signing_alg().unwrap(),
            id_token.signing_key(&verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(
            claims.access_token_hash(),
            Some(&expected),
            "{name}: at_hash"
        );

        let info: UserInfoClaims<EmptyAdditionalClaims, CoreGenderClaim> = client
            .user_info(tokens.access_token().clone(), None)
            .unwrap()
            .request_async(&call)
            .await
            .unwrap_or_else(|e| panic!("{name}: userinfo: {e:?}"));
        assert_eq!(info.subject(), claims.subject());
        assert_eq!(
            info.preferred_username().map(|u| u.as_str()),
            Some("rs-user")
        );

        let refreshed = client
            .exchange_refresh_token(tokens.refresh_token().expect("offline_access"))
            .unwrap()
            .request_async(&call)
            .await
            .unwrap_or_else(|e| panic!("{name}: refresh: {e:?}"));
        assert_ne!(
            refreshed.refresh_token().map(|t| t.secret()),
            tokens.refresh_token().map(|t| t.secret()),
            "rotated"
        );
        if let Some(id) = refreshed.id_token() {
            // OIDC Core §12.2: no nonce in a refreshed ID token; same subject.
            let c = id
                .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                .unwrap_or_else(|e| panic!("{name}: refreshed ID token: {e:?}"));
            assert_eq!(c.subject(), claims.subject());
        }
    }
}
