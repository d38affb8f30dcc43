//! `keel server`: the tracking server (MLflow-compatible REST API and artifact proxy).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

/// Flags follow `mlflow server`'s names.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Metadata store: `sqlite:///relative.db`, `sqlite:////absolute.db`, or `postgresql://user@host/db`.
    #[arg(
        long,
        env = "KEEL_BACKEND_STORE_URI",
        default_value = "sqlite:///keel.db"
    )]
    pub backend_store_uri: String,
    /// Where artifacts are stored: a local directory or `s3://bucket/prefix`.
    #[arg(
        long,
        env = "KEEL_ARTIFACTS_DESTINATION",
        default_value = "./keel-artifacts"
    )]
    pub artifacts_destination: String,
    /// Address to listen on; anything but loopback needs --auth-token or --app-name basic-auth.
    #[arg(long, short = 'H', default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, short, default_value_t = 5000)]
    pub port: u16,
    /// Require `Authorization: Bearer TOKEN` on every request (the MLflow client sends MLFLOW_TRACKING_TOKEN).
    #[arg(long, env = "KEEL_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Listen on a non-loopback address without a token (not recommended).
    #[arg(long)]
    pub allow_unauthenticated: bool,
    /// `basic-auth`: MLflow's users and permissions (HTTP basic auth, grants,
    /// access tokens), configured by MLflow's basic_auth.ini at
    /// MLFLOW_AUTH_CONFIG_PATH and MLFLOW_AUTH_ADMIN_PASSWORD (docs/auth.md).
    #[arg(long, value_parser = ["basic-auth"])]
    pub app_name: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key", env = "KEEL_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", env = "KEEL_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
    /// An alias that moves only when the version's recorded gates passed,
    /// on every API (MLflow's set-alias included); repeat for several.
    #[arg(long = "protected-alias", value_name = "ALIAS", default_values_t = keel_server::DEFAULT_PROTECTED_ALIASES.iter().map(|a| a.to_string()))]
    pub protected_aliases: Vec<String>,
    #[command(flatten)]
    pub limits: HttpLimitArgs,
}

/// The bounds of an HTTP server (`keel server` and `keel serve` alike).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpLimitArgs {
    /// A request's head must arrive within this once its first byte has
    /// (slow clients are disconnected).
    #[arg(long, value_parser = keel_core::duration::parse_flag, default_value = "10s")]
    pub header_timeout: Duration,
    /// A request body read into memory must arrive whole within this; a
    /// streamed upload's next chunk must arrive within this.
    #[arg(long, value_parser = keel_core::duration::parse_flag, default_value = "60s")]
    pub body_timeout: Duration,
    /// A keep-alive connection waiting for its next request is closed after this.
    #[arg(long, value_parser = keel_core::duration::parse_flag, default_value = "75s")]
    pub idle_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog (keep it
    /// below the process's open-file limit, `ulimit -n`).
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// MiB of request bodies held in memory at once by all requests
    /// together; a request beyond it gets 503 with Retry-After.
    #[arg(long, value_name = "MIB", default_value_t = 128)]
    pub body_budget_mib: usize,
    /// Benchmarks only: serve with none of the bounds above (hyper alone, no
    /// body budget), to measure what they cost. Loopback addresses only.
    #[arg(long, hide = true)]
    pub no_http_limits: bool,
}

impl HttpLimitArgs {
    pub fn limits(&self) -> keel_server::Limits {
        if self.no_http_limits {
            return keel_server::Limits::off();
        }
        let at_least = |d: Duration| d.max(Duration::from_millis(1));
        keel_server::Limits {
            header_timeout: at_least(self.header_timeout),
            body_timeout: at_least(self.body_timeout),
            idle_timeout: at_least(self.idle_timeout),
            max_connections: self.max_connections.max(1),
            body_budget_bytes: self.body_budget_mib.max(1).saturating_mul(1024 * 1024),
            enforced: true,
        }
    }
}

pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let basic_auth = match args.app_name.as_deref() {
        Some("basic-auth") => {
            let config = keel_server::auth::BasicAuthConfig::from_env()?;
            if let Some(uri) = &config.database_uri {
                tracing::info!(
                    database_uri = %uri,
                    "basic_auth.ini database_uri is not used: users and grants live in keel's backend store"
                );
            }
            Some(config)
        }
        _ => None,
    };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(keel_server::TlsFiles { cert, key }),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let config = keel_server::ServerConfig {
        backend_store_uri: args.backend_store_uri,
        artifacts_destination: args.artifacts_destination,
        host: args.host,
        port: args.port,
        auth_token: args.auth_token,
        basic_auth,
        allow_unauthenticated: args.allow_unauthenticated,
        tls,
        protected_aliases: args.protected_aliases,
    };
    let (server, state) =
        keel_server::bind_with_limits(&config, keel_ui::pages(), args.limits.limits()).await?;
    // Before the address is announced: a caller may signal at once.
    let shutdown = shutdown_signal();
    tracing::info!(
        address = %server.addr,
        backend_store_uri = %config.backend_store_uri,
        artifacts_destination = %config.artifacts_destination,
        "keel server listening"
    );
    eprintln!("keel server listening on {scheme}://{}", server.addr);
    server.serve(shutdown).await.context("serving HTTP")?;
    state.store.close().await;
    tracing::info!("keel server stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM, so in-flight requests finish and the store
/// closes cleanly. The handlers are registered when this is called, not when
/// the future is first polled: a SIGTERM that arrives right after the
/// "listening" line (which a caller may act on at once) is not lost and does
/// not kill the process with the default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let (interrupt, terminate) = signals;
            tokio::select! {
                _ = wait(interrupt) => {},
                _ = wait(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
