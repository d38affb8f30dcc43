//! A run's page: overview, description, lineage (git, datasets, pipeline
//! stages with durations and logs, registered versions), gate results,
//! metric charts over step and time, params, tags and the artifact listing.
//! What `keel run` records is read from the run as keel-pipeline writes it:
//! tags `keel.pipeline`, `keel.stage.NAME`, `keel.gates`, `keel.git.dirty`,
//! metrics `stage.NAME.seconds`, artifacts `logs/NAME.log`, `keel.lock`,
//! `gates.json`.

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect};
use keel_core::promotion::{GateResults, parse_gate_results};
use keel_core::{Error, Metric, ModelVersion, Run};
use keel_server::AppState;
use keel_server::auth::Caller;
use keel_store::filter::Value;
use maud::{Markup, html};

use crate::artifacts::{self, display_name};
use crate::html::{self, PageResult};
use crate::query::Query;
use crate::{access, charts};

/// Most metrics drawn on the run's charts at once.
const MAX_CHART_METRICS: usize = 8;

/// `/runs/{id}` (MLflow's direct link): redirects to the run under its experiment.
pub async fn direct(State(state): State<AppState>, Path(run_id): Path<String>) -> PageResult {
    let info = state.store.get_run_info(&run_id).await?;
    Ok(Redirect::to(&html::run_url(&info.experiment_id, &info.run_id)).into_response())
}

fn tag<'a>(run: &'a Run, key: &str) -> Option<&'a str> {
    run.data
        .tags
        .iter()
        .find(|t| t.key == key)
        .map(|t| t.value.as_str())
}

fn metric<'a>(run: &'a Run, key: &str) -> Option<&'a Metric> {
    run.data.metrics.iter().find(|m| m.key == key)
}

/// Versions registered from a run.
pub async fn versions_of_run(state: &AppState, run_id: &str) -> Result<Vec<ModelVersion>, Error> {
    let filter = format!("run_id = {}", Value::String(run_id.to_string()));
    Ok(state
        .store
        .search_model_versions(Some(&filter), 100, &[], None)
        .await?
        .items)
}

