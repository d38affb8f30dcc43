//! `keel run`: decides which stages are out of date and runs them, in
//! parallel where the graph allows (at most `jobs` at once), streaming each
//! stage's output with a `[stage]` prefix and into `.keel/logs/STAGE.log`.
//!
//! A stage is looked at once every stage it reads from has finished, so a
//! stage downstream of a re-run one runs only if what it reads really
//! changed (as `dvc repro` does). It is out of date when it never ran, its
//! command or params changed, a dep's digest changed, or an output is
//! missing or was modified. Digests come from keel-data's stat cache, so an
//! unchanged file costs one `stat`. Outputs are deleted before a stage runs
//! and must exist afterwards; the lock entry is written as soon as a stage
//! succeeds. A failing stage blocks its dependants; independent stages go
//! on; the run's exit code is the first failure's.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use keel_data::state::StatCache;

use crate::checks::{CheckRecord, FeatureCheckRecord, ValidateRecord};
use crate::config::{Action, Pipeline, Reference, Stage};
use crate::dag::{Dag, overlaps};
use crate::error::{PipelineError, Result};
use crate::lock::{Entry, LOCK_FILE, Lock, StageLock};

/// Where keel keeps per-project state, under the project root.
pub const STATE_DIR: &str = ".keel";

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stages to bring up to date with what they need (all when empty).
    pub targets: Vec<String>,
    /// Run the selected stages even when up to date.
    pub force: bool,
    /// Most stages running at once.
    pub jobs: usize,
    /// Leave out keel's own narration (stage output still streams).
    pub quiet: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            targets: Vec::new(),
            force: false,
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
            quiet: false,
        }
    }
}

/// What happened to a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageStatus {
    /// Ran and succeeded.
    Ran,
    /// Up to date.
    Skipped,
    /// Ran and failed with this exit code.
    Failed(i32),
    /// Not run because this upstream stage failed.
    Blocked(String),
    /// Not among the requested stages or what they need.
    NotSelected,
}

impl StageStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            StageStatus::Ran => "ran",
            StageStatus::Skipped => "skipped",
            StageStatus::Failed(_) => "failed",
            StageStatus::Blocked(_) => "blocked",
            StageStatus::NotSelected => "not selected",
        }
    }
}

/// One stage's outcome.
#[derive(Debug, Clone)]
pub struct StageReport {
    pub name: String,
    pub status: StageStatus,
    /// Why it ran (or why it failed).
    pub reason: String,
    pub seconds: f64,
    /// Its log file, when it ran.
    pub log: Option<PathBuf>,
}

/// The outcome of `keel run`.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// In keel.yaml order.
    pub stages: Vec<StageReport>,
    /// 0, or the exit code of the first stage that failed.
    pub exit_code: i32,
    /// Digests of the pipeline's inputs (deps no stage writes).
    pub inputs: BTreeMap<String, Entry>,
    pub seconds: f64,
}

impl RunReport {
    /// Whether every selected stage ran or was up to date.
    pub fn succeeded(&self) -> bool {
        self.exit_code == 0
    }
}

/// Paths of keel's per-project files.
pub fn lock_path(pipeline: &Pipeline) -> PathBuf {
    pipeline.root.join(LOCK_FILE)
}

/// Lines `.keel/.gitignore` must hold for the pipeline's local files (the
/// store, artifacts, logs, stat cache and report are per machine).
const IGNORED: [&str; 5] = [
    "/keel.db*",
    "/artifacts/",
    "/logs/",
    "/state/",
    "/report.md",
];

/// Makes sure `.keel/` exists and git ignores keel's local files in it.
pub fn ensure_state_dir(root: &Path) -> Result<()> {
    let dir = root.join(STATE_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| PipelineError::io(&dir, source))?;
    let gitignore = dir.join(".gitignore");
    let text = match std::fs::read_to_string(&gitignore) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(PipelineError::io(&gitignore, source)),
    };
    let missing: Vec<&str> = IGNORED
        .iter()
        .copied()
        .filter(|line| !text.lines().any(|l| l.trim() == *line))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut text = text;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# keel run: local store, artifacts, logs, stat cache, report\n");
    for line in missing {
        text.push_str(line);
        text.push('\n');
    }
    keel_fs::write_atomic(&gitignore, text.as_bytes())
        .map_err(|source| PipelineError::io(&gitignore, source))
}

/// The current digest of a project path (stat-cached), if it exists.
pub fn digest(root: &Path, path: &str) -> Result<Option<Entry>> {
    let mut stat = StatCache::load(&stat_cache_path(root));
    let entry = keel_data::digest_path(root, path, &mut stat)?.map(Entry::from);
    stat.save()?;
    Ok(entry)
}

