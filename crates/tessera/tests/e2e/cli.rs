//! The CLI and configuration, through the real `tessera` binary.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Tessera, jwt_parts};

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A `client_credentials` token request with HTTP Basic authentication.
async fn token(token_url: &str, client_id: &str, secret: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(token_url)
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request")
}

/// The value after `label` on the line that starts with it (after indentation).
fn value_after(output: &str, label: &str) -> String {
    output
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' in:\n{output}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn zero_config_serve_starts_prints_the_issuer_and_stops_on_sigterm() {
    let dir = temp();
    // No configuration at all; only the port is freed up so parallel runs cannot collide.
    let tessera = Tessera::new(dir.path()).env("TESSERA_LISTEN", "127.0.0.1:0");
    let server = tessera.serve(&["serve"]);
    let url = server.listen_url();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    assert_eq!(
        server.issuer(),
        url,
        "default issuer is the loopback listen address"
    );
    let line = server.output.last().unwrap().clone();
    assert!(
        line.ends_with("store sqlite:.tessera/tessera.db)"),
        "{line}"
    );

    let discovery: Value = reqwest::get(format!("{url}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], Value::String(url.clone()));
    assert_eq!(
        discovery["token_endpoint"],
        Value::String(format!("{url}/token"))
    );

    let data = dir.path().join(".tessera");
    assert!(data.join("tessera.db").is_file());
    let key = data.join("master.key");
    assert!(key.is_file(), "master key generated on first start");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
    let status = server.terminate();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");

    // A second start reuses the key and the keys in the database.
    let key_before = std::fs::read_to_string(&key).unwrap();
    let again = tessera.serve(&["serve"]);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), key_before);
    drop(again);
}

#[tokio::test]
async fn quickstart_prints_a_curl_command_that_works_and_is_idempotent() {
    let dir = temp();
    let tessera = Tessera::new(dir.path()).env("TESSERA_LISTEN", "127.0.0.1:0");
    let data_dir = dir.path().join("data");
    let data_dir = data_dir.to_str().unwrap();

    let server = tessera.serve(&["--data-dir", data_dir, "quickstart"]);
    let out = server.output.join("\n");
    let curl = value_after(&out, "curl ");
    // curl -u demo:SECRET -d grant_type=client_credentials URL
    let words: Vec<&str> = curl.split_whitespace().collect();
    assert_eq!(words.len(), 5, "{curl}");
    assert_eq!(
        (words[0], words[2], words[3]),
        ("-u", "-d", "grant_type=client_credentials")
    );
    let (client_id, secret) = words[1].split_once(':').unwrap();
    assert_eq!(client_id, "demo");
    assert_eq!(words[4], format!("{}/token", server.issuer()));
    assert_eq!(value_after(&out, "client_secret"), secret);
    assert!(!value_after(&out, "password").is_empty());

    let resp = token(words[4], client_id, secret).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["access_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    drop(server);

    // Second run: the client exists; its secret is rotated so a working one can be printed.
    let server = tessera.serve(&["--data-dir", data_dir, "serve", "--quickstart"]);
    let out = server.output.join("\n");
    assert!(out.contains("demo client already existed"), "{out}");
    let new_secret = value_after(&out, "client_secret");
    assert_ne!(new_secret, secret);
    let token_url = format!("{}/token", server.issuer());
    assert_eq!(token(&token_url, "demo", &new_secret).await.status(), 200);
    assert_eq!(
        token(&token_url, "demo", secret).await.status(),
        401,
        "the old secret no longer works"
    );
}

#[test]
fn config_check_rejects_unknown_keys_with_file_and_line() {
    let dir = temp();
    let tessera = Tessera::new(dir.path());
    std::fs::write(
        dir.path().join("tessera.toml"),
        "listen = \"127.0.0.1:0\"\n\n[tokens]\naccess_token_ttl = 300\nacess_token_alg = \"ES256\"\n",
    )
    .unwrap();
    let run = tessera.run(&["--config", "tessera.toml", "config", "check"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("tessera.toml:5:1: unknown field 'acess_token_alg', expected one of"),
        "{}",
        run.stderr()
    );

    // The same through TESSERA_CONFIG, and a valid file prints the effective config, redacted.
    std::fs::write(
        dir.path().join("good.toml"),
        "master_key = \"1111111111111111111111111111111111111111111111111111111111111111\"\n",
    )
    .unwrap();
    let run = tessera
        .clone()
        .env("TESSERA_CONFIG", "good.toml")
        .run(&["config", "check"])
        .ok();
    assert!(
        run.stdout().contains("configuration OK (good.toml)"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout().contains("master_key = \"[redacted]\""),
        "{}",
        run.stdout()
    );
    assert!(!run.stdout().contains("1111111111"), "{}", run.stdout());

    // A bad environment variable names itself; a missing file is a user error too.
    let run = tessera
        .clone()
        .env("TESSERA_TOKENS__ACCESS_TOKEN_TL", "5")
        .run(&["config", "check"]);
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr()
            .contains("TESSERA_TOKENS__ACCESS_TOKEN_TL: unknown field"),
        "{}",
        run.stderr()
    );
    let run = tessera.run(&["--config", "missing.toml", "config", "check"]);
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr()
            .contains("missing.toml: cannot read configuration file"),
        "{}",
        run.stderr()
    );
    let run = tessera.run(&["no-such-command"]);
    assert_eq!(run.code(), 1, "usage errors are user errors");
}

#[tokio::test]
async fn environment_overrides_win_over_the_file() {
    let dir = temp();
    std::fs::write(
        dir.path().join("tessera.toml"),
        "listen = \"127.0.0.1:1\"\n[tokens]\naccess_token_ttl = 600\n",
    )
    .unwrap();
    let tessera = Tessera::new(dir.path())
        .env("TESSERA_LISTEN", "127.0.0.1:0")
        .env("TESSERA_TOKENS__ACCESS_TOKEN_TTL", "120");
    let check = tessera
        .run(&["--config", "tessera.toml", "config", "check"])
        .ok();
    assert!(
        check.stdout().contains("access_token_ttl = 120"),
        "{}",
        check.stdout()
    );
    assert!(
        check.stdout().contains("listen = \"127.0.0.1:0\""),
        "{}",
        check.stdout()
    );

    let server = tessera.serve(&["--config", "tessera.toml", "quickstart"]);
    let out = server.output.join("\n");
    let resp = token(
        &format!("{}/token", server.issuer()),
        "demo",
        &value_after(&out, "client_secret"),
    )
    .await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["expires_in"], 120, "{body}");
}

