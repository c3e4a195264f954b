//! A Rust relying party: the `openidconnect` crate (4.x) signs users in against Tessera with
//! discovery, the code flow with PKCE, ID-token validation (signature from the JWKS, `iss`,
//! `aud`, `exp`, `nonce`, `at_hash`), UserInfo and refresh — once per ID-token algorithm
//! Tessera offers (RS256 by default, ES256 and EdDSA per client).

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EmptyAdditionalClaims,
    HttpRequest, HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    RedirectUrl, Scope, TokenResponse, UserInfoClaims,
};
use serde_json::json;

use crate::support::TestServer;
use crate::support::browser::{Browser, query};

const REDIRECT: &str = "http://127.0.0.1:9/rust-rp/cb";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openidconnect_crate_completes_the_code_flow() {
    let server = TestServer::start("").await;
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

    for alg in ["RS256", "ES256", "EdDSA"] {
        let mut c = server
            .create_client(json!({
                "client_name": format!("Rust RP {alg}"),
                "redirect_uris": [REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "client_secret_basic",
                "id_token_signed_response_alg": alg,
            }))
            .await;
        // First party: no consent page in this test (the consent page has its own tests).
        c.client.first_party = true;
        server.store().put_client(&c.client).await.unwrap();

        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(c.client_id.clone()),
            Some(ClientSecret::new(c.secret.clone().unwrap())),
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

        // The user signs in through the real login page.
        let mut b = Browser::new();
        let login_url = b.follow_to(auth_url.as_str(), &server.url("/login")).await;
        let login = b.get(&login_url).await;
        let p = b
            .post(
                &server.url("/login"),
                &[
                    ("tx", &login.field("tx")),
                    ("csrf_token", &login.field("csrf_token")),
                    ("username", "rs-user"),
                    ("password", "rs-password-1"),
                ],
            )
            .await;
        let callback = if p.location().starts_with(REDIRECT) {
            p.location().to_owned()
        } else {
            b.follow_to(&server.url(p.location()), REDIRECT).await
        };
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
            .unwrap_or_else(|e| panic!("{alg}: code exchange: {e:?}"));
        let id_token = tokens.id_token().expect("an ID token");
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &nonce)
            .unwrap_or_else(|e| panic!("{alg}: ID token rejected by the crate: {e:?}"));
        assert_eq!(
            serde_json::to_value(id_token.signing_alg().unwrap()).unwrap(),
            alg,
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
            "{alg}: at_hash"
        );

        let info: UserInfoClaims<EmptyAdditionalClaims, CoreGenderClaim> = client
            .user_info(tokens.access_token().clone(), None)
            .unwrap()
            .request_async(&call)
            .await
            .unwrap_or_else(|e| panic!("{alg}: userinfo: {e:?}"));
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
            .unwrap_or_else(|e| panic!("{alg}: refresh: {e:?}"));
        assert_ne!(
            refreshed.refresh_token().map(|t| t.secret()),
            tokens.refresh_token().map(|t| t.secret()),
            "rotated"
        );
        if let Some(id) = refreshed.id_token() {
            // OIDC Core §12.2: no nonce in a refreshed ID token; same subject.
            let c = id
                .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                .unwrap_or_else(|e| panic!("{alg}: refreshed ID token: {e:?}"));
            assert_eq!(c.subject(), claims.subject());
        }
    }
}
