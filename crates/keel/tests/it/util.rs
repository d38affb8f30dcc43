//! Helpers shared by keel's end-to-end tests: the real binary, run in a
//! folder with an environment that does not leak the caller's settings.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether this is a CI run: a missing service fails the test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `keel` in `dir`: `CI=true` (no progress bars), no backtraces, no
/// `RUST_LOG`, and none of the caller's tracking, credential or artifact settings.
pub fn command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command
        .current_dir(dir)
        .env("CI", "true")
        .env("RUST_BACKTRACE", "0")
        .env_remove("RUST_LOG")
        .env_remove("KEEL_TRACKING_URI")
        .env_remove("KEEL_BACKEND_STORE_URI")
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_TRACKING_TOKEN")
        .env_remove("MLFLOW_TRACKING_USERNAME")
        .env_remove("MLFLOW_TRACKING_PASSWORD")
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .env_remove("KEEL_ARTIFACTS_DESTINATION");
    command
}

/// Runs `keel ARGS` in `dir`.
pub fn keel(dir: &Path, args: &[&str]) -> Output {
    command(dir).args(args).output().expect("run keel")
}

/// Runs `keel ARGS` in `dir`, asserts success and returns stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let output = keel(dir, args);
    assert!(
        output.status.success(),
        "keel {args:?} failed:\n{}",
        text(&output)
    );
    lossy(&output.stdout)
}

/// Runs `keel ARGS` in `dir`, asserts exit code `expected` and returns stdout.
pub fn run(dir: &Path, args: &[&str], expected: i32) -> String {
    let output = keel(dir, args);
    assert_eq!(code(&output), expected, "keel {args:?}:\n{}", text(&output));
    lossy(&output.stdout)
}

/// The exit code (-1 when killed by a signal).
pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// Both streams, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        lossy(&output.stdout),
        lossy(&output.stderr)
    )
}

/// Bytes as text (invalid UTF-8 replaced).
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The pinned venv's Python (`KEEL_PY_VENV`, set by `tests/run.sh`) when it
/// can `import modules`; `None` (the test is skipped) when it cannot, except
/// under `CI=true`, where it fails.
pub fn python_with(modules: &str) -> Option<PathBuf> {
    let python = std::env::var("KEEL_PY_VENV")
        .ok()
        .filter(|venv| !venv.is_empty())
        .map(|venv| Path::new(&venv).join("bin/python"))
        .filter(|python| {
            Command::new(python)
                .args(["-c", &format!("import {modules}")])
                .output()
                .is_ok_and(|output| output.status.success())
        });
    if python.is_none() {
        assert!(
            !in_ci(),
            "CI=true but KEEL_PY_VENV has no {modules}: run the tests through tests/run.sh"
        );
        eprintln!("skipped: no Python with {modules} (set KEEL_PY_VENV)");
    }
    python
}

/// A `keel serve` process on a free loopback port (`keel serve MODEL --port 0 ARGS`),
/// killed on drop unless stopped.
pub struct Serve {
    pub child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// Every line the process wrote to stderr so far.
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The process's working folder, so nothing it writes by default
    /// (`keel-logs/`, spools) lands in the source tree.
    _cwd: tempfile::TempDir,
}

impl Serve {
    pub fn start(model: &Path, args: &[&str]) -> Serve {
        let model = model.display().to_string();
        let mut all = vec!["serve", model.as_str()];
        all.extend_from_slice(args);
        Serve::spawn(&all)
    }

    /// `keel ARGS --port 0`: any keel server that says `on http://ADDRESS` once listening.
    pub fn spawn(args: &[&str]) -> Serve {
        Serve::spawn_with(args, |_| {})
    }

