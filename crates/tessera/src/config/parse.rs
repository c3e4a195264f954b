//! Reading the file (with positions kept for messages), `[[providers]]`, and the
//! environment overlay.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use tessera_ldap::LdapConfig;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::*;

// ---------------------------------------------------------------------------------------------
// Where each key was set, for messages.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(super) enum Origin {
    File { line: usize, col: usize },
    Env(String),
    Flag(&'static str),
}

/// Maps key paths (`tokens.access_token_ttl`, `clients[0].redirect_uris`) to where they were set.
#[derive(Debug, Default)]
pub(super) struct Locator {
    pub(super) file: Option<String>,
    pub(super) origins: BTreeMap<String, Origin>,
}

impl Locator {
    pub(super) fn prefix(&self, path: &str) -> String {
        match (self.origins.get(path), &self.file) {
            (Some(Origin::File { line, col }), Some(file)) => {
                format!("{file}:{line}:{col}: {path}")
            }
            (Some(Origin::Env(var)), _) => format!("{var}: {path}"),
            (Some(Origin::Flag(flag)), _) => format!("{flag}: {path}"),
            _ => path.to_owned(),
        }
    }
    pub(super) fn error(&self, path: &str, msg: impl fmt::Display) -> String {
        format!("{}: {msg}", self.prefix(path))
    }
}

pub(super) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = src.get(..offset.min(src.len())).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// `file:line:col: message` for a TOML parse or deserialization error.
pub(super) fn toml_error(file: &str, src: &str, err: &toml::de::Error) -> String {
    let msg = err.message().trim_end().replace('`', "'");
    match err.span() {
        Some(span) => {
            let (line, col) = line_col(src, span.start);
            format!("{file}:{line}:{col}: {msg}")
        }
        None => format!("{file}: {msg}"),
    }
}

pub(super) fn record_origins(
    file_src: &str,
    table: &DeTable<'_>,
    prefix: &str,
    depth: usize,
    out: &mut BTreeMap<String, Origin>,
) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        let (line, col) = line_col(file_src, key.span().start);
        out.insert(path.clone(), Origin::File { line, col });
        if depth == 0 {
            continue;
        }
        match value.get_ref() {
            DeValue::Table(t) => record_origins(file_src, t, &path, depth - 1, out),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(t) = item.get_ref() {
                        let item_path = format!("{path}[{i}]");
                        let (line, col) = line_col(file_src, item.span().start);
                        out.insert(item_path.clone(), Origin::File { line, col });
                        record_origins(file_src, t, &item_path, depth - 1, out);
                    }
                }
            }
            _ => {}
        }
    }
}

pub(super) fn find_key(
    table: &DeTable<'_>,
    name: &str,
) -> Option<Spanned<std::borrow::Cow<'static, str>>> {
    table
        .keys()
        .find(|k| k.get_ref() == name)
        .map(|k| Spanned::new(k.span(), std::borrow::Cow::Owned(name.to_owned())))
}

pub(super) fn take<'i>(table: &mut DeTable<'i>, name: &str) -> Option<Spanned<DeValue<'i>>> {
    let key = table.keys().find(|k| k.get_ref() == name)?.clone();
    table.remove(&key)
}

/// Parse the file: providers apart (see [`RawConfig::providers`]), then everything else.
pub(super) fn parse_file(
    file: &ConfigFile,
    env: &Env,
    locator: &mut Locator,
) -> Result<(RawConfig, Vec<String>), ConfigError> {
    let name = file.path.display().to_string();
    let src = file.contents.as_str();
    let fail = |e: toml::de::Error| ConfigError(vec![toml_error(&name, src, &e)]);
    let mut doc = DeTable::parse(src).map_err(fail)?;
    record_origins(src, doc.get_ref(), "", 2, &mut locator.origins);
    let providers_value = take(doc.get_mut(), "providers");
    let mut raw = RawConfig::deserialize(toml::de::Deserializer::from(doc)).map_err(fail)?;
    let mut errors = Vec::new();
    if let Some(value) = providers_value {
        raw.providers = parse_providers(value, env, &name, src, locator, &mut errors);
    }
    Ok((raw, errors))
}

