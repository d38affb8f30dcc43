//! `keel loadtest URL`: open- or closed-loop HTTP load with HDR-histogram
//! latencies, a table or JSON report, and SLO flags that set the exit code
//! (so it can be a gate stage in keel.yaml).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use keel_core::duration::parse_flag as parse_duration;
use keel_loadtest::{Config, Load, Progress, Slo};

/// Arguments of `keel loadtest`.
#[derive(Debug, clap::Args)]
pub struct LoadtestArgs {
    /// Target URL, plain http (loopback only unless --allow-remote).
    pub url: String,
    /// Open loop: requests per second on a fixed schedule, latency measured
    /// from each request's scheduled time. Without it: closed loop, each
    /// connection sends as fast as responses come back.
    #[arg(long)]
    pub rps: Option<f64>,
    /// Keep-alive connections.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub connections: usize,
    /// Measure for this long (30s, 500ms, 2m). Default 10s unless --requests is given.
    #[arg(long, short = 'd', value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Measure exactly this many requests (with --duration: whichever ends first).
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// Send load for this long before measuring.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,
    /// Per-request timeout (connect, send, whole response).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// HTTP method (default: POST with a body, GET without).
    #[arg(long, short = 'X')]
    pub method: Option<String>,
    /// Request body read from this file.
    #[arg(long, conflicts_with = "body_json")]
    pub body: Option<PathBuf>,
    /// Request body given inline as JSON (checked before the run).
    #[arg(long)]
    pub body_json: Option<String>,
    /// Extra request header "Name: value" (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Content-Type of the body (default: application/json for --body-json
    /// and .json files, text/csv for .csv, else application/octet-stream).
    #[arg(long)]
    pub content_type: Option<String>,
    /// Print the JSON report on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write the JSON report to this file (for gates: p99_ms, rps, error_rate, …).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// SLO: exit 1 if the 99th-percentile latency is above this (ms).
    #[arg(long)]
    pub p99_ms: Option<f64>,
    /// SLO: exit 1 if the share of failed requests (0..1) is above this.
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    /// SLO: exit 1 if fewer responses per second than this.
    #[arg(long)]
    pub min_rps: Option<f64>,
    /// Allow a target that is not on this machine's loopback interface.
    #[arg(long)]
    pub allow_remote: bool,
    /// Load-generator threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(args: LoadtestArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let config = config(&args)?;
    let slo = Slo {
        p99_ms: args.p99_ms,
        max_error_rate: args.max_error_rate,
        min_rps: args.min_rps,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        anyhow::ensure!(threads > 0, "--threads must be at least 1");
        runtime.worker_threads(threads);
    }
    let runtime = runtime.enable_all().build()?;

    let progress = Arc::new(Progress::default());
    let by_count = config.requests.is_some() && config.duration.is_none();
    let bar = progress_bar(keel_data::progress::should_show(quiet), &config, by_count);
    let mut report = runtime.block_on(async {
        let ticker = {
            let (progress, bar) = (Arc::clone(&progress), bar.clone());
            let started = tokio::time::Instant::now();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    bar.set_position(match by_count {
                        true => progress.completed(),
                        false => started.elapsed().as_millis() as u64,
                    });
                    bar.set_message(format!(
                        "{} requests, {} errors",
                        progress.completed(),
                        progress.errors()
                    ));
                }
            })
        };
        let report = keel_loadtest::run(&config, Arc::clone(&progress)).await;
        ticker.abort();
        report
    })?;
    bar.finish_and_clear();
    report.apply_slo(&slo);

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    if let Some(path) = &args.output {
        super::write_json(path, &report)?;
        if !quiet && !args.json {
            println!("report written to {}", path.display());
        }
    }
    Ok(if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn config(args: &LoadtestArgs) -> anyhow::Result<Config> {
    let (body, default_type) = match (&args.body, &args.body_json) {
        (Some(path), _) => (
            std::fs::read(path).with_context(|| format!("reading --body {}", path.display()))?,
            Some(content_type_for(path)),
        ),
        (None, Some(json)) => {
            serde_json::from_str::<serde_json::Value>(json)
                .context("--body-json is not valid JSON")?;
            (json.clone().into_bytes(), Some("application/json"))
        }
        (None, None) => (Vec::new(), None),
    };
    let method = match &args.method {
        Some(method) => method
            .to_ascii_uppercase()
            .parse()
            .with_context(|| format!("invalid --method {method:?}"))?,
        None if body.is_empty() => keel_loadtest::Method::GET,
        None => keel_loadtest::Method::POST,
    };
    let headers = args
        .headers
        .iter()
        .map(|header| {
            header
                .split_once(':')
                .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                .with_context(|| format!("invalid -H {header:?}: expected \"Name: value\""))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut config = Config::new(&args.url);
    config.method = method;
    config.headers = headers;
    config.content_type = args
        .content_type
        .clone()
        .or(default_type.map(str::to_owned));
    config.body = body.into();
    config.load = match args.rps {
        Some(rps) => Load::Open { rps },
        None => Load::Closed,
    };
    config.connections = args.connections;
    config.duration = match (args.duration, args.requests) {
        (None, None) => Some(Duration::from_secs(10)),
        (duration, _) => duration,
    };
    config.requests = args.requests;
    config.warmup = args.warmup;
    config.timeout = args.timeout;
    config.allow_remote = args.allow_remote;
    Ok(config)
}

fn content_type_for(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("csv") => "text/csv",
        Some("parquet") => "application/vnd.apache.parquet",
        _ => "application/octet-stream",
    }
}

/// Counts requests when the run is bounded by a count, else milliseconds.
fn progress_bar(show: bool, config: &Config, by_count: bool) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !show {
        return ProgressBar::hidden();
    }
    let (len, template) = match by_count {
        true => (
            config.requests.unwrap_or_default(),
            "loadtest [{bar:30}] {pos}/{len} {msg}",
        ),
        false => (
            (config.warmup + config.duration.unwrap_or_default()).as_millis() as u64,
            "loadtest [{bar:30}] {elapsed} {msg}",
        ),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}
