//! Tessera's protocol and domain logic: OAuth 2.0 / OpenID Connect rules, client and token
//! handling, the authentication chain, and the contracts of storage and providers.
//!
//! Owns: every decision. Must not: open sockets, touch SQL, read the system clock (only
//! [`clock::SystemClock`] does), or know about HTTP frameworks. I/O happens behind the traits in
//! [`store`] and [`authn::AuthProvider`], implemented by other crates.

pub mod assertion;
pub mod authn;
pub mod cache;
pub mod clock;
pub mod diagnostics;
pub mod discovery;
pub mod engine;
pub mod error;
pub mod federation;
pub mod interactive;
pub mod keys;
pub mod lockout;
pub mod model;
pub mod oauth;
pub mod registration;
pub mod secret;
pub mod secrets;
pub mod settings;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trace;

pub use engine::Engine;
pub use error::{ErrorCode, OAuthError, OAuthResult};
