//! `keel models ...`: the registry from the command line — list, show, register,
//! promote (gated), rollback and history. Talks to the metadata store directly
//! (`--backend-store-uri`), the same database a `keel server` serves.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use keel_artifacts::ArtifactStore;
use keel_core::Tag;
use keel_core::promotion::{GateStatus, check_promotion, gate_status};
use keel_learn::import::{ImportedSignature, SignatureHint, inspect_onnx};
use keel_store::{Actor, CreateModelVersion, Store, StoreConfig, parse_version};

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// Metadata store: `sqlite:///relative.db`, `sqlite:////absolute.db` or
    /// `postgresql://...` (default: KEEL_BACKEND_STORE_URI, else
    /// MLFLOW_TRACKING_URI when it names a database, else sqlite:///keel.db).
    #[arg(long, global = true, visible_alias = "tracking-uri")]
    pub backend_store_uri: Option<String>,
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
    /// Show a model (NAME) or one version (models:/NAME/VERSION, models:/NAME@ALIAS).
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
        /// signature JSON, or a JSON list of feature names.
        #[arg(long)]
        signature: Option<PathBuf>,
        /// Where the files go: a directory or s3://bucket/prefix (the
        /// server's --artifacts-destination).
        #[arg(
            long,
            env = "KEEL_ARTIFACTS_DESTINATION",
            default_value = "./keel-artifacts"
        )]
        artifacts_destination: String,
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
        #[arg(long, env = "USER", default_value = "keel")]
        user: String,
    },
    /// Move ALIAS back to its previous holder, from the audit log.
    Rollback {
        name: String,
        #[arg(long, default_value = "production")]
        alias: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long, env = "USER", default_value = "keel")]
        user: String,
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
        let uri = super::evaluate::store_uri(args.backend_store_uri.as_deref())?;
        let store = Store::open(StoreConfig::new(&uri)).await?;
        let result = execute(&store, args.command).await;
        store.close().await;
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

async fn execute(store: &Store, command: ModelsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelsCommand::List => {
            let mut token = None;
            println!("{:<32} {:>7}  aliases", "model", "latest");
            loop {
                let page = store
                    .search_registered_models(None, 1000, &[], token.as_deref())
                    .await?;
                for model in &page.items {
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
                match page.next_page_token {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        ModelsCommand::Show { model } => {
            if keel_core::uri::ModelUri::is_model_uri(&model) {
                let version = store.resolve_model_uri(&model).await?;
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
                let registered = store.get_registered_model(&model).await?;
                println!("model:       {}", registered.name);
                println!("description: {}", registered.description);
                for (alias, version) in &registered.aliases {
                    println!("alias:       @{alias} -> {version}");
                }
                let versions = store
                    .search_model_versions(
                        Some(&format!("name = '{}'", model.replace('\'', "''"))),
                        1000,
                        &[],
                        None,
                    )
                    .await?;
                println!(
                    "\n{:>7}  {:<10} {:<21} gates",
                    "version", "stage", "created"
                );
                for version in &versions.items {
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
            let request = CreateModelVersion {
                name,
                source,
                ..Default::default()
            };
            let version = register(store, request, version).await?;
            println!("registered {} version {}", version.name, version.version);
        }
        ModelsCommand::Import {
            model,
            name,
            signature,
            artifacts_destination,
            version,
        } => {
            let imported =
                import_onnx(&model, signature.as_deref(), &artifacts_destination).await?;
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
            let request = CreateModelVersion {
                name,
                source: imported.source.clone(),
                tags,
                signature: Some(serde_json::to_string(signature)?),
                ..Default::default()
            };
            let version = register(store, request, version).await?;
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
            user,
        } => {
            let number = parse_version(&name, &number)?;
            let candidate = store.get_model_version(&name, number).await?;
            check_promotion(&candidate, force, &reason)?;
            keel_store::validate_alias(&alias)?;
            let entry = store
                .set_registered_model_alias(
                    &name,
                    &alias,
                    number,
                    &Actor {
                        user,
                        reason,
                        cause: String::new(),
                    },
                )
                .await?;
            match entry.from_version {
                Some(from) => println!("{name}@{alias}: version {from} -> {number}"),
                None => println!("{name}@{alias}: -> version {number}"),
            }
        }
        ModelsCommand::Rollback {
            name,
            alias,
            reason,
            user,
        } => {
            let entry = store
                .rollback_alias(
                    &name,
                    &alias,
                    &Actor {
                        user,
                        reason,
                        cause: String::new(),
                    },
                )
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
        }
        ModelsCommand::History { name, limit, json } => {
            let entries = store.registry_audit(Some(&name), limit).await?;
            if entries.is_empty() {
                bail!("no history for model '{name}'");
            }
            if json {
                for entry in &entries {
                    println!("{}", serde_json::to_string(entry)?);
                }
            } else {
                println!(
                    "{:<21} {:<17} {:<22} {:>5} {:>5}  {:<10} reason / cause",
                    "when", "action", "alias/stage", "from", "to", "user"
                );
                for entry in &entries {
                    let opt =
                        |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
                    let why = [entry.reason.as_str(), entry.cause.as_str()]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" / ");
                    println!(
                        "{:<21} {:<17} {:<22} {:>5} {:>5}  {:<10} {}",
                        when(entry.timestamp),
                        entry.action,
                        entry.target,
                        opt(entry.from_version),
                        opt(entry.to_version),
                        entry.user,
                        why
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Registers a version (the one path `register` and `import` share): reads
/// and checks the gate results file, records run, description and user, and
/// the audit row.
async fn register(
    store: &Store,
    mut request: CreateModelVersion,
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
    let user = std::env::var("USER").unwrap_or_default();
    request.user_id = user.clone();
    let actor = Actor::user(if user.is_empty() { "keel".into() } else { user });
    Ok(store.create_model_version(request, &actor).await?)
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
    model: &Path,
    signature: Option<&Path>,
    destination: &str,
) -> anyhow::Result<Imported> {
    let bytes = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    let hint = signature.map(SignatureHint::read).transpose()?;
    let signature = inspect_onnx(&bytes, model, hint.as_ref())?;
    let digest = keel_data::Digest::of_bytes(&bytes).to_hex();
    let store = ArtifactStore::open(destination)?;
    let folder = format!("models/{digest}");
    store
        .put_bytes(
            &format!("{folder}/{}", keel_learn::onnx::ONNX_FILE),
            bytes.into(),
        )
        .await?;
    store
        .put_bytes(
            &format!("{folder}/{}", keel_learn::model::SIGNATURE_FILE),
            serde_json::to_vec_pretty(&signature)?.into(),
        )
        .await?;
    Ok(Imported {
        source: format!("{}/{folder}", store.uri()),
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
