//! End-to-end tests of `keel run`, `keel gate`, `keel validate` and
//! `keel schema infer`, driving the real binary on a small example project
//! in a temporary folder (seeded data from `keel generate`).

use std::path::Path;

use crate::util::{keel, ok, text};

fn stage_lines<'a>(stdout: &'a str, verdict: &str) -> Vec<&'a str> {
    let mut stages: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains(verdict))
        .filter_map(|line| line.strip_prefix('[')?.split(']').next())
        .collect();
    stages.sort_unstable();
    stages
}

const KEEL_YAML: &str = "\
stages:
  validate:
    validate: {data: data/train.csv, schema: schema.yaml}
  train:
    cmd: keel train --algo gbdt --data data/train.csv --target default --out model --test-fraction 0 --seed ${train.seed} --n-iter ${train.n_iter} --max-leaves ${train.max_leaves}
    deps: [data/train.csv]
    outs: [model]
  evaluate:
    cmd: keel evaluate model data/test.csv --output metrics.json
    deps: [model, data/test.csv]
    metrics: [metrics.json]
gates:
  - accuracy >= 0.6
  - roc_auc >= production.roc_auc - 0.02
register:
  model: risk
  path: model
  alias: production
";

fn params(n_iter: u32, max_leaves: u32) -> String {
    format!("train:\n  seed: 3\n  n_iter: {n_iter}\n  max_leaves: {max_leaves}\n")
}

