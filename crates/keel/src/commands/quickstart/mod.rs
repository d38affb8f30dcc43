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
mod summary;
mod traffic;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::Value;

use process::{Keel, free_port};
use project::TARGET;
use summary::{Gates, Outcome, Registration, Swap};

#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {
    /// Folder for the example project (created; must be empty or absent).
    #[arg(default_value = "keel-quickstart")]
    pub dir: PathBuf,
    /// Keep the tracking server and the model server running after the story, until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
    /// How far the "market change" moves the shifted traffic's credit scores
    /// and debt (in the generator's units; 0: no change, so the monitor must
    /// find no drift, nothing is retrained and the story ends with a failure).
    #[arg(long, default_value_t = 1.0)]
    pub market_shift: f64,
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
    let server = keel
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
    // From here on every command reaches runs, models and artifacts through
    // the server, as a team's laptops and CI runners do.
    keel.set_env("MLFLOW_TRACKING_URI", &server_url);
    say.say(&format!(
        "keel server (tracking + registry, MLflow-compatible) at {server_url}; every command below goes through it"
    ));

    // 3. The pipeline: validate -> train -> evaluate -> gate -> register -> @production.
    let client = reqwest::Client::new();
    let mut outcome = Outcome::default();
    let first = keel.run("run-1", &["run"])?;
    outcome.first_run = Some(Registration {
        exit_code: first.code,
        gates: Gates::from_output(&first.stdout),
        production: production_version(&client, &server_url).await?,
        expected: "1".into(),
    });
    say.say("keel run: validate -> train -> evaluate -> gates -> register -> @production");
    say.detail(&pipeline_summary(&first.stdout));
    let mut servers = vec![server];
    if !outcome.sentences().iter().all(|s| s.ok) {
        return finish(
            Ending {
                dir: &dir,
                keel: &keel,
                say: &say,
                server_url: &server_url,
                serve_url: None,
                keep_running: args.keep_running,
            },
            &outcome,
            &mut servers,
        )
        .await;
    }

    // 4. Serve the production model.
    let serve_port = free_port()?;
    let serve_url = format!("http://127.0.0.1:{serve_port}");
    let logs = dir.join("logs").display().to_string();
    let serving = keel
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
    servers.push(serving);
    say.say(&format!(
        "keel serve models:/risk@production at {serve_url} (MLflow scoring + KServe V2, every prediction logged)"
    ));

    // 5. Traffic, then traffic after "new lending laws, major market changes".
    let invocations = format!("{serve_url}/invocations");
    let normal = project::portfolio(1_500, 3, 0.0, 0.0)?;
    let (sent_normal, tally) =
        traffic::send_rows(&client, &invocations, &normal, TARGET, 8).await?;
    say.say(&format!(
        "{} requests of ordinary applicants: {} failed",
        tally.ok + tally.failed,
        tally.failed
    ));
    outcome.normal_traffic = Some(tally.into());
    let shift = args.market_shift;
    let shifted = project::portfolio(4_000, 4, shift, shift)?;
    let (sent_shifted, tally) =
        traffic::send_rows(&client, &invocations, &shifted, TARGET, 8).await?;
    say.say(&format!(
        "market change: {} requests of applicants with lower credit scores and higher debt: {} failed",
        tally.ok + tally.failed,
        tally.failed
    ));
    outcome.shifted_traffic = Some(tally.into());
    let feedback_url = format!("{serve_url}/feedback");
    let labelled = traffic::send_feedback(&client, &feedback_url, &sent_normal).await?
        + traffic::send_feedback(&client, &feedback_url, &sent_shifted).await?;
    say.say(&format!(
        "ground truth arrives: {labelled} loan outcomes posted to /feedback"
    ));
    outcome.labels_posted = Some(labelled as u64);

    // The prediction and feedback logs are written off the hot path
    // (compacted at least once a second): wait until every request and every
    // label so far is in Parquet, where the monitor and the retraining read them.
    wait_for_log(
        &client,
        &serve_url,
        (normal.n_rows() + shifted.n_rows()) as u64,
        labelled as u64,
    )
    .await?;

    // 6. Monitoring: drift, quality, live accuracy.
    std::fs::create_dir_all(dir.join("reports")).context("creating reports/")?;
    let monitor_args = |format: &str, output: &str| {
        vec![
            "monitor".to_string(),
            "report".into(),
            "--model".into(),
            "risk@production".into(),
            "--log-dir".into(),
            logs.clone(),
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
    outcome.monitor_exit = Some(verdict.code);
    outcome.drifted = drifted_columns(&report);
    say.say(&format!(
        "keel monitor report: {} drifted input(s); reports/monitor.html written",
        outcome.drifted.len()
    ));
    for line in outcome.drifted.iter().take(6) {
        say.detail(line);
    }
    if outcome.drifted.is_empty() {
        return finish(
            Ending {
                dir: &dir,
                keel: &keel,
                say: &say,
                server_url: &server_url,
                serve_url: Some(&serve_url),
                keep_running: args.keep_running,
            },
            &outcome,
            &mut servers,
        )
        .await;
    }

    // 7. The Level 2 loop: the drift policy retrains, gates and promotes; the
    //    serving process hot-swaps while traffic keeps flowing.
    let steady = traffic::Steady::start(
        client.clone(),
        invocations.clone(),
        traffic::split_body(&shifted, TARGET, 0..1),
        4,
    );
    let watch = keel.run(
        "watch",
        &[
            "monitor",
            "watch",
            "--once",
            "--model",
            "risk@production",
            "--log-dir",
            &logs,
        ],
    )?;
    let production = production_version(&client, &server_url).await?;
    say.say(
        "drift policy (keel.yaml monitor.on_drift: retrain): retrained on recent labelled traffic",
    );
    say.detail(&pipeline_summary(&watch.stdout));
    outcome.retrain = Some(Registration {
        exit_code: watch.code,
        gates: Gates::from_output(&watch.stdout),
        production: production.clone(),
        expected: "2".into(),
    });
    // Wait for the swap only when v2 really took @production.
    let swapped = production.as_deref() == Some("2")
        && wait_for_version(&client, &serve_url, "2").await.is_ok();
    let during_swap = steady.finish().await?;
    say.say(&format!(
        "keel serve {} risk v2: {} requests meanwhile, {} failed",
        if swapped {
            "hot-swapped to"
        } else {
            "did not move to"
        },
        during_swap.ok + during_swap.failed,
        during_swap.failed
    ));
    outcome.swap = Some(Swap {
        ok: during_swap.ok,
        failed: during_swap.failed,
        swapped,
    });
    finish(
        Ending {
            dir: &dir,
            keel: &keel,
            say: &say,
            server_url: &server_url,
            serve_url: Some(&serve_url),
            keep_running: args.keep_running,
        },
        &outcome,
        &mut servers,
    )
    .await
}

/// The story's surroundings that its ending needs.
struct Ending<'a> {
    dir: &'a std::path::Path,
    keel: &'a Keel,
    say: &'a Narrator,
    server_url: &'a str,
    serve_url: Option<&'a str>,
    keep_running: bool,
}

