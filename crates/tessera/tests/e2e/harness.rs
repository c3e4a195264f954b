//! The in-process harness itself: what every protocol test relies on.

use serde_json::Value;

use crate::support::{Options, TestServer, jwt_parts};

#[tokio::test]
async fn serves_discovery_jwks_and_client_credentials_tokens() {
    let server = TestServer::start("").await;
    let discovery = server.get_json("/.well-known/openid-configuration").await;
    assert_eq!(discovery["issuer"], Value::String(server.base_url.clone()));

    let jwks = server.get_json("/jwks.json").await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(
        kids.len() >= 2,
        "ES256 and RS256 keys are created at start: {jwks}"
    );

    let client = server.create_service_client().await;
    let resp = server.client_credentials(&client, &[]).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let (header, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    assert!(kids.contains(&header["kid"].as_str().unwrap()));
    assert_eq!(claims["client_id"], Value::String(client.client_id.clone()));
    assert_eq!(claims["iss"], Value::String(server.base_url.clone()));
    server.shutdown().await;
}

#[tokio::test]
async fn configured_clients_are_applied_at_start() {
    let server = TestServer::start(
        r#"
[tokens]
access_token_ttl = 120

[[clients]]
client_id = "jira"
client_secret = "jira-secret-for-tests-0123456789abcdef"
grant_types = ["client_credentials"]
"#,
    )
    .await;
    let resp = server
        .post_form(
            "/token",
            Some(("jira", "jira-secret-for-tests-0123456789abcdef")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["expires_in"], 120);
    let stored = server.store().get_client("jira").await.unwrap().unwrap();
    assert_eq!(stored.origin, tessera_core::model::ClientOrigin::Config);
}

#[tokio::test]
async fn runs_on_postgres_when_available() {
    let Some(server) = TestServer::start_with(Options {
        postgres: true,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    assert_eq!(server.store().backend(), "postgres");
    let client = server.create_service_client().await;
    assert_eq!(server.client_credentials(&client, &[]).await.status(), 200);
}
