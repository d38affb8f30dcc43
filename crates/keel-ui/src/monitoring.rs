//! Monitoring: the verdicts `keel monitor watch` records in the metadata
//! store (keel-store's monitor verdicts, the same rows `GET
//! /api/2.0/keel/monitor/verdicts` answers), per served model: the newest
//! verdict's headline, the rows per window and each feature's drift effect
//! over time, live accuracy (from feedback labels) beside the label-free
//! estimate per window, each feature's reference-vs-current histogram and
//! the quality findings of the newest evaluation, which features drifted in
//! which evaluation, the joint (multivariate) drift and its change over
//! time, the alert events and the alerts active after the evaluation (the
//! watcher's recorded `state`), and every verdict in a table, each linked to
//! its own page (the evaluation's report: every feature's histogram, the
//! findings, the windows). The summary's format is keel-monitor's
//! (`service::Verdict`); it is read leniently: fields this page does not
//! know, or knows in another shape, are listed as they are.
//!
//! Who may read: a model that is also a registered model needs READ on it;
//! a served model that is not registered is readable by any authenticated
//! caller, as the verdicts API is.

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use keel_core::{Error, ErrorCode, MonitorVerdict};
use keel_server::AppState;
use keel_server::auth::Caller;
use maud::{Markup, html};
use serde_json::Value as Json;

use crate::access;
use crate::html::{self, PageResult};

/// Most models on the overview, verdicts read per model, evaluations in the drift strip.
const MAX_MODELS: i64 = 500;
const MAX_VERDICTS: i64 = 1000;
const STRIP: usize = 24;
/// Most features drawn on the effect chart.
const MAX_FEATURES: usize = 8;

/// Whether `model` is a registered model (then its grants apply).
async fn registered(state: &AppState, model: &str) -> Result<bool, Error> {
    match state.store.get_registered_model(model).await {
        Ok(_) => Ok(true),
        Err(e) if e.code == ErrorCode::ResourceDoesNotExist => Ok(false),
        Err(e) => Err(e),
    }
}

async fn may_read(state: &AppState, caller: &Caller, model: &str) -> Result<bool, Error> {
    if registered(state, model).await? {
        access::may_read_model(state, caller, model).await
    } else {
        Ok(true)
    }
}

/// `GET /monitoring`: every monitored model, the most recently evaluated first.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> PageResult {
    let mut models = Vec::new();
    for m in state.store.monitored_models(MAX_MODELS).await? {
        if may_read(&state, &caller, &m.model).await? {
            models.push(m);
        }
    }
    let body = html! {
        h1 { "Monitoring" }
        @if models.is_empty() {
            p.muted { "No verdicts recorded yet. " code { "keel monitor watch --model NAME" } " records one per evaluation when it runs against this server (" code { "--tracking-uri" } ") or in a project." }
        } @else {
            table.list #monitored-table {
                thead { tr { th { "Model" } th { "Newest verdict" } th { "Drift" } th.num { "Rows in window" } th.num { "Verdicts" } } }
                tbody {
                    @for m in &models {
                        tr {
                            td { a href=(html::monitoring_url(&m.model)) { (m.model) } }
                            td { (html::time_cell(m.last_recorded)) }
                            td { (drift_badge(m.drifted)) }
                            td.num { (m.rows) }
                            td.num { (m.verdicts) }
                        }
                    }
                }
            }
        }
    };
    let crumbs = [("Monitoring".to_string(), String::new())];
    Ok(html::page("Monitoring", &crumbs, body).into_response())
}

pub(crate) fn drift_badge(drifted: bool) -> Markup {
    if drifted {
        html! { span.badge.status-failed { "drifted" } }
    } else {
        html! { span.badge.status-finished { "no drift" } }
    }
}

