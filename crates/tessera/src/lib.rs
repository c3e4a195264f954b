//! The `tessera` binary's library half: configuration loading, the composition root and the
//! CLI commands. It exists as a library so the end-to-end tests can build the server in
//! process; `main.rs` only parses arguments and maps errors to exit codes.
//!
//! Owns: reading files and the environment, opening the store, creating the master key file,
//! wiring crates together, signals and background tasks. Must not: make protocol decisions
//! (tessera-core) or handle HTTP requests (tessera-http).

pub mod app;
pub mod cli;
pub mod cli_assertion;
pub mod cli_debug;
pub mod cli_doctor;
pub mod cli_lockout;
pub mod commands;
pub mod config;
