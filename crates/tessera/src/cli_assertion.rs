//! CLI for service accounts and JWT assertions:
//!
//! - `tessera service-account create NAME [--impersonate PATTERN]... [--scope S] [--out FILE]`
//!   registers a service account and emits its Google-format JSON key file;
//! - `tessera assertion mint --key-file F [--aud A] [--sub S] [--scope S] [--lifetime N] [--jti]`
//!   prints a signed jwt-bearer assertion (to test a trust end to end);
//! - `tessera assertion check JWT [--as client|grant] [--client-id ID] [--scope S]` runs the
//!   server's own validation (the code path of the token endpoint, without consuming the `jti`)
//!   and prints every check with expected and actual values.
//!
//! Also the glue from the outbound HTTP client to core's `JwksSource` ([`jwks_cache`]).

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use tessera_core::Engine;
use tessera_core::assertion::keyfile::{MintOptions, create_service_account, mint};
use tessera_core::assertion::{FnJwksSource, JwksCache, JwksFetchError, Purpose, inspect};
use tessera_core::clock::{Clock, SystemClock};

use crate::commands::CliError;

#[derive(Debug, Subcommand)]
pub enum ServiceAccountCommand {
    /// Register a service account and write its JSON key file (Google format).
    Create(ServiceAccountCreateArgs),
}

#[derive(Debug, Args)]
pub struct ServiceAccountCreateArgs {
    /// Account name; the account id (client_email) is NAME@<issuer host>.
    pub name: String,
    /// Subjects the account may impersonate (`sub` in its assertions): exact values or `*`
    /// globs such as `*@example.com`. Repeatable. Default: none.
    #[arg(long = "impersonate", value_name = "PATTERN")]
    pub impersonate: Vec<String>,
    /// Scopes the account may request (space-separated); default: every supported scope.
    #[arg(long)]
    pub scope: Option<String>,
    /// Write the key file here (mode 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AssertionCommand {
    /// Sign a jwt-bearer grant assertion with a service-account key file.
    Mint(MintArgs),
    /// Validate an assertion exactly as the token endpoint would and explain every check.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct MintArgs {
    /// The JSON key file (`tessera service-account create`).
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// Audience; default: the key file's token_uri.
    #[arg(long)]
    pub aud: Option<String>,
    /// Subject to impersonate; default: the account itself (no `sub`).
    #[arg(long)]
    pub sub: Option<String>,
    /// `scope` claim (space-separated).
    #[arg(long)]
    pub scope: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub lifetime: u64,
    /// Add a random `jti` (the assertion becomes single-use).
    #[arg(long)]
    pub jti: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckAs {
    /// A `client_assertion` (private_key_jwt / client_secret_jwt).
    Client,
    /// A jwt-bearer grant `assertion`.
    Grant,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The JWT, or `-` to read it from standard input.
    pub jwt: String,
    /// What the JWT is presented as.
    #[arg(long = "as", value_enum, default_value_t = CheckAs::Client)]
    pub as_: CheckAs,
    /// Client auth: the `client_id` parameter sent with it. Grant: the presenting client.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Grant: the `scope` parameter sent with it.
    #[arg(long)]
    pub scope: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn write_private_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

/// `tessera service-account create`.
pub async fn service_account_create(
    engine: &Engine,
    args: &ServiceAccountCreateArgs,
) -> Result<(), CliError> {
    let key_file = create_service_account(
        engine,
        &args.name,
        args.impersonate.clone(),
        args.scope.clone(),
        engine.now(),
    )
    .await?;
    let text = key_file.to_string();
    match &args.out {
        Some(path) => {
            write_private_file(path, &text)
                .map_err(|e| CliError::user(format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "created service account {} (key id {}); key file written to {}",
                key_file.client_email,
                key_file.private_key_id,
                path.display()
            );
        }
        None => {
            eprintln!(
                "created service account {} (key id {}); the private key is shown only once:",
                key_file.client_email, key_file.private_key_id
            );
            println!("{text}");
        }
    }
    Ok(())
}

/// `tessera assertion mint`.
pub fn assertion_mint(args: &MintArgs) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&args.key_file)
        .map_err(|e| CliError::user(format!("cannot read {}: {e}", args.key_file.display())))?;
    let opts = MintOptions {
        audience: args.aud.clone(),
        subject: args.sub.clone(),
        scope: args.scope.clone(),
        lifetime: Some(args.lifetime),
        jti: args.jti,
    };
    let jwt = mint(&text, &opts, SystemClock.now()).map_err(CliError::user)?;
    println!("{jwt}");
    Ok(())
}

/// `tessera assertion check`. Returns whether the assertion would be accepted (the caller
/// exits 1 when not).
pub async fn assertion_check(engine: &Engine, args: &CheckArgs) -> Result<bool, CliError> {
    let jwt = if args.jwt == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::user(format!("cannot read standard input: {e}")))?;
        s.trim().to_owned()
    } else {
        args.jwt.trim().to_owned()
    };
    let purpose = match args.as_ {
        CheckAs::Client => Purpose::ClientAuth,
        CheckAs::Grant => Purpose::Grant,
    };
    let report = inspect(
        engine,
        &jwt,
        purpose,
        args.client_id.as_deref(),
        args.scope.as_deref(),
        engine.now(),
    )
    .await;
    if args.json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::Internal(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", report.render());
    }
    Ok(report.accepted())
}

/// A [`JwksCache`] that fetches `jwks_uri` documents through the one outbound HTTP client.
pub fn jwks_cache(http: tessera_egress::HttpClient) -> JwksCache {
    JwksCache::new(Some(Arc::new(FnJwksSource::new(move |uri: String| {
        let http = http.clone();
        Box::pin(async move {
            http.fetch_jwks(&uri).await.map_err(|e| JwksFetchError {
                class: e.class(),
                detail: e.to_string(),
            })
        })
    }))))
}
