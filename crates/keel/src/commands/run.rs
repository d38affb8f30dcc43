//! `keel run`: brings the pipeline in keel.yaml up to date, records the run
//! in the metadata store, evaluates the gates and, when they all pass,
//! registers the model (keel-pipeline does the work).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use keel_pipeline::project_lock::{ProjectLock, WhenHeld};
use keel_pipeline::report::{self, Extras};
use keel_pipeline::track::Tracking;
use keel_pipeline::{Pipeline, RunOptions, gates};

use super::client::ClientArgs;

/// Where a pipeline run is recorded (shared by `keel run` and `keel gate`).
#[derive(Debug, clap::Args)]
pub struct TrackingArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Experiment the runs go to.
    #[arg(long, env = "MLFLOW_EXPERIMENT_NAME", default_value = "Default")]
    pub experiment: String,
}

/// Arguments of `keel run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Stage to bring up to date, with the stages it needs (default: every stage).
    pub stage: Vec<String>,
    /// Run the selected stages even when they are up to date.
    #[arg(long)]
    pub force: bool,
    /// The pipeline file.
    #[arg(long, default_value = "keel.yaml")]
    pub file: PathBuf,
    /// Most stages running at once (default: the number of cores).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Do not record the run in the metadata store (gates then compare with nothing in production).
    #[arg(long)]
    pub no_track: bool,
    /// Why this run happened (e.g. the drift verdict that triggered it);
    /// stored as the cause of the registration and alias move in the audit log.
    #[arg(long)]
    pub cause: Option<String>,
    /// Register a passing model without moving `register.alias` (promotion
    /// then waits for `keel models promote`).
    #[arg(long)]
    pub no_alias: bool,
    /// Fail at once when another `keel run` is running in this project
    /// (default: wait for it).
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

