//! The authorization endpoint: every check, and the session/consent decision.

use super::*;
use crate::error::ErrorCode;
use crate::interactive::AuthzCode;

async fn err(fx: &Fx, p: &Params) -> AuthorizeError {
    fx.authorize(p, None).await.expect_err("expected an error")
}

/// The error must be shown on a page, never redirected.
async fn page_error(p: &str) -> AuthorizeError {
    let fx = fx().await;
    let e = err(&fx, &q(p)).await;
    assert!(e.redirect.is_none(), "must not redirect: {e:?}");
    assert!(e.redirect_url("https://id.example").is_none());
    e
}

/// The error must be redirected to the client, with state and iss.
async fn redirected(p: Params) -> (AuthorizeError, String) {
    let fx = fx().await;
    let e = err(&fx, &p).await;
    let url = e
        .redirect_url("https://id.example")
        .expect("redirected error");
    assert!(url.starts_with("https://rp.example/cb?"), "{url}");
    assert_eq!(param(&url, "error").as_deref(), Some(e.error()));
    assert!(param(&url, "error_description").is_some());
    assert_eq!(
        param(&url, "iss").as_deref(),
        Some("https://id.example"),
        "RFC 9207"
    );
    (e, url)
}

#[tokio::test]
async fn missing_unknown_or_disabled_client_is_an_error_page() {
    let e =
        page_error("redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid")
            .await;
    assert_eq!(e.code, AuthzCode::OAuth(ErrorCode::InvalidRequest));
    let e = page_error("client_id=nobody&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid").await;
    assert_eq!(e.code, AuthzCode::OAuth(ErrorCode::InvalidClient));
    let e = page_error(
        "client_id=off&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid",
    )
    .await;
    assert_eq!(e.code, AuthzCode::OAuth(ErrorCode::InvalidClient));
}

#[tokio::test]
async fn redirect_uri_must_match_exactly_or_error_page() {
    for uri in [
        "https%3A%2F%2Frp.example%2Fcb%2F",
        "https%3A%2F%2Frp.example%2Fcb%3Fx%3D1",
        "https%3A%2F%2Fevil.example%2Fcb",
        "HTTPS%3A%2F%2Frp.example%2Fcb",
    ] {
        let e = page_error(&format!(
            "client_id=web&redirect_uri={uri}&response_type=code&scope=openid&state=s"
        ))
        .await;
        assert_eq!(e.code, AuthzCode::OAuth(ErrorCode::InvalidRequest));
    }
    // Several registered: it may not be omitted.
    let e = page_error("client_id=two&response_type=code&scope=openid").await;
    assert_eq!(e.code, AuthzCode::OAuth(ErrorCode::InvalidRequest));
    // A page error even when the rest of the request is wrong too.
    page_error("client_id=web&redirect_uri=https%3A%2F%2Fevil.example&response_type=token").await;
}

#[tokio::test]
async fn single_registered_redirect_uri_may_be_omitted_in_plain_oauth() {
    let fx = fx().await;
    let p = q(&format!(
        "client_id=web&response_type=code&scope=profile&code_challenge={CHALLENGE}&code_challenge_method=S256"
    ));
    let tx = fx.tx(fx.authorize(&p, None).await.unwrap());
    assert_eq!(tx.request.redirect_uri, "https://rp.example/cb");
    assert!(!tx.request.redirect_uri_sent);
}

#[tokio::test]
async fn openid_request_without_redirect_uri_is_an_error_page() {
    // OIDC Core §3.1.2.1: redirect_uri is REQUIRED, even with a single registered one.
    let e = page_error(&format!(
        "client_id=web&response_type=code&scope=profile+openid&state=s&code_challenge={CHALLENGE}&code_challenge_method=S256"
    ))
    .await;
    assert_eq!(e.code, AuthzCode::OAuth(ErrorCode::InvalidRequest));
    assert!(e.description.contains("redirect_uri"), "{}", e.description);
}

