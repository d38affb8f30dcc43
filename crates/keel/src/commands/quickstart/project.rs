//! The example project the quickstart creates: Bob's portfolio-risk repository
//! (`examples/ci/`'s keel.yaml and params.yaml, generated data, a git repo).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use keel_learn::generate::{Dataset, GenerateOptions, generate};
use keel_table::Table;

pub const KEEL_YAML: &str = include_str!("../../../../../examples/ci/keel.yaml");
pub const PARAMS_YAML: &str = include_str!("../../../../../examples/ci/params.yaml");

/// The story's target column.
pub const TARGET: &str = "default";

/// Seeded portfolio data; `shift` moves the applicants, `drift` the relation to default.
pub fn portfolio(rows: usize, seed: u64, shift: f64, drift: f64) -> anyhow::Result<Table> {
    Ok(generate(
        Dataset::Portfolio,
        &GenerateOptions {
            rows,
            seed,
            covariate_shift: shift,
            concept_drift: drift,
        },
    )?)
}

/// Creates `dir` (absent or empty) with keel.yaml, params.yaml and the data.
pub fn create(dir: &Path) -> anyhow::Result<()> {
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists and is not empty: pick a new folder (keel quickstart DIR)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join("data"))
        .with_context(|| format!("creating {}", dir.display()))?;
    write(dir, "keel.yaml", KEEL_YAML)?;
    write(dir, "params.yaml", PARAMS_YAML)?;
    write(
        dir,
        ".gitignore",
        "/model/\n/metrics.json\n/logs/\n/reports/\n/keel.db*\n/artifacts/\n",
    )?;
    portfolio(6_000, 1, 0.0, 0.0)?.write_csv(&dir.join("data/train.csv"))?;
    portfolio(2_000, 2, 0.0, 0.0)?.write_csv(&dir.join("data/test.csv"))?;
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// `git init` + a first commit when git is installed; returns whether it worked.
pub fn git_init(dir: &Path) -> bool {
    git(dir, &["init", "-q", "-b", "main"])
}

/// `git add -A && git commit -m MESSAGE` (no-op without git).
pub fn git_commit(dir: &Path, message: &str) -> bool {
    git(dir, &["add", "-A"])
        && git(
            dir,
            &[
                "-c",
                "user.name=Bob",
                "-c",
                "user.email=bob@example.invalid",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                message,
            ],
        )
}

fn git(dir: &Path, args: &[&str]) -> bool {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
