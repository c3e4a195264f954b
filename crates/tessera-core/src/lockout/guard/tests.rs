//! The guard with a fake provider that counts its calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use super::*;
use crate::authn::{AccountState, AuthProvider, Chain, ChainEntry, Principal};
use crate::clock::ManualClock;
use crate::lockout::{LockoutMode, Progressive};
use crate::model::{AuthMethod, Client};
use crate::settings::Settings;
use crate::store::ClientStore as _;
use crate::testing::{MemoryStore, test_engine};
use crate::trace::TraceHandle;

const T0: UnixTime = 1_700_000_000;

/// Password "right" succeeds, "down" is an outage, "disabled" an account-state denial, anything
/// else a wrong password.
#[derive(Default)]
struct Counting(AtomicUsize);

#[async_trait]
impl AuthProvider for Counting {
    fn name(&self) -> &str {
        "fake"
    }
    fn kind(&self) -> &'static str {
        "fake"
    }
    async fn authenticate(&self, c: &PasswordCredentials, _: &mut Trace) -> Outcome {
        self.0.fetch_add(1, Ordering::SeqCst);
        match c.password.expose() {
            "right" => Outcome::Authenticated(Principal {
                subject: c.username.clone(),
                username: c.username.clone(),
                provider: "fake".into(),
                ..Default::default()
            }),
            "down" => Outcome::Unavailable {
                cause: "connection refused".into(),
                host: Some("ldap:389".into()),
            },
            "disabled" => Outcome::AccountState(AccountState::Disabled),
            "" => Outcome::EmptyPassword,
            _ => Outcome::BadCredentials,
        }
    }
}

struct Fixture {
    engine: Engine,
    store: MemoryStore,
    provider: Arc<Counting>,
    clock: ManualClock,
}

impl Fixture {
    async fn new(tweak: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Settings::new("https://issuer.example");
        tweak(&mut settings);
        let (mut engine, store) = test_engine(settings, T0).await.expect("engine");
        let provider = Arc::new(Counting::default());
        engine.chain = Chain::new(vec![ChainEntry {
            flag: ControlFlag::Required,
            provider: provider.clone(),
        }]);
        let clock = ManualClock::new(T0);
        engine.clock = Arc::new(clock.clone());
        Self {
            engine,
            store,
            provider,
            clock,
        }
    }

    fn calls(&self) -> usize {
        self.provider.0.load(Ordering::SeqCst)
    }

    async fn login(&self, user: &str, password: &str) -> UserAuthResult {
        let creds = PasswordCredentials {
            username: user.into(),
            password: password.into(),
        };
        self.engine.authenticate_user(&creds, &ctx()).await
    }

    fn metric(&self, f: impl Fn(&LockoutMetrics) -> &std::sync::atomic::AtomicU64) -> u64 {
        LockoutMetrics::get(f(&self.engine.lockout_metrics))
    }
}

fn ctx() -> RequestContext {
    RequestContext {
        request_id: "req-1".into(),
        source_ip: Some([198, 51, 100, 7].into()),
        trace: TraceHandle::off(),
    }
}

#[tokio::test]
async fn locked_account_costs_zero_provider_calls() {
    let f = Fixture::new(|_| {}).await;
    for _ in 0..5 {
        let r = f.login("alice", "wrong").await;
        assert!(!r.is_locked());
        assert!(matches!(
            r.decision,
            Decision::Denied {
                credential_failure: true,
                ..
            }
        ));
    }
    assert_eq!(f.calls(), 5);
    for password in ["wrong", "right", "right", "wrong"] {
        let r = f.login("alice", password).await;
        assert_eq!(r.locked_until, Some(T0 + 1800));
        // Presented like a wrong password: the same generic message everywhere.
        assert!(matches!(
            &r.decision,
            Decision::Denied { outcome: Outcome::BadCredentials, provider, credential_failure: false }
                if provider == LOCKOUT_PROVIDER
        ));
        assert!(r.outcomes.is_empty());
    }
    assert_eq!(f.calls(), 5, "a locked account costs no provider call");
    assert_eq!(f.metric(|m| &m.lockouts_total), 1);
    assert_eq!(f.metric(|m| &m.invalid_attempts_total), 5);
    assert_eq!(f.metric(|m| &m.attempts_while_locked_total), 4);
    let counts = f.engine.lockout_counts().await.expect("counts");
    assert_eq!(counts.users_locked, 1);
    assert_eq!(f.metric(|m| &m.users_with_failures_high_water), 1);

    // The lock ends after its duration; then the right password works and resets.
    f.clock.advance(1800);
    assert!(matches!(
        f.login("alice", "right").await.decision,
        Decision::Authenticated(_)
    ));
    assert_eq!(f.calls(), 6);
    assert!(
        f.engine
            .lockout_status("alice")
            .await
            .expect("status")
            .is_empty()
    );
}

