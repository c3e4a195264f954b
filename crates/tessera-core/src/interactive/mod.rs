//! Interactive sign-in (OpenID Connect Core 1.0, authorization code flow with PKCE):
//!
//! - [`authorize`]: the authorization endpoint as an ordered table of named checks, then the
//!   decision (login, consent or a code) over the browser's session;
//! - [`transaction`]: the pending authorization request carried through the login and consent
//!   pages, sealed with the master key and bound to the browser;
//! - [`signin`]: password sign-in through the authentication chain, sessions, consent;
//! - [`token`]: the `authorization_code` and `refresh_token` grants;
//! - [`id_token`]: ID tokens and the claims released per scope;
//! - [`userinfo`]: the UserInfo endpoint (OIDC Core §5.3, RFC 6750 errors);
//! - [`logout`]: RP-Initiated Logout 1.0 and Back-Channel Logout 1.0.
//!
//! The HTTP edge renders pages and sets cookies; every decision is made here.

pub mod authorize;
pub mod id_token;
pub mod logout;
pub mod signin;
pub mod token;
pub mod transaction;
pub mod userinfo;

pub use authorize::{AuthorizeError, AuthzCode, Step};
pub use logout::{BackchannelSender, LogoutDelivery, LogoutOutcome, LogoutRequest, NoBackchannel};
pub use signin::{SignInError, SignedIn};
pub use transaction::{AuthRequest, Prompt, Transaction, TransactionError};

pub(crate) use token::{grant_authorization_code, grant_refresh_token};

#[cfg(test)]
mod tests;
