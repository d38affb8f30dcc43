//! `keel init`: makes the current (or given) folder a keel project: `.keel/`
//! with its config, object cache and `.gitignore`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `keel init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Folder to set up (default: the current one).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

pub fn run(args: InitArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let project = keel_data::Project::init(&args.dir)
        .with_context(|| format!("keel init in {}", args.dir.display()))?;
    if !quiet {
        println!("Initialized keel project in {}", project.root().display());
        if !project.root().join(".git").exists() && !in_git_work_tree(project.root()) {
            println!(
                "note: not a git repository; run `git init` so metafiles can be versioned (needed by `keel data diff` and `gc --rev`)"
            );
        }
        println!("Commit .keel/config and .keel/.gitignore; track data with `keel data add PATH`.");
    }
    Ok(ExitCode::SUCCESS)
}

fn in_git_work_tree(dir: &std::path::Path) -> bool {
    std::process::Command::new("git")
        .args(["rev-parse", "--is-inside-work-tree"])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
