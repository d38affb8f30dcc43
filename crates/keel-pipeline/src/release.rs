//! Git as the record of releases, in the tag format of GTO (DVC's git-native
//! registry) so its tools read keel's tags: an annotated tag `NAME@vN.0.0`
//! on the commit a registered version was trained from (GTO reads SemVer
//! only, so registry version N is vN.0.0), and `NAME#ALIAS#K` for
//! the K-th assignment of ALIAS to that model (on the assigned version's
//! commit). The annotation is JSON: run id, gate results, data digests, or
//! the move with its user and reason. Tags are created locally; pushing them
//! is left to CI. A tag that already exists is never moved (an error names
//! it); a dirty work tree, a repository without commits, a detached HEAD or
//! no git at all each have their own message, and keel works on untagged.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{PipelineError, Result};

/// The tag of version `version` of `name` (SemVer, as GTO requires).
pub fn version_tag(name: &str, version: i64) -> String {
    format!("{name}@v{version}.0.0")
}

/// `NAME@vN` or `NAME@vN.0.0` (a release tag's name) as (NAME, N).
pub fn parse_version_tag(text: &str) -> Option<(String, i64)> {
    let (name, version) = text.rsplit_once("@v")?;
    let number = version
        .strip_suffix(".0.0")
        .unwrap_or(version)
        .parse()
        .ok()?;
    (!name.is_empty() && !name.contains('/')).then(|| (name.to_string(), number))
}

/// The tag of the `k`-th assignment of `alias` on `name`.
pub fn alias_tag(name: &str, alias: &str, k: usize) -> String {
    format!("{name}#{alias}#{k}")
}

/// A git work tree.
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
}

/// Where HEAD is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub commit: String,
    /// None when HEAD is detached.
    pub branch: Option<String>,
    /// Tracked files with uncommitted changes.
    pub dirty: bool,
}

impl Repo {
    /// The repository holding `dir`, or None outside one (or without git).
    pub fn discover(dir: &Path) -> Option<Repo> {
        let root = git(dir, &["rev-parse", "--show-toplevel"]).ok()?;
        Some(Repo {
            root: PathBuf::from(root.trim()),
        })
    }

    fn git(&self, args: &[&str]) -> Result<String> {
        git(&self.root, args)
    }

    /// HEAD's commit, branch and dirty flag; an error says why there is none.
    pub fn head(&self) -> Result<Head> {
        self.head_excluding(&[])
    }

