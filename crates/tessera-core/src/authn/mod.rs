//! Authentication of end users: providers and the JAAS-style chain that combines them.
//!
//! A provider answers with a rich [`Outcome`], not pass/fail: the chain needs to tell a wrong
//! password from an unavailable directory, so that an outage never looks like (or is counted
//! as) a bad credential.

mod chain;
mod local;

pub use chain::{
    Chain, ChainEntry, ChainResult, ControlFlag, Decision, decide_outcomes, decision_label,
};
pub use local::LocalProvider;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::secret::Secret;
use crate::trace::Trace;

/// What the user typed on the login form.
#[derive(Debug, Clone)]
pub struct PasswordCredentials {
    pub username: String,
    pub password: Secret,
}

/// An authenticated identity as a provider describes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    /// Stable subject identifier.
    pub subject: String,
    pub username: String,
    /// Provider name that authenticated it.
    pub provider: String,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub groups: Vec<String>,
    /// Authentication methods (OIDC `amr`), e.g. ["pwd"].
    pub amr: Vec<String>,
    /// Other mapped attributes.
    pub attributes: Map<String, Value>,
}

/// Why an account may not log in although it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    Disabled,
    Expired,
    PasswordExpired,
    MustChangePassword,
    /// Locked by the directory itself (e.g. AD data 775, ppolicy).
    LockedAtDirectory,
    /// Locked by Tessera's soft lockout.
    LockedByTessera,
    /// Not permitted at this time / from this workstation (AD 530/531).
    Restricted,
}

/// The result of one provider for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Authenticated(Principal),
    /// The user exists but the password is wrong (JAAS FailedLoginException).
    BadCredentials,
    /// No such user here (counted like a bad password by lockout, never revealed to the user).
    UnknownUser,
    /// Empty or otherwise unacceptable password, rejected before contacting any backend.
    EmptyPassword,
    /// The credentials may be right but the account may not log in.
    AccountState(AccountState),
    /// The provider could not perform authentication (JAAS LoginException): directory down,
    /// timeout, misconfiguration. Never counted as a failed login.
    Unavailable {
        cause: String,
        host: Option<String>,
    },
    /// The provider does not handle this kind of login (JAAS `login()` returning false).
    NotApplicable,
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Authenticated(_))
    }
    /// A genuine credential rejection: the only kind lockout counts.
    pub fn is_credential_failure(&self) -> bool {
        matches!(
            self,
            Outcome::BadCredentials | Outcome::UnknownUser | Outcome::EmptyPassword
        )
    }
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Authenticated(_) => "authenticated",
            Outcome::BadCredentials => "bad_credentials",
            Outcome::UnknownUser => "unknown_user",
            Outcome::EmptyPassword => "empty_password",
            Outcome::AccountState(_) => "account_state",
            Outcome::Unavailable { .. } => "unavailable",
            Outcome::NotApplicable => "not_applicable",
        }
    }
}

/// A source of end-user identities (local store, LDAP directory, upstream IdP).
#[async_trait]
pub trait AuthProvider: Send + Sync {
    /// Configured name, unique in the chain (appears in logs, traces and the `amr`/provider).
    fn name(&self) -> &str;
    /// "local", "ldap", "oidc".
    fn kind(&self) -> &'static str;
    /// Check a username and password. Must never log or trace the password.
    async fn authenticate(&self, credentials: &PasswordCredentials, trace: &mut Trace) -> Outcome;
}
