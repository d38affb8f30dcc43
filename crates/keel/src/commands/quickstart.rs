//! `keel quickstart`: the main job a newcomer runs first.
//!
//! Today it tells the tracking part of Bob's story: it starts a `keel server`
//! (SQLite + local artifacts in a fresh folder, nothing to install), trains
//! three portfolio-risk candidates against it over HTTP exactly as the MLflow
//! client would (params, per-step metrics, an artifact), searches for the best
//! one and prints how to point the official MLflow client at it. Later stages of
//! the story (data versioning, pipeline gates, registry, serving, drift) join
//! this command as those subsystems land.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {
    /// Folder for the example project (created; must be empty or absent).
    #[arg(default_value = "keel-quickstart")]
    pub dir: PathBuf,
    /// Keep the tracking server running after the story, until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
    /// Port for the tracking server (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

pub fn run(args: QuickstartArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    runtime.block_on(story(args, quiet))
}

struct Narrator {
    quiet: bool,
    started: Instant,
}

impl Narrator {
    fn say(&self, text: &str) {
        if !self.quiet {
            println!("[{:>5.2}s] {text}", self.started.elapsed().as_secs_f64());
        }
    }
}

/// POSTs JSON to `{base}/api/2.0/{api}/{path}`; a failure carries the server's
/// MLflow-style error message.
async fn call(
    client: &reqwest::Client,
    base: &str,
    api: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let response = client
        .post(format!("{base}/api/2.0/{api}/{path}"))
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        bail!("{message} ({status} from {path})");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The MLflow REST API (`/api/2.0/mlflow/...`).
async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    call(client, base, "mlflow", path, body).await
}

/// keel's own API (`/api/2.0/keel/...`).
async fn keel_post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    call(client, base, "keel", path, body).await
}

/// A deterministic learning curve for a candidate with learning rate `lr`.
fn curve(lr: f64, step: i64) -> (f64, f64) {
    let t = step as f64 + 1.0;
    let loss = 0.25 + 0.6 * (-lr * t).exp() + 0.02 * (t * 1.7).sin().abs() / t;
    let accuracy = 0.97 - 0.4 * (-lr * t * 0.8).exp() - 0.05 * (lr - 0.12).abs();
    (loss, accuracy)
}

