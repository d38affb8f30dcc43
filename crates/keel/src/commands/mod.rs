//! Command-line definition (noun verb, like git and dvc) and dispatch.

mod client;
mod data;
mod diff;
mod evaluate;
mod gate;
mod generate;
mod init;
mod loadtest;
mod model_files;
mod models;
mod monitor;
mod predict;
mod quickstart;
mod report;
mod retrain;
mod run;
mod schema;
mod serve;
mod server;
mod tokens;
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
    /// Access tokens for machines on a `--app-name basic-auth` server: create, list, revoke.
    Tokens(tokens::TokensArgs),
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
    /// Load an HTTP endpoint (open or closed loop) and check latency/error SLOs.
    Loadtest(loadtest::LoadtestArgs),
    /// Serve a model: MLflow scoring + Open Inference Protocol, checks, hot swap, prediction log.
    Serve(Box<serve::ServeArgs>),
    /// Run the pipeline in keel.yaml: out-of-date stages only, record the run, gate, register.
    Run(run::RunArgs),
    /// Evaluate keel.yaml's gates on a pipeline run (table; exit 1 on failure).
    Gate(gate::GateArgs),
    /// Report on a pipeline run for CI (Markdown or one HTML page): metric deltas vs
    /// production and the previous commit, gates, validation, drift of the training data.
    Report(report::ReportArgs),
    /// Check a CSV or Parquet file against a schema (every violation by column; exit 1 on any).
    Validate(validate::ValidateArgs),
    /// Infer a data file's schema (`keel schema infer DATA > schema.yaml`).
    Schema(schema::SchemaArgs),
    /// Monitor data and models: profile, drift/quality report, watch a prediction log.
    Monitor(monitor::MonitorArgs),
    /// Score CSV/Parquet files (or one shard of them) into Parquet, through the serving contract.
    Predict(Box<predict::PredictArgs>),
    /// Metrics of the pipeline runs of two commits: `keel metrics diff [A] [B]`.
    Metrics(diff::DiffArgs),
    /// Params of the pipeline runs of two commits: `keel params diff [A] [B]`.
    Params(diff::DiffArgs),
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Quickstart(args) => quickstart::run(args, cli.quiet),
        Command::Server(args) => server::run(args),
        Command::Models(args) => models::run(args),
        Command::Tokens(args) => tokens::run(args),
        Command::Init(args) => init::run(args, cli.quiet),
        Command::Data(args) => data::run(args, cli.quiet),
        Command::Train(args) => train::run(args, cli.quiet),
        Command::Evaluate(args) => evaluate::run(args, cli.quiet),
        Command::Generate(args) => generate::run(args, cli.quiet),
        Command::Loadtest(args) => loadtest::run(args, cli.quiet),
        Command::Serve(args) => serve::run(*args),
        Command::Run(args) => run::run(args, cli.quiet),
        Command::Gate(args) => gate::run(args),
        Command::Report(args) => report::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Monitor(args) => monitor::run(args, cli.quiet),
        Command::Predict(args) => predict::run(*args, cli.quiet),
        Command::Metrics(args) => diff::run(args, diff::Kind::Metrics),
        Command::Params(args) => diff::run(args, diff::Kind::Params),
    }
}

/// Writes `value` as pretty JSON to `path`, atomically (keel-fs).
pub(crate) fn write_json(
    path: &std::path::Path,
    value: &impl serde::Serialize,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let bytes = serde_json::to_vec_pretty(value)?;
    keel_fs::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
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

    /// Every `keel ...` command in the README's shell blocks (and in
    /// examples/ci) parses with today's command line, so a renamed command or
    /// flag fails here instead of rotting in the docs. The quickstart test and
    /// the subsystems' end-to-end tests run the same commands for real.
    #[test]
    fn every_keel_command_in_the_docs_parses() {
        use clap::Parser;
        let docs = [
            ("README.md", include_str!("../../../../README.md")),
            (
                "examples/ci/README.md",
                include_str!("../../../../examples/ci/README.md"),
            ),
        ];
        let mut checked = 0;
        for (file, text) in docs {
            for command in shell_commands(text) {
                let words = words(&command);
                let args: Vec<String> = match words.iter().position(|w| w == "keel") {
                    Some(start) => words[start..].to_vec(),
                    None => match words.iter().position(|w| w == "--") {
                        Some(dashes) if words.first().is_some_and(|w| w == "cargo") => {
                            std::iter::once("keel".to_string())
                                .chain(words[dashes + 1..].iter().cloned())
                                .collect()
                        }
                        _ => continue,
                    },
                };
                if let Err(error) = super::Cli::try_parse_from(&args) {
                    panic!("{file}: `{command}` does not parse:\n{error}");
                }
                checked += 1;
            }
        }
        assert!(
            checked >= 20,
            "only {checked} keel commands found in the docs"
        );
    }

    /// The commands of ```sh blocks: continuation lines joined, comments cut,
    /// split at `&&`, `;`, `|` and a trailing `&`, redirections dropped.
    fn shell_commands(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut in_block = false;
        let mut pending = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with("```") {
                in_block = trimmed == "```sh";
                continue;
            }
            if !in_block {
                continue;
            }
            let code = match trimmed.find(" #") {
                Some(at) => &trimmed[..at],
                None if trimmed.starts_with('#') => "",
                None => trimmed,
            };
            if let Some(head) = code.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(code);
            for part in pending
                .split("&&")
                .flat_map(|p| p.split(';'))
                .flat_map(|p| p.split('|'))
            {
                let part = part.trim().trim_end_matches('&').trim();
                // Redirections are the shell's, not keel's.
                let part = [" > ", " >> ", " 2> ", " < "]
                    .iter()
                    .filter_map(|r| part.find(r))
                    .min()
                    .map_or(part, |at| &part[..at]);
                if !part.is_empty() {
                    out.push(part.to_string());
                }
            }
            pending.clear();
        }
        out
    }

    /// Shell words with single and double quotes (no expansion: `$VAR` stays).
    fn words(command: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut any = false;
        for c in command.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.push(c),
                (None, '"' | '\'') => {
                    quote = Some(c);
                    any = true;
                }
                (None, c) if c.is_whitespace() => {
                    if any || !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                    any = false;
                }
                (None, c) => word.push(c),
            }
        }
        if any || !word.is_empty() {
            out.push(word);
        }
        out
    }
}
