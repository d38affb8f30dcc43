//! `keel monitor`: profiles, drift and quality reports, and a watcher.
//!
//! - `keel monitor profile DATA --output profile.json`
//! - `keel monitor profile DATA... --shard I/N --output shard-I.json`, then
//!   `keel monitor merge shard-*.json --output profile.json`
//! - `keel monitor report --reference A --current B [--format table|json|html] [--output FILE]`
//! - `keel monitor report --model NAME --log-dir DIR --window 1h --model-dir PATH`
//! - `... report ... --segment-by COLUMN`: drift (two files) or live
//!   metrics (a log) per value of COLUMN (see `keel_monitor::segments`)
//! - `keel monitor report --model NAME@ALIAS --log-dir DIR` (files from the registry)
//! - `keel monitor watch --model NAME --log-dir DIR --model-dir PATH --port 9464`
//!
//! Exit code 1 when the drift policy fires (for cron and CI).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use keel_core::duration::parse_flag as parse_duration;
use keel_learn::metrics::Metrics;
use keel_learn::model::{SIGNATURE_FILE, Signature};
use keel_monitor::config::{AlertSink, DriftAction, MonitorConfig, OnDrift};
use keel_monitor::profile::PROFILE_FILE;
use keel_monitor::read::{profile_files, profile_shard};
use keel_monitor::segments::{
    DEFAULT_MAX_SEGMENTS, DEFAULT_MIN_ROWS, LogSegments, SegmentRule, SegmentsReport,
    compare_segments, log_segments,
};
use keel_monitor::service::{Evaluation, Reference, WatchOptions, Watcher};
use keel_monitor::window::{LogOptions, WindowedReport, windowed_report};
use keel_monitor::{DriftConfig, DriftReport, Profile, compare, profile_file, render};
use keel_pipeline::config::KeelYaml;

/// Arguments of `keel monitor`.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    #[command(subcommand)]
    pub command: MonitorCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum MonitorCommand {
    /// Profile a CSV or Parquet file (or file set, or one shard of it) in one
    /// streaming pass (JSON, mergeable).
    Profile(ProfileArgs),
    /// Merge shard profiles (`profile --shard I/N`) into the whole's profile.
    Merge(MergeArgs),
    /// Drift and quality report: two files, or a served model's prediction log.
    Report(ReportArgs),
    /// Watch a prediction log: sliding windows, /metrics gauges, alerts.
    Watch(WatchArgs),
}

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// Data to profile (CSV, or Parquet: .parquet/.pq): files or folders,
    /// taken in sorted path order as one data set.
    #[arg(required = true)]
    pub data: Vec<PathBuf>,
    /// Build against this reference profile (its kinds, layouts and ranges),
    /// so the result compares and merges with others built the same way.
    #[arg(long)]
    pub reference_profile: Option<PathBuf>,
    /// Profile only shard I of N (Parquet row groups, CSV files; `auto/N`
    /// reads I from JOB_COMPLETION_INDEX); `keel monitor merge` joins them.
    #[arg(long)]
    pub shard: Option<keel_table::shard::Shard>,
    /// Where to write the profile JSON.
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Shard profiles (every I of one --shard I/N exactly once), or
    /// profiles built against one reference.
    #[arg(required = true)]
    pub profiles: Vec<PathBuf>,
    /// Where to write the merged profile JSON.
    #[arg(long)]
    pub output: PathBuf,
}

/// Policy options shared by `report` and `watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// keel.yaml whose `monitor:` section holds the policy (default: ./keel.yaml if present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Minimum relevant effect for every column (overrides keel.yaml).
    #[arg(long)]
    pub min_effect: Option<f64>,
    /// Significance level after correction (overrides keel.yaml).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Columns whose drift alone makes the dataset drift, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub key_columns: Option<Vec<String>>,
    /// Share of drifted columns at which the dataset drifts (0 = any column).
    #[arg(long)]
    pub drift_share: Option<f64>,
}

