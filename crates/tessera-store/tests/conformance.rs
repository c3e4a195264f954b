//! One conformance suite, two backends.
//!
//! Every test runs on SQLite (a fresh temporary file) and, when `TEST_DATABASE_URL` is set, on
//! PostgreSQL (a fresh `t_<random>` database per test, dropped afterwards). Without the URL the
//! PostgreSQL variants print a skip notice and pass, unless `TESSERA_TEST_REQUIRE_SERVICES=1`.

// Test code: a failed expectation is a panic by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sqlx::Connection as _;
use tessera_core::model::{
    AuthCode, Client, CodeRedemption, Grant, KeyRecord, RefreshRotation, RefreshToken, Session,
    User,
};
use tessera_core::store::{Store, StoreError};
use tessera_store::{
    CONSUMED_CODE_GRACE_SECS, PgStore, SqliteStore, open_store, open_store_without_migrating,
};

const NOW: i64 = 1_700_000_000;
const HOUR: i64 = 3600;
const N: usize = 50;

// ---------------------------------------------------------------------------------- harness

enum Backend {
    Sqlite {
        dir: PathBuf,
        path: PathBuf,
    },
    Postgres {
        admin_url: String,
        url: String,
        db: String,
    },
}

/// One fresh database and the store under test on it.
struct Harness {
    backend: Backend,
    store: Arc<dyn Store>,
}

impl Harness {
    async fn sqlite() -> Arc<Harness> {
        let dir = std::env::temp_dir().join(format!("tessera-store-{}", uuid::Uuid::new_v4()));
        // A missing parent directory must be created by `open`.
        let path = dir.join("nested").join("tessera.db");
        let store = SqliteStore::open(&path).await.expect("open sqlite");
        store.migrate().await.expect("migrate sqlite");
        Arc::new(Harness {
            backend: Backend::Sqlite { dir, path },
            store: Arc::new(store),
        })
    }

    /// None when PostgreSQL is not configured (and not required).
    async fn postgres() -> Option<Arc<Harness>> {
        let admin_url = pg_url()?;
        let db = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect admin");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&format!("/{db}"));
        let url = url.to_string();
        let store = PgStore::connect(&url).await.expect("connect pg");
        store.migrate().await.expect("migrate pg");
        Some(Arc::new(Harness {
            backend: Backend::Postgres { admin_url, url, db },
            store: Arc::new(store),
        }))
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Another store (its own pool: another "node") on the same database.
    async fn other_node(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                let s = SqliteStore::open(path).await.expect("open sqlite again");
                s.migrate().await.expect("migrate is idempotent");
                Arc::new(s)
            }
            Backend::Postgres { url, .. } => {
                let s = PgStore::connect(url).await.expect("connect pg again");
                s.migrate().await.expect("migrate is idempotent");
                Arc::new(s)
            }
        }
    }

    /// Runs raw SQL on the database, behind the store's back.
    async fn exec_raw(&self, sql: &'static str) {
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
                let mut c = sqlx::SqliteConnection::connect_with(&opts)
                    .await
                    .expect("raw");
                sqlx::query(sql).execute(&mut c).await.expect("raw sql");
                c.close().await.ok();
            }
            Backend::Postgres { url, .. } => {
                let mut c = sqlx::PgConnection::connect(url).await.expect("raw");
                sqlx::query(sql).execute(&mut c).await.expect("raw sql");
                c.close().await.ok();
            }
        }
    }

    async fn finish(&self) {
        match &self.backend {
            Backend::Sqlite { dir, .. } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Backend::Postgres { admin_url, db, .. } => {
                if let Ok(mut c) = sqlx::PgConnection::connect(admin_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                    c.close().await.ok();
                }
            }
        }
    }
}

fn pg_url() -> Option<String> {
    static NOTICE: Once = Once::new();
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("TESSERA_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("TESSERA_TEST_REQUIRE_SERVICES=1 but TEST_DATABASE_URL is not set");
            }
            // Straight to stderr so the notice shows despite the test harness's capture.
            NOTICE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "skipping PostgreSQL conformance: TEST_DATABASE_URL not set"
                );
            });
            None
        }
    }
}

