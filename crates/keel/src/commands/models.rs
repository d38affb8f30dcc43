//! `keel models ...`: the registry from the command line — list, show, register,
//! promote (gated), rollback and history — through keel-client: a keel server
//! (`--tracking-uri http://…`, every change recorded under the user the
//! server authenticated) or the database directly.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use keel_client::{Client, api};
use keel_core::Tag;
use keel_core::promotion::{GateStatus, gate_status};
use keel_learn::import::{ImportedSignature, SignatureHint, inspect_onnx};
use keel_pipeline::release;

use super::client::ClientArgs;

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// What `register` and `import` record on the new version.
#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// Gate results JSON file (`{"passed": bool, "gates": [...]}`) to record on the version.
    #[arg(long)]
    gates: Option<PathBuf>,
    /// The run that produced the model.
    #[arg(long)]
    run_id: Option<String>,
    #[arg(long, default_value = "")]
    description: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List registered models with their aliases and newest version.
    List,
    /// Show a model (NAME) or one version (models:/NAME/VERSION, models:/NAME@ALIAS,
    /// or NAME@vN / NAME@vN.0.0: answered from the release tag when the registry is not reachable).
    Show { model: String },
    /// Register a new version of NAME from SOURCE (an artifact URI or path).
    Register {
        name: String,
        source: String,
        #[command(flatten)]
        version: VersionArgs,
    },
    /// Register an ONNX model trained elsewhere (skl2onnx, onnxmltools,
    /// PyTorch): check its graph, derive its signature, store `model.onnx`
    /// and `signature.json` as the version's artifacts, register the version.
    Import {
        /// The ONNX file.
        model: PathBuf,
        /// Registered model name.
        #[arg(long)]
        name: String,
        /// Feature names, task, classes, target: keel's or MLflow's
        /// signature JSON, or a JSON list of feature names. The files go to
        /// the server's artifact proxy, or under --artifacts-destination
        /// with a database opened directly.
        #[arg(long)]
        signature: Option<PathBuf>,
        #[command(flatten)]
        version: VersionArgs,
    },
    /// Point ALIAS at VERSION, if the version's recorded gates passed.
    Promote {
        name: String,
        #[arg(value_name = "VERSION")]
        number: String,
        #[arg(long, default_value = "production")]
        alias: String,
        /// Promote although gates failed or are missing (needs --reason).
        #[arg(long)]
        force: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Move ALIAS back to its previous holder, from the audit log.
    Rollback {
        name: String,
        #[arg(long, default_value = "production")]
        alias: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The audit log of a model: every version, alias move and stage transition.
    History {
        name: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: ModelsArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    runtime.block_on(async {
        let client = args.client.open(None).await?;
        let destination = args.client.settings(None).artifacts_destination();
        let result = execute(&client, &destination, args.command).await;
        client.close().await;
        result
    })
}

fn when(millis: i64) -> String {
    keel_core::civil::utc_text(millis)
}

fn gates_label(version: &keel_core::ModelVersion) -> String {
    match gate_status(version) {
        GateStatus::Passed => "passed".into(),
        GateStatus::Failed(which) => format!("FAILED ({which})"),
        GateStatus::Missing => "none recorded".into(),
    }
}

async fn execute(
    client: &Client,
    destination: &str,
    command: ModelsCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        ModelsCommand::List => {
            println!("{:<32} {:>7}  aliases", "model", "latest");
            for model in &client.list_registered_models(1000).await? {
                let latest = model
                    .latest_versions
                    .iter()
                    .map(|v| v.version)
                    .max()
                    .unwrap_or(0);
                let aliases: Vec<String> = model
                    .aliases
                    .iter()
                    .map(|(alias, version)| format!("@{alias}={version}"))
                    .collect();
                println!("{:<32} {:>7}  {}", model.name, latest, aliases.join(" "));
            }
        }
        ModelsCommand::Show { model } => {
            if let Some((name, number)) = release::parse_version_tag(&model) {
                return show_release(client, &name, number).await;
            }
            if keel_core::uri::ModelUri::is_model_uri(&model) {
                let version = client.resolve_model_uri(&model).await?.model_version;
                println!("model:       {}", version.name);
                println!("version:     {}", version.version);
                println!("aliases:     {}", version.aliases.join(", "));
                println!("stage:       {}", version.current_stage.as_str());
                println!("source:      {}", version.source);
                println!("run:         {}", version.run_id.as_deref().unwrap_or("-"));
                println!("created:     {}", when(version.creation_timestamp));
                println!("gates:       {}", gates_label(&version));
                if let Some(lineage) = &version.lineage {
                    println!("lineage:     {lineage}");
                }
                for tag in &version.tags {
                    println!("tag:         {}={}", tag.key, tag.value);
                }
            } else {
                let registered = client.get_registered_model(&model).await?;
                println!("model:       {}", registered.name);
                println!("description: {}", registered.description);
                for (alias, version) in &registered.aliases {
                    println!("alias:       @{alias} -> {version}");
                }
                let versions = client
                    .search_model_versions(&format!("name = '{}'", model.replace('\'', "''")), 1000)
                    .await?;
                println!(
                    "\n{:>7}  {:<10} {:<21} gates",
                    "version", "stage", "created"
                );
                for version in &versions {
                    println!(
                        "{:>7}  {:<10} {:<21} {}",
                        version.version,
                        version.current_stage.as_str(),
                        when(version.creation_timestamp),
                        gates_label(version)
                    );
                }
            }
        }
        ModelsCommand::Register {
            name,
            source,
            version,
        } => {
            let request = api::CreateVersion {
                name,
                source,
                ..Default::default()
            };
            let version = register(client, request, version).await?;
            println!("registered {} version {}", version.name, version.version);
        }
        ModelsCommand::Import {
            model,
            name,
            signature,
            version,
        } => {
            let imported = import_onnx(client, destination, &model, signature.as_deref()).await?;
            let signature = &imported.signature;
            let tags = vec![
                Tag::new("keel.import.producer", signature.producer.clone()),
                Tag::new("keel.import.digest", format!("blake3:{}", imported.digest)),
                Tag::new(
                    "keel.import.opsets",
                    signature
                        .opsets
                        .iter()
                        .map(|(domain, version)| format!("{domain}:{version}"))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ];
            let request = api::CreateVersion {
                name,
                source: imported.source.clone(),
                tags,
                signature: Some(serde_json::to_string(signature)?),
                ..Default::default()
            };
            let version = register(client, request, version).await?;
            let task = match signature.task {
                keel_learn::Task::Classification => {
                    format!("classifier of {} class(es)", signature.classes.len())
                }
                keel_learn::Task::Regression => "regressor".to_string(),
            };
            println!(
                "registered {} version {} from {} ({}; {task}; input `{}` [N, {}]; {} node(s){}) -> {}",
                version.name,
                version.version,
                model.display(),
                if signature.producer.is_empty() {
                    "unknown producer"
                } else {
                    &signature.producer
                },
                signature.input_tensor,
                signature.inputs.len(),
                signature.nodes,
                if signature.ml_operators.is_empty() {
                    String::new()
                } else {
                    format!(", ai.onnx.ml: {}", signature.ml_operators.join(" "))
                },
                imported.source
            );
        }
        ModelsCommand::Promote {
            name,
            number,
            alias,
            force,
            reason,
        } => {
            // The gate check and the alias move happen in one transaction
            // in the store (on the server, with a server).
            let entry = client
                .promote(api::Promote {
                    name: name.clone(),
                    version: number.clone(),
                    alias: alias.clone(),
                    force,
                    reason,
                    cause: String::new(),
                })
                .await?;
            match entry.from_version {
                Some(from) => println!("{name}@{alias}: version {from} -> {number}"),
                None => println!("{name}@{alias}: -> version {number}"),
            }
            tag_alias_move(client, &entry).await;
        }
        ModelsCommand::Rollback {
            name,
            alias,
            reason,
        } => {
            let entry = client
                .rollback(api::Rollback {
                    name: name.clone(),
                    alias: alias.clone(),
                    reason,
                    cause: String::new(),
                })
                .await?;
            println!(
                "{name}@{alias}: rolled back from version {} to {}",
                entry
                    .from_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                entry
                    .to_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into())
            );
            tag_alias_move(client, &entry).await;
        }
        ModelsCommand::History { name, limit, json } => {
            let entries = client.audit(Some(&name), limit).await?;
            if entries.is_empty() {
                bail!("no history for model '{name}'");
            }
            if json {
                for entry in &entries {
                    println!("{}", serde_json::to_string(entry)?);
                }
            } else {
                let tags = release_tags(&name, &entries);
                println!(
                    "{:<21} {:<17} {:<22} {:>5} {:>5}  {:<10} {:<30} reason / cause",
                    "when", "action", "alias/stage", "from", "to", "user", "git tag and commit"
                );
                for (entry, tag) in entries.iter().zip(&tags) {
                    let opt =
                        |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
                    let why = [entry.reason.as_str(), entry.cause.as_str()]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" / ");
                    println!(
                        "{:<21} {:<17} {:<22} {:>5} {:>5}  {:<10} {:<30} {}",
                        when(entry.timestamp),
                        entry.action,
                        entry.target,
                        opt(entry.from_version),
                        opt(entry.to_version),
                        entry.user,
                        tag.as_deref().unwrap_or("-"),
                        why
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `keel models show NAME@vN`: the registry's version, or, when the registry
/// cannot be reached, what the release tag in this checkout says.
async fn show_release(client: &Client, name: &str, number: i64) -> anyhow::Result<ExitCode> {
    let tag = release::version_tag(name, number);
    let repo = release::Repo::discover(Path::new("."));
    let tagged = repo.as_ref().and_then(|repo| repo.tag_commit(&tag));
    match client.get_model_version(name, number).await {
        Ok(version) => {
            println!("model:       {}", version.name);
            println!("version:     {}", version.version);
            println!("aliases:     {}", version.aliases.join(", "));
            println!("source:      {}", version.source);
            println!("run:         {}", version.run_id.as_deref().unwrap_or("-"));
            println!("gates:       {}", gates_label(&version));
            println!(
                "git tag:     {}",
                tagged
                    .as_deref()
                    .map_or("-".to_string(), |commit| format!("{tag} -> {commit}"))
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) if error.code == keel_core::ErrorCode::ResourceDoesNotExist => Err(error.into()),
        Err(error) => {
            let (Some(repo), Some(commit)) = (repo, tagged) else {
                return Err(anyhow::Error::from(error).context(format!(
                    "the registry is not reachable and no git tag {tag} is here"
                )));
            };
            eprintln!("the registry is not reachable ({error}); from git tag {tag}:");
            println!("model:       {name}");
            println!("version:     {number}");
            println!("commit:      {commit}");
            if let Some(annotation) = repo.annotation(&tag) {
                println!("annotation:  {annotation}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// After an alias move in a git checkout: the tag `NAME#ALIAS#K` on the
/// commit the new holder was trained from (GTO's assignment tag). Says why
/// when there is none; never fails the move, which is done.
async fn tag_alias_move(client: &Client, entry: &keel_core::AuditEntry) {
    let Some(repo) = release::Repo::discover(Path::new(".")) else {
        return;
    };
    let Some(version) = entry.to_version else {
        return;
    };
    let commit = async {
        let version = client.get_model_version(&entry.name, version).await.ok()?;
        let run = client.get_run(version.run_id.as_deref()?).await.ok()?;
        run.git_commit().map(str::to_string)
    }
    .await;
    let Some(commit) = commit.filter(|commit| repo.has_commit(commit)) else {
        println!("  no git tag: the commit version {version} was trained from is not known here");
        return;
    };
    let annotation = serde_json::json!({
        "model": entry.name,
        "alias": entry.target,
        "version": version,
        "from_version": entry.from_version,
        "action": entry.action,
        "user": entry.user,
        "reason": entry.reason,
    });
    let tagged = repo
        .next_alias_tag(&entry.name, &entry.target)
        .and_then(|tag| {
            repo.tag(&tag, &commit, &annotation.to_string())?;
            Ok(tag)
        });
    match tagged {
        Ok(tag) => println!("  git tag {tag} on {}", &commit[..commit.len().min(12)]),
        Err(error) => println!("  no git tag: {error}"),
    }
}

/// The release tag and its commit for each audit entry (newest first, as listed), where this
/// checkout has one: `NAME@vN` for a registration, and for the k-th move of
/// an alias the tag `NAME#ALIAS#k` whose annotation names the same version.
fn release_tags(name: &str, entries: &[keel_core::AuditEntry]) -> Vec<Option<String>> {
    let Some(repo) = release::Repo::discover(Path::new(".")) else {
        return vec![None; entries.len()];
    };
    let mut moves: std::collections::HashMap<&str, usize> = Default::default();
    let mut out: Vec<Option<String>> = entries
        .iter()
        .rev()
        .map(|entry| match (entry.action.as_str(), entry.to_version) {
            ("create_version", Some(version)) => {
                let tag = release::version_tag(name, version);
                repo.tag_commit(&tag)
                    .map(|commit| format!("{tag} {}", &commit[..commit.len().min(7)]))
            }
            ("set_alias" | "rollback", Some(version)) => {
                let k = moves.entry(entry.target.as_str()).or_default();
                *k += 1;
                let tag = release::alias_tag(name, &entry.target, *k);
                let annotated = repo
                    .annotation(&tag)
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                    .is_some_and(|json| json["version"].as_i64() == Some(version));
                let commit = repo.tag_commit(&tag).filter(|_| annotated)?;
                Some(format!("{tag} {}", &commit[..commit.len().min(7)]))
            }
            _ => None,
        })
        .collect();
    out.reverse();
    out
}

/// Registers a version (the one path `register` and `import` share): reads
/// and checks the gate results file, records run and description; the actor
/// is the caller (the server's authenticated user, or `$USER` directly).
async fn register(
    client: &Client,
    mut request: api::CreateVersion,
    version: VersionArgs,
) -> anyhow::Result<keel_core::ModelVersion> {
    if let Some(path) = &version.gates {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading gate results {}", path.display()))?;
        serde_json::from_str::<serde_json::Value>(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        request.gate_results = Some(text);
    }
    request.run_id = version.run_id;
    request.description = Some(version.description);
    Ok(client.create_model_version(request).await?)
}

/// An ONNX file checked and stored as a version's artifacts.
struct Imported {
    signature: ImportedSignature,
    /// BLAKE3 of the ONNX bytes.
    digest: String,
    /// URI of the folder holding `model.onnx` and `signature.json`.
    source: String,
}

/// Checks the ONNX file, derives its signature and stores both under
/// `models/<blake3 of the ONNX>/` in the artifact store, so importing the
/// same file twice stores it once.
async fn import_onnx(
    client: &Client,
    destination: &str,
    model: &Path,
    signature: Option<&Path>,
) -> anyhow::Result<Imported> {
    let bytes = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    let hint = signature.map(SignatureHint::read).transpose()?;
    let signature = inspect_onnx(&bytes, model, hint.as_ref())?;
    let digest = keel_data::Digest::of_bytes(&bytes).to_hex();
    // Under the artifact root the server's proxy serves (or, directly, under
    // the artifacts destination it would serve).
    let root = format!("mlflow-artifacts:/models/{digest}");
    client
        .put_bytes(&root, keel_learn::onnx::ONNX_FILE, bytes.into())
        .await?;
    client
        .put_bytes(
            &root,
            keel_learn::model::SIGNATURE_FILE,
            serde_json::to_vec_pretty(&signature)?.into(),
        )
        .await?;
    let source = match client {
        Client::Remote(_) => root,
        Client::Direct(_) => format!(
            "{}/models/{digest}",
            keel_artifacts::ArtifactStore::open(destination)?.uri()
        ),
    };
    Ok(Imported {
        source,
        signature,
        digest,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::when(0), "1970-01-01 00:00:00Z");
        assert_eq!(super::when(1_795_797_963_082), "2026-11-27 16:46:03Z");
    }
}