#[tokio::test]
async fn registration_parameter_is_registration_not_supported() {
    // OIDC Core §3.1.2.6.
    let (e, url) = redirected(req("web", "registration=%7B%7D")).await;
    assert_eq!(e.code, AuthzCode::RegistrationNotSupported);
    assert_eq!(
        param(&url, "error").as_deref(),
        Some("registration_not_supported")
    );
    assert_eq!(param(&url, "state").as_deref(), Some("st4te"));
}

#[tokio::test]
async fn repeated_parameters_are_redirected_once_the_client_is_verified() {
    // RFC 6749 §3.1 and §4.1.2.1.
    let fx = fx().await;
    let base =
        "client_id=web&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid";
    let e = fx
        .engine
        .refuse_repeated(
            format!("{base}&state=a&prompt=none&state=b").as_bytes(),
            NOW,
        )
        .await;
    assert_eq!(e.error(), "invalid_request");
    assert!(e.description.contains("'state'"), "{}", e.description);
    let url = e.redirect_url("https://id.example").expect("redirected");
    assert!(url.starts_with("https://rp.example/cb?error=invalid_request&"));
    assert_eq!(param(&url, "state"), None, "a repeated state is not echoed");
    assert_eq!(param(&url, "iss").as_deref(), Some("https://id.example"));
    // A single state is echoed.
    let e = fx
        .engine
        .refuse_repeated(format!("{base}&state=a&scope=email").as_bytes(), NOW)
        .await;
    let url = e.redirect_url("https://id.example").expect("redirected");
    assert_eq!(param(&url, "state").as_deref(), Some("a"));
    // Until client and redirect URI are verified from unrepeated values: an error page.
    for raw in [
        format!("{base}&client_id=web"),
        format!("{base}&redirect_uri=https%3A%2F%2Frp.example%2Fcb"),
        "client_id=web&response_type=code&scope=openid&scope=email".to_owned(),
        "client_id=web&redirect_uri=https%3A%2F%2Fevil.example%2F&state=a&state=b".to_owned(),
        "client_id=nobody&redirect_uri=https%3A%2F%2Frp.example%2Fcb&state=a&state=b".to_owned(),
        "client_id=web&redirect_uri=https%3A%2F%2Frp.example%2Fcb&state=%zz&state=b".to_owned(),
    ] {
        let e = fx.engine.refuse_repeated(raw.as_bytes(), NOW).await;
        assert_eq!(e.error(), "invalid_request", "{raw}");
        assert!(e.redirect.is_none(), "must not redirect: {raw}");
    }
}

#[tokio::test]
async fn request_objects_are_refused_per_oidc_core_6() {
    let (e, url) = redirected(req("web", "request=eyJhbGciOiJub25lIn0.e30.")).await;
    assert_eq!(e.code, AuthzCode::RequestNotSupported);
    assert_eq!(
        param(&url, "error").as_deref(),
        Some("request_not_supported")
    );
    assert_eq!(param(&url, "state").as_deref(), Some("st4te"));
    let (e, _) = redirected(req("web", "request_uri=https%3A%2F%2Frp.example%2Freq")).await;
    assert_eq!(e.code, AuthzCode::RequestUriNotSupported);
}

#[tokio::test]
async fn response_type_checks() {
    let p = q("client_id=web&redirect_uri=https%3A%2F%2Frp.example%2Fcb&scope=openid&state=s");
    let (e, _) = redirected(p).await;
    assert_eq!(e.code, AuthzCode::OAuth(ErrorCode::InvalidRequest));
    for rt in ["token", "id_token", "code+id_token"] {
        let p = q(&format!(
            "client_id=web&redirect_uri=https%3A%2F%2Frp.example%2Fcb&scope=openid&response_type={rt}"
        ));
        let (e, _) = redirected(p).await;
        assert_eq!(e.error(), "unsupported_response_type");
    }
    // A client registered without the code flow: unauthorized_client.
    let fx = fx().await;
    let mut cc = client("cc2");
    cc.grant_types = vec!["client_credentials".into()];
    cc.response_types = vec![];
    fx.store.put_client(&cc).await.unwrap();
    let e = err(&fx, &req("cc2", "")).await;
    assert_eq!(e.error(), "unauthorized_client");
    assert!(e.redirect.is_some());
}

