//! `keel serve MODEL_URI`: the model server (MLflow scoring protocol, Open
//! Inference Protocol, Prometheus metrics, crash-safe prediction log).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use keel_serve::{EnginePreference, FsyncPolicy, Policies, Policy, ServeConfig};

use super::server::{HttpLimitArgs, shutdown_signal};

/// Flags follow `mlflow models serve` where it has them.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// `models:/NAME@ALIAS` (followed as it moves), `models:/NAME/VERSION`, or a
    /// path: a keel model folder, a folder with one .onnx file, or a .onnx file.
    pub model_uri: String,
    /// Address to listen on; anything but loopback needs --auth-token.
    #[arg(long, short = 'H', default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, short, default_value_t = 8080)]
    pub port: u16,
    /// Tracking server that resolves models:/ URIs (default, as for every
    /// command: KEEL_TRACKING_URI, KEEL_BACKEND_STORE_URI, MLFLOW_TRACKING_URI).
    #[arg(long)]
    pub tracking_uri: Option<String>,
    /// Bearer token for the tracking server.
    #[arg(long, env = "MLFLOW_TRACKING_TOKEN", hide_env_values = true)]
    pub tracking_token: Option<String>,
    /// Name to serve and log a local model under (default: its folder or file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Require `Authorization: Bearer TOKEN` on every request but health checks.
    #[arg(long, env = "KEEL_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Require `Authorization: Bearer TOKEN` with this token on `/feedback`
    /// (labels that drive retraining) instead of --auth-token, so prediction
    /// clients cannot write labels.
    #[arg(long, env = "KEEL_FEEDBACK_TOKEN", hide_env_values = true)]
    pub feedback_token: Option<String>,
    /// Listen on a non-loopback address without a token (not recommended).
    #[arg(long)]
    pub allow_unauthenticated: bool,
    /// Engine for keel model folders: auto (native) or onnx (their model.onnx in ONNX Runtime).
    #[arg(long, default_value = "auto", value_parser = ["auto", "onnx"])]
    pub engine: String,
    /// ONNX Runtime shared library (else KEEL_ONNXRUNTIME_LIB,
    /// ORT_DYLIB_PATH, the active Python's onnxruntime wheel, LD_LIBRARY_PATH, /usr/lib…).
    #[arg(long)]
    pub onnxruntime_lib: Option<PathBuf>,
    /// Challenger model URI that answers --canary-share of the requests.
    #[arg(long)]
    pub canary: Option<String>,
    /// Share of requests routed to --canary (0..1).
    #[arg(long, default_value_t = 0.1)]
    pub canary_share: f64,
    /// Model URI mirrored off the hot path (logged as role "shadow", never returned).
    #[arg(long)]
    pub shadow: Option<String>,
    /// Prediction and feedback log: a folder or s3://bucket/prefix (Parquet,
    /// partitioned by model, version and day; see docs/prediction-log.md).
    #[arg(long, default_value = "keel-logs")]
    pub log_dir: String,
    /// Turn the prediction log off.
    #[arg(long)]
    pub no_log: bool,
    /// Local folder for the spool (records are written there before each answer,
    /// then compacted into --log-dir); default <log-dir>/_spool, or
    /// ~/.local/state/keel/spool for an s3:// log.
    #[arg(long)]
    pub log_spool: Option<PathBuf>,
    /// When spool writes reach the disk: never (a killed process loses nothing;
    /// power loss can lose rows not yet compacted), interval (fsync every 100 ms),
    /// always (fsync before each answer: nothing acknowledged is lost).
    #[arg(long, default_value = "interval", value_parser = ["never", "interval", "always"])]
    pub log_fsync: String,
    /// This replica's id in log file names (default: <host name>-<port>).
    #[arg(long, env = "KEEL_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Longest time before a logged row is in a Parquet file (10ms to 1h).
    #[arg(long, value_parser = keel_core::duration::parse_flag, default_value = "1s")]
    pub log_flush_interval: Duration,
    /// Where downloaded model versions are cached.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub contract: ContractArgs,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most rows in one request.
    #[arg(long, default_value_t = 100_000)]
    pub max_rows: usize,
    /// Requests handled at once; more get 503.
    #[arg(long, default_value_t = 1024)]
    pub max_concurrency: usize,
    /// Longest time for one request (504 beyond).
    #[arg(long, value_parser = keel_core::duration::parse_flag, default_value = "30s")]
    pub timeout: Duration,
    #[command(flatten)]
    pub limits: HttpLimitArgs,
}