/// `[[providers]]`: split each entry into the common header and the kind's own table, and
/// deserialize both from the spanned document so errors keep their line numbers.
pub(super) fn parse_providers(
    value: Spanned<DeValue<'_>>,
    env: &Env,
    file: &str,
    src: &str,
    locator: &Locator,
    errors: &mut Vec<String>,
) -> Vec<RawProvider> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        let (line, col) = line_col(src, span.start);
        errors.push(format!(
            "{file}:{line}:{col}: providers must be an array of tables ([[providers]])"
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_span = item.span();
        let DeValue::Table(table) = item.get_ref() else {
            let (line, col) = line_col(src, item_span.start);
            errors.push(format!(
                "{file}:{line}:{col}: providers[{index}] must be a table"
            ));
            continue;
        };
        match parse_provider(table.clone(), item_span, env, file, src, locator, index) {
            Ok(p) => out.push(p),
            Err(e) => errors.push(e),
        }
    }
    out
}

pub(super) fn parse_provider(
    mut table: DeTable<'_>,
    span: std::ops::Range<usize>,
    env: &Env,
    file: &str,
    src: &str,
    locator: &Locator,
    index: usize,
) -> Result<RawProvider, String> {
    let fail = |e: toml::de::Error| toml_error(file, src, &e);
    let mut header_table = DeTable::new();
    for key in PROVIDER_HEADER_KEYS {
        if let (Some(k), Some(v)) = (find_key(&table, key), take(&mut table, key)) {
            header_table.insert(k, v);
        }
    }
    let header = ProviderHeader::deserialize(toml::de::Deserializer::from(Spanned::new(
        span.clone(),
        header_table,
    )))
    .map_err(fail)?;
    let path = format!("providers[{index}]");
    let mut display = toml::Table::new();
    display.insert(
        "kind".into(),
        toml::Value::try_from(header.kind).map_err(|e| e.to_string())?,
    );
    display.insert("name".into(), toml::Value::String(header.name.clone()));
    display.insert(
        "flag".into(),
        toml::Value::String(header.flag.as_str().into()),
    );
    let ldap = match header.kind {
        ProviderKind::Local => {
            if let Some(extra) = table.keys().next() {
                let (line, col) = line_col(src, extra.span().start);
                return Err(format!(
                    "{file}:{line}:{col}: unknown field '{}': a provider of kind 'local' has only kind, name and flag",
                    extra.get_ref()
                ));
            }
            if header.bind_password_env.is_some() {
                return Err(locator.error(
                    &format!("{path}.bind_password_env"),
                    "only LDAP providers have a bind password",
                ));
            }
            None
        }
        ProviderKind::Ldap => {
            if let Some(var) = &header.bind_password_env {
                let at = format!("{path}.bind_password_env");
                if find_key(&table, "bind_password").is_some() {
                    return Err(
                        locator.error(&at, "set bind_password or bind_password_env, not both")
                    );
                }
                let Some(secret) = env.get(var) else {
                    return Err(
                        locator.error(&at, format!("environment variable {var} is not set"))
                    );
                };
                table.insert(
                    Spanned::new(span.clone(), "bind_password".into()),
                    Spanned::new(span.clone(), DeValue::String(secret.to_owned().into())),
                );
            }
            let tbl = Spanned::new(span.clone(), DeValue::Table(table.clone()));
            if let Ok(toml::Value::Table(t)) =
                toml::Value::deserialize(toml::de::ValueDeserializer::from(tbl))
            {
                display.extend(t);
            }
            if let Some(var) = &header.bind_password_env {
                display.insert("bind_password_env".into(), toml::Value::String(var.clone()));
            }
            let cfg =
                LdapConfig::deserialize(toml::de::Deserializer::from(Spanned::new(span, table)))
                    .map_err(fail)?;
            Some(cfg)
        }
    };
    Ok(RawProvider {
        kind: header.kind,
        name: header.name,
        flag: header.flag,
        ldap,
        display,
    })
}

