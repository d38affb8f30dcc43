//! `keel data gc`: removes cache objects that no metafile references, in the
//! workspace and in the given git revisions. A dry run unless `force`.

use std::collections::HashSet;

use crate::error::Result;
use crate::git;
use crate::hash::Digest;
use crate::metafile::Kind;
use crate::workspace::Workspace;

/// What gc found (and, with force, removed).
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// Objects kept because something references them.
    pub kept: u64,
    /// Objects no scope references, with sizes.
    pub unreferenced: Vec<(Digest, u64)>,
    /// Whether they were deleted.
    pub removed: bool,
    /// Scopes whose directory manifests were not in the cache.
    pub notes: Vec<String>,
}

impl GcReport {
    /// Bytes held by unreferenced objects.
    pub fn unreferenced_bytes(&self) -> u64 {
        self.unreferenced.iter().map(|(_, size)| size).sum()
    }
}

/// Finds (and with `force` deletes) unreferenced objects. The workspace's
/// metafiles are always in scope; `revs` and `all_commits` add git history.
pub fn gc(
    workspace: &Workspace,
    revs: &[String],
    all_commits: bool,
    force: bool,
) -> Result<GcReport> {
    let root = workspace.project().root();
    let mut snapshots = vec![("workspace".to_string(), git::workspace_snapshot(root)?)];
    let mut revs = revs.to_vec();
    if all_commits {
        revs.extend(git::all_commits(root)?);
    }
    for rev in revs {
        let snapshot = git::snapshot_at(root, &rev)?;
        snapshots.push((rev, snapshot));
    }
    let mut referenced: HashSet<Digest> = HashSet::new();
    let mut report = GcReport::default();
    for (scope, snapshot) in &snapshots {
        for (path, metafile) in snapshot {
            if !referenced.insert(metafile.digest) || metafile.kind != Kind::Directory {
                continue;
            }
            match workspace.manifest(&metafile.digest)? {
                Some(manifest) => {
                    referenced.extend(manifest.entries.iter().map(|entry| entry.digest))
                }
                None => report
                    .notes
                    .push(format!("{scope}: manifest of {path} is not in the cache")),
            }
        }
    }
    for (digest, size) in workspace.cache().list()? {
        if referenced.contains(&digest) {
            report.kept += 1;
        } else {
            report.unreferenced.push((digest, size));
        }
    }
    report.unreferenced.sort();
    if force {
        let doomed: Vec<Digest> = report
            .unreferenced
            .iter()
            .map(|(digest, _)| *digest)
            .collect();
        // Packs keeping a live object are rewritten without the others.
        workspace.cache().remove_all(&doomed)?;
        workspace.cache().remove_stale_temps()?;
        report.removed = true;
    }
    Ok(report)
}
