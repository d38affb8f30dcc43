//! `keel generate`: writes the seeded example data of keel's two stories
//! (portfolio credit risk, retail denim sizes), with drift knobs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use keel_learn::generate::{Dataset, GenerateOptions, generate};

/// Arguments of `keel generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Which story.
    #[arg(value_parser = ["portfolio", "retail"])]
    pub dataset: String,
    /// Rows to write.
    #[arg(long, default_value_t = 10_000)]
    pub rows: usize,
    /// Seed of every draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Shift of the feature distributions (0 = reference, ~1 = strong).
    #[arg(long, default_value_t = 0.0)]
    pub covariate_shift: f64,
    /// Change of the feature -> target relation (0 = reference, ~1 = strong).
    #[arg(long, default_value_t = 0.0)]
    pub concept_drift: f64,
    /// CSV file to write.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: GenerateArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let dataset = Dataset::parse(&args.dataset)?;
    let table = generate(
        dataset,
        &GenerateOptions {
            rows: args.rows,
            seed: args.seed,
            covariate_shift: args.covariate_shift,
            concept_drift: args.concept_drift,
        },
    )?;
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    table.write_csv(&args.out)?;
    if !quiet {
        println!(
            "Wrote {} rows of {} data (target column {:?}) to {}",
            table.n_rows(),
            args.dataset,
            dataset.target(),
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
