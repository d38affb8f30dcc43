//! `keel tokens create|list|revoke`: access tokens for machines (CI
//! runners, serving replicas) on a keel server started with `--app-name
//! basic-auth`. A token acts as its user, is sent as MLFLOW_TRACKING_TOKEN,
//! is printed once by `create` and stored by the server as a SHA-256 hash.
//! Talks to the server named by the tracking settings, with the caller's own
//! credentials (an admin, or the user the token is for).

use std::process::ExitCode;

use anyhow::{Context, bail};
use keel_client::{Client, api};

use super::client::ClientArgs;

#[derive(Debug, clap::Args)]
pub struct TokensArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// Create a token for USER and print it (once: the server keeps only its hash).
    Create {
        /// The user the token acts as (default: the caller).
        #[arg(long)]
        user: Option<String>,
        /// How long the token is valid, e.g. `90d` (default: until revoked).
        #[arg(long, value_parser = keel_core::duration::parse_flag)]
        expires: Option<std::time::Duration>,
        /// A label shown by `list` (e.g. `ci-runner`).
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens without their secrets (an admin sees everyone's).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by the id `list` shows.
    Revoke { id: i64 },
}

pub fn run(args: TokensArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    runtime.block_on(async {
        let client = args.client.open(None).await?;
        let Client::Remote(remote) = &client else {
            bail!(
                "tokens are created by a keel server: pass --tracking-uri http(s)://HOST:PORT \
                 (or set MLFLOW_TRACKING_URI) with an admin's MLFLOW_TRACKING_USERNAME/PASSWORD"
            );
        };
        match args.command {
            TokensCommand::Create {
                user,
                expires,
                name,
            } => {
                let created = remote
                    .create_token(&api::CreateToken {
                        username: user,
                        name,
                        expires_in: expires.map(|d| format!("{}s", d.as_secs())),
                    })
                    .await?;
                let info = &created.token_info;
                eprintln!(
                    "token {} for user '{}'{} (shown once; send it as MLFLOW_TRACKING_TOKEN)",
                    info.id,
                    info.username,
                    info.expires_at
                        .map(|at| format!(", expires {}", keel_core::civil::utc_text(at)))
                        .unwrap_or_default()
                );
                println!("{}", created.token);
            }
            TokensCommand::List { user } => {
                let reply = remote.list_tokens(user.as_deref()).await?;
                println!(
                    "{:>6}  {:<16} {:<16} {:<21} expires",
                    "id", "user", "name", "created"
                );
                for token in reply.tokens {
                    println!(
                        "{:>6}  {:<16} {:<16} {:<21} {}",
                        token.id,
                        token.username,
                        token.name,
                        keel_core::civil::utc_text(token.created_at),
                        token
                            .expires_at
                            .map(keel_core::civil::utc_text)
                            .unwrap_or_else(|| "never".into())
                    );
                }
            }
            TokensCommand::Revoke { id } => {
                remote.revoke_token(id).await?;
                eprintln!("token {id} revoked");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
