//! `keel report`'s two renderings of a [`CiReport`]: Markdown for a
//! pull-request comment, and one self-contained HTML page (inline CSS and
//! SVG drawn by keel-chart, no script, no external resource). Both say what
//! is missing (no production model yet, no run for the previous commit, no
//! confusion matrix in the metrics) instead of leaving it out silently.

use std::fmt::Write as _;

use keel_chart::escape;
use keel_monitor::drift::{ColumnVerdict, Status, format_p};
use keel_monitor::validate::ValidationReport;

use super::ci::{Baseline, CheckOutcome, CiReport, Evaluation};
use crate::checks::{CheckRecord, FeatureCheckRecord, ValidateRecord};

/// Rows of the drift table before the rest is summarised.
pub const DRIFT_ROWS: usize = 15;
/// Most metric curves drawn.
pub const CURVES: usize = 8;

/// A value with four decimals (a whole number, such as a row count, without
/// them), `–` when absent.
pub fn number(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) if v.is_finite() => format!("{v:.4}"),
        Some(v) => format!("{v}"),
        None => "–".to_string(),
    }
}

/// `new − old` with its sign, `–` unless both are finite.
pub fn delta(new: Option<f64>, old: Option<f64>) -> String {
    match (new, old) {
        (Some(new), Some(old)) if new.is_finite() && old.is_finite() => {
            let change = new - old;
            // -0.00001 prints as +0.0000, not -0.0000.
            if change.abs() < 0.00005 {
                "±0.0000".to_string()
            } else {
                format!("{change:+.4}")
            }
        }
        _ => "–".to_string(),
    }
}

/// Text for a Markdown table cell: pipes escaped, line breaks folded.
pub fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn short(text: &str) -> &str {
    &text[..text.len().min(12)]
}

/// The baselines that have metrics, as (label, baseline).
fn found(report: &CiReport) -> Vec<(&str, &Baseline)> {
    [&report.production, &report.previous]
        .into_iter()
        .filter_map(|b| match b {
            Baseline::Found { label, .. } => Some((label.as_str(), b)),
            _ => None,
        })
        .collect()
}

/// Why a baseline that was asked for is missing, as `(side, why)`.
fn missing(report: &CiReport) -> Vec<(&'static str, &str)> {
    [
        ("production", &report.production),
        ("previous commit", &report.previous),
    ]
    .into_iter()
    .filter_map(|(side, b)| match b {
        Baseline::Missing(why) => Some((side, why.as_str())),
        _ => None,
    })
    .collect()
}

fn headline(report: &CiReport) -> (String, &'static str) {
    let commit = report
        .commit
        .as_deref()
        .map(|c| {
            format!(
                "commit {}{}",
                short(c),
                if report.dirty { " (dirty)" } else { "" }
            )
        })
        .unwrap_or_else(|| "no git commit".into());
    let gates = match report.gates.as_ref().and_then(|g| g.passed) {
        Some(true) => "✅ gates passed",
        Some(false) => "❌ gates failed",
        None => "gates not recorded",
    };
    (
        format!(
            "run {} ({}) · {commit} · {} · started {}",
            report.run_id,
            report.run_name,
            report.status,
            keel_core::civil::utc_text(report.started_ms)
        ),
        gates,
    )
}

/// The feature check records that compared with a reference.
fn drift_reports(report: &CiReport) -> Vec<(&str, &FeatureCheckRecord, &ValidationReport)> {
    report
        .checks
        .iter()
        .filter_map(|check| match &check.record {
            Ok(CheckRecord::FeatureCheck(record)) => record
                .report
                .as_deref()
                .map(|r| (check.stage.as_str(), record, r)),
            _ => None,
        })
        .collect()
}

/// Why there is no drift table.
fn no_drift_why(report: &CiReport) -> String {
    match report.checks.iter().find(|c| c.feature_check) {
        Some(CheckOutcome { record: Err(why), stage, .. }) => format!("`{stage}`: {why}"),
        Some(_) => "no production model with a stored training profile yet: nothing to compare the training data with".into(),
        None => "keel.yaml has no `feature_check:` step (with `reference: production` it compares the training data with the production model's training profile)".into(),
    }
}

/// Drift rows, drifted columns first in the report's ranking.
fn ranked(report: &ValidationReport) -> Vec<&ColumnVerdict> {
    let mut columns: Vec<&ColumnVerdict> = report.drift.columns.iter().collect();
    let rank = |name: &str| {
        report
            .drift
            .dataset
            .ranking
            .iter()
            .position(|r| r == name)
            .unwrap_or(usize::MAX)
    };
    columns.sort_by_key(|c| (!c.drifted, rank(&c.column)));
    columns
}

