//! The Level 2 loop's action: when the drift policy in keel.yaml fires
//! (`monitor.on_drift: {action: retrain, ...}`), take the recent labelled
//! traffic (prediction log joined with feedback), make it the pipeline's new
//! training and test data (a new data version, `keel data add`), and run the
//! pipeline with the drift verdict as its cause. The pipeline's gates decide
//! whether the new version is registered and takes the alias; the registry's
//! audit log records the verdict as the cause of the move.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use keel_learn::train_test_split;
use keel_monitor::config::{OnDrift, Promote};
use keel_table::Table;

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
    policy: &OnDrift,
    labelled: &Table,
    cause: &str,
    tracking_uri: Option<&str>,
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
        let mut command = Command::new(&exe);
        command.args(args).current_dir(root);
        // The pipeline records where the watcher was told the metadata is.
        if let Some(uri) = tracking_uri {
            command.env("KEEL_TRACKING_URI", uri);
        }
        let status = command
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
    if policy.promote == Promote::Approval {
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
