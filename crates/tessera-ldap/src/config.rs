//! `[[providers]] kind = "ldap"`: the provider's configuration, its defaults and validation.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use tessera_core::secret::Secret;

use crate::filter;

/// Default `user_filter`.
pub const DEFAULT_USER_FILTER: &str = "(&(uid={username})(objectClass=inetOrgPerson))";
/// Default `group_filter`.
pub const DEFAULT_GROUP_FILTER: &str = "(&(objectClass=groupOfNames)(member={dn}))";
/// Upper bound for `pool_size`.
pub const MAX_POOL_SIZE: usize = 64;
/// Upper bound for `cache_ttl`.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);
/// Upper bound for `cache_size`.
pub const MAX_CACHE_SIZE: usize = 1_000_000;

/// Configuration of one LDAP provider.
///
/// Durations (`connect_timeout`, `operation_timeout`, `idle_timeout`) accept a number of
/// seconds (`5`, `0.5`) or a string with a unit (`"500ms"`, `"5s"`, `"10m"`).
///
/// | field | default |
/// |---|---|
/// | `urls` | required: `ldap://host[:389]` or `ldaps://host[:636]`, tried in order |
/// | `starttls` | `false` (applies to `ldap://` URLs; `ldaps://` is always TLS) |
/// | `ca_file` | none: the system roots are trusted |
/// | `bind_dn`, `bind_password` | required (the service account that searches) |
/// | `user_base_dn` | required |
/// | `user_filter` | `(&(uid={username})(objectClass=inetOrgPerson))` |
/// | `user_scope` | `subtree` (or `one`) |
/// | `subject_attr` | `uid` |
/// | `username_attr` | `uid` |
/// | `name_attr` | `cn` |
/// | `given_name_attr` | `givenName` |
/// | `family_name_attr` | `sn` |
/// | `email_attr` | `mail` |
/// | `group_base_dn` | none: no group search |
/// | `group_filter` | `(&(objectClass=groupOfNames)(member={dn}))` |
/// | `group_name_attr` | `cn` |
/// | `memberof_attr` | none (e.g. `memberOf`: groups from the user entry, no group search) |
/// | `pool_size` | 6 (1..=64), per pool: service connections and user-bind connections |
/// | `idle_timeout` | 600 s (below Active Directory's 900 s idle cut) |
/// | `connect_timeout` | 3 s (TCP + TLS/StartTLS) |
/// | `operation_timeout` | 5 s (every LDAP operation, and the wait for a pooled connection) |
/// | `health_check_after` | 30 s: a pooled connection idle longer is checked (root DSE read) before reuse; 0 = always |
/// | `password_policy_control` | `true`: send the (non-critical) password policy request control with user binds, so that OpenLDAP ppolicy / 389-DS report locked, expired and must-change accounts |
/// | `cache_ttl` | 60 s (at most 1 h; 0 = no cache): how long a successful login's DN, attributes and groups are reused |
/// | `cache_size` | 10000 (0 = no cache): entries kept per provider; when full, expired entries are dropped, then all |
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    pub urls: Vec<String>,
    #[serde(default)]
    pub starttls: bool,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    pub bind_dn: String,
    #[serde(deserialize_with = "deserialize_secret")]
    pub bind_password: Secret,
    pub user_base_dn: String,
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    #[serde(default)]
    pub user_scope: UserScope,
    #[serde(default = "default_uid")]
    pub subject_attr: String,
    #[serde(default = "default_uid")]
    pub username_attr: String,
    #[serde(default = "default_cn")]
    pub name_attr: String,
    #[serde(default = "default_given_name")]
    pub given_name_attr: String,
    #[serde(default = "default_sn")]
    pub family_name_attr: String,
    #[serde(default = "default_mail")]
    pub email_attr: String,
    #[serde(default)]
    pub group_base_dn: Option<String>,
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    #[serde(default = "default_cn")]
    pub group_name_attr: String,
    #[serde(default)]
    pub memberof_attr: Option<String>,
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    #[serde(
        default = "default_idle_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub idle_timeout: Duration,
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub connect_timeout: Duration,
    #[serde(
        default = "default_operation_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub operation_timeout: Duration,
    #[serde(
        default = "default_health_check_after",
        deserialize_with = "deserialize_duration"
    )]
    pub health_check_after: Duration,
    #[serde(default = "default_true")]
    pub password_policy_control: bool,
    /// How long the result of a successful login (user DN, mapped attributes, groups) is
    /// reused for the same login name, as WebLogic's LDAP authenticator does (CacheTTL, 60 s).
    /// A cached login skips the user search and the group read, but always binds as the
    /// cached DN with the password given: the password and the account state (locked,
    /// expired, disabled) are checked by the directory every time; no password and no bind
    /// result is ever cached. Within the TTL, changed attributes and group memberships are
    /// not seen, and a renamed or deleted user gets "bad credentials" rather than "unknown
    /// user"; any failed bind drops the entry, so the next attempt searches again.
    /// 0 disables the cache. At most 1 h.
    #[serde(
        default = "default_cache_ttl",
        deserialize_with = "deserialize_duration"
    )]
    pub cache_ttl: Duration,
    /// Most entries in the login cache (per provider); when it is full, expired entries are
    /// dropped, and if none is, the whole cache is cleared. 0 disables the cache.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

