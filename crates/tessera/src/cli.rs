//! The command line (clap derive). Parsing only; [`crate::commands`] carries the commands out.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "OpenID Connect provider and OAuth 2.0 authorization server"
)]
pub struct Cli {
    /// Configuration file (TOML). Without one, built-in defaults and TESSERA_* variables apply.
    #[arg(long, global = true, value_name = "FILE", env = crate::config::CONFIG_FILE_VAR)]
    pub config: Option<PathBuf>,
    /// Data directory (SQLite database, master key); overrides `data_dir` and TESSERA_DATA_DIR.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (applies migrations and creates signing keys as needed).
    Serve {
        /// Also create a demo client and user and print a ready-to-paste curl command.
        #[arg(long)]
        quickstart: bool,
    },
    /// Same as `serve --quickstart`.
    Quickstart,
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage local users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Service accounts that obtain tokens with signed JWTs (Google key-file format).
    #[command(subcommand)]
    ServiceAccount(crate::cli_assertion::ServiceAccountCommand),
    /// Mint a jwt-bearer assertion, or check one exactly as the token endpoint would.
    #[command(subcommand)]
    Assertion(crate::cli_assertion::AssertionCommand),
    /// Inspect and clear soft lockouts (users and clients).
    #[command(subcommand)]
    Lockout(crate::cli_lockout::LockoutCommand),
    /// Check every dependency of this configuration (store, keys, clock, LDAP hosts, remote
    /// JWKS and upstreams) and say what is broken and how to fix it.
    Doctor(crate::cli_doctor::DoctorArgs),
    /// From a relying party's host: can discovery, JWKS and the token endpoint of an issuer be
    /// reached through this host's proxy settings? (Java -D proxy options accepted verbatim.)
    Probe(crate::cli_doctor::ProbeArgs),
    /// Switch detailed authentication tracing on or off on a running server.
    #[command(subcommand)]
    Debug(crate::cli_debug::DebugCommand),
    /// Show recorded authentication traces of a running server.
    #[command(subcommand)]
    Trace(crate::cli_debug::TraceCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it (secrets redacted); exit 1 on errors.
    Check,
}

/// `--json` for commands that list or show records.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputFormat {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; its generated secret is printed once.
    Add(ClientAdd),
    /// List clients.
    List(OutputFormat),
    /// Show one client's registration.
    Show {
        client_id: String,
        #[command(flatten)]
        output: OutputFormat,
    },
    /// Delete a client.
    Remove { client_id: String },
}

#[derive(Debug, Args)]
pub struct ClientAdd {
    /// The client id (also the display name unless --client-name is given).
    pub name: String,
    /// Grant type (repeatable): authorization_code, refresh_token, client_credentials,
    /// urn:ietf:params:oauth:grant-type:jwt-bearer. Default: authorization_code when a
    /// redirect URI is given, else client_credentials.
    #[arg(long = "grant", value_name = "GRANT")]
    pub grants: Vec<String>,
    /// Redirect URI (repeatable).
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uris: Vec<String>,
    /// Post-logout redirect URI (repeatable).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    pub post_logout_redirect_uris: Vec<String>,
    /// Token endpoint authentication: client_secret_basic, client_secret_post,
    /// client_secret_jwt, private_key_jwt or none (public client).
    #[arg(long, value_name = "METHOD", default_value = "client_secret_basic")]
    pub auth_method: String,
    /// Space-separated scopes the client may request (default: every supported scope).
    #[arg(long)]
    pub scope: Option<String>,
    /// Skip the consent page for this client.
    #[arg(long)]
    pub first_party: bool,
    /// JWK Set file with the client's public keys (private_key_jwt).
    #[arg(long, value_name = "FILE", conflicts_with = "jwks_uri")]
    pub jwks_file: Option<PathBuf>,
    /// URL of the client's JWK Set (private_key_jwt).
    #[arg(long, value_name = "URL")]
    pub jwks_uri: Option<String>,
    /// Human-readable name shown on the consent page.
    #[arg(long, value_name = "NAME")]
    pub client_name: Option<String>,
    #[command(flatten)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a local user; the password is read from the terminal or --password-stdin.
    Add(UserAdd),
    /// Set a user's password.
    Passwd {
        username: String,
        /// Read the password from standard input (one line) instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List local users.
    List(OutputFormat),
    /// Disable a user (they can no longer sign in).
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
}

#[derive(Debug, Args)]
pub struct UserAdd {
    pub username: String,
    #[arg(long)]
    pub email: Option<String>,
    /// Full name.
    #[arg(long)]
    pub name: Option<String>,
    /// Group membership (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Read the password from standard input (one line) instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys with their state and schedule.
    List(OutputFormat),
    /// Start a staged rotation: the new key is published now and signs after keys.jwks_max_age.
    Rotate {
        /// Rotate only this algorithm (default: every configured signing algorithm).
        #[arg(long)]
        alg: Option<String>,
    },
}
