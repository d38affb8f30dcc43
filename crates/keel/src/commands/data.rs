//! `keel data …`: data and model versioning next to git. Argument parsing and
//! printing only; the work is in the keel-data crate.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use keel_data::diff::Side;
use keel_data::{Kind, LinkKind, Options, Project, Workspace, remote};

/// Arguments of `keel data`.
#[derive(Debug, clap::Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Track files or directories: hash, store in the cache, write PATH.keel.
    Add {
        /// Files or directories inside the project.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        link: LinkArg,
    },
    /// Show what changed in the workspace versus the metafiles; with
    /// --remote, which objects the remote lacks or only the remote has.
    Status {
        /// Tracked paths (default: all).
        paths: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Compare the cache with a remote (the default one when no NAME).
        #[arg(long, short, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
        remote: Option<String>,
    },
    /// Make tracked files safe to edit in place: a file hardlinked to the
    /// cache becomes a private writable copy, others get write permission.
    /// Run `keel data add` afterwards to record the edits.
    Unprotect {
        /// Tracked files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Make the workspace match the metafiles (e.g. after `git checkout`).
    Checkout {
        /// Tracked paths (default: all).
        paths: Vec<PathBuf>,
        /// Discard local changes that are not in the cache.
        #[arg(long, short)]
        force: bool,
        #[command(flatten)]
        link: LinkArg,
    },
    /// Upload the objects a remote lacks.
    Push(TransferArgs),
    /// Download missing objects into the cache, then check out.
    Pull {
        #[command(flatten)]
        transfer: TransferArgs,
        /// Discard local changes that are not in the cache.
        #[arg(long, short)]
        force: bool,
    },
    /// Download missing objects into the cache (workspace untouched).
    Fetch(TransferArgs),
    /// Files added, deleted or modified between two revisions (default: HEAD
    /// and the workspace's metafiles); row and column changes for CSV/TSV.
    Diff {
        /// Older revision (default HEAD).
        from: Option<String>,
        /// Newer revision (default: the workspace).
        to: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tracked paths, or the files inside a tracked directory.
    Ls {
        /// Tracked paths (default: all).
        paths: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove cache objects no metafile references (dry run unless --force);
    /// with --remote, also what pushes killed midway left on the remote.
    Gc {
        /// Also keep what this git revision references (repeatable).
        #[arg(long = "rev")]
        revs: Vec<String>,
        /// Keep what any commit references.
        #[arg(long)]
        all_commits: bool,
        /// Actually delete.
        #[arg(long, short)]
        force: bool,
        /// Also remove partial uploads of killed pushes from the remote (the
        /// default one when no NAME): packs without their index and, on a
        /// local-directory remote, upload temporaries. Whole objects stay.
        #[arg(long, short, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
        remote: Option<String>,
        /// Only partial uploads older than this count (pushes running now are spared).
        #[arg(long, value_parser = keel_core::duration::parse_flag, default_value = "1h")]
        older_than: std::time::Duration,
    },
    /// Manage remotes.
    Remote {
        #[command(subcommand)]
        command: RemoteCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum RemoteCommand {
    /// Add a remote: a local directory or s3://bucket/prefix. The first is the default.
    Add {
        name: String,
        url: String,
        /// Make this the default remote.
        #[arg(long, short)]
        default: bool,
    },
    /// List remotes (the default is marked with *).
    List,
}

#[derive(Debug, clap::Args)]
pub struct LinkArg {
    /// Link order, e.g. `hardlink,copy` (default from .keel/config: reflink,hardlink,copy).
    #[arg(long, value_name = "KINDS")]
    pub link: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct TransferArgs {
    /// Tracked paths (default: all).
    pub paths: Vec<PathBuf>,
    /// Remote name (default: the configured default).
    #[arg(long, short)]
    pub remote: Option<String>,
    /// Concurrent transfers.
    #[arg(long, short, default_value_t = 16)]
    pub jobs: usize,
}

/// What every data command needs: the project, the cwd, and options.
struct Session {
    project: Project,
    cwd: PathBuf,
    options: Options,
    quiet: bool,
}

impl Session {
    fn new(quiet: bool, link: Option<&LinkArg>) -> anyhow::Result<Self> {
        let cwd = std::env::current_dir().context("current directory")?;
        let project = Project::discover(&cwd)?;
        let link = match link.and_then(|link| link.link.as_deref()) {
            Some(text) => Some(
                LinkKind::parse_list(text)
                    .map_err(|message| anyhow::anyhow!("--link: {message}"))?,
            ),
            None => None,
        };
        // How long to wait for another keel process holding the project lock.
        let lock_wait = match std::env::var("KEEL_LOCK_TIMEOUT") {
            Ok(text) => keel_core::duration::parse("KEEL_LOCK_TIMEOUT", &text)?,
            Err(_) => Options::default().lock_wait,
        };
        let options = Options {
            link,
            progress: keel_data::progress::should_show(quiet),
            lock_wait,
        };
        Ok(Session {
            project,
            cwd,
            options,
            quiet,
        })
    }

    fn targets(&self, paths: &[PathBuf]) -> anyhow::Result<Vec<String>> {
        paths
            .iter()
            .map(|path| {
                self.project
                    .resolve(path, &self.cwd)
                    .map_err(anyhow::Error::from)
            })
            .collect()
    }

    fn workspace(&self) -> anyhow::Result<Workspace> {
        Ok(Workspace::open(self.project.clone(), &self.options)?)
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn run(args: DataArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    match args.command {
        DataCommand::Add { paths, link } => {
            let session = Session::new(quiet, Some(&link))?;
            let targets = session.targets(&paths)?;
            let outcomes = session.workspace()?.add(&targets)?;
            if !session.quiet {
                for outcome in &outcomes {
                    let metafile = &outcome.tracked.metafile;
                    println!(
                        "added {} ({}, {} file(s), {}): {} hashed, {} new object(s){}",
                        outcome.tracked.path,
                        metafile.kind.as_str(),
                        metafile.files,
                        human(metafile.size),
                        outcome.hashed_files,
                        outcome.new_objects,
                        outcome
                            .link
                            .map(|kind| format!(" by {}", kind.as_str()))
                            .unwrap_or_default()
                    );
                    if outcome.repaired_objects > 0 {
                        println!(
                            "repaired {} corrupt cache object(s) of {} from the workspace (the bad copies are in .keel/quarantine)",
                            outcome.repaired_objects, outcome.tracked.path
                        );
                    }
                }
                let metafiles: Vec<&str> = outcomes
                    .iter()
                    .map(|outcome| outcome.tracked.metafile_path.as_str())
                    .collect();
                println!("To version it: git add {} .gitignore", metafiles.join(" "));
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Status {
            paths,
            json,
            remote: Some(remote),
        } => {
            let session = Session::new(quiet, None)?;
            let targets = session.targets(&paths)?;
            let workspace = session.workspace()?;
            let name = Some(remote.as_str()).filter(|name| !name.is_empty());
            let remote = remote::open_remote(&workspace, name, false)?;
            let status = runtime()?.block_on(remote::status(&workspace, &remote, &targets))?;
            print_remote_status(&remote.name, &status, json)?;
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Unprotect { paths } => {
            let session = Session::new(quiet, None)?;
            let targets = session.targets(&paths)?;
            let count = session.workspace()?.unprotect(&targets)?;
            if !session.quiet {
                println!(
                    "{count} file(s) are now writable copies; edit them, then `keel data add {}`",
                    targets.join(" ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Status {
            paths,
            json,
            remote: None,
        } => {
            let session = Session::new(quiet, None)?;
            let targets = session.targets(&paths)?;
            let statuses = session.workspace()?.status(&targets)?;
            if json {
                let value: Vec<serde_json::Value> = statuses
                    .iter()
                    .map(|status| {
                        serde_json::json!({
                            "path": status.path,
                            "kind": status.kind.as_str(),
                            "clean": status.is_clean(),
                            "problem": status.problem,
                            "changes": status.changes.iter().map(|(path, change)| serde_json::json!({"path": path, "change": change.as_str()})).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else if !session.quiet {
                if statuses.is_empty() {
                    println!("No tracked data (track some with `keel data add PATH`).");
                } else if statuses.iter().all(|status| status.is_clean()) {
                    println!(
                        "Data and metafiles are up to date ({} tracked path(s)).",
                        statuses.len()
                    );
                }
                for status in statuses.iter().filter(|status| !status.is_clean()) {
                    println!("{}:", status.path);
                    if let Some(problem) = &status.problem {
                        println!("    {problem}");
                    }
                    for (path, change) in &status.changes {
                        println!("    {:<9} {path}", format!("{}:", change.as_str()));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Checkout { paths, force, link } => {
            let session = Session::new(quiet, Some(&link))?;
            let targets = session.targets(&paths)?;
            let report = session.workspace()?.checkout(&targets, force)?;
            Ok(print_checkout(&report, session.quiet))
        }
        DataCommand::Push(transfer) => {
            let session = Session::new(quiet, None)?;
            let targets = session.targets(&transfer.paths)?;
            let workspace = session.workspace()?;
            let remote = remote::open_remote(&workspace, transfer.remote.as_deref(), true)?;
            let report =
                runtime()?.block_on(remote::push(&workspace, &remote, &targets, transfer.jobs))?;
            if !session.quiet {
                println!(
                    "pushed {} object(s), {} to `{}` in {} pack(s); {} already there",
                    report.transferred,
                    human(report.bytes),
                    remote.name,
                    report.packs,
                    report.skipped
                );
            }
            Ok(print_transfer_problems(&report, "cache"))
        }
        DataCommand::Fetch(transfer) => {
            let session = Session::new(quiet, None)?;
            let targets = session.targets(&transfer.paths)?;
            let workspace = session.workspace()?;
            let remote = remote::open_remote(&workspace, transfer.remote.as_deref(), false)?;
            let report =
                runtime()?.block_on(remote::fetch(&workspace, &remote, &targets, transfer.jobs))?;
            if !session.quiet {
                println!(
                    "fetched {} object(s), {} from `{}`; {} already cached",
                    report.transferred,
                    human(report.bytes),
                    remote.name,
                    report.skipped
                );
            }
            Ok(print_transfer_problems(&report, "remote"))
        }
        DataCommand::Pull { transfer, force } => {
            let session = Session::new(quiet, None)?;
            let targets = session.targets(&transfer.paths)?;
            let mut workspace = session.workspace()?;
            let remote = remote::open_remote(&workspace, transfer.remote.as_deref(), false)?;
            let (report, checkout) = runtime()?.block_on(remote::pull(
                &mut workspace,
                &remote,
                &targets,
                transfer.jobs,
                force,
            ))?;
            if !session.quiet {
                println!(
                    "fetched {} object(s), {} from `{}`; {} already cached",
                    report.transferred,
                    human(report.bytes),
                    remote.name,
                    report.skipped
                );
            }
            let transfer_code = print_transfer_problems(&report, "remote");
            let checkout_code = print_checkout(&checkout, session.quiet);
            Ok(if transfer_code == ExitCode::SUCCESS {
                checkout_code
            } else {
                transfer_code
            })
        }
        DataCommand::Diff { from, to, json } => {
            let session = Session::new(quiet, None)?;
            let workspace = Workspace::open_read_only(session.project.clone(), &session.options)?;
            let from = Side::Rev(from.unwrap_or_else(|| "HEAD".into()));
            let to = to.map(Side::Rev).unwrap_or(Side::Workspace);
            let report = keel_data::diff::diff(&workspace, &from, &to)?;
            if json {
                let entries: Vec<serde_json::Value> = report
                    .entries
                    .iter()
                    .map(|entry| {
                        serde_json::json!({
                            "path": entry.path,
                            "change": entry.change.as_str(),
                            "old": entry.old.map(|(digest, size)| serde_json::json!({"digest": digest.to_hex(), "size": size})),
                            "new": entry.new.map(|(digest, size)| serde_json::json!({"digest": digest.to_hex(), "size": size})),
                            "table": entry.table.as_ref().map(|table| serde_json::json!({
                                "rows": {"old": table.old.rows, "new": table.new.rows},
                                "changes": table.changes,
                            })),
                            "note": entry.note,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"from": report.from, "to": report.to, "entries": entries})
                    )?
                );
            } else {
                if report.entries.is_empty() && !session.quiet {
                    println!("No data changes between {} and {}.", report.from, report.to);
                }
                for entry in &report.entries {
                    let sizes = match (entry.old, entry.new) {
                        (Some((_, old)), Some((_, new))) => {
                            format!("{} -> {}", human(old), human(new))
                        }
                        (None, Some((_, new))) => human(new),
                        (Some((_, old)), None) => human(old),
                        (None, None) => String::new(),
                    };
                    println!("{:<9} {}  ({sizes})", entry.change.as_str(), entry.path);
                    if let Some(table) = &entry.table {
                        for line in &table.changes {
                            println!("          {line}");
                        }
                        if table.changes.is_empty() {
                            println!("          same rows, columns and statistics");
                        }
                    }
                    if let Some(note) = &entry.note {
                        println!("          note: {note}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Ls { paths, json } => {
            let session = Session::new(quiet, None)?;
            let targets = session.targets(&paths)?;
            let workspace = Workspace::open_read_only(session.project.clone(), &session.options)?;
            let tracked = workspace.tracked(&targets)?;
            let mut rows = Vec::new();
            for item in &tracked {
                let metafile = &item.metafile;
                let mut files = Vec::new();
                if metafile.kind == Kind::Directory && !targets.is_empty() {
                    match workspace.manifest(&metafile.digest)? {
                        Some(manifest) => files = manifest.entries,
                        None => eprintln!(
                            "note: manifest of {} is not in the cache (run `keel data fetch`)",
                            item.path
                        ),
                    }
                }
                rows.push((item, files));
            }
            if json {
                let value: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(item, files)| {
                        serde_json::json!({
                            "path": item.path,
                            "kind": item.metafile.kind.as_str(),
                            "hash": "blake3",
                            "digest": item.metafile.digest.to_hex(),
                            "size": item.metafile.size,
                            "files": item.metafile.files,
                            "source": item.metafile_path,
                            "cached": workspace.cache().contains(&item.metafile.digest),
                            "entries": files.iter().map(|entry| serde_json::json!({"path": entry.path, "digest": entry.digest.to_hex(), "size": entry.size})).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                for (item, files) in &rows {
                    let metafile = &item.metafile;
                    println!(
                        "{:<9} {:>10} {:>7} file(s)  {}  blake3:{}",
                        metafile.kind.as_str(),
                        human(metafile.size),
                        metafile.files,
                        item.path,
                        &metafile.digest.to_hex()[..16]
                    );
                    for entry in files {
                        println!(
                            "          {:>10}  {}/{}  blake3:{}",
                            human(entry.size),
                            item.path,
                            entry.path,
                            &entry.digest.to_hex()[..16]
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Gc {
            revs,
            all_commits,
            force,
            remote,
            older_than,
        } => {
            let session = Session::new(quiet, None)?;
            let workspace = session.workspace()?;
            if let Some(name) = remote {
                let name = (!name.is_empty()).then_some(name);
                let remote = remote::open_remote(&workspace, name.as_deref(), false)?;
                let partial =
                    runtime()?.block_on(remote::partial_uploads(&remote, older_than, force))?;
                let count = partial.found.len();
                let bytes = human(partial.bytes());
                if partial.removed {
                    println!(
                        "remote `{}`: removed {count} partial upload(s) of killed pushes, {bytes}",
                        remote.name
                    );
                } else {
                    for (path, size) in &partial.found {
                        println!("would remove {path}  {}", human(*size));
                    }
                    println!(
                        "dry run: remote `{}` holds {count} partial upload(s) of killed pushes, {bytes}. Run with --force to delete.",
                        remote.name
                    );
                }
            }
            let report = keel_data::gc::gc(&workspace, &revs, all_commits, force)?;
            for note in &report.notes {
                eprintln!("note: {note}");
            }
            let mut scope = vec!["workspace".to_string()];
            scope.extend(revs.iter().cloned());
            if all_commits {
                scope.push("all commits".into());
            }
            if !session.quiet {
                println!(
                    "keeping what these reference: {} (widen with --rev REV or --all-commits)",
                    scope.join(", ")
                );
            }
            let count = report.unreferenced.len();
            let bytes = human(report.unreferenced_bytes());
            if report.removed {
                println!(
                    "removed {count} unreferenced object(s), {bytes}; kept {}",
                    report.kept
                );
            } else {
                for (digest, size) in &report.unreferenced {
                    println!("would remove {}  {}", digest, human(*size));
                }
                println!(
                    "dry run: {count} unreferenced object(s), {bytes} would be removed; kept {}. Run with --force to delete.",
                    report.kept
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Remote { command } => {
            let cwd = std::env::current_dir().context("current directory")?;
            let project = Project::discover(&cwd)?;
            let mut config = project.config()?;
            match command {
                RemoteCommand::Add { name, url, default } => {
                    config.add_remote(&name, &url, default)?;
                    project.save_config(&config)?;
                    if !quiet {
                        let marker = if config.default_remote.as_deref() == Some(name.as_str()) {
                            " (default)"
                        } else {
                            ""
                        };
                        println!("added remote `{name}` -> {url}{marker}");
                    }
                }
                RemoteCommand::List => {
                    for (name, url) in &config.remotes {
                        let marker = if config.default_remote.as_deref() == Some(name.as_str()) {
                            "*"
                        } else {
                            " "
                        };
                        println!("{marker} {name}\t{url}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_remote_status(
    name: &str,
    status: &remote::RemoteStatus,
    json: bool,
) -> anyhow::Result<()> {
    let list = |items: &[(String, keel_data::Digest)]| {
        items
            .iter()
            .map(|(path, digest)| serde_json::json!({"path": path, "digest": digest.to_hex()}))
            .collect::<Vec<_>>()
    };
    if json {
        let value = serde_json::json!({
            "remote": name,
            "on_remote": status.on_remote,
            "not_pushed": list(&status.not_pushed),
            "not_fetched": list(&status.not_fetched),
            "lost": list(&status.lost),
            "unknown": status.unknown,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "remote `{name}`: {} object(s) there; {} not pushed, {} not fetched, {} in neither",
        status.on_remote,
        status.not_pushed.len(),
        status.not_fetched.len(),
        status.lost.len()
    );
    for (label, items) in [
        ("not pushed:", &status.not_pushed),
        ("not fetched:", &status.not_fetched),
        ("in neither:", &status.lost),
    ] {
        for (path, _) in items.iter() {
            println!("    {label:<13} {path}");
        }
    }
    for path in &status.unknown {
        println!(
            "    {path}: manifest not in the cache; its files were not compared (run `keel data fetch`)"
        );
    }
    Ok(())
}

fn print_checkout(report: &keel_data::workspace::CheckoutReport, quiet: bool) -> ExitCode {
    if !quiet {
        println!(
            "checkout: {} file(s) placed{}, {} unchanged, {} removed",
            report.placed,
            report
                .link
                .map(|kind| format!(" by {}", kind.as_str()))
                .unwrap_or_default(),
            report.unchanged,
            report.removed
        );
    }
    for (path, digest) in &report.corrupt {
        eprintln!(
            "error: corrupt cache object for {path} (blake3:{digest}); not placed, quarantined; run `keel data pull` to fetch a good copy"
        );
    }
    for (path, digest) in &report.missing {
        eprintln!(
            "error: {path}: object blake3:{digest} is not in the cache (run `keel data pull`)"
        );
    }
    for conflict in &report.conflicts {
        eprintln!("error: kept {conflict}");
    }
    for problem in &report.problems {
        eprintln!("error: {problem}");
    }
    if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_transfer_problems(report: &remote::TransferReport, source: &str) -> ExitCode {
    for (path, digest) in &report.corrupt {
        eprintln!(
            "error: corrupt {source} object for {path} (blake3:{digest}): content does not match its digest; not transferred"
        );
    }
    for (path, digest) in &report.missing {
        eprintln!("error: {path}: object blake3:{digest} is missing in the {source}");
    }
    for failure in &report.failed {
        eprintln!("error: {failure}");
    }
    if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