fn stat_cache_path(root: &Path) -> PathBuf {
    root.join(STATE_DIR)
        .join("state")
        .join("pipeline-stat-cache")
}

/// Where `keel run` puts the production model's training profile (fetched
/// from the registry before the stages start) for `reference: production`.
pub const PRODUCTION_PROFILE: &str = ".keel/state/production-profile.json";

/// The log file of a stage.
pub fn log_path(root: &Path, stage: &str) -> PathBuf {
    root.join(STATE_DIR)
        .join("logs")
        .join(format!("{stage}.log"))
}

enum State {
    Pending,
    Running,
    Done(StageStatus),
}

/// A stage's output, line by line: to the terminal with a prefix, and to its log.
struct Output {
    prefix: String,
    log: Mutex<File>,
}

impl Output {
    fn line(&self, to_stderr: bool, text: &str) {
        let text = text.trim_end_matches(['\n', '\r']);
        if to_stderr {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{}{text}", self.prefix);
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}{text}", self.prefix);
        }
        if let Ok(mut log) = self.log.lock() {
            let _ = writeln!(log, "{text}");
        }
    }

    fn copy(&self, stream: impl Read, to_stderr: bool) {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => self.line(to_stderr, &String::from_utf8_lossy(&buffer)),
            }
        }
    }
}

