//! One module per grant type; `Engine::token` dispatches here after the common checks.

pub mod client_credentials;