pub async fn page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((experiment_id, run_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let run = state.store.get_run(&run_id).await?;
    if run.info.experiment_id != experiment_id {
        return Ok(
            Redirect::to(&html::run_url(&run.info.experiment_id, &run.info.run_id)).into_response(),
        );
    }
    access::check_experiment(&state, &caller, &experiment_id).await?;
    let experiment = state.store.get_experiment(&experiment_id).await?;
    let query = Query::parse(raw.as_deref());
    let info = &run.info;

    // Charts: the chosen metrics, else those logged at more than one step.
    let mut keys: Vec<&str> = run.data.metrics.iter().map(|m| m.key.as_str()).collect();
    keys.sort_unstable();
    let chosen: Vec<String> = query
        .all("chart")
        .filter(|k| keys.contains(k))
        .take(MAX_CHART_METRICS)
        .map(str::to_string)
        .collect();
    let charted: Vec<String> = if chosen.is_empty() {
        run.data
            .metrics
            .iter()
            .filter(|m| m.step > 0)
            .map(|m| m.key.clone())
            .take(MAX_CHART_METRICS)
            .collect()
    } else {
        chosen
    };
    let mut lines = Vec::with_capacity(charted.len());
    for key in &charted {
        let points = charts::history(&state, std::slice::from_ref(&info.run_id), key).await?;
        lines.push((key.clone(), points, info.start_time));
    }

    // Only the versions of models this caller may read.
    let mut versions = Vec::new();
    for version in versions_of_run(&state, &info.run_id).await? {
        if access::may_read_model(&state, &caller, &version.name).await? {
            versions.push(version);
        }
    }
    let root = artifacts::run_root(info);
    let (entries, more) = match &root {
        Some(root) => artifacts::listing(&state, root, "").await?,
        None => (Vec::new(), false),
    };
    let gates = tag(&run, "keel.gates").and_then(parse_gate_results);
    let name = display_name(info);

    let body = html! {
        h1 { (name) " " (html::status_badge(info.status)) }
        dl.overview {
            dt { "Run ID" } dd.mono { (info.run_id) }
            dt { "Experiment" } dd { a href=(html::experiment_url(&experiment.experiment_id)) { (experiment.name) } }
            dt { "User" } dd { (info.user_id) }
            dt { "Started" } dd { (html::time(info.start_time)) }
            dt { "Ended" } dd { @if let Some(end) = info.end_time { (html::time(end)) } @else { "–" } }
            dt { "Duration" } dd { (html::run_duration(info.start_time, info.end_time, info.status)) }
            @if let Some(parent) = tag(&run, "mlflow.parentRunId") {
                dt { "Parent run" } dd { a.mono href=(format!("/runs/{}", html::seg(parent))) { (parent) } }
            }
            dt { "Lifecycle" } dd { (info.lifecycle_stage.as_str()) }
        }
        @if let Some(note) = tag(&run, "mlflow.note.content").filter(|n| !n.trim().is_empty()) {
            section { h2 { "Description" } pre.description { (note) } }
        }
        (lineage(&run, &versions))
        @if let Some(gates) = &gates { section #gates { h2 { "Gates" } (gate_table(gates)) } }
        @else if let Some(passed) = tag(&run, "keel.gates.passed") {
            section #gates { h2 { "Gates" } p { "Passed: " (passed) ". The full results are in " code { "gates.json" } " below." } }
        }
        section #metrics {
            h2 { "Metrics" }
            @if run.data.metrics.is_empty() { p.muted { "No metrics." } } @else {
                @if !lines.is_empty() { (charts::step_and_time(&lines)) }
                @if keys.len() > 1 {
                    form.chart-choice method="get" action=(html::run_url(&info.experiment_id, &info.run_id)) {
                        span { "Chart:" }
                        @for key in keys.iter().take(200) {
                            label { input type="checkbox" name="chart" value=(key) checked[charted.iter().any(|c| c == key)]; " " (key) }
                        }
                        button type="submit" { "Draw" }
                    }
                }
                table.kv {
                    thead { tr { th { "Metric" } th { "Latest value" } th { "Step" } th { "Logged" } } }
                    tbody {
                        @for m in &run.data.metrics {
                            tr { td { (m.key) } td.num { (html::number(m.value)) } td.num { (m.step) } td { (html::time_cell(m.timestamp)) } }
                        }
                    }
                }
            }
        }
        section #params {
            h2 { "Parameters" }
            @if run.data.params.is_empty() { p.muted { "No parameters." } } @else {
                table.kv {
                    thead { tr { th { "Parameter" } th { "Value" } } }
                    tbody { @for p in &run.data.params { tr { td { (p.key) } td.value { (p.value) } } } }
                }
            }
        }
        section #tags {
            h2 { "Tags" }
            @let (system, user): (Vec<_>, Vec<_>) = run.data.tags.iter().partition(|t| t.key.starts_with("mlflow.") || t.key.starts_with("keel."));
            @if user.is_empty() { p.muted { "No tags of your own." } } @else {
                table.kv {
                    thead { tr { th { "Tag" } th { "Value" } } }
                    tbody { @for t in &user { tr { td { (t.key) } td.value { (t.value) } } } }
                }
            }
            @if !system.is_empty() {
                details {
                    summary { (system.len()) " system tags" }
                    table.kv {
                        tbody { @for t in &system { tr { td { (t.key) } td.value { (html::short(&t.value, 300)) } } } }
                    }
                }
            }
        }
        section #artifacts {
            h2 { a href=(html::artifact_url(&info.experiment_id, &info.run_id, "")) { "Artifacts" } }
            @match &root {
                None => p.muted { "Stored at " code { (info.artifact_uri) } ", which this server does not serve." },
                Some(_) if entries.is_empty() => p.muted { "No artifacts." },
                Some(_) => (artifacts::tree(&run, &entries, more, "")),
            }
        }
    };
    let crumbs = [
        ("Experiments".to_string(), "/".to_string()),
        (
            experiment.name.clone(),
            html::experiment_url(&experiment.experiment_id),
        ),
        (name.clone(), String::new()),
    ];
    Ok(html::page(&name, &crumbs, body).into_response())
}

