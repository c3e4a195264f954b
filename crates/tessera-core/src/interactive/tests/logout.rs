//! RP-Initiated Logout and Back-Channel Logout.

use super::*;
use crate::interactive::logout::{BACKCHANNEL_LOGOUT_EVENT, LOGOUT_TOKEN_TYP};

async fn id_token_for(fx: &Fx, client: &str, cookie: &str) -> String {
    let code = fx.code(&req(client, ""), cookie).await;
    fx.exchange(client, &code).await.unwrap().id_token.unwrap()
}

#[tokio::test]
async fn valid_hint_and_registered_redirect() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let hint = id_token_for(&fx, "fp", &cookie).await;
    fx.clock.advance(7200); // an expired hint is still a hint
    let p = q(&format!(
        "id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Frp.example%2Fbye&state=xyz"
    ));
    let r = fx.engine.end_session_request(&p, fx.now()).await.unwrap();
    assert_eq!(r.client_id.as_deref(), Some("fp"));
    assert_eq!(r.hint_subject.as_deref(), Some("sub-alice"));
    let session = fx
        .engine
        .load_session(Some(&cookie), fx.now())
        .await
        .unwrap();
    assert!(!fx.engine.logout_needs_confirmation(&r, session.as_ref()));
    assert_eq!(
        fx.engine.post_logout_url(&r).as_deref(),
        Some("https://rp.example/bye?state=xyz")
    );
}

#[tokio::test]
async fn unverified_redirects_are_refused() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let hint = id_token_for(&fx, "fp", &cookie).await;
    let now = fx.now();
    let cases = [
        // not registered
        format!("id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F"),
        // no client to match against
        "post_logout_redirect_uri=https%3A%2F%2Frp.example%2Fbye".to_owned(),
        // client_id contradicts the hint
        format!("id_token_hint={hint}&client_id=web"),
        // not our token
        "id_token_hint=eyJhbGciOiJSUzI1NiJ9.e30.c2ln".to_owned(),
        // unknown client
        "client_id=nobody".to_owned(),
    ];
    for c in cases {
        let e = fx
            .engine
            .end_session_request(&q(&c), now)
            .await
            .unwrap_err();
        assert_eq!(e.code, crate::error::ErrorCode::InvalidRequest, "{c}");
    }
    // client_id alone identifies the client.
    let r = fx
        .engine
        .end_session_request(
            &q("client_id=web&post_logout_redirect_uri=https%3A%2F%2Frp.example%2Fbye"),
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        r.post_logout_redirect_uri.as_deref(),
        Some("https://rp.example/bye")
    );
}

#[tokio::test]
async fn without_a_matching_hint_the_user_confirms() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let session = fx
        .engine
        .load_session(Some(&cookie), fx.now())
        .await
        .unwrap();
    let r = fx
        .engine
        .end_session_request(&q(""), fx.now())
        .await
        .unwrap();
    assert!(fx.engine.logout_needs_confirmation(&r, session.as_ref()));
    assert!(
        !fx.engine.logout_needs_confirmation(&r, None),
        "nothing to end, nothing to confirm"
    );
    assert!(fx.engine.post_logout_url(&r).is_none());
}

#[tokio::test]
async fn logout_ends_the_session_and_notifies_clients() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let id = id_token_for(&fx, "fp", &cookie).await;
    fx.code(&req("es", ""), &cookie).await;
    let out = fx.engine.logout(Some(&cookie), fx.now()).await.unwrap();
    assert_eq!(out.notified, vec!["fp".to_string(), "es".to_string()]);
    assert!(
        fx.engine
            .load_session(Some(&cookie), fx.now())
            .await
            .unwrap()
            .is_none()
    );
    let sent = fx.sent.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].uri, "https://rp.example/fp/bcl");
    let jwt = decode_compact(&sent[0].logout_token, &Limits::default()).unwrap();
    assert_eq!(jwt.header().typ.as_deref(), Some(LOGOUT_TOKEN_TYP));
    let c = jwt.claims();
    assert_eq!(c["iss"], "https://id.example");
    assert_eq!(c["aud"], "fp");
    assert_eq!(c["sub"], "sub-alice");
    assert_eq!(c["sid"], claims(&id)["sid"], "same sid as the ID token");
    assert!(c["events"][BACKCHANNEL_LOGOUT_EVENT].is_object());
    assert!(c.get("nonce").is_none());
    assert!(c["jti"].as_str().is_some());
    assert_eq!(
        header_alg(&sent[1].logout_token),
        Algorithm::ES256,
        "the client's ID token alg"
    );
    // Logging out again is a no-op.
    let out = fx.engine.logout(Some(&cookie), fx.now()).await.unwrap();
    assert!(out.ended.is_none());
}

#[tokio::test]
async fn a_hint_from_another_session_of_the_same_user_is_confirmed() {
    // RP-Initiated Logout 1.0 §2: the OP MUST ask when the ID token does not belong to the
    // current OP session.
    let fx = fx().await;
    let other_browser = fx.alice().await;
    let hint = id_token_for(&fx, "fp", &other_browser).await;
    let this_browser = fx.alice().await;
    let session = fx
        .engine
        .load_session(Some(&this_browser), fx.now())
        .await
        .unwrap();
    let r = fx
        .engine
        .end_session_request(&q(&format!("id_token_hint={hint}")), fx.now())
        .await
        .unwrap();
    assert_eq!(r.hint_subject.as_deref(), Some("sub-alice"));
    assert!(fx.engine.logout_needs_confirmation(&r, session.as_ref()));
    let own = fx
        .engine
        .load_session(Some(&other_browser), fx.now())
        .await
        .unwrap();
    assert!(!fx.engine.logout_needs_confirmation(&r, own.as_ref()));
}

#[tokio::test]
async fn an_access_token_is_not_an_id_token_hint() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let code = fx.code(&req("fp", ""), &cookie).await;
    let at = fx.exchange("fp", &code).await.unwrap().access_token;
    let e = fx
        .engine
        .end_session_request(&q(&format!("id_token_hint={at}&client_id=fp")), fx.now())
        .await
        .unwrap_err();
    assert_eq!(e.code, crate::error::ErrorCode::InvalidRequest);
}