/// Runs the pipeline; see the module docs.
pub fn run(pipeline: &Pipeline, options: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let root = &pipeline.root;
    let dag = Dag::build(pipeline, |path| root.join(path).exists())?;
    ensure_state_dir(root)?;
    let mut targets = Vec::new();
    for target in &options.targets {
        let index = pipeline
            .stages
            .iter()
            .position(|stage| &stage.name == target)
            .ok_or_else(|| {
                let names: Vec<&str> = pipeline.stages.iter().map(|s| s.name.as_str()).collect();
                PipelineError::Invalid(format!(
                    "no stage named `{target}` in {} (stages: {})",
                    pipeline.file.display(),
                    names.join(", ")
                ))
            })?;
        targets.push(index);
    }
    let selected = dag.select(&targets);
    let lock_file = lock_path(pipeline);
    let mut lock = Lock::read(&lock_file)?;
    let mut stat = StatCache::load(&stat_cache_path(root));
    let jobs = options.jobs.max(1);

    let produced: BTreeSet<&str> = pipeline
        .stages
        .iter()
        .flat_map(|stage| stage.produced().map(|p| p.path.as_str()))
        .collect();
    let mut inputs = BTreeMap::new();

    let n = pipeline.stages.len();
    let mut states: Vec<State> = (0..n)
        .map(|i| {
            if selected.contains(&i) {
                State::Pending
            } else {
                State::Done(StageStatus::NotSelected)
            }
        })
        .collect();
    let mut reports: Vec<StageReport> = pipeline
        .stages
        .iter()
        .map(|stage| StageReport {
            name: stage.name.clone(),
            status: StageStatus::NotSelected,
            reason: String::new(),
            seconds: 0.0,
            log: None,
        })
        .collect();
    let mut pending_deps: Vec<BTreeMap<String, Entry>> = vec![BTreeMap::new(); n];
    let mut ready: Vec<usize> = Vec::new();
    let mut running = 0usize;
    let (tx, rx) = mpsc::channel::<(usize, i32, f64, String)>();

    loop {
        // Look at every pending stage whose upstream stages are all done.
        for &index in &dag.order {
            if !matches!(states[index], State::Pending) || ready.contains(&index) {
                continue;
            }
            let mut blocked_by = None;
            let mut waiting = false;
            for &up in &dag.upstream[index] {
                match &states[up] {
                    State::Done(StageStatus::Ran | StageStatus::Skipped) => {}
                    State::Done(_) => blocked_by = Some(pipeline.stages[up].name.clone()),
                    _ => waiting = true,
                }
            }
            if waiting {
                continue;
            }
            let stage = &pipeline.stages[index];
            if let Some(by) = blocked_by {
                narrate(
                    options,
                    &stage.name,
                    &format!("not run: upstream stage `{by}` failed"),
                );
                reports[index].status = StageStatus::Blocked(by.clone());
                states[index] = State::Done(StageStatus::Blocked(by));
                continue;
            }
            let mut deps = BTreeMap::new();
            for dep in &stage.deps {
                match keel_data::digest_path(root, &dep.path, &mut stat)? {
                    Some(digest) => {
                        let entry = Entry::from(digest);
                        if !produced.iter().any(|p| overlaps(p, &dep.path)) {
                            inputs.insert(dep.path.clone(), entry);
                        }
                        deps.insert(dep.path.clone(), entry);
                    }
                    None => {
                        return Err(PipelineError::Invalid(format!(
                            "stage `{}`: input `{}` does not exist",
                            stage.name, dep.path
                        )));
                    }
                }
            }
            if let Action::FeatureCheck {
                reference: Reference::Production,
                ..
            } = &stage.action
                && let Some(digest) = keel_data::digest_path(root, PRODUCTION_PROFILE, &mut stat)?
            {
                deps.insert(PRODUCTION_PROFILE.to_string(), Entry::from(digest));
            }
            let reason = if options.force {
                Some("forced".to_string())
            } else {
                why_stale(root, stage, lock.stages.get(&stage.name), &deps, &mut stat)?
            };
            match reason {
                None => {
                    narrate(options, &stage.name, "up to date, skipped");
                    reports[index].status = StageStatus::Skipped;
                    states[index] = State::Done(StageStatus::Skipped);
                }
                Some(reason) => {
                    reports[index].reason = reason;
                    pending_deps[index] = deps;
                    ready.push(index);
                }
            }
        }
        // Start what the job limit allows, in graph order.
        while running < jobs && !ready.is_empty() {
            let index = ready.remove(0);
            let stage = pipeline.stages[index].clone();
            narrate(
                options,
                &stage.name,
                &format!(
                    "running ({}): {}",
                    reports[index].reason,
                    stage.command_text()
                ),
            );
            remove_outputs(root, &stage)?;
            let log = log_path(root, &stage.name);
            if let Some(dir) = log.parent() {
                std::fs::create_dir_all(dir).map_err(|source| PipelineError::io(dir, source))?;
            }
            let file = File::create(&log).map_err(|source| PipelineError::io(&log, source))?;
            reports[index].log = Some(log);
            let output = Arc::new(Output {
                prefix: format!("[{}] ", stage.name),
                log: Mutex::new(file),
            });
            let tx = tx.clone();
            let root = root.clone();
            states[index] = State::Running;
            running += 1;
            std::thread::spawn(move || {
                let started = Instant::now();
                let (code, message) = execute(&root, &stage, &output);
                let _ = tx.send((index, code, started.elapsed().as_secs_f64(), message));
            });
        }
        if running == 0 {
            break;
        }
        let Ok((index, mut code, seconds, mut message)) = rx.recv() else {
            break;
        };
        running -= 1;
        let stage = &pipeline.stages[index];
        reports[index].seconds = seconds;
        let mut outs = BTreeMap::new();
        if code == 0 {
            for out in stage.produced() {
                match keel_data::digest_path(root, &out.path, &mut stat)? {
                    Some(digest) => {
                        outs.insert(out.path.clone(), Entry::from(digest));
                    }
                    None => {
                        code = 1;
                        message = format!("did not write its declared output `{}`", out.path);
                        break;
                    }
                }
            }
        }
        if code == 0 {
            narrate(options, &stage.name, &format!("done in {seconds:.2}s"));
            lock.stages.insert(
                stage.name.clone(),
                StageLock {
                    cmd: stage.command_text(),
                    params: stage.params.clone(),
                    deps: std::mem::take(&mut pending_deps[index]),
                    outs,
                },
            );
            lock.write(&lock_file)?;
            reports[index].status = StageStatus::Ran;
            states[index] = State::Done(StageStatus::Ran);
        } else {
            let text = if message.is_empty() {
                format!("failed with exit code {code} after {seconds:.2}s")
            } else {
                format!("failed: {message}")
            };
            eprintln!("[{}] {text}", stage.name);
            reports[index].reason = text;
            reports[index].status = StageStatus::Failed(code);
            states[index] = State::Done(StageStatus::Failed(code));
        }
    }
    stat.save()?;
    // The first failed stage in keel.yaml's order decides the exit code, not
    // whichever failure finished first (stages run in parallel).
    let exit_code = reports
        .iter()
        .find_map(|report| match report.status {
            StageStatus::Failed(code) => Some(code),
            _ => None,
        })
        .unwrap_or(0);
    Ok(RunReport {
        stages: reports,
        exit_code,
        inputs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn narrate(options: &RunOptions, stage: &str, text: &str) {
    if !options.quiet {
        println!("[{stage}] {text}");
    }
}

/// Why `stage` must run, or `None` when it is up to date.
fn why_stale(
    root: &Path,
    stage: &Stage,
    locked: Option<&StageLock>,
    deps: &BTreeMap<String, Entry>,
    stat: &mut StatCache,
) -> Result<Option<String>> {
    let Some(locked) = locked else {
        return Ok(Some("never ran".into()));
    };
    if locked.params != stage.params {
        let keys: BTreeSet<&String> = locked.params.keys().chain(stage.params.keys()).collect();
        let changes: Vec<String> = keys
            .into_iter()
            .filter(|key| locked.params.get(*key) != stage.params.get(*key))
            .map(|key| {
                let show = |v: Option<&String>| v.map_or("(none)".to_string(), String::clone);
                format!(
                    "{key} {} -> {}",
                    show(locked.params.get(key)),
                    show(stage.params.get(key))
                )
            })
            .collect();
        return Ok(Some(format!("params changed: {}", changes.join(", "))));
    }
    if locked.cmd != stage.command_text() {
        return Ok(Some("command changed".into()));
    }
    if &locked.deps != deps {
        let keys: BTreeSet<&String> = locked.deps.keys().chain(deps.keys()).collect();
        let changed: Vec<&str> = keys
            .into_iter()
            .filter(|key| locked.deps.get(*key) != deps.get(*key))
            .map(String::as_str)
            .collect();
        return Ok(Some(format!("deps changed: {}", changed.join(", "))));
    }
    let declared: BTreeSet<&str> = stage.produced().map(|p| p.path.as_str()).collect();
    if declared != locked.outs.keys().map(String::as_str).collect() {
        return Ok(Some("outputs changed in keel.yaml".into()));
    }
    for (path, entry) in &locked.outs {
        match keel_data::digest_path(root, path, stat)? {
            None => return Ok(Some(format!("output {path} is missing"))),
            Some(digest) if Entry::from(digest) != *entry => {
                return Ok(Some(format!("output {path} was modified")));
            }
            Some(_) => {}
        }
    }
    Ok(None)
}

fn remove_outputs(root: &Path, stage: &Stage) -> Result<()> {
    for out in stage.produced() {
        let path = root.join(&out.path);
        let result = match std::fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(_) => Ok(()),
        };
        result.map_err(|source| PipelineError::io(&path, source))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| PipelineError::io(parent, source))?;
        }
    }
    Ok(())
}