    /// [`Serve::spawn`] with the command adjusted first (its environment).
    pub fn spawn_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Serve {
        let cwd = tempfile::tempdir().unwrap();
        let mut command = command(cwd.path());
        command.env("RUST_LOG", "warn");
        adjust(&mut command);
        let mut child = command
            .args(args)
            .args(["--port", "0"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(address) = line.split("on http://").nth(1) {
                    let _ = address_tx.send(address.trim().to_string());
                } else {
                    eprintln!("keel serve: {line}");
                }
                seen.lock().unwrap().push(line);
            }
        });
        let address = address_rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("keel serve did not report its address");
        Serve {
            child,
            address,
            stderr: lines,
            _cwd: cwd,
        }
    }

    /// The first line of the process's stderr containing `text`, waiting up
    /// to 30 s for it; None if it never came.
    pub fn stderr_line(&self, text: &str) -> Option<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let found = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(text))
                .cloned();
            if found.is_some() || std::time::Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        self.signal("-TERM");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "keel serve did not stop after SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(exit.success(), "{exit:?}");
    }

    /// SIGKILL: the process gets no chance to write anything more.
    pub fn kill_9(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `keel server` process on a free loopback port running MLflow's
/// basic-auth app, whose shared `--auth-token` holder is the admin; killed
/// on drop.
pub struct TrackingServer {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl TrackingServer {
    /// Starts `keel server` in `dir` on `backend` and `artifacts` (the test's
    /// AWS_* settings, moto, are kept) and waits for its /health.
    pub fn start(
        dir: &Path,
        backend: &str,
        artifacts: &str,
        token: &str,
        admin_password: &str,
    ) -> TrackingServer {
        std::fs::create_dir_all(dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = command(dir)
            .args(["server", "--port", &port.to_string()])
            .args(["--backend-store-uri", backend])
            .args(["--artifacts-destination", artifacts])
            .args(["--auth-token", token, "--app-name", "basic-auth"])
            .env("MLFLOW_AUTH_ADMIN_PASSWORD", admin_password)
            .env_remove("MLFLOW_AUTH_CONFIG_PATH")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn keel server");
        let server = TrackingServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let started = std::time::Instant::now();
        while request("GET", &format!("{}/health", server.url), &[], None)
            .is_none_or(|answer| answer.status != 200)
        {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "keel server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server
    }
}

impl Drop for TrackingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer: status, headers, body text.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// One blocking HTTP request over a one-shot tokio runtime; `None` when the
/// server cannot be reached.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<Answer> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).ok()?;
        let mut builder = reqwest::Client::new().request(method, url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some(body) = body {
            builder = builder.body(body.to_string());
        }
        let response = builder.send().await.ok()?;
        Some(Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.ok()?,
        })
    })
}

/// The S3 endpoint under test (moto, from `tests/s3/moto.sh start`), or
/// `None` (the test is skipped) after saying so; under `CI=true` a missing
/// endpoint fails.
pub fn s3_endpoint() -> Option<String> {
    match std::env::var("KEEL_TEST_S3_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => {
            Some(endpoint.trim().trim_end_matches('/').to_string())
        }
        _ => {
            assert!(
                !in_ci(),
                "CI=true but KEEL_TEST_S3_ENDPOINT is not set: start an S3 server with \
                 `eval \"$(tests/s3/moto.sh start)\"` (tests/run.sh does) before `cargo test`"
            );
            eprintln!("skipped: KEEL_TEST_S3_ENDPOINT is not set, so S3 was not tested");
            None
        }
    }
}

/// A fresh PostgreSQL database `keel_test_<prefix>_<pid>`: (its URL, its
/// name), or None outside CI when `KEEL_TEST_POSTGRES_URL` is unset (the
/// caller says what it skips); under `CI=true` a missing URL fails.
pub fn postgres_database(prefix: &str) -> Option<(String, String)> {
    let admin = match std::env::var("KEEL_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if in_ci() => panic!("CI=true but KEEL_TEST_POSTGRES_URL is not set"),
        _ => return None,
    };
    let database = format!("keel_test_{prefix}_{}", std::process::id());
    drop_postgres_database(&database);
    let created = Command::new("psql")
        .arg(&admin)
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            &format!("CREATE DATABASE {database}"),
        ])
        .output()
        .expect("psql");
    assert!(created.status.success(), "{}", lossy(&created.stderr));
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some((format!("{base}/{database}"), database))
}

/// Drops a database made by [`postgres_database`] (best effort).
pub fn drop_postgres_database(database: &str) {
    if let Ok(admin) = std::env::var("KEEL_TEST_POSTGRES_URL") {
        let _ = Command::new("psql")
            .arg(&admin)
            .args([
                "-qc",
                &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
            ])
            .output();
    }
}

/// Runs git in `dir` as Bob (name and email set), asserting it succeeds;
/// its standard output.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(["-c", "user.name=Bob", "-c", "user.email=bob@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        lossy(&output.stderr)
    );
    lossy(&output.stdout)
}
