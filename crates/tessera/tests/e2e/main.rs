//! End-to-end tests: ONE integration binary (one link), one module per feature.
//!
//! `support` holds the harness: `TestServer` (the server built in process on 127.0.0.1:0,
//! SQLite by default, PostgreSQL on request when `TEST_DATABASE_URL` is set) and `Tessera`
//! (the real binary, for CLI tests). Add a module here per feature, with its fixtures beside it.

// Test code: a failed expectation should panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod assertions;
mod backchannel;
mod chain;
mod cli;
mod cluster;
mod diagnostics;
mod federation;
mod harness;
mod lockout;
mod rust_rp;
mod signin;