/// Where the run came from: code, data, pipeline stages, and what it produced.
fn lineage(run: &Run, versions: &[ModelVersion]) -> Markup {
    let info = &run.info;
    let commit = tag(run, "mlflow.source.git.commit");
    let dirty = tag(run, "keel.git.dirty");
    let pipeline = tag(run, "keel.pipeline") == Some("true");
    let mut stages: Vec<(&str, &str)> = run
        .data
        .tags
        .iter()
        .filter_map(|t| {
            t.key
                .strip_prefix("keel.stage.")
                .map(|stage| (stage, t.value.as_str()))
        })
        .collect();
    stages.sort_unstable();
    let artifact = |path: &str| html::artifact_url(&info.experiment_id, &info.run_id, path);
    html! {
        section #lineage {
            h2 { "Lineage" }
            dl.overview {
                dt { "Code" }
                dd {
                    @if let Some(commit) = commit {
                        span.mono { (commit) }
                        @match dirty {
                            Some("true") => { " " span.badge.status-failed title="the working tree had uncommitted changes" { "dirty" } },
                            Some("false") => { " " span.badge.status-finished { "clean" } },
                            _ => {},
                        }
                    } @else { span.muted { "no git commit recorded" } }
                }
                @if let Some(source) = tag(run, "mlflow.source.name") {
                    dt { "Source" } dd.mono { (source) @if let Some(kind) = tag(run, "mlflow.source.type") { " (" (kind) ")" } }
                }
            }
            @if !run.dataset_inputs.is_empty() {
                h3 { "Datasets" }
                table.kv {
                    thead { tr { th { "Name" } th { "Digest" } th { "Context" } th { "Source" } } }
                    tbody {
                        @for input in &run.dataset_inputs {
                            tr {
                                td { (input.dataset.name) }
                                td.mono { (input.dataset.digest) }
                                td { @for t in input.tags.iter().filter(|t| t.key == "mlflow.data.context") { (t.value) } }
                                td.value { (input.dataset.source_type) " " (html::short(&input.dataset.source, 200)) }
                            }
                        }
                    }
                }
            }
            @if !stages.is_empty() || pipeline {
                h3 { "Pipeline stages" }
                table.kv {
                    thead { tr { th { "Stage" } th { "Status" } th { "Duration" } th { "Log" } } }
                    tbody {
                        @for (stage, status) in &stages {
                            tr {
                                td { (stage) }
                                td { span class={ "badge stage-" (status) } { (status) } }
                                td.num {
                                    @if let Some(m) = metric(run, &format!("stage.{stage}.seconds")) { (html::duration((m.value * 1000.0) as i64)) } @else { "–" }
                                }
                                td { a href=(artifact(&format!("logs/{stage}.log"))) { "logs/" (stage) ".log" } }
                            }
                        }
                    }
                }
                p {
                    a href=(artifact("keel.lock")) { "keel.lock" } " · "
                    a href=(artifact("gates.json")) { "gates.json" }
                    @if let Some(total) = metric(run, "pipeline.seconds") { " · whole pipeline " (html::duration((total.value * 1000.0) as i64)) }
                }
            }
            @if !run.model_outputs.is_empty() || !run.model_inputs.is_empty() {
                h3 { "Logged models" }
                ul {
                    @for output in &run.model_outputs { li { "output " span.mono { (output.model_id) } " (step " (output.step) ")" } }
                    @for input in &run.model_inputs { li { "input " span.mono { (input.model_id) } } }
                }
            }
            @if !versions.is_empty() {
                h3 { "Registered as" }
                ul {
                    @for v in versions {
                        li {
                            a href=(html::version_url(&v.name, v.version)) { (v.name) " version " (v.version) }
                            @for alias in &v.aliases { " " span.alias { "@" (alias) } }
                        }
                    }
                }
            }
        }
    }
}

/// A table of recorded gate results (a run's `keel.gates`, a version's gate results).
pub fn gate_table(gates: &GateResults) -> Markup {
    let optional = |v: Option<f64>| v.map(html::number).unwrap_or_else(|| "–".into());
    html! {
        p {
            @match gates.passed {
                Some(true) => span.badge.status-finished { "all gates passed" },
                Some(false) => span.badge.status-failed { "gates failed" },
                None => span.muted { "no overall verdict recorded" },
            }
        }
        @if !gates.gates.is_empty() {
            table.kv.gates {
                thead { tr { th { "Gate" } th { "Value" } th { "Threshold" } th { "Production" } th { "Result" } th { "Note" } } }
                tbody {
                    @for g in &gates.gates {
                        tr class=(if g.passed { "pass" } else { "fail" }) {
                            td.mono { (g.expression) }
                            td.num { (optional(g.value)) }
                            td.num { (optional(g.threshold)) }
                            td.num { (optional(g.production)) }
                            td { @if g.passed { "passed" } @else { strong { "failed" } } }
                            td.muted { (g.note.as_deref().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    }
}