/// PATH with the running keel's folder first, so `keel ...` in a stage's
/// command is this keel.
fn stage_path_env() -> Option<std::ffi::OsString> {
    let exe_dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
    let mut paths = vec![exe_dir];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).ok()
}

/// Runs one stage; returns its exit code and, on a failure keel itself saw, why.
fn execute(root: &Path, stage: &Stage, output: &Arc<Output>) -> (i32, String) {
    if stage.checked_data().is_some()
        && let Err(error) = crate::checks::clear(root, &stage.name)
    {
        return (1, format!("removing the step's previous record: {error}"));
    }
    match &stage.action {
        Action::Cmd { command, .. } => {
            let mut builder = Command::new("sh");
            builder
                .arg("-c")
                .arg(command)
                .current_dir(root)
                .env("KEEL_STAGE", &stage.name)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if let Some(path) = stage_path_env() {
                builder.env("PATH", path);
            }
            let mut child = match builder.spawn() {
                Ok(child) => child,
                Err(error) => return (127, format!("cannot start `sh -c {command}`: {error}")),
            };
            let stdout = child.stdout.take();
            let stderr = child.stderr.take();
            let out_copy = output.clone();
            let err_copy = output.clone();
            let threads = [
                stdout.map(|s| std::thread::spawn(move || out_copy.copy(s, false))),
                stderr.map(|s| std::thread::spawn(move || err_copy.copy(s, true))),
            ];
            let status = child.wait();
            for thread in threads.into_iter().flatten() {
                let _ = thread.join();
            }
            match status {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    match (status.code(), status.signal()) {
                        (Some(code), _) => (code, String::new()),
                        (None, Some(signal)) => {
                            (128 + signal, format!("killed by signal {signal}"))
                        }
                        (None, None) => (1, "ended without an exit code".into()),
                    }
                }
                Err(error) => (1, format!("waiting for the command: {error}")),
            }
        }
        Action::FeatureCheck {
            data,
            reference,
            label,
            thresholds,
        } => feature_check(
            root,
            &stage.name,
            data,
            reference,
            label.as_deref(),
            thresholds,
            output,
        ),
        Action::Validate { data, schema } => {
            let outcome = keel_validate::Schema::read(&root.join(&schema.path))
                .and_then(|schema| keel_validate::validate_path(&root.join(&data.path), &schema));
            match outcome {
                Ok(mut report) => {
                    // Name the files as keel.yaml does, relative to the project.
                    report.data = PathBuf::from(&data.path);
                    report.schema = Some(PathBuf::from(&schema.path));
                    for line in report.render().lines() {
                        output.line(false, line);
                    }
                    let record = CheckRecord::Validate(ValidateRecord::from_report(
                        &data.path,
                        &schema.path,
                        &report,
                    ));
                    record_check(root, &stage.name, &record, output);
                    if report.is_clean() {
                        (0, String::new())
                    } else {
                        (1, format!("{} violates {}", data.path, schema.path))
                    }
                }
                Err(error) => {
                    output.line(true, &error.to_string());
                    (1, error.to_string())
                }
            }
        }
    }
}