/// Runs a test body on a fresh database, cleaning up even when the body panics.
async fn run<F, Fut>(harness: Option<Arc<Harness>>, body: F)
where
    F: FnOnce(Arc<Harness>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(h) = harness else { return };
    let outcome = tokio::spawn(body(h.clone())).await;
    h.finish().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Instantiates each test for both backends. `store:` tests take the store alone,
/// `harness:` tests also need a second node or raw database access.
macro_rules! conformance {
    (store: [$($s:ident),* $(,)?], harness: [$($h:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $s() {
                    super::run(Some(super::Harness::sqlite().await), |h| super::$s(h.store())).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $h() {
                    super::run(Some(super::Harness::sqlite().await), super::$h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $s() {
                    super::run(super::Harness::postgres().await, |h| super::$s(h.store())).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $h() {
                    super::run(super::Harness::postgres().await, super::$h).await;
                }
            )*
        }
    };
}

conformance!(
    store: [
        clients_crud,
        users_crud,
        keys_crud,
        grant_revocation_removes_refresh_tokens,
        code_redeemed_once_then_already_used,
        expired_code_is_not_found,
        refresh_rotation_then_reuse,
        access_token_revocation,
        sessions_and_consents,
        replay_once_until_expiry,
        concurrent_replay_many_keys,
        meta_values,
        garbage_collection_bounds,
        concurrent_mixed_writes_all_succeed,
        schema_is_current,
    ],
    harness: [
        concurrent_redeem_two_nodes,
        concurrent_remember_once_two_nodes,
        concurrent_rotation_two_nodes,
        revocation_races_rotation,
        concurrent_put_meta_if_absent_two_nodes_agree,
        data_survives_reopening,
        replay_waits_for_another_writer,
        corrupt_document_is_corrupt,
    ],
);

// ---------------------------------------------------------------------------------- fixtures

fn client(id: &str) -> Client {
    Client {
        client_id: id.into(),
        client_name: Some(format!("{id} app")),
        redirect_uris: vec![format!("https://{id}.example/cb")],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        ..Client::default()
    }
}

fn user(username: &str, subject: &str) -> User {
    User {
        username: username.into(),
        subject: subject.into(),
        email: Some(format!("{username}@example.com")),
        groups: vec!["staff".into()],
        created_at: NOW,
        updated_at: NOW,
        ..User::default()
    }
}

fn key(kid: &str, created_at: i64) -> KeyRecord {
    KeyRecord {
        kid: kid.into(),
        alg: "ES256".into(),
        private_sealed: "sealed".into(),
        public_jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": "x", "y": "y"}),
        created_at,
        publish_at: created_at,
        activate_at: created_at + 60,
        retire_at: None,
        remove_at: None,
    }
}

fn grant(id: &str, expires_at: i64) -> Grant {
    Grant {
        grant_id: id.into(),
        client_id: "app".into(),
        subject: "sub-alice".into(),
        scope: "openid offline_access".into(),
        auth_time: Some(NOW - 10),
        session_id: Some("sid".into()),
        created_at: NOW,
        expires_at,
        revoked_at: None,
    }
}

fn claims() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("email".into(), json!("alice@example.com"));
    m
}

fn code(hash: &str, grant_id: &str, expires_at: i64) -> AuthCode {
    AuthCode {
        code_hash: hash.into(),
        grant_id: grant_id.into(),
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        subject: "sub-alice".into(),
        scope: "openid".into(),
        nonce: Some("n".into()),
        code_challenge: Some("challenge".into()),
        code_challenge_method: Some("S256".into()),
        auth_time: NOW - 10,
        amr: vec!["pwd".into()],
        acr: None,
        session_id: Some("sid".into()),
        claims: claims(),
        issued_at: NOW,
        expires_at,
    }
}

fn refresh(hash: &str, grant_id: &str, expires_at: i64) -> RefreshToken {
    RefreshToken {
        token_hash: hash.into(),
        grant_id: grant_id.into(),
        client_id: "app".into(),
        subject: "sub-alice".into(),
        scope: "openid offline_access".into(),
        issued_at: NOW,
        expires_at,
        claims: claims(),
    }
}

fn session(id: &str, expires_at: i64) -> Session {
    Session {
        id_hash: id.into(),
        sid: format!("sid-{id}"),
        subject: "sub-alice".into(),
        username: "alice".into(),
        auth_time: NOW,
        amr: vec!["pwd".into()],
        acr: None,
        claims: claims(),
        clients: vec![],
        created_at: NOW,
        expires_at,
    }
}

// ---------------------------------------------------------------------------------- CRUD

async fn clients_crud(s: Arc<dyn Store>) {
    assert_eq!(s.get_client("app").await.unwrap(), None);
    s.create_client(&client("app")).await.unwrap();
    s.create_client(&client("other")).await.unwrap();
    assert_eq!(s.get_client("app").await.unwrap(), Some(client("app")));
    assert!(matches!(
        s.create_client(&client("app")).await,
        Err(StoreError::Conflict(_))
    ));

    let mut changed = client("app");
    changed.client_name = Some("renamed".into());
    changed.disabled = true;
    s.put_client(&changed).await.unwrap();
    s.put_client(&client("third")).await.unwrap(); // put also inserts
    assert_eq!(s.get_client("app").await.unwrap(), Some(changed.clone()));
    let ids: Vec<String> = s
        .list_clients()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    assert_eq!(ids, ["app", "other", "third"]);

    assert!(s.delete_client("app").await.unwrap());
    assert!(!s.delete_client("app").await.unwrap());
    assert_eq!(s.get_client("app").await.unwrap(), None);
    assert_eq!(s.list_clients().await.unwrap().len(), 2);
}

async fn users_crud(s: Arc<dyn Store>) {
    s.create_user(&user("alice", "sub-alice")).await.unwrap();
    s.create_user(&user("bob", "sub-bob")).await.unwrap();
    assert_eq!(
        s.get_user("alice").await.unwrap(),
        Some(user("alice", "sub-alice"))
    );
    assert_eq!(
        s.get_user_by_subject("sub-bob")
            .await
            .unwrap()
            .map(|u| u.username),
        Some("bob".to_string())
    );
    assert_eq!(s.get_user("carol").await.unwrap(), None);
    assert_eq!(s.get_user_by_subject("nobody").await.unwrap(), None);
    // Same username, or another username with a taken subject: both conflict.
    assert!(matches!(
        s.create_user(&user("alice", "sub-new")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.create_user(&user("mallory", "sub-alice")).await,
        Err(StoreError::Conflict(_))
    ));

    let mut alice = user("alice", "sub-alice");
    alice.disabled = true;
    alice.password_hash = Some("$argon2id$v=19$...".into());
    assert!(s.update_user(&alice).await.unwrap());
    assert_eq!(s.get_user("alice").await.unwrap(), Some(alice));
    assert!(!s.update_user(&user("carol", "sub-carol")).await.unwrap());
    assert_eq!(s.get_user("carol").await.unwrap(), None);

    let names: Vec<String> = s
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
}

async fn keys_crud(s: Arc<dyn Store>) {
    s.insert_key(&key("k2", NOW + 10)).await.unwrap();
    s.insert_key(&key("k1", NOW)).await.unwrap();
    assert!(matches!(
        s.insert_key(&key("k1", NOW)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.list_keys().await.unwrap(),
        vec![key("k1", NOW), key("k2", NOW + 10)]
    );

    assert!(
        s.update_key_schedule("k1", Some(NOW + 100), Some(NOW + 200))
            .await
            .unwrap()
    );
    assert!(!s.update_key_schedule("nope", Some(1), None).await.unwrap());
    let k1 = s.list_keys().await.unwrap().remove(0);
    assert_eq!(
        (k1.retire_at, k1.remove_at),
        (Some(NOW + 100), Some(NOW + 200))
    );

    assert_eq!(s.delete_removed_keys(NOW + 199).await.unwrap(), 0);
    assert_eq!(s.delete_removed_keys(NOW + 200).await.unwrap(), 1);
    let kids: Vec<String> = s
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["k2"]);
}

async fn grant_revocation_removes_refresh_tokens(s: Arc<dyn Store>) {
    s.put_grant(&grant("g1", NOW + HOUR)).await.unwrap();
    s.put_grant(&grant("g2", NOW + HOUR)).await.unwrap();
    assert_eq!(
        s.get_grant("g1").await.unwrap(),
        Some(grant("g1", NOW + HOUR))
    );
    assert_eq!(s.get_grant("nope").await.unwrap(), None);
    s.put_refresh_token(&refresh("r1", "g1", NOW + HOUR))
        .await
        .unwrap();
    s.put_refresh_token(&refresh("r2", "g1", NOW + HOUR))
        .await
        .unwrap();
    s.put_refresh_token(&refresh("r3", "g2", NOW + HOUR))
        .await
        .unwrap();

    s.revoke_grant("g1", NOW).await.unwrap();
    assert_eq!(
        s.get_grant("g1").await.unwrap().unwrap().revoked_at,
        Some(NOW)
    );
    assert_eq!(s.get_refresh_token("r1").await.unwrap(), None);
    assert_eq!(s.get_refresh_token("r2").await.unwrap(), None);
    assert!(s.get_refresh_token("r3").await.unwrap().is_some());
    assert_eq!(s.get_grant("g2").await.unwrap().unwrap().revoked_at, None);

    // Idempotent, keeps the first time; an older copy written back does not un-revoke.
    s.revoke_grant("g1", NOW + 50).await.unwrap();
    s.put_grant(&grant("g1", NOW + 2 * HOUR)).await.unwrap();
    let g1 = s.get_grant("g1").await.unwrap().unwrap();
    assert_eq!((g1.revoked_at, g1.expires_at), (Some(NOW), NOW + 2 * HOUR));
    // Revoking an unknown grant is not an error.
    s.revoke_grant("unknown", NOW).await.unwrap();
    // A token of a revoked grant cannot be rotated.
    s.put_refresh_token(&refresh("late", "g1", NOW + HOUR))
        .await
        .unwrap();
    assert_eq!(
        s.rotate_refresh_token("late", &refresh("late2", "g1", NOW + HOUR), NOW)
            .await
            .unwrap(),
        RefreshRotation::NotFound
    );
}

async fn code_redeemed_once_then_already_used(s: Arc<dyn Store>) {
    let c = code("c1", "g1", NOW + 60);
    s.put_code(&c).await.unwrap();
    assert!(matches!(s.put_code(&c).await, Err(StoreError::Conflict(_))));
    assert_eq!(
        s.redeem_code("c1", NOW).await.unwrap(),
        CodeRedemption::Redeemed(c)
    );
    assert_eq!(
        s.redeem_code("c1", NOW + 1).await.unwrap(),
        CodeRedemption::AlreadyUsed {
            grant_id: "g1".into()
        }
    );
    assert_eq!(
        s.redeem_code("unknown", NOW).await.unwrap(),
        CodeRedemption::NotFound
    );
}

async fn expired_code_is_not_found(s: Arc<dyn Store>) {
    s.put_code(&code("c1", "g1", NOW + 60)).await.unwrap();
    // expires_at is exclusive: at the instant of expiry the code is gone.
    assert_eq!(
        s.redeem_code("c1", NOW + 60).await.unwrap(),
        CodeRedemption::NotFound
    );
    assert_eq!(
        s.redeem_code("c1", NOW + 61).await.unwrap(),
        CodeRedemption::NotFound
    );
    // A consumed code presented after its expiry is still reuse (while it is kept).
    s.put_code(&code("c2", "g2", NOW + 60)).await.unwrap();
    assert!(matches!(
        s.redeem_code("c2", NOW + 59).await.unwrap(),
        CodeRedemption::Redeemed(_)
    ));
    assert_eq!(
        s.redeem_code("c2", NOW + 600).await.unwrap(),
        CodeRedemption::AlreadyUsed {
            grant_id: "g2".into()
        }
    );
}

async fn refresh_rotation_then_reuse(s: Arc<dyn Store>) {
    s.put_grant(&grant("g1", NOW + HOUR)).await.unwrap();
    let t1 = refresh("t1", "g1", NOW + HOUR);
    let t2 = refresh("t2", "g1", NOW + 2 * HOUR);
    s.put_refresh_token(&t1).await.unwrap();
    assert!(matches!(
        s.put_refresh_token(&t1).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.get_refresh_token("t1").await.unwrap(), Some(t1));

    assert_eq!(
        s.rotate_refresh_token("t1", &t2, NOW).await.unwrap(),
        RefreshRotation::Rotated(t2.clone())
    );
    assert_eq!(s.get_refresh_token("t2").await.unwrap(), Some(t2));
    assert_eq!(
        s.get_refresh_token("t1").await.unwrap(),
        None,
        "a spent token is not returned"
    );
    assert_eq!(
        s.rotate_refresh_token("t1", &refresh("t3", "g1", NOW + HOUR), NOW + 1)
            .await
            .unwrap(),
        RefreshRotation::Reused {
            grant_id: "g1".into()
        }
    );
    assert_eq!(
        s.get_refresh_token("t3").await.unwrap(),
        None,
        "no token stored on reuse"
    );

    // Expired and unknown tokens are NotFound; nothing is stored.
    s.put_refresh_token(&refresh("old", "g1", NOW))
        .await
        .unwrap();
    assert_eq!(
        s.rotate_refresh_token("old", &refresh("t4", "g1", NOW + HOUR), NOW)
            .await
            .unwrap(),
        RefreshRotation::NotFound
    );
    assert_eq!(
        s.rotate_refresh_token("nope", &refresh("t5", "g1", NOW + HOUR), NOW)
            .await
            .unwrap(),
        RefreshRotation::NotFound
    );
    assert_eq!(s.get_refresh_token("t4").await.unwrap(), None);
    assert_eq!(s.get_refresh_token("t5").await.unwrap(), None);

    // A token can be rotated even if its grant row is absent; deletion (RFC 7009).
    s.put_refresh_token(&refresh("x1", "gx", NOW + HOUR))
        .await
        .unwrap();
    assert!(matches!(
        s.rotate_refresh_token("x1", &refresh("x2", "gx", NOW + HOUR), NOW)
            .await
            .unwrap(),
        RefreshRotation::Rotated(_)
    ));
    assert!(s.delete_refresh_token("x2").await.unwrap());
    assert!(!s.delete_refresh_token("x2").await.unwrap());
    assert_eq!(s.get_refresh_token("x2").await.unwrap(), None);
}

async fn access_token_revocation(s: Arc<dyn Store>) {
    assert!(!s.is_access_token_revoked("jti-1").await.unwrap());
    s.revoke_access_token("jti-1", NOW + HOUR).await.unwrap();
    s.revoke_access_token("jti-1", NOW + 10).await.unwrap(); // idempotent, keeps the later expiry
    assert!(s.is_access_token_revoked("jti-1").await.unwrap());
    assert!(!s.is_access_token_revoked("jti-2").await.unwrap());
    assert_eq!(s.collect_garbage(NOW + 10).await.unwrap(), 0);
    assert!(s.is_access_token_revoked("jti-1").await.unwrap());
    assert_eq!(s.collect_garbage(NOW + HOUR).await.unwrap(), 1);
    assert!(!s.is_access_token_revoked("jti-1").await.unwrap());
}

async fn sessions_and_consents(s: Arc<dyn Store>) {
    let sess = session("s1", NOW + HOUR);
    s.put_session(&sess).await.unwrap();
    assert_eq!(s.get_session("s1", NOW).await.unwrap(), Some(sess.clone()));
    assert_eq!(
        s.get_session("s1", NOW + HOUR).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(s.get_session("nope", NOW).await.unwrap(), None);

    s.add_session_client("s1", "app").await.unwrap();
    s.add_session_client("s1", "app").await.unwrap();
    s.add_session_client("s1", "other").await.unwrap();
    s.add_session_client("missing", "app").await.unwrap();
    let got = s.get_session("s1", NOW).await.unwrap().unwrap();
    assert_eq!(got.clients, ["app", "other"]);

    // put replaces
    let mut longer = got.clone();
    longer.expires_at = NOW + 2 * HOUR;
    s.put_session(&longer).await.unwrap();
    assert!(s.get_session("s1", NOW + HOUR).await.unwrap().is_some());

    assert_eq!(s.delete_session("s1").await.unwrap(), Some(longer));
    assert_eq!(s.delete_session("s1").await.unwrap(), None);

    assert_eq!(s.get_consent("sub-alice", "app").await.unwrap(), None);
    s.put_consent("sub-alice", "app", "openid").await.unwrap();
    s.put_consent("sub-alice", "other", "openid email")
        .await
        .unwrap();
    s.put_consent("sub-alice", "app", "openid profile")
        .await
        .unwrap();
    assert_eq!(
        s.get_consent("sub-alice", "app").await.unwrap().as_deref(),
        Some("openid profile")
    );
    assert_eq!(
        s.get_consent("sub-alice", "other")
            .await
            .unwrap()
            .as_deref(),
        Some("openid email")
    );
    assert_eq!(s.get_consent("sub-bob", "app").await.unwrap(), None);
}

async fn replay_once_until_expiry(s: Arc<dyn Store>) {
    assert!(s.remember_once("jti-a", NOW + 60, NOW).await.unwrap());
    assert!(!s.remember_once("jti-a", NOW + 120, NOW + 1).await.unwrap());
    assert!(!s.remember_once("jti-a", NOW + 120, NOW + 59).await.unwrap());
    assert!(s.remember_once("jti-b", NOW + 60, NOW).await.unwrap());
    // Expired: counts as absent, and is remembered again with the new expiry.
    assert!(s.remember_once("jti-a", NOW + 200, NOW + 60).await.unwrap());
    assert!(
        !s.remember_once("jti-a", NOW + 300, NOW + 199)
            .await
            .unwrap()
    );
    assert!(
        s.remember_once("jti-a", NOW + 300, NOW + 200)
            .await
            .unwrap()
    );
}

/// Many concurrent checks at once (SQLite writes them in batches): every fresh key is taken
/// exactly once, whatever else is in flight; a key repeated within the burst has one winner;
/// an expired key is taken over, a live one is not; different `now`s in one burst are each
/// honoured.
async fn concurrent_replay_many_keys(s: Arc<dyn Store>) {
    assert!(s.remember_once("live", NOW + 600, NOW).await.unwrap());
    assert!(s.remember_once("stale", NOW + 10, NOW).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..300usize {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            // 100 keys asked 3 times each, with three different clocks.
            let key = format!("k-{}", i % 100);
            let now = NOW + (i / 100) as i64;
            (i % 100, s.remember_once(&key, NOW + 60, now).await.unwrap())
        }));
    }
    for key in ["live", "stale"] {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let first = s.remember_once(key, NOW + 600, NOW + 20).await.unwrap();
            (if key == "live" { 1000 } else { 1001 }, first)
        }));
    }
    let mut winners = std::collections::HashMap::<usize, usize>::new();
    for t in tasks {
        let (k, first) = t.await.expect("task");
        if first {
            *winners.entry(k).or_default() += 1;
        }
    }
    for k in 0..100 {
        assert_eq!(winners.get(&k), Some(&1), "key k-{k}");
    }
    assert_eq!(winners.get(&1000), None, "a live key is not taken over");
    assert_eq!(winners.get(&1001), Some(&1), "an expired key is taken over");
    // And each is remembered: asked again later, none is fresh.
    for k in 0..100 {
        assert!(
            !s.remember_once(&format!("k-{k}"), NOW + 60, NOW + 5)
                .await
                .unwrap()
        );
    }
}

async fn meta_values(s: Arc<dyn Store>) {
    assert_eq!(s.get_meta("issuer").await.unwrap(), None);
    let v1 = json!({"url": "https://a.example", "n": 1});
    assert_eq!(s.put_meta_if_absent("issuer", &v1).await.unwrap(), v1);
    assert_eq!(
        s.put_meta_if_absent("issuer", &json!("other"))
            .await
            .unwrap(),
        v1
    );
    assert_eq!(s.get_meta("issuer").await.unwrap(), Some(v1));
    s.put_meta("issuer", &json!([1, 2, 3])).await.unwrap();
    s.put_meta("fresh", &json!(null)).await.unwrap();
    assert_eq!(s.get_meta("issuer").await.unwrap(), Some(json!([1, 2, 3])));
    assert_eq!(s.get_meta("fresh").await.unwrap(), Some(json!(null)));
}

async fn schema_is_current(s: Arc<dyn Store>) {
    let (applied, expected) = s.schema_version().await.unwrap();
    assert!(expected >= 1);
    assert_eq!(applied, expected);
    s.ping().await.unwrap();
    assert!(["sqlite", "postgres"].contains(&s.backend()));
}

// ---------------------------------------------------------------------------------- GC

async fn garbage_collection_bounds(s: Arc<dyn Store>) {
    let grace = CONSUMED_CODE_GRACE_SECS;
    // codes: expired unconsumed (gone), consumed within grace (kept), consumed past grace
    // (gone), live (kept)
    s.put_code(&code("c-expired", "g-live", NOW - 1))
        .await
        .unwrap();
    s.put_code(&code("c-grace", "g-live", NOW - 10))
        .await
        .unwrap();
    s.put_code(&code("c-past", "g-live", NOW - grace - 1))
        .await
        .unwrap();
    s.put_code(&code("c-live", "g-live", NOW + 60))
        .await
        .unwrap();
    assert!(matches!(
        s.redeem_code("c-grace", NOW - 20).await.unwrap(),
        CodeRedemption::Redeemed(_)
    ));
    assert!(matches!(
        s.redeem_code("c-past", NOW - grace - 2).await.unwrap(),
        CodeRedemption::Redeemed(_)
    ));
    // refresh tokens
    s.put_refresh_token(&refresh("r-expired", "g-old-busy", NOW))
        .await
        .unwrap();
    s.put_refresh_token(&refresh("r-live", "g-old-busy", NOW + 1))
        .await
        .unwrap();
    // revoked access tokens, sessions, replay
    s.revoke_access_token("jti-expired", NOW).await.unwrap();
    s.revoke_access_token("jti-live", NOW + 1).await.unwrap();
    s.put_session(&session("s-expired", NOW)).await.unwrap();
    s.put_session(&session("s-live", NOW + 1)).await.unwrap();
    assert!(s.remember_once("k-expired", NOW, NOW - 5).await.unwrap());
    assert!(s.remember_once("k-live", NOW + 1, NOW - 5).await.unwrap());
    // grants: expired and bare (gone), expired with a live token (kept), expired with a code
    // kept for the grace period (kept), live (kept)
    s.put_grant(&grant("g-old-bare", NOW)).await.unwrap();
    s.put_grant(&grant("g-old-busy", NOW - 1)).await.unwrap();
    s.put_grant(&grant("g-live", NOW + 1)).await.unwrap();
    s.put_grant(&grant("g-old-coded", NOW - 5)).await.unwrap();
    s.put_code(&code("c-coded", "g-old-coded", NOW - 5))
        .await
        .unwrap();
    assert!(matches!(
        s.redeem_code("c-coded", NOW - 6).await.unwrap(),
        CodeRedemption::Redeemed(_)
    ));
    // a key whose removal time has passed is not garbage collection's business
    let mut k = key("k", NOW - 100);
    k.remove_at = Some(NOW - 1);
    s.insert_key(&k).await.unwrap();

    // c-expired, c-past, r-expired, jti-expired, s-expired, k-expired, g-old-bare
    assert_eq!(s.collect_garbage(NOW).await.unwrap(), 7);
    assert_eq!(
        s.collect_garbage(NOW).await.unwrap(),
        0,
        "second pass finds nothing"
    );

    assert_eq!(
        s.redeem_code("c-expired", NOW).await.unwrap(),
        CodeRedemption::NotFound
    );
    assert_eq!(
        s.redeem_code("c-past", NOW).await.unwrap(),
        CodeRedemption::NotFound
    );
    assert_eq!(
        s.redeem_code("c-grace", NOW).await.unwrap(),
        CodeRedemption::AlreadyUsed {
            grant_id: "g-live".into()
        }
    );
    assert!(matches!(
        s.redeem_code("c-live", NOW).await.unwrap(),
        CodeRedemption::Redeemed(_)
    ));
    assert_eq!(s.get_refresh_token("r-expired").await.unwrap(), None);
    assert!(s.get_refresh_token("r-live").await.unwrap().is_some());
    assert!(!s.is_access_token_revoked("jti-expired").await.unwrap());
    assert!(s.is_access_token_revoked("jti-live").await.unwrap());
    assert!(s.delete_session("s-expired").await.unwrap().is_none());
    assert!(s.get_session("s-live", NOW).await.unwrap().is_some());
    assert!(s.remember_once("k-expired", NOW + 10, NOW).await.unwrap());
    assert!(!s.remember_once("k-live", NOW + 10, NOW).await.unwrap());
    assert_eq!(s.get_grant("g-old-bare").await.unwrap(), None);
    assert!(s.get_grant("g-old-busy").await.unwrap().is_some());
    assert!(s.get_grant("g-old-coded").await.unwrap().is_some());
    assert!(s.get_grant("g-live").await.unwrap().is_some());
    assert_eq!(s.list_keys().await.unwrap().len(), 1);

    // Later, everything expired goes, the grace-kept code and its grant included.
    let later = NOW + grace + 10;
    // c-grace, c-coded, r-live, jti-live, s-live, k-live, k-expired (remembered again),
    // g-old-busy, g-old-coded; c-live (consumed just now) is kept for its grace period
    let removed = s.collect_garbage(later).await.unwrap();
    assert_eq!(removed, 9);
    assert_eq!(
        s.redeem_code("c-live", later).await.unwrap(),
        CodeRedemption::AlreadyUsed {
            grant_id: "g-live".into()
        }
    );
    assert!(s.get_grant("g-live").await.unwrap().is_some());
    assert_eq!(
        s.collect_garbage(NOW + 2 * grace).await.unwrap(),
        2,
        "c-live and g-live"
    );
}

// ---------------------------------------------------------------------------------- races

/// Runs `N` copies of `op`, alternating between the two stores (two pools: two "nodes").
async fn race<T, F, Fut>(a: Arc<dyn Store>, b: Arc<dyn Store>, op: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Store>, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let mut tasks = Vec::with_capacity(N);
    for i in 0..N {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let fut = op(store, i);
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            fut.await
        }));
    }
    let mut out = Vec::with_capacity(N);
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

async fn concurrent_redeem_two_nodes(h: Arc<Harness>) {
    let (a, b) = (h.store(), h.other_node().await);
    for (round, (x, y)) in [(a.clone(), a.clone()), (a, b)].into_iter().enumerate() {
        let hash = format!("code-{round}");
        x.put_code(&code(&hash, "g1", NOW + 60)).await.unwrap();
        let results = race(x, y, move |s, _| {
            let hash = hash.clone();
            async move { s.redeem_code(&hash, NOW).await.unwrap() }
        })
        .await;
        let redeemed = results
            .iter()
            .filter(|r| matches!(r, CodeRedemption::Redeemed(_)))
            .count();
        let reused = results
            .iter()
            .filter(|r| matches!(r, CodeRedemption::AlreadyUsed { grant_id } if grant_id == "g1"))
            .count();
        assert_eq!((redeemed, reused), (1, N - 1), "round {round}");
    }
}

async fn concurrent_remember_once_two_nodes(h: Arc<Harness>) {
    let (a, b) = (h.store(), h.other_node().await);
    for (round, (x, y)) in [(a.clone(), a.clone()), (a, b)].into_iter().enumerate() {
        let key = format!("jti-{round}");
        let results = race(x.clone(), y.clone(), move |s, _| {
            let key = key.clone();
            async move { s.remember_once(&key, NOW + 60, NOW).await.unwrap() }
        })
        .await;
        assert_eq!(
            results.iter().filter(|first| **first).count(),
            1,
            "round {round}"
        );
        // An expired entry, raced: again exactly one winner.
        let key = format!("jti-{round}");
        let results = race(x, y, move |s, _| {
            let key = key.clone();
            async move { s.remember_once(&key, NOW + 600, NOW + 60).await.unwrap() }
        })
        .await;
        assert_eq!(
            results.iter().filter(|first| **first).count(),
            1,
            "round {round} expired"
        );
    }
}

async fn concurrent_rotation_two_nodes(h: Arc<Harness>) {
    let (a, b) = (h.store(), h.other_node().await);
    a.put_grant(&grant("g1", NOW + HOUR)).await.unwrap();
    for (round, (x, y)) in [(a.clone(), a.clone()), (a.clone(), b)]
        .into_iter()
        .enumerate()
    {
        let old = format!("rt-{round}");
        x.put_refresh_token(&refresh(&old, "g1", NOW + HOUR))
            .await
            .unwrap();
        let results = race(x, y, move |s, i| {
            let old = old.clone();
            async move {
                let new = refresh(&format!("rt-{round}-{i}"), "g1", NOW + HOUR);
                s.rotate_refresh_token(&old, &new, NOW).await.unwrap()
            }
        })
        .await;
        let rotated: Vec<&RefreshToken> = results
            .iter()
            .filter_map(|r| match r {
                RefreshRotation::Rotated(t) => Some(t),
                _ => None,
            })
            .collect();
        let reused = results
            .iter()
            .filter(|r| matches!(r, RefreshRotation::Reused { grant_id } if grant_id == "g1"))
            .count();
        assert_eq!((rotated.len(), reused), (1, N - 1), "round {round}");
        // Exactly the winner's new token exists.
        let mut live = 0;
        for i in 0..N {
            if a.get_refresh_token(&format!("rt-{round}-{i}"))
                .await
                .unwrap()
                .is_some()
            {
                live += 1;
            }
        }
        assert_eq!(live, 1, "round {round}");
        assert!(
            a.get_refresh_token(&rotated[0].token_hash)
                .await
                .unwrap()
                .is_some()
        );
    }
}

/// Revoking a grant while another node rotates one of its tokens never leaves a live token.
async fn revocation_races_rotation(h: Arc<Harness>) {
    let (a, b) = (h.store(), h.other_node().await);
    for round in 0..20 {
        let gid = format!("g-{round}");
        a.put_grant(&grant(&gid, NOW + HOUR)).await.unwrap();
        a.put_refresh_token(&refresh(&format!("{gid}-old"), &gid, NOW + HOUR))
            .await
            .unwrap();
        let (rot, rev) = {
            let (gid1, gid2) = (gid.clone(), gid.clone());
            let b = b.clone();
            let a2 = a.clone();
            let rot = tokio::spawn(async move {
                let new = refresh(&format!("{gid1}-new"), &gid1, NOW + HOUR);
                b.rotate_refresh_token(&format!("{gid1}-old"), &new, NOW)
                    .await
                    .unwrap()
            });
            let rev = tokio::spawn(async move { a2.revoke_grant(&gid2, NOW).await.unwrap() });
            (rot.await.unwrap(), rev.await.unwrap())
        };
        let () = rev;
        assert!(matches!(
            rot,
            RefreshRotation::Rotated(_) | RefreshRotation::NotFound
        ));
        assert_eq!(
            a.get_refresh_token(&format!("{gid}-new")).await.unwrap(),
            None,
            "round {round}"
        );
        assert_eq!(
            a.get_refresh_token(&format!("{gid}-old")).await.unwrap(),
            None,
            "round {round}"
        );
    }
}

async fn concurrent_put_meta_if_absent_two_nodes_agree(h: Arc<Harness>) {
    let (a, b) = (h.store(), h.other_node().await);
    let results = race(a.clone(), b, |s, i| async move {
        s.put_meta_if_absent("master", &json!({ "node": i }))
            .await
            .unwrap()
    })
    .await;
    let stored = a.get_meta("master").await.unwrap().unwrap();
    assert!(
        results.iter().all(|v| *v == stored),
        "all nodes agree on {stored}"
    );
}

/// 64 concurrent requests of read-then-write transactions and single writes: none fails
/// (on SQLite: no SQLITE_BUSY).
async fn concurrent_mixed_writes_all_succeed(s: Arc<dyn Store>) {
    s.put_session(&session("s", NOW + HOUR)).await.unwrap();
    for i in 0..8 {
        s.put_grant(&grant(&format!("g{i}"), NOW + HOUR))
            .await
            .unwrap();
        s.put_refresh_token(&refresh(&format!("t{i}"), &format!("g{i}"), NOW + HOUR))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..64usize {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.add_session_client("s", &format!("client-{i}")).await?;
            s.put_consent(&format!("sub-{i}"), "app", "openid").await?;
            s.put_client(&client(&format!("c{i}"))).await?;
            match i % 4 {
                0 => s.revoke_grant(&format!("g{}", i % 8), NOW).await?,
                1 => {
                    let new = refresh(&format!("t{i}-new"), &format!("g{}", i % 8), NOW + HOUR);
                    s.rotate_refresh_token(&format!("t{}", i % 8), &new, NOW)
                        .await?;
                }
                2 => {
                    s.remember_once(&format!("k{}", i % 8), NOW + 60, NOW)
                        .await?;
                }
                _ => {
                    s.collect_garbage(NOW).await?;
                }
            }
            Ok::<(), StoreError>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let sess = s.get_session("s", NOW).await.unwrap().unwrap();
    assert_eq!(
        sess.clients.len(),
        64,
        "no lost update on the session document"
    );
    assert_eq!(s.list_clients().await.unwrap().len(), 64);
}

// ---------------------------------------------------------------------------------- durability

async fn data_survives_reopening(h: Arc<Harness>) {
    let s = h.store();
    s.create_client(&client("app")).await.unwrap();
    s.put_meta("k", &json!("v")).await.unwrap();
    s.put_code(&code("c", "g", NOW + 60)).await.unwrap();
    assert!(matches!(
        s.redeem_code("c", NOW).await.unwrap(),
        CodeRedemption::Redeemed(_)
    ));
    assert!(s.remember_once("jti-1", NOW + 600, NOW).await.unwrap());
    drop(s);
    let reopened = h.other_node().await;
    assert!(
        !reopened
            .remember_once("jti-1", NOW + 600, NOW + 1)
            .await
            .unwrap(),
        "a used jti is still used after a restart"
    );
    assert_eq!(
        reopened.get_client("app").await.unwrap(),
        Some(client("app"))
    );
    assert_eq!(reopened.get_meta("k").await.unwrap(), Some(json!("v")));
    assert_eq!(
        reopened.redeem_code("c", NOW).await.unwrap(),
        CodeRedemption::AlreadyUsed {
            grant_id: "g".into()
        }
    );
    let (applied, expected) = reopened.schema_version().await.unwrap();
    assert_eq!(applied, expected);
}

/// Another connection holds the write lock (a CLI command, a long transaction): replay checks
/// wait for it (SQLite: they fall back from the direct connection to the pooled writer) and
/// are still decided exactly once.
async fn replay_waits_for_another_writer(h: Arc<Harness>) {
    let s = h.store();
    assert!(s.remember_once("before", NOW + 600, NOW).await.unwrap());
    let release = match &h.backend {
        Backend::Sqlite { path, .. } => {
            let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut c = sqlx::SqliteConnection::connect_with(&opts)
                .await
                .expect("raw");
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .expect("take the write lock");
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                sqlx::query("COMMIT").execute(&mut c).await.expect("commit");
                c.close().await.ok();
            })
        }
        Backend::Postgres { url, .. } => {
            let mut c = sqlx::PgConnection::connect(url).await.expect("raw");
            sqlx::query("BEGIN").execute(&mut c).await.expect("begin");
            sqlx::query("LOCK TABLE replay IN EXCLUSIVE MODE")
                .execute(&mut c)
                .await
                .expect("lock replay");
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                sqlx::query("COMMIT").execute(&mut c).await.expect("commit");
                c.close().await.ok();
            })
        }
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for key in ["a", "b", "a", "before"] {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            (key, s.remember_once(key, NOW + 600, NOW).await.unwrap())
        }));
    }
    let mut firsts = Vec::new();
    for t in tasks {
        let (key, first) = t.await.expect("task");
        if first {
            firsts.push(key);
        }
    }
    firsts.sort_unstable();
    assert_eq!(firsts, ["a", "b"], "each new key once, the old one never");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the checks waited for the lock ({:?})",
        started.elapsed()
    );
    release.await.expect("release");
    assert!(!s.remember_once("b", NOW + 600, NOW).await.unwrap());
}

