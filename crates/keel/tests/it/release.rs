//! Git as the record of releases: keel run tags what it registers and the
//! alias moves in GTO's format, `keel models promote/rollback` tag their
//! moves, history shows the tags, a checkout alone answers "which commit is
//! risk v1", and `keel metrics diff` / `keel params diff` compare the runs
//! of two commits. A feature branch registers without moving the alias.

use std::path::Path;
use std::process::Command;

use crate::util::{self, text};

const KEEL_YAML: &str = "\
stages:
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
register: {model: risk, path: model, alias: production, on_branch: main}
";

fn commit_params(dir: &Path, n_iter: u32, message: &str) {
    std::fs::write(
        dir.join("params.yaml"),
        format!("train:\n  n_iter: {n_iter}\n"),
    )
    .unwrap();
    util::git(dir, &["add", "params.yaml"]);
    util::git(dir, &["commit", "-qm", message]);
}

#[test]
fn runs_tag_releases_in_gto_format_and_diffs_compare_commits() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    util::git(root, &["init", "-q", "-b", "main"]);
    std::fs::write(root.join(".gitignore"), "model/\nmetrics.json\n.keel/\n").unwrap();
    for (seed, file) in [("1", "data/train.csv"), ("2", "data/test.csv")] {
        util::ok(
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
    std::fs::write(root.join("keel.yaml"), KEEL_YAML).unwrap();
    util::git(root, &["add", "."]);
    util::git(root, &["commit", "-qm", "data and pipeline"]);
    commit_params(root, 10, "10 rounds");

    // v1 on main: the version tag and the first production assignment, on HEAD.
    let first = util::ok(root, &["run"]);
    assert!(
        first.contains("registered risk version 1, @production"),
        "{first}"
    );
    let head = util::git(root, &["rev-parse", "HEAD"]).trim().to_string();
    assert!(
        first.contains(&format!("git tag risk@v1.0.0 on {}", &head[..12])),
        "{first}"
    );
    assert!(first.contains("git tag risk#production#1"), "{first}");
    let tagged = util::git(root, &["rev-list", "-n1", "risk@v1.0.0"]);
    assert_eq!(tagged.trim(), head);
    let annotation = util::git(root, &["tag", "-l", "--format=%(contents)", "risk@v1.0.0"]);
    let annotation: serde_json::Value = serde_json::from_str(annotation.trim()).unwrap();
    assert_eq!(annotation["version"], 1);
    assert_eq!(annotation["passed"], true);
    assert!(
        annotation["run_id"]
            .as_str()
            .is_some_and(|id| id.len() == 32)
    );
    assert!(
        annotation["datasets"]
            .to_string()
            .contains("data/train.csv"),
        "{annotation}"
    );

    // A second commit with another param: v2, the metric and param diffs.
    util::git(root, &["add", "keel.lock"]);
    util::git(root, &["commit", "-qm", "lock"]);
    commit_params(root, 40, "40 rounds");
    let second = util::ok(root, &["run"]);
    assert!(
        second.contains("registered risk version 2, @production"),
        "{second}"
    );
    assert!(second.contains("git tag risk#production#2"), "{second}");
    // The pull-request report shows the deltas vs the previous commit's run.
    let report = std::fs::read_to_string(root.join(".keel/report.md")).unwrap();
    assert!(
        report.contains("### Metrics vs the previous commit"),
        "{report}"
    );
    assert!(
        report.lines().any(|l| l.starts_with("| roc_auc |")),
        "{report}"
    );
    let params = util::ok(root, &["params", "diff", "HEAD~2", "HEAD"]);
    assert!(
        params
            .lines()
            .any(|l| l.starts_with("train.n_iter") && l.contains("10") && l.contains("40")),
        "{params}"
    );
    let metrics = util::ok(root, &["metrics", "diff", "HEAD~2", "HEAD", "--json"]);
    let metrics: serde_json::Value = serde_json::from_str(&metrics).unwrap();
    let changes = metrics["changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["key"] == "roc_auc" && c["change"].as_f64().is_some_and(|d| d != 0.0)),
        "{metrics}"
    );
    let md = util::ok(root, &["metrics", "diff", "HEAD~2", "--md"]);
    assert!(
        md.starts_with("| metric | HEAD~2 | workspace | change |"),
        "{md}"
    );

    // A feature branch registers without moving production.
    util::git(root, &["add", "keel.lock"]);
    util::git(root, &["commit", "-qm", "lock 2"]);
    util::git(root, &["checkout", "-qb", "feature"]);
    commit_params(root, 25, "25 rounds");
    let feature = util::ok(root, &["run"]);
    assert!(feature.contains("registered risk version 3\n"), "{feature}");
    assert!(
        feature.contains("registered without moving @production"),
        "{feature}"
    );
    assert!(feature.contains("git tag risk@v3.0.0"), "{feature}");
    assert!(!feature.contains("risk#production#3"), "{feature}");

    // Promote v3 by hand: the move is tagged on v3's commit; history shows tags.
    let promoted = util::ok(root, &["models", "promote", "risk", "3"]);
    assert!(promoted.contains("git tag risk#production#3"), "{promoted}");
    let history = util::ok(root, &["models", "history", "risk"]);
    for tag in [
        "risk@v1.0.0",
        "risk@v3.0.0",
        "risk#production#1",
        "risk#production#3",
    ] {
        assert!(history.contains(tag), "{tag} missing in:\n{history}");
    }

    // A dirty tree registers untagged and says so.
    commit_params(root, 30, "30 rounds");
    std::fs::write(
        root.join("keel.yaml"),
        KEEL_YAML.replace(", on_branch: main", ""),
    )
    .unwrap();
    let dirty = util::ok(root, &["run"]);
    assert!(
        dirty.contains("uncommitted changes: registered without a release tag"),
        "{dirty}"
    );
    assert!(
        util::git(root, &["tag", "-l", "risk@v4*"])
            .trim()
            .is_empty()
    );

    // A checkout alone answers which commit is risk v1.
    let offline = util::keel(
        root,
        &[
            "models",
            "show",
            "risk@v1",
            "--tracking-uri",
            "http://127.0.0.1:9",
        ],
    );
    assert!(offline.status.success(), "{}", text(&offline));
    let shown = util::lossy(&offline.stdout);
    assert!(shown.contains(&format!("commit:      {head}")), "{shown}");

    // GTO itself reads keel's tags: v3 is the latest, and production is on
    // v3 (its third assignment).
    let Some(gto) = gto() else { return };
    let output = Command::new(&gto)
        .args(["show", "--json"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "gto show: {}",
        util::lossy(&output.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["risk"]["version"], "v3.0.0", "{shown}");
    assert_eq!(shown["risk"]["stage"]["production"], "v3.0.0", "{shown}");
    let history = Command::new(&gto)
        .args(["history", "risk", "--json"])
        .current_dir(root)
        .output()
        .unwrap();
    let history = util::lossy(&history.stdout);
    for version in ["v1.0.0", "v2.0.0", "v3.0.0"] {
        assert!(
            history.contains(version),
            "{version} not in gto history:\n{history}"
        );
    }
}

/// GTO from its pinned venv (`tests/run.sh` prepares it as KEEL_GTO_VENV);
/// under CI=true it must be there.
fn gto() -> Option<std::path::PathBuf> {
    match std::env::var("KEEL_GTO_VENV") {
        Ok(venv) if !venv.is_empty() => Some(Path::new(&venv).join("bin/gto")),
        _ => {
            assert!(
                !util::in_ci(),
                "CI=true but KEEL_GTO_VENV is not set (tests/run.sh prepares it)"
            );
            eprintln!("KEEL_GTO_VENV unset: GTO's reading of the tags not checked");
            None
        }
    }
}