/// Keeps a built-in step's record for the run (`keel report` reads it);
/// a record that cannot be written is a warning, not a failed step.
fn record_check(root: &Path, stage: &str, record: &CheckRecord, output: &Output) {
    if let Err(error) = crate::checks::write(root, stage, record) {
        output.line(
            true,
            &format!("warning: the check's record was not kept: {error}"),
        );
    }
}

/// The built-in feature check: the new training data against the reference
/// profile, with keel-monitor's thresholds; exit 1 when a check fires.
fn feature_check(
    root: &Path,
    stage: &str,
    data: &crate::config::PathRef,
    reference: &Reference,
    label: Option<&str>,
    thresholds: &serde_json::Value,
    output: &Output,
) -> (i32, String) {
    let reference_path = match reference {
        Reference::Production => root.join(PRODUCTION_PROFILE),
        Reference::File(path) => root.join(&path.path),
    };
    let reference_name = match reference {
        Reference::Production => "production".to_string(),
        Reference::File(path) => path.path.clone(),
    };
    let record = |report: Option<&keel_monitor::validate::ValidationReport>| {
        CheckRecord::FeatureCheck(FeatureCheckRecord {
            data: data.path.clone(),
            reference: reference_name.clone(),
            report: report.map(|r| Box::new(r.clone())),
        })
    };
    if !reference_path.is_file() {
        output.line(
            false,
            "no production model with a stored training profile yet: nothing to compare with, passed",
        );
        record_check(root, stage, &record(None), output);
        return (0, String::new());
    }
    let outcome = (|| -> std::result::Result<keel_monitor::validate::ValidationReport, String> {
        let config: keel_monitor::validate::ValidationConfig =
            serde_json::from_value(thresholds.clone()).map_err(|e| format!("thresholds: {e}"))?;
        let profile =
            keel_monitor::Profile::read_json(&reference_path).map_err(|e| e.to_string())?;
        let table =
            keel_table::Table::read(&root.join(&data.path), &[]).map_err(|e| e.to_string())?;
        keel_monitor::validate::validate_training_data(&profile, &table, label, &config)
            .map_err(|e| e.to_string())
    })();
    match outcome {
        Ok(report) => {
            record_check(root, stage, &record(Some(&report)), output);
            let flagged = report.features.iter().filter(|f| f.flagged).count();
            output.line(
                false,
                &format!(
                    "{}: {} features compared with the reference profile, {flagged} moved beyond thresholds",
                    data.path,
                    report.features.len()
                ),
            );
            for feature in report.features.iter().filter(|f| f.flagged) {
                output.line(
                    false,
                    &format!("  {}: {}", feature.column, feature.reasons.join("; ")),
                );
            }
            for change in report.correlations.iter().filter(|c| c.flagged) {
                output.line(
                    false,
                    &format!(
                        "  correlation {} ~ {}: {:.3} -> {:.3}",
                        change.a, change.b, change.reference, change.candidate
                    ),
                );
            }
            if let Some(balance) = &report.label_balance {
                output.line(
                    false,
                    &format!(
                        "  label {}: largest class share change {:.3}{}",
                        balance.column,
                        balance.max_change,
                        if balance.flagged {
                            " (beyond threshold)"
                        } else {
                            ""
                        }
                    ),
                );
            }
            for problem in report.problems.iter().filter(|p| p.starts_with("column ")) {
                output.line(false, &format!("  {problem}"));
            }
            if report.passed {
                (0, String::new())
            } else {
                (
                    1,
                    format!("{} moved beyond the feature thresholds", data.path),
                )
            }
        }
        Err(message) => {
            output.line(true, &message);
            (1, message)
        }
    }
}
