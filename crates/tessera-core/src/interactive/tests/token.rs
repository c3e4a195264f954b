//! Code exchange, ID tokens, refresh rotation and UserInfo.

use super::*;
use crate::error::ErrorCode;
use crate::interactive::id_token::at_hash;
use crate::interactive::userinfo::BearerSource;

async fn fp_code(fx: &Fx, extra: &str) -> String {
    let cookie = fx.alice().await;
    fx.code(&req("fp", extra), &cookie).await
}

fn offline_req(client: &str) -> Params {
    q(&format!(
        "client_id={client}&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid+offline_access+email&nonce=n&code_challenge={CHALLENGE}&code_challenge_method=S256"
    ))
}

#[tokio::test]
async fn code_exchange_issues_a_complete_id_token() {
    let fx = fx().await;
    let code = fp_code(&fx, "").await;
    let t = fx.exchange("fp", &code).await.unwrap();
    assert_eq!(t.token_type, "Bearer");
    assert!(
        t.refresh_token.is_none(),
        "no offline_access, no refresh token"
    );
    let id = t.id_token.unwrap();
    assert_eq!(header_alg(&id), Algorithm::RS256, "RS256 by default");
    let c = claims(&id);
    assert_eq!(c["iss"], "https://id.example");
    assert_eq!(c["sub"], "sub-alice");
    assert_eq!(c["aud"], "fp");
    assert_eq!(c["azp"], "fp");
    assert_eq!(c["nonce"], "n0nce");
    assert_eq!(c["auth_time"], NOW);
    assert_eq!(c["iat"], NOW);
    assert_eq!(c["exp"], NOW + 3600);
    assert_eq!(c["amr"], serde_json::json!(["pwd"]));
    assert!(c["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(c["at_hash"], at_hash(&t.access_token, Algorithm::RS256));
    // Scope claims: profile, email, groups.
    assert_eq!(c["preferred_username"], "alice");
    assert_eq!(c["name"], "Alice Liddell");
    assert_eq!(c["email"], "alice@example.com");
    assert_eq!(c["email_verified"], true);
    assert_eq!(c["groups"], serde_json::json!(["staff", "admins"]));
    assert!(
        !c.keys().any(|k| k.starts_with("_tessera")),
        "internal markers never leak"
    );
    // The access token carries the grant id.
    let at = claims(&t.access_token);
    assert!(at["gid"].as_str().is_some());
}

/// RFC 6749 §4.1: without `openid` the request is plain OAuth 2.0: the code yields an access
/// token only (a refresh token with `offline_access`), and UserInfo refuses that token.
#[tokio::test]
async fn plain_oauth_code_flow_has_no_id_token() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let p = |scope: &str| {
        q(&format!(
            "client_id=fp&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope={scope}&state=s&code_challenge={CHALLENGE}&code_challenge_method=S256"
        ))
    };
    let code = fx.code(&p("email"), &cookie).await;
    let t = fx.exchange("fp", &code).await.unwrap();
    assert!(t.id_token.is_none(), "no openid, no ID token");
    assert!(t.refresh_token.is_none());
    assert_eq!(t.scope.as_deref(), Some("email"));
    let at = claims(&t.access_token);
    assert_eq!(at["sub"], "sub-alice");
    assert_eq!(at["scope"], "email");
    // OIDC Core §5.3.1: UserInfo needs an openid token; RFC 6750 §3.1: insufficient_scope.
    let e = fx
        .engine
        .userinfo(BearerSource::Header(&t.access_token), fx.now())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InsufficientScope);

    let code = fx.code(&p("email+offline_access"), &cookie).await;
    let t = fx.exchange("fp", &code).await.unwrap();
    assert!(t.id_token.is_none());
    let rt = t
        .refresh_token
        .expect("offline_access yields a refresh token");
    let r = fx
        .token(
            "fp",
            &format!("grant_type=refresh_token&refresh_token={rt}"),
        )
        .await
        .unwrap();
    assert!(
        r.id_token.is_none(),
        "refreshing a plain OAuth grant: still no ID token"
    );
    assert!(r.refresh_token.is_some());
}

#[test]
fn at_hash_is_the_left_half_of_sha256() {
    // OIDC Core §3.1.3.6 example values (from the spec's appendix A.3 token).
    let token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
    assert_eq!(at_hash(token, Algorithm::RS256), "77QmUPtjPfzWtF2AnpK9RQ");
    assert_eq!(at_hash(token, Algorithm::EdDSA).len(), 43);
}

