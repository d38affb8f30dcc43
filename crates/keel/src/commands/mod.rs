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
            (
                "deploy/README.md",
                include_str!("../../../../deploy/README.md"),
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
            out.extend(split_commands(&pending));
            pending.clear();
        }
        out
    }

    /// One shell line's commands: split at `&&`, `;`, `|` and a trailing
    /// `&`, redirections dropped.
    fn split_commands(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        for part in line
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
        out
    }

    /// Every `keel …` command in deploy/k8s's manifests parses with today's
    /// command line: each container's `command` + `args` (the image's
    /// entrypoint is `keel`, so `args` alone are keel's), and the keel
    /// commands of a `sh -c` script (the Indexed Jobs' shard index is
    /// `$JOB_COMPLETION_INDEX`, 0 here). deploy/validate.sh renders the same
    /// files with `kubectl kustomize` and checks them against the
    /// Kubernetes schema.
    #[test]
    fn every_keel_command_in_the_deploy_manifests_parses() {
        use clap::Parser;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/k8s");
        let mut files = Vec::new();
        yaml_files(&root, &mut files);
        assert!(!files.is_empty(), "no manifests under {}", root.display());
        let mut checked = 0;
        let mut failures = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            let node = keel_yaml::parse(&text, file).unwrap_or_else(|e| panic!("{e}"));
            let mut containers = Vec::new();
            containers_in(&node, &mut containers);
            for container in containers {
                for args in keel_invocations(container) {
                    if let Err(error) = super::Cli::try_parse_from(&args) {
                        let file = file.strip_prefix(&root).unwrap_or(file);
                        let command = args.join(" ");
                        failures.push(format!("{}: `{command}`:\n{error}", file.display()));
                    }
                    checked += 1;
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {checked} keel commands in deploy/k8s do not parse:\n{}",
            failures.len(),
            failures.join("\n")
        );
        // server, serve, monitor watch, 2 sharded jobs and the merge.
        assert!(
            checked >= 6,
            "only {checked} keel commands in the manifests"
        );
    }

    fn yaml_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                yaml_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }

    /// Every mapping with an `image` key (a container of a pod template).
    fn containers_in<'a>(
        node: &'a keel_yaml::Node,
        out: &mut Vec<&'a [(keel_yaml::Key, keel_yaml::Node)]>,
    ) {
        match &node.value {
            keel_yaml::Value::Map(entries) => {
                if keel_yaml::get(entries, "image").is_some() {
                    out.push(entries);
                }
                for (_, value) in entries {
                    containers_in(value, out);
                }
            }
            keel_yaml::Value::Seq(items) => items.iter().for_each(|item| containers_in(item, out)),
            _ => {}
        }
    }

    /// The keel command lines a container runs.
    fn keel_invocations(container: &[(keel_yaml::Key, keel_yaml::Node)]) -> Vec<Vec<String>> {
        let strings = |key: &str| -> Option<Vec<String>> {
            let node = keel_yaml::get(container, key)?;
            let items = node.as_strings(std::path::Path::new(key)).unwrap();
            Some(items.into_iter().map(|(_, text)| text).collect())
        };
        let image = keel_yaml::get(container, "image").map(|n| n.scalar_text());
        let args = strings("args").unwrap_or_default();
        let argv: Vec<String> = match strings("command") {
            Some(command) => command.into_iter().chain(args).collect(),
            // The image's entrypoint.
            None if image.as_deref() == Some("keel") => {
                std::iter::once("keel".to_string()).chain(args).collect()
            }
            None => return Vec::new(),
        };
        match argv.first().map(String::as_str) {
            Some("keel") => vec![argv],
            Some("sh" | "bash") if argv.get(1).is_some_and(|a| a == "-c") => {
                let script = argv.get(2).cloned().unwrap_or_default();
                let script = script
                    .replace("${JOB_COMPLETION_INDEX}", "0")
                    .replace("$JOB_COMPLETION_INDEX", "0");
                split_commands(&script)
                    .iter()
                    .filter_map(|command| {
                        let words = words(command);
                        let start = words.iter().position(|w| w == "keel")?;
                        Some(words[start..].to_vec())
                    })
                    .collect()
            }
            _ => Vec::new(),
        }
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