#[tokio::test]
async fn client_add_prints_a_secret_that_works_at_the_token_endpoint() {
    let dir = temp();
    let tessera = Tessera::new(dir.path()).env("TESSERA_LISTEN", "127.0.0.1:0");
    let add = tessera
        .run(&[
            "client",
            "add",
            "billing",
            "--grant",
            "client_credentials",
            "--scope",
            "profile",
        ])
        .ok();
    let secret = value_after(&add.stdout(), "client_secret:");
    assert_eq!(value_after(&add.stdout(), "client_id:"), "billing");

    let again = tessera.run(&["client", "add", "billing", "--grant", "client_credentials"]);
    assert_eq!(again.code(), 1);
    assert!(
        again.stderr().contains("client 'billing' already exists"),
        "{}",
        again.stderr()
    );
    let bad = tessera.run(&[
        "client",
        "add",
        "web",
        "--redirect-uri",
        "http://app.example.com/cb",
    ]);
    assert_eq!(bad.code(), 1);
    assert!(bad.stderr().contains("https"), "{}", bad.stderr());

    let list = tessera.run(&["client", "list", "--json"]).ok();
    let clients: Value = serde_json::from_str(&list.stdout()).unwrap();
    let billing = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == "billing")
        .unwrap();
    assert_eq!(
        billing["grant_types"],
        serde_json::json!(["client_credentials"])
    );
    assert!(!list.stdout().contains(&secret), "secrets are never listed");
    let show = tessera.run(&["client", "show", "billing"]).ok();
    assert!(
        show.stdout().contains("client_secret_basic"),
        "{}",
        show.stdout()
    );
    assert_eq!(tessera.run(&["client", "show", "nobody"]).code(), 1);

    let server = tessera.serve(&["serve"]);
    let token_url = format!("{}/token", server.issuer());
    let resp = token(&token_url, "billing", &secret).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["scope"], "profile");
    drop(server);

    tessera.run(&["client", "remove", "billing"]).ok();
    assert_eq!(tessera.run(&["client", "show", "billing"]).code(), 1);
}

/// A mistyped data directory: commands that read or change a deployment refuse it instead of
/// creating an empty database and answering "nothing" (exit 0); `add` commands create it.
#[test]
fn a_wrong_data_dir_is_named_not_created() {
    let dir = temp();
    let tessera = Tessera::new(dir.path());
    for args in [
        &["--data-dir", "nowhere", "lockout", "list"][..],
        &["--data-dir", "nowhere", "user", "list"],
        &["--data-dir", "nowhere", "client", "list"],
        &["--data-dir", "nowhere", "keys", "list"],
        &["--data-dir", "nowhere", "user", "disable", "alice"],
    ] {
        let r = tessera.run(args);
        assert_eq!(r.code(), 1, "{args:?}: {}", r.stdout());
        assert!(
            r.stderr().contains("no database at"),
            "{args:?}: {}",
            r.stderr()
        );
    }
    assert!(!dir.path().join("nowhere").exists(), "nothing was created");
    tessera
        .run_with_stdin(
            &[
                "--data-dir",
                "somewhere",
                "user",
                "add",
                "alice",
                "--password-stdin",
            ],
            "correct horse battery\n",
        )
        .ok();
    let list = tessera
        .run(&["--data-dir", "somewhere", "lockout", "list", "--json"])
        .ok();
    assert!(
        list.stdout().contains("\"locked_now\""),
        "{}",
        list.stdout()
    );
}

