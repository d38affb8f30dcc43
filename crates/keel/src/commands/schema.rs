//! `keel schema infer DATA`: prints the schema of a CSV or Parquet file
//! (types, nullability, min/max, categories, uniqueness) as YAML.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `keel schema`.
#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    #[command(subcommand)]
    pub command: SchemaCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SchemaCommand {
    /// Infer DATA's schema and print it (`keel schema infer data.csv > schema.yaml`).
    Infer {
        /// Data file (CSV with a header row, or Parquet: `.parquet`/`.pq`).
        data: PathBuf,
    },
}

pub fn run(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SchemaCommand::Infer { data } => {
            let schema = keel_validate::infer_path(&data)?;
            print!("{}", schema.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}