#[tokio::test]
async fn only_query_response_mode() {
    let (e, _) = redirected(req("web", "response_mode=fragment")).await;
    assert_eq!(e.error(), "invalid_request");
    let fx = fx().await;
    assert!(
        fx.authorize(&req("web", "response_mode=query"), None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn scope_checks() {
    let base = format!(
        "client_id=web&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&code_challenge={CHALLENGE}&code_challenge_method=S256"
    );
    for scope in [
        "",
        "&scope=",
        "&scope=+",
        "&scope=openid+unknown",
        "&scope=openid+%22bad%22",
    ] {
        let (e, _) = redirected(q(&format!("{base}{scope}"))).await;
        assert_eq!(e.error(), "invalid_scope", "{scope}");
    }
    // Allowed for the server but not for this client.
    let p = q(
        "client_id=narrow&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid+email",
    );
    let (e, _) = redirected(p).await;
    assert_eq!(e.error(), "invalid_scope");
}

#[tokio::test]
async fn pkce_checks() {
    let base =
        "client_id=web&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid";
    let cases = [
        format!("code_challenge={CHALLENGE}&code_challenge_method=plain"),
        format!("code_challenge={CHALLENGE}"),
        "code_challenge_method=S256".to_owned(),
        "code_challenge=short&code_challenge_method=S256".to_owned(),
        format!(
            "code_challenge={}!&code_challenge_method=S256",
            &CHALLENGE[..42]
        ),
    ];
    for c in cases {
        let (e, _) = redirected(q(&format!("{base}&{c}"))).await;
        assert_eq!(e.error(), "invalid_request", "{c}");
    }
    // Required for public clients and for require_pkce; optional otherwise.
    for id in ["spa", "pk"] {
        let (e, _) = redirected(q(&format!("client_id={id}&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid"))).await;
        assert_eq!(e.error(), "invalid_request");
        assert!(e.description.contains("code_challenge"));
    }
    let fx = fx().await;
    assert!(fx.authorize(&q(base), None).await.is_ok());
}

#[tokio::test]
async fn state_and_nonce_bounds() {
    let long = "a".repeat(3000);
    let fx = fx().await;
    let e = err(&fx, &q(&format!("client_id=web&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid&state={long}"))).await;
    assert_eq!(e.error(), "invalid_request");
    let url = e.redirect_url("https://id.example").unwrap();
    assert!(
        param(&url, "state").is_none(),
        "an oversized state is not echoed"
    );
    let p = q(&format!(
        "client_id=web&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid&nonce={long}"
    ));
    let (e, _) = redirected(p).await;
    assert_eq!(e.error(), "invalid_request");
}

#[tokio::test]
async fn prompt_and_max_age_syntax() {
    for extra in [
        "prompt=none+login",
        "prompt=bogus",
        "max_age=-1",
        "max_age=soon",
    ] {
        let (e, _) = redirected(req("web", extra)).await;
        assert_eq!(e.error(), "invalid_request", "{extra}");
    }
    let (e, _) = redirected(req("web", "login_hint=a%0Ab")).await;
    assert_eq!(e.error(), "invalid_request");
}

#[tokio::test]
async fn no_session_asks_for_login_and_keeps_the_request() {
    let fx = fx().await;
    let step = fx
        .authorize(&req("web", "login_hint=alice&prompt=select_account"), None)
        .await
        .unwrap();
    let Step::Login(tx) = step else {
        panic!("expected login")
    };
    let r = &tx.request;
    assert_eq!(r.login_hint.as_deref(), Some("alice"));
    assert_eq!(r.state.as_deref(), Some("st4te"));
    assert_eq!(r.nonce.as_deref(), Some("n0nce"));
    assert_eq!(r.code_challenge.as_deref(), Some(CHALLENGE));
    assert_eq!(r.started_at, NOW);
}

#[tokio::test]
async fn prompt_none_never_shows_a_page() {
    let fx = fx().await;
    let e = err(&fx, &req("web", "prompt=none")).await;
    assert_eq!(e.error(), "login_required");
    assert!(e.redirect.is_some());
    let cookie = fx.alice().await;
    let e = fx
        .authorize(&req("web", "prompt=none"), Some(&cookie))
        .await
        .unwrap_err();
    assert_eq!(e.error(), "consent_required");
    // First-party with a session: silent success.
    let url = match fx
        .authorize(&req("fp", "prompt=none"), Some(&cookie))
        .await
        .unwrap()
    {
        Step::Redirect(u) => u,
        s => panic!("{s:?}"),
    };
    assert!(param(&url, "code").is_some());
}

#[tokio::test]
async fn success_response_has_code_state_and_iss() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let Step::Redirect(url) = fx.authorize(&req("fp", ""), Some(&cookie)).await.unwrap() else {
        panic!()
    };
    assert!(url.starts_with("https://rp.example/cb?code="));
    assert_eq!(param(&url, "state").as_deref(), Some("st4te"));
    assert_eq!(param(&url, "iss").as_deref(), Some("https://id.example"));
}

#[tokio::test]
async fn single_sign_on_across_clients() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    fx.code(&req("fp", ""), &cookie).await;
    fx.code(&req("es", ""), &cookie).await;
    let s = fx
        .engine
        .load_session(Some(&cookie), fx.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.clients, vec!["fp".to_string(), "es".to_string()]);
}

#[tokio::test]
async fn prompt_login_forces_a_new_sign_in() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    fx.clock.advance(10);
    let tx = fx.tx(fx
        .authorize(&req("fp", "prompt=login"), Some(&cookie))
        .await
        .unwrap());
    // Resuming with the old session is not enough…
    assert!(matches!(
        fx.engine
            .resume(tx.clone(), Some(&cookie), fx.now())
            .await
            .unwrap(),
        Step::Login(_)
    ));
    // …a sign-in after the request began is.
    fx.clock.advance(5);
    let fresh = fx.alice().await;
    assert!(matches!(
        fx.engine.resume(tx, Some(&fresh), fx.now()).await.unwrap(),
        Step::Redirect(_)
    ));
}

