//! `keel report`: a pipeline run as a report for CI (Markdown for a
//! pull-request comment, or one self-contained HTML page): its metrics with
//! deltas vs the version at `@production` and vs the previous commit's run,
//! its gate table, the validation summary and the drift of its training
//! data vs the production training profile. Everything is read through
//! keel-client (keel-pipeline's `report::ci` gathers, `report::page` renders).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use keel_pipeline::Pipeline;
use keel_pipeline::report::{ci, page};

use super::run::TrackingArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Markdown, for a pull-request comment.
    Md,
    /// One self-contained HTML page with plots.
    Html,
}

/// Arguments of `keel report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Markdown or HTML.
    #[arg(long, value_enum, default_value = "md")]
    pub format: Format,
    /// The run to report on (default: the newest `keel run` run of the experiment).
    #[arg(long)]
    pub run: Option<String>,
    /// Compare only with the model at @production (`production`) or only with
    /// the run recorded for a commit (a sha, branch or tag); default: both the
    /// production model and the previous commit's run.
    #[arg(long, value_name = "production|COMMIT")]
    pub against: Option<String>,
    /// Write the report here instead of printing it.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// The pipeline file (its register: model, checks and metrics files).
    #[arg(long, default_value = "keel.yaml")]
    pub file: PathBuf,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let pipeline = Pipeline::load(&args.file)?;
    let against = ci::Against::parse(args.against.as_deref());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    let report = runtime.block_on(async {
        let tracking = args.tracking.open(&pipeline.root).await?;
        let outcome = async {
            let run = match &args.run {
                Some(run_id) => tracking
                    .client
                    .get_run(run_id)
                    .await
                    .with_context(|| format!("reading run {run_id}"))?,
                None => ci::latest_run(&tracking).await?,
            };
            Ok::<_, anyhow::Error>(ci::gather(&tracking, &pipeline, &run, &against).await?)
        }
        .await;
        tracking.client.close().await;
        outcome
    })?;
    let text = match args.format {
        Format::Md => page::markdown(&report),
        Format::Html => page::html(&report),
    };
    match &args.output {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            keel_fs::write_atomic(path, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "report on run {} written to {}",
                report.run_id,
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