async fn corrupt_document_is_corrupt(h: Arc<Harness>) {
    let s = h.store();
    s.create_client(&client("app")).await.unwrap();
    s.put_meta("m", &json!(1)).await.unwrap();
    s.put_session(&session("s1", NOW + HOUR)).await.unwrap();
    h.exec_raw("UPDATE clients SET doc = '{\"client_id\": \"app\", \"redirect_uris\": 5'")
        .await;
    h.exec_raw("UPDATE meta SET value = 'not json'").await;
    h.exec_raw("UPDATE sessions SET doc = '{\"id_hash\": 1}'")
        .await;
    assert!(matches!(
        s.get_client("app").await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        s.list_clients().await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(s.get_meta("m").await, Err(StoreError::Corrupt(_))));
    assert!(matches!(
        s.get_session("s1", NOW).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        s.add_session_client("s1", "app").await,
        Err(StoreError::Corrupt(_))
    ));
    // The store keeps working for everything else.
    s.create_client(&client("fine")).await.unwrap();
    assert!(s.get_client("fine").await.unwrap().is_some());
}

// ---------------------------------------------------------------------------------- backend-specific

#[tokio::test]
async fn postgres_unreachable_is_unavailable_quickly() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // dropped: nothing listens on the port now
    let url = format!("postgres://tessera:pw-not-in-errors@127.0.0.1:{port}/tessera");
    let started = Instant::now();
    let err = PgStore::connect(&url).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    assert!(!err.to_string().contains("pw-not-in-errors"), "{err}");
    let started = Instant::now();
    let err = open_store(&url).await.err().unwrap();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

/// A server that accepts TCP connections but never answers (a hung database) is bounded too.
#[tokio::test]
async fn postgres_silent_server_is_unavailable_within_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("postgres://tessera:pw@127.0.0.1:{port}/tessera");
    let started = Instant::now();
    let err = PgStore::connect(&url).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    drop(listener);
}

