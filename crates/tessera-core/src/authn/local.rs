//! The local password store as an [`AuthProvider`]: users in the store, argon2id hashes.
//!
//! Nothing in its answers or timing tells an unknown user from a wrong password: an unknown
//! user (or one without a password) is checked against the hasher's dummy hash, so both paths
//! cost one argon2id verification. A disabled account is reported only after the right
//! password, so the state of an account is never revealed to someone who does not know it.

use std::sync::Arc;

use async_trait::async_trait;

use super::{AccountState, AuthProvider, Outcome, PasswordCredentials, Principal};
use crate::detail;
use crate::secrets::PasswordHasher;
use crate::store::Store;
use crate::trace::Trace;

pub struct LocalProvider {
    name: String,
    store: Arc<dyn Store>,
    hasher: PasswordHasher,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl LocalProvider {
    pub fn new(name: impl Into<String>, store: Arc<dyn Store>, hasher: PasswordHasher) -> Self {
        Self {
            name: name.into(),
            store,
            hasher,
        }
    }
}

#[async_trait]
impl AuthProvider for LocalProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "local"
    }

    async fn authenticate(&self, credentials: &PasswordCredentials, trace: &mut Trace) -> Outcome {
        let component = format!("provider:{}", self.name);
        if credentials.password.is_empty() {
            trace.step(
                &component,
                "check_password",
                "empty_password",
                serde_json::Map::new,
            );
            return Outcome::EmptyPassword;
        }
        let username = credentials.username.trim();
        let user = match self.store.get_user(username).await {
            Ok(u) => u,
            Err(e) => {
                trace.step(
                    &component,
                    "lookup",
                    "unavailable",
                    || detail! { "cause" => e.to_string() },
                );
                return Outcome::Unavailable {
                    cause: e.to_string(),
                    host: None,
                };
            }
        };
        let Some(user) = user else {
            self.hasher.verify_dummy(&credentials.password);
            trace.step(&component, "lookup", "unknown_user", serde_json::Map::new);
            return Outcome::UnknownUser;
        };
        let ok = match user.password_hash.as_deref() {
            Some(phc) => self.hasher.verify(&credentials.password, phc),
            None => {
                self.hasher.verify_dummy(&credentials.password);
                false
            }
        };
        if !ok {
            trace.step(
                &component,
                "verify_password",
                "bad_credentials",
                || detail! { "username" => username },
            );
            return Outcome::BadCredentials;
        }
        if user.disabled {
            trace.step(
                &component,
                "account_state",
                "disabled",
                || detail! { "username" => username },
            );
            return Outcome::AccountState(AccountState::Disabled);
        }
        trace.step(
            &component,
            "verify_password",
            "ok",
            || detail! { "username" => username },
        );
        Outcome::Authenticated(Principal {
            subject: user.subject,
            username: user.username,
            provider: self.name.clone(),
            name: user.name,
            given_name: user.given_name,
            family_name: user.family_name,
            email: user.email,
            email_verified: user.email_verified,
            groups: user.groups,
            amr: vec!["pwd".to_owned()],
            attributes: serde_json::Map::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;
    use crate::secrets::PasswordParams;
    use crate::store::UserStore;
    use crate::testing::MemoryStore;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(PasswordParams {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    async fn provider() -> LocalProvider {
        let store = MemoryStore::new();
        let h = hasher();
        let mut alice = User {
            username: "alice".into(),
            subject: "sub-alice".into(),
            password_hash: Some(h.hash(&"alice-pw".into()).unwrap()),
            email: Some("alice@example.com".into()),
            email_verified: true,
            groups: vec!["staff".into()],
            ..Default::default()
        };
        store.create_user(&alice).await.unwrap();
        alice.username = "dora".into();
        alice.subject = "sub-dora".into();
        alice.disabled = true;
        store.create_user(&alice).await.unwrap();
        LocalProvider::new("local", Arc::new(store), h)
    }

    fn creds(u: &str, p: &str) -> PasswordCredentials {
        PasswordCredentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[tokio::test]
    async fn right_password_authenticates_with_attributes() {
        let p = provider().await;
        let Outcome::Authenticated(pr) = p
            .authenticate(&creds("alice", "alice-pw"), &mut Trace::new(true))
            .await
        else {
            panic!("expected success")
        };
        assert_eq!(pr.subject, "sub-alice");
        assert_eq!(pr.provider, "local");
        assert_eq!(pr.amr, vec!["pwd".to_string()]);
        assert_eq!(pr.groups, vec!["staff".to_string()]);
    }

    #[tokio::test]
    async fn wrong_password_unknown_user_and_empty_password() {
        let p = provider().await;
        let mut t = Trace::new(true);
        assert_eq!(
            p.authenticate(&creds("alice", "nope"), &mut t).await,
            Outcome::BadCredentials
        );
        assert_eq!(
            p.authenticate(&creds("mallory", "nope"), &mut t).await,
            Outcome::UnknownUser
        );
        assert_eq!(
            p.authenticate(&creds("alice", ""), &mut t).await,
            Outcome::EmptyPassword
        );
        // The trace never holds a password.
        let dump = serde_json::to_string(t.steps()).unwrap();
        assert!(!dump.contains("nope"));
    }

    #[tokio::test]
    async fn disabled_is_revealed_only_after_the_right_password() {
        let p = provider().await;
        let mut t = Trace::new(false);
        assert_eq!(
            p.authenticate(&creds("dora", "wrong"), &mut t).await,
            Outcome::BadCredentials
        );
        assert_eq!(
            p.authenticate(&creds("dora", "alice-pw"), &mut t).await,
            Outcome::AccountState(AccountState::Disabled)
        );
    }

    #[tokio::test]
    async fn store_outage_is_unavailable_not_a_bad_password() {
        let store = MemoryStore::new();
        store.set_unavailable(true);
        let p = LocalProvider::new("local", Arc::new(store), hasher());
        assert!(matches!(
            p.authenticate(&creds("alice", "x"), &mut Trace::new(false))
                .await,
            Outcome::Unavailable { .. }
        ));
    }
}
