use std::collections::BTreeSet;

use serde::de::DeserializeOwned;

use super::*;

const EXAMPLE: &str = include_str!("../../../../config.example.toml");
const KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn load(name: &str, toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let file = ConfigFile {
        path: PathBuf::from(name),
        contents: toml.to_owned(),
    };
    Config::load(
        Some(&file),
        &Env::from_pairs(env.iter().copied()),
        &Overrides::default(),
    )
}

fn load_err(name: &str, toml: &str, env: &[(&str, &str)]) -> String {
    load(name, toml, env)
        .expect_err("configuration should be rejected")
        .to_string()
}

/// The field names of a `deny_unknown_fields` struct, read from serde's own error message
/// ("unknown field `…`, expected one of `a`, `b`"), so the list can never go stale.
fn fields<T: DeserializeOwned>() -> BTreeSet<String> {
    let err = serde_json::from_str::<T>(r#"{"\u0001probe": 0}"#)
        .err()
        .expect("probe must fail")
        .to_string();
    let list = err
        .split("expected")
        .nth(1)
        .expect("serde lists the expected fields");
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The example with every commented-out setting (`#key = …`, `#[section]`) enabled.
fn example_uncommented() -> toml::Table {
    let text: String = EXAMPLE
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    toml::from_str(&text).expect("the uncommented example is valid TOML")
}

fn keys_of(v: &toml::Value) -> BTreeSet<String> {
    match v {
        toml::Value::Table(t) => t.keys().cloned().collect(),
        toml::Value::Array(items) => items.iter().flat_map(keys_of).collect(),
        _ => BTreeSet::new(),
    }
}

#[test]
fn example_config_loads_and_states_the_defaults() {
    let example = load("config.example.toml", EXAMPLE, &[]).unwrap();
    let defaults = Config::load(None, &Env::default(), &Overrides::default()).unwrap();
    assert_eq!(
        example.effective_toml(),
        defaults.effective_toml(),
        "the example's values must be the defaults"
    );
}

#[test]
fn example_config_documents_every_key() {
    let example = example_uncommented();
    let sections: BTreeMap<&str, BTreeSet<String>> = [
        ("log", fields::<RawLog>()),
        ("http", fields::<RawHttp>()),
        ("tokens", fields::<RawTokens>()),
        ("oauth", fields::<RawOauth>()),
        ("keys", fields::<RawKeys>()),
        ("registration", fields::<RawRegistration>()),
        ("dangerous", fields::<RawDangerous>()),
        ("clients", fields::<RawClient>()),
        (
            "trusted_issuers",
            fields::<tessera_core::assertion::TrustedIssuer>(),
        ),
        ("lockout", fields::<RawLockout>()),
        ("diagnostics", fields::<RawDiagnostics>()),
        ("egress", fields::<tessera_egress::EgressConfig>()),
        (
            "upstreams",
            fields::<tessera_core::federation::config::RawUpstream>(),
        ),
        (
            "providers",
            fields::<ProviderHeader>()
                .into_iter()
                .chain(fields::<LdapConfig>())
                .collect(),
        ),
    ]
    .into_iter()
    .collect();
    let defaults = toml::Table::try_from(RawConfig::default()).unwrap();
    for field in fields::<RawConfig>()
        .iter()
        .chain(std::iter::once(&"providers".to_owned()))
    {
        let is_section = matches!(
            defaults.get(field),
            Some(toml::Value::Table(_) | toml::Value::Array(_))
        ) || field == "providers";
        if is_section {
            let expected = sections
                .get(field.as_str())
                .unwrap_or_else(|| panic!("add section '{field}' to this test"));
            let documented = example.get(field).map(keys_of).unwrap_or_default();
            assert_eq!(
                &documented, expected,
                "keys of [{field}] in config.example.toml"
            );
        } else {
            assert!(
                example.contains_key(field),
                "config.example.toml must document top-level key '{field}'"
            );
        }
    }
    let documented_top: BTreeSet<String> = example.keys().cloned().collect();
    let known: BTreeSet<String> = fields::<RawConfig>()
        .into_iter()
        .chain(["providers".to_owned()])
        .collect();
    assert_eq!(
        documented_top, known,
        "top-level keys of config.example.toml"
    );
}

#[test]
fn example_client_and_provider_entries_have_valid_types() {
    let example = example_uncommented();
    let client = example["clients"].as_array().unwrap()[0].clone();
    client.try_into::<RawClient>().unwrap();
    let mut provider = example["providers"].as_array().unwrap()[0]
        .as_table()
        .unwrap()
        .clone();
    for k in PROVIDER_HEADER_KEYS {
        provider.remove(k);
    }
    toml::Value::Table(provider)
        .try_into::<LdapConfig>()
        .unwrap();
    example["trusted_issuers"].as_array().unwrap()[0]
        .clone()
        .try_into::<tessera_core::assertion::TrustedIssuer>()
        .unwrap();
}

#[test]
fn no_file_means_loopback_sqlite_and_a_generated_key() {
    let c = Config::load(None, &Env::default(), &Overrides::default()).unwrap();
    assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.issuer, None);
    assert_eq!(
        c.issuer_for("127.0.0.1:4321".parse().unwrap()),
        "http://127.0.0.1:4321"
    );
    assert_eq!(
        c.store.url,
        Path::new(".tessera")
            .join("tessera.db")
            .display()
            .to_string()
    );
    assert!(c.store.display.starts_with("sqlite:"));
    assert!(
        matches!(&c.master_key, MasterKeySource::File { path, generate: true } if path.ends_with("master.key"))
    );
    assert_eq!(c.signing_algs(), vec![Algorithm::ES256, Algorithm::RS256]);
    assert_eq!(c.providers.len(), 0);
    let s = c.settings("http://127.0.0.1:4321/");
    assert_eq!(s.issuer, "http://127.0.0.1:4321");
    assert_eq!(s.access_token_ttl, Settings::new("x").access_token_ttl);
}

#[test]
fn unknown_keys_are_reported_with_file_line_and_column() {
    let err = load_err(
        "conf.toml",
        "listen = \"127.0.0.1:0\"\n\n[tokens]\naccess_token_ttl = 5\nfoo = 1\n",
        &[],
    );
    assert!(
        err.starts_with("conf.toml:5:1: unknown field 'foo', expected one of"),
        "{err}"
    );
    assert!(err.contains("'access_token_ttl'"), "{err}");

    let err = load_err("conf.toml", "listen = \"127.0.0.1:0\"\nlsiten = 1\n", &[]);
    assert!(
        err.starts_with("conf.toml:2:1: unknown field 'lsiten'"),
        "{err}"
    );

    let err = load_err("conf.toml", "[tokenz]\n", &[]);
    assert!(
        err.starts_with("conf.toml:1:2: unknown field 'tokenz'"),
        "{err}"
    );

    let err = load_err(
        "conf.toml",
        "[[clients]]\nclient_id = \"a\"\nredirect_uri = []\n",
        &[],
    );
    assert!(
        err.starts_with("conf.toml:3:1: unknown field 'redirect_uri'"),
        "{err}"
    );
}

#[test]
fn syntax_and_type_errors_are_located() {
    let err = load_err("c.toml", "listen = \n", &[]);
    assert!(err.starts_with("c.toml:1:"), "{err}");
    let err = load_err("c.toml", "[tokens]\naccess_token_ttl = \"long\"\n", &[]);
    assert!(err.starts_with("c.toml:2:20:"), "{err}");
    let err = load_err("c.toml", "[tokens]\naccess_token_alg = \"none\"\n", &[]);
    assert!(err.starts_with("c.toml:2:"), "{err}");
}

const LDAP: &str = r#"
[[providers]]
kind = "local"
name = "local"
flag = "SUFFICIENT"

[[providers]]
kind = "ldap"
name = "corp"
urls = ["ldap://127.0.0.1:1"]
bind_dn = "cn=svc"
bind_password_env = "LDAP_PW"
user_base_dn = "ou=people"
"#;

#[test]
fn providers_parse_with_env_passwords_and_located_errors() {
    let c = load("p.toml", LDAP, &[("LDAP_PW", "s3cret")]).unwrap();
    assert_eq!(c.providers.len(), 2);
    assert_eq!(c.providers[0].flag, ControlFlag::Sufficient);
    assert!(matches!(c.providers[0].settings, ProviderSettings::Local));
    match &c.providers[1].settings {
        ProviderSettings::Ldap(l) => assert_eq!(l.bind_password.expose(), "s3cret"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.providers[1].flag,
        ControlFlag::Required,
        "REQUIRED is the default flag"
    );
    let shown = c.effective_toml();
    assert!(
        !shown.contains("s3cret") && shown.contains("bind_password_env = \"LDAP_PW\""),
        "{shown}"
    );

    let err = load_err("p.toml", LDAP, &[]);
    assert!(
        err.contains(
            "p.toml:12:1: providers[1].bind_password_env: environment variable LDAP_PW is not set"
        ),
        "{err}"
    );

    let bad = LDAP.replace("user_base_dn", "pool_sise = 3\nuser_base_dn");
    let err = load_err("p.toml", &bad, &[("LDAP_PW", "x")]);
    assert!(
        err.starts_with("p.toml:13:1: unknown field 'pool_sise'"),
        "{err}"
    );

    let bad = LDAP.replace("name = \"local\"", "name = \"local\"\nurls = []");
    let err = load_err("p.toml", &bad, &[("LDAP_PW", "x")]);
    assert!(err.starts_with("p.toml:5:1: unknown field 'urls'"), "{err}");

    let bad = LDAP.replace("flag = \"SUFFICIENT\"", "flag = \"sometimes\"");
    let err = load_err("p.toml", &bad, &[("LDAP_PW", "x")]);
    assert!(err.starts_with("p.toml:5:8:"), "{err}");

    let dup = LDAP.replace("name = \"corp\"", "name = \"local\"");
    let err = load_err("p.toml", &dup, &[("LDAP_PW", "x")]);
    assert!(err.contains("provider name 'local' is used twice"), "{err}");
}

#[test]
fn environment_overrides_the_file() {
    let file = "issuer = \"https://file.example.com\"\n[tokens]\naccess_token_ttl = 600\n";
    let c = load(
        "e.toml",
        file,
        &[
            ("TESSERA_ISSUER", "https://env.example.com/"),
            ("TESSERA_TOKENS__ACCESS_TOKEN_TTL", "300"),
            ("TESSERA_LOG", "debug"),
            ("TESSERA_LOG__FORMAT", "json"),
            ("TESSERA_KEYS__ALGS", "ES256, EdDSA"),
            (
                "TESSERA_REGISTRATION_INITIAL_ACCESS_TOKEN",
                "0123456789abcdef0123",
            ),
            ("TESSERA_DATABASE_URL", "postgres://u:hunter2@127.0.0.1/db"),
            ("TESSERA_MASTER_KEY", KEY),
            ("TESSERA_CONFIG", "ignored.toml"),
            ("OTHER_VARIABLE", "ignored"),
        ],
    )
    .unwrap();
    assert_eq!(c.issuer.as_deref(), Some("https://env.example.com"));
    let s = c.settings(c.issuer.as_deref().unwrap());
    assert_eq!(s.access_token_ttl, 300);
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.key_algs, vec![Algorithm::ES256, Algorithm::EdDSA]);
    assert_eq!(
        s.registration_initial_access_token
            .as_ref()
            .map(Secret::expose),
        Some("0123456789abcdef0123")
    );
    assert_eq!(c.store.display, "postgres://u:[redacted]@127.0.0.1/db");
    assert!(matches!(c.master_key, MasterKeySource::Inline(_)));
    let shown = c.effective_toml();
    for secret in ["hunter2", KEY, "0123456789abcdef0123"] {
        assert!(!shown.contains(secret), "{secret} leaked into:\n{shown}");
    }
}

#[test]
fn bad_environment_values_name_the_variable() {
    let err = load_err(
        "e.toml",
        "",
        &[("TESSERA_TOKENS__ACCESS_TOKEN_TTL", "soon")],
    );
    assert!(
        err.starts_with("TESSERA_TOKENS__ACCESS_TOKEN_TTL: "),
        "{err}"
    );
    let err = load_err("e.toml", "", &[("TESSERA_LISTN", "127.0.0.1:1")]);
    assert!(
        err.starts_with("TESSERA_LISTN: unknown field 'listn'"),
        "{err}"
    );
    let err = load_err("e.toml", "", &[("TESSERA_TOKENS__TTL", "1")]);
    assert!(
        err.starts_with("TESSERA_TOKENS__TTL: unknown field 'ttl'"),
        "{err}"
    );
    let err = load_err("e.toml", "", &[("TESSERA_CLIENTS__CLIENT_ID", "x")]);
    assert!(err.contains("only be configured in the file"), "{err}");
    let err = load_err("e.toml", "", &[("TESSERA_ISSUER", "http://id.example.com")]);
    assert!(err.starts_with("TESSERA_ISSUER: issuer: "), "{err}");
}

#[test]
fn data_dir_flag_wins() {
    let env = Env::from_pairs([("TESSERA_DATA_DIR", "/from-env")]);
    let c = Config::load(
        None,
        &env,
        &Overrides {
            data_dir: Some(PathBuf::from("/from-flag")),
        },
    )
    .unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/from-flag"));
    assert!(c.store.url.starts_with("/from-flag"));
}

#[test]
fn http_issuers_only_on_loopback() {
    for ok in [
        "http://127.0.0.1:8080",
        "http://localhost:9000/",
        "http://[::1]:80",
        "https://id.example.com/tenant",
    ] {
        let c = load("i.toml", &format!("issuer = \"{ok}\""), &[]).unwrap();
        assert!(!c.issuer.unwrap().ends_with('/'));
    }
    let err = load_err("i.toml", "\nissuer = \"http://id.example.com\"", &[]);
    assert!(
        err.starts_with("i.toml:2:1: issuer: 'http://id.example.com' uses http"),
        "{err}"
    );
    assert!(
        err.contains("dangerous.allow_http_issuer"),
        "the message names the remedy: {err}"
    );
    load(
        "i.toml",
        "issuer = \"http://id.example.com\"\n[dangerous]\nallow_http_issuer = true",
        &[],
    )
    .unwrap();
    for bad in [
        "https://id.example.com/?x=1",
        "https://id.example.com/#f",
        "https://u:p@id.example.com",
        "ftp://x",
    ] {
        load_err("i.toml", &format!("issuer = \"{bad}\""), &[]);
    }
    let err = load_err("i.toml", "listen = \"0.0.0.0:8080\"", &[]);
    assert!(
        err.contains("issuer: not set, and listen address 0.0.0.0:8080 is not loopback"),
        "{err}"
    );
    load(
        "i.toml",
        "listen = \"0.0.0.0:8080\"\nissuer = \"https://id.example.com\"",
        &[],
    )
    .unwrap();
}

#[test]
fn semantic_checks_collect_every_problem() {
    let err = load_err(
        "s.toml",
        "listen = \"nowhere\"\n[tokens]\ncode_ttl = 6000\n[keys]\njwks_max_age = 3600\nrefresh_interval = 3000\n",
        &[],
    );
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("s.toml:1:1: listen:")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("s.toml:3:1: tokens.code_ttl:")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("s.toml:6:1: keys.refresh_interval:")),
        "{err}"
    );
    let err = load_err(
        "s.toml",
        &format!("master_key = \"{KEY}\"\nmaster_key_file = \"k\""),
        &[],
    );
    assert!(err.contains("not both"), "{err}");
    let err = load_err("s.toml", "master_key = \"short\"", &[]);
    assert!(err.contains("openssl rand -hex 32"), "{err}");
    let err = load_err(
        "s.toml",
        "[registration]\ninitial_access_token = \"short\"",
        &[],
    );
    assert!(
        err.starts_with("s.toml:2:1: registration.initial_access_token:"),
        "{err}"
    );
    let err = load_err("s.toml", "[log]\nlevel = \"[[[\"", &[]);
    assert!(err.contains("log.level"), "{err}");
    let err = load_err("s.toml", "[tokens]\naccess_token_alg = \"HS256\"", &[]);
    assert!(err.contains("symmetric"), "{err}");
}