/// A verdict's JSON as this page reads it.
#[derive(Debug, Default)]
struct Summary {
    rule: String,
    /// (feature, effect size) of the features that drifted.
    drifted: Vec<(String, Option<f64>)>,
    alerts: Vec<String>,
    action_due: bool,
    /// The joint (multivariate) drift test, when the watcher ran one.
    joint: Option<Joint>,
    /// Alerts active after the evaluation (key, message), when recorded.
    active: Option<Vec<(String, String)>>,
    /// Every tested feature, drifted first, with its histogram.
    features: Vec<Feature>,
    /// Quality findings (kind, column, message).
    quality: Vec<(String, Option<String>, String)>,
    /// The windows read, oldest first.
    windows: Vec<Window>,
    /// Fields this page does not know, as JSON text.
    other: Vec<(String, String)>,
}

/// One feature of a verdict: its drift test and its histogram.
#[derive(Debug, Default, PartialEq)]
struct Feature {
    column: String,
    kind: String,
    drifted: bool,
    effect_size: Option<f64>,
    threshold: Option<f64>,
    /// (bin or category, reference share, current share).
    bins: Vec<(String, f64, f64)>,
}

/// One window of a verdict: rows, drift, live and estimated accuracy.
#[derive(Debug, Default, PartialEq)]
struct Window {
    start_ms: i64,
    rows: i64,
    drifted: bool,
    /// The headline metric's name (accuracy, rmse) and value from labels.
    metric: Option<String>,
    live: Option<f64>,
    labeled: Option<i64>,
    estimated_accuracy: Option<f64>,
}

/// The joint (multivariate) drift of a verdict.
#[derive(Debug, Default, PartialEq)]
struct Joint {
    drifted: bool,
    error_change: Option<f64>,
    p_value: Option<f64>,
    /// The features that drive it most.
    drivers: Vec<String>,
}

const KNOWN: [&str; 8] = [
    "rule",
    "drifted_columns",
    "current_rows",
    "alerts",
    "action_due",
    "features",
    "quality",
    "windows",
];

fn feature(value: &Json) -> Option<Feature> {
    Some(Feature {
        column: value.get("column")?.as_str()?.to_string(),
        kind: value
            .get("kind")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
        drifted: value
            .get("drifted")
            .and_then(Json::as_bool)
            .unwrap_or(false),
        effect_size: value.get("effect_size").and_then(Json::as_f64),
        threshold: value.get("threshold").and_then(Json::as_f64),
        bins: items(value.get("bins"), |b| {
            Some((
                b.get(0)?.as_str()?.to_string(),
                b.get(1)?.as_f64().unwrap_or(0.0),
                b.get(2)?.as_f64().unwrap_or(0.0),
            ))
        }),
    })
}

fn window(value: &Json) -> Option<Window> {
    Some(Window {
        start_ms: value.get("start_ms")?.as_i64()?,
        rows: value.get("rows").and_then(Json::as_i64).unwrap_or(0),
        drifted: value
            .get("drifted")
            .and_then(Json::as_bool)
            .unwrap_or(false),
        metric: value
            .get("metric")
            .and_then(Json::as_str)
            .map(str::to_string),
        live: value.get("live").and_then(Json::as_f64),
        labeled: value.get("labeled").and_then(Json::as_i64),
        estimated_accuracy: value.get("estimated_accuracy").and_then(Json::as_f64),
    })
}

/// The items of a JSON array that `item` reads; none when it is no array.
fn items<T>(value: Option<&Json>, item: impl FnMut(&Json) -> Option<T>) -> Vec<T> {
    value
        .and_then(Json::as_array)
        .map(|items| items.iter().filter_map(item).collect())
        .unwrap_or_default()
}

fn joint(value: &Json) -> Option<Joint> {
    let map = value.as_object()?;
    Some(Joint {
        drifted: map.get("drifted")?.as_bool()?,
        error_change: map.get("error_change").and_then(Json::as_f64),
        p_value: map.get("p_value").and_then(Json::as_f64),
        drivers: items(map.get("drivers"), |d| d.as_str().map(str::to_string)),
    })
}