    /// [`Repo::head`], with changes to `outputs` (paths relative to the
    /// repository root, e.g. the `keel.lock` the run itself just wrote) not
    /// counting as dirty.
    pub fn head_excluding(&self, outputs: &[String]) -> Result<Head> {
        let commit = self
            .git(&["rev-parse", "--verify", "--quiet", "HEAD"])
            .map_err(|_| {
                PipelineError::Invalid(
                    "the repository has no commits yet: commit once to get release tags".into(),
                )
            })?
            .trim()
            .to_string();
        let branch = self
            .git(&["symbolic-ref", "--quiet", "--short", "HEAD"])
            .ok()
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty());
        let excludes: Vec<String> = outputs
            .iter()
            .map(|path| format!(":(top,exclude){path}"))
            .collect();
        let mut args = vec!["status", "--porcelain", "--untracked-files=no", "--", ":/"];
        args.extend(excludes.iter().map(String::as_str));
        let dirty = !self.git(&args)?.trim().is_empty();
        Ok(Head {
            commit,
            branch,
            dirty,
        })
    }

    /// The commit `rev` names (`HEAD~1`, a branch, a tag, a sha).
    pub fn resolve(&self, rev: &str) -> Result<String> {
        self.git(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ])
        .map(|c| c.trim().to_string())
        .map_err(|_| PipelineError::Invalid(format!("`{rev}` names no commit here")))
    }

    /// Up to `max` commits before HEAD, newest first, along first parents.
    pub fn ancestors(&self, max: usize) -> Vec<String> {
        self.ancestors_of("HEAD", max)
    }

    /// Up to `max` commits before `commit` along first parents, nearest first
    /// (empty when it has no parent or git does not know it).
    pub fn ancestors_of(&self, commit: &str, max: usize) -> Vec<String> {
        if commit.starts_with('-') {
            return Vec::new();
        }
        self.git(&[
            "rev-list",
            "--first-parent",
            &format!("--max-count={max}"),
            &format!("{commit}~1"),
            "--",
        ])
        .map(|text| text.lines().map(|l| l.trim().to_string()).collect())
        .unwrap_or_default()
    }

    /// Whether `commit` exists in this repository.
    pub fn has_commit(&self, commit: &str) -> bool {
        self.resolve(commit).is_ok()
    }

    /// Creates the annotated tag `tag` on `commit`; an existing tag is an
    /// error naming it (a release tag never moves).
    pub fn tag(&self, tag: &str, commit: &str, message: &str) -> Result<()> {
        if self.tag_commit(tag).is_some() {
            return Err(PipelineError::Invalid(format!(
                "git tag `{tag}` already exists: release tags are never moved (delete it by hand if it is wrong)"
            )));
        }
        let args = [
            "-c",
            "user.name=keel",
            "-c",
            "user.email=keel@localhost",
            "tag",
            "-a",
            tag,
            "-m",
            message,
            commit,
        ];
        match self.later_date(artifact_of(tag))? {
            Some(date) => git_env(&self.root, &args, &[("GIT_COMMITTER_DATE", &date)])?,
            None => self.git(&args)?,
        };
        Ok(())
    }

    /// GTO orders an artifact's registrations and assignments by their
    /// tags' dates, which git keeps to the second: two moves of an alias in
    /// one second would tie and GTO could show the older as current. A new
    /// tag is therefore dated one second after the artifact's newest tag
    /// when that one is not already in the past (`None`: now is later).
    fn later_date(&self, artifact: &str) -> Result<Option<String>> {
        let listed = self.git(&[
            "for-each-ref",
            "--format=%(taggerdate:unix)",
            &format!("refs/tags/{artifact}@*"),
            &format!("refs/tags/{artifact}#*"),
        ])?;
        let Some(newest) = listed
            .lines()
            .filter_map(|line| line.trim().parse::<i64>().ok())
            .max()
        else {
            return Ok(None);
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Ok((newest >= now).then(|| format!("{} +0000", newest + 1)))
    }

    /// The commit a tag points at, if it exists.
    pub fn tag_commit(&self, tag: &str) -> Option<String> {
        self.git(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/tags/{tag}^{{commit}}"),
        ])
        .ok()
        .map(|c| c.trim().to_string())
    }

    /// A tag's annotation, if it exists.
    pub fn annotation(&self, tag: &str) -> Option<String> {
        self.git(&[
            "for-each-ref",
            &format!("refs/tags/{tag}"),
            "--format=%(contents)",
        ])
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
    }

    /// The next assignment tag of `alias` on `name`: one more than the
    /// highest K among the existing `NAME#ALIAS#K` tags.
    pub fn next_alias_tag(&self, name: &str, alias: &str) -> Result<String> {
        let prefix = format!("{name}#{alias}#");
        let listed = self.git(&["tag", "--list", &format!("{prefix}*")])?;
        let highest = listed
            .lines()
            .filter_map(|tag| tag.trim().strip_prefix(&prefix)?.parse::<usize>().ok())
            .max()
            .unwrap_or(0);
        Ok(alias_tag(name, alias, highest + 1))
    }
}

/// The artifact a release tag belongs to: `risk` of `risk@v1.0.0` and of
/// `risk#production#3`.
fn artifact_of(tag: &str) -> &str {
    tag.split(['@', '#']).next().unwrap_or(tag)
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    git_env(dir, args, &[])
}

