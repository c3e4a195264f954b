//! Soft lockout end to end (issue 8), on the server built from configuration (real store, real
//! chain): the local provider; client lockout over `/token`; the slapd seed scenario (the
//! directory's ppolicy locks `dave` after `TESSERA_TEST_LDAP_PPOLICY_MAX_FAILURE` failures,
//! Tessera after 5: after 50 attempts the directory account is still usable); a directory
//! outage counts nothing.
//!
//! The LDAP tests start their own slapd (`$TESSERA_TEST_SCRIPTS/start-ldap.sh`), since they
//! lock and stop it. Without the scripts they print why and pass, unless
//! `TESSERA_TEST_REQUIRE_SERVICES=1`.

use std::process::Command;

use reqwest::StatusCode;
use tessera_core::authn::{Decision, PasswordCredentials};
use tessera_core::oauth::RequestContext;

use crate::support::TestServer;
use crate::support::slapd::Slapd;

fn ctx() -> RequestContext {
    RequestContext {
        request_id: "e2e-lockout".into(),
        source_ip: Some([127, 0, 0, 1].into()),
        ..RequestContext::default()
    }
}

async fn login(
    server: &TestServer,
    username: &str,
    password: &str,
) -> tessera_core::lockout::UserAuthResult {
    let creds = PasswordCredentials {
        username: username.into(),
        password: password.into(),
    };
    server.engine().authenticate_user(&creds, &ctx()).await
}

#[tokio::test]
async fn local_provider_locks_on_the_fifth_failure_and_clear_unlocks() {
    let server = TestServer::start("").await;
    server.create_user("lena", "correct horse battery").await;
    for _ in 0..5 {
        let r = login(&server, "lena", "wrong").await;
        assert!(matches!(
            r.decision,
            Decision::Denied {
                credential_failure: true,
                ..
            }
        ));
    }
    let r = login(&server, "lena", "correct horse battery").await;
    assert!(r.is_locked(), "the right password is refused while locked");
    let status = server.engine().lockout_status("lena").await.unwrap();
    assert!(status.len() == 1 && status[0].locked && status[0].failure_count == 5);
    assert_eq!(
        server.engine().lockout_clear("LENA").await.unwrap().len(),
        1
    );
    assert!(matches!(
        login(&server, "lena", "correct horse battery")
            .await
            .decision,
        Decision::Authenticated(_)
    ));
}

