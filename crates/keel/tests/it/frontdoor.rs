//! The server is the team's front door: a project folder that knows only a
//! keel server's URL and a credential runs its pipeline, registers, promotes,
//! rolls back and reads the history through the server, with no database or
//! S3 credentials of its own; the server (on PostgreSQL with S3 artifacts,
//! when the test services are there) runs MLflow's basic-auth app, records
//! the user it authenticated, not the name the client claims, and refuses a
//! READ user's promotion naming the permission it needs.

use std::path::Path;

use crate::util::{self, TrackingServer, text};

const KEEL_YAML: &str = "\
stages:
  train:
    cmd: keel train --algo logistic --data data/train.csv --target default --out model --test-fraction 0 --seed 3
    deps: [data/train.csv]
    outs: [model]
  evaluate:
    cmd: keel evaluate model data/test.csv --output metrics.json
    deps: [model, data/test.csv]
    metrics: [metrics.json]
gates:
  - accuracy >= 0.6
  - roc_auc >= production.roc_auc - 0.02
register:
  model: risk
  path: model
  alias: production
";

/// The shared `--auth-token`: its holder is the admin `token`.
const TOKEN: &str = "team-ci-token-0123456789";
/// The CI runner's user (creates the experiment and the model: MANAGE).
const CI: (&str, &str) = ("carol", "carol-ci-password-1");
/// A user with only basic_auth.ini's default READ.
const READER: (&str, &str) = ("rita", "rita-reads-password");

/// Who a command runs as.
#[derive(Clone, Copy)]
enum As {
    Nobody,
    Token,
    User((&'static str, &'static str)),
}

/// A fresh PostgreSQL database for the server, or None (SQLite) outside CI
/// when no PostgreSQL is configured.
fn postgres_database() -> Option<(String, String)> {
    let database = util::postgres_database("frontdoor");
    if database.is_none() {
        eprintln!("KEEL_TEST_POSTGRES_URL unset: the front-door test runs on SQLite");
    }
    database
}

fn start_server(dir: &Path, backend: &str, artifacts: &str) -> TrackingServer {
    let server = TrackingServer::start(dir, backend, artifacts, TOKEN, "frontdoor-admin-password");
    let url = server.url.clone();
    // The admin (here the shared token's holder) creates the team's users.
    for (user, password) in [CI, READER] {
        let created = util::request(
            "POST",
            &format!("{url}/api/2.0/mlflow/users/create"),
            &[
                ("Authorization", &format!("Bearer {TOKEN}")),
                ("Content-Type", "application/json"),
            ],
            Some(&serde_json::json!({"username": user, "password": password}).to_string()),
        )
        .expect("create a user");
        assert_eq!(created.status, 200, "{}", created.body);
    }
    // The pipeline records into the Default experiment: the CI user may edit it
    // (the model it registers is its own: its creator holds MANAGE).
    let granted = util::request(
        "POST",
        &format!("{url}/api/3.0/mlflow/users/permissions/grant"),
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        Some(
            &serde_json::json!({"username": CI.0, "resource_type": "experiment",
                "resource_id": "0", "permission": "EDIT"})
            .to_string(),
        ),
    )
    .expect("grant");
    assert_eq!(granted.status, 200, "{}", granted.body);
    server
}

/// `keel ARGS` in the project, knowing only the server URL and a user's
/// credentials: no database URI, no AWS credentials, and a $USER that tries
/// to claim someone else's name.
fn remote(project: &Path, url: &str, who: As, args: &[&str]) -> std::process::Output {
    let mut command = util::command(project);
    command
        .env("MLFLOW_TRACKING_URI", url)
        .env("USER", "mallory")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_ALLOW_HTTP")
        .env_remove("MLFLOW_TRACKING_TOKEN")
        .env_remove("MLFLOW_TRACKING_USERNAME")
        .env_remove("MLFLOW_TRACKING_PASSWORD");
    match who {
        As::Nobody => {}
        As::Token => {
            command.env("MLFLOW_TRACKING_TOKEN", TOKEN);
        }
        As::User((user, password)) => {
            command
                .env("MLFLOW_TRACKING_USERNAME", user)
                .env("MLFLOW_TRACKING_PASSWORD", password);
        }
    }
    command.args(args).output().expect("run keel")
}

