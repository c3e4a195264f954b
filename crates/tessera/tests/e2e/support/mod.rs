//! The end-to-end harness.
//!
//! - [`TestServer`]: the whole server built in process (same composition root as `tessera
//!   serve`) on `127.0.0.1:0`, with a temporary SQLite database, or a fresh PostgreSQL database
//!   when a test asks for it and `TEST_DATABASE_URL` is set. It exposes the engine and store for
//!   set-up, a `reqwest` client, and stops when dropped.
//! - [`Tessera`] and [`ServeProcess`]: the real `tessera` binary, for tests of the CLI itself.
//! - [`browser::Browser`]: a cookie-keeping client for the flows through the pages.
//! - [`logs::Logs`]: what the server logs during a test.
//! - [`slapd::Slapd`]: a private OpenLDAP server.

#![allow(dead_code)] // each test uses a different part of the harness

pub mod browser;
pub mod interop;
pub mod logs;
pub mod process;
pub mod slapd;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Once};

use base64::Engine as _;
use serde_json::{Value, json};
use sqlx::Connection;
use tessera::app::{App, RunningServer, start};
use tessera::config::{Config, ConfigFile, Env, Overrides};
use tessera_core::Engine;
use tessera_core::clock::{ManualClock, SharedClock, SystemClock};
use tessera_core::model::{Client, ClientOrigin, User};
use tessera_core::registration::{client_from_metadata, set_new_secret};
use tessera_core::secret::Secret;
use tessera_core::store::Store;

pub use process::Tessera;

/// The master key of every test server (tests may share a PostgreSQL server).
pub const TEST_MASTER_KEY: &str =
    "7e57000000000000000000000000000000000000000000000000000000007e57";

/// How a [`TestServer`] is set up. `TestServer::start(fragment)` covers the common case.
#[derive(Debug, Default)]
pub struct Options {
    /// TOML appended to the harness's own keys (`listen`, `data_dir`, `master_key`, and
    /// `database_url` on PostgreSQL), so it must not set those.
    pub config: String,
    /// Run on PostgreSQL (a fresh database on `TEST_DATABASE_URL`).
    pub postgres: bool,
    /// A clock the test controls (key rotation, expiry); default: the system clock.
    pub clock: Option<ManualClock>,
    /// Issuer `http://localhost:PORT` instead of `http://127.0.0.1:PORT` (still bound to
    /// 127.0.0.1): a browser keeps cookies per host, not per port, so two servers a browser
    /// visits in one flow need different host names.
    pub localhost: bool,
}

/// A client created for a test, with its plaintext secret.
#[derive(Debug, Clone)]
pub struct TestClient {
    pub client_id: String,
    pub secret: Option<String>,
    pub client: Client,
}

pub struct TestServer {
    /// The issuer, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub base_url: String,
    pub addr: SocketAddr,
    pub app: App,
    pub http: reqwest::Client,
    /// Set when the test asked for a manual clock.
    pub clock: Option<ManualClock>,
    server: Option<RunningServer>,
    postgres_db: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// A server on SQLite with `config` (a TOML fragment, may be empty).
    pub async fn start(config: &str) -> TestServer {
        Self::start_with(Options {
            config: config.to_owned(),
            ..Options::default()
        })
        .await
        .expect("a SQLite test server always starts")
    }

    /// Two nodes of one cluster: both on the same fresh PostgreSQL database (and master key),
    /// each with `config`. `None` as for [`TestServer::start_with`] without PostgreSQL.
    pub async fn start_postgres_pair(config: &str) -> Option<(TestServer, TestServer)> {
        let node_a = TestServer::start_with(Options {
            postgres: true,
            config: config.to_owned(),
            ..Options::default()
        })
        .await?;
        let node_b = TestServer::start_with(Options {
            config: format!(
                "database_url = {}\n{config}",
                toml_string(&node_a.app.config.store.url)
            ),
            ..Options::default()
        })
        .await
        .expect("second node");
        assert_eq!(node_b.store().backend(), "postgres");
        Some((node_a, node_b))
    }