async fn story(args: QuickstartArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let say = Narrator {
        quiet,
        started: Instant::now(),
    };
    if args.dir.exists()
        && args
            .dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists and is not empty: pick a new folder (keel quickstart DIR)",
            args.dir.display()
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let config = keel_server::ServerConfig {
        backend_store_uri: format!("sqlite:///{}", dir.join("keel.db").display()),
        artifacts_destination: dir.join("artifacts").display().to_string(),
        host: "127.0.0.1".into(),
        port: args.port,
        auth_token: None,
        allow_unauthenticated: false,
    };
    say.say(&format!("Bob's project lives in {}", dir.display()));
    let (server, state) = keel_server::bind(&config).await?;
    let base = format!("http://{}", server.addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    say.say(&format!(
        "tracking server up at {base} (SQLite metadata, local artifacts)"
    ));

    let client = reqwest::Client::new();
    let experiment = post(
        &client,
        &base,
        "experiments/create",
        json!({"name": "portfolio-risk"}),
    )
    .await?;
    let experiment_id = experiment["experiment_id"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    say.say(&format!(
        "experiment 'portfolio-risk' created (id {experiment_id})"
    ));

    for (name, lr) in [
        ("baseline", 0.05),
        ("new-feature", 0.12),
        ("aggressive", 0.4),
    ] {
        let run = post(
            &client,
            &base,
            "runs/create",
            json!({"experiment_id": experiment_id, "run_name": name, "user_id": "bob",
                   "start_time": keel_core::now_millis(),
                   "tags": [{"key": "mlflow.source.name", "value": "keel quickstart"}]}),
        )
        .await?;
        let run_id = run["run"]["info"]["run_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let now = keel_core::now_millis();
        let mut metrics = Vec::new();
        for step in 0..50 {
            let (loss, accuracy) = curve(lr, step);
            metrics
                .push(json!({"key": "loss", "value": loss, "timestamp": now + step, "step": step}));
            metrics.push(json!({"key": "accuracy", "value": accuracy, "timestamp": now + step, "step": step}));
        }
        post(
            &client,
            &base,
            "runs/log-batch",
            json!({"run_id": run_id, "metrics": metrics,
                   "params": [{"key": "lr", "value": lr.to_string()}, {"key": "model", "value": "logistic"}]}),
        )
        .await?;
        let report = json!({"candidate": name, "lr": lr, "final": curve(lr, 49).1}).to_string();
        let artifact_uri = run["run"]["info"]["artifact_uri"]
            .as_str()
            .unwrap_or_default();
        let path = artifact_uri
            .trim_start_matches("mlflow-artifacts:")
            .trim_start_matches('/');
        let response = client
            .put(format!(
                "{base}/api/2.0/mlflow-artifacts/artifacts/{path}/report.json"
            ))
            .body(report)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("artifact upload failed: {}", response.status());
        }
        post(
            &client,
            &base,
            "runs/update",
            json!({"run_id": run_id, "status": "FINISHED"}),
        )
        .await?;
        say.say(&format!(
            "trained '{name}' (lr={lr}): 50 steps of loss/accuracy, params and report.json logged"
        ));
    }

    let found = post(
        &client,
        &base,
        "runs/search",
        json!({"experiment_ids": [experiment_id], "filter": "metrics.accuracy > 0.9",
               "order_by": ["metrics.accuracy DESC"], "max_results": 10}),
    )
    .await?;
    let runs = found["runs"].as_array().cloned().unwrap_or_default();
    say.say(&format!(
        "search 'metrics.accuracy > 0.9' ordered by accuracy: {} run(s)",
        runs.len()
    ));
    if !quiet {
        println!("\n  {:<14} {:>10} {:>8}", "run", "accuracy", "lr");
        for run in &runs {
            let metric = |key: &str| {
                run["data"]["metrics"]
                    .as_array()
                    .and_then(|m| m.iter().find(|m| m["key"] == key))
                    .and_then(|m| m["value"].as_f64())
                    .unwrap_or(f64::NAN)
            };
            let lr = run["data"]["params"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["key"] == "lr"))
                .and_then(|p| p["value"].as_str())
                .unwrap_or("?")
                .to_string();
            println!(
                "  {:<14} {:>10.4} {:>8}",
                run["info"]["run_name"].as_str().unwrap_or("?"),
                metric("accuracy"),
                lr
            );
        }
        println!();
    }
    if runs.is_empty() {
        bail!("the quickstart's search found no run: something is wrong with the store");
    }

    // Registry: each candidate becomes a version of 'risk' with its gate results;
    // only versions whose gates passed may take the production alias.
    let mut production: Option<(i64, f64)> = None;
    for name in ["baseline", "new-feature", "aggressive"] {
        let Some(run) = runs.iter().find(|r| r["info"]["run_name"] == name) else {
            continue;
        };
        let run_id = run["info"]["run_id"].as_str().unwrap_or_default();
        let accuracy = run["data"]["metrics"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["key"] == "accuracy"))
            .and_then(|m| m["value"].as_f64())
            .unwrap_or(f64::NAN);
        let created = post(
            &client,
            &base,
            "model-versions/create",
            json!({"name": "risk", "source": format!("runs:/{run_id}/model"), "run_id": run_id}),
        )
        .await?;
        let version: i64 = created["model_version"]["version"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let floor = production.map(|(_, acc)| acc - 0.005).unwrap_or(0.9);
        let gates = json!({
            "passed": accuracy >= 0.9 && accuracy >= floor,
            "gates": [
                {"expression": "accuracy >= 0.9", "value": accuracy, "passed": accuracy >= 0.9},
                {"expression": "accuracy >= production.accuracy - 0.005", "value": accuracy,
                 "threshold": floor, "passed": accuracy >= floor},
            ],
        });
        keel_post(
            &client,
            &base,
            "registry/gates",
            json!({"name": "risk", "version": version.to_string(), "gate_results": gates}),
        )
        .await?;
        let promoted = keel_post(
            &client,
            &base,
            "registry/promote",
            json!({"name": "risk", "version": version.to_string(), "alias": "production", "user": "bob",
                   "cause": format!("run {name}")}),
        )
        .await;
        match promoted {
            Ok(_) => {
                say.say(&format!(
                    "registered risk v{version} ('{name}', accuracy {accuracy:.4}): gates passed, promoted to @production"
                ));
                production = Some((version, accuracy));
            }
            Err(refusal) => say.say(&format!(
                "registered risk v{version} ('{name}', accuracy {accuracy:.4}): promotion refused: {refusal}"
            )),
        }
    }

    if !quiet {
        println!();
        println!(
            "What happened: a keel tracking server recorded 3 runs x 100 metric points, params and artifacts"
        );
        println!("in {} (keel.db + artifacts/).", dir.display());
        println!("Use it from Python, unchanged MLflow client:");
        println!(
            "  keel server --backend-store-uri sqlite:///{}/keel.db --artifacts-destination {}/artifacts",
            dir.display(),
            dir.display()
        );
        println!(
            "  MLFLOW_TRACKING_URI=http://127.0.0.1:5000 python -c 'import mlflow; print(mlflow.search_runs())'"
        );
        println!(
            "  keel models history risk --backend-store-uri sqlite:///{}/keel.db",
            dir.display()
        );
    }

    if args.keep_running {
        say.say(&format!("server keeps running at {base}; Ctrl-C to stop"));
        super::server::shutdown_signal().await;
    }
    let _ = stop.send(());
    serving
        .await
        .context("joining server")?
        .context("serving HTTP")?;
    state.store.close().await;
    Ok(ExitCode::SUCCESS)
}
