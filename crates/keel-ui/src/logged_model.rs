//! A logged model (MLflow 3's `mlflow.<flavor>.log_model`), at the link the
//! MLflow client prints for it (`/#/experiments/{id}/models/{model_id}`): its
//! status, the run it came from, its params, metrics and tags, the registered
//! versions made from it, and the files at its artifact location.

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use keel_core::uri::ProxiedUri;
use keel_server::AppState;
use keel_server::auth::Caller;
use keel_store::filter::Value;
use maud::html;

use crate::html::{self, PageResult};
use crate::{access, artifacts};

pub async fn page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((experiment_id, model_id)): Path<(String, String)>,
) -> PageResult {
    let model = state.store.get_logged_model(&model_id).await?;
    if model.experiment_id != experiment_id {
        return Ok(Redirect::to(&html::logged_model_url(
            &model.experiment_id,
            &model.model_id,
        ))
        .into_response());
    }
    access::check_experiment(&state, &caller, &experiment_id).await?;
    let experiment = state.store.get_experiment(&experiment_id).await?;
    let filter = format!("model_id = {}", Value::String(model.model_id.clone()));
    let mut versions = Vec::new();
    for version in state
        .store
        .search_model_versions(Some(&filter), 100, &[], None)
        .await?
        .items
    {
        if access::may_read_model(&state, &caller, &version.name).await? {
            versions.push(version);
        }
    }
    let root = ProxiedUri::parse(&model.artifact_location)
        .and_then(Result::ok)
        .map(|uri| uri.path);
    let (files, more) = match &root {
        Some(root) => artifacts::listing(&state, root, "").await?,
        None => (Vec::new(), false),
    };
    let body = html! {
        h1 { (model.name) " " span.badge { (model.status.as_str()) } }
        dl.overview {
            dt { "Model ID" } dd.mono { (model.model_id) }
            dt { "Experiment" } dd { a href=(html::experiment_url(&experiment.experiment_id)) { (experiment.name) } }
            dt { "Source run" } dd.mono {
                @if let Some(run_id) = &model.source_run_id { a href=(format!("/runs/{}", html::seg(run_id))) { (run_id) } } @else { "–" }
            }
            dt { "Created" } dd { (html::time(model.creation_timestamp_ms)) }
            @if let Some(kind) = &model.model_type { dt { "Type" } dd { (kind) } }
            @if let Some(message) = &model.status_message { dt { "Status message" } dd { (message) } }
            dt { "Stored at" } dd.mono { (model.artifact_location) }
        }
        @if !versions.is_empty() {
            section #logged-model-versions {
                h2 { "Registered as" }
                ul { @for v in &versions { li { a href=(html::version_url(&v.name, v.version)) { (v.name) " version " (v.version) } @for alias in &v.aliases { " " span.alias { "@" (alias) } } } } }
            }
        }
        section #logged-model-metrics {
            h2 { "Metrics" }
            @if model.metrics.is_empty() { p.muted { "No metrics." } } @else {
                table.kv { thead { tr { th { "Metric" } th { "Value" } th { "Step" } } } tbody { @for m in &model.metrics { tr { td { (m.key) } td.num { (html::number(m.value)) } td.num { (m.step) } } } } }
            }
        }
        section #logged-model-params {
            h2 { "Parameters" }
            @if model.params.is_empty() { p.muted { "No parameters." } } @else {
                table.kv { tbody { @for p in &model.params { tr { td { (p.key) } td.value { (p.value) } } } } }
            }
        }
        @if !model.tags.is_empty() {
            section { h2 { "Tags" } table.kv { tbody { @for t in &model.tags { tr { td { (t.key) } td.value { (html::short(&t.value, 300)) } } } } } }
        }
        section #logged-model-files {
            h2 { "Files" }
            @if root.is_none() { p.muted { "Stored at " code { (model.artifact_location) } ", which this server does not serve." } }
            @else if files.is_empty() { p.muted { "No files yet." } }
            @else {
                table.kv {
                    tbody {
                        @for f in &files {
                            tr { td.mono { (f.path) @if f.is_dir { "/" } } td.num { @if let Some(size) = f.size { (html::bytes(size)) } } }
                        }
                    }
                }
                @if more { p.muted { "Only the first entries are listed." } }
            }
        }
    };
    let crumbs = [
        ("Experiments".to_string(), "/".to_string()),
        (
            experiment.name.clone(),
            html::experiment_url(&experiment.experiment_id),
        ),
        (model.name.clone(), String::new()),
    ];
    Ok(html::page(&model.name, &crumbs, body).into_response())
}