    /// `None` only when PostgreSQL was asked for and `TEST_DATABASE_URL` is not set (the test
    /// should return early; a notice is printed once).
    pub async fn start_with(options: Options) -> Option<TestServer> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut toml = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {}\nmaster_key = \"{TEST_MASTER_KEY}\"\n",
            toml_string(&dir.path().display().to_string())
        );
        let mut postgres_db = None;
        if options.postgres {
            let (admin_url, db, url) = create_postgres_database().await?;
            toml.push_str(&format!("database_url = {}\n", toml_string(&url)));
            postgres_db = Some((admin_url, db));
        }
        toml.push_str(&options.config);
        let file = ConfigFile {
            path: "test.toml".into(),
            contents: toml,
        };
        let config = Config::load(Some(&file), &Env::default(), &Overrides::default())
            .unwrap_or_else(|e| panic!("test configuration rejected:\n{e}"));
        let config = Arc::new(config);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let issuer = if options.localhost {
            format!("http://localhost:{}", addr.port())
        } else {
            config.issuer_for(addr)
        };
        let clock: SharedClock = match &options.clock {
            Some(c) => Arc::new(c.clone()),
            None => Arc::new(SystemClock),
        };
        let app = App::open(config, &issuer, clock).await.expect("open app");
        app.prepare_to_serve().await.expect("prepare to serve");
        let server = start(&app, listener).expect("start server");
        Some(TestServer {
            base_url: issuer,
            addr,
            app,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            clock: options.clock,
            server: Some(server),
            postgres_db,
            _dir: dir,
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.app.engine
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.app.engine.store
    }

    /// `path` relative to the issuer, e.g. `url("/token")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Register a client from RFC 7591 metadata (validated like every other client) with a
    /// random id; a secret is generated when its auth method uses one.
    pub async fn create_client(&self, metadata: Value) -> TestClient {
        let engine = self.engine();
        let mut client =
            client_from_metadata(&metadata, &engine.settings).expect("valid client metadata");
        client.client_id = format!("c-{}", uuid::Uuid::new_v4().simple());
        client.client_id_issued_at = engine.now();
        client.origin = ClientOrigin::Cli;
        let secret = client
            .token_endpoint_auth_method
            .uses_secret()
            .then(|| set_new_secret(engine, &mut client).expect("secret"));
        engine
            .store
            .create_client(&client)
            .await
            .expect("store client");
        TestClient {
            client_id: client.client_id.clone(),
            secret,
            client,
        }
    }

    /// A confidential web application (`client_secret_basic`, code and refresh grants) with
    /// one redirect URI and one post-logout redirect URI; `first_party` skips consent.
    pub async fn create_web_client(
        &self,
        name: &str,
        redirect_uri: &str,
        post_logout_redirect_uri: &str,
        first_party: bool,
    ) -> TestClient {
        let mut c = self
            .create_client(json!({
                "client_name": name,
                "redirect_uris": [redirect_uri],
                "post_logout_redirect_uris": [post_logout_redirect_uri],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "client_secret_basic",
            }))
            .await;
        c.client.first_party = first_party;
        self.store()
            .put_client(&c.client)
            .await
            .expect("store client");
        c
    }

    /// A confidential `client_credentials` client using `client_secret_basic`.
    pub async fn create_service_client(&self) -> TestClient {
        self.create_client(json!({
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .await
    }

    /// A local user with this password.
    pub async fn create_user(&self, username: &str, password: &str) -> User {
        let engine = self.engine();
        let now = engine.now();
        let user = User {
            username: username.to_owned(),
            subject: uuid::Uuid::new_v4().to_string(),
            password_hash: Some(engine.passwords.hash(&Secret::new(password)).expect("hash")),
            email: Some(format!("{username}@example.com")),
            created_at: now,
            updated_at: now,
            ..User::default()
        };
        engine.store.create_user(&user).await.expect("store user");
        user
    }

    /// POST a form to `path` with optional HTTP Basic client authentication.
    pub async fn post_form(
        &self,
        path: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.http.post(self.url(path)).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        req.send().await.expect("request")
    }

    /// A `client_credentials` token request with `client_secret_basic`.
    pub async fn client_credentials(
        &self,
        client: &TestClient,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(extra);
        let secret = client.secret.as_deref().expect("client has a secret");
        self.post_form("/token", Some((&client.client_id, secret)), &form)
            .await
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let resp = self.http.get(self.url(path)).send().await.expect("request");
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.expect("json body")
    }

    /// Stop the server now (dropping it does the same without waiting).
    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        drop(self.server.take());
        if let Some((admin_url, db)) = self.postgres_db.take() {
            drop_postgres_database(admin_url, db);
        }
    }
}

/// The decoded header and claims of a compact JWS (no verification).
pub fn jwt_parts(jwt: &str) -> (Value, Value) {
    let mut parts = jwt.split('.');
    let mut decode = || -> Value {
        let part = parts.next().expect("JWT part");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    let header = decode();
    let claims = decode();
    (header, claims)
}

/// A TOML basic string.
pub fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn postgres_admin_url() -> Option<String> {
    static NOTICE: Once = Once::new();
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("TESSERA_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("TESSERA_TEST_REQUIRE_SERVICES=1 but TEST_DATABASE_URL is not set");
            }
            NOTICE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "skipping PostgreSQL end-to-end tests: TEST_DATABASE_URL not set"
                );
            });
            None
        }
    }
}

/// A fresh database per server: (admin URL, database name, URL of the new database).
async fn create_postgres_database() -> Option<(String, String, String)> {
    let admin_url = postgres_admin_url()?;
    let db = format!("e2e_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{db}"));
    Some((admin_url, db, url.to_string()))
}

/// Best effort, from `Drop`: on its own thread and runtime.
fn drop_postgres_database(admin_url: String, db: String) {
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            if let Ok(mut c) = sqlx::PgConnection::connect(&admin_url).await {
                let sql = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                c.close().await.ok();
            }
        });
    })
    .join();
}
