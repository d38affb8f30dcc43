//! Metric histories as keel-chart line charts (run page and compare page).

use keel_core::{Error, Metric};
use keel_server::AppState;
use maud::{Markup, html};

use crate::html;

/// Most distinct steps fetched per run and metric (the store down-samples evenly).
pub const MAX_STEPS: usize = 1000;

/// The down-sampled history of `key` for each of `run_ids` (each point carries its run id).
pub async fn history(
    state: &AppState,
    run_ids: &[String],
    key: &str,
) -> Result<Vec<Metric>, Error> {
    state
        .store
        .get_metric_history_bulk_interval(run_ids, key, None, None, MAX_STEPS)
        .await
}

/// One line per (name, points) over step, and the same lines over time
/// (seconds since `origin` ms, per line), side by side.
pub fn step_and_time(lines: &[(String, Vec<Metric>, i64)]) -> Markup {
    let by_step: Vec<keel_chart::Series> = lines
        .iter()
        .map(|(name, points, _)| keel_chart::Series {
            name: name.clone(),
            points: points.iter().map(|m| (m.step as f64, m.value)).collect(),
        })
        .collect();
    let by_time: Vec<keel_chart::Series> = lines
        .iter()
        .map(|(name, points, origin)| {
            let mut points: Vec<(f64, f64)> = points
                .iter()
                .map(|m| ((m.timestamp - origin) as f64 / 1000.0, m.value))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            keel_chart::Series {
                name: name.clone(),
                points,
            }
        })
        .collect();
    let step_chart = keel_chart::LineChart {
        x_title: "step",
        ..keel_chart::LineChart::new(&by_step)
    };
    let time_chart = keel_chart::LineChart {
        x_title: "seconds since the run started",
        ..keel_chart::LineChart::new(&by_time)
    };
    html! {
        div.charts {
            figure.chart-box { figcaption { "Over step" } (html::svg(step_chart.to_svg())) }
            figure.chart-box { figcaption { "Over time" } (html::svg(time_chart.to_svg())) }
        }
    }
}
