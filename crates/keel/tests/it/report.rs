//! `keel report`: a recorded pipeline run as a CI report. Three commits of a
//! project with a validate step, a feature check against production, an
//! evaluation and `register:`; the report shows the metric table with deltas
//! vs production and vs the previous commit, the gate table, the validation
//! summary and the drift table (Markdown), one self-contained HTML page with
//! plots, `--against production|COMMIT`, and fails on a project with no run.

use std::path::Path;

use crate::util::{self, keel, ok, text};

const KEEL_YAML: &str = "\
stages:
  validate:
    validate: {data: data/train.csv, schema: schema.yaml}
  features:
    feature_check:
      data: data/train.csv
      reference: production
      label: default
  train:
    cmd: keel train --algo gbdt --data data/train.csv --target default --out model --test-fraction 0 --seed 3 --n-iter ${train.n_iter} --max-leaves 7
    deps: [data/train.csv]
    outs: [model]
  evaluate:
    cmd: keel evaluate model data/test.csv --output metrics.json
    deps: [model, data/test.csv]
    metrics: [metrics.json]
gates:
  - accuracy >= 0.6
register: {model: risk, path: model, alias: production}
";

/// Commits params.yaml with `n_iter` and returns the commit.
fn commit_params(dir: &Path, n_iter: u32) -> String {
    std::fs::write(
        dir.join("params.yaml"),
        format!("train:\n  n_iter: {n_iter}\n"),
    )
    .expect("write params.yaml");
    util::git(dir, &["add", "params.yaml"]);
    util::git(dir, &["commit", "-qm", &format!("{n_iter} rounds")]);
    util::git(dir, &["rev-parse", "HEAD"]).trim().to_string()
}

/// The run id `keel run` printed.
fn run_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("run ")?.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id in:\n{stdout}"))
        .to_string()
}

/// The lines of the Markdown table whose header starts with `| metric |`.
fn metric_table(report: &str) -> Vec<&str> {
    report
        .lines()
        .skip_while(|l| !l.starts_with("| metric |"))
        .take_while(|l| l.starts_with('|'))
        .collect()
}