#[tokio::test]
async fn scopes_decide_the_claims() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let p = q(&format!(
        "client_id=fp&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=S256"
    ));
    let code = fx.code(&p, &cookie).await;
    let c = claims(&fx.exchange("fp", &code).await.unwrap().id_token.unwrap());
    for k in ["email", "name", "groups", "preferred_username", "nonce"] {
        assert!(!c.contains_key(k), "{k} must not be released");
    }
}

#[tokio::test]
async fn per_client_id_token_alg() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let code = fx.code(&req("es", ""), &cookie).await;
    let t = fx.exchange("es", &code).await.unwrap();
    assert_eq!(header_alg(t.id_token.as_ref().unwrap()), Algorithm::ES256);
}

#[tokio::test]
async fn code_reuse_fails_and_revokes_the_tokens_issued_from_it() {
    let fx = fx().await;
    let code = fp_code(&fx, "").await;
    let t = fx.exchange("fp", &code).await.unwrap();
    assert!(
        fx.engine
            .verify_access_token(&t.access_token, fx.now())
            .await
            .unwrap()
            .is_some()
    );
    let e = fx.exchange("fp", &code).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
    // RFC 6749 §4.1.2: the first exchange's access token is now inactive.
    assert!(
        fx.engine
            .verify_access_token(&t.access_token, fx.now())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn code_reuse_also_kills_the_refresh_token() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let code = fx.code(&offline_req("fp"), &cookie).await;
    let t = fx.exchange("fp", &code).await.unwrap();
    let rt = t.refresh_token.unwrap();
    fx.exchange("fp", &code).await.unwrap_err();
    let e = fx
        .token(
            "fp",
            &format!("grant_type=refresh_token&refresh_token={rt}"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn codes_expire() {
    let fx = fx().await;
    let code = fp_code(&fx, "").await;
    fx.clock.advance(61);
    assert_eq!(
        fx.exchange("fp", &code).await.unwrap_err().code,
        ErrorCode::InvalidGrant
    );
    assert_eq!(
        fx.exchange("fp", "no-such-code").await.unwrap_err().code,
        ErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn code_is_bound_to_its_client() {
    let fx = fx().await;
    let code = fp_code(&fx, "").await;
    let e = fx.exchange("es", &code).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
    // Presented by another client, the code is burnt for its own client too.
    assert_eq!(
        fx.exchange("fp", &code).await.unwrap_err().code,
        ErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn redirect_uri_must_be_identical() {
    let fx = fx().await;
    let code = fp_code(&fx, "").await;
    let e = fx
        .token("fp", &format!("grant_type=authorization_code&code={code}&redirect_uri=https%3A%2F%2Frp.example%2Fother&code_verifier={VERIFIER}"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
    let code = fp_code(&fx, "").await;
    let e = fx
        .token(
            "fp",
            &format!("grant_type=authorization_code&code={code}&code_verifier={VERIFIER}"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::InvalidGrant,
        "omitted although the request carried it"
    );
}

#[tokio::test]
async fn redirect_uri_may_be_omitted_when_the_request_omitted_it() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    // RFC 6749 §4.1.1 / §4.1.3: optional in plain OAuth 2.0 (OpenID Connect requires it at the
    // authorization endpoint, OIDC Core §3.1.2.1).
    let p = q("client_id=fp&response_type=code&scope=profile");
    let code = fx.code(&p, &cookie).await;
    fx.token("fp", &format!("grant_type=authorization_code&code={code}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn pkce_verifier_checks() {
    let fx = fx().await;
    let base = "grant_type=authorization_code&redirect_uri=https%3A%2F%2Frp.example%2Fcb";
    let wrong = "x".repeat(43);
    let cases = [
        format!("code_verifier={wrong}"),
        String::new(),
        "code_verifier=too-short".into(),
        format!("code_verifier={VERIFIER}%21"),
    ];
    for extra in cases {
        let code = fp_code(&fx, "").await;
        let e = fx
            .token("fp", &format!("{base}&code={code}&{extra}"))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidGrant, "{extra}");
    }
    // A verifier without a challenge: refused (downgrade).
    let cookie = fx.alice().await;
    let code = fx.code(&q("client_id=fp&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid"), &cookie).await;
    let e = fx
        .token(
            "fp",
            &format!("{base}&code={code}&code_verifier={VERIFIER}"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn offline_access_needs_consent_and_the_refresh_grant() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    // First-party: consented by configuration.
    let code = fx.code(&offline_req("fp"), &cookie).await;
    let t = fx.exchange("fp", &code).await.unwrap();
    assert!(t.refresh_token.is_some());
    assert!(t.scope.unwrap().contains("offline_access"));
    // A client not allowed to refresh: offline_access is dropped.
    let code = fx.code(&offline_req("norefresh"), &cookie).await;
    let t = fx.exchange("norefresh", &code).await.unwrap();
    assert!(t.refresh_token.is_none());
    assert!(!t.scope.unwrap().contains("offline_access"));
    // Third party: after the consent page.
    let tx = fx.tx(fx
        .authorize(&offline_req("web"), Some(&cookie))
        .await
        .unwrap());
    let Step::Redirect(url) = fx
        .engine
        .consent(tx, Some(&cookie), true, fx.now())
        .await
        .unwrap()
    else {
        panic!()
    };
    let t = fx
        .exchange("web", &param(&url, "code").unwrap())
        .await
        .unwrap();
    assert!(t.refresh_token.is_some());
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let code = fx.code(&offline_req("fp"), &cookie).await;
    let t0 = fx.exchange("fp", &code).await.unwrap();
    let rt0 = t0.refresh_token.unwrap();
    fx.clock.advance(100);
    let t1 = fx
        .token(
            "fp",
            &format!("grant_type=refresh_token&refresh_token={rt0}"),
        )
        .await
        .unwrap();
    let rt1 = t1.refresh_token.clone().unwrap();
    assert_ne!(rt0, rt1, "rotated");
    let id = claims(t1.id_token.as_ref().unwrap());
    assert_eq!(id["auth_time"], NOW, "auth_time of the original sign-in");
    assert!(!id.contains_key("nonce"));
    assert_eq!(id["iat"], NOW + 100);
    // Reuse of the spent token: invalid_grant, and the whole family dies.
    let e = fx
        .token(
            "fp",
            &format!("grant_type=refresh_token&refresh_token={rt0}"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
    let e = fx
        .token(
            "fp",
            &format!("grant_type=refresh_token&refresh_token={rt1}"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
    assert!(
        fx.engine
            .verify_access_token(&t1.access_token, fx.now())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn refresh_scope_may_only_narrow() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let code = fx.code(&offline_req("fp"), &cookie).await;
    let rt = fx
        .exchange("fp", &code)
        .await
        .unwrap()
        .refresh_token
        .unwrap();
    let e = fx
        .token(
            "fp",
            &format!("grant_type=refresh_token&refresh_token={rt}&scope=openid+profile"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidScope);
    let t = fx
        .token(
            "fp",
            &format!("grant_type=refresh_token&refresh_token={rt}&scope=openid"),
        )
        .await
        .unwrap();
    assert_eq!(t.scope.as_deref(), Some("openid"));
    // The new refresh token keeps the original scope (RFC 6749 §6).
    let rt2 = t.refresh_token.unwrap();
    let t = fx
        .token(
            "fp",
            &format!("grant_type=refresh_token&refresh_token={rt2}"),
        )
        .await
        .unwrap();
    assert!(t.scope.unwrap().contains("email"));
}

#[tokio::test]
async fn refresh_token_is_bound_to_its_client() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let code = fx.code(&offline_req("fp"), &cookie).await;
    let rt = fx
        .exchange("fp", &code)
        .await
        .unwrap()
        .refresh_token
        .unwrap();
    let e = fx
        .token(
            "es",
            &format!("grant_type=refresh_token&refresh_token={rt}"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
    // Still usable by its own client.
    fx.token(
        "fp",
        &format!("grant_type=refresh_token&refresh_token={rt}"),
    )
    .await
    .unwrap();
    let e = fx
        .token("fp", "grant_type=refresh_token&refresh_token=unknown")
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
    let e = fx
        .token("fp", "grant_type=refresh_token")
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn userinfo_returns_scoped_claims() {
    let fx = fx().await;
    let code = fp_code(&fx, "").await;
    let t = fx.exchange("fp", &code).await.unwrap();
    let u = fx
        .engine
        .userinfo(BearerSource::Header(&t.access_token), fx.now())
        .await
        .unwrap();
    assert_eq!(u["sub"], "sub-alice");
    assert_eq!(u["email"], "alice@example.com");
    assert_eq!(u["preferred_username"], "alice");
    assert_eq!(u["groups"], serde_json::json!(["staff", "admins"]));
    assert!(u.get("client_id").is_none() && u.get("gid").is_none());
    let u = fx
        .engine
        .userinfo(BearerSource::Body(&t.access_token), fx.now())
        .await
        .unwrap();
    assert_eq!(u["sub"], "sub-alice");
}

#[tokio::test]
async fn userinfo_errors_follow_rfc6750() {
    use crate::error::AuthScheme;
    let fx = fx().await;
    let e = fx
        .engine
        .userinfo(BearerSource::Header("garbage"), fx.now())
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.challenge),
        (ErrorCode::InvalidToken, Some(AuthScheme::Bearer))
    );
    // Expired.
    let code = fp_code(&fx, "").await;
    let t = fx.exchange("fp", &code).await.unwrap();
    fx.clock.advance(901);
    let e = fx
        .engine
        .userinfo(BearerSource::Header(&t.access_token), fx.now())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidToken);
    // A token without openid (client credentials style).
    let (at, _) = fx
        .engine
        .issue_access_token(
            crate::oauth::issue::AccessTokenRequest {
                subject: "svc".into(),
                client_id: "cc".into(),
                scope: "api".into(),
                ..Default::default()
            },
            fx.now(),
        )
        .unwrap();
    let e = fx
        .engine
        .userinfo(BearerSource::Header(&at), fx.now())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InsufficientScope);
    // Header parsing.
    use crate::interactive::userinfo::bearer_from_header;
    assert_eq!(bearer_from_header("Bearer abc").unwrap(), "abc");
    assert_eq!(bearer_from_header("bearer  abc ").unwrap(), "abc");
    // RFC 6750 §3.1: another scheme is a request without credentials: a bare challenge.
    let e = bearer_from_header("Basic abc").unwrap_err();
    assert_eq!(
        (e.code, e.description.is_none(), e.challenge),
        (ErrorCode::InvalidRequest, true, Some(AuthScheme::Bearer))
    );
    // "Bearer" without a token is malformed (invalid_request, with a description).
    for v in ["Bearer", "Bearer   "] {
        let e = bearer_from_header(v).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{v}");
        assert!(e.description.is_some(), "{v}");
    }
}

/// RFC 7662 §2.2: `token_type` names an access token type (RFC 6749 §7.1); a refresh token is
/// described without one, and only to the client it was issued to.
#[tokio::test]
async fn refresh_token_introspection_has_no_token_type() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let code = fx.code(&offline_req("fp"), &cookie).await;
    let t = fx.exchange("fp", &code).await.unwrap();
    let refresh = t.refresh_token.unwrap();
    let fp = fx.store.get_client("fp").await.unwrap().unwrap();
    let body = q(&format!("token={refresh}"));
    let v = fx.engine.introspect(&fp, &body, fx.now()).await.unwrap();
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["client_id"], "fp");
    assert!(v.get("token_type").is_none(), "{v}");
    let web = fx.store.get_client("web").await.unwrap().unwrap();
    let v = fx.engine.introspect(&web, &body, fx.now()).await.unwrap();
    assert_eq!(v, serde_json::json!({"active": false}));
    // The access token keeps its type.
    let body = q(&format!("token={}", t.access_token));
    let v = fx.engine.introspect(&web, &body, fx.now()).await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
}

/// Disabling a local user stops refresh: `invalid_grant`, and the grant (with its access
/// tokens) is revoked, so enabling the account again does not revive the family.
#[tokio::test]
async fn a_disabled_user_cannot_refresh() {
    use crate::store::UserStore as _;
    let fx = fx().await;
    let cookie = fx.alice().await;
    let code = fx.code(&offline_req("fp"), &cookie).await;
    let t = fx.exchange("fp", &code).await.unwrap();
    let rt = t.refresh_token.clone().unwrap();
    let mut alice = fx.store.get_user("alice").await.unwrap().unwrap();
    alice.disabled = true;
    assert!(fx.store.update_user(&alice).await.unwrap());
    let refresh = format!("grant_type=refresh_token&refresh_token={rt}");
    let e = fx.token("fp", &refresh).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
    assert_eq!(
        e.description.as_deref(),
        Some("the user's account is disabled")
    );
    assert!(
        fx.engine
            .verify_access_token(&t.access_token, fx.now())
            .await
            .unwrap()
            .is_none(),
        "the grant's access token is revoked too"
    );
    alice.disabled = false;
    assert!(fx.store.update_user(&alice).await.unwrap());
    let e = fx.token("fp", &refresh).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant);
}