fn git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let output = Command::new("git")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .map_err(|error| PipelineError::Invalid(format!("cannot run git: {error}")))?;
    if !output.status.success() {
        return Err(PipelineError::Invalid(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// What a registration may tag, decided before anything is written: the
/// commit to tag, or why there is none (said to the user; keel goes on).
/// `outputs` are files or folders the run itself wrote (its `keel.lock`,
/// keel's `.keel/`), whose changes do not make the tree dirty.
pub fn release_commit(root: &Path, outputs: &[&Path]) -> std::result::Result<(Repo, Head), String> {
    let Some(repo) = Repo::discover(root) else {
        return Err("not a git repository: no release tags".into());
    };
    let relative: Vec<String> = outputs
        .iter()
        .filter_map(|path| {
            let path = path
                .canonicalize()
                .ok()
                .unwrap_or_else(|| path.to_path_buf());
            let top = repo.root.canonicalize().ok()?;
            path.strip_prefix(&top)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        })
        .collect();
    let head = repo
        .head_excluding(&relative)
        .map_err(|error| error.to_string())?;
    if head.dirty {
        return Err(
            "the work tree has uncommitted changes: registered without a release tag (commit, then run again to tag)"
                .into(),
        );
    }
    Ok((repo, head))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> (tempfile::TempDir, Repo) {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]).unwrap();
        let repo = Repo::discover(dir.path()).unwrap();
        (dir, repo)
    }

    fn commit(dir: &Path, file: &str) {
        std::fs::write(dir.join(file), file).unwrap();
        git(dir, &["add", file]).unwrap();
        git(
            dir,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                file,
            ],
        )
        .unwrap();
    }

    #[test]
    fn tags_never_move_and_alias_tags_count_up() {
        let (dir, repo) = repo();
        assert!(
            repo.head()
                .unwrap_err()
                .to_string()
                .contains("no commits yet")
        );
        commit(dir.path(), "a");
        let head = repo.head().unwrap();
        assert_eq!(head.branch.as_deref(), Some("main"));
        assert!(!head.dirty);
        repo.tag(
            &version_tag("risk", 1),
            &head.commit,
            "{\"run_id\": \"r1\"}",
        )
        .unwrap();
        assert_eq!(
            repo.tag_commit("risk@v1.0.0").as_deref(),
            Some(head.commit.as_str())
        );
        assert_eq!(
            repo.annotation("risk@v1.0.0").as_deref(),
            Some("{\"run_id\": \"r1\"}")
        );
        commit(dir.path(), "b");
        let error = repo
            .tag("risk@v1.0.0", &repo.head().unwrap().commit, "again")
            .unwrap_err();
        assert!(
            error.to_string().contains("`risk@v1.0.0` already exists"),
            "{error}"
        );
        assert_eq!(
            repo.tag_commit("risk@v1.0.0").as_deref(),
            Some(head.commit.as_str())
        );
        assert_eq!(
            repo.next_alias_tag("risk", "production").unwrap(),
            "risk#production#1"
        );
        repo.tag("risk#production#1", &head.commit, "{}").unwrap();
        repo.tag("risk#production#2", &head.commit, "{}").unwrap();
        // Made within one second, the tags still date in their order (GTO
        // sorts by date): each is later than the artifact's one before.
        let dates: Vec<i64> = ["risk@v1.0.0", "risk#production#1", "risk#production#2"]
            .iter()
            .map(|tag| {
                repo.git(&[
                    "for-each-ref",
                    "--format=%(taggerdate:unix)",
                    &format!("refs/tags/{tag}"),
                ])
                .unwrap()
                .trim()
                .parse()
                .unwrap()
            })
            .collect();
        assert!(dates.windows(2).all(|w| w[0] < w[1]), "{dates:?}");
        assert_eq!(
            repo.next_alias_tag("risk", "production").unwrap(),
            "risk#production#3"
        );
        assert_eq!(
            repo.next_alias_tag("risk", "staging").unwrap(),
            "risk#staging#1"
        );
        assert_eq!(repo.resolve("HEAD~1").unwrap(), head.commit);
        assert!(repo.resolve("no-such-rev").is_err());
        // A dirty tree and a detached HEAD are told apart.
        std::fs::write(dir.path().join("a"), "changed").unwrap();
        assert!(
            release_commit(dir.path(), &[])
                .unwrap_err()
                .contains("uncommitted changes")
        );
        // The run's own lock file does not count.
        assert!(release_commit(dir.path(), &[&dir.path().join("a")]).is_ok());
        git(dir.path(), &["checkout", "-q", "--", "a"]).unwrap();
        git(dir.path(), &["checkout", "-q", "--detach"]).unwrap();
        assert_eq!(repo.head().unwrap().branch, None);
        let outside = tempfile::tempdir().unwrap();
        assert!(
            release_commit(outside.path(), &[])
                .unwrap_err()
                .contains("not a git repository")
        );
    }
}