#[test]
fn users_are_managed_with_passwords_from_stdin() {
    let dir = temp();
    let tessera = Tessera::new(dir.path());
    let add = tessera.run_with_stdin(
        &[
            "user",
            "add",
            "alice",
            "--email",
            "alice@example.com",
            "--group",
            "admins",
            "--password-stdin",
        ],
        "correct horse battery\n",
    );
    let add = add.ok();
    assert!(
        add.stdout().contains("user 'alice' created"),
        "{}",
        add.stdout()
    );

    let no_tty = tessera.run(&["user", "add", "bob"]);
    assert_eq!(no_tty.code(), 1);
    assert!(
        no_tty.stderr().contains("--password-stdin"),
        "{}",
        no_tty.stderr()
    );
    let short = tessera.run_with_stdin(&["user", "add", "bob", "--password-stdin"], "short\n");
    assert_eq!(short.code(), 1);
    assert_eq!(
        tessera
            .run_with_stdin(
                &["user", "add", "alice", "--password-stdin"],
                "another password\n"
            )
            .code(),
        1
    );

    tessera
        .run_with_stdin(
            &["user", "passwd", "alice", "--password-stdin"],
            "a new password\n",
        )
        .ok();
    tessera.run(&["user", "disable", "alice"]).ok();
    let list = tessera.run(&["user", "list", "--json"]).ok();
    let users: Value = serde_json::from_str(&list.stdout()).unwrap();
    let alice = &users.as_array().unwrap()[0];
    assert_eq!(alice["username"], "alice");
    assert_eq!(alice["groups"], serde_json::json!(["admins"]));
    assert_eq!(alice["disabled"], true);
    assert!(
        !list.stdout().contains("argon2"),
        "password hashes are never listed"
    );
    assert_eq!(tessera.run(&["user", "disable", "nobody"]).code(), 1);
}

#[tokio::test]
async fn keys_rotate_publishes_the_new_key_before_it_signs() {
    let dir = temp();
    std::fs::write(
        dir.path().join("tessera.toml"),
        "listen = \"127.0.0.1:0\"\n[keys]\nrefresh_interval = 1\n",
    )
    .unwrap();
    let tessera = Tessera::new(dir.path());
    let server = tessera.serve(&["--config", "tessera.toml", "quickstart"]);
    let out = server.output.join("\n");
    let secret = value_after(&out, "client_secret");
    let issuer = server.issuer();
    let http = reqwest::Client::new();
    let jwks_kids = || async {
        let jwks: Value = http
            .get(format!("{issuer}/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let signing_kid = || async {
        let body: Value = token(&format!("{issuer}/token"), "demo", &secret)
            .await
            .json()
            .await
            .unwrap();
        jwt_parts(body["access_token"].as_str().unwrap()).0["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let old_kid = signing_kid().await;
    assert!(jwks_kids().await.contains(&old_kid));

    let rotate = tessera
        .run(&[
            "--config",
            "tessera.toml",
            "keys",
            "rotate",
            "--alg",
            "ES256",
        ])
        .ok();
    let new_kid = rotate
        .stdout()
        .lines()
        .find_map(|l| {
            l.strip_prefix("ES256: key ")
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no new kid in:\n{}", rotate.stdout()));

    let deadline = Instant::now() + Duration::from_secs(20);
    while !jwks_kids().await.contains(&new_kid) {
        assert!(
            Instant::now() < deadline,
            "the new key never appeared in /jwks.json"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        jwks_kids().await.contains(&old_kid),
        "the current key stays published"
    );
    assert_eq!(
        signing_kid().await,
        old_kid,
        "the new key does not sign before keys.jwks_max_age"
    );

    let list = tessera
        .run(&["--config", "tessera.toml", "keys", "list", "--json"])
        .ok();
    let keys: Value = serde_json::from_str(&list.stdout()).unwrap();
    let state = |kid: &str| {
        keys.as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state(&new_kid), "next");
    assert_eq!(state(&old_kid), "signing");
    let table = tessera
        .run(&["--config", "tessera.toml", "keys", "list"])
        .ok();
    assert!(table.stdout().starts_with("KID"), "{}", table.stdout());
}

#[test]
fn migrate_reports_the_schema_version() {
    let dir = temp();
    let run = Tessera::new(dir.path()).run(&["migrate"]).ok();
    assert!(
        run.stdout().contains("is at schema version"),
        "{}",
        run.stdout()
    );
}