fn production_version(root: &Path, store: &str) -> String {
    let shown = ok(
        root,
        &[
            "models",
            "show",
            "models:/risk@production",
            "--backend-store-uri",
            store,
        ],
    );
    shown
        .lines()
        .find_map(|line| line.strip_prefix("version:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn latest_version(root: &Path, store: &str) -> String {
    let listed = ok(root, &["models", "list", "--backend-store-uri", store]);
    listed
        .lines()
        .find(|line| line.starts_with("risk "))
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn pipeline_runs_skips_reruns_gates_and_registers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    for (seed, file) in [("1", "data/train.csv"), ("2", "data/test.csv")] {
        ok(
            root,
            &[
                "generate",
                "portfolio",
                "--rows",
                "2000",
                "--seed",
                seed,
                "--out",
                file,
            ],
        );
    }
    let schema = ok(root, &["schema", "infer", "data/train.csv"]);
    assert!(schema.contains("name: \"default\""), "{schema}");
    std::fs::write(root.join("schema.yaml"), &schema).unwrap();
    std::fs::write(root.join("keel.yaml"), KEEL_YAML).unwrap();
    std::fs::write(root.join("params.yaml"), params(40, 15)).unwrap();
    let store = format!("sqlite:///{}", root.join(".keel/keel.db").display());

    // First run: validate -> train -> evaluate -> gates -> register (+ alias).
    let first = ok(root, &["run"]);
    assert_eq!(
        stage_lines(&first, "] done in"),
        ["evaluate", "train", "validate"],
        "{first}"
    );
    assert!(
        first.contains("[validate] data/train.csv: 2000 rows"),
        "{first}"
    );
    assert!(
        first.contains("[train] Trained gbdt"),
        "stage output is streamed with a prefix:\n{first}"
    );
    assert!(first.contains("no production model yet"), "{first}");
    assert!(
        first.contains("registered risk version 1, @production"),
        "{first}"
    );
    assert_eq!(production_version(root, &store), "1");
    let lock = std::fs::read_to_string(root.join("keel.lock")).unwrap();
    assert!(lock.contains("\"train.n_iter\": \"40\""), "{lock}");
    let report = std::fs::read_to_string(root.join(".keel/report.md")).unwrap();
    assert!(report.contains("| train | ran |"), "{report}");
    assert!(report.contains("`accuracy >= 0.6`"), "{report}");

    // Nothing changed: every stage is skipped, the lock is byte-identical, nothing new is registered.
    let second = ok(root, &["run"]);
    assert_eq!(
        stage_lines(&second, "up to date, skipped"),
        ["evaluate", "train", "validate"],
        "{second}"
    );
    assert!(stage_lines(&second, "] done in").is_empty(), "{second}");
    assert_eq!(
        std::fs::read_to_string(root.join("keel.lock")).unwrap(),
        lock
    );
    assert!(
        second.contains("already registered as risk version 1"),
        "{second}"
    );
    assert_eq!(latest_version(root, &store), "1");

    // One param changes: train and evaluate run again, validate does not.
    std::fs::write(root.join("params.yaml"), params(60, 15)).unwrap();
    let third = ok(root, &["run"]);
    assert_eq!(
        stage_lines(&third, "] done in"),
        ["evaluate", "train"],
        "{third}"
    );
    assert_eq!(
        stage_lines(&third, "up to date, skipped"),
        ["validate"],
        "{third}"
    );
    assert!(
        third.contains("params changed: train.n_iter 40 -> 60"),
        "{third}"
    );
    assert_eq!(production_version(root, &store), "2");

    // A deliberately worse model (one stump) fails the production comparison:
    // the run fails, nothing is registered, the alias stays.
    std::fs::write(root.join("params.yaml"), params(1, 2)).unwrap();
    let worse = keel(root, &["run"]);
    assert_eq!(worse.status.code(), Some(1), "{}", text(&worse));
    let out = String::from_utf8_lossy(&worse.stdout).into_owned();
    assert!(out.contains("FAIL"), "{out}");
    assert!(out.contains("risk not registered, no alias moved"), "{out}");
    assert_eq!(latest_version(root, &store), "2");
    assert_eq!(production_version(root, &store), "2");

    // `keel gate` reads the newest run from the store: same verdict, exit 1, a table.
    let gate = keel(root, &["gate"]);
    assert_eq!(gate.status.code(), Some(1), "{}", text(&gate));
    let table = String::from_utf8_lossy(&gate.stdout).into_owned();
    assert!(
        table.contains("roc_auc >= production.roc_auc - 0.02"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("roc_auc >=") && line.ends_with("FAIL")),
        "{table}"
    );

    // Promotion of a failed-gate version is refused by the registry, so registering it by hand
    // and promoting it without --force fails too (the gate results travel with the version).
    let history = ok(
        root,
        &["models", "history", "risk", "--backend-store-uri", &store],
    );
    assert!(history.contains("create_version"), "{history}");
}

#[test]
fn failures_stop_dependants_and_bad_files_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::write(root.join("params.yaml"), "a: 1\n").unwrap();
    std::fs::write(
        root.join("keel.yaml"),
        "stages:\n  fail:\n    cmd: echo about to fail && exit 3\n    outs: [x.txt]\n  after:\n    cmd: cat x.txt > y.txt\n    deps: [x.txt]\n    outs: [y.txt]\n  other:\n    cmd: echo ${a} > z.txt\n    outs: [z.txt]\n  lazy:\n    cmd: echo no output\n    outs: [never.txt]\n",
    )
    .unwrap();
    let output = keel(root, &["run", "--no-track"]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    let all = text(&output);
    assert!(all.contains("[fail] about to fail"), "{all}");
    assert!(
        all.contains("[after] not run: upstream stage `fail` failed"),
        "{all}"
    );
    assert!(
        all.contains("[lazy] failed: did not write its declared output `never.txt`"),
        "{all}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("z.txt")).unwrap().trim(),
        "1"
    );
    assert!(!root.join("y.txt").exists());

    // Invalid keel.yaml: the error names the file, line and column, and nothing runs.
    std::fs::write(
        root.join("keel.yaml"),
        "stages:\n  a:\n    cmd: touch ran.txt\n    deps: [missing.csv]\n",
    )
    .unwrap();
    let output = keel(root, &["run", "--no-track"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("keel.yaml:4:12: stage `a`: input `missing.csv` does not exist"),
        "{stderr}"
    );
    assert!(!root.join("ran.txt").exists());
    std::fs::write(
        root.join("keel.yaml"),
        "stages:\n  a:\n    cmd: [unclosed\n",
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&keel(root, &["run", "--no-track"]).stderr).into_owned();
    assert!(stderr.contains("keel.yaml:"), "{stderr}");

    // A metrics file that is not JSON fails its gate with a message naming it.
    std::fs::write(
        root.join("keel.yaml"),
        "stages:\n  score:\n    cmd: echo '{oops' > m.json\n    metrics: [m.json]\ngates:\n  - accuracy >= 0.5\n",
    )
    .unwrap();
    let output = keel(root, &["run", "--no-track"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.contains("metrics file m.json is not valid JSON"),
        "{stdout}"
    );
}

#[test]
fn schema_infer_and_validate_report_violations_by_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    ok(
        root,
        &[
            "generate",
            "portfolio",
            "--rows",
            "500",
            "--seed",
            "4",
            "--out",
            "train.csv",
        ],
    );
    let schema = ok(root, &["schema", "infer", "train.csv"]);
    std::fs::write(root.join("schema.yaml"), &schema).unwrap();
    let clean = ok(root, &["validate", "train.csv", "--schema", "schema.yaml"]);
    assert!(
        clean.contains("500 rows") && clean.contains("valid"),
        "{clean}"
    );

    // Break one column: blank out the target in two rows.
    let data = std::fs::read_to_string(root.join("train.csv")).unwrap();
    let header: Vec<&str> = data.lines().next().unwrap().split(',').collect();
    let target = header.iter().position(|h| *h == "default").unwrap();
    let broken: Vec<String> = data
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i == 3 || i == 7 {
                let mut cells: Vec<&str> = line.split(',').collect();
                cells[target] = "";
                cells.join(",")
            } else {
                line.to_string()
            }
        })
        .collect();
    std::fs::write(root.join("bad.csv"), broken.join("\n") + "\n").unwrap();
    let output = keel(root, &["validate", "bad.csv", "--schema", "schema.yaml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains("default: 2 x null (column is not nullable); rows 3, 7"),
        "{report}"
    );
}

#[test]
fn feature_check_compares_new_training_data_with_the_production_profile() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    ok(
        root,
        &[
            "generate",
            "portfolio",
            "--rows",
            "1500",
            "--seed",
            "1",
            "--out",
            "data/train.csv",
        ],
    );
    std::fs::write(root.join("params.yaml"), "train:\n  n_iter: 10\n").unwrap();
    std::fs::write(
        root.join("keel.yaml"),
        "\
stages:
  features:
    feature_check:
      data: data/train.csv
      label: default
      thresholds: {max_mean_shift: 0.3, max_correlation_change: 0.3}
  train:
    cmd: keel train --algo gbdt --data data/train.csv --target default --out model --test-fraction 0 --n-iter ${train.n_iter}
    deps: [data/train.csv]
    outs: [model]
  evaluate:
    cmd: keel evaluate model data/train.csv --output metrics.json
    deps: [model, data/train.csv]
    metrics: [metrics.json]
gates:
  - accuracy >= 0.5
register: {model: risk, path: model, alias: production}
",
    )
    .unwrap();
    // No production model yet: nothing to compare with; the version stores the data's profile.
    let first = ok(root, &["run"]);
    assert!(first.contains("[features] no production model"), "{first}");
    assert!(first.contains("registered risk version 1"), "{first}");
    // Same data against production's stored profile: passes, nothing moved.
    let second = ok(root, &["run"]);
    assert!(
        second.contains("feature checks compare with the training profile of risk@production v1"),
        "{second}"
    );
    assert!(second.contains("0 moved beyond thresholds"), "{second}");
    assert_eq!(
        stage_lines(&second, "up to date, skipped"),
        ["evaluate", "train"],
        "{second}"
    );
    // Shifted training data: the check names what moved, and training does not run.
    ok(
        root,
        &[
            "generate",
            "portfolio",
            "--rows",
            "1500",
            "--seed",
            "2",
            "--covariate-shift",
            "1.5",
            "--out",
            "data/train.csv",
        ],
    );
    let shifted = keel(root, &["run"]);
    assert_eq!(shifted.status.code(), Some(1), "{}", text(&shifted));
    let out = String::from_utf8_lossy(&shifted.stdout).into_owned();
    assert!(!out.contains("0 moved beyond thresholds"), "{out}");
    assert!(
        out.contains("moved beyond thresholds") && out.contains("mean moved"),
        "{out}"
    );
    assert!(
        text(&shifted).contains("[train] not run: upstream stage `features` failed"),
        "{}",
        text(&shifted)
    );
}
