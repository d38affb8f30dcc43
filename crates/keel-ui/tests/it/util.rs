//! A keel server with the UI, in process; the pinned Python venv; the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// A running `keel server` (API + UI) on a free loopback port, on a fresh
/// SQLite store and artifact directory.
pub struct Server {
    pub url: String,
    pub _dir: tempfile::TempDir,
    pub state: keel_server::AppState,
}

pub async fn start_server() -> Server {
    start_server_with(None, None).await
}

/// A server protected by the shared token `token` only.
pub async fn start_server_with_token(token: &str) -> Server {
    start_server_with(None, Some(token.to_string())).await
}

/// The password of the admin `admin` of [`start_server_with_users`].
pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// A server running MLflow's basic-auth app (`--app-name basic-auth`):
/// admin `admin`, everyone else READ by default.
pub async fn start_server_with_users() -> Server {
    start_server_with(
        Some(keel_server::auth::BasicAuthConfig {
            admin_password: Some(ADMIN_PASSWORD.into()),
            ..Default::default()
        }),
        None,
    )
    .await
}

async fn start_server_with(
    basic_auth: Option<keel_server::auth::BasicAuthConfig>,
    auth_token: Option<String>,
) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = keel_server::ServerConfig {
        backend_store_uri: format!("sqlite:///{}", dir.path().join("keel.db").display()),
        artifacts_destination: dir.path().join("artifacts").display().to_string(),
        host: "127.0.0.1".into(),
        port: 0,
        auth_token,
        allow_unauthenticated: false,
        basic_auth,
        tls: None,
        protected_aliases: vec!["production".into()],
    };
    let (server, state) = keel_server::bind_with_pages(&config, keel_ui::pages())
        .await
        .expect("bind keel server");
    let url = format!("http://{}", server.addr);
    tokio::spawn(server.serve(std::future::pending()));
    Server {
        url,
        _dir: dir,
        state,
    }
}

/// The pinned venv's python (`KEEL_PY_VENV` from tests/run.sh, else
/// tests/python/ensure_venv.sh), or None outside CI when it cannot be had.
pub fn python() -> Option<PathBuf> {
    let venv = match std::env::var("KEEL_PY_VENV") {
        Ok(venv) if !venv.is_empty() => PathBuf::from(venv),
        _ => {
            let output = Command::new("bash")
                .arg(repo_root().join("tests/python/ensure_venv.sh"))
                .output()
                .expect("run ensure_venv.sh");
            if !output.status.success() {
                assert!(
                    !in_ci(),
                    "CI=true but the Python venv cannot be built:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                eprintln!("no Python venv: skipping");
                return None;
            }
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
    };
    Some(venv.join("bin/python"))
}

/// Runs a script of tests/python with the MLflow client pointed at `url`;
/// returns its stdout (panics with its output when it fails).
pub async fn run_python(python: &Path, script: &str, url: &str) -> String {
    run_python_as(python, script, url, None).await
}

/// [`run_python`] with MLflow's basic-auth credentials.
pub async fn run_python_as(
    python: &Path,
    script: &str,
    url: &str,
    user: Option<(&str, &str)>,
) -> String {
    let mut command = Command::new(python);
    if let Some((user, password)) = user {
        command
            .env("MLFLOW_TRACKING_USERNAME", user)
            .env("MLFLOW_TRACKING_PASSWORD", password);
    }
    command
        .arg(repo_root().join("tests/python").join(script))
        .env("MLFLOW_TRACKING_URI", url)
        .env("MLFLOW_ENABLE_ASYNC_LOGGING", "false");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
