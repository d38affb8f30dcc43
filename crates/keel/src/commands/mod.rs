//! Command-line definition (noun verb, like git and dvc) and dispatch.

mod data;
mod evaluate;
mod gate;
mod generate;
mod init;
mod loadtest;
mod models;
mod quickstart;
mod run;
mod schema;
mod serve;
mod server;
mod train;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// keel: version data, track experiments, gate, register, serve and watch models.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about, propagate_version = true)]
pub struct Cli {
    /// Print only errors (progress bars and narration are off).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run keel's story end to end on generated data in a fresh folder.
    Quickstart(quickstart::QuickstartArgs),
    /// Run the tracking server (MLflow-compatible REST API and artifact proxy).
    Server(server::ServerArgs),
    /// The model registry: list, show, register, promote (gated), rollback, history.
    Models(models::ModelsArgs),
    /// Set up a keel project in this folder (.keel/: config, cache).
    Init(init::InitArgs),
    /// Version data and models next to git: add, status, checkout, push, pull, diff, gc.
    Data(data::DataArgs),
    /// Train a built-in model (logistic, linear, ridge, random-forest, gbdt) on a CSV table.
    Train(train::TrainArgs),
    /// Score a trained model on a CSV table and write the metrics JSON.
    Evaluate(evaluate::EvaluateArgs),
    /// Write seeded example data (portfolio credit risk, retail denim sizes) with drift knobs.
    Generate(generate::GenerateArgs),
    /// Run the pipeline in keel.yaml: out-of-date stages only, record the run, gate, register.
    Run(run::RunArgs),
    /// Evaluate keel.yaml's gates on a pipeline run (table; exit 1 on failure).
    Gate(gate::GateArgs),
    /// Check a CSV or Parquet file against a schema (every violation by column; exit 1 on any).
    Validate(validate::ValidateArgs),
    /// Infer a data file's schema (`keel schema infer DATA > schema.yaml`).
    Schema(schema::SchemaArgs),
    /// Load an HTTP endpoint (open or closed loop) and check latency/error SLOs.
    Loadtest(loadtest::LoadtestArgs),
    /// Serve a model: MLflow scoring + Open Inference Protocol, checks, hot swap, prediction log.
    Serve(Box<serve::ServeArgs>),
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Quickstart(args) => quickstart::run(args, cli.quiet),
        Command::Server(args) => server::run(args),
        Command::Models(args) => models::run(args),
        Command::Init(args) => init::run(args, cli.quiet),
        Command::Data(args) => data::run(args, cli.quiet),
        Command::Train(args) => train::run(args, cli.quiet),
        Command::Evaluate(args) => evaluate::run(args, cli.quiet),
        Command::Generate(args) => generate::run(args, cli.quiet),
        Command::Run(args) => run::run(args, cli.quiet),
        Command::Gate(args) => gate::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Loadtest(args) => loadtest::run(args, cli.quiet),
        Command::Serve(args) => serve::run(*args),
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default level.
pub fn init_tracing(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