/// `keel ARGS` as the CI runner's user, which must succeed.
fn remote_ok(project: &Path, url: &str, args: &[&str]) -> String {
    let output = remote(project, url, As::User(CI), args);
    assert!(output.status.success(), "keel {args:?}:\n{}", text(&output));
    util::lossy(&output.stdout)
}

#[test]
fn a_project_that_knows_only_the_server_runs_registers_promotes_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let project = dir.path().join("project");
    std::fs::create_dir_all(&server_dir).unwrap();
    std::fs::create_dir_all(project.join("data")).unwrap();

    let database = postgres_database();
    let backend = match &database {
        Some((url, _)) => url.clone(),
        None => format!("sqlite:///{}", server_dir.join("keel.db").display()),
    };
    let artifacts = match util::s3_endpoint() {
        Some(endpoint) => {
            let bucket = format!("keel-frontdoor-{}", std::process::id());
            let created = util::request("PUT", &format!("{endpoint}/{bucket}"), &[], None)
                .expect("create the test bucket");
            assert!(created.status < 300, "{}", created.body);
            format!("s3://{bucket}/artifacts")
        }
        None => server_dir.join("artifacts").display().to_string(),
    };
    let server = start_server(&server_dir, &backend, &artifacts);

    for (seed, file) in [("1", "data/train.csv"), ("2", "data/test.csv")] {
        util::ok(
            &project,
            &[
                "generate",
                "portfolio",
                "--rows",
                "1500",
                "--seed",
                seed,
                "--out",
                file,
            ],
        );
    }
    std::fs::write(project.join("keel.yaml"), KEEL_YAML).unwrap();

    // Without a credential the server refuses, and says what to set.
    let refused = remote(&project, &server.url, As::Nobody, &["run"]);
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        text(&refused).contains("MLFLOW_TRACKING_TOKEN"),
        "{}",
        text(&refused)
    );

    // The pipeline runs locally and records everything through the server.
    let first = remote_ok(&project, &server.url, &["run"]);
    assert!(
        first.contains("registered risk version 1, @production"),
        "{first}"
    );
    assert!(
        !project.join(".keel/keel.db").exists(),
        "nothing may be written to a local database when a server is given"
    );
    // A second run on more data trains a new model: its gates compare with
    // production through the server, and it becomes version 2.
    util::ok(
        &project,
        &[
            "generate",
            "portfolio",
            "--rows",
            "3000",
            "--seed",
            "1",
            "--out",
            "data/train.csv",
        ],
    );
    let second = remote_ok(&project, &server.url, &["run"]);
    assert!(
        second.contains("registered risk version 2, @production"),
        "{second}"
    );

    // The server has the run, its artifacts and the version's files.
    let shown = remote_ok(
        &project,
        &server.url,
        &["models", "show", "models:/risk@production"],
    );
    let production: String = shown
        .lines()
        .find_map(|line| line.strip_prefix("version:"))
        .map(|v| v.trim().to_string())
        .unwrap();
    assert!(shown.contains("gates:       passed"), "{shown}");
    assert!(
        shown.contains("mlflow-artifacts:/"),
        "files travel through the proxy: {shown}"
    );

    // Promote v1 back by hand (gated on the server), roll back, read the history.
    let promoted = remote_ok(&project, &server.url, &["models", "promote", "risk", "1"]);
    assert!(promoted.contains("risk@production"), "{promoted}");
    let rolled = remote_ok(
        &project,
        &server.url,
        &[
            "models",
            "rollback",
            "risk",
            "--reason",
            "back to the newer one",
        ],
    );
    assert!(rolled.contains(&format!("to {production}")), "{rolled}");
    // A version with no recorded gates is refused by the server's promotion rule.
    remote_ok(
        &project,
        &server.url,
        &[
            "models",
            "register",
            "risk",
            "mlflow-artifacts:/elsewhere/model",
        ],
    );
    let ungated = remote(
        &project,
        &server.url,
        As::User(CI),
        &["models", "promote", "risk", "3"],
    );
    assert_ne!(ungated.status.code(), Some(0));
    assert!(
        text(&ungated).contains("no recorded gate results"),
        "{}",
        text(&ungated)
    );

    // A READ user may read the registry but not move @production: the
    // server refuses, naming the permission, and records nothing.
    let read = remote(
        &project,
        &server.url,
        As::User(READER),
        &["models", "show", "models:/risk@production"],
    );
    assert!(read.status.success(), "{}", text(&read));
    let denied = remote(
        &project,
        &server.url,
        As::User(READER),
        &["models", "promote", "risk", "1"],
    );
    assert_ne!(denied.status.code(), Some(0));
    assert!(
        text(&denied).contains("PERMISSION_DENIED") || text(&denied).contains("403"),
        "{}",
        text(&denied)
    );
    assert!(
        text(&denied).contains("needs MANAGE on registered model 'risk'"),
        "the refusal names the permission: {}",
        text(&denied)
    );
    let denied = remote(
        &project,
        &server.url,
        As::User(READER),
        &["models", "rollback", "risk"],
    );
    assert!(text(&denied).contains("needs MANAGE"), "{}", text(&denied));

    // The history names the user the server authenticated, never the $USER
    // the client claimed; the shared token still reads it (as the admin).
    let history = remote(
        &project,
        &server.url,
        As::Token,
        &["models", "history", "risk", "--json"],
    );
    assert!(history.status.success(), "{}", text(&history));
    let history = util::lossy(&history.stdout);
    let entries: Vec<serde_json::Value> = history
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(entries.len() >= 5, "{history}");
    assert!(
        entries.iter().all(|e| e["user"] == CI.0),
        "audit rows name the authenticated caller: {history}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "rollback" && e["reason"] == "back to the newer one"),
        "{history}"
    );

    // `keel gate` re-gates the newest run through the server.
    let gated = remote_ok(&project, &server.url, &["gate"]);
    assert!(gated.contains("accuracy >= 0.6"), "{gated}");

    drop(server);
    if let Some((_, name)) = database {
        util::drop_postgres_database(&name);
    }
}

