//! `keel quickstart`: the main job a newcomer runs first — Bob's story end to
//! end on generated data, with nothing to install.
//!
//! It creates an example project (`examples/ci/`'s keel.yaml and params.yaml,
//! seeded portfolio-risk data, a git repository) and then drives keel's real
//! commands as child processes, exactly as a user would type them: `keel data
//! add`, `keel server`, `keel run` (validate → train → evaluate → gate →
//! register → @production), `keel serve models:/risk@production`, traffic and
//! shifted traffic, ground-truth labels, `keel monitor report`, and the drift
//! policy (`keel monitor watch --once`) that retrains, gates and promotes the
//! next version while the serving process hot-swaps to it.

mod process;
mod project;
mod traffic;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::Value;

use process::{Keel, free_port};
use project::TARGET;

#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {
    /// Folder for the example project (created; must be empty or absent).
    #[arg(default_value = "keel-quickstart")]
    pub dir: PathBuf,
    /// Keep the tracking server and the model server running after the story, until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
}

pub fn run(args: QuickstartArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    runtime.block_on(story(args, quiet))
}

/// Prints one narrated step with the time since the story began.
struct Narrator {
    quiet: bool,
    started: Instant,
}

impl Narrator {
    fn say(&self, text: &str) {
        if !self.quiet {
            println!("[{:>5.1}s] {text}", self.started.elapsed().as_secs_f64());
        }
    }

    /// Indented detail lines under a step.
    fn detail(&self, text: &str) {
        if !self.quiet {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                println!("          {line}");
            }
        }
    }
}

