//! Claim mapping and account linking: an upstream identity (`iss`, `sub`) becomes a local
//! principal.
//!
//! Links live in the store's meta table under `federation-link:{upstream}:{sub}` (value:
//! `{"subject": local subject, "iss": issuer}`), so every node sees them and no schema change
//! is needed. The key uses the upstream's configured name; the value records the issuer the
//! link was made for, because only `iss` and `sub` together identify an end user (OIDC Core
//! §5.7): when an administrator points the name at another issuer, its `sub`s are not the old
//! ones and the old links are refused. The reverse key `federation-linked:{upstream}:{subject}`
//! names the one upstream `sub` a local account is linked to.
//!
//! Policies ([`LinkPolicy`]): `jit` creates a local user (no password) on first sign-in;
//! `link_verified_email` links to the one enabled local user with the same email when the
//! upstream marks the email verified, the local account's email is verified too, and the
//! account is not linked to another identity of that upstream; `deny` accepts only existing
//! links.

use serde_json::{Map, Value, json};

use super::failure::{FailureClass, Stage, UpstreamFailure};
use super::{LinkPolicy, Upstream};
use crate::authn::Principal;
use crate::clock::UnixTime;
use crate::engine::Engine;
use crate::model::User;
use crate::store::StoreError;
use crate::trace::TraceHandle;

/// The upstream identity after claim mapping.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamIdentity {
    pub sub: String,
    pub username: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub groups: Vec<String>,
    pub amr: Vec<String>,
}

fn text(claims: &Map<String, Value>, k: &str) -> Option<String> {
    claims
        .get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 512)
        .map(str::to_owned)
}

