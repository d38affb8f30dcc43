//! The model registry, read-only: the model list with aliases and latest
//! versions, a model's versions with their gate results and its audit
//! timeline, and a version's page with its lineage back to the run and data.

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use keel_core::promotion::{GateStatus, gate_status, parse_gate_results};
use keel_core::{AuditEntry, ModelVersion};
use keel_server::AppState;
use keel_server::auth::Caller;
use keel_store::filter::Value;
use maud::{Markup, html};

use crate::html::{self, PageResult};
use crate::{access, run};

/// Most models listed, versions per model, and audit rows per model.
const MAX_MODELS: i64 = 1000;
const MAX_VERSIONS: i64 = 1000;
const MAX_AUDIT: i64 = 500;

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> PageResult {
    let page = state
        .store
        .search_registered_models(None, MAX_MODELS, &[], None)
        .await?;
    let mut models = Vec::with_capacity(page.items.len());
    for model in page.items {
        if access::may_read_model(&state, &caller, &model.name).await? {
            models.push(model);
        }
    }
    let body = html! {
        h1 { "Registered models" }
        @if models.is_empty() {
            p { "No registered models yet. " code { "keel run" } " registers one when its gates pass; the MLflow client's " code { "mlflow.register_model" } " works too." }
        } @else {
            table.list #models-table {
                thead { tr { th { "Model" } th { "Aliases" } th { "Latest version" } th { "Last change" } th { "Description" } } }
                tbody {
                    @for m in &models {
                        @let latest = m.latest_versions.iter().map(|v| v.version).max();
                        tr {
                            td { a href=(html::model_url(&m.name)) { (m.name) } }
                            td { @for (alias, version) in &m.aliases { (alias_link(&m.name, alias, *version)) " " } }
                            td { @if let Some(v) = latest { a href=(html::version_url(&m.name, v)) { "version " (v) } } @else { "–" } }
                            td { (html::time_cell(m.last_updated_timestamp)) }
                            td { (html::short(&m.description, 120)) }
                        }
                    }
                }
            }
            @if page.next_page_token.is_some() { p.muted { "Showing the first " (MAX_MODELS) " models." } }
        }
    };
    let crumbs = [("Models".to_string(), String::new())];
    Ok(html::page("Models", &crumbs, body).into_response())
}

fn alias_link(name: &str, alias: &str, version: i64) -> Markup {
    html! { a.alias href=(html::version_url(name, version)) title={ "@" (alias) " → version " (version) } { "@" (alias) " → v" (version) } }
}

fn gate_badge(version: &ModelVersion) -> Markup {
    match gate_status(version) {
        GateStatus::Passed => html! { span.badge.status-finished { "gates passed" } },
        GateStatus::Failed(which) => {
            html! { span.badge.status-failed title=(which) { "gates failed" } }
        }
        GateStatus::Missing => html! { span.muted { "no gates recorded" } },
    }
}

pub async fn model(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> PageResult {
    let model = state.store.get_registered_model(&name).await?;
    access::check_model(&state, &caller, &model.name).await?;
    let filter = format!("name = {}", Value::String(model.name.clone()));
    let versions = state
        .store
        .search_model_versions(Some(&filter), MAX_VERSIONS, &[], None)
        .await?;
    let audit = state
        .store
        .registry_audit(Some(&model.name), MAX_AUDIT)
        .await?;
    let body = html! {
        h1 { (model.name) }
        @if !model.description.is_empty() { p.description { (model.description) } }
        p.meta {
            span { "created " (html::time(model.creation_timestamp)) }
            span { "last change " (html::time(model.last_updated_timestamp)) }
        }
        section #aliases {
            h2 { "Aliases" }
            @if model.aliases.is_empty() { p.muted { "No aliases." } } @else {
                ul.aliases { @for (alias, version) in &model.aliases { li { (alias_link(&model.name, alias, *version)) } } }
            }
        }
        @if !model.tags.is_empty() {
            section { h2 { "Tags" } table.kv { tbody { @for t in &model.tags { tr { td { (t.key) } td.value { (t.value) } } } } } }
        }
        section #versions {
            h2 { "Versions" }
            table.list #versions-table {
                thead { tr { th { "Version" } th { "Aliases" } th { "Stage" } th { "Registered" } th { "By" } th { "Run" } th { "Gates" } } }
                tbody {
                    @for v in &versions.items {
                        tr {
                            td { a href=(html::version_url(&v.name, v.version)) { "version " (v.version) } }
                            td { @for alias in &v.aliases { span.alias { "@" (alias) } " " } }
                            td { (v.current_stage.as_str()) }
                            td { (html::time_cell(v.creation_timestamp)) }
                            td { (v.user_id) }
                            td.mono { @if let Some(run_id) = &v.run_id { a href=(format!("/runs/{}", html::seg(run_id))) title=(run_id) { (html::short(run_id, 10)) } } @else { "–" } }
                            td {
                                (gate_badge(v))
                                @if let Some(gates) = v.gate_results.as_deref().and_then(parse_gate_results).filter(|g| !g.gates.is_empty()) {
                                    details.gate-details { summary { (gates.gates.len()) " gates" } (run::gate_table(&gates)) }
                                }
                            }
                        }
                    }
                }
            }
            @if versions.next_page_token.is_some() { p.muted { "Showing the newest " (MAX_VERSIONS) " versions." } }
        }
        section #audit {
            h2 { "Audit timeline" }
            (audit_table(&model.name, &audit))
        }
    };
    let crumbs = [
        ("Models".to_string(), "/models".to_string()),
        (model.name.clone(), String::new()),
    ];
    Ok(html::page(&model.name, &crumbs, body).into_response())
}

