//! The Level 2 loop's action: when the drift policy in keel.yaml fires
//! (`monitor.on_drift: {action: retrain, ...}`), take the recent labelled
//! traffic (prediction log joined with feedback), make it the pipeline's new
//! training and test data (a new data version, `keel data add`), and run the
//! pipeline with the drift verdict as its cause. The pipeline's gates decide
//! whether the new version is registered and takes the alias; the registry's
//! audit log records the verdict as the cause of the move.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use keel_learn::train_test_split;
use keel_table::Table;

/// `monitor.on_drift` of keel.yaml.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Pipeline training data the labelled traffic replaces.
    pub train: PathBuf,
    /// Pipeline test data (the held-out part of the labelled traffic).
    pub test: PathBuf,
    /// Share of the labelled rows held out as test data.
    pub test_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// Fewest labelled rows worth retraining on.
    pub min_rows: usize,
    /// `true`: a passing version takes the alias at once; `false`: it waits for approval.
    pub auto_promote: bool,
    /// Quiet time after an action, in ms.
    pub cooldown_ms: i64,
}

impl Policy {
    /// Reads `on_drift`; `None` unless its action is `retrain`.
    pub fn parse(on_drift: &serde_yaml_ng::Value) -> anyhow::Result<Option<Policy>> {
        let text = |key: &str| on_drift.get(key).and_then(|v| v.as_str());
        match text("action") {
            Some("retrain") => {}
            Some("alert") | None => return Ok(None),
            Some(other) => {
                bail!("keel.yaml monitor.on_drift.action: {other:?} (expected retrain or alert)")
            }
        }
        let promote = text("promote").unwrap_or("auto");
        let auto_promote = match promote {
            "auto" => true,
            "approval" => false,
            other => {
                bail!("keel.yaml monitor.on_drift.promote: {other:?} (expected auto or approval)")
            }
        };
        let cooldown_ms = match text("cooldown") {
            Some(text) => keel_monitor::window::parse_duration(text)
                .with_context(|| format!("keel.yaml monitor.on_drift.cooldown: {text:?}"))?,
            None => 0,
        };
        Ok(Some(Policy {
            train: text("train").unwrap_or("data/train.csv").into(),
            test: text("test").unwrap_or("data/test.csv").into(),
            test_fraction: on_drift
                .get("test_fraction")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.25),
            seed: on_drift.get("seed").and_then(|v| v.as_u64()).unwrap_or(0),
            min_rows: on_drift
                .get("min_rows")
                .and_then(|v| v.as_u64())
                .unwrap_or(200) as usize,
            auto_promote,
            cooldown_ms,
        }))
    }
}

/// What one retraining did.
#[derive(Debug)]
pub struct Outcome {
    /// Labelled rows used (train + test).
    pub rows: usize,
    /// Exit code of `keel run` (0: gates passed), `None` when skipped.
    pub pipeline_exit: Option<i32>,
    /// Why nothing ran, when skipped.
    pub skipped: Option<String>,
}

/// Retrains `model` of the project at `root` on its labelled traffic since
/// `since_ms`; `cause` (the drift verdict) goes to the registry's audit log.
pub fn execute(
    root: &Path,
    policy: &Policy,
    labelled: &Table,
    cause: &str,
    quiet: bool,
) -> anyhow::Result<Outcome> {
    let rows = labelled.n_rows();
    if rows < policy.min_rows {
        return Ok(Outcome {
            rows,
            pipeline_exit: None,
            skipped: Some(format!(
                "{rows} labelled row(s) in the window, fewer than on_drift.min_rows = {}",
                policy.min_rows
            )),
        });
    }
    let (train_rows, test_rows) = train_test_split(rows, policy.test_fraction, policy.seed)?;
    write_table(
        &root.join(&policy.train),
        &labelled.select_rows(&train_rows),
    )?;
    write_table(&root.join(&policy.test), &labelled.select_rows(&test_rows))?;

    let exe = std::env::current_exe().context("locating the keel binary")?;
    let keel = |args: &[&str]| -> anyhow::Result<i32> {
        let status = Command::new(&exe)
            .args(args)
            .current_dir(root)
            .status()
            .with_context(|| format!("running keel {}", args.join(" ")))?;
        Ok(status.code().unwrap_or(-1))
    };
    let train = policy.train.display().to_string();
    let test = policy.test.display().to_string();
    let mut add = vec!["data", "add", &train, &test];
    let mut run = vec!["run", "--cause", cause];
    if quiet {
        add.push("--quiet");
        run.push("--quiet");
    }
    if keel(&add)? != 0 {
        bail!("keel data add {train} {test} failed");
    }
    if !policy.auto_promote {
        run.push("--no-alias");
    }
    let code = keel(&run)?;
    Ok(Outcome {
        rows,
        pipeline_exit: Some(code),
        skipped: None,
    })
}

/// Writes `table` as CSV; `write_csv` replaces the file atomically, so a
/// workspace copy linked from keel's cache is replaced, never written through.
fn write_table(path: &Path, table: &Table) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    table
        .write_csv(path)
        .with_context(|| format!("replacing {} with the labelled traffic", path.display()))
}