#[tokio::test]
async fn the_trace_says_locked_until() {
    let f = Fixture::new(|s| s.user_lockout.threshold = 1).await;
    f.login("bob", "wrong").await;
    let ctx = RequestContext {
        trace: TraceHandle::on(),
        ..ctx()
    };
    let creds = PasswordCredentials {
        username: "bob".into(),
        password: "right".into(),
    };
    let r = f.engine.authenticate_user(&creds, &ctx).await;
    assert!(r.is_locked());
    let steps = ctx.trace.steps();
    let lock = steps
        .iter()
        .find(|s| s.component == "lockout")
        .expect("a lockout step");
    assert_eq!(lock.outcome, "locked");
    let msg = lock
        .detail
        .get("message")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    assert_eq!(
        msg,
        format!("locked until {}", crate::lockout::rfc3339(T0 + 1800))
    );
    assert!(
        !steps.iter().any(|s| s.component == "chain"),
        "no provider ran"
    );
}

#[tokio::test]
async fn outages_and_account_state_count_nothing() {
    let f = Fixture::new(|_| {}).await;
    for _ in 0..20 {
        assert!(matches!(
            f.login("carol", "down").await.decision,
            Decision::Unavailable { .. }
        ));
        assert!(matches!(
            f.login("carol", "disabled").await.decision,
            Decision::Denied {
                credential_failure: false,
                ..
            }
        ));
    }
    assert_eq!(f.calls(), 40);
    assert_eq!(f.metric(|m| &m.invalid_attempts_total), 0);
    assert!(
        f.engine
            .lockout_status("carol")
            .await
            .expect("status")
            .is_empty()
    );
    assert!(matches!(
        f.login("carol", "right").await.decision,
        Decision::Authenticated(_)
    ));
}

#[tokio::test]
async fn success_resets_and_names_are_normalized() {
    let f = Fixture::new(|_| {}).await;
    for _ in 0..4 {
        f.login("Dave ", "wrong").await;
    }
    assert!(matches!(
        f.login("dave", "right").await.decision,
        Decision::Authenticated(_)
    ));
    for _ in 0..4 {
        f.login(" DAVE", "").await; // empty password counts
    }
    let st = f.engine.lockout_status("Dave").await.expect("status");
    assert_eq!(st.len(), 1);
    assert_eq!((st[0].failure_count, st[0].locked), (4, false));
    assert_eq!(st[0].last_failure_source.as_deref(), Some("198.51.100.7"));
    // The 5th failure on any spelling locks; unknown names are counted the same way.
    f.login("dAvE", "wrong").await;
    assert!(f.login("dave", "right").await.is_locked());
    for _ in 0..5 {
        f.login("nobody-at-all", "x").await;
    }
    assert!(f.login("nobody-at-all", "x").await.is_locked());
}

#[tokio::test]
async fn admin_clear_unlocks() {
    let f = Fixture::new(|s| s.user_lockout.threshold = 2).await;
    f.login("erin", "a").await;
    f.login("erin", "b").await;
    assert!(f.login("erin", "right").await.is_locked());
    let list = f.engine.lockout_list().await.expect("list");
    assert_eq!(list.len(), 1);
    assert!(list[0].locked && list[0].failure_count == 2);
    let cleared = f.engine.lockout_clear("Erin").await.expect("clear");
    assert_eq!(cleared.len(), 1);
    assert_eq!(f.metric(|m| &m.unlocks_total), 1);
    assert!(matches!(
        f.login("erin", "right").await.decision,
        Decision::Authenticated(_)
    ));
}