const CLIENT: &str = r#"
[[clients]]
client_id = "jira"
client_name = "Jira"
client_secret_env = "JIRA_SECRET"
redirect_uris = ["https://jira.example.com/cb"]
grant_types = ["authorization_code", "refresh_token"]
first_party = true
"#;

#[test]
fn configured_clients_are_validated_and_take_secrets_from_the_environment() {
    let secret = "x".repeat(40);
    let c = load("c.toml", CLIENT, &[("JIRA_SECRET", secret.as_str())]).unwrap();
    let jira = &c.clients[0];
    assert_eq!(jira.client.client_id, "jira");
    assert_eq!(
        jira.client.origin,
        tessera_core::model::ClientOrigin::Config
    );
    assert!(jira.client.first_party);
    assert_eq!(jira.client.response_types, vec!["code"]);
    assert_eq!(
        jira.secret.as_ref().map(Secret::expose),
        Some(secret.as_str())
    );

    let err = load_err("c.toml", CLIENT, &[]);
    assert!(
        err.starts_with(
            "c.toml:5:1: clients[0].client_secret_env: environment variable JIRA_SECRET is not set"
        ),
        "{err}"
    );
    let err = load_err("c.toml", CLIENT, &[("JIRA_SECRET", "short")]);
    assert!(err.contains("shorter than 32"), "{err}");
    let err = load_err(
        "c.toml",
        &CLIENT.replace("https://jira", "http://jira"),
        &[("JIRA_SECRET", secret.as_str())],
    );
    assert!(err.starts_with("c.toml:2:1: clients[0]: "), "{err}");
    assert!(err.contains("https"), "{err}");
    let public = CLIENT.replace(
        "client_secret_env = \"JIRA_SECRET\"",
        "token_endpoint_auth_method = \"none\"",
    );
    let c = load("c.toml", &public, &[]).unwrap();
    assert!(c.clients[0].secret.is_none() && c.clients[0].client.require_pkce);
    let err = load_err(
        "c.toml",
        &format!("{CLIENT}{}", CLIENT),
        &[("JIRA_SECRET", secret.as_str())],
    );
    assert!(err.contains("declared twice"), "{err}");
    let err = load_err(
        "c.toml",
        &CLIENT.replace("\"jira\"", "\"has space\""),
        &[("JIRA_SECRET", secret.as_str())],
    );
    assert!(err.contains("clients[0].client_id"), "{err}");
    let literal = CLIENT.replace(
        "client_secret_env = \"JIRA_SECRET\"",
        &format!("client_secret = \"{secret}\""),
    );
    let c = load("c.toml", &literal, &[]).unwrap();
    assert!(!c.effective_toml().contains(&secret));
}

