//! Monitoring: the verdicts `keel monitor watch` records in the metadata
//! store (keel-store's monitor verdicts, the same rows `GET
//! /api/2.0/keel/monitor/verdicts` answers), per served model: the newest
//! verdict's headline, the rows per window and each feature's drift effect
//! over time, which features drifted in which evaluation, the joint
//! (multivariate) drift and its change over time, the alert events and the
//! alerts active after the evaluation (the watcher's recorded `state`), and
//! every verdict in a table. A verdict's JSON is read leniently: fields this
//! page does not know, or knows in another shape, are listed as they are.
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
    /// Fields this page does not know, as JSON text.
    other: Vec<(String, String)>,
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

const KNOWN: [&str; 5] = [
    "rule",
    "drifted_columns",
    "current_rows",
    "alerts",
    "action_due",
];

fn joint(value: &Json) -> Option<Joint> {
    let map = value.as_object()?;
    Some(Joint {
        drifted: map.get("drifted")?.as_bool()?,
        error_change: map.get("error_change").and_then(Json::as_f64),
        p_value: map.get("p_value").and_then(Json::as_f64),
        drivers: map
            .get("drivers")
            .and_then(Json::as_array)
            .map(|d| {
                d.iter()
                    .filter_map(Json::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
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
                    dt { "Joint drift" } dd #newest-joint {
                        (drift_badge(joint.drifted))
                        @if let Some(e) = joint.error_change { " reconstruction error change " (html::number(e)) }
                        @if let Some(p) = joint.p_value { ", p = " (html::number(p)) }
                        @if !joint.drivers.is_empty() { ", driven by " @for d in &joint.drivers { span.tag { (d) } } }
                    }
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
                dt { "Action due" } dd { @if newest_summary.action_due { "yes (on_drift)" } @else { "no" } }
                dt { "Recorded by" } dd { (newest.user) }
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
            }
        }
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
                            td { (html::time_cell(v.created_at)) }
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
        // Another shape is listed as it is, not dropped.
        let other_shape = summary(&verdict(r#"{"multivariate":"yes","state":[1]}"#));
        assert_eq!(other_shape.other.len(), 2);
        let odd = summary(&verdict("[1,2]"));
        assert_eq!(odd.other.len(), 1);
        assert!(odd.drifted.is_empty());
    }
}
