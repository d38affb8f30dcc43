//! `keel metrics diff [A] [B]` and `keel params diff [A] [B]`: what changed
//! between the pipeline runs recorded for two commits (DVC's `metrics diff`
//! and `params diff`), found through keel-client by the commit each run
//! recorded (`mlflow.source.git.commit`). A is HEAD by default; B is the
//! newest pipeline run whatever its commit (the work tree). Table, `--json`
//! or `--md` (for a pull-request comment).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use keel_core::Run;
use keel_pipeline::release::Repo;
use keel_pipeline::track::Tracking;

use super::run::TrackingArgs;

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    #[command(subcommand)]
    pub command: DiffCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DiffCommand {
    /// Compare the runs recorded for two commits (default: HEAD vs the newest run).
    Diff(Revisions),
}

#[derive(Debug, clap::Args)]
pub struct Revisions {
    /// The first revision (a commit, branch or tag; default HEAD).
    pub a: Option<String>,
    /// The second revision (default: the newest pipeline run, i.e. the work tree).
    pub b: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Print a Markdown table (for a pull-request comment).
    #[arg(long, conflicts_with = "json")]
    pub md: bool,
    /// Also list what did not change.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

/// What is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Metrics,
    Params,
}

/// One compared key.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    key: String,
    old: Option<String>,
    new: Option<String>,
    /// new - old, for metrics present on both sides.
    change: Option<f64>,
}

pub fn run(args: DiffArgs, kind: Kind) -> anyhow::Result<ExitCode> {
    let DiffCommand::Diff(revisions) = args.command;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    let root = std::env::current_dir().context("reading the current folder")?;
    let repo = Repo::discover(&root).ok_or_else(|| {
        anyhow::anyhow!("not a git repository: nothing to compare across commits")
    })?;
    runtime.block_on(async {
        let tracking = revisions.tracking.open(&root).await?;
        let result = compare(&tracking, &repo, &revisions, kind).await;
        tracking.client.close().await;
        result
    })
}

async fn compare(
    tracking: &Tracking,
    repo: &Repo,
    revisions: &Revisions,
    kind: Kind,
) -> anyhow::Result<ExitCode> {
    let a_rev = revisions.a.clone().unwrap_or_else(|| "HEAD".into());
    let (a_label, a) = (a_rev.clone(), run_for(tracking, repo, &a_rev).await?);
    let (b_label, b) = match &revisions.b {
        Some(rev) => (rev.clone(), run_for(tracking, repo, rev).await?),
        None => (
            "workspace".to_string(),
            tracking
                .latest_run()
                .await?
                .ok_or_else(|| anyhow::anyhow!("no pipeline run recorded yet: run `keel run`"))?,
        ),
    };
    let values = |run: &Run| -> BTreeMap<String, String> {
        match kind {
            Kind::Metrics => keel_pipeline::track::model_metrics(run)
                .into_iter()
                .map(|(key, value)| (key, value.to_string()))
                .collect(),
            Kind::Params => run
                .data
                .params
                .iter()
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect(),
        }
    };
    let (old, new) = (values(&a), values(&b));
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let rows: Vec<Row> = keys
        .into_iter()
        .map(|key| {
            let (o, n) = (old.get(key).cloned(), new.get(key).cloned());
            let change = match (kind, &o, &n) {
                (Kind::Metrics, Some(o), Some(n)) => Some(
                    n.parse::<f64>().unwrap_or(f64::NAN) - o.parse::<f64>().unwrap_or(f64::NAN),
                ),
                _ => None,
            };
            Row {
                key: key.clone(),
                old: o,
                new: n,
                change,
            }
        })
        .filter(|row| revisions.all || row.old != row.new)
        .collect();
    let what = match kind {
        Kind::Metrics => "metric",
        Kind::Params => "param",
    };
    if revisions.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "a": {"rev": a_label, "run_id": a.info.run_id, "commit": a.git_commit()},
                "b": {"rev": b_label, "run_id": b.info.run_id, "commit": b.git_commit()},
                "changes": rows,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no {what} changed between {a_label} and {b_label}");
        return Ok(ExitCode::SUCCESS);
    }
    let text = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
    let change = |row: &Row| match row.change {
        Some(change) => format!("{change:+.6}"),
        None if kind == Kind::Metrics => "-".into(),
        None => String::new(),
    };
    if revisions.md {
        println!("| {what} | {a_label} | {b_label} | change |");
        println!("|---|---:|---:|---:|");
        for row in &rows {
            println!(
                "| {} | {} | {} | {} |",
                row.key,
                text(&row.old),
                text(&row.new),
                change(row)
            );
        }
    } else {
        println!(
            "{:<32} {:>14} {:>14} {:>14}",
            what, a_label, b_label, "change"
        );
        for row in &rows {
            println!(
                "{:<32} {:>14} {:>14} {:>14}",
                row.key,
                text(&row.old),
                text(&row.new),
                change(row)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The newest pipeline run recorded for the commit `rev` names.
async fn run_for(tracking: &Tracking, repo: &Repo, rev: &str) -> anyhow::Result<Run> {
    let commit = repo.resolve(rev)?;
    tracking.run_for_commit(&commit).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "no pipeline run recorded for {rev} ({}) in experiment {:?}: run `keel run` on that commit",
            &commit[..commit.len().min(12)],
            tracking.experiment
        )
    })
}