#[tokio::test]
async fn monitor_only_never_locks_but_alerts() {
    let f = Fixture::new(|s| s.user_lockout.mode = LockoutMode::MonitorOnly).await;
    for _ in 0..12 {
        assert!(!f.login("frank", "wrong").await.is_locked());
    }
    assert_eq!(f.calls(), 12);
    assert_eq!(f.metric(|m| &m.would_lock_total), 1);
    assert_eq!(f.metric(|m| &m.invalid_attempts_total), 12);
    assert!(matches!(
        f.login("frank", "right").await.decision,
        Decision::Authenticated(_)
    ));
}

#[tokio::test]
async fn progressive_locks_grow() {
    let f = Fixture::new(|s| {
        s.user_lockout.threshold = 1;
        s.user_lockout.lock_duration = 60;
        s.user_lockout.progressive = Some(Progressive {
            factor: 2,
            max: 600,
        });
    })
    .await;
    f.login("gina", "wrong").await;
    assert_eq!(f.login("gina", "right").await.locked_until, Some(T0 + 60));
    f.clock.advance(60);
    f.login("gina", "wrong").await;
    assert_eq!(
        f.login("gina", "right").await.locked_until,
        Some(T0 + 60 + 120)
    );
}

#[tokio::test]
async fn store_outage_fails_closed_without_provider_calls() {
    let f = Fixture::new(|_| {}).await;
    f.store.set_unavailable(true);
    let r = f.login("hank", "right").await;
    assert!(matches!(r.decision, Decision::Unavailable { .. }));
    assert_eq!(f.calls(), 0);
}

#[tokio::test]
async fn disabled_policy_calls_the_chain_directly() {
    let f = Fixture::new(|s| s.user_lockout.enabled = false).await;
    for _ in 0..20 {
        f.login("ivan", "wrong").await;
    }
    assert!(matches!(
        f.login("ivan", "right").await.decision,
        Decision::Authenticated(_)
    ));
    assert_eq!(f.calls(), 21);
}

// ------------------------------------------------------------------------------ clients

async fn client_fixture() -> Fixture {
    let f = Fixture::new(|s| s.client_lockout.threshold = 3).await;
    let client = Client {
        client_id: "svc".into(),
        secret_hash: Some(f.engine.master.hash_client_secret("s3cret")),
        token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
        grant_types: vec!["client_credentials".into()],
        ..Client::default()
    };
    f.store.put_client(&client).await.expect("client");
    f
}

fn from(ip: [u8; 4]) -> RequestContext {
    RequestContext {
        source_ip: Some(ip.into()),
        ..ctx()
    }
}

