//! `keel validate DATA --schema FILE`: streams a CSV or Parquet file against
//! a schema and reports every violation by column; exit 1 on violations.

use std::path::PathBuf;
use std::process::ExitCode;

use keel_validate::Schema;

/// Arguments of `keel validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Data file (CSV with a header row, or Parquet: `.parquet`/`.pq`).
    pub data: PathBuf,
    /// Schema file (from `keel schema infer`).
    #[arg(long)]
    pub schema: PathBuf,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let schema = Schema::read(&args.schema)?;
    let report = keel_validate::validate_path(&args.data, &schema)?;
    print!("{}", report.render());
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
