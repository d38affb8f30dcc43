//! Comparing 2–N runs (`/compare-runs?runs=…`, also MLflow's
//! `#/compare-runs?runs=[…]&experiments=[…]`): params and latest metrics side
//! by side with differing rows marked, one metric's curves overlaid, and a
//! parallel-coordinates chart of the differing params against that metric.

use std::collections::BTreeSet;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::IntoResponse;
use keel_core::{Error, Run};
use keel_server::AppState;
use keel_server::auth::Caller;
use maud::html;

use crate::artifacts::display_name;
use crate::html::{self, PageResult};
use crate::query::Query;
use crate::{access, charts};

/// Most runs compared at once.
pub const MAX_COMPARED: usize = 50;
/// Most param axes on the parallel-coordinates chart.
const MAX_AXES: usize = 8;

pub async fn page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let query = Query::parse(raw.as_deref());
    let ids = query.list("runs");
    if ids.len() > MAX_COMPARED {
        return Err(Error::invalid_parameter(format!(
            "Compare at most {MAX_COMPARED} runs at once ({} were selected)",
            ids.len()
        ))
        .into());
    }
    let mut runs: Vec<Run> = Vec::with_capacity(ids.len());
    for id in &ids {
        let run = state.store.get_run(id).await?;
        access::check_experiment(&state, &caller, &run.info.experiment_id).await?;
        runs.push(run);
    }
    let names: Vec<String> = runs.iter().map(|r| display_name(&r.info)).collect();

    let metric_keys: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.data.metrics.iter().map(|m| m.key.as_str()))
        .collect();
    let param_keys: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.data.params.iter().map(|p| p.key.as_str()))
        .collect();
    let chosen = query
        .get("metric")
        .filter(|k| metric_keys.contains(k))
        .or_else(|| {
            metric_keys
                .iter()
                .find(|k| !k.starts_with("stage.") && **k != "pipeline.seconds")
                .copied()
        })
        .or_else(|| metric_keys.iter().next().copied())
        .map(str::to_string);

    let param = |run: &Run, key: &str| {
        run.data
            .params
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.clone())
    };
    let latest = |run: &Run, key: &str| {
        run.data
            .metrics
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.value)
    };
    let differs = |values: &[Option<String>]| values.windows(2).any(|w| w[0] != w[1]);

    let mut curves = Vec::new();
    if let Some(key) = &chosen
        && !runs.is_empty()
    {
        let ids: Vec<String> = runs.iter().map(|r| r.info.run_id.clone()).collect();
        let points = charts::history(&state, &ids, key).await?;
        for (run, name) in runs.iter().zip(&names) {
            let own: Vec<_> = points
                .iter()
                .filter(|m| m.run_id.as_deref() == Some(run.info.run_id.as_str()))
                .cloned()
                .collect();
            curves.push((name.clone(), own, run.info.start_time));
        }
    }

    // Parallel coordinates: params whose values differ, then the chosen metric.
    let mut axes: Vec<keel_chart::Axis> = Vec::new();
    for key in &param_keys {
        let values: Vec<Option<String>> = runs.iter().map(|r| param(r, key)).collect();
        if !differs(&values) {
            continue;
        }
        if axes.len() == MAX_AXES {
            break;
        }
        axes.push(axis(key, &values));
    }
    let parallel = chosen.as_ref().map(|key| {
        let mut all = axes.clone();
        all.push(keel_chart::Axis {
            name: key.clone(),
            values: runs.iter().map(|r| latest(r, key)).collect(),
            categories: Vec::new(),
        });
        keel_chart::parallel_coordinates(&all, &names)
    });

    let link = |query: &str| {
        let mut url = String::from("/compare-runs?runs=");
        url.push_str(&html::query_value(&ids.join(",")));
        url.push_str(query);
        url
    };
    let body = html! {
        h1 { "Comparing " (runs.len()) " runs" }
        @if runs.len() < 2 {
            p.warning { "Select at least two runs in an experiment's runs table to compare them." }
        }
        div.table-wrap {
            table.compare #compare-table {
                thead {
                    tr {
                        th { "Run" }
                        @for (run, name) in runs.iter().zip(&names) {
                            th { a href=(html::run_url(&run.info.experiment_id, &run.info.run_id)) title=(run.info.run_id) { (html::short(name, 32)) } }
                        }
                    }
                }
                tbody {
                    tr { th { "Status" } @for run in &runs { td { (html::status_badge(run.info.status)) } } }
                    tr { th { "Started" } @for run in &runs { td { (html::time_cell(run.info.start_time)) } } }
                    tr { th { "Duration" } @for run in &runs { td { (html::run_duration(run.info.start_time, run.info.end_time, run.info.status)) } } }
                    tr.group { th colspan=(runs.len() + 1) { "Parameters" } }
                    @for key in &param_keys {
                        @let values: Vec<Option<String>> = runs.iter().map(|r| param(r, key)).collect();
                        tr class=(if differs(&values) { "diff" } else { "same" }) {
                            th { (key) }
                            @for v in &values { td { @if let Some(v) = v { (html::short(v, 60)) } @else { span.missing { "–" } } } }
                        }
                    }
                    tr.group { th colspan=(runs.len() + 1) { "Metrics (latest)" } }
                    @for key in &metric_keys {
                        @let values: Vec<Option<f64>> = runs.iter().map(|r| latest(r, key)).collect();
                        @let text: Vec<Option<String>> = values.iter().map(|v| v.map(html::number)).collect();
                        tr class=(if differs(&text) { "diff" } else { "same" }) {
                            th { a href=(link(&format!("&metric={}", html::query_value(key)))) { (key) } }
                            @for v in &text { td.num { @if let Some(v) = v { (v) } @else { span.missing { "–" } } } }
                        }
                    }
                }
            }
        }
        p.muted { "Rows whose values differ between the runs are highlighted." }
        @if let Some(key) = &chosen {
            section #curves {
                h2 { (key) }
                form.chart-choice method="get" action="/compare-runs" {
                    input type="hidden" name="runs" value=(ids.join(","));
                    label { "Metric " select name="metric" { @for k in &metric_keys { option value=(k) selected[*k == key.as_str()] { (k) } } } }
                    button type="submit" { "Show" }
                }
                (charts::step_and_time(&curves))
            }
            section #parallel {
                h2 { "Parameters → " (key) }
                @if axes.is_empty() { p.muted { "The runs have the same parameters." } }
                @else if let Some(svg) = parallel { (html::svg(svg)) }
            }
        }
    };
    let crumbs = [
        ("Experiments".to_string(), "/".to_string()),
        ("Compare runs".to_string(), String::new()),
    ];
    Ok(html::page("Compare runs", &crumbs, body).into_response())
}