fn verdict_text(column: &ColumnVerdict) -> &'static str {
    match column.status {
        Status::Drift => "drift",
        Status::NoDrift => "ok",
        Status::NotTested => "not tested",
    }
}

fn mean_shift(report: &ValidationReport, column: &str) -> Option<f64> {
    report
        .features
        .iter()
        .find(|f| f.column == column)
        .and_then(|f| f.mean_shift_sd)
}

fn validate_line(record: &ValidateRecord) -> String {
    if record.violations.is_empty() {
        format!(
            "{} against {}: {} rows, {} columns, valid",
            record.data, record.schema, record.rows, record.columns
        )
    } else {
        let mut columns: Vec<&str> = record
            .violations
            .iter()
            .map(|v| v.column.as_str())
            .collect();
        columns.sort_unstable();
        columns.dedup();
        format!(
            "{} against {}: {} rows, {} violations in {} column(s)",
            record.data,
            record.schema,
            record.rows,
            record.violation_count(),
            columns.len()
        )
    }
}

fn feature_line(record: &FeatureCheckRecord) -> String {
    let reference = if record.reference == "production" {
        "the production model's training profile".to_string()
    } else {
        record.reference.clone()
    };
    match &record.report {
        None => format!(
            "{}: no production model with a stored training profile yet, nothing to compare with",
            record.data
        ),
        Some(report) => format!(
            "{} vs {reference}: {} features compared, {} beyond thresholds, {}",
            record.data,
            report.features.len(),
            report.features.iter().filter(|f| f.flagged).count(),
            if report.passed { "passed" } else { "failed" }
        ),
    }
}

/// One line per check, with the details under it (problems, violations).
fn check_lines(check: &CheckOutcome) -> (bool, String, Vec<String>) {
    let status = check
        .status
        .as_deref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    match &check.record {
        Err(why) => (
            false,
            format!("{}{status}: not available: {why}", check.stage),
            vec![],
        ),
        Ok(CheckRecord::Validate(record)) => (
            record.violations.is_empty(),
            format!("{}{status}: {}", check.stage, validate_line(record)),
            record
                .violations
                .iter()
                .map(|v| format!("{}: {} × {} ({})", v.column, v.count, v.message, v.rule))
                .chain(record.notes.iter().map(|n| format!("note: {n}")))
                .collect(),
        ),
        Ok(CheckRecord::FeatureCheck(record)) => (
            record.report.as_ref().is_none_or(|r| r.passed),
            format!("{}{status}: {}", check.stage, feature_line(record)),
            record
                .report
                .as_ref()
                .map(|r| r.problems.clone())
                .unwrap_or_default(),
        ),
    }
}

/// The gate table rows in Markdown (shared with `.keel/report.md`).
pub fn gate_table_md(gates: &[keel_core::promotion::GateResult]) -> String {
    let mut out = String::from(
        "| gate | value | threshold | production | result |\n|---|---:|---:|---:|---|\n",
    );
    for gate in gates {
        let result = if gate.passed { "✅ pass" } else { "❌ fail" };
        let note = gate
            .note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {result}{} |",
            gate.expression.replace('`', "'"),
            number(gate.value),
            number(gate.threshold),
            number(gate.production),
            md_cell(&note)
        );
    }
    out
}