impl TrackingArgs {
    /// Opens the metadata (a keel server or the database) for the project at `root`.
    pub async fn open(&self, root: &Path) -> anyhow::Result<Tracking> {
        Ok(Tracking {
            client: self.client.open(Some(root)).await?,
            experiment: self.experiment.clone(),
            user: super::client::local_user(),
            cause: None,
            move_alias: true,
        })
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting runtime")
}

pub fn run(args: RunArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let pipeline = Pipeline::load(&args.file)?;
    // Held until this function returns: stages, tracking and registration.
    let when_held = if args.no_wait {
        WhenHeld::Fail
    } else {
        WhenHeld::Wait
    };
    let _lock = ProjectLock::acquire(&pipeline.root, when_held, |holder| {
        eprintln!(
            "keel run: another keel run ({holder}) is running in this project; waiting for it to finish"
        );
    })?;
    let options = RunOptions {
        targets: args.stage.clone(),
        force: args.force,
        jobs: args.jobs.unwrap_or_else(|| RunOptions::default().jobs),
        quiet,
    };
    let started_ms = keel_core::now_millis();
    let runtime = runtime()?;
    let tracking = if args.no_track {
        None
    } else {
        let mut tracking = runtime.block_on(args.tracking.open(&pipeline.root))?;
        tracking.cause = args.cause.clone();
        tracking.move_alias = !args.no_alias;
        if let Some(label) = runtime.block_on(tracking.fetch_production_profile(&pipeline))?
            && !quiet
        {
            println!("feature checks compare with the training profile of {label}");
        }
        Some(tracking)
    };
    let report = keel_pipeline::run(&pipeline, &options)?;
    let ran = report
        .stages
        .iter()
        .filter(|s| s.status == keel_pipeline::StageStatus::Ran)
        .count();
    let skipped = report
        .stages
        .iter()
        .filter(|s| s.status == keel_pipeline::StageStatus::Skipped)
        .count();
    if !quiet {
        println!(
            "{ran} stage(s) ran, {skipped} up to date, in {:.2}s",
            report.seconds
        );
    }

    let expressions: Vec<String> = pipeline
        .gates
        .iter()
        .map(|g| g.expression.clone())
        .collect();
    let Some(tracking) = tracking else {
        let mut code = report.exit_code;
        let mut gate_results = None;
        if report.succeeded() && !expressions.is_empty() {
            let metrics = keel_pipeline::track::stage_metrics(&pipeline);
            let results = gates::evaluate(&expressions, &metrics.values, None, &metrics.context());
            print!("{}", gates::table(&results));
            if !gates::all_passed(&results) {
                code = 1;
            }
            gate_results = Some(results);
        }
        write_report(
            &pipeline,
            &report,
            &Extras {
                gates: gate_results.as_deref(),
                ..Extras::default()
            },
        )?;
        return Ok(exit(code));
    };

    runtime.block_on(async {
        let result = track(
            &tracking,
            &pipeline,
            &report,
            started_ms,
            &expressions,
            quiet,
        )
        .await;
        tracking.client.close().await;
        result
    })
}

async fn track(
    tracking: &Tracking,
    pipeline: &Pipeline,
    report: &keel_pipeline::RunReport,
    started_ms: i64,
    expressions: &[String],
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let run = tracking.record(pipeline, report, started_ms).await?;
    let run_id = run.info.run_id.clone();
    if !quiet {
        println!(
            "run {run_id} recorded in experiment {:?}",
            tracking.experiment
        );
    }
    if !report.succeeded() {
        tracking.finish(&run_id, false).await?;
        write_report(
            pipeline,
            report,
            &Extras {
                run_id: Some(&run_id),
                ..Extras::default()
            },
        )?;
        return Ok(exit(report.exit_code));
    }
    let (results, json) = tracking.gate(pipeline, &run).await?;
    if !expressions.is_empty() {
        print!("{}", gates::table(&results));
    }
    let passed = gates::all_passed(&results);
    let mut registered = None;
    if let Some(register) = &pipeline.register {
        if passed {
            registered = register_once(tracking, pipeline, &run, &json, quiet).await?;
        } else {
            println!(
                "gates failed: {} not registered, no alias moved",
                register.model
            );
        }
    }
    tracking.finish(&run_id, passed).await?;
    let previous = previous_commit(tracking, pipeline, &run).await;
    write_report(
        pipeline,
        report,
        &Extras {
            gates: Some(&results),
            run_id: Some(&run_id),
            registered,
            previous,
        },
    )?;
    Ok(exit(if passed { 0 } else { 1 }))
}

/// Registers the model unless a version with the same content is already registered
/// (a no-op run registers nothing new).
async fn register_once(
    tracking: &Tracking,
    pipeline: &Pipeline,
    run: &keel_core::Run,
    json: &serde_json::Value,
    quiet: bool,
) -> anyhow::Result<Option<String>> {
    let Some(register) = &pipeline.register else {
        return Ok(None);
    };
    let Some(digest) = keel_pipeline::runner::digest(&pipeline.root, &register.path.path)? else {
        bail!("register: `{}` does not exist", register.path.path);
    };
    let digest = digest.digest.to_hex();
    let filter = format!(
        "name = '{}' AND tags.`keel.blake3` = '{digest}'",
        register.model.replace('\'', "''")
    );
    let existing = tracking
        .client
        .search_model_versions(&filter, 1)
        .await?
        .into_iter()
        .next();
    if let Some(version) = existing {
        if !quiet {
            println!(
                "{} is unchanged: already registered as {} version {}",
                register.path.path, version.name, version.version
            );
        }
        return Ok(Some(format!(
            "{} version {} (unchanged)",
            version.name, version.version
        )));
    }
    let tags = vec![keel_core::Tag::new("keel.blake3", digest)];
    let Some(registered) = tracking.register(pipeline, run, json, tags).await? else {
        return Ok(None);
    };
    let version = &registered.version;
    let alias = registered
        .alias
        .as_deref()
        .map(|alias| format!(", @{alias}"))
        .unwrap_or_default();
    if !quiet {
        println!(
            "registered {} version {}{alias}",
            version.name, version.version
        );
        for note in &registered.notes {
            println!("  {note}");
        }
    }
    Ok(Some(format!(
        "{} version {}{alias}",
        version.name, version.version
    )))
}

/// The metrics of the run recorded for the nearest earlier commit that has
/// one (keel-pipeline's `report::ci::previous_run`), beside this run's, for
/// the report's "vs the previous commit" table; None outside git or when
/// none has.
async fn previous_commit(
    tracking: &Tracking,
    pipeline: &Pipeline,
    run: &keel_core::Run,
) -> Option<report::Previous> {
    let found = report::ci::previous_run(tracking, &pipeline.root, run.git_commit()).await;
    let (commit, before) = found.ok()?.ok()?;
    Some(report::Previous::between(commit, &before, run))
}

fn write_report(
    pipeline: &Pipeline,
    report: &keel_pipeline::RunReport,
    extras: &Extras<'_>,
) -> anyhow::Result<()> {
    let path = pipeline.root.join(".keel").join("report.md");
    keel_fs::write_atomic(&path, report::markdown(report, extras).as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}
