//! Tessera's LDAP authentication provider (`[[providers]] kind = "ldap"`).
//!
//! [`LdapProvider`] implements [`tessera_core::authn::AuthProvider`] with the search-then-bind
//! flow of WebLogic's LDAP authenticator:
//!
//! 1. An empty or whitespace-only password is refused with `Outcome::EmptyPassword` before any
//!    LDAP traffic (RFC 4513 §5.1.2: a DN with an empty password is an *unauthenticated* bind
//!    that can "succeed"). A login name that is empty, longer than 256 bytes or contains a
//!    control character is `UnknownUser`, also without traffic.
//! 2. On a pooled *service* connection (bound as `bind_dn`), search `user_base_dn` with
//!    `user_filter`, where `{username}` is replaced by the RFC 4515-escaped login name. Zero
//!    entries: `UnknownUser`. More than one, or a result the server truncated
//!    (sizeLimitExceeded, even with one entry returned): `Unavailable` (a directory/configuration
//!    error, logged at error, never a credential failure). A referral for the base DN is a
//!    configuration error too (referrals are not followed).
//! 3. Bind as the entry's DN with the user's password on a connection of a separate *bind*
//!    pool. Those connections are only ever used for binds, so a user-bound connection never
//!    serves a search. The result is classified by [`classify`]: credential failure, account
//!    state (AD `data XXX` sub-codes), or unavailable.
//! 4. Read groups (a group search with `{dn}` escaped, or the `memberof_attr` values) on a
//!    service connection and return the `Principal`.
//!
//! With `cache_ttl` > 0 (default 60 s, like WebLogic's LDAP authenticator), a successful
//! login's DN, mapped attributes and groups are kept per provider, keyed by the exact login
//! name (at most `cache_size` entries). A later login with that name skips steps 2 and 4: it
//! still refuses an empty password first and always binds as the cached DN with the password
//! given (step 3), so the directory checks the password and the account state every time;
//! neither a password nor a bind result is ever cached. Attributes and group memberships may
//! be up to `cache_ttl` old, and a user renamed or deleted within that time gets
//! `BadCredentials` (the bind as the old DN fails) rather than `UnknownUser`. Any bind that
//! does not succeed drops the entry, so the next attempt searches again. The trace shows a
//! `cache` step, `hit` or `miss`.
//!
//! Every LDAP operation runs under `operation_timeout` (a paused server accepts TCP but never
//! answers), every connect under `connect_timeout`. Hosts are tried in order; a failed host is
//! skipped for 5 s, doubling to 60 s, then probed again; when every host is in back-off they
//! are all probed rather than failing without a try. Pools are bounded (`pool_size` each);
//! connections idle longer than `idle_timeout` are closed, connections idle longer than
//! `health_check_after` (30 s) are checked (root DSE read) before reuse, and a connection the
//! server has closed (restart, idle cut) is replaced transparently.
//!
//! User binds carry the non-critical password policy request control, so that OpenLDAP's
//! ppolicy (which answers a locked account with a plain 49) tells locked, expired and
//! must-change accounts apart: those become `AccountState`, not counted as bad passwords.
//!
//! Each step is recorded in the [`Trace`](tessera_core::trace::Trace) under
//! `provider:<name>` (host choice, connect and TLS mode, service bind DN, search base, escaped
//! filter, scope and entry count, user bind DN, result code and diagnostic, groups, timings).
//! Neither the user's password nor `bind_password` is ever traced or logged.
//!
//! [`LdapProvider::diagnose`] runs per-host checks for `tessera doctor`.

mod cache;
mod classify;
mod config;
mod diagnose;
mod entry;
mod filter;
mod pool;
mod provider;

pub use classify::{Class, ad_subcode, classify, result_name};
pub use config::{
    DEFAULT_GROUP_FILTER, DEFAULT_USER_FILTER, LdapConfig, MAX_CACHE_SIZE, MAX_CACHE_TTL,
    MAX_POOL_SIZE, UserScope,
};
pub use diagnose::{CheckStep, HostCheck};
pub use filter::{
    MAX_USERNAME_BYTES, UsernameRejection, check_username, escape_value, first_rdn_value,
    group_filter, user_filter,
};
pub use pool::{MAX_BACKOFF, MIN_BACKOFF};
pub use provider::{HostStatus, LdapProvider, PPOLICY_OID};

/// Errors of [`LdapProvider::new`] (configuration; no network traffic happens there).
#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    #[error("invalid LDAP provider configuration: {0}")]
    Config(String),
    #[error("cannot load ca_file {path}: {cause}")]
    CaFile { path: String, cause: String },
    #[error("TLS set-up failed: {0}")]
    Tls(String),
}