fn active_alerts(value: &Json) -> Option<Vec<(String, String)>> {
    let alerts = value.get("active_alerts")?.as_object()?;
    Some(
        alerts
            .iter()
            .map(|(key, message)| {
                (
                    key.clone(),
                    message.as_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
    )
}

fn summary(verdict: &MonitorVerdict) -> Summary {
    let Ok(Json::Object(map)) = serde_json::from_str::<Json>(&verdict.verdict) else {
        return Summary {
            other: vec![("verdict".into(), html::short(&verdict.verdict, 300))],
            ..Summary::default()
        };
    };
    let text = |value: &Json| match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    Summary {
        rule: map.get("rule").map(text).unwrap_or_default(),
        drifted: map
            .get("drifted_columns")
            .and_then(Json::as_array)
            .map(|columns| {
                columns
                    .iter()
                    .filter_map(|c| {
                        let name = c.get("column").map(text)?;
                        Some((name, c.get("effect_size").and_then(Json::as_f64)))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        alerts: map
            .get("alerts")
            .and_then(Json::as_array)
            .map(|alerts| alerts.iter().map(text).collect())
            .unwrap_or_default(),
        action_due: map
            .get("action_due")
            .and_then(Json::as_bool)
            .unwrap_or(false),
        joint: map.get("multivariate").and_then(joint),
        active: map.get("state").and_then(active_alerts),
        features: items(map.get("features"), feature),
        quality: items(map.get("quality"), |f| {
            Some((
                f.get("kind")?.as_str()?.to_string(),
                f.get("column").and_then(Json::as_str).map(str::to_string),
                f.get("message")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ))
        }),
        windows: items(map.get("windows"), window),
        other: map
            .iter()
            .filter(|(k, v)| match k.as_str() {
                // Shown in their own rows when they have the shape this page reads.
                "multivariate" => !v.is_null() && joint(v).is_none(),
                "state" => active_alerts(v).is_none(),
                key => !KNOWN.contains(&key),
            })
            .map(|(k, v)| (k.clone(), html::short(&text(v), 300)))
            .collect(),
    }
}

/// Epoch milliseconds as a short UTC date and time, for chart ticks.
fn tick(millis: f64) -> String {
    let full = html::time(millis as i64);
    full.get(5..16).unwrap_or(&full).to_string()
}

/// Live performance (from feedback labels) and the label-free estimate per
/// window over every verdict read, a window's figure taken from the newest
/// verdict that has it; and the live metric's name.
fn live_series(verdicts: &[Summary]) -> (String, Vec<keel_chart::Series>) {
    let mut seen: std::collections::BTreeMap<i64, (Option<f64>, Option<f64>)> =
        std::collections::BTreeMap::new();
    let mut metric = None;
    for s in verdicts {
        for w in &s.windows {
            if metric.is_none() && w.live.is_some() {
                metric = w.metric.clone();
            }
            seen.entry(w.start_ms)
                .or_insert((w.live, w.estimated_accuracy));
        }
    }
    let metric = metric.unwrap_or_else(|| "accuracy".into());
    let points = |labels: bool| {
        seen.iter()
            .filter_map(|(start, (live, estimate))| {
                let y = if labels { *live } else { *estimate };
                y.map(|y| (*start as f64, y))
            })
            .collect::<Vec<_>>()
    };
    let series = [
        (format!("live {metric} (labels)"), points(true)),
        ("estimated accuracy (no labels)".to_string(), points(false)),
    ]
    .into_iter()
    .filter(|(_, points)| !points.is_empty())
    .map(|(name, points)| keel_chart::Series { name, points })
    .collect();
    (metric, series)
}

/// The newest window with a live figure, as `0.912 accuracy on 2,000 labelled rows`.
fn live_text(summary: &Summary) -> Option<String> {
    let w = summary.windows.iter().rev().find(|w| w.live.is_some())?;
    let mut text = format!(
        "{} {}",
        html::number(w.live?),
        w.metric.as_deref().unwrap_or("accuracy")
    );
    if let Some(n) = w.labeled {
        text.push_str(&format!(" on {n} labelled rows"));
    }
    text.push_str(&format!(" (window from {})", html::time(w.start_ms)));
    Some(text)
}

/// Reference-vs-current histograms of up to `max` features (drifted first).
fn histograms(features: &[Feature], max: usize) -> Markup {
    html! {
        div.charts.histograms {
            @for f in features.iter().take(max) {
                figure.chart-box.histogram data-feature=(f.column) {
                    figcaption {
                        strong { (f.column) } " "
                        @if f.drifted { span.badge.status-failed { "drifted" } } @else { span.badge.status-finished { "no drift" } }
                        @if let Some(e) = f.effect_size { " effect " (html::number(e)) }
                        @if let Some(t) = f.threshold { " (threshold " (html::number(t)) ")" }
                        @if !f.kind.is_empty() { " · " (f.kind) }
                    }
                    @if f.bins.is_empty() {
                        p.muted { "No histogram kept for this feature (the verdict is kept small)." }
                    } @else {
                        @let bins: Vec<keel_chart::Bin> = f.bins.iter().map(|(label, a, b)| keel_chart::Bin { label, a: *a, b: *b }).collect();
                        (html::svg(keel_chart::paired_bars(&bins, ["ref", "cur"])))
                    }
                }
            }
        }
        p.muted { "Each bar is a bin's share: the reference (training data) in blue, the evaluated window in orange; hover a bar for its bin." }
        @if features.len() > max { p.muted { "The first " (max) " of " (features.len()) " features, drifted first." } }
    }
}

/// The joint (multivariate) drift in one line.
fn joint_text(joint: &Joint) -> Markup {
    html! {
        (drift_badge(joint.drifted))
        @if let Some(e) = joint.error_change { " reconstruction error change " (html::number(e)) }
        @if let Some(p) = joint.p_value { ", p = " (html::number(p)) }
        @if !joint.drivers.is_empty() { ", driven by " @for d in &joint.drivers { span.tag { (d) } } }
    }
}

/// The histograms (of up to `max` features) and the findings of a verdict,
/// as two sections; `scope` ends their headings.
fn distributions_and_findings(s: &Summary, scope: &str, max: usize) -> Markup {
    html! {
        section #distributions {
            h2 { "Feature distributions" (scope) }
            @if s.features.is_empty() { p.muted { "This verdict carries no histograms." } }
            @else { (histograms(&s.features, max)) }
        }
        section #quality {
            h2 { "Quality findings" (scope) }
            (findings(&s.quality))
        }
    }
}

/// Quality findings as a list.
fn findings(quality: &[(String, Option<String>, String)]) -> Markup {
    html! {
        @if quality.is_empty() { p.muted { "No quality findings." } }
        @else {
            ul.plain.findings {
                @for (kind, column, message) in quality {
                    li { span.tag.alert { (kind) } @if let Some(c) = column { " " strong { (c) } } " " (message) }
                }
            }
        }
    }
}

/// The windows of one verdict as a table.
fn windows_table(windows: &[Window]) -> Markup {
    html! {
        table.list #windows-table {
            thead { tr { th { "Window start" } th.num { "Rows" } th { "Drift" } th.num { "Live (labels)" } th.num { "Labelled rows" } th.num { "Estimated accuracy" } } }
            tbody {
                @for w in windows.iter().rev() {
                    tr {
                        td { (html::time_cell(w.start_ms)) }
                        td.num { (w.rows) }
                        td { (drift_badge(w.drifted)) }
                        td.num { @if let Some(v) = w.live { (html::number(v)) " " (w.metric.as_deref().unwrap_or("")) } @else { span.missing { "–" } } }
                        td.num { @if let Some(n) = w.labeled { (n) } @else { span.missing { "–" } } }
                        td.num { @if let Some(v) = w.estimated_accuracy { (html::number(v)) } @else { span.missing { "–" } } }
                    }
                }
            }
        }
    }
}

/// The link to one verdict's page.
fn verdict_url(model: &str, id: i64) -> String {
    format!("{}/verdicts/{id}", html::monitoring_url(model))
}

/// `GET /monitoring/{model}`.
pub async fn model(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(model): Path<String>,
) -> PageResult {
    let is_registered = registered(&state, &model).await?;
    if is_registered {
        access::check_model(&state, &caller, &model).await?;
    }
    // Newest first from the store; charts and the strip read oldest first.
    let verdicts = state
        .store
        .monitor_verdicts(Some(&model), MAX_VERDICTS)
        .await?;
    if verdicts.is_empty() {
        return Err(
            Error::not_found(format!("No monitor verdicts recorded for model '{model}'")).into(),
        );
    }
    let summaries: Vec<Summary> = verdicts.iter().map(summary).collect();
    let newest = &verdicts[0];
    let newest_summary = &summaries[0];
    // Time is the window's start when recorded (the data's time), else the evaluation's.
    let x = |v: &MonitorVerdict| v.window_start.unwrap_or(v.created_at) as f64;

    // Rows per window and the share of evaluations that drifted.
    let rows = [keel_chart::Series {
        name: "rows in window".into(),
        points: verdicts
            .iter()
            .rev()
            .map(|v| (x(v), v.rows as f64))
            .collect(),
    }];
    // Each feature's effect size when it drifted, for the features that drifted most often.
    let mut counts: Vec<(String, usize)> = Vec::new();
    for s in &summaries {
        for (feature, _) in &s.drifted {
            match counts.iter_mut().find(|(f, _)| f == feature) {
                Some((_, n)) => *n += 1,
                None => counts.push((feature.clone(), 1)),
            }
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let features: Vec<String> = counts.iter().map(|(f, _)| f.clone()).collect();
    let effects: Vec<keel_chart::Series> = features
        .iter()
        .take(MAX_FEATURES)
        .map(|feature| keel_chart::Series {
            name: feature.clone(),
            points: verdicts
                .iter()
                .zip(&summaries)
                .rev()
                .filter_map(|(v, s)| {
                    s.drifted
                        .iter()
                        .find(|(f, _)| f == feature)
                        .and_then(|(_, e)| *e)
                        .map(|e| (x(v), e))
                })
                .collect(),
        })
        .collect();
    let joint_series = [keel_chart::Series {
        name: "joint drift: reconstruction error change".into(),
        points: verdicts
            .iter()
            .zip(&summaries)
            .rev()
            .filter_map(|(v, s)| s.joint.as_ref()?.error_change.map(|e| (x(v), e)))
            .collect(),
    }];
    let labels = |ms: f64| tick(ms);
    let joint_chart = keel_chart::LineChart {
        x_title: "window start (UTC)",
        x_ticks: keel_chart::XTicks::Labels(&labels),
        ..keel_chart::LineChart::new(&joint_series)
    };
    let rows_chart = keel_chart::LineChart {
        x_title: "window start (UTC)",
        x_ticks: keel_chart::XTicks::Labels(&labels),
        y_from_zero: true,
        ..keel_chart::LineChart::new(&rows)
    };
    let effects_chart = keel_chart::LineChart {
        x_title: "window start (UTC); a point where the feature drifted",
        x_ticks: keel_chart::XTicks::Labels(&labels),
        y_from_zero: true,
        ..keel_chart::LineChart::new(&effects)
    };
    let (metric, live) = live_series(&summaries);
    let live_chart = keel_chart::LineChart {
        x_title: "window start (UTC)",
        x_ticks: keel_chart::XTicks::Labels(&labels),
        ..keel_chart::LineChart::new(&live)
    };
    let strip: Vec<(&MonitorVerdict, &Summary)> =
        verdicts.iter().zip(&summaries).take(STRIP).collect();
    let drifted_count = verdicts.iter().filter(|v| v.drifted).count();

    let body = html! {
        h1 { (model) " " (drift_badge(newest.drifted)) }
        p.meta {
            span { "newest verdict " (html::time(newest.created_at)) }
            span { (verdicts.len()) " verdicts read, " (drifted_count) " drifted" }
            @if is_registered { a href=(html::model_url(&model)) { "registered model" } }
        }
        section #newest {
            h2 { "Newest verdict" }
            dl.overview {
                dt { "Dataset" } dd { (drift_badge(newest.drifted)) " " (newest_summary.rule) }
                dt { "Window" } dd { @if let Some(start) = newest.window_start { "from " (html::time(start)) ", " } (newest.rows) " rows" }
                dt { "Drifted features" } dd #newest-drifted {
                    @if newest_summary.drifted.is_empty() { span.muted { "none" } }
                    @for (feature, effect) in &newest_summary.drifted {
                        span.tag { (feature) @if let Some(e) = effect { " · " (html::number(*e)) } }
                    }
                }
                @if let Some(joint) = &newest_summary.joint {
                    dt { "Joint drift" } dd #newest-joint { (joint_text(joint)) }
                }
                dt { "Alert events" } dd #newest-alerts {
                    @if newest_summary.alerts.is_empty() { span.muted { "none" } }
                    @for alert in &newest_summary.alerts { span.tag.alert { (alert) } }
                }
                @if let Some(active) = &newest_summary.active {
                    dt { "Active alerts" } dd #active-alerts {
                        @if active.is_empty() { span.muted { "none" } }
                        ul.plain { @for (key, message) in active { li { span.tag.alert { (key) } " " (message) } } }
                    }
                }
                dt { "Live performance" } dd #newest-live {
                    @match live_text(newest_summary) { Some(text) => (text), None => span.muted { "no labels yet (send them to keel serve's /feedback)" } }
                }
                dt { "Quality findings" } dd { a href="#quality" { (newest_summary.quality.len()) } }
                dt { "Action due" } dd { @if newest_summary.action_due { "yes (on_drift)" } @else { "no" } }
                dt { "Recorded by" } dd { (newest.user) }
                dt { "Report" } dd { a #newest-report href=(verdict_url(&model, newest.id)) { "this evaluation, feature by feature" } }
                @for (key, value) in &newest_summary.other { dt { (key) } dd.mono { (value) } }
            }
        }
        section #charts {
            h2 { "Over time" }
            div.charts {
                figure.chart-box { figcaption { "Rows per window" } (html::svg(rows_chart.to_svg())) }
                figure.chart-box #effects {
                    figcaption { "Drift effect per feature" }
                    @if effects.is_empty() { p.muted { "No feature has drifted in these verdicts." } } @else { (html::svg(effects_chart.to_svg())) }
                }
                @if !joint_series[0].points.is_empty() {
                    figure.chart-box #joint { figcaption { "Joint (multivariate) drift" } (html::svg(joint_chart.to_svg())) }
                }
                figure.chart-box #live {
                    figcaption { "Live " (metric) " from feedback labels, and the label-free estimate" }
                    @if live.is_empty() { p.muted { "No window has labels or an estimate yet." } } @else { (html::svg(live_chart.to_svg())) }
                }
            }
        }
        (distributions_and_findings(newest_summary, " in the newest evaluation", 12))
        @if !features.is_empty() {
            section #drift-strip {
                h2 { "Which features drifted, newest evaluation first" }
                div.table-wrap {
                    table.strip {
                        thead { tr { th { "Feature" } @for (v, _) in &strip { th.num title={ "evaluated " (html::time(v.created_at)) } { (tick(x(v))) } } } }
                        tbody {
                            @for feature in features.iter().take(40) {
                                tr {
                                    th { (feature) }
                                    @for (_, s) in &strip {
                                        @match s.drifted.iter().find(|(f, _)| f == feature) {
                                            Some((_, effect)) => td.drift title="drifted" { @if let Some(e) = effect { (html::number(*e)) } @else { "●" } },
                                            None => td.missing { "·" },
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section #verdicts {
            h2 { "Verdicts" }
            table.list #verdicts-table {
                thead { tr { th { "Recorded" } th { "Window start" } th.num { "Rows" } th { "Drift" } th { "Joint" } th { "Rule" } th { "Drifted features" } th { "Alert events" } } }
                tbody {
                    @for (v, s) in verdicts.iter().zip(&summaries).take(200) {
                        tr {
                            td { a.verdict-link href=(verdict_url(&model, v.id)) { (html::time_cell(v.created_at)) } }
                            td { @if let Some(start) = v.window_start { (html::time_cell(start)) } @else { span.missing { "–" } } }
                            td.num { (v.rows) }
                            td { (drift_badge(v.drifted)) }
                            td { @if let Some(j) = &s.joint { (drift_badge(j.drifted)) } @else { span.missing { "–" } } }
                            td { (html::short(&s.rule, 160)) }
                            td { @for (f, _) in &s.drifted { span.tag { (f) } } }
                            td { @for a in &s.alerts { span.tag.alert { (a) } } }
                        }
                    }
                }
            }
            @if verdicts.len() > 200 { p.muted { "The newest 200 of " (verdicts.len()) " verdicts read." } }
        }
    };
    let crumbs = [
        ("Monitoring".to_string(), "/monitoring".to_string()),
        (model.clone(), String::new()),
    ];
    Ok(html::page(&format!("Monitoring {model}"), &crumbs, body).into_response())
}

/// `GET /monitoring/{model}/verdicts/{id}`: one evaluation in full, its
/// report: the dataset verdict, every feature's histogram, the quality
/// findings and the windows with live and estimated accuracy.
pub async fn verdict(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((model, id)): Path<(String, i64)>,
) -> PageResult {
    if registered(&state, &model).await? {
        access::check_model(&state, &caller, &model).await?;
    }
    let verdicts = state
        .store
        .monitor_verdicts(Some(&model), MAX_VERDICTS)
        .await?;
    let Some(v) = verdicts.iter().find(|v| v.id == id) else {
        return Err(Error::not_found(format!(
            "No monitor verdict {id} among the newest {MAX_VERDICTS} of model '{model}'"
        ))
        .into());
    };
    let s = summary(v);
    let body = html! {
        h1 { (model) " · evaluation of " (html::time(v.created_at)) " " (drift_badge(v.drifted)) }
        p.meta {
            span { "recorded by " (v.user) }
            span { @if let Some(start) = v.window_start { "newest window from " (html::time(start)) ", " } (v.rows) " rows" }
            a href=(html::monitoring_url(&model)) { "all verdicts" }
        }
        dl.overview {
            dt { "Dataset" } dd { (drift_badge(v.drifted)) " " (s.rule) }
            dt { "Drifted features" } dd #verdict-drifted {
                @if s.drifted.is_empty() { span.muted { "none" } }
                @for (feature, effect) in &s.drifted { span.tag { (feature) @if let Some(e) = effect { " · " (html::number(*e)) } } }
            }
            @if let Some(joint) = &s.joint {
                dt { "Joint drift" } dd { (joint_text(joint)) }
            }
            dt { "Live performance" } dd { @match live_text(&s) { Some(text) => (text), None => span.muted { "no labels" } } }
            dt { "Alert events" } dd { @if s.alerts.is_empty() { span.muted { "none" } } @for a in &s.alerts { span.tag.alert { (a) } } }
            @for (key, value) in &s.other { dt { (key) } dd.mono { (value) } }
        }
        (distributions_and_findings(&s, "", 64))
        section #windows {
            h2 { "Windows, newest first" }
            @if s.windows.is_empty() { p.muted { "No windows recorded." } } @else { (windows_table(&s.windows)) }
        }
    };
    let crumbs = [
        ("Monitoring".to_string(), "/monitoring".to_string()),
        (model.clone(), html::monitoring_url(&model)),
        (format!("verdict {id}"), String::new()),
    ];
    Ok(html::page(&format!("Monitoring {model}: verdict {id}"), &crumbs, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(text: &str) -> MonitorVerdict {
        MonitorVerdict {
            id: 1,
            model: "m".into(),
            window_start: None,
            rows: 10,
            drifted: true,
            verdict: text.into(),
            created_at: 0,
            user: "u".into(),
        }
    }

    #[test]
    fn summaries_read_what_the_watcher_writes_and_keep_the_rest() {
        let s = summary(&verdict(
            r#"{"rule":"share >= 0.5","drifted_columns":[{"column":"age","effect_size":0.31},{"column":"x","effect_size":null}],
                "current_rows":10,"alerts":["drift:age"],"action_due":true,"multivariate":{"score":0.8}}"#,
        ));
        assert_eq!(s.rule, "share >= 0.5");
        assert_eq!(
            s.drifted,
            vec![("age".to_string(), Some(0.31)), ("x".to_string(), None)]
        );
        assert_eq!(s.alerts, vec!["drift:age"]);
        assert!(s.action_due);
        assert_eq!(
            s.other,
            vec![("multivariate".to_string(), r#"{"score":0.8}"#.to_string())]
        );
        assert_eq!(s.joint, None);
        assert_eq!(s.active, None);
        let newer = summary(&verdict(
            r#"{"rule":"r","drifted_columns":[],"alerts":[],"action_due":false,
                "multivariate":{"drifted":true,"error_change":0.4,"p_value":0.001,"drivers":["a","b"],"pairs":[]},
                "state":{"active_alerts":{"drift:a":"a drifted"},"last_action_ms":null}}"#,
        ));
        assert_eq!(
            newer.joint,
            Some(Joint {
                drifted: true,
                error_change: Some(0.4),
                p_value: Some(0.001),
                drivers: vec!["a".into(), "b".into()],
            })
        );
        assert_eq!(
            newer.active,
            Some(vec![("drift:a".to_string(), "a drifted".to_string())])
        );
        assert!(newer.other.is_empty(), "{:?}", newer.other);
        // The watcher's histograms, findings and windows.
        let full = summary(&verdict(
            r#"{"rule":"r","features":[{"column":"x","kind":"numeric","status":"drift","drifted":true,"effect_size":0.52,"threshold":0.1,
                  "bins":[["[-inf, 0)",0.5,0.2],["[0, inf)",0.5,0.8]]},{"column":"city","bins":[]}],
                "quality":[{"kind":"out_of_range","column":"x","message":"3% above the training maximum"}],
                "windows":[{"start_ms":0,"rows":10,"drifted":false,"metric":"accuracy","live":0.9,"labeled":10,"estimated_accuracy":0.88},
                           {"start_ms":3600000,"rows":12,"drifted":true,"metric":null,"live":null,"labeled":null,"estimated_accuracy":0.8}]}"#,
        ));
        assert!(full.other.is_empty(), "{:?}", full.other);
        assert_eq!(full.features.len(), 2);
        assert_eq!(
            full.features[0].bins,
            vec![
                ("[-inf, 0)".to_string(), 0.5, 0.2),
                ("[0, inf)".to_string(), 0.5, 0.8)
            ]
        );
        assert_eq!(full.quality[0].1.as_deref(), Some("x"));
        let text = live_text(&full).unwrap();
        assert!(
            text.starts_with("0.9 accuracy on 10 labelled rows"),
            "{text}"
        );
        let (metric, series) = live_series(&[full]);
        assert_eq!(metric, "accuracy");
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].points, vec![(0.0, 0.9)]);
        assert_eq!(series[1].points.len(), 2);
        // Another shape is listed as it is, not dropped.
        let other_shape = summary(&verdict(r#"{"multivariate":"yes","state":[1]}"#));
        assert_eq!(other_shape.other.len(), 2);
        let odd = summary(&verdict("[1,2]"));
        assert_eq!(odd.other.len(), 1);
        assert!(odd.drifted.is_empty());
    }
}