/// Where a served model's log and reference are.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Served model name (`NAME` or `NAME@alias`; the log directory is NAME).
    #[arg(long)]
    pub model: Option<String>,
    /// Prediction log (`keel serve --log-dir`): a folder or s3://bucket/prefix;
    /// every replica's files are read and merged.
    #[arg(long, default_value = "keel-logs")]
    pub log_dir: String,
    /// Window length (30s, 10m, 1h, 1d; default monitor.window of keel.yaml, else 1h).
    #[arg(long, value_parser = parse_duration)]
    pub window: Option<Duration>,
    /// Model folder holding profile.json (and signature.json, metrics.json).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Training-data profile to compare with (instead of --model-dir).
    #[arg(long)]
    pub reference_profile: Option<PathBuf>,
    /// Where `--model NAME@ALIAS` is resolved when neither --model-dir nor
    /// --reference-profile is given: the version's files (profile,
    /// signature, metrics) are downloaded from the registry, again after
    /// the alias moves.
    #[command(flatten)]
    pub client: super::client::ClientArgs,
}

impl LogArgs {
    /// The model folder: --model-dir, else the files of `--model NAME@ALIAS`
    /// from the registry (cached per version under the project's
    /// .keel/state/models, or the temporary folder outside a project).
    async fn model_dir(&self, config: &MonitorConfig) -> anyhow::Result<Option<PathBuf>> {
        if self.model_dir.is_some() || self.reference_profile.is_some() {
            return Ok(self.model_dir.clone());
        }
        let Some(model) = self.model.clone().or_else(|| config.model.clone()) else {
            return Ok(None);
        };
        if !model.contains('@') {
            return Ok(None);
        }
        let uri = format!("{}{model}", keel_core::uri::MODELS_SCHEME);
        let settings = self.client.settings(None);
        let cache = match &settings.project_root {
            Some(root) => root.join(".keel").join("state").join("models"),
            None => std::env::temp_dir().join("keel-models"),
        };
        let client = self.client.open(None).await?;
        let fetched = super::model_files::cached(&client, &uri, &cache).await;
        client.close().await;
        let fetched = fetched?;
        match fetched {
            Some(fetched) => Ok(Some(fetched.dir)),
            None => bail!("{uri} does not exist in the registry"),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Reference data (CSV, Parquet) or profile (.json).
    #[arg(long, requires = "current", conflicts_with = "model")]
    pub reference: Option<PathBuf>,
    /// Current data (CSV, Parquet) or a profile built against the reference (.json).
    #[arg(long, requires = "reference")]
    pub current: Option<PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Output format.
    #[arg(long, default_value = "table", value_parser = ["table", "json", "html"])]
    pub format: String,
    /// Write the report here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also report per value of this categorical column: drift of each
    /// segment (two data files; Bonferroni across segments), or live
    /// metrics of each segment (a prediction log; the column is an input).
    #[arg(long)]
    pub segment_by: Option<String>,
    /// Smallest number of rows of a segment on each side (labelled rows in
    /// log mode); smaller values are skipped and listed.
    #[arg(long, default_value_t = DEFAULT_MIN_ROWS, requires = "segment_by")]
    pub segment_min_rows: u64,
    /// Most segments reported (the largest); the others are skipped and listed.
    #[arg(long, default_value_t = DEFAULT_MAX_SEGMENTS as u64, requires = "segment_by",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_segments: u64,
}

/// The per-segment part of a report.
enum Segments {
    Drift(SegmentsReport),
    Live(LogSegments),
}

impl Segments {
    fn json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(match self {
            Segments::Drift(report) => serde_json::to_value(report)?,
            Segments::Live(report) => serde_json::to_value(report)?,
        })
    }

    fn table(&self) -> String {
        match self {
            Segments::Drift(report) => report.table(),
            Segments::Live(report) => report.table(),
        }
    }

    fn html(&self) -> String {
        match self {
            Segments::Drift(report) => report.html(),
            Segments::Live(report) => report.html(),
        }
    }

    fn drifted(&self) -> bool {
        matches!(self, Segments::Drift(report) if report.drifted > 0)
    }
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Time between evaluations (30s, 5m).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub interval: Duration,
    /// Serve Prometheus gauges on 127.0.0.1:PORT/metrics.
    #[arg(long)]
    pub port: Option<u16>,
    /// Alert webhook (POST, JSON body); repeatable; added to keel.yaml's sinks.
    #[arg(long)]
    pub webhook: Vec<String>,
    /// Evaluations in a row a condition must hold before its alert fires,
    /// and be gone before it resolves (1: at once; 2 or 3 keep a finding
    /// at its rule's edge from paging at every crossing).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub confirm: u32,
    /// Evaluate once and exit (exit code 1 on drift).
    #[arg(long)]
    pub once: bool,
    /// Windows of history read each time (older log files are skipped).
    #[arg(long, default_value_t = 24)]
    pub history: i64,
}

pub fn run(args: MonitorArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    match args.command {
        MonitorCommand::Profile(args) => profile(args, quiet),
        MonitorCommand::Merge(args) => merge(args, quiet),
        MonitorCommand::Report(args) => report(args),
        MonitorCommand::Watch(args) => watch(args, quiet),
    }
}

fn profile(args: ProfileArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let reference = args
        .reference_profile
        .as_deref()
        .map(Profile::read_json)
        .transpose()?;
    let started = std::time::Instant::now();
    let files = keel_table::shard::files(&args.data)?;
    let profile = match args.shard {
        Some(shard) => profile_shard(&files, shard, reference.as_ref())?,
        None => profile_files(&files, reference.as_ref())?,
    };
    profile.write_json(&args.output)?;
    if !quiet {
        let what = match (args.shard, files.as_slice()) {
            (Some(shard), _) => format!("shard {shard} of {} file(s)", files.len()),
            (None, [one]) => one.display().to_string(),
            (None, _) => format!("{} files", files.len()),
        };
        eprintln!(
            "Profiled {} rows x {} columns of {what} in {:.2}s -> {}",
            profile.rows,
            profile.columns.len(),
            started.elapsed().as_secs_f64(),
            args.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn merge(args: MergeArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let profiles = args
        .profiles
        .iter()
        .map(|path| Profile::read_json(path))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = Profile::merge_shards(profiles)?;
    merged.write_json(&args.output)?;
    if !quiet {
        eprintln!(
            "Merged {} profiles ({} rows) in {:.2}s -> {}",
            args.profiles.len(),
            merged.rows,
            started.elapsed().as_secs_f64(),
            args.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn load_config(policy: &PolicyArgs) -> anyhow::Result<MonitorConfig> {
    let path = match &policy.config {
        Some(path) => Some(path.clone()),
        None => Some(PathBuf::from("keel.yaml")).filter(|p| p.exists()),
    };
    let mut config = match path {
        Some(path) => KeelYaml::read(&path)?.monitor()?,
        None => MonitorConfig::default(),
    };
    let drift: &mut DriftConfig = &mut config.drift;
    if let Some(effect) = policy.min_effect {
        drift.min_effect = Some(effect);
    }
    if let Some(alpha) = policy.alpha {
        drift.alpha = alpha;
    }
    if let Some(keys) = &policy.key_columns {
        drift.key_columns = keys.clone();
    }
    if let Some(share) = policy.drift_share {
        drift.drift_share = share;
    }
    drift.validate()?;
    Ok(config)
}

fn is_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

fn emit(text: &str, output: Option<&Path>) -> anyhow::Result<()> {
    match output {
        Some(path) => keel_fs::write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.policy)?;
    let rule = args.segment_by.as_deref().map(|column| SegmentRule {
        column: column.to_string(),
        min_rows: args.segment_min_rows,
        max_segments: args.max_segments as usize,
    });
    let mut segments = None;
    let (report, windows) = match (&args.reference, &args.current) {
        (Some(reference_path), Some(current_path)) => {
            let reference = if is_json(reference_path) {
                Profile::read_json(reference_path)?
            } else {
                profile_file(reference_path, None)?
            };
            let current = if is_json(current_path) {
                Profile::read_json(current_path)?
            } else {
                profile_file(current_path, Some(&reference))?
            };
            if let Some(rule) = &rule {
                if is_json(reference_path) || is_json(current_path) {
                    bail!("--segment-by needs the data files (CSV, Parquet), not profiles");
                }
                segments = Some(Segments::Drift(compare_segments(
                    reference_path,
                    current_path,
                    rule,
                    &config.drift,
                )?));
            }
            (compare(&reference, &current, &config.drift)?, None)
        }
        _ => {
            let (report, windows, live) = log_report(&args.log, &config, rule.as_ref())?;
            segments = live.map(Segments::Live);
            (report, Some(windows))
        }
    };
    let text = match args.format.as_str() {
        "json" => {
            let mut value = serde_json::to_value(&report)?;
            if let (Some(windows), Some(object)) = (&windows, value.as_object_mut()) {
                object.insert("windows".into(), serde_json::to_value(windows)?);
            }
            if let (Some(segments), Some(object)) = (&segments, value.as_object_mut()) {
                object.insert("segments".into(), segments.json()?);
            }
            serde_json::to_string_pretty(&value)? + "\n"
        }
        "html" => {
            let page = render::html(&report, windows.as_ref());
            match (&segments, page.rfind("</body>")) {
                (Some(segments), Some(end)) => {
                    format!("{}{}{}", &page[..end], segments.html(), &page[end..])
                }
                _ => page,
            }
        }
        _ => {
            let mut text = render::table(&report);
            if let Some(windows) = &windows {
                text.push_str(&windows_table(windows));
            }
            if let Some(segments) = &segments {
                text.push_str(&segments.table());
            }
            text
        }
    };
    emit(&text, args.output.as_deref())?;
    Ok(
        if report.dataset.drifted || segments.as_ref().is_some_and(Segments::drifted) {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}

fn windows_table(windows: &WindowedReport) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "\nwindows of {} ms (model {}):\n",
        windows.window_ms, windows.model
    );
    for w in &windows.windows {
        let performance = w
            .performance
            .as_ref()
            .map(|p| {
                format!(
                    "{} {:.4} on {} labels",
                    p.headline_name, p.headline, p.labeled
                )
            })
            .unwrap_or_else(|| "no labels".into());
        let estimate = w
            .estimated_accuracy
            .map(|e| format!(", estimated accuracy {e:.4}"))
            .unwrap_or_default();
        let lag = w
            .label_lag_ms
            .map(|ms| format!(", label lag {:.1}s", ms / 1000.0))
            .unwrap_or_default();
        let joint = w
            .joint
            .as_ref()
            .map(|j| {
                format!(
                    ", joint {} (error {:+.1}%, p={}{})",
                    if j.drifted { "drift" } else { "no drift" },
                    100.0 * j.error_change,
                    j.p_value.map_or("-".into(), |p| format!("{p:.2e}")),
                    if j.drivers.is_empty() {
                        String::new()
                    } else {
                        format!(", drivers {}", j.drivers.join(","))
                    }
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} rows={} drift={} [{}] {}{}{}{}",
            w.start_ms,
            w.rows,
            if w.drifted { "yes" } else { "no" },
            w.drifted_columns.join(","),
            performance,
            estimate,
            lag,
            joint
        );
    }
    for point in &windows.change_points {
        let _ = writeln!(out, "  change point ({}): {}", point.stream, point.message);
    }
    let _ = writeln!(out, "  label-free estimate: {}", windows.cbpe_assumption);
    out
}

fn read_json_file<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// The window: `--window`, else keel.yaml's `monitor.window`, else 1h.
fn window_of(log: &LogArgs, config: &MonitorConfig) -> anyhow::Result<Duration> {
    let window = log
        .window
        .or(config.window)
        .unwrap_or(Duration::from_secs(3600));
    if window < Duration::from_millis(1) {
        bail!("the window (--window or monitor.window) must be at least 1ms");
    }
    Ok(window)
}

/// What the log is compared with: --reference-profile, or the model folder
/// (--model-dir, or the files of --model NAME@ALIAS from the registry).
async fn reference_of(log: &LogArgs, config: &MonitorConfig) -> anyhow::Result<Reference> {
    let model_dir = log.model_dir(config).await?;
    match (&log.reference_profile, &model_dir) {
        (Some(path), _) => Ok(Reference {
            profile: Profile::read_json(path)?,
            signature: None,
            evaluation: None,
        }),
        (None, Some(dir)) => {
            let signature: Option<Signature> = dir
                .join(SIGNATURE_FILE)
                .exists()
                .then(|| read_json_file(&dir.join(SIGNATURE_FILE)))
                .transpose()?;
            let evaluation: Option<Metrics> = dir
                .join("metrics.json")
                .exists()
                .then(|| read_json_file(&dir.join("metrics.json")))
                .transpose()?;
            let profile = Profile::read_json(&dir.join(PROFILE_FILE)).with_context(|| {
                format!(
                    "{} has no training profile (train with this keel to write one)",
                    dir.display()
                )
            })?;
            Ok(Reference {
                profile,
                signature,
                evaluation,
            })
        }
        (None, None) => bail!(
            "--model NAME needs --model-dir (a model folder with profile.json) or --reference-profile; \
             --model NAME@ALIAS takes the version's files from the registry"
        ),
    }
}

fn log_report(
    log: &LogArgs,
    config: &MonitorConfig,
    segment: Option<&SegmentRule>,
) -> anyhow::Result<(DriftReport, WindowedReport, Option<LogSegments>)> {
    let Some(model) = log.model.clone().or_else(|| config.model.clone()) else {
        bail!(
            "give --reference and --current, or --model (or monitor.model in keel.yaml) for a prediction log"
        );
    };
    let model = model.split('@').next().unwrap_or(&model).to_string();
    let window = window_of(log, config)?;
    let reference = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting runtime")?
        .block_on(reference_of(log, config))?;
    let live = segment
        .map(|rule| log_segments(&log.log_dir, &model, reference.signature.as_ref(), rule))
        .transpose()?;
    let options = LogOptions {
        log_dir: log.log_dir.clone(),
        model,
        window_ms: window.as_millis() as i64,
        config: config.drift.clone(),
        since_ms: None,
        until_ms: None,
    };
    let (report, windows) = windowed_report(
        &options,
        &reference.profile,
        reference.signature.as_ref(),
        reference.evaluation.as_ref(),
    )?;
    Ok((report, windows, live))
}

fn watch(args: WatchArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.policy)?;
    let Some(model) = args.log.model.clone().or_else(|| config.model.clone()) else {
        bail!("keel monitor watch needs --model (or monitor.model in keel.yaml)");
    };
    let mut sinks = config.alerts.clone();
    sinks.extend(args.webhook.iter().map(|w| AlertSink::Webhook(w.clone())));
    if sinks.is_empty() {
        sinks.push(AlertSink::Log(true));
    }
    let policy = config
        .on_drift
        .clone()
        .filter(|on_drift| on_drift.action == DriftAction::Retrain);
    let options = WatchOptions {
        log_dir: args.log.log_dir.clone(),
        model: model.split('@').next().unwrap_or(&model).to_string(),
        window: window_of(&args.log, &config)?,
        history: args.history,
        interval: args.interval,
        drift: config.drift.clone(),
        sinks,
        action_cooldown: policy.as_ref().map(|p| p.cooldown),
        confirm: args.confirm,
        once: args.once,
        quiet,
    };
    let mut watcher = Watcher::new(options);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if let Some(port) = args.port {
        let gauges = watcher.gauges.clone();
        let bound = runtime.block_on(keel_monitor::service::serve_metrics(
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            gauges,
        ))?;
        if !quiet {
            eprintln!("gauges on http://{bound}/metrics");
        }
    }
    let log = args.log.clone();
    let reference = move || {
        let log = log.clone();
        let config = config.clone();
        async move { reference_of(&log, &config).await }
    };
    let args = Arc::new(args);
    let action = {
        let args = Arc::clone(&args);
        move |evaluation: &Evaluation, reference: &Reference| -> anyhow::Result<Option<i32>> {
            match &policy {
                Some(policy) => retrain(&args, policy, evaluation, reference, quiet),
                None => Ok(None),
            }
        }
    };
    // Each evaluation's verdict goes to the metadata store (a keel server,
    // or the database) when one is configured or the watcher runs in a project.
    let client = if args.log.client.records() {
        Some(runtime.block_on(args.log.client.open(None))?)
    } else {
        None
    };
    // A restarted watcher continues from its last verdict: the alerts still
    // active do not fire again, and the on_drift cool-down holds.
    if let Some(client) = &client {
        match runtime.block_on(client.verdicts(Some(&watcher.options.model), 1)) {
            Ok(verdicts) => {
                if let Some(state) = verdicts
                    .first()
                    .and_then(|v| keel_monitor::service::WatchState::from_summary(&v.verdict))
                {
                    if !quiet {
                        eprintln!(
                            "continuing from the last verdict: {} active alert(s){}",
                            state.active_alerts.len(),
                            state
                                .last_action_ms
                                .map(|ms| format!(
                                    ", last on_drift action at {}",
                                    keel_core::civil::utc_text(ms)
                                ))
                                .unwrap_or_default()
                        );
                    }
                    watcher.restore(state);
                }
            }
            Err(error) => {
                eprintln!("warning: the last verdict could not be read ({error}); starting afresh")
            }
        }
    }
    let record = move |verdict: keel_monitor::service::Verdict| {
        let client = client.clone();
        async move {
            if let Some(client) = client {
                client
                    .record_verdict(keel_client::api::RecordVerdict {
                        model: verdict.model,
                        window_start: verdict.window_start,
                        rows: verdict.rows,
                        drifted: verdict.drifted,
                        verdict: verdict.summary.to_string(),
                    })
                    .await?;
            }
            Ok::<(), anyhow::Error>(())
        }
    };
    let end = runtime.block_on(watcher.run(reference, record, action))?;
    // Drift that the policy acted on ends with the pipeline's verdict.
    Ok(match (end.drifted, end.action_exit) {
        (true, Some(code)) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (true, None) => ExitCode::from(1),
        (false, _) => ExitCode::SUCCESS,
    })
}

/// Carries out `on_drift: retrain` for a drifted window: the verdict (the
/// drifted columns with their statistics) becomes the cause recorded in the
/// registry's audit log. Returns the pipeline's exit code, `None` if skipped.
fn retrain(
    args: &WatchArgs,
    policy: &OnDrift,
    evaluation: &Evaluation,
    reference: &Reference,
    quiet: bool,
) -> anyhow::Result<Option<i32>> {
    let (model, report, since_ms) = (
        evaluation.windows.model.as_str(),
        &evaluation.report,
        evaluation.since_ms,
    );
    let keel_yaml = args
        .policy
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("keel.yaml"));
    let keel_yaml = keel_yaml.canonicalize().with_context(|| {
        format!(
            "on_drift: retrain needs the pipeline {}",
            keel_yaml.display()
        )
    })?;
    let root = keel_yaml.parent().unwrap_or(Path::new("."));
    let Some(target) = reference.signature.as_ref().map(|s| s.target.clone()) else {
        bail!(
            "on_drift: retrain needs --model-dir or --model NAME@ALIAS (the signature names the target column)"
        );
    };
    let labelled =
        keel_monitor::labelled::labelled_table(&args.log.log_dir, model, &target, Some(since_ms))?;
    let drifted: Vec<serde_json::Value> = report
        .columns
        .iter()
        .filter(|c| c.drifted)
        .map(|c| {
            serde_json::json!({
                "column": c.column,
                "effect_size": c.effect_size.map(|e| round_sig(e, 3)),
                "p_value": c.p_value_adjusted.or(c.p_value).map(|p| round_sig(p, 2)),
            })
        })
        .collect();
    let cause = serde_json::json!({
        "trigger": "drift",
        "model": model,
        "rule": report.dataset.rule,
        "drifted": drifted,
        "current_rows": report.current_rows,
    })
    .to_string();
    if !quiet {
        eprintln!(
            "on_drift: retrain {model} on {} labelled row(s) of recent traffic",
            labelled.n_rows()
        );
    }
    let tracking_uri = args.log.client.tracking_uri.as_deref();
    let outcome = super::retrain::execute(root, policy, &labelled, &cause, tracking_uri, quiet)?;
    match (&outcome.skipped, outcome.pipeline_exit) {
        (Some(reason), _) => eprintln!("on_drift: retraining skipped: {reason}"),
        (None, Some(code)) if !quiet => eprintln!(
            "on_drift: pipeline on {} labelled row(s) exited with {code}",
            outcome.rows
        ),
        _ => {}
    }
    Ok(outcome.pipeline_exit)
}

/// `value` to `digits` significant digits (for short, readable audit causes).
fn round_sig(value: f64, digits: usize) -> f64 {
    format!("{value:.*e}", digits.saturating_sub(1))
        .parse()
        .unwrap_or(value)
}