/// Search scope of the user search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserScope {
    /// The base entry and everything below it.
    #[default]
    Subtree,
    /// The immediate children of the base entry.
    #[serde(alias = "onelevel")]
    One,
}

impl UserScope {
    pub(crate) fn ldap(self) -> ldap3::Scope {
        match self {
            UserScope::Subtree => ldap3::Scope::Subtree,
            UserScope::One => ldap3::Scope::OneLevel,
        }
    }
    /// The configuration spelling: `subtree` or `one`.
    pub fn as_str(self) -> &'static str {
        match self {
            UserScope::Subtree => "subtree",
            UserScope::One => "one",
        }
    }
}

impl LdapConfig {
    /// A configuration with every optional field at its default.
    pub fn new(
        urls: Vec<String>,
        bind_dn: impl Into<String>,
        bind_password: Secret,
        user_base_dn: impl Into<String>,
    ) -> Self {
        Self {
            urls,
            starttls: false,
            ca_file: None,
            bind_dn: bind_dn.into(),
            bind_password,
            user_base_dn: user_base_dn.into(),
            user_filter: default_user_filter(),
            user_scope: UserScope::Subtree,
            subject_attr: default_uid(),
            username_attr: default_uid(),
            name_attr: default_cn(),
            given_name_attr: default_given_name(),
            family_name_attr: default_sn(),
            email_attr: default_mail(),
            group_base_dn: None,
            group_filter: default_group_filter(),
            group_name_attr: default_cn(),
            memberof_attr: None,
            pool_size: default_pool_size(),
            idle_timeout: default_idle_timeout(),
            connect_timeout: default_connect_timeout(),
            operation_timeout: default_operation_timeout(),
            health_check_after: default_health_check_after(),
            password_policy_control: true,
            cache_ttl: default_cache_ttl(),
            cache_size: default_cache_size(),
        }
    }

