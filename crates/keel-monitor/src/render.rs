//! Rendering of reports: a terminal table and a self-contained HTML page
//! (inline SVG, no external assets). JSON is the serde form of the types.

use std::fmt::Write;

use keel_chart::escape;

use crate::drift::{ColumnVerdict, DriftReport, Status, format_p};
use crate::joint::JointVerdict;
use crate::window::WindowedReport;

fn effect_text(verdict: &ColumnVerdict) -> String {
    verdict
        .effect_size
        .map_or("-".into(), |e| format!("{e:.3}"))
}

/// A fixed-width table for terminals.
pub fn table(report: &DriftReport) -> String {
    let mut out = String::new();
    let width = report
        .columns
        .iter()
        .map(|c| c.column.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "{:<width$}  {:<11}  {:>8}  {:>6}  {:>9}  {:<9}  most changed",
        "column", "kind", "effect", "min", "p (adj)", "verdict"
    );
    for c in &report.columns {
        let verdict = match c.status {
            Status::Drift => "DRIFT",
            Status::NoDrift => "ok",
            Status::NotTested => "untested",
        };
        let top = c
            .top_contributors
            .first()
            .map(|b| {
                format!(
                    "{} {:.1}% -> {:.1}%",
                    b.label,
                    b.reference * 100.0,
                    b.current * 100.0
                )
            })
            .unwrap_or_else(|| {
                if c.status == Status::NotTested {
                    c.rule.clone()
                } else {
                    String::new()
                }
            });
        let _ = writeln!(
            out,
            "{:<width$}  {:<11}  {:>8}  {:>6}  {:>9}  {:<9}  {}",
            c.column,
            c.kind.as_str(),
            effect_text(c),
            c.threshold,
            c.p_value_adjusted.map_or("-".into(), format_p),
            verdict,
            top
        );
    }
    let _ = writeln!(
        out,
        "\nrows: reference {}, current {}",
        report.reference_rows, report.current_rows
    );
    let _ = writeln!(
        out,
        "dataset: {} ({})",
        if report.dataset.drifted {
            "DRIFT"
        } else {
            "no drift"
        },
        report.dataset.rule
    );
    if let Some(joint) = &report.multivariate {
        let _ = writeln!(
            out,
            "joint: {} ({}){}",
            if joint.drifted { "DRIFT" } else { "no drift" },
            joint.rule,
            if joint.drivers.is_empty() {
                String::new()
            } else {
                format!("; drivers: {}", joint.drivers.join(", "))
            }
        );
        for pair in joint.pairs.iter().filter(|p| p.drifted).take(5) {
            let _ = writeln!(
                out,
                "  - correlation {} ~ {}: {:.3} -> {:.3} (Holm p {})",
                pair.a,
                pair.b,
                pair.reference,
                pair.current,
                format_p(pair.p_value_adjusted)
            );
        }
    }
    if report.quality.is_empty() {
        let _ = writeln!(out, "quality: no findings");
    } else {
        let _ = writeln!(out, "quality findings:");
        for finding in &report.quality {
            let _ = writeln!(
                out,
                "  - [{}] {}",
                serde_json::to_value(finding.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                finding.message
            );
        }
    }
    out
}

/// Grouped bars of reference vs current shares per bin or category (the
/// page colours the `ref` and `cur` classes).
pub fn distribution_svg(verdict: &ColumnVerdict) -> String {
    let bins: Vec<keel_chart::Bin> = verdict
        .bins
        .iter()
        .map(|b| keel_chart::Bin {
            label: &b.label,
            a: b.reference,
            b: b.current,
        })
        .collect();
    keel_chart::paired_bars(&bins, ["ref", "cur"])
}

/// A titled line chart of several series over time (x = window start, ms).
pub fn lines_svg(
    title: &str,
    xs: &[i64],
    series: &[(String, Vec<Option<f64>>)],
    threshold: Option<f64>,
) -> String {
    let series: Vec<keel_chart::Series> = series
        .iter()
        .map(|(name, ys)| keel_chart::Series {
            name: name.clone(),
            points: xs
                .iter()
                .zip(ys)
                .filter_map(|(&x, y)| y.map(|y| (x as f64, y)))
                .collect(),
        })
        .collect();
    let chart = keel_chart::LineChart {
        x_ticks: keel_chart::XTicks::Hidden,
        x_title: "window",
        y_from_zero: true,
        threshold,
        ..keel_chart::LineChart::new(&series)
    };
    format!("<h3>{}</h3>{}", escape(title), chart.to_svg())
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}\
.drift{color:#b00;font-weight:600}.muted{color:#888}rect.ref{fill:#9bb7d4}rect.cur{fill:#e4863b}.axis{font-size:11px;fill:#555}\
line.thr{stroke:#b00;stroke-dasharray:4 3}.col{display:inline-block;vertical-align:top;margin:8px 16px 16px 0}";

/// A self-contained HTML page for a report, with time series when the
/// report covers windows of a prediction log.
pub fn html(report: &DriftReport, windows: Option<&WindowedReport>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=utf-8><title>keel monitor report</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        out,
        "<h1>keel monitor report</h1><p>reference rows {}, current rows {}. <b class='{}'>Dataset: {}</b> — {}</p>",
        report.reference_rows,
        report.current_rows,
        if report.dataset.drifted { "drift" } else { "" },
        if report.dataset.drifted {
            "DRIFT"
        } else {
            "no drift"
        },
        escape(&report.dataset.rule)
    );
    let _ = write!(
        out,
        "<p class=muted>Rule per column: drift = effect ≥ threshold AND {:?}-corrected p &lt; alpha. Numeric effect: Wasserstein-1 / σ(reference); categorical effect: Jensen–Shannon distance minus its small-sample bias. Reference in blue, current in orange.</p>",
        report.settings.correction
    );
    if let Some(windows) = windows {
        out.push_str(&windows_html(windows));
    }
    out.push_str("<h2>Columns</h2><table><tr><th>column</th><th>kind</th><th>effect</th><th>threshold</th><th>p (adjusted)</th><th>verdict</th><th>rule</th></tr>");
    for c in &report.columns {
        let _ = write!(
            out,
            "<tr><td><a href='#c-{0}'>{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td class='{5}'>{6}</td><td class=muted>{7}</td></tr>",
            escape(&c.column),
            c.kind.as_str(),
            effect_text(c),
            c.threshold,
            c.p_value_adjusted.map_or("-".into(), format_p),
            if c.drifted { "drift" } else { "" },
            match c.status {
                Status::Drift => "DRIFT",
                Status::NoDrift => "ok",
                Status::NotTested => "not tested",
            },
            escape(&c.rule)
        );
    }
    out.push_str("</table>");
    if let Some(joint) = &report.multivariate {
        out.push_str(&joint_html(joint));
    }
    out.push_str("<h2>Quality</h2>");
    if report.quality.is_empty() {
        out.push_str("<p>No findings.</p>");
    } else {
        out.push_str("<ul>");
        for finding in &report.quality {
            let _ = write!(out, "<li>{}</li>", escape(&finding.message));
        }
        out.push_str("</ul>");
    }
    out.push_str("<h2>Distributions</h2>");
    for c in &report.columns {
        let _ = write!(
            out,
            "<div class=col id='c-{0}'><h3 class='{1}'>{0}</h3>{2}</div>",
            escape(&c.column),
            if c.drifted { "drift" } else { "" },
            distribution_svg(c)
        );
    }
    out.push_str("</body></html>\n");
    out
}

fn joint_html(joint: &JointVerdict) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<h2>Joint (multivariate) drift</h2><p><b class='{}'>{}</b> — {}</p><p class=muted>{}. Reconstruction error per row: reference {:.4}, current {:.4} ({:+.1}%); p {}.</p>",
        if joint.drifted { "drift" } else { "" },
        if joint.drifted { "DRIFT" } else { "no drift" },
        escape(&joint.rule),
        escape(&joint.method),
        joint.reference_error,
        joint.current_error,
        joint.error_change * 100.0,
        joint.p_value.map_or("-".into(), format_p),
    );
    if !joint.drivers.is_empty() {
        let _ = write!(
            out,
            "<p>Driven by: {}</p>",
            joint
                .drivers
                .iter()
                .map(|d| format!("<b>{}</b>", escape(d)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out.push_str("<table><tr><th>column</th><th>reference error</th><th>current error</th><th>share of change</th></tr>");
    for c in joint.column_errors.iter().take(10) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.1}%</td></tr>",
            escape(&c.column),
            c.reference_error,
            c.current_error,
            c.share * 100.0
        );
    }
    out.push_str("</table><table><tr><th>pair</th><th>reference ρ</th><th>current ρ</th><th>Holm p</th><th>verdict</th></tr>");
    for p in &joint.pairs {
        let _ = write!(
            out,
            "<tr><td>{} ~ {}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td class='{}'>{}</td></tr>",
            escape(&p.a),
            escape(&p.b),
            p.reference,
            p.current,
            format_p(p.p_value_adjusted),
            if p.drifted { "drift" } else { "" },
            if p.drifted { "DRIFT" } else { "ok" }
        );
    }
    out.push_str("</table>");
    out
}

fn windows_html(windows: &WindowedReport) -> String {
    let mut out = String::from("<h2>Over time</h2>");
    let xs: Vec<i64> = windows.windows.iter().map(|w| w.start_ms).collect();
    let mut columns: Vec<&String> = windows
        .windows
        .iter()
        .flat_map(|w| w.effects.keys())
        .collect();
    columns.sort();
    columns.dedup();
    // The columns that drifted most often, then the largest effects.
    columns.sort_by_key(|c| {
        std::cmp::Reverse(
            windows
                .windows
                .iter()
                .filter(|w| w.drifted_columns.contains(c))
                .count(),
        )
    });
    let series: Vec<(String, Vec<Option<f64>>)> = columns
        .iter()
        .take(5)
        .map(|c| {
            (
                (*c).clone(),
                windows
                    .windows
                    .iter()
                    .map(|w| w.effects.get(*c).copied())
                    .collect(),
            )
        })
        .collect();
    out.push_str(&lines_svg(
        "Drift effect per window (top columns)",
        &xs,
        &series,
        None,
    ));
    let rows: Vec<Option<f64>> = windows
        .windows
        .iter()
        .map(|w| Some(w.rows as f64))
        .collect();
    out.push_str(&lines_svg(
        "Predictions per window",
        &xs,
        &[("rows".into(), rows)],
        None,
    ));
    let mut performance: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    let metric = windows
        .windows
        .iter()
        .find_map(|w| w.performance.as_ref().map(|p| p.headline_name.clone()));
    if let Some(metric) = metric {
        performance.push((
            format!("live {metric}"),
            windows
                .windows
                .iter()
                .map(|w| w.performance.as_ref().map(|p| p.headline))
                .collect(),
        ));
    }
    if windows
        .windows
        .iter()
        .any(|w| w.estimated_accuracy.is_some())
    {
        performance.push((
            "estimated accuracy (CBPE)".into(),
            windows
                .windows
                .iter()
                .map(|w| w.estimated_accuracy)
                .collect(),
        ));
    }
    out.push_str(&lines_svg(
        "Performance per window",
        &xs,
        &performance,
        windows.evaluation_headline,
    ));
    if !windows.change_points.is_empty() {
        out.push_str("<h3>Change points (Page–Hinkley)</h3><ul>");
        for point in &windows.change_points {
            let _ = write!(
                out,
                "<li>{}: {}</li>",
                escape(&point.stream),
                escape(&point.message)
            );
        }
        out.push_str("</ul>");
    }
    out
}