async fn client_login(f: &Fixture, id: &str, secret: &str, ip: [u8; 4]) -> OAuthResult<()> {
    let presented = PresentedClient::Basic {
        client_id: id.into(),
        secret: secret.into(),
    };
    f.engine
        .authenticate_client(&presented, crate::engine::Endpoint::Token, &from(ip))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn client_lockout_is_per_source_address() {
    let f = client_fixture().await;
    let attacker = [203, 0, 113, 66];
    let service = [10, 0, 0, 5];
    for _ in 0..3 {
        assert!(client_login(&f, "svc", "guess", attacker).await.is_err());
    }
    let e = client_login(&f, "svc", "s3cret", attacker)
        .await
        .expect_err("locked");
    assert_eq!(e.code, crate::error::ErrorCode::InvalidClient);
    assert!(
        e.cause
            .as_deref()
            .is_some_and(|c| c.contains("locked until")),
        "{e:?}"
    );
    // The real service, elsewhere, is not affected.
    client_login(&f, "svc", "s3cret", service)
        .await
        .expect("service still works");
    assert_eq!(f.metric(|m| &m.lockouts_total), 1);
    // Unknown client ids are counted like wrong secrets.
    for _ in 0..3 {
        assert!(client_login(&f, "ghost", "x", attacker).await.is_err());
    }
    let st = f.engine.lockout_status("ghost").await.expect("status");
    assert!(st.len() == 1 && st[0].locked && st[0].source.as_deref() == Some("203.0.113.66"));
}

#[tokio::test]
async fn client_scope_client_only_and_account_state() {
    let f = Fixture::new(|s| {
        s.client_lockout.threshold = 2;
        s.client_lockout_scope = crate::lockout::ClientLockoutScope::ClientOnly;
    })
    .await;
    let disabled = Client {
        client_id: "off".into(),
        secret_hash: Some(f.engine.master.hash_client_secret("s3cret")),
        token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
        disabled: true,
        ..Client::default()
    };
    f.store.put_client(&disabled).await.expect("client");
    // A disabled client is an account-state refusal: never counted.
    for _ in 0..5 {
        assert!(
            client_login(&f, "off", "s3cret", [10, 0, 0, 1])
                .await
                .is_err()
        );
    }
    assert!(
        f.engine
            .lockout_status("off")
            .await
            .expect("status")
            .is_empty()
    );
    // Client-only scope: failures from two addresses add up.
    client_login(&f, "ghost", "x", [10, 0, 0, 1]).await.ok();
    client_login(&f, "ghost", "x", [10, 0, 0, 2]).await.ok();
    let st = f.engine.lockout_status("ghost").await.expect("status");
    assert!(st.len() == 1 && st[0].locked && st[0].source.is_none());
}

#[test]
fn unverified_subject_reads_sub_only() {
    let payload = tessera_jose::b64::base64url_encode(br#"{"iss":"svc","sub":"svc"}"#);
    assert_eq!(
        unverified_subject(&format!("e30.{payload}.sig"), 16 * 1024).as_deref(),
        Some("svc")
    );
    assert_eq!(unverified_subject("garbage", 16 * 1024), None);
    assert_eq!(unverified_subject(&format!("e30.{payload}.sig"), 10), None);
}

#[tokio::test]
async fn admin_token() {
    let f = Fixture::new(|_| {}).await;
    assert!(
        !f.engine.admin_token_matches(""),
        "disabled without a token"
    );
    let f = Fixture::new(|s| s.admin_token = Some("t0ken".into())).await;
    assert!(f.engine.admin_token_matches("t0ken"));
    assert!(!f.engine.admin_token_matches("t0ke"));
    assert!(!f.engine.admin_token_matches(""));
}

#[tokio::test]
async fn saturated_is_try_again_not_bad_credentials() {
    use crate::store::LockoutStore as _;
    let f = Fixture::new(|_| {}).await;
    for _ in 0..4 {
        f.login("carol", "wrong").await;
    }
    // One more attempt in flight (e.g. stuck on a hung directory): failures + in flight = 5.
    let policy = f.engine.settings.user_lockout;
    let (admission, _) = f
        .store
        .lockout_begin_attempt(&policy, &LockoutKey::user("carol"), T0)
        .await
        .expect("reservation");
    assert_eq!(admission, Admission::Proceed { reserved: true });
    let calls = f.calls();
    let r = f.login("carol", "right").await;
    assert!(!r.is_locked(), "saturated is not locked");
    assert!(
        matches!(&r.decision, Decision::Unavailable { provider, .. } if provider == LOCKOUT_PROVIDER),
        "{:?}",
        r.decision
    );
    assert_eq!(f.calls(), calls, "no provider was asked");
}

/// Review finding: a saturated name is not locked, so its trace must not say "locked until".
#[tokio::test]
async fn a_saturated_trace_does_not_claim_a_lock() {
    use crate::store::LockoutStore as _;
    let f = Fixture::new(|s| s.user_lockout.threshold = 1).await;
    let policy = f.engine.settings.user_lockout;
    f.store
        .lockout_begin_attempt(&policy, &LockoutKey::user("erin"), T0)
        .await
        .expect("reservation");
    let ctx = RequestContext {
        trace: TraceHandle::on(),
        ..ctx()
    };
    let creds = PasswordCredentials {
        username: "erin".into(),
        password: "right".into(),
    };
    let r = f.engine.authenticate_user(&creds, &ctx).await;
    assert!(!r.is_locked());
    let steps = ctx.trace.steps();
    let step = steps
        .iter()
        .find(|s| s.component == "lockout")
        .expect("a lockout step");
    assert_eq!(step.outcome, "saturated");
    let msg = step
        .detail
        .get("message")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    assert!(msg.starts_with("not locked"), "{msg}");
}