fn list(claims: &Map<String, Value>, k: &str) -> Vec<String> {
    match claims.get(k) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .take(1000)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// Map the (ID token + userinfo) claims with the upstream's [`super::ClaimMapping`].
pub fn map_claims(up: &Upstream, claims: &Map<String, Value>) -> UpstreamIdentity {
    let m = &up.config.mapping;
    let sub = text(claims, "sub").unwrap_or_default();
    let email = text(claims, &m.email);
    let email_verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        // Some providers send it as a string.
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    let username = text(claims, &m.username)
        .or_else(|| email.clone())
        .unwrap_or_else(|| sub.clone());
    UpstreamIdentity {
        username,
        email,
        email_verified,
        name: text(claims, &m.name),
        given_name: text(claims, "given_name"),
        family_name: text(claims, "family_name"),
        groups: list(claims, &m.groups),
        amr: list(claims, "amr"),
        sub,
    }
}

/// The meta key of a link.
pub fn link_key(upstream: &str, sub: &str) -> String {
    format!("federation-link:{upstream}:{sub}")
}

/// The meta key naming the upstream `sub` a local account is linked to.
pub fn reverse_key(upstream: &str, local_subject: &str) -> String {
    format!("federation-linked:{upstream}:{local_subject}")
}

/// Link an upstream identity to a local subject (administrators, and `deny` set-ups), for the
/// issuer the upstream is configured with now.
pub async fn link(
    engine: &Engine,
    upstream: &str,
    sub: &str,
    local_subject: &str,
) -> Result<(), StoreError> {
    let issuer = engine
        .upstreams
        .get(upstream)
        .map(|u| u.config.issuer.clone());
    engine
        .store
        .put_meta(
            &link_key(upstream, sub),
            &json!({ "subject": local_subject, "iss": issuer }),
        )
        .await?;
    engine
        .store
        .put_meta(
            &reverse_key(upstream, local_subject),
            &json!({ "sub": sub }),
        )
        .await
}

/// The local subject linked to an upstream identity, if any.
pub async fn linked_subject(
    engine: &Engine,
    upstream: &str,
    sub: &str,
) -> Result<Option<String>, StoreError> {
    Ok(engine
        .store
        .get_meta(&link_key(upstream, sub))
        .await?
        .and_then(|v| v.get("subject").and_then(Value::as_str).map(str::to_owned)))
}

fn store_failure(up: &Upstream, e: StoreError) -> UpstreamFailure {
    UpstreamFailure::new(
        &up.config.name,
        Stage::Linking,
        FailureClass::Internal,
        format!("store: {e}"),
    )
}

/// Find or create the local user for `id` according to the upstream's policy.
pub async fn resolve(
    engine: &Engine,
    up: &Upstream,
    id: &UpstreamIdentity,
    now: UnixTime,
    trace: &TraceHandle,
) -> Result<User, UpstreamFailure> {
    let name = &up.config.name;
    let component = format!("upstream:{name}");
    let policy = up.config.linking;
    let fail = |class: FailureClass, detail: String| {
        trace.step(&component, "link", "failed", || {
            crate::detail! {"policy" => policy.as_str(), "upstream_sub" => id.sub, "code" => class.code()}
        });
        UpstreamFailure::new(name, Stage::Linking, class, detail)
    };
    let existing = engine
        .store
        .get_meta(&link_key(name, &id.sub))
        .await
        .map_err(|e| store_failure(up, e))?;
    if let Some(link) = existing {
        let subject = link
            .get("subject")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // OIDC Core §5.7: a sub means something only with its issuer. A link recorded for
        // another issuer (the upstream's name now points elsewhere) is not this identity's.
        if let Some(linked_iss) = link.get("iss").and_then(Value::as_str)
            && linked_iss != up.config.issuer
        {
            return Err(fail(
                FailureClass::NotLinked,
                format!(
                    "upstream sub {} is linked for issuer \"{linked_iss}\", but the upstream's issuer is now \"{}\" (iss and sub together identify a user)",
                    id.sub, up.config.issuer
                ),
            ));
        }
        let user = engine
            .store
            .get_user_by_subject(&subject)
            .await
            .map_err(|e| store_failure(up, e))?;
        return match user {
            Some(u) if u.disabled => Err(fail(
                FailureClass::AccountDisabled,
                format!(
                    "local user '{}' linked to upstream sub {} is disabled",
                    u.username, id.sub
                ),
            )),
            Some(u) => {
                trace.step(&component, "link", "existing", || {
                    crate::detail! {"upstream_sub" => id.sub, "local_user" => u.username}
                });
                Ok(u)
            }
            None => Err(fail(
                FailureClass::NotLinked,
                format!(
                    "upstream sub {} is linked to local subject {subject}, which no longer exists",
                    id.sub
                ),
            )),
        };
    }
    let user = match policy {
        LinkPolicy::Deny => {
            return Err(fail(
                FailureClass::NotLinked,
                format!(
                    "upstream sub {} has no linked local account and linking = \"deny\"",
                    id.sub
                ),
            ));
        }
        LinkPolicy::LinkVerifiedEmail => {
            let Some(email) = id.email.as_deref().filter(|_| id.email_verified) else {
                return Err(fail(
                    FailureClass::NotLinked,
                    format!(
                        "upstream sub {} has no verified email (email {:?}, email_verified {}) and linking = \"link_verified_email\"",
                        id.sub, id.email, id.email_verified
                    ),
                ));
            };
            let users = engine
                .store
                .list_users()
                .await
                .map_err(|e| store_failure(up, e))?;
            let matches: Vec<User> = users
                .into_iter()
                .filter(|u| {
                    !u.disabled
                        && u.email
                            .as_deref()
                            .is_some_and(|e| e.eq_ignore_ascii_case(email))
                })
                .collect();
            match <[User; 1]>::try_from(matches) {
                // An email both sides have verified, and only then: a local account whose
                // email nobody verified would go to whoever owns that address upstream.
                Ok([u]) if !u.email_verified => {
                    return Err(fail(
                        FailureClass::NotLinked,
                        format!(
                            "local user '{}' has the email {email}, but not verified: linking = \"link_verified_email\" needs both sides verified",
                            u.username
                        ),
                    ));
                }
                Ok([u]) => u,
                Err(v) if v.is_empty() => {
                    return Err(fail(
                        FailureClass::NotLinked,
                        format!("no enabled local user has the verified email {email}"),
                    ));
                }
                Err(v) => {
                    return Err(fail(
                        FailureClass::NotLinked,
                        format!(
                            "{} local users have the email {email}: link one explicitly",
                            v.len()
                        ),
                    ));
                }
            }
        }
        LinkPolicy::Jit => create_user(engine, up, id, now)
            .await
            .map_err(|e| store_failure(up, e))?,
    };
    // One upstream identity per local account and upstream: an email that moved to another
    // upstream account (a new sub) does not inherit the local account linked to the first
    // (OIDC Core §5.7: email is not a stable identifier). Claimed atomically, first wins.
    let claimed = engine
        .store
        .put_meta_if_absent(&reverse_key(name, &user.subject), &json!({ "sub": id.sub }))
        .await
        .map_err(|e| store_failure(up, e))?;
    if let Some(other) = claimed
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| *s != id.sub)
    {
        return Err(fail(
            FailureClass::NotLinked,
            format!(
                "local user '{}' is already linked to upstream sub {other}; upstream sub {} (same email) is not linked to it",
                user.username, id.sub
            ),
        ));
    }
    // Another node may have linked the same identity meanwhile: the first link wins.
    let stored = engine
        .store
        .put_meta_if_absent(
            &link_key(name, &id.sub),
            &json!({ "subject": user.subject, "iss": up.config.issuer }),
        )
        .await
        .map_err(|e| store_failure(up, e))?;
    let user = match stored.get("subject").and_then(Value::as_str) {
        Some(s) if s != user.subject => engine
            .store
            .get_user_by_subject(s)
            .await
            .map_err(|e| store_failure(up, e))?
            .unwrap_or(user),
        _ => user,
    };
    trace.step(&component, "link", "created", || {
        crate::detail! {"policy" => policy.as_str(), "upstream_sub" => id.sub, "local_user" => user.username}
    });
    tracing::info!(
        target: "tessera::security",
        event = "upstream_link",
        upstream = %name,
        upstream_sub = %id.sub,
        local_user = %user.username,
        policy = policy.as_str(),
        "upstream identity linked to a local account"
    );
    Ok(user)
}