#[tokio::test]
async fn postgres_bad_password_is_reported_without_secrets() {
    let Some(url) = pg_url() else { return };
    let mut url = url::Url::parse(&url).unwrap();
    url.set_password(Some("wrong-secret-xyz")).unwrap();
    let err = PgStore::connect(url.as_str()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("wrong-secret-xyz"), "{err}");
}

#[tokio::test]
async fn open_store_dispatches_and_migrates() {
    let dir = std::env::temp_dir().join(format!("tessera-store-{}", uuid::Uuid::new_v4()));
    let path = dir.join("t.db");
    let path_str = path.to_str().unwrap().to_owned();

    let unmigrated = open_store_without_migrating(&path_str).await.unwrap();
    let (applied, expected) = unmigrated.schema_version().await.unwrap();
    assert_eq!(applied, 0);
    assert!(expected >= 1);
    drop(unmigrated);

    for loc in [
        path_str.clone(),
        format!("sqlite://{path_str}"),
        format!("sqlite:{path_str}"),
    ] {
        let s = open_store(&loc).await.unwrap();
        assert_eq!(s.backend(), "sqlite");
        assert_eq!(s.schema_version().await.unwrap(), (expected, expected));
    }

    // In memory: one database across calls on the same store.
    let mem = open_store("sqlite::memory:").await.unwrap();
    mem.put_meta("k", &json!(1)).await.unwrap();
    let results = race(mem.clone(), mem.clone(), |s, _| async move {
        s.get_meta("k").await.unwrap()
    })
    .await;
    assert!(results.iter().all(|v| *v == Some(json!(1))));
    let mem2 = open_store("sqlite::memory:").await.unwrap();
    assert_eq!(
        mem2.get_meta("k").await.unwrap(),
        None,
        "separate in-memory databases"
    );

    assert!(open_store("mysql://u:p@h/db").await.is_err());
    if let Some(h) = Harness::postgres().await {
        if let Backend::Postgres { url, .. } = &h.backend {
            let s = open_store(url).await.unwrap();
            assert_eq!(s.backend(), "postgres");
            assert_eq!(s.schema_version().await.unwrap(), (expected, expected));
        }
        h.finish().await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

// ==================================================================================
// lockout (tessera_core::lockout through LockoutStore): a separate section, both backends.
// ==================================================================================

mod lockout {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tessera_core::lockout::{
        Admission, AttemptOutcome, LockoutKey, LockoutKind, LockoutPolicy, Settled,
    };
    use tessera_core::store::Store;

    use super::{Harness, NOW, run};

    macro_rules! lockout_conformance {
        (store: [$($s:ident),* $(,)?], harness: [$($h:ident),* $(,)?] $(,)?) => {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $s() {
                        super::run(Some(super::Harness::sqlite().await), |h| super::$s(h.store())).await;
                    }
                )*
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $h() {
                        super::run(Some(super::Harness::sqlite().await), super::$h).await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $s() {
                        super::run(super::Harness::postgres().await, |h| super::$s(h.store())).await;
                    }
                )*
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $h() {
                        super::run(super::Harness::postgres().await, super::$h).await;
                    }
                )*
            }
        };
    }

    lockout_conformance!(
        store: [
            lockout_lifecycle,
            lockout_200_concurrent_attempts_admit_at_most_threshold,
            lockout_records_are_collected,
        ],
        harness: [lockout_two_nodes_share_one_counter, lockout_survives_reopening],
    );

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            threshold: 5,
            ..LockoutPolicy::users()
        }
    }

    /// begin + finish, as the engine does; `Err(until)` when refused.
    async fn attempt(
        s: &Arc<dyn Store>,
        key: &LockoutKey,
        outcome: AttemptOutcome,
        now: i64,
    ) -> Result<Settled, i64> {
        let p = policy();
        match s.lockout_begin_attempt(&p, key, now).await.unwrap().0 {
            Admission::Locked { until, .. } => Err(until),
            Admission::Proceed { reserved } => Ok(s
                .lockout_finish_attempt(&p, key, reserved, outcome, Some("192.0.2.9"), now)
                .await
                .unwrap()
                .0),
        }
    }

    async fn lockout_lifecycle(s: Arc<dyn Store>) {
        let key = LockoutKey::user(" Alice ");
        for i in 1..5 {
            assert_eq!(
                attempt(&s, &key, AttemptOutcome::CredentialFailure, NOW).await,
                Ok(Settled::Counted { failures: i })
            );
        }
        // Neutral outcomes (provider unavailable, account state) change nothing.
        assert_eq!(
            attempt(&s, &key, AttemptOutcome::Neutral, NOW).await,
            Ok(Settled::Released)
        );
        let until = NOW + 1 + 1800;
        assert_eq!(
            attempt(&s, &key, AttemptOutcome::CredentialFailure, NOW + 1).await,
            Ok(Settled::LockedNow { until, failures: 5 })
        );
        assert_eq!(
            attempt(&s, &key, AttemptOutcome::Success, NOW + 2).await,
            Err(until)
        );
        let recs = s.lockout_find(LockoutKind::User, "alice").await.unwrap();
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(
            (r.failures, r.in_flight, r.locked_until, r.lock_count),
            (5, 0, Some(until), 1)
        );
        assert_eq!(r.last_failure_at, Some(NOW + 1));
        assert_eq!(r.last_source.as_deref(), Some("192.0.2.9"));
        assert!(
            s.lockout_check_locked(&key, NOW + 2)
                .await
                .unwrap()
                .is_some()
        );
        assert!(s.lockout_check_locked(&key, until).await.unwrap().is_none());
        assert_eq!(s.lockout_list(NOW + 2).await.unwrap().len(), 1);

        // Client keys per source are separate records of one name.
        let ip1 = Some([192, 0, 2, 1].into());
        let ip2 = Some([192, 0, 2, 2].into());
        let scope = tessera_core::lockout::ClientLockoutScope::ClientAndSource;
        for ip in [ip1, ip2] {
            let k = LockoutKey::client("svc", ip, scope);
            attempt(&s, &k, AttemptOutcome::CredentialFailure, NOW)
                .await
                .unwrap();
        }
        assert_eq!(
            s.lockout_find(LockoutKind::Client, "svc")
                .await
                .unwrap()
                .len(),
            2
        );

        // An administrator clears; a success resets to nothing.
        let cleared = s.lockout_clear(LockoutKind::User, "alice").await.unwrap();
        assert_eq!(cleared.len(), 1);
        assert!(
            s.lockout_find(LockoutKind::User, "alice")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            attempt(&s, &key, AttemptOutcome::CredentialFailure, NOW + 3).await,
            Ok(Settled::Counted { failures: 1 })
        );
        assert_eq!(
            attempt(&s, &key, AttemptOutcome::Success, NOW + 4).await,
            Ok(Settled::Released)
        );
        assert!(
            s.lockout_find(LockoutKind::User, "alice")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            s.lockout_clear(LockoutKind::Client, "svc")
                .await
                .unwrap()
                .len(),
            2
        );
    }

    /// 200 concurrent wrong passwords from `stores` (alternating): how many reached the
    /// "password check".
    async fn storm(stores: Vec<Arc<dyn Store>>, key: LockoutKey) -> usize {
        const ATTEMPTS: usize = 200;
        let checked = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(tokio::sync::Barrier::new(ATTEMPTS));
        let mut tasks = Vec::new();
        for i in 0..ATTEMPTS {
            let s = stores[i % stores.len()].clone();
            let (key, checked, barrier) = (key.clone(), checked.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let p = policy();
                let (admission, _) = s.lockout_begin_attempt(&p, &key, NOW).await.unwrap();
                if let Admission::Proceed { reserved } = admission {
                    checked.fetch_add(1, Ordering::SeqCst);
                    // The provider call: long enough for the others to pile up.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    s.lockout_finish_attempt(
                        &p,
                        &key,
                        reserved,
                        AttemptOutcome::CredentialFailure,
                        None,
                        NOW,
                    )
                    .await
                    .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        checked.load(Ordering::SeqCst)
    }

    async fn lockout_200_concurrent_attempts_admit_at_most_threshold(s: Arc<dyn Store>) {
        let key = LockoutKey::user("storm");
        let checked = storm(vec![s.clone()], key.clone()).await;
        assert_eq!(
            checked, 5,
            "at most the threshold reaches the password check"
        );
        let r = s
            .lockout_check_locked(&key, NOW + 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((r.failures, r.in_flight), (5, 0));
    }

    /// Two store instances (two pools: two "nodes") on one database share one counter.
    async fn lockout_two_nodes_share_one_counter(h: Arc<Harness>) {
        let (a, b) = (h.store(), h.other_node().await);
        let key = LockoutKey::user("dave");
        // Sequential: failures alternate between the nodes and add up.
        for i in 0..4 {
            let s = if i % 2 == 0 { &a } else { &b };
            attempt(s, &key, AttemptOutcome::CredentialFailure, NOW)
                .await
                .unwrap();
        }
        assert!(matches!(
            attempt(&b, &key, AttemptOutcome::CredentialFailure, NOW).await,
            Ok(Settled::LockedNow { .. })
        ));
        // Locked on node b, refused on node a.
        assert!(
            attempt(&a, &key, AttemptOutcome::Success, NOW + 1)
                .await
                .is_err()
        );
        // Concurrent, across both nodes.
        let key = LockoutKey::user("erin");
        assert_eq!(storm(vec![a.clone(), b.clone()], key.clone()).await, 5);
        assert!(
            a.lockout_check_locked(&key, NOW + 1)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            b.lockout_check_locked(&key, NOW + 1)
                .await
                .unwrap()
                .is_some()
        );
        // An unlock on one node is seen by the other.
        b.lockout_clear(LockoutKind::User, "erin").await.unwrap();
        assert!(
            a.lockout_check_locked(&key, NOW + 1)
                .await
                .unwrap()
                .is_none()
        );
    }

    async fn lockout_survives_reopening(h: Arc<Harness>) {
        let key = LockoutKey::user("frank");
        for _ in 0..5 {
            attempt(&h.store(), &key, AttemptOutcome::CredentialFailure, NOW)
                .await
                .unwrap();
        }
        let other = h.other_node().await;
        assert!(
            other
                .lockout_check_locked(&key, NOW)
                .await
                .unwrap()
                .is_some()
        );
    }

    /// A spray of unknown names leaves nothing behind once the window is over; locks stay
    /// until they end; `collect_garbage` includes lockout records.
    async fn lockout_records_are_collected(s: Arc<dyn Store>) {
        for i in 0..300 {
            let key = LockoutKey::user(&format!("nobody-{i}"));
            attempt(&s, &key, AttemptOutcome::CredentialFailure, NOW)
                .await
                .unwrap();
        }
        let locked = LockoutKey::user("locked");
        for _ in 0..5 {
            attempt(&s, &locked, AttemptOutcome::CredentialFailure, NOW)
                .await
                .unwrap();
        }
        assert_eq!(s.lockout_list(NOW).await.unwrap().len(), 301);
        assert_eq!(s.lockout_collect_expired(NOW + 299).await.unwrap(), 0);
        assert_eq!(s.lockout_collect_expired(NOW + 300).await.unwrap(), 300);
        assert_eq!(s.lockout_list(NOW + 300).await.unwrap().len(), 1);
        assert_eq!(s.collect_garbage(NOW + 1799).await.unwrap(), 0);
        assert_eq!(s.collect_garbage(NOW + 1800).await.unwrap(), 1);
        assert!(s.lockout_list(NOW).await.unwrap().is_empty());
    }
}