    /// Check everything that can be checked without contacting a server.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.urls.is_empty() {
            return Err("`urls` is empty".into());
        }
        if self.bind_dn.trim().is_empty() {
            return Err("`bind_dn` is empty".into());
        }
        // An empty password makes the service bind an unauthenticated bind (RFC 4513 §5.1.2).
        if self.bind_password.expose().trim().is_empty() {
            return Err("`bind_password` is empty (that would be an unauthenticated bind)".into());
        }
        check_template(&self.user_filter, "user_filter", "{username}")?;
        if self.group_base_dn.is_some() {
            check_template(&self.group_filter, "group_filter", "{dn}")?;
        }
        for (field, value) in [
            ("subject_attr", &self.subject_attr),
            ("username_attr", &self.username_attr),
            ("name_attr", &self.name_attr),
            ("given_name_attr", &self.given_name_attr),
            ("family_name_attr", &self.family_name_attr),
            ("email_attr", &self.email_attr),
            ("group_name_attr", &self.group_name_attr),
        ] {
            check_attr(field, value)?;
        }
        if let Some(a) = &self.memberof_attr {
            check_attr("memberof_attr", a)?;
        }
        if self.pool_size == 0 || self.pool_size > MAX_POOL_SIZE {
            return Err(format!(
                "`pool_size` must be between 1 and {MAX_POOL_SIZE} (got {})",
                self.pool_size
            ));
        }
        for (field, value, max) in [
            (
                "connect_timeout",
                self.connect_timeout,
                Duration::from_secs(120),
            ),
            (
                "operation_timeout",
                self.operation_timeout,
                Duration::from_secs(300),
            ),
            (
                "idle_timeout",
                self.idle_timeout,
                Duration::from_secs(24 * 3600),
            ),
        ] {
            if value.is_zero() || value > max {
                return Err(format!(
                    "`{field}` must be greater than 0 and at most {} s",
                    max.as_secs()
                ));
            }
        }
        if self.cache_ttl > MAX_CACHE_TTL {
            return Err(format!(
                "`cache_ttl` must be at most {} s (0 disables the cache)",
                MAX_CACHE_TTL.as_secs()
            ));
        }
        if self.cache_size > MAX_CACHE_SIZE {
            return Err(format!(
                "`cache_size` must be at most {MAX_CACHE_SIZE} (0 disables the cache)"
            ));
        }
        Ok(())
    }

    /// Whether successful logins are cached (`cache_ttl` and `cache_size` both non-zero).
    pub fn cache_enabled(&self) -> bool {
        !self.cache_ttl.is_zero() && self.cache_size > 0
    }
}

fn check_template(template: &str, field: &str, placeholder: &str) -> Result<(), String> {
    if !template.contains(placeholder) {
        return Err(format!("`{field}` must contain {placeholder}"));
    }
    let sample = filter::substitute(template, placeholder, "x");
    ldap3::parse_filter(&sample)
        .map_err(|_| format!("`{field}` is not a valid LDAP filter: {template}"))?;
    Ok(())
}

fn check_attr(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ';' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("`{field}` is not an attribute name: {value:?}"))
    }
}

fn default_user_filter() -> String {
    DEFAULT_USER_FILTER.into()
}
fn default_group_filter() -> String {
    DEFAULT_GROUP_FILTER.into()
}
fn default_uid() -> String {
    "uid".into()
}
fn default_cn() -> String {
    "cn".into()
}
fn default_given_name() -> String {
    "givenName".into()
}
fn default_sn() -> String {
    "sn".into()
}
fn default_mail() -> String {
    "mail".into()
}
fn default_pool_size() -> usize {
    6
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_operation_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_health_check_after() -> Duration {
    Duration::from_secs(30)
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_cache_size() -> usize {
    10_000
}
fn default_true() -> bool {
    true
}

fn deserialize_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    String::deserialize(d).map(Secret::new)
}

/// Seconds (integer or float) or a string with a unit: `ms`, `s`, `m`, `h`.
fn deserialize_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration: seconds, or a string such as \"500ms\", \"5s\", \"10m\"")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(v).map_err(|_| E::custom("invalid duration"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).ok_or_else(|| E::custom(format!("invalid duration {v:?}")))
        }
    }
    d.deserialize_any(V)
}

pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> &'static str {
        r#"
        urls = ["ldap://127.0.0.1:389"]
        bind_dn = "cn=svc,dc=example,dc=com"
        bind_password = "pw"
        user_base_dn = "ou=people,dc=example,dc=com"
        "#
    }

    #[test]
    fn defaults() {
        let c: LdapConfig = toml::from_str(minimal()).unwrap();
        assert_eq!(c.user_filter, DEFAULT_USER_FILTER);
        assert_eq!(c.group_filter, DEFAULT_GROUP_FILTER);
        assert_eq!(c.user_scope, UserScope::Subtree);
        assert_eq!(c.subject_attr, "uid");
        assert_eq!(c.username_attr, "uid");
        assert_eq!(c.name_attr, "cn");
        assert_eq!(c.given_name_attr, "givenName");
        assert_eq!(c.family_name_attr, "sn");
        assert_eq!(c.email_attr, "mail");
        assert_eq!(c.group_name_attr, "cn");
        assert!(c.group_base_dn.is_none() && c.memberof_attr.is_none());
        assert_eq!(c.pool_size, 6);
        assert_eq!(c.idle_timeout, Duration::from_secs(600));
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.operation_timeout, Duration::from_secs(5));
        assert_eq!(c.health_check_after, Duration::from_secs(30));
        assert!(c.password_policy_control);
        assert_eq!(c.cache_ttl, Duration::from_secs(60));
        assert_eq!(c.cache_size, 10_000);
        assert!(c.cache_enabled());
        assert!(!c.starttls && c.ca_file.is_none());
        assert!(c.validate().is_ok());
        // The programmatic constructor agrees with serde's defaults.
        let n = LdapConfig::new(
            c.urls.clone(),
            &c.bind_dn,
            Secret::new("pw"),
            &c.user_base_dn,
        );
        assert_eq!(format!("{n:?}"), format!("{c:?}"));
        // The password never prints.
        assert!(!format!("{c:?}").contains("\"pw\""));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = format!("{}\ntls_insecure_skip_verify = true\n", minimal());
        let err = toml::from_str::<LdapConfig>(&text).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
        let text = format!("{}\nuser_scope = \"base\"\n", minimal());
        assert!(toml::from_str::<LdapConfig>(&text).is_err());
    }

    #[test]
    fn durations_and_scope() {
        let text = format!(
            "{}\nuser_scope = \"one\"\nidle_timeout = \"10m\"\nconnect_timeout = 0.5\noperation_timeout = \"1500ms\"\n",
            minimal()
        );
        let c: LdapConfig = toml::from_str(&text).unwrap();
        assert_eq!(c.user_scope, UserScope::One);
        assert_eq!(c.idle_timeout, Duration::from_secs(600));
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        assert_eq!(c.operation_timeout, Duration::from_millis(1500));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5 s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
        let text = format!("{}\noperation_timeout = -1\n", minimal());
        assert!(toml::from_str::<LdapConfig>(&text).is_err());
    }

    #[test]
    fn validation() {
        let base: LdapConfig = toml::from_str(minimal()).unwrap();
        let check = |f: &dyn Fn(&mut LdapConfig)| {
            let mut c = base.clone();
            f(&mut c);
            c.validate()
        };
        assert!(check(&|c| c.urls.clear()).is_err());
        assert!(check(&|c| c.bind_password = Secret::new("  ")).is_err());
        assert!(check(&|c| c.user_filter = "(uid=alice)".into()).is_err());
        assert!(check(&|c| c.user_filter = "(&(uid={username})".into()).is_err());
        assert!(check(&|c| c.pool_size = 0).is_err());
        assert!(check(&|c| c.pool_size = MAX_POOL_SIZE + 1).is_err());
        assert!(check(&|c| c.operation_timeout = Duration::ZERO).is_err());
        assert!(check(&|c| c.email_attr = "mail)(x".into()).is_err());
        assert!(
            check(&|c| {
                c.group_base_dn = Some("ou=groups".into());
                c.group_filter = "(member=x)".into();
            })
            .is_err()
        );
        assert!(check(&|c| c.group_base_dn = Some("ou=groups".into())).is_ok());
        assert!(check(&|c| c.user_filter = "(sAMAccountName={username})".into()).is_ok());
        assert!(check(&|c| c.cache_ttl = MAX_CACHE_TTL + Duration::from_secs(1)).is_err());
        assert!(check(&|c| c.cache_size = MAX_CACHE_SIZE + 1).is_err());
        assert!(check(&|c| c.cache_ttl = Duration::ZERO).is_ok());
    }

    #[test]
    fn cache_keys() {
        let text = format!("{}\ncache_ttl = 0\ncache_size = 5\n", minimal());
        let c: LdapConfig = toml::from_str(&text).unwrap();
        assert_eq!(c.cache_ttl, Duration::ZERO);
        assert!(!c.cache_enabled());
        let text = format!("{}\ncache_ttl = \"90s\"\ncache_size = 0\n", minimal());
        let c: LdapConfig = toml::from_str(&text).unwrap();
        assert_eq!(c.cache_ttl, Duration::from_secs(90));
        assert!(!c.cache_enabled());
    }
}
