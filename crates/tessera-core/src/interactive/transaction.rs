//! The pending authorization request, carried through the login and consent pages.
//!
//! It travels as a value sealed with the master key (AES-256-GCM; nothing is stored until a
//! code is issued), so it cannot be read or altered by the browser. It is bound to the browser
//! by the hash of a random "binding" cookie: a transaction opened with another browser's
//! cookie is refused, and the CSRF token of its forms is an HMAC over the transaction id and
//! that cookie (login CSRF: an attacker cannot make a victim's browser submit the attacker's
//! transaction).

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::clock::UnixTime;
use crate::engine::Engine;
use crate::secrets::random_token;

/// How long a sign-in page stays usable, seconds.
pub const TRANSACTION_TTL: i64 = 30 * 60;
const SEAL_CONTEXT: &str = "tessera/v1/authorize-transaction";

/// OIDC Core §3.1.2.1 `prompt` values this server implements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// A validated authorization request (the output of the authorize checks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    /// The redirect URI the response goes to (the registered one when it was omitted).
    pub redirect_uri: String,
    /// Whether the request carried `redirect_uri` (RFC 6749 §4.1.3: then the token request must).
    pub redirect_uri_sent: bool,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// RFC 7636 S256 challenge.
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// `sub` of a valid `id_token_hint` (OIDC Core §3.1.2.1): only this user may be answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_hint_sub: Option<String>,
    /// When the request reached the server: `prompt=login` is satisfied by a sign-in after it.
    pub started_at: UnixTime,
}

/// An [`AuthRequest`] waiting for the user, bound to one browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub id: String,
    /// Keyed hash of the browser-binding cookie.
    pub bind_hash: String,
    pub expires_at: UnixTime,
    pub request: AuthRequest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error("the sign-in request is malformed or was not issued by this server")]
    Invalid,
    #[error("the sign-in request has expired")]
    Expired,
    #[error("the sign-in request belongs to another browser")]
    WrongBrowser,
    #[error("the form token is missing or invalid")]
    BadCsrf,
}

impl Transaction {
    pub fn new(
        engine: &Engine,
        request: AuthRequest,
        bind: &str,
        now: UnixTime,
    ) -> crate::OAuthResult<Self> {
        Ok(Self {
            id: random_token().map_err(crate::OAuthError::server_error)?,
            bind_hash: engine.master.hash_token(bind),
            expires_at: now + TRANSACTION_TTL,
            request,
        })
    }

    /// The opaque value placed in URLs and forms.
    pub fn seal(&self, engine: &Engine) -> crate::OAuthResult<String> {
        let json = serde_json::to_vec(self).map_err(crate::OAuthError::server_error)?;
        engine
            .master
            .seal(&json, SEAL_CONTEXT)
            .map_err(crate::OAuthError::server_error)
    }

    /// Open a sealed transaction presented by the browser holding the binding cookie `bind`.
    pub fn open(
        engine: &Engine,
        sealed: &str,
        bind: Option<&str>,
        now: UnixTime,
    ) -> Result<Self, TransactionError> {
        if sealed.len() > 8192 {
            return Err(TransactionError::Invalid);
        }
        let plain = engine
            .master
            .unseal(sealed, SEAL_CONTEXT)
            .map_err(|_| TransactionError::Invalid)?;
        let tx: Self = serde_json::from_slice(&plain).map_err(|_| TransactionError::Invalid)?;
        if tx.expires_at <= now {
            return Err(TransactionError::Expired);
        }
        let Some(bind) = bind else {
            return Err(TransactionError::WrongBrowser);
        };
        let presented = engine.master.hash_token(bind);
        if !bool::from(presented.as_bytes().ct_eq(tx.bind_hash.as_bytes())) {
            return Err(TransactionError::WrongBrowser);
        }
        Ok(tx)
    }

    /// The CSRF token of this transaction's forms: HMAC over the transaction id and the
    /// browser-binding cookie.
    pub fn csrf_token(&self, engine: &Engine) -> String {
        engine
            .master
            .hash_token(&format!("csrf\u{0}{}\u{0}{}", self.id, self.bind_hash))
    }

    pub fn check_csrf(
        &self,
        engine: &Engine,
        presented: Option<&str>,
    ) -> Result<(), TransactionError> {
        let expected = self.csrf_token(engine);
        match presented {
            Some(p) if bool::from(p.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
            _ => Err(TransactionError::BadCsrf),
        }
    }
}

/// A CSRF token for forms that are not part of a transaction (logout confirmation), bound to
/// the browser-binding cookie and a purpose.
pub fn browser_csrf_token(engine: &Engine, purpose: &str, bind: &str) -> String {
    engine.master.hash_token(&format!(
        "csrf\u{0}{purpose}\u{0}{}",
        engine.master.hash_token(bind)
    ))
}

pub fn check_browser_csrf(
    engine: &Engine,
    purpose: &str,
    bind: Option<&str>,
    presented: Option<&str>,
) -> bool {
    match (bind, presented) {
        (Some(b), Some(p)) => bool::from(
            p.as_bytes()
                .ct_eq(browser_csrf_token(engine, purpose, b).as_bytes()),
        ),
        _ => false,
    }
}