/// A param axis: numeric when every present value is a number, else categories.
fn axis(key: &str, values: &[Option<String>]) -> keel_chart::Axis {
    let numbers: Vec<Option<f64>> = values
        .iter()
        .map(|v| v.as_deref().and_then(|s| s.trim().parse::<f64>().ok()))
        .collect();
    let numeric = values
        .iter()
        .zip(&numbers)
        .all(|(v, n)| v.is_none() || n.is_some_and(f64::is_finite));
    if numeric {
        return keel_chart::Axis {
            name: key.to_string(),
            values: numbers,
            categories: Vec::new(),
        };
    }
    let categories: Vec<String> = values
        .iter()
        .flatten()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    keel_chart::Axis {
        name: key.to_string(),
        values: values
            .iter()
            .map(|v| {
                v.as_ref()
                    .and_then(|v| categories.iter().position(|c| c == v))
                    .map(|i| i as f64)
            })
            .collect(),
        categories,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_numeric_or_categorical() {
        let numeric = axis("lr", &[Some("0.1".into()), None, Some("1e-3".into())]);
        assert!(numeric.categories.is_empty());
        assert_eq!(numeric.values, vec![Some(0.1), None, Some(0.001)]);
        let categories = axis(
            "model",
            &[Some("rf".into()), Some("gbdt".into()), Some("rf".into())],
        );
        assert_eq!(categories.categories, vec!["gbdt", "rf"]);
        assert_eq!(categories.values, vec![Some(1.0), Some(0.0), Some(1.0)]);
    }
}