/// Who did what to the model, newest first.
fn audit_table(name: &str, audit: &[AuditEntry]) -> Markup {
    let version = |v: Option<i64>| match v {
        Some(v) => html! { a href=(html::version_url(name, v)) { "v" (v) } },
        None => html! { span.missing { "–" } },
    };
    html! {
        @if audit.is_empty() { p.muted { "Nothing recorded yet." } } @else {
            table.list.audit #audit-table {
                thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "From" } th { "To" } th { "Why" } th { "Cause" } } }
                tbody {
                    @for entry in audit {
                        tr {
                            td { (html::time_cell(entry.timestamp)) }
                            td { (entry.user) }
                            td { (entry.action.replace('_', " ")) }
                            td { (entry.target) }
                            td { (version(entry.from_version)) }
                            td { (version(entry.to_version)) }
                            td { (entry.reason) }
                            td.muted { (entry.cause) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, version)): Path<(String, String)>,
) -> PageResult {
    let number = keel_store::parse_version(&name, &version)?;
    let v = state.store.get_model_version(&name, number).await?;
    access::check_model(&state, &caller, &v.name).await?;
    let audit: Vec<AuditEntry> = state
        .store
        .registry_audit(Some(&v.name), MAX_AUDIT)
        .await?
        .into_iter()
        .filter(|e| e.from_version == Some(v.version) || e.to_version == Some(v.version))
        .collect();
    let lineage: Option<serde_json::Value> = v
        .lineage
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok());
    let field = |key: &str| {
        lineage
            .as_ref()
            .and_then(|l| l.get(key))
            .and_then(|f| f.as_str())
            .map(str::to_string)
    };
    let datasets: Vec<serde_json::Value> = lineage
        .as_ref()
        .and_then(|l| l.get("datasets"))
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default();
    let text = |value: &serde_json::Value, key: &str| {
        value
            .get(key)
            .and_then(|f| f.as_str())
            .unwrap_or("")
            .to_string()
    };
    let gates = v.gate_results.as_deref().and_then(parse_gate_results);
    let body = html! {
        h1 { (v.name) " version " (v.version) " " @for alias in &v.aliases { span.alias { "@" (alias) } " " } }
        dl.overview {
            dt { "Model" } dd { a href=(html::model_url(&v.name)) { (v.name) } }
            dt { "Registered" } dd { (html::time(v.creation_timestamp)) @if !v.user_id.is_empty() { " by " (v.user_id) } }
            dt { "Stage" } dd { (v.current_stage.as_str()) }
            dt { "Status" } dd { (v.status) }
            dt { "Source" } dd.mono { (v.source) }
            @if !v.description.is_empty() { dt { "Description" } dd { (v.description) } }
        }
        section #version-gates {
            h2 { "Gates" }
            @if let Some(gates) = &gates { (run::gate_table(gates)) } @else { p.muted { "No gate results recorded for this version: promoting it needs --force and a reason." } }
        }
        section #version-lineage {
            h2 { "Lineage" }
            dl.overview {
                dt { "Run" }
                dd.mono { @if let Some(run_id) = &v.run_id { a href=(format!("/runs/{}", html::seg(run_id))) { (run_id) } } @else { "not recorded" } }
                @if let Some(commit) = field("git_commit") { dt { "Git commit" } dd.mono { (commit) } }
                @if let Some(source) = field("source") { dt { "Code" } dd.mono { (source) } }
            }
            @if !datasets.is_empty() {
                table.kv {
                    thead { tr { th { "Dataset" } th { "Digest" } th { "Context" } th { "Source" } } }
                    tbody {
                        @for d in &datasets {
                            tr { td { (text(d, "name")) } td.mono { (text(d, "digest")) } td { (text(d, "context")) } td.value { (html::short(&text(d, "source"), 200)) } }
                        }
                    }
                }
            }
        }
        @if let Some(signature) = &v.signature {
            section { h2 { "Signature" } details { summary { "signature.json" } pre.preview-text { (html::short(signature, 20_000)) } } }
        }
        @if !v.tags.is_empty() {
            section { h2 { "Tags" } table.kv { tbody { @for t in &v.tags { tr { td { (t.key) } td.value { (t.value) } } } } } }
        }
        section #version-audit {
            h2 { "History of this version" }
            (audit_table(&v.name, &audit))
        }
    };
    let crumbs = [
        ("Models".to_string(), "/models".to_string()),
        (v.name.clone(), html::model_url(&v.name)),
        (format!("version {}", v.version), String::new()),
    ];
    Ok(html::page(&format!("{} v{}", v.name, v.version), &crumbs, body).into_response())
}