#[tokio::test]
async fn prompt_login_and_max_age_0_are_not_met_by_a_session_of_the_same_second() {
    // OIDC Core §3.1.2.1: auth_time counts whole seconds; a session that existed before the
    // request never satisfies prompt=login (or max_age=0, its equivalent), whatever its second.
    let fx = fx().await;
    let cookie = fx.alice().await;
    for extra in ["prompt=login", "max_age=0"] {
        assert!(
            matches!(
                fx.authorize(&req("fp", extra), Some(&cookie))
                    .await
                    .unwrap(),
                Step::Login(_)
            ),
            "{extra}"
        );
    }
    let e = fx
        .authorize(&req("fp", "max_age=0&prompt=none"), Some(&cookie))
        .await
        .unwrap_err();
    assert_eq!(e.error(), "login_required");
}

#[tokio::test]
async fn a_sign_in_for_the_request_satisfies_max_age_0() {
    let fx = fx().await;
    let tx = fx.tx(fx.authorize(&req("fp", "max_age=0"), None).await.unwrap());
    let fresh = fx.alice().await;
    // The clock ticks between the sign-in and the decision: still the re-authentication
    // max_age=0 asked for, not a reason to show the login page again.
    fx.clock.advance(1);
    let step = fx.engine.resume(tx, Some(&fresh), fx.now()).await.unwrap();
    assert!(matches!(step, Step::Redirect(_)), "{step:?}");
}

#[tokio::test]
async fn max_age_requires_a_recent_sign_in() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    fx.clock.advance(600);
    assert!(matches!(
        fx.authorize(&req("fp", "max_age=300"), Some(&cookie))
            .await
            .unwrap(),
        Step::Login(_)
    ));
    assert!(matches!(
        fx.authorize(&req("fp", "max_age=900"), Some(&cookie))
            .await
            .unwrap(),
        Step::Redirect(_)
    ));
    let e = fx
        .authorize(&req("fp", "max_age=300&prompt=none"), Some(&cookie))
        .await
        .unwrap_err();
    assert_eq!(e.error(), "login_required");
}