async fn story(args: QuickstartArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let say = Narrator {
        quiet,
        started: Instant::now(),
    };
    project::create(&args.dir)?;
    let dir = args.dir.canonicalize()?;
    let git = project::git_init(&dir);
    let mut keel = Keel::new(&dir)?;
    keel.run_ok("init", &["init"])?;
    say.say(&format!(
        "Bob's portfolio-risk project in {}{}: keel.yaml, params.yaml, 6,000 training and 2,000 test rows",
        dir.display(),
        if git { " (a git repository)" } else { "" }
    ));

    // 1. Version the data next to git.
    keel.run_ok(
        "data-add",
        &["data", "add", "data/train.csv", "data/test.csv"],
    )?;
    let schema = keel.run_ok(
        "schema-infer",
        &["schema", "infer", "data/train.csv", "--no-ranges"],
    )?;
    std::fs::write(dir.join("schema.yaml"), &schema.stdout).context("writing schema.yaml")?;
    project::git_commit(&dir, "Portfolio-risk data, schema and pipeline");
    say.say("keel data add: data hashed into .keel/cache, data/*.csv.keel metafiles committed; schema.yaml inferred");

    // 2. Tracking server and registry on the project's SQLite store.
    let store = format!("sqlite:///{}", dir.join(".keel/keel.db").display());
    let artifacts = dir.join(".keel/artifacts").display().to_string();
    let server_port = free_port()?;
    let server_url = format!("http://127.0.0.1:{server_port}");
    let mut server = keel
        .spawn(
            "server",
            &[
                "server",
                "--backend-store-uri",
                &store,
                "--artifacts-destination",
                &artifacts,
                "--port",
                &server_port.to_string(),
            ],
            &format!("{server_url}/health"),
        )
        .await?;
    keel.set_env("KEEL_ARTIFACTS_DESTINATION", &artifacts);
    say.say(&format!(
        "keel server (tracking + registry, MLflow-compatible) at {server_url}"
    ));

    // 3. The pipeline: validate -> train -> evaluate -> gate -> register -> @production.
    let first = keel.run_ok("run-1", &["run"])?;
    say.say(
        "keel run: validate -> train -> evaluate -> gates -> registered risk v1 -> @production",
    );
    say.detail(&pipeline_summary(&first.stdout));

    // 4. Serve the production model.
    let serve_port = free_port()?;
    let serve_url = format!("http://127.0.0.1:{serve_port}");
    let logs = dir.join("logs").display().to_string();
    let mut serving = keel
        .spawn(
            "serve",
            &[
                "serve",
                "models:/risk@production",
                "--tracking-uri",
                &server_url,
                "--port",
                &serve_port.to_string(),
                "--log-dir",
                &logs,
            ],
            &format!("{serve_url}/ping"),
        )
        .await?;
    say.say(&format!(
        "keel serve models:/risk@production at {serve_url} (MLflow scoring + KServe V2, every prediction logged)"
    ));

    // 5. Traffic, then traffic after "new lending laws, major market changes".
    let client = reqwest::Client::new();
    let invocations = format!("{serve_url}/invocations");
    let normal = project::portfolio(1_500, 3, 0.0, 0.0)?;
    let (sent_normal, tally) =
        traffic::send_rows(&client, &invocations, &normal, TARGET, 8).await?;
    say.say(&format!(
        "{} requests of ordinary applicants: {} failed",
        tally.ok + tally.failed,
        tally.failed
    ));
    let shifted = project::portfolio(4_000, 4, 1.0, 1.0)?;
    let (sent_shifted, tally) =
        traffic::send_rows(&client, &invocations, &shifted, TARGET, 8).await?;
    say.say(&format!(
        "market change: {} requests of applicants with lower credit scores and higher debt: {} failed",
        tally.ok + tally.failed,
        tally.failed
    ));
    let feedback_url = format!("{serve_url}/feedback");
    let labelled = traffic::send_feedback(&client, &feedback_url, &sent_normal).await?
        + traffic::send_feedback(&client, &feedback_url, &sent_shifted).await?;
    say.say(&format!(
        "ground truth arrives: {labelled} loan outcomes posted to /feedback"
    ));

    // The prediction log is written off the hot path (flushed at least once a
    // second): wait until every request so far is on disk.
    wait_for_log(
        &client,
        &serve_url,
        (normal.n_rows() + shifted.n_rows()) as u64,
    )
    .await?;

    // 6. Monitoring: drift, quality, live accuracy.
    std::fs::create_dir_all(dir.join("reports")).context("creating reports/")?;
    let monitor_args = |format: &str, output: &str| {
        vec![
            "monitor".to_string(),
            "report".into(),
            "--model".into(),
            "risk".into(),
            "--log-dir".into(),
            logs.clone(),
            "--model-dir".into(),
            "model".into(),
            "--format".into(),
            format.into(),
            "--output".into(),
            output.into(),
        ]
    };
    let html = monitor_args("html", "reports/monitor.html");
    keel.run(
        "monitor-html",
        &html.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let json = monitor_args("json", "reports/monitor.json");
    let verdict = keel.run(
        "monitor-json",
        &json.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let report: Value = serde_json::from_slice(
        &std::fs::read(dir.join("reports/monitor.json")).context("reading reports/monitor.json")?,
    )
    .context("parsing reports/monitor.json")?;
    let drifted = drifted_columns(&report);
    if verdict.code != 1 || drifted.is_empty() {
        bail!(
            "the monitor did not report the drift the story injected (exit {}); see reports/monitor.json",
            verdict.code
        );
    }
    say.say(&format!(
        "keel monitor report: DRIFT in {} of the inputs; reports/monitor.html written",
        drifted.len()
    ));
    for line in drifted.iter().take(6) {
        say.detail(line);
    }

    // 7. The Level 2 loop: the drift policy retrains, gates and promotes; the
    //    serving process hot-swaps while traffic keeps flowing.
    let steady = traffic::Steady::start(
        client.clone(),
        invocations.clone(),
        traffic::split_body(&shifted, TARGET, 0..1),
        4,
    );
    let watch = keel.run_ok(
        "watch",
        &[
            "monitor",
            "watch",
            "--once",
            "--model",
            "risk",
            "--log-dir",
            &logs,
            "--model-dir",
            "model",
        ],
    )?;
    say.say(
        "drift policy (keel.yaml monitor.on_drift: retrain): retrained on recent labelled traffic",
    );
    say.detail(&pipeline_summary(&watch.stdout));
    let swapped = wait_for_version(&client, &serve_url, "2").await;
    let during_swap = steady.finish().await?;
    say.say(&format!(
        "keel serve hot-swapped to risk v2: {} requests during the swap, {} failed",
        during_swap.ok + during_swap.failed,
        during_swap.failed
    ));
    if let Err(error) = swapped {
        bail!("the serving process did not move to v2: {error:#}");
    }

    let summary = serde_json::json!({
        "tracking_server": server_url,
        "model_server": serve_url,
        "swap": {"ok": during_swap.ok, "failed": during_swap.failed},
        "drifted": drifted,
        "reports": ["reports/monitor.html", "reports/monitor.json"],
        "seconds": say.started.elapsed().as_secs_f64(),
    });
    std::fs::write(
        dir.join("quickstart.json"),
        serde_json::to_vec_pretty(&summary)?,
    )
    .context("writing quickstart.json")?;
    let history = keel.run_ok(
        "history",
        &["models", "history", "risk", "--backend-store-uri", &store],
    )?;
    if !quiet {
        println!();
        println!("What happened");
        println!(
            "  - data versioned with keel data (metafiles in git), pipeline runs tracked in .keel/keel.db"
        );
        println!(
            "  - risk v1 passed its gates and served; the market shifted; the monitor named the drifted inputs"
        );
        println!(
            "  - the drift policy retrained on recent labelled data; v2 passed its gates (incl. not worse"
        );
        println!(
            "    than production on recent data), took @production, and serving swapped with 0 failed requests"
        );
        println!();
        println!("Registry audit (keel models history risk):");
        for line in history.stdout.lines().take(12) {
            // The cause column holds the whole drift verdict: show its start.
            let shown: String = line.chars().take(150).collect();
            let more = if shown.len() < line.len() { " ..." } else { "" };
            println!("  {shown}{more}");
        }
        println!();
        println!("Explore:");
        println!("  cd {}", dir.display());
        println!("  keel models history risk --backend-store-uri {store}");
        println!(
            "  keel monitor report --model risk --log-dir logs --model-dir model   # reports/monitor.html"
        );
        println!(
            "  MLFLOW_TRACKING_URI={server_url} python -c 'import mlflow; print(mlflow.search_runs(search_all_experiments=True))'"
        );
    }
    if args.keep_running {
        say.say(&format!(
            "servers keep running: tracking {server_url}, model {serve_url}; Ctrl-C to stop"
        ));
        super::server::shutdown_signal().await;
    }
    serving.stop()?;
    server.stop()?;
    Ok(ExitCode::SUCCESS)
}

/// What a `keel run` printed, without the stages' own output: the stage
/// count, the gate table and the registration.
fn pipeline_summary(text: &str) -> String {
    let mut out = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("gate ") {
            in_table = true;
        }
        if in_table || line.contains("stage(s) ran") {
            out.push(line);
        }
    }
    out.join("\n")
}

/// "income: wasserstein 0.62 sd (p=1e-30)"-style lines for each drifted column of a report.
fn drifted_columns(report: &Value) -> Vec<String> {
    let columns = report["columns"].as_array().cloned().unwrap_or_default();
    columns
        .iter()
        .filter(|c| c["drifted"].as_bool() == Some(true))
        .map(|c| {
            format!(
                "{}: {} {:.3}, effect {:.3}, p={:.1e}",
                c["column"].as_str().unwrap_or("?"),
                c["method"].as_str().unwrap_or("?"),
                c["statistic"].as_f64().unwrap_or(f64::NAN),
                c["effect_size"].as_f64().unwrap_or(f64::NAN),
                c["p_value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

/// Polls the model server's `/metrics` until its prediction log has written `rows` rows.
async fn wait_for_log(client: &reqwest::Client, serve_url: &str, rows: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = client
            .get(format!("{serve_url}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let written: f64 = text
            .lines()
            .filter(|l| l.starts_with("keel_serve_prediction_log_rows_written_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if written >= rows as f64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the prediction log holds {written} of {rows} rows after 30 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Polls `GET /version`-style metadata until the served version is `version`.
async fn wait_for_version(
    client: &reqwest::Client,
    serve_url: &str,
    version: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(response) = client
            .get(format!("{serve_url}/v2/models/risk"))
            .send()
            .await
            && let Ok(body) = response.json::<Value>().await
            && body["versions"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v == version))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("still not serving version {version} after 60 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