#[test]
fn env_candidates_follow_the_current_type() {
    let int = toml::Value::Integer(1);
    assert_eq!(
        env_candidates(Some(&int), "42")[0],
        toml::Value::Integer(42)
    );
    let list = toml::Value::Array(vec![]);
    assert_eq!(
        env_candidates(Some(&list), "a, b")[0],
        toml::Value::Array(vec![
            toml::Value::String("a".into()),
            toml::Value::String("b".into())
        ])
    );
    assert_eq!(
        env_candidates(None, "123")[0],
        toml::Value::String("123".into())
    );
    assert_eq!(env_candidates(None, "123")[1], toml::Value::Integer(123));
}

#[test]
fn url_passwords_are_redacted() {
    assert_eq!(
        redact_url_password("postgres://u:p@h:5432/db"),
        "postgres://u:[redacted]@h:5432/db"
    );
    assert_eq!(redact_url_password("postgres://h/db"), "postgres://h/db");
    assert_eq!(redact_url_password("relative/path.db"), "relative/path.db");
}

#[test]
fn trusted_issuers_are_validated_with_located_errors() {
    use tessera_core::assertion::{AllowedClients, TrustedAudience};
    let key = tessera_jose::SigningKey::generate(Algorithm::ES256, "sts-1").unwrap();
    let jwk = serde_json::to_string(&key.public_jwk()).unwrap();
    let jwks = format!("{{\"keys\":[{jwk}]}}");
    let jwks_toml = toml::Value::String(jwks).to_string();
    let toml = format!(
        r#"
[oauth]
accept_google_audience = false

[[trusted_issuers]]
issuer = "https://sts.example.com"
jwks = {jwks_toml}
audience = "issuer"
allowed_subjects = ["svc-*"]
allowed_clients = "any"
max_lifetime = 300

[[trusted_issuers]]
issuer = "https://other.example.com"
jwks_uri = "https://other.example.com/jwks"
"#,
    );
    let c = load("t.toml", &toml, &[]).unwrap();
    let s = c.settings("https://id.example.com");
    assert!(!s.accept_google_audience);
    assert_eq!(s.trusted_issuers.len(), 2);
    let t = &s.trusted_issuers[0];
    assert!(
        t.jwks.as_ref().is_some_and(|j| j.is_object()),
        "JSON string parsed"
    );
    assert_eq!(t.audience, TrustedAudience::Issuer);
    assert_eq!(t.allowed_clients, AllowedClients::Any);
    assert_eq!(t.max_lifetime, Some(300));
    assert_eq!(s.trusted_issuers[1].audience, TrustedAudience::Either);
    assert!(
        c.effective_toml()
            .contains("https://other.example.com/jwks")
    );
    assert!(
        Config::load(None, &Env::default(), &Overrides::default())
            .unwrap()
            .settings("https://id.example.com")
            .accept_google_audience,
        "accept_google_audience defaults to true"
    );

    // The core's rules, located at the entry.
    let two_sources = toml.replace(
        "jwks_uri = \"https://other.example.com/jwks\"",
        "jwks_uri = \"https://other.example.com/jwks\"\npublic_key_pem = \"x\"",
    );
    let err = load_err("t.toml", &two_sources, &[]);
    assert!(
        err.starts_with("t.toml:13:1: trusted_issuers[1]: trusted issuer 'https://other.example.com': exactly one of"),
        "{err}"
    );
    let err = load_err(
        "t.toml",
        &toml.replace("max_lifetime = 300", "algorithms = [\"HS256\"]"),
        &[],
    );
    assert!(
        err.contains("trusted_issuers[0]: ") && err.contains("asymmetric"),
        "{err}"
    );
    let err = load_err("t.toml", &toml.replace(&jwks_toml, "\"not json\""), &[]);
    assert!(
        err.contains("trusted_issuers[0]: jwks is a string but not a JSON JWK Set"),
        "{err}"
    );
    // Unknown keys and bad values: located by the parser.
    let err = load_err(
        "t.toml",
        &toml.replace("max_lifetime = 300", "max_lifetme = 300"),
        &[],
    );
    assert!(
        err.starts_with("t.toml:") && err.contains("max_lifetme"),
        "{err}"
    );
    let err = load_err(
        "t.toml",
        &toml.replace("allowed_clients = \"any\"", "allowed_clients = \"anyone\""),
        &[],
    );
    assert!(
        err.starts_with("t.toml:") && err.contains("allowed_clients"),
        "{err}"
    );
    // Duplicates.
    let dup = toml.replace("https://other.example.com\"", "https://sts.example.com\"");
    let err = load_err("t.toml", &dup, &[]);
    assert!(
        err.contains(
            "trusted_issuers[1].issuer: issuer 'https://sts.example.com' is declared twice"
        ),
        "{err}"
    );
    // File only.
    let err = load_err("t.toml", "", &[("TESSERA_TRUSTED_ISSUERS", "[]")]);
    assert!(
        err.contains("[[trusted_issuers]] can only be configured in the file"),
        "{err}"
    );
    // The environment still works with trusted issuers present (the overlay round-trips them).
    let c = load("t.toml", &toml, &[("TESSERA_OAUTH__CLOCK_SKEW", "30")]).unwrap();
    assert_eq!(
        c.settings("https://id.example.com").trusted_issuers.len(),
        2
    );
}