#[tokio::test]
async fn third_party_consent_is_asked_once_and_remembered() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let tx = fx.tx(fx.authorize(&req("web", ""), Some(&cookie)).await.unwrap());
    let Step::Redirect(url) = fx
        .engine
        .consent(tx, Some(&cookie), true, fx.now())
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(param(&url, "code").is_some());
    // Remembered: no page the second time…
    assert!(matches!(
        fx.authorize(&req("web", ""), Some(&cookie)).await.unwrap(),
        Step::Redirect(_)
    ));
    // …unless the client asks for consent, or for more scope.
    assert!(matches!(
        fx.authorize(&req("web", "prompt=consent"), Some(&cookie))
            .await
            .unwrap(),
        Step::Consent(_)
    ));
    let more = q(&format!(
        "client_id=web&redirect_uri=https%3A%2F%2Frp.example%2Fcb&response_type=code&scope=openid+offline_access&code_challenge={CHALLENGE}&code_challenge_method=S256"
    ));
    assert!(matches!(
        fx.authorize(&more, Some(&cookie)).await.unwrap(),
        Step::Consent(_)
    ));
}

#[tokio::test]
async fn first_party_skips_consent_but_prompt_consent_shows_it() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    assert!(matches!(
        fx.authorize(&req("fp", ""), Some(&cookie)).await.unwrap(),
        Step::Redirect(_)
    ));
    assert!(matches!(
        fx.authorize(&req("fp", "prompt=consent"), Some(&cookie))
            .await
            .unwrap(),
        Step::Consent(_)
    ));
}

#[tokio::test]
async fn denied_consent_is_access_denied_at_the_client() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let tx = fx.tx(fx.authorize(&req("web", ""), Some(&cookie)).await.unwrap());
    let e = fx
        .engine
        .consent(tx, Some(&cookie), false, fx.now())
        .await
        .unwrap_err();
    let url = e.redirect_url("https://id.example").unwrap();
    assert_eq!(param(&url, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&url, "state").as_deref(), Some("st4te"));
    assert_eq!(param(&url, "iss").as_deref(), Some("https://id.example"));
}

#[tokio::test]
async fn consent_without_a_session_goes_back_to_login() {
    let fx = fx().await;
    let tx = fx.tx(fx.authorize(&req("web", ""), None).await.unwrap());
    assert!(matches!(
        fx.engine.consent(tx, None, true, fx.now()).await.unwrap(),
        Step::Login(_)
    ));
}

#[tokio::test]
async fn redirect_uri_query_is_kept() {
    let fx = fx().await;
    let mut c = client("qs");
    c.first_party = true;
    c.redirect_uris = vec!["https://rp.example/cb?tenant=7".into()];
    fx.store.put_client(&c).await.unwrap();
    let cookie = fx.alice().await;
    let p = q(
        "client_id=qs&redirect_uri=https%3A%2F%2Frp.example%2Fcb%3Ftenant%3D7&response_type=code&scope=openid&state=s",
    );
    let Step::Redirect(url) = fx.authorize(&p, Some(&cookie)).await.unwrap() else {
        panic!()
    };
    assert_eq!(param(&url, "tenant").as_deref(), Some("7"));
    assert!(param(&url, "code").is_some());
}

#[tokio::test]
async fn transaction_is_sealed_and_bound_to_the_browser() {
    let fx = fx().await;
    let tx = fx.tx(fx.authorize(&req("web", ""), None).await.unwrap());
    let sealed = tx.seal(&fx.engine).unwrap();
    let now = fx.now();
    let opened = Transaction::open(&fx.engine, &sealed, Some(BIND), now).unwrap();
    assert_eq!(opened, tx);
    use crate::interactive::TransactionError as E;
    assert_eq!(
        Transaction::open(&fx.engine, &sealed, Some("other"), now),
        Err(E::WrongBrowser)
    );
    assert_eq!(
        Transaction::open(&fx.engine, &sealed, None, now),
        Err(E::WrongBrowser)
    );
    assert_eq!(
        Transaction::open(&fx.engine, &sealed, Some(BIND), now + 3600),
        Err(E::Expired)
    );
    let mut tampered = sealed.clone().into_bytes();
    tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        Transaction::open(
            &fx.engine,
            &String::from_utf8(tampered).unwrap(),
            Some(BIND),
            now
        ),
        Err(E::Invalid)
    );
    let csrf = tx.csrf_token(&fx.engine);
    assert!(tx.check_csrf(&fx.engine, Some(&csrf)).is_ok());
    assert_eq!(tx.check_csrf(&fx.engine, Some("forged")), Err(E::BadCsrf));
    assert_eq!(tx.check_csrf(&fx.engine, None), Err(E::BadCsrf));
}

