//! Running keel's own subcommands as child processes, as a user would type them.
//!
//! The quickstart drives the real commands (`keel data add`, `keel run`,
//! `keel serve`, ...) of the binary it is part of, so the story exercises
//! exactly what a user runs; nothing is special-cased for it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Runs `keel` subcommands in the project folder with a fixed environment.
pub struct Keel {
    exe: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    logs: PathBuf,
}

/// What a finished subcommand printed.
pub struct Output {
    pub stdout: String,
    pub code: i32,
}

impl Keel {
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the keel binary")?;
        let logs = dir.join(".keel").join("quickstart-logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        // Stage commands in keel.yaml say `keel ...`: put this binary first on PATH.
        let bin_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![bin_dir];
        paths.extend(std::env::split_paths(&path));
        let path = std::env::join_paths(paths).context("building PATH")?;
        Ok(Keel {
            exe,
            dir: dir.to_path_buf(),
            env: vec![
                ("PATH".into(), path.to_string_lossy().into_owned()),
                ("RUST_BACKTRACE".into(), "0".into()),
                ("NO_COLOR".into(), "1".into()),
            ],
            logs,
        })
    }

    /// Sets an environment variable for every later subcommand.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.exe);
        command.args(args).current_dir(&self.dir);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Runs `keel ARGS` to completion; its stderr goes to a log file named
    /// after `label`. Returns stdout and the exit code (any code: the caller decides).
    pub fn run(&self, label: &str, args: &[&str]) -> anyhow::Result<Output> {
        let log = self.logs.join(format!("{label}.log"));
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let output = self
            .command(args)
            .stdin(Stdio::null())
            .stderr(stderr)
            .output()
            .with_context(|| format!("running keel {}", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        std::fs::write(self.logs.join(format!("{label}.out")), &stdout)
            .with_context(|| format!("writing the output of keel {}", args.join(" ")))?;
        Ok(Output {
            stdout,
            code: output.status.code().unwrap_or(-1),
        })
    }

    /// Runs `keel ARGS` and fails, pointing at its log, unless it exits 0.
    pub fn run_ok(&self, label: &str, args: &[&str]) -> anyhow::Result<Output> {
        let output = self.run(label, args)?;
        if output.code != 0 {
            let log = self.logs.join(format!("{label}.log"));
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "`keel {}` exited with {}:\n{}\n{}\n(full log: {})",
                args.join(" "),
                output.code,
                output.stdout.trim_end(),
                tail.join("\n"),
                log.display()
            );
        }
        Ok(output)
    }

    /// Starts `keel ARGS` in the background (stdout and stderr to a log file)
    /// and waits until `ready_url` answers 2xx.
    pub async fn spawn(
        &self,
        label: &str,
        args: &[&str],
        ready_url: &str,
    ) -> anyhow::Result<Background> {
        let log = self.logs.join(format!("{label}.log"));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().context("log file")?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting keel {}", args.join(" ")))?;
        let mut background = Background {
            child: Some(child),
            log,
            label: label.to_string(),
        };
        background.wait_ready(ready_url).await?;
        Ok(background)
    }
}

/// A keel server process; stopped with SIGTERM (graceful) when dropped.
pub struct Background {
    child: Option<Child>,
    log: PathBuf,
    label: String,
}

impl Background {
    async fn wait_ready(&mut self, url: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("polling child")?
            {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                bail!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.label,
                    log.trim_end()
                );
            }
            if let Ok(response) = client.get(url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready at {url} after 60 s (log: {})",
                    self.label,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits (up to 20 s) for a graceful exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait().context("waiting for child")?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("{} did not stop within 20 s of SIGTERM", self.label)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the child binds it next).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
