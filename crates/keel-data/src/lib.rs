//! keel-data: data and model versioning next to git, in the manner of DVC but
//! built for speed. Files are hashed with BLAKE3 (in parallel across files
//! and, for large files, across chunks); a stat cache keyed by
//! project-relative path keeps unchanged files from being hashed again;
//! objects live in a content-addressed cache (`.keel/cache/blake3/ab/cdef…`;
//! small downloaded ones in packs, `.keel/cache/packs/`) and enter the
//! workspace by reflink, hardlink or copy, read-only. A small text metafile
//! `PATH.keel` next to the data is what git tracks; a tracked directory
//! points at a manifest object. Remotes are `object_store`
//! backends (local directory, S3).
//!
//! Code map:
//! - [`project`]: the root, `.keel/config`, path resolution, the lock.
//! - [`hash`], [`state`]: digests and the stat cache.
//! - [`cache`], [`pack`], [`link`], [`fsutil`]: objects (loose and packed),
//!   the pack format, link strategies, atomic writes.
//! - [`metafile`], [`manifest`]: the two text formats.
//! - [`workspace`]: `add`, `status`, `checkout`.
//! - [`remote`]: `push`, `fetch`, `pull` (async).
//! - [`git`], [`diff`], [`gc`]: history-aware commands.
//! - [`lineage`]: the dataset-input record a run logs.
//!
//! Invariants: an object is never visible under its final name until it is
//! complete; an object is hashed before it is placed in the workspace or
//! sent to or received from a remote; no path outside the project root is
//! ever written. This crate knows nothing about the metadata store or HTTP.

pub mod cache;
pub mod diff;
pub mod error;
pub mod fsutil;
pub mod gc;
pub mod git;
pub mod hash;
pub mod lineage;
pub mod link;
pub mod manifest;
pub mod metafile;
pub mod pack;
pub mod progress;
pub mod project;
pub mod remote;
pub mod state;
pub mod workspace;

pub use error::{DataError, Result};
pub use hash::Digest;
pub use lineage::{DatasetInput, dataset_input};
pub use link::LinkKind;
pub use metafile::{Kind, Metafile};
pub use project::{Config, Project};
pub use workspace::{Options, PathDigest, Workspace, digest_path};