#[tokio::test]
async fn client_lockout_over_the_token_endpoint() {
    let server = TestServer::start("").await;
    let c = server.create_service_client().await;
    let secret = c.secret.clone().unwrap();
    let form = [("grant_type", "client_credentials")];
    // Default client policy: threshold 10.
    for _ in 0..10 {
        let r = server
            .post_form("/token", Some((&c.client_id, "guess")), &form)
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = server
        .post_form("/token", Some((&c.client_id, &secret)), &form)
        .await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "locked for this source address"
    );
    server.engine().lockout_clear(&c.client_id).await.unwrap();
    let r = server
        .post_form("/token", Some((&c.client_id, &secret)), &form)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

// ------------------------------------------------------------------------------ slapd

/// A `[[providers]]` entry (REQUIRED, named `corp`) for `slapd`.
fn provider_toml(slapd: &Slapd) -> String {
    format!(
        "[[providers]]\nkind = \"ldap\"\nname = \"corp\"\nflag = \"REQUIRED\"\nurls = [\"{}\"]\n\
         bind_dn = \"{}\"\nbind_password = \"{}\"\nuser_base_dn = \"ou=people,{}\"\n\
         connect_timeout = 1\noperation_timeout = 2\n",
        slapd.url(),
        slapd.var("TESSERA_TEST_LDAP_BIND_DN"),
        slapd.var("TESSERA_TEST_LDAP_BIND_PASSWORD"),
        slapd.var("TESSERA_TEST_LDAP_BASE"),
    )
}

/// A simple bind straight against slapd (`ldapwhoami`), bypassing Tessera.
fn direct_bind(slapd: &Slapd, uid: &str, password: &str) -> bool {
    let dn = format!(
        "uid={uid},ou=people,{}",
        slapd.var("TESSERA_TEST_LDAP_BASE")
    );
    Command::new("ldapwhoami")
        .args(["-x", "-H", &slapd.url(), "-D", &dn, "-w", password])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn seed_scenario_directory_account_is_never_locked() {
    let Some(slapd) = Slapd::start("lockout_seed", None) else {
        return;
    };
    let directory_max: usize = slapd
        .var("TESSERA_TEST_LDAP_PPOLICY_MAX_FAILURE")
        .parse()
        .expect("ppolicy max failure is a number");
    assert!(
        directory_max > 5,
        "the scenario needs the directory to lock later than Tessera"
    );
    let server = TestServer::start(&provider_toml(&slapd)).await;
    let mut locked = 0;
    for _ in 0..50 {
        if login(&server, "dave", "wrong-password").await.is_locked() {
            locked += 1;
        }
    }
    assert_eq!(
        locked, 45,
        "5 attempts reached the directory, 45 were refused by Tessera"
    );
    assert!(login(&server, "dave", "dave-secret").await.is_locked());
    // The directory itself never saw enough failures to lock dave.
    assert!(
        direct_bind(&slapd, "dave", "dave-secret"),
        "dave's directory account must still accept the right password"
    );
    server.engine().lockout_clear("dave").await.unwrap();
    assert!(matches!(
        login(&server, "dave", "dave-secret").await.decision,
        Decision::Authenticated(_)
    ));
}

/// Review finding: slapd matches `(uid=ｄａｖｅ)`, `(uid=𝐝𝐚𝐯𝐞)`, `(uid=ⓓave)` … to dave
/// (compatibility normalization), so when each spelling had its own lockout key every spelling
/// bought `threshold` more binds and the directory's own ppolicy locked dave after all.
#[tokio::test]
async fn directory_equivalent_spellings_share_one_lock() {
    let Some(slapd) = Slapd::start("lockout_spellings", None) else {
        return;
    };
    let directory_max: usize = slapd
        .var("TESSERA_TEST_LDAP_PPOLICY_MAX_FAILURE")
        .parse()
        .expect("ppolicy max failure is a number");
    let server = TestServer::start(&provider_toml(&slapd)).await;
    let spellings = [
        "dave",
        "DAVE",
        "\u{ff44}\u{ff41}\u{ff56}\u{ff45}",
        "\u{1d41d}\u{1d41a}\u{1d42f}\u{1d41e}",
        "\u{24d3}ave",
        "\u{217e}ave",
    ];
    let mut reached = 0;
    for spelling in spellings {
        for _ in 0..directory_max / 2 {
            if !login(&server, spelling, "wrong-password").await.is_locked() {
                reached += 1;
            }
        }
    }
    assert_eq!(reached, 5, "only the threshold reaches the directory");
    assert!(
        direct_bind(&slapd, "dave", "dave-secret"),
        "dave's directory account must still accept the right password"
    );
}

#[tokio::test]
async fn directory_outage_counts_nothing() {
    let Some(slapd) = Slapd::start("lockout_outage", None) else {
        return;
    };
    let server = TestServer::start(&provider_toml(&slapd)).await;
    slapd.script("stop.sh");
    for _ in 0..20 {
        let r = login(&server, "carol", "whatever").await;
        assert!(
            matches!(r.decision, Decision::Unavailable { .. }),
            "{:?}",
            r.decision
        );
    }
    assert!(
        server
            .engine()
            .lockout_status("carol")
            .await
            .unwrap()
            .is_empty(),
        "nothing counted"
    );
    slapd.script("start-again.sh");
    let mut ok = false;
    for _ in 0..50 {
        if matches!(
            login(&server, "carol", "carol-secret").await.decision,
            Decision::Authenticated(_)
        ) {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "carol signs in once the directory is back");
}
