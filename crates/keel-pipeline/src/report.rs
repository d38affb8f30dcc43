//! Reports on pipeline runs. This module: the Markdown summary `keel run`
//! writes to `.keel/report.md`, fit for a pull-request comment (stages run
//! or skipped with durations, the gate table, the tracked run, what was
//! registered, metric deltas vs the previous commit). [`ci`] gathers what
//! `keel report` shows about a recorded run through keel-client, and
//! [`page`] renders it as Markdown or a self-contained HTML page; the gate
//! table, the previous-commit lookup and the number formats are shared.

use std::fmt::Write as _;

use crate::gates::GateResult;
use crate::runner::{RunReport, StageStatus};

pub mod ci;
pub mod page;

/// What the report says beyond the stages.
#[derive(Debug, Clone, Default)]
pub struct Extras<'a> {
    pub gates: Option<&'a [GateResult]>,
    pub run_id: Option<&'a str>,
    /// `name version N` when a version was registered.
    pub registered: Option<String>,
    /// The run of the previous commit, to show metric deltas against.
    pub previous: Option<Previous>,
}

/// The metrics of the run recorded for the previous commit, beside this run's.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    pub commit: String,
    /// (metric, previous value, this run's value).
    pub metrics: Vec<(String, Option<f64>, Option<f64>)>,
}

impl Previous {
    /// The model metrics of `before` (the run of `commit`) beside those of `run`.
    pub fn between(commit: String, before: &keel_core::Run, run: &keel_core::Run) -> Previous {
        let old = crate::track::model_metrics(before);
        let new = crate::track::model_metrics(run);
        let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        Previous {
            commit,
            metrics: keys
                .into_iter()
                .map(|key| (key.clone(), old.get(key).copied(), new.get(key).copied()))
                .collect(),
        }
    }
}

use page::number as cell;

/// Renders the report.
pub fn markdown(report: &RunReport, extras: &Extras<'_>) -> String {
    let mut out = String::from("## keel run\n\n");
    let verdict = match (
        report.succeeded(),
        extras.gates.map(crate::gates::all_passed),
    ) {
        (false, _) => "❌ a stage failed",
        (true, Some(false)) => "❌ gates failed",
        (true, Some(true)) => "✅ stages and gates passed",
        (true, None) => "✅ stages passed",
    };
    let _ = writeln!(out, "**{verdict}** in {:.2}s", report.seconds);
    if let Some(run_id) = extras.run_id {
        let _ = writeln!(out, "\nTracked run: `{run_id}`");
    }
    out.push_str("\n| stage | status | seconds | why |\n|---|---|---:|---|\n");
    for stage in &report.stages {
        if stage.status == StageStatus::NotSelected {
            continue;
        }
        let seconds = if matches!(stage.status, StageStatus::Ran | StageStatus::Failed(_)) {
            format!("{:.2}", stage.seconds)
        } else {
            "–".into()
        };
        let status = match &stage.status {
            StageStatus::Failed(code) => format!("failed (exit {code})"),
            StageStatus::Blocked(by) => format!("blocked by {by}"),
            other => other.as_str().to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {status} | {seconds} | {} |",
            stage.name,
            stage.reason.replace('|', "\\|")
        );
    }
    if let Some(gates) = extras.gates
        && !gates.is_empty()
    {
        out.push('\n');
        out.push_str(&page::gate_table_md(gates));
    }
    if let Some(registered) = &extras.registered {
        let _ = writeln!(out, "\nRegistered: {registered}");
    }
    if let Some(previous) = extras.previous.as_ref().filter(|p| !p.metrics.is_empty()) {
        let short = &previous.commit[..previous.commit.len().min(12)];
        let _ = writeln!(
            out,
            "\n### Metrics vs the previous commit ({short})\n\n| metric | previous | this run | change |\n|---|---:|---:|---:|"
        );
        for (metric, old, new) in &previous.metrics {
            let change = page::delta(*new, *old);
            let _ = writeln!(
                out,
                "| {metric} | {} | {} | {change} |",
                cell(*old),
                cell(*new)
            );
        }
    }
    out
}