#[test]
fn the_check_table_runs_client_and_redirect_uri_first() {
    let names: Vec<&str> = crate::interactive::authorize::CHECKS
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(&names[..2], &["client", "redirect_uri"]);
}

/// An ID token of this server for `subject`, as if issued to `client` at `now`.
fn id_token_of(fx: &Fx, subject: &str) -> String {
    let c = client("fp");
    let facts = crate::interactive::id_token::IdTokenFacts {
        subject,
        auth_time: NOW,
        sid: Some("some-sid"),
        ..Default::default()
    };
    fx.engine.issue_id_token(&c, &facts, fx.now()).unwrap()
}

#[tokio::test]
async fn id_token_hint_of_the_signed_in_user_is_answered_silently() {
    // OIDC Core §3.1.2.1 id_token_hint, as the conformance suite sends it (prompt=none).
    let fx = fx().await;
    let cookie = fx.alice().await;
    let hint = id_token_of(&fx, "sub-alice");
    fx.clock.advance(2 * 86400); // an expired hint still names the user
    let cookie2 = fx.alice().await;
    drop(cookie);
    let p = req("fp", &format!("prompt=none&id_token_hint={hint}"));
    let url = match fx.authorize(&p, Some(&cookie2)).await.unwrap() {
        Step::Redirect(u) => u,
        s => panic!("{s:?}"),
    };
    assert!(param(&url, "code").is_some());
}

#[tokio::test]
async fn id_token_hint_of_another_user_is_login_required() {
    // OIDC Core §3.1.2.1: otherwise "it SHOULD return an error, such as login_required".
    let fx = fx().await;
    let cookie = fx.alice().await;
    let hint = id_token_of(&fx, "sub-carol");
    let p = req("fp", &format!("prompt=none&id_token_hint={hint}"));
    let e = fx.authorize(&p, Some(&cookie)).await.unwrap_err();
    assert_eq!(e.error(), "login_required");
    let url = e.redirect_url("https://id.example").unwrap();
    assert_eq!(param(&url, "state").as_deref(), Some("st4te"));
    // Interactive: alice's session is not used; the user must sign in…
    let p = req("fp", &format!("id_token_hint={hint}"));
    let tx = match fx.authorize(&p, Some(&cookie)).await.unwrap() {
        Step::Login(tx) => *tx,
        s => panic!("expected the login page, got {s:?}"),
    };
    assert_eq!(tx.request.id_token_hint_sub.as_deref(), Some("sub-carol"));
    // …and signing in as someone else than the hint names is login_required at the client.
    let fresh = fx.alice().await;
    let e = fx
        .engine
        .resume(tx, Some(&fresh), fx.now())
        .await
        .unwrap_err();
    assert_eq!(e.error(), "login_required");
    assert!(e.redirect.is_some());
}

#[tokio::test]
async fn id_token_hint_must_be_an_id_token_of_this_server() {
    let fx = fx().await;
    let cookie = fx.alice().await;
    let code = fx.code(&req("fp", ""), &cookie).await;
    let access_token = fx.exchange("fp", &code).await.unwrap().access_token;
    for hint in [
        "garbage".to_owned(),
        "eyJhbGciOiJSUzI1NiJ9.e30.c2ln".to_owned(),
        // Signed by this server, but an access token (typ at+jwt), not an ID token.
        access_token,
    ] {
        let p = req("fp", &format!("id_token_hint={hint}"));
        let e = fx.authorize(&p, Some(&cookie)).await.unwrap_err();
        assert_eq!(e.error(), "invalid_request", "{hint}");
        let url = e.redirect_url("https://id.example").expect("redirected");
        assert_eq!(param(&url, "state").as_deref(), Some("st4te"));
    }
}