/// The report as Markdown.
pub fn markdown(report: &CiReport) -> String {
    let (line, gates) = headline(report);
    let mut out = String::from("## keel report\n\n");
    let _ = writeln!(out, "**{gates}** · {}\n", md_cell(&line));

    out.push_str("### Metrics\n\n");
    let baselines = found(report);
    if report.metrics.is_empty() {
        out.push_str("_The run recorded no model metrics._\n");
    } else {
        out.push_str("| metric | this run |");
        for (label, _) in &baselines {
            let label = md_cell(label);
            let _ = write!(out, " {label} | Δ vs {label} |");
        }
        out.push_str("\n|---|---:|");
        for _ in &baselines {
            out.push_str("---:|---:|");
        }
        out.push('\n');
        for row in &report.metrics {
            let _ = write!(out, "| {} | {} |", md_cell(&row.key), number(row.value));
            for (_, baseline) in &baselines {
                let old = baseline.value(&row.key);
                let _ = write!(out, " {} | {} |", number(old), delta(row.value, old));
            }
            out.push('\n');
        }
    }
    for (side, why) in missing(report) {
        let _ = writeln!(out, "\n_vs {side}: {}._", md_cell(why));
    }

    out.push_str("\n### Gates\n\n");
    match &report.gates {
        Some(gates) if !gates.gates.is_empty() => out.push_str(&gate_table_md(&gates.gates)),
        Some(_) => out.push_str("_keel.yaml has no gates._\n"),
        None => out.push_str(
            "_No gate results were recorded on this run (a failed stage stops `keel run` before the gates; `keel gate --run ID` records them)._\n",
        ),
    }

    out.push_str("\n### Data validation\n\n");
    if report.checks.is_empty() {
        out.push_str("_keel.yaml has no `validate:` or `feature_check:` step._\n");
    }
    for check in &report.checks {
        let (ok, line, details) = check_lines(check);
        let _ = writeln!(
            out,
            "- {} `{}`",
            if ok { "✅" } else { "❌" },
            md_cell(&line)
        );
        for detail in details {
            let _ = writeln!(out, "  - {}", md_cell(&detail));
        }
    }

    out.push_str("\n### Drift of the training data vs the production model's training profile\n\n");
    let drift = drift_reports(report);
    if drift.is_empty() {
        let _ = writeln!(out, "_{}._", md_cell(&no_drift_why(report)));
    }
    for (stage, record, validation) in drift {
        let dataset = &validation.drift.dataset;
        let _ = writeln!(
            out,
            "`{stage}` ({}, {} rows vs {} reference rows): **{}**, {}\n",
            md_cell(&record.data),
            validation.drift.current_rows,
            validation.drift.reference_rows,
            if dataset.drifted { "drift" } else { "no drift" },
            md_cell(&dataset.rule)
        );
        out.push_str("| feature | effect | threshold | p (adjusted) | mean shift (σ) | verdict |\n|---|---:|---:|---:|---:|---|\n");
        let columns = ranked(validation);
        for column in columns.iter().take(DRIFT_ROWS) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                md_cell(&column.column),
                number(column.effect_size),
                number(Some(column.threshold)),
                column.p_value_adjusted.map_or("–".into(), format_p),
                number(mean_shift(validation, &column.column)),
                verdict_text(column)
            );
        }
        if columns.len() > DRIFT_ROWS {
            let _ = writeln!(
                out,
                "\n_… and {} more features (the HTML report lists all)._",
                columns.len() - DRIFT_ROWS
            );
        }
    }
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}\
table{border-collapse:collapse;margin:6px 0 12px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.bad{color:#b00;font-weight:600}.good{color:#2a7d2a}\
.muted{color:#777}svg.chart{max-width:100%;height:auto}rect.ref{fill:#9bb7d4}rect.cur{fill:#e4863b}\
.axis{font-size:11px;fill:#555}line.thr{stroke:#b00;stroke-dasharray:4 3}\
.grid{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;border:1px solid #ddd;border-radius:4px;padding:6px;width:520px}\
figcaption{font-size:12.5px;color:#555}table.cm td{text-align:center;min-width:48px}";

fn html_cell(value: &str) -> String {
    format!("<td class=n>{}</td>", escape(value))
}

/// The report as one self-contained HTML page.
pub fn html(report: &CiReport) -> String {
    let (line, gates) = headline(report);
    let mut out = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>keel report: run {}</title><style>{STYLE}</style></head><body><h1>keel report</h1>",
        escape(&report.run_id)
    );
    let _ = write!(
        out,
        "<p><b class={}>{}</b> · {}</p>",
        if gates.starts_with('✅') {
            "good"
        } else {
            "bad"
        },
        escape(gates),
        escape(&line)
    );

    out.push_str("<h2>Metrics</h2>");
    let baselines = found(report);
    if report.metrics.is_empty() {
        out.push_str("<p class=muted>The run recorded no model metrics.</p>");
    } else {
        out.push_str("<table><tr><th>metric</th><th>this run</th>");
        for (label, _) in &baselines {
            let label = escape(label);
            let _ = write!(out, "<th>{label}</th><th>Δ vs {label}</th>");
        }
        out.push_str("</tr>");
        for row in &report.metrics {
            let _ = write!(
                out,
                "<tr><td>{}</td>{}",
                escape(&row.key),
                html_cell(&number(row.value))
            );
            for (_, baseline) in &baselines {
                let old = baseline.value(&row.key);
                out.push_str(&html_cell(&number(old)));
                out.push_str(&html_cell(&delta(row.value, old)));
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>");
    }
    for (side, why) in missing(report) {
        let _ = write!(out, "<p class=muted>vs {side}: {}.</p>", escape(why));
    }
    out.push_str(&curves_html(report));

    out.push_str("<h2>Gates</h2>");
    match &report.gates {
        Some(gates) if !gates.gates.is_empty() => {
            out.push_str("<table><tr><th>gate</th><th>value</th><th>threshold</th><th>production</th><th>result</th></tr>");
            for gate in &gates.gates {
                let _ = write!(
                    out,
                    "<tr><td><code>{}</code></td>{}{}{}<td class={}>{}{}</td></tr>",
                    escape(&gate.expression),
                    html_cell(&number(gate.value)),
                    html_cell(&number(gate.threshold)),
                    html_cell(&number(gate.production)),
                    if gate.passed { "good" } else { "bad" },
                    if gate.passed { "pass" } else { "fail" },
                    gate.note
                        .as_deref()
                        .map(|n| format!(" <span class=muted>({})</span>", escape(n)))
                        .unwrap_or_default()
                );
            }
            out.push_str("</table>");
        }
        Some(_) => out.push_str("<p class=muted>keel.yaml has no gates.</p>"),
        None => out.push_str("<p class=muted>No gate results were recorded on this run.</p>"),
    }

    out.push_str("<h2>Data validation</h2>");
    if report.checks.is_empty() {
        out.push_str("<p class=muted>keel.yaml has no <code>validate:</code> or <code>feature_check:</code> step.</p>");
    } else {
        out.push_str("<ul>");
        for check in &report.checks {
            let (ok, line, details) = check_lines(check);
            let _ = write!(
                out,
                "<li><span class={}>{}</span> {}",
                if ok { "good" } else { "bad" },
                if ok { "ok" } else { "problem" },
                escape(&line)
            );
            if !details.is_empty() {
                out.push_str("<ul>");
                for detail in details {
                    let _ = write!(out, "<li>{}</li>", escape(&detail));
                }
                out.push_str("</ul>");
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }

    out.push_str("<h2>Drift of the training data vs the production model's training profile</h2>");
    let drift = drift_reports(report);
    if drift.is_empty() {
        let _ = write!(out, "<p class=muted>{}.</p>", escape(&no_drift_why(report)));
    }
    for (stage, record, validation) in drift {
        let dataset = &validation.drift.dataset;
        let _ = write!(
            out,
            "<p><code>{}</code> ({}, {} rows vs {} reference rows): <b class={}>{}</b> — {}</p>",
            escape(stage),
            escape(&record.data),
            validation.drift.current_rows,
            validation.drift.reference_rows,
            if dataset.drifted { "bad" } else { "good" },
            if dataset.drifted { "drift" } else { "no drift" },
            escape(&dataset.rule)
        );
        out.push_str("<table><tr><th>feature</th><th>effect</th><th>threshold</th><th>p (adjusted)</th><th>mean shift (σ)</th><th>verdict</th></tr>");
        let columns = ranked(validation);
        for column in &columns {
            let _ = write!(
                out,
                "<tr><td>{}</td>{}{}{}{}<td class={}>{}</td></tr>",
                escape(&column.column),
                html_cell(&number(column.effect_size)),
                html_cell(&number(Some(column.threshold))),
                html_cell(&column.p_value_adjusted.map_or("–".into(), format_p)),
                html_cell(&number(mean_shift(validation, &column.column))),
                if column.drifted { "bad" } else { "" },
                verdict_text(column)
            );
        }
        out.push_str("</table><h3>Feature histograms</h3><p class=muted>Share of rows per bin or category: production's training profile in blue, this run's training data in orange.</p><div class=grid>");
        for column in &columns {
            let _ = write!(
                out,
                "<figure><figcaption class={}>{} ({})</figcaption>{}</figure>",
                if column.drifted { "bad" } else { "" },
                escape(&column.column),
                verdict_text(column),
                keel_monitor::render::distribution_svg(column)
            );
        }
        out.push_str("</div>");
    }

    out.push_str("<h2>Evaluation</h2>");
    if report.evaluations.is_empty() {
        out.push_str("<p class=muted>No stage of keel.yaml declares a metrics file: no confusion matrix or calibration to show.</p>");
    }
    for evaluation in &report.evaluations {
        out.push_str(&evaluation_html(evaluation));
    }
    out.push_str("</body></html>\n");
    out
}

/// One chart per metric across the recent pipeline runs (keel run logs one
/// value per metric and run, so a metric's history is its runs).
fn curves_html(report: &CiReport) -> String {
    let mut out = String::from("<h3>Metric history</h3>");
    if report.history.len() < 2 {
        out.push_str("<p class=muted>Only this run is recorded: no history to draw yet.</p>");
        return out;
    }
    let _ = write!(
        out,
        "<p class=muted>keel run logs one value per metric and run: each point is one of the last {} pipeline runs of the experiment, oldest left, this run right.</p><div class=grid>",
        report.history.len()
    );
    let labels: Vec<String> = report.history.iter().map(|p| p.label.clone()).collect();
    let label_of = |x: f64| {
        let i = x.round();
        if i >= 0.0 && (i as usize) < labels.len() && (x - i).abs() < 1e-9 {
            labels[i as usize].chars().take(7).collect::<String>()
        } else {
            String::new()
        }
    };
    for row in report
        .metrics
        .iter()
        .filter(|row| row.value.is_some())
        .take(CURVES)
    {
        let series = [keel_chart::Series {
            name: row.key.clone(),
            points: report
                .history
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.metrics.get(&row.key).map(|v| (i as f64, *v)))
                .collect(),
        }];
        let chart = keel_chart::LineChart {
            x_title: "pipeline run (commit)",
            x_ticks: keel_chart::XTicks::Labels(&label_of),
            ..keel_chart::LineChart::new(&series)
        };
        let _ = write!(
            out,
            "<figure><figcaption>{}</figcaption>{}</figure>",
            escape(&row.key),
            chart.to_svg()
        );
    }
    out.push_str("</div>");
    out
}

fn evaluation_html(evaluation: &Evaluation) -> String {
    match evaluation {
        Evaluation::Unavailable { file, why } => format!(
            "<p><code>{}</code>: <span class=muted>no confusion matrix or calibration to plot: {}.</span></p>",
            escape(file),
            escape(why)
        ),
        Evaluation::Classification {
            file,
            classes,
            confusion,
            calibration,
        } => {
            let mut out = format!("<h3>Confusion matrix (<code>{}</code>)</h3>", escape(file));
            let top = confusion
                .iter()
                .flatten()
                .copied()
                .max()
                .unwrap_or(0)
                .max(1) as f64;
            out.push_str("<table class=cm><tr><th>true \\ predicted</th>");
            for class in classes {
                let _ = write!(out, "<th>{}</th>", escape(class));
            }
            out.push_str("</tr>");
            for (i, row) in confusion.iter().enumerate() {
                let name = classes.get(i).map_or_else(|| i.to_string(), |c| escape(c));
                let _ = write!(out, "<tr><th>{name}</th>");
                for count in row {
                    let _ = write!(
                        out,
                        "<td style=\"background:rgba(78,121,167,{:.2})\">{count}</td>",
                        0.08 + 0.6 * (*count as f64 / top)
                    );
                }
                out.push_str("</tr>");
            }
            out.push_str("</table>");
            let _ = write!(out, "<h3>Calibration (<code>{}</code>)</h3>", escape(file));
            let observed: Vec<(f64, f64)> = calibration
                .iter()
                .filter(|b| b.count > 0)
                .map(|b| (b.mean_predicted, b.observed))
                .collect();
            if observed.is_empty() {
                out.push_str("<p class=muted>The calibration table is empty.</p>");
                return out;
            }
            let series = [
                keel_chart::Series {
                    name: "observed frequency".into(),
                    points: observed,
                },
                keel_chart::Series {
                    name: "perfectly calibrated".into(),
                    points: vec![(0.0, 0.0), (1.0, 1.0)],
                },
            ];
            let chart = keel_chart::LineChart {
                x_title: "mean predicted probability",
                y_from_zero: true,
                ..keel_chart::LineChart::new(&series)
            };
            let _ = write!(out, "<figure>{}</figure>", chart.to_svg());
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::ci::{HistoryPoint, MetricRow};
    use super::*;
    use crate::checks::ViolationSummary;
    use keel_core::promotion::{GateResult, GateResults};

    #[test]
    fn numbers_and_deltas_are_signed_and_dashed_when_absent() {
        assert_eq!(number(Some(0.5)), "0.5000");
        assert_eq!(number(Some(1200.0)), "1200");
        assert_eq!(number(Some(-3.0)), "-3");
        assert_eq!(number(None), "–");
        assert_eq!(delta(Some(0.8), Some(0.75)), "+0.0500");
        assert_eq!(delta(Some(0.7), Some(0.75)), "-0.0500");
        assert_eq!(delta(Some(0.75), Some(0.75)), "±0.0000");
        assert_eq!(delta(Some(0.75), None), "–");
        assert_eq!(delta(Some(f64::NAN), Some(1.0)), "–");
        assert_eq!(md_cell("a|b\nc"), "a\\|b c");
    }

    fn sample(production: Baseline, previous: Baseline) -> CiReport {
        CiReport {
            run_id: "abc".into(),
            run_name: "run <1>".into(),
            commit: Some("0123456789abcdef".into()),
            dirty: false,
            status: "FINISHED".into(),
            started_ms: 0,
            metrics: vec![MetricRow {
                key: "accuracy".into(),
                value: Some(0.8),
                production: production.value("accuracy"),
                previous: previous.value("accuracy"),
            }],
            production,
            previous,
            gates: Some(GateResults {
                passed: Some(false),
                gates: vec![GateResult {
                    expression: "accuracy >= 0.9".into(),
                    metric: "accuracy".into(),
                    value: Some(0.8),
                    threshold: Some(0.9),
                    production: None,
                    passed: false,
                    note: None,
                }],
            }),
            checks: vec![CheckOutcome {
                stage: "validate".into(),
                feature_check: false,
                status: Some("ran".into()),
                record: Ok(CheckRecord::Validate(ValidateRecord {
                    data: "data/train.csv".into(),
                    schema: "schema.yaml".into(),
                    rows: 10,
                    columns: 2,
                    violations: vec![ViolationSummary {
                        column: "age".into(),
                        rule: "min".into(),
                        message: "below min 0".into(),
                        count: 2,
                    }],
                    notes: vec![],
                })),
            }],
            evaluations: vec![Evaluation::Unavailable {
                file: "m.json".into(),
                why: "a regression model".into(),
            }],
            history: vec![
                HistoryPoint {
                    label: "aaa".into(),
                    run_id: "r1".into(),
                    metrics: BTreeMap::from([("accuracy".to_string(), 0.7)]),
                },
                HistoryPoint {
                    label: "bbb".into(),
                    run_id: "abc".into(),
                    metrics: BTreeMap::from([("accuracy".to_string(), 0.8)]),
                },
            ],
        }
    }

    #[test]
    fn markdown_has_a_delta_column_per_baseline_and_says_what_is_missing() {
        let production = Baseline::Found {
            label: "risk@production v1".into(),
            run_id: None,
            metrics: BTreeMap::from([("accuracy".to_string(), 0.75)]),
        };
        let text = markdown(&sample(
            production,
            Baseline::Missing("no pipeline run recorded for the 20 commits before 0123".into()),
        ));
        assert!(
            text.contains("| metric | this run | risk@production v1 | Δ vs risk@production v1 |"),
            "{text}"
        );
        assert!(
            text.contains("| accuracy | 0.8000 | 0.7500 | +0.0500 |"),
            "{text}"
        );
        assert!(
            text.contains("_vs previous commit: no pipeline run recorded"),
            "{text}"
        );
        assert!(
            text.contains("| `accuracy >= 0.9` | 0.8000 | 0.9000 | – | ❌ fail |"),
            "{text}"
        );
        assert!(text.contains("❌ gates failed"), "{text}");
        assert!(text.contains("2 violations in 1 column(s)"), "{text}");
        assert!(text.contains("age: 2 × below min 0 (min)"), "{text}");
        assert!(
            text.contains("keel.yaml has no `feature_check:` step"),
            "{text}"
        );
        let none = markdown(&sample(
            Baseline::Missing("no production model yet".into()),
            Baseline::NotAsked,
        ));
        assert!(none.contains("| metric | this run |\n"), "{none}");
        assert!(
            none.contains("_vs production: no production model yet._"),
            "{none}"
        );
        assert!(!none.contains("vs previous commit"), "{none}");
    }

    #[test]
    fn html_is_self_contained_escaped_and_says_what_it_cannot_plot() {
        let page = html(&sample(
            Baseline::Missing("none".into()),
            Baseline::NotAsked,
        ));
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("<svg"), "the metric history is drawn");
        assert!(page.contains("run &lt;1&gt;"), "text is escaped");
        assert!(!page.contains("<script"));
        assert!(!page.contains("src="));
        assert!(!page.contains("href=\"http"));
        assert!(page.contains("no confusion matrix or calibration to plot: a regression model"));
    }
}