/// The input contract's policies (shared by `keel serve` and `keel predict`).
#[derive(Debug, Clone, clap::Args)]
pub struct ContractArgs {
    /// Missing input column: reject | flag | ignore.
    #[arg(long, default_value = "reject", value_parser = POLICIES)]
    pub on_missing_column: String,
    /// Column the model does not take: reject | flag | ignore.
    #[arg(long, default_value = "flag", value_parser = POLICIES)]
    pub on_extra_column: String,
    /// Value of the wrong type: reject | flag | ignore.
    #[arg(long, default_value = "reject", value_parser = POLICIES)]
    pub on_wrong_type: String,
    /// Null or empty value: reject | flag | ignore.
    #[arg(long, default_value = "flag", value_parser = POLICIES)]
    pub on_null: String,
    /// Number outside the training range: reject | flag | ignore.
    #[arg(long, default_value = "flag", value_parser = POLICIES)]
    pub on_out_of_range: String,
    /// Category not seen in training: reject | flag | ignore.
    #[arg(long, default_value = "flag", value_parser = POLICIES)]
    pub on_unknown_category: String,
    /// NaN or infinite prediction: reject (HTTP 500 naming the rows) | flag (null + x-keel-flags) | ignore.
    #[arg(long, default_value = "reject", value_parser = POLICIES)]
    pub on_nan_output: String,
}

const POLICIES: [&str; 3] = ["reject", "flag", "ignore"];

fn policy(text: &str) -> Policy {
    Policy::parse(text).unwrap_or(Policy::Reject)
}

impl ContractArgs {
    /// The policies these flags set.
    pub fn policies(&self) -> Policies {
        Policies {
            missing_column: policy(&self.on_missing_column),
            extra_column: policy(&self.on_extra_column),
            wrong_type: policy(&self.on_wrong_type),
            null: policy(&self.on_null),
            out_of_range: policy(&self.on_out_of_range),
            unknown_category: policy(&self.on_unknown_category),
            nan_output: policy(&self.on_nan_output),
        }
    }
}

/// The tracking server `models:/` and `runs:/` URIs resolve through: the
/// same settings, in the same order, as every other command (a keel server).
pub fn tracking_server(flag: Option<String>) -> Option<String> {
    match keel_client::ClientSettings::new(flag.clone(), None).target() {
        Ok(keel_client::Target::Server { url, .. }) => Some(url),
        _ => flag,
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if let Some(library) = &args.onnxruntime_lib {
        keel_engine::set_onnxruntime_library(library.clone());
    }
    let mut config = ServeConfig::new(&args.model_uri);
    config.host = args.host;
    config.port = args.port;
    config.tracking_uri = tracking_server(args.tracking_uri);
    config.tracking_token = args.tracking_token;
    config.model_name = args.name;
    config.auth_token = args.auth_token;
    config.feedback_token = args.feedback_token;
    config.allow_unauthenticated = args.allow_unauthenticated;
    config.engine = match args.engine.as_str() {
        "onnx" => EnginePreference::Onnx,
        _ => EnginePreference::Auto,
    };
    config.canary = args.canary.map(|uri| (uri, args.canary_share));
    config.shadow = args.shadow;
    config.log_dir = (!args.no_log).then_some(args.log_dir);
    config.log_spool = args.log_spool;
    config.log_fsync = FsyncPolicy::parse(&args.log_fsync).unwrap_or(FsyncPolicy::Interval);
    config.replica_id = args.replica_id;
    config.log_flush_interval = args
        .log_flush_interval
        .clamp(Duration::from_millis(10), Duration::from_secs(3600));
    if let Some(cache) = args.cache_dir {
        config.cache_dir = cache;
    }
    config.policies = args.contract.policies();
    config.max_body_bytes = args.max_body_bytes;
    config.max_rows = args.max_rows;
    config.max_concurrency = args.max_concurrency;
    config.request_timeout = args.timeout.max(Duration::from_millis(1));
    config.limits = args.limits.limits();
    let server = keel_serve::bind(config).await?;
    let (name, version) = server.primary();
    // Before the address is announced: a caller may signal at once.
    let shutdown = shutdown_signal();
    tracing::info!(address = %server.addr, name, version, "keel serve listening");
    eprintln!(
        "keel serve: {name} version {version} on http://{}",
        server.addr
    );
    if let Some(library) = keel_engine::loaded_onnxruntime_library() {
        eprintln!("keel serve: ONNX Runtime {library}");
    }
    server.serve(shutdown).await.context("serving HTTP")?;
    tracing::info!("keel serve stopped; prediction log written");
    Ok(ExitCode::SUCCESS)
}