/// One settings order for every command: `keel run` honours
/// `KEEL_BACKEND_STORE_URI` as `keel models` does (before, the pipeline
/// recorded into `.keel/keel.db` while the registry commands read the
/// variable's database).
#[test]
fn keel_run_and_keel_models_find_the_same_store_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("data")).unwrap();
    for (seed, file) in [("1", "data/train.csv"), ("2", "data/test.csv")] {
        util::ok(
            &project,
            &[
                "generate",
                "portfolio",
                "--rows",
                "1000",
                "--seed",
                seed,
                "--out",
                file,
            ],
        );
    }
    std::fs::write(project.join("keel.yaml"), KEEL_YAML).unwrap();
    let team = format!("sqlite:///{}", dir.path().join("team.db").display());
    let with_env = |args: &[&str]| {
        let output = util::command(&project)
            .env("KEEL_BACKEND_STORE_URI", &team)
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "keel {args:?}:\n{}", text(&output));
        util::lossy(&output.stdout)
    };
    let run = with_env(&["run"]);
    assert!(
        run.contains("registered risk version 1, @production"),
        "{run}"
    );
    assert!(
        !project.join(".keel/keel.db").exists(),
        "recorded in the project instead"
    );
    let shown = with_env(&["models", "show", "models:/risk@production"]);
    assert!(shown.contains("version:     1"), "{shown}");
    // The flag wins over the variable.
    let local = format!("sqlite:///{}", dir.path().join("local.db").display());
    let missing = util::command(&project)
        .env("KEEL_BACKEND_STORE_URI", &team)
        .args([
            "models",
            "show",
            "models:/risk@production",
            "--tracking-uri",
            &local,
        ])
        .output()
        .unwrap();
    assert!(!missing.status.success(), "{}", text(&missing));
}