/// Apply `TESSERA_*` variables one at a time, so an error names the variable that caused it.
pub(super) fn apply_env(
    raw: &mut RawConfig,
    env: &Env,
    locator: &mut Locator,
) -> Result<(), ConfigError> {
    let mut errors = Vec::new();
    for (var, value) in env.config_vars() {
        let (section, key) = match ENV_SHORTCUTS.iter().find(|(name, _, _)| name == var) {
            Some((_, section, key)) => (Some(section.to_string()), key.to_string()),
            None => {
                let rest = var[ENV_PREFIX.len()..].to_ascii_lowercase();
                match rest.split_once("__") {
                    Some((s, k)) => (Some(s.to_owned()), k.to_owned()),
                    None => (None, rest),
                }
            }
        };
        let path = match &section {
            Some(s) => format!("{s}.{key}"),
            None => key.clone(),
        };
        match set_from_env(raw, section.as_deref(), &key, value) {
            Ok(()) => {
                locator.origins.insert(path, Origin::Env(var.clone()));
            }
            Err(e) => errors.push(format!("{var}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigError(errors))
    }
}

pub(super) fn set_from_env(
    raw: &mut RawConfig,
    section: Option<&str>,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let top = section.unwrap_or(key);
    if matches!(top, "clients" | "providers" | "trusted_issuers") {
        return Err(format!("[[{top}]] can only be configured in the file"));
    }
    let base = toml::Table::try_from(&*raw).map_err(|e| e.to_string())?;
    let current = match section {
        None => base.get(key),
        Some(s) => base.get(s).and_then(|t| t.get(key)),
    };
    let mut first_error = None;
    for candidate in env_candidates(current, value) {
        let mut table = base.clone();
        let target = match section {
            None => &mut table,
            Some(s) => match table
                .entry(s.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                toml::Value::Table(t) => t,
                _ => return Err(format!("'{s}' is not a section")),
            },
        };
        target.insert(key.to_owned(), candidate);
        match toml::Value::Table(table).try_into::<RawConfig>() {
            Ok(mut parsed) => {
                parsed.providers = std::mem::take(&mut raw.providers);
                *raw = parsed;
                return Ok(());
            }
            Err(e) => {
                first_error.get_or_insert_with(|| e.message().trim_end().replace('`', "'"));
            }
        }
    }
    Err(first_error.unwrap_or_else(|| "cannot apply".into()))
}

/// Readings of an environment value, most likely first: the type of the current value, then a
/// plain string, then a TOML literal (`[..]` arrays, numbers, booleans for unset options).
pub(super) fn env_candidates(current: Option<&toml::Value>, value: &str) -> Vec<toml::Value> {
    let mut out = Vec::new();
    let literal = || {
        toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    match current {
        Some(toml::Value::Integer(_)) => {
            out.extend(value.trim().parse::<i64>().ok().map(toml::Value::Integer))
        }
        Some(toml::Value::Float(_)) => {
            out.extend(value.trim().parse::<f64>().ok().map(toml::Value::Float))
        }
        Some(toml::Value::Boolean(_)) => out.extend(match value.trim() {
            "true" | "1" => Some(toml::Value::Boolean(true)),
            "false" | "0" => Some(toml::Value::Boolean(false)),
            _ => None,
        }),
        Some(toml::Value::Array(_)) if !value.trim_start().starts_with('[') => {
            out.push(toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.into()))
                    .collect(),
            ))
        }
        _ => {}
    }
    out.push(toml::Value::String(value.to_owned()));
    out.extend(literal());
    out
}
