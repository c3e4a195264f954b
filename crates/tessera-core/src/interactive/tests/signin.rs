//! Sign-in through the chain and sessions.

use super::*;
use crate::authn::AccountState;
use crate::interactive::SignInError;

async fn try_sign_in(fx: &Fx, user: &str, pw: &str) -> Result<SignedIn, SignInError> {
    let creds = PasswordCredentials {
        username: user.into(),
        password: pw.into(),
    };
    fx.engine
        .sign_in(&creds, None, &RequestContext::default(), fx.now())
        .await
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let fx = fx().await;
    assert_eq!(
        try_sign_in(&fx, "alice", "nope").await.unwrap_err(),
        SignInError::InvalidCredentials
    );
    assert_eq!(
        try_sign_in(&fx, "mallory", "nope").await.unwrap_err(),
        SignInError::InvalidCredentials
    );
    assert_eq!(
        try_sign_in(&fx, "alice", "").await.unwrap_err(),
        SignInError::InvalidCredentials
    );
}

#[tokio::test]
async fn disabled_account_is_reported_only_with_the_right_password() {
    let fx = fx().await;
    assert_eq!(
        try_sign_in(&fx, "bob", "wrong").await.unwrap_err(),
        SignInError::InvalidCredentials
    );
    assert_eq!(
        try_sign_in(&fx, "bob", "bob-pw").await.unwrap_err(),
        SignInError::AccountState(AccountState::Disabled)
    );
}

#[tokio::test]
async fn an_outage_is_unavailable() {
    let fx = fx().await;
    fx.store.set_unavailable(true);
    assert_eq!(
        try_sign_in(&fx, "alice", "alice-pw").await.unwrap_err(),
        SignInError::Unavailable
    );
}

#[tokio::test]
async fn session_is_server_side_and_expires() {
    let fx = fx().await;
    let s = fx.sign_in("alice", "alice-pw").await;
    assert_eq!(s.cookie.len(), 43);
    assert_ne!(
        s.session.id_hash, s.cookie,
        "the store holds a hash, not the cookie"
    );
    assert_ne!(s.session.sid, s.cookie);
    assert_eq!(s.session.auth_time, NOW);
    assert_eq!(s.session.claims["preferred_username"], "alice");
    assert!(
        fx.engine
            .load_session(Some(&s.cookie), fx.now())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        fx.engine
            .load_session(Some("forged"), fx.now())
            .await
            .unwrap()
            .is_none()
    );
    fx.clock.advance(8 * 3600);
    assert!(
        fx.engine
            .load_session(Some(&s.cookie), fx.now())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn re_sign_in_keeps_sid_and_clients() {
    let fx = fx().await;
    let first = fx.alice().await;
    fx.code(&req("fp", ""), &first).await;
    let old = fx
        .engine
        .load_session(Some(&first), fx.now())
        .await
        .unwrap()
        .unwrap();
    let creds = PasswordCredentials {
        username: "alice".into(),
        password: "alice-pw".into(),
    };
    let again = fx
        .engine
        .sign_in(&creds, Some(&first), &RequestContext::default(), fx.now())
        .await
        .unwrap();
    assert_eq!(again.session.sid, old.sid);
    assert_eq!(again.session.clients, vec!["fp".to_string()]);
    assert!(
        fx.engine
            .load_session(Some(&first), fx.now())
            .await
            .unwrap()
            .is_none(),
        "old cookie is dead"
    );
}
