//! The model registry: the model list with aliases and latest versions, a
//! model's versions with their gate results and its audit timeline, and a
//! version's page with its lineage back to the run and data. The model page
//! has the promote and rollback forms for callers whose permission allows
//! them; they go through keel-server's `promote_as` / `rollback_as`, the
//! code behind `keel promote` and `keel rollback`, so the gate rule (failed
//! or missing gates need force and a reason) is the store's, and a refusal
//! is shown on the page with the form as it was filled.

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use bytes::Bytes;
use keel_core::access::Permission;
use keel_core::promotion::{GateStatus, gate_status, parse_gate_results};
use keel_core::{AuditEntry, Error, ModelVersion, RegisteredModel};
use keel_server::AppState;
use keel_server::auth::Caller;
use keel_store::filter::Value;
use maud::{Markup, html};

use crate::html::{self, PageResult};
use crate::query::Query;
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
    // The newest monitoring verdict of each monitored model (one query).
    let monitored: std::collections::HashMap<String, bool> = state
        .store
        .monitored_models(10_000)
        .await?
        .into_iter()
        .map(|m| (m.model, m.drifted))
        .collect();
    let body = html! {
        h1 { "Registered models" }
        @if models.is_empty() {
            p { "No registered models yet. " code { "keel run" } " registers one when its gates pass; the MLflow client's " code { "mlflow.register_model" } " works too." }
        } @else {
            table.list #models-table {
                thead { tr { th { "Model" } th { "Aliases" } th { "Latest version" } th { "Last change" } th { "Monitoring" } th { "Description" } } }
                tbody {
                    @for m in &models {
                        @let latest = m.latest_versions.iter().map(|v| v.version).max();
                        tr {
                            td { a href=(html::model_url(&m.name)) { (m.name) } }
                            td { @for (alias, version) in &m.aliases { (alias_link(&m.name, alias, *version)) " " } }
                            td { @if let Some(v) = latest { a href=(html::version_url(&m.name, v)) { "version " (v) } } @else { "–" } }
                            td { (html::time_cell(m.last_updated_timestamp)) }
                            td.monitoring {
                                @if let Some(drifted) = monitored.get(&m.name) {
                                    a href=(html::monitoring_url(&m.name)) { (crate::monitoring::drift_badge(*drifted)) }
                                } @else { span.missing { "–" } }
                            }
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

/// What the promote and rollback forms held, and how the last press ended.
#[derive(Debug, Default)]
struct Outcome {
    version: String,
    alias: String,
    reason: String,
    force: bool,
    /// A refusal: its status and message.
    refused: Option<(StatusCode, String)>,
    /// A success (after the redirect): the action and the alias it moved.
    done: Option<(String, String)>,
}

pub async fn model(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let query = Query::parse(raw.as_deref());
    let done = match (query.get("done"), query.get("alias")) {
        (Some(action @ ("promote" | "rollback")), Some(alias)) => {
            Some((action.to_string(), alias.to_string()))
        }
        _ => None,
    };
    let outcome = Outcome {
        done,
        // The version page's "Promote this version" link preselects it.
        version: query.get("version").unwrap_or_default().to_string(),
        ..Outcome::default()
    };
    model_page(&state, &caller, &name, outcome).await
}

/// `POST /models/{name}/promote` (form: version, alias, reason, force, csrf).
pub async fn promote(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> PageResult {
    let form = Query::parse(std::str::from_utf8(&body).ok());
    let outcome = Outcome {
        version: form.get("version").unwrap_or_default().trim().to_string(),
        alias: form.get("alias").unwrap_or_default().trim().to_string(),
        reason: form.get("reason").unwrap_or_default().trim().to_string(),
        force: form.get("force").is_some(),
        ..Outcome::default()
    };
    access::check_model(&state, &caller, &name).await?;
    let needed = state.alias_permission(&outcome.alias);
    let holds = access::model_permission(&state, &caller, &name).await?;
    let result = if !holds.allows(needed) {
        Err(Error::permission_denied(format!(
            "Permission denied: moving @{} of model '{name}' needs {needed} ({} has {holds})",
            outcome.alias, caller.user
        )))
    } else {
        keel_server::promote_as(
            &state,
            &caller,
            keel_client::api::Promote {
                name: name.clone(),
                version: outcome.version.clone(),
                alias: outcome.alias.clone(),
                force: outcome.force,
                reason: outcome.reason.clone(),
                cause: "web UI".into(),
            },
        )
        .await
    };
    finish(&state, &caller, &name, "promote", outcome, result).await
}

/// `POST /models/{name}/rollback` (form: alias, reason, csrf): MANAGE, as
/// `keel rollback` through the server.
pub async fn rollback(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> PageResult {
    let form = Query::parse(std::str::from_utf8(&body).ok());
    let outcome = Outcome {
        alias: form.get("alias").unwrap_or_default().trim().to_string(),
        reason: form.get("reason").unwrap_or_default().trim().to_string(),
        ..Outcome::default()
    };
    access::check_model(&state, &caller, &name).await?;
    let holds = access::model_permission(&state, &caller, &name).await?;
    let result = if !holds.allows(Permission::Manage) {
        Err(Error::permission_denied(format!(
            "Permission denied: rolling back @{} of model '{name}' needs MANAGE ({} has {holds})",
            outcome.alias, caller.user
        )))
    } else {
        keel_server::rollback_as(
            &state,
            &caller,
            keel_client::api::Rollback {
                name: name.clone(),
                alias: outcome.alias.clone(),
                reason: outcome.reason.clone(),
                cause: "web UI".into(),
            },
        )
        .await
    };
    finish(&state, &caller, &name, "rollback", outcome, result).await
}

/// After a press: back to the model page (a redirect, so a reload does not
/// press again), or the page again with the refusal and the form as filled.
async fn finish(
    state: &AppState,
    caller: &Caller,
    name: &str,
    action: &str,
    mut outcome: Outcome,
    result: Result<AuditEntry, Error>,
) -> PageResult {
    match result {
        Ok(entry) => {
            tracing::info!(user = %caller.user, model = %name, alias = %entry.target, action, "registry change from the web UI");
            Ok(Redirect::to(&format!(
                "{}?done={action}&alias={}#audit",
                html::model_url(name),
                html::query_value(&entry.target)
            ))
            .into_response())
        }
        Err(error) if error.code.http_status() >= 500 => Err(error.into()),
        Err(error) => {
            let status =
                StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            outcome.refused = Some((status, error.message));
            model_page(state, caller, name, outcome).await
        }
    }
}

/// The promote form and, per alias, the rollback button, as far as `holds` allows.
fn registry_forms(
    model: &RegisteredModel,
    versions: &[ModelVersion],
    holds: Permission,
    outcome: &Outcome,
) -> Markup {
    let action = |what: &str| format!("{}/{what}", html::model_url(&model.name));
    let default_version = versions.first().map(|v| v.version.to_string());
    let chosen = if outcome.version.is_empty() {
        default_version.unwrap_or_default()
    } else {
        outcome.version.clone()
    };
    html! {
        section #promote {
            h2 { "Promote" }
            @if let Some((_, message)) = &outcome.refused {
                p.error #registry-error role="alert" {
                    "Refused: " (message)
                    @if message.contains("--force") { br; "Here: tick " em { "force" } " and give a reason." }
                }
            }
            @if let Some((action, alias)) = &outcome.done {
                p.done #registry-done {
                    @if action == "rollback" { "Rolled back: " } @else { "Promoted: " }
                    "@" (alias)
                    @match model.aliases.iter().find(|(a, _)| a == alias) {
                        Some((_, version)) => { " now points at v" (version) "." },
                        None => { " moved." },
                    }
                }
            }
            @if !holds.allows(Permission::Edit) {
                p.muted { "You hold " (holds) " on this model: promoting needs EDIT (MANAGE for a protected alias such as @production)." }
            } @else {
                form.registry #promote-form method="post" action=(action("promote")) {
                    (html::csrf_field())
                    label { "Version "
                        select name="version" #promote-version {
                            @for v in versions { option value=(v.version) selected[chosen == v.version.to_string()] { "v" (v.version) " · " (gate_word(v)) } }
                        }
                    }
                    label { "to alias @" input #promote-alias type="text" name="alias" required value=(outcome.alias) list="known-aliases" size="14"; }
                    datalist #known-aliases { @for (alias, _) in &model.aliases { option value=(alias) {} } }
                    label.wide { "Reason " input #promote-reason type="text" name="reason" value=(outcome.reason) placeholder="why (audited; required with force)" maxlength="1000"; }
                    label { input #promote-force type="checkbox" name="force" checked[outcome.force]; " force past failed or missing gates" }
                    button type="submit" #promote-button { "Promote" }
                }
                p.muted.small {
                    "Same rule as " code { "keel promote" } ": a version whose gates did not pass moves only with force and a reason. "
                    @if !holds.allows(Permission::Manage) { "Protected aliases (such as @production) and rollback need MANAGE, which you do not hold." }
                }
            }
            @if holds.allows(Permission::Manage) && !model.aliases.is_empty() {
                h3 { "Roll back" }
                @for (alias, version) in &model.aliases {
                    form.registry.rollback method="post" action=(action("rollback")) {
                        (html::csrf_field())
                        input type="hidden" name="alias" value=(alias);
                        span { "@" (alias) " → v" (version) }
                        input type="text" name="reason" placeholder="reason" maxlength="1000";
                        button type="submit" data-alias=(alias) { "Roll back @" (alias) " to its previous version" }
                    }
                }
            }
        }
    }
}

fn gate_word(version: &ModelVersion) -> &'static str {
    match gate_status(version) {
        GateStatus::Passed => "gates passed",
        GateStatus::Failed(_) => "gates failed",
        GateStatus::Missing => "no gates",
    }
}

async fn model_page(state: &AppState, caller: &Caller, name: &str, outcome: Outcome) -> PageResult {
    let model = state.store.get_registered_model(name).await?;
    access::check_model(state, caller, &model.name).await?;
    let holds = access::model_permission(state, caller, &model.name).await?;
    let monitored = !state
        .store
        .monitor_verdicts(Some(&model.name), 1)
        .await?
        .is_empty();
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
            @if monitored { a #monitoring-link href=(html::monitoring_url(&model.name)) { "Monitoring" } }
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
        (registry_forms(&model, &versions.items, holds, &outcome))
        section #audit {
            h2 { "Audit timeline" }
            (audit_table(&model.name, &audit))
        }
    };
    let crumbs = [
        ("Models".to_string(), "/models".to_string()),
        (model.name.clone(), String::new()),
    ];
    let status = outcome
        .refused
        .as_ref()
        .map_or(StatusCode::OK, |(status, _)| *status);
    Ok((status, html::page(&model.name, &crumbs, body)).into_response())
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
    let may_promote = access::model_permission(&state, &caller, &v.name)
        .await?
        .allows(Permission::Edit);
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
            @if let Some(gates) = &gates { (run::gate_table(gates)) } @else { p.muted { "No gate results recorded for this version: promoting it needs force and a reason." } }
            @if may_promote {
                p { a.button #promote-version-link href=(format!("{}?version={}#promote", html::model_url(&v.name), v.version)) { "Promote this version…" } }
            }
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