/// Writes `quickstart.json`, prints the summary built from `outcome` and the
/// registry's audit log, keeps or stops the servers; exits non-zero unless
/// every step of the story went as it should.
async fn finish(
    ending: Ending<'_>,
    outcome: &Outcome,
    servers: &mut [process::Background],
) -> anyhow::Result<ExitCode> {
    let Ending {
        dir,
        keel,
        say,
        server_url,
        serve_url,
        keep_running,
    } = ending;
    let succeeded = outcome.succeeded();
    let summary = serde_json::json!({
        "succeeded": succeeded,
        "tracking_server": server_url,
        "model_server": serve_url,
        "outcome": outcome,
        "swap": outcome.swap,
        "drifted": outcome.drifted,
        "reports": ["reports/monitor.html", "reports/monitor.json"],
        "seconds": say.started.elapsed().as_secs_f64(),
    });
    std::fs::write(
        dir.join("quickstart.json"),
        serde_json::to_vec_pretty(&summary)?,
    )
    .context("writing quickstart.json")?;
    let history = keel.run("history", &["models", "history", "risk"])?;
    // The summary is the story's verdict: print it even with --quiet when it failed.
    if !say.quiet || !succeeded {
        println!();
        println!(
            "{}",
            if succeeded {
                "What happened"
            } else {
                "What happened (the story did NOT complete)"
            }
        );
        println!(
            "  - data versioned with keel data (metafiles in git); pipeline runs, registry and audit recorded through the keel server (stored in .keel/keel.db)"
        );
        for sentence in outcome.sentences() {
            let mark = if sentence.ok { "-" } else { "x" };
            println!("  {mark} {}", sentence.text);
        }
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
        println!(
            "  keel models history risk        # the project's .keel/keel.db, what the server served"
        );
        println!(
            "  keel monitor report --model risk --log-dir logs --model-dir model   # reports/monitor.html (or --model risk@production with a server)"
        );
        println!(
            "  MLFLOW_TRACKING_URI={server_url} python -c 'import mlflow; print(mlflow.search_runs(search_all_experiments=True))'"
        );
    }
    if keep_running {
        say.say(&format!(
            "servers keep running: tracking {server_url}, model {}; Ctrl-C to stop",
            serve_url.unwrap_or("not started")
        ));
        super::server::shutdown_signal().await;
    }
    for server in servers.iter_mut().rev() {
        server.stop()?;
    }
    Ok(if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The version holding `risk@production`, as the tracking server answers.
async fn production_version(
    client: &reqwest::Client,
    server_url: &str,
) -> anyhow::Result<Option<String>> {
    let response = client
        .get(format!(
            "{server_url}/api/2.0/mlflow/registered-models/alias"
        ))
        .query(&[("name", "risk"), ("alias", "production")])
        .send()
        .await
        .context("asking the tracking server for risk@production")?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let body: Value = response
        .error_for_status()
        .context("asking the tracking server for risk@production")?
        .json()
        .await?;
    Ok(body["model_version"]["version"]
        .as_str()
        .map(str::to_string))
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

/// Polls the model server's `/metrics` until its logs have written
/// `predictions` prediction rows and `labels` feedback rows to Parquet.
async fn wait_for_log(
    client: &reqwest::Client,
    serve_url: &str,
    predictions: u64,
    labels: u64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = client
            .get(format!("{serve_url}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let written = |counter: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(counter))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let rows = written("keel_serve_prediction_log_rows_written_total");
        let feedback = written("keel_serve_feedback_rows_written_total");
        if rows >= predictions as f64 && feedback >= labels as f64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "after 30 s the logs hold {rows} of {predictions} predictions and {feedback} of {labels} labels"
            );
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