#[test]
fn report_shows_deltas_gates_validation_and_drift_as_markdown_and_html() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    util::git(root, &["init", "-q", "-b", "main"]);
    std::fs::write(root.join(".gitignore"), "model/\nmetrics.json\n.keel/\n").unwrap();
    for (seed, file) in [("1", "data/train.csv"), ("2", "data/test.csv")] {
        ok(
            root,
            &[
                "generate",
                "portfolio",
                "--rows",
                "1200",
                "--seed",
                seed,
                "--out",
                file,
            ],
        );
    }
    let schema = ok(root, &["schema", "infer", "data/train.csv"]);
    std::fs::write(root.join("schema.yaml"), schema).unwrap();
    std::fs::write(root.join("keel.yaml"), KEEL_YAML).unwrap();
    std::fs::write(root.join("params.yaml"), "train:\n  n_iter: 5\n").unwrap();
    util::git(root, &["add", "."]);
    util::git(root, &["commit", "-qm", "data and pipeline"]);

    // No run yet: nothing to report on, and the message says what to do.
    let none = keel(root, &["report", "--format", "md"]);
    assert_ne!(none.status.code(), Some(0), "{}", text(&none));
    let stderr = util::lossy(&none.stderr);
    assert!(
        stderr.contains("no pipeline run to report on") && stderr.contains("keel run"),
        "{}",
        text(&none)
    );

    // Commit A, registered without the alias: no production model yet, and
    // no run for an earlier commit. Neither is an error.
    let a = commit_params(root, 10);
    let first = ok(root, &["run", "--no-alias"]);
    let first_run = run_id(&first);
    let report = ok(root, &["report", "--format", "md"]);
    assert!(
        report.contains("_vs production: no production model yet"),
        "{report}"
    );
    assert!(
        report.contains("_vs previous commit: no pipeline run recorded"),
        "{report}"
    );
    assert!(
        report.contains("no production model with a stored training profile yet"),
        "{report}"
    );
    assert!(
        metric_table(&report)[0].ends_with("| metric | this run |"),
        "{report}"
    );

    // Commit B takes @production; commit C is registered without it.
    let b = commit_params(root, 20);
    ok(root, &["run"]);
    let c = commit_params(root, 40);
    let third = ok(root, &["run", "--no-alias"]);
    assert!(
        third.contains("feature checks compare with the training profile of risk@production v2"),
        "{third}"
    );

    let report = ok(root, &["report", "--format", "md"]);
    assert!(report.contains(&format!("commit {}", &c[..12])), "{report}");
    let table = metric_table(&report);
    assert_eq!(
        table[0],
        format!(
            "| metric | this run | risk@production v2 | Δ vs risk@production v2 | previous commit {0} | Δ vs previous commit {0} |",
            &b[..12]
        ),
        "{report}"
    );
    let accuracy = table
        .iter()
        .find(|l| l.starts_with("| accuracy |"))
        .unwrap_or_else(|| panic!("{report}"));
    // this run, production, delta, previous, delta: five numbers, the deltas signed.
    let cells: Vec<&str> = accuracy.split('|').map(str::trim).collect();
    assert_eq!(cells.len(), 8, "{accuracy}");
    for delta in [cells[4], cells[6]] {
        assert!(
            delta.starts_with('+') || delta.starts_with('-') || delta.starts_with('±'),
            "{accuracy}"
        );
    }
    assert!(
        !report.contains("| stage."),
        "timings are not model metrics: {report}"
    );
    // The gate table, the validation summary and the drift table.
    assert!(report.contains("### Gates"), "{report}");
    assert!(report.contains("| `accuracy >= 0.6` |"), "{report}");
    assert!(report.contains("✅ pass"), "{report}");
    assert!(
        report.contains("validate (skipped): data/train.csv against schema.yaml: 1200 rows"),
        "the skipped step's record still holds: {report}"
    );
    assert!(report.contains("valid`"), "{report}");
    assert!(
        report
            .contains("features (ran): data/train.csv vs the production model's training profile:")
            && report.contains("0 beyond thresholds, passed"),
        "{report}"
    );
    assert!(
        report
            .contains("### Drift of the training data vs the production model's training profile"),
        "{report}"
    );
    assert!(
        report
            .contains("| feature | effect | threshold | p (adjusted) | mean shift (σ) | verdict |"),
        "{report}"
    );
    assert!(report.contains("**no drift**"), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("| income |") && l.ends_with("| ok |")),
        "{report}"
    );

    // --against production: the production columns only.
    let production = ok(root, &["report", "--against", "production"]);
    assert!(
        metric_table(&production)[0].ends_with("| risk@production v2 | Δ vs risk@production v2 |"),
        "{production}"
    );
    assert!(!production.contains("previous commit"), "{production}");
    // --against COMMIT (a branch name or sha): that commit's run only.
    let against_a = ok(root, &["report", "--against", &a[..10]]);
    assert!(
        metric_table(&against_a)[0]
            .ends_with(&format!("| commit {0} | Δ vs commit {0} |", &a[..12])),
        "{against_a}"
    );
    assert!(!against_a.contains("risk@production"), "{against_a}");
    let unknown = keel(root, &["report", "--against", "no-such-branch"]);
    assert_ne!(unknown.status.code(), Some(0), "{}", text(&unknown));
    assert!(
        util::lossy(&unknown.stderr).contains("no-such-branch"),
        "{}",
        text(&unknown)
    );
    // --run: an older run; production's model came later, so its deltas are to it.
    let older = ok(root, &["report", "--run", &first_run]);
    assert!(older.contains(&format!("run {first_run}")), "{older}");
    assert!(older.contains(&format!("commit {}", &a[..12])), "{older}");

    // HTML: one page, plots as inline SVG, nothing fetched from elsewhere.
    let written = util::command(root)
        .args(["report", "--format", "html", "--output", "out/report.html"])
        .output()
        .expect("run keel");
    assert!(written.status.success(), "{}", text(&written));
    assert!(
        util::lossy(&written.stdout).is_empty(),
        "{}",
        text(&written)
    );
    let page = std::fs::read_to_string(root.join("out/report.html")).expect("the page");
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(
        page.matches("<svg").count() >= 3,
        "curves, histograms, calibration"
    );
    assert!(page.contains("Metric history"), "{page}");
    assert!(page.contains("Feature histograms"), "{page}");
    assert!(page.contains("rect class=\"ref\""), "paired bars: {page}");
    assert!(page.contains("Confusion matrix"), "{page}");
    assert!(page.contains("Calibration"), "{page}");
    assert!(page.contains("Δ vs risk@production v2"), "{page}");
    for external in [
        "src=",
        "href=\"http",
        "href='http",
        "url(",
        "@import",
        "<script",
        "<link",
    ] {
        assert!(!page.contains(external), "{external} in the page");
    }

    // Shifted training data: the checks fail and stop the run before the
    // gates; the report of that run still says what moved.
    ok(
        root,
        &[
            "generate",
            "portfolio",
            "--rows",
            "1200",
            "--seed",
            "5",
            "--covariate-shift",
            "1.5",
            "--out",
            "data/train.csv",
        ],
    );
    let failed = keel(root, &["run"]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let report = ok(root, &["report", "--against", "production"]);
    assert!(report.contains("**gates not recorded**"), "{report}");
    assert!(report.contains("· FAILED ·"), "{report}");
    assert!(
        report.contains("❌ `validate (failed): data/train.csv against schema.yaml: 1200 rows,")
            && report.contains(" violations in "),
        "{report}"
    );
    assert!(
        report.contains("❌ `features (failed):") && report.contains("beyond thresholds, failed"),
        "{report}"
    );
    assert!(report.contains("**drift**"), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("| credit_score |") && l.ends_with("| drift |")),
        "{report}"
    );
}