#[test]
fn a_client_id_token_alg_needs_a_signing_key() {
    let secret = "x".repeat(40);
    let env = [("JIRA_SECRET", secret.as_str())];
    let eddsa = format!("{CLIENT}id_token_signed_response_alg = \"EdDSA\"\n");
    let err = load_err("c.toml", &eddsa, &env);
    assert!(
        err.contains("clients[0].id_token_signed_response_alg") && err.contains("keys.algs"),
        "{err}"
    );
    let with_key = format!("[keys]\nalgs = [\"ES256\", \"RS256\", \"EdDSA\"]\n{eddsa}");
    let c = load("c.toml", &with_key, &env).unwrap();
    assert!(c.signing_algs().contains(&Algorithm::EdDSA));
    // ES256 always has a key (it signs access tokens).
    let es = format!("{CLIENT}id_token_signed_response_alg = \"ES256\"\n");
    assert!(load("c.toml", &es, &env).is_ok());
}

#[test]
fn lockout_policies_that_cannot_work_are_refused() {
    for (toml, key) in [
        ("[lockout.users]\nthreshold = 0\n", "lockout.users"),
        ("[lockout.users]\nlock_duration = 0\n", "lockout.users"),
        (
            "[lockout.clients]\nprogressive = { factor = 0, max = 3600 }\n",
            "lockout.clients.progressive",
        ),
        (
            "[lockout.users]\nlock_duration = 600\nprogressive = { factor = 2, max = 60 }\n",
            "lockout.users.progressive",
        ),
    ] {
        let err = load_err("l.toml", toml, &[]);
        assert!(err.contains(key), "{toml}: {err}");
    }
    // Disabled or monitor-only policies are fine as they are.
    assert!(
        load(
            "l.toml",
            "[lockout.users]\nenabled = false\nthreshold = 0\n",
            &[]
        )
        .is_ok()
    );
    assert!(
        load(
            "l.toml",
            "[lockout.users]\nprogressive = { factor = 2, max = 86400 }\n",
            &[]
        )
        .is_ok()
    );
}