/// A new local user for a just-in-time link; the username gets a suffix on collision.
async fn create_user(
    engine: &Engine,
    up: &Upstream,
    id: &UpstreamIdentity,
    now: UnixTime,
) -> Result<User, StoreError> {
    let candidates = [
        id.username.clone(),
        format!("{}@{}", id.username, up.config.name),
        format!("{}:{}", up.config.name, id.sub),
    ];
    let mut last = None;
    for username in candidates {
        let user = User {
            username,
            subject: uuid::Uuid::new_v4().to_string(),
            password_hash: None,
            disabled: false,
            name: id.name.clone(),
            given_name: id.given_name.clone(),
            family_name: id.family_name.clone(),
            email: id.email.clone(),
            email_verified: id.email_verified,
            groups: id.groups.clone(),
            created_at: now,
            updated_at: now,
        };
        match engine.store.create_user(&user).await {
            Ok(()) => return Ok(user),
            Err(StoreError::Conflict(c)) => last = Some(StoreError::Conflict(c)),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| StoreError::Conflict("username".into())))
}

/// The principal of the session: the local account, with the upstream's current attributes.
pub fn principal(up: &Upstream, id: &UpstreamIdentity, user: &User) -> Principal {
    Principal {
        subject: user.subject.clone(),
        username: user.username.clone(),
        provider: up.config.name.clone(),
        name: id.name.clone().or_else(|| user.name.clone()),
        given_name: id.given_name.clone().or_else(|| user.given_name.clone()),
        family_name: id.family_name.clone().or_else(|| user.family_name.clone()),
        email: id.email.clone().or_else(|| user.email.clone()),
        email_verified: if id.email.is_some() {
            id.email_verified
        } else {
            user.email_verified
        },
        groups: if id.groups.is_empty() {
            user.groups.clone()
        } else {
            id.groups.clone()
        },
        amr: id.amr.clone(),
        attributes: Map::new(),
    }
}
