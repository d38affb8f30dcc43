//! `keel.lock`: what each stage last ran with — its command, the values of
//! its params, and the BLAKE3 digests of its deps and outputs. Committed next
//! to keel.yaml; written in a stable order (stages, params and paths sorted)
//! so diffs show only what changed; atomically replaced (temp + rename).

use std::collections::BTreeMap;
use std::path::Path;

use keel_data::Digest;
use keel_yaml::{self as yaml, Node, YamlError, quote};

use crate::error::{PipelineError, Result};

/// The lock file's name next to keel.yaml.
pub const LOCK_FILE: &str = "keel.lock";
const SCHEMA: i64 = 1;

/// One path's digest: a file's BLAKE3 or a directory's manifest digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub digest: Digest,
    pub size: u64,
    pub files: u64,
}

impl From<keel_data::PathDigest> for Entry {
    fn from(digest: keel_data::PathDigest) -> Self {
        Entry {
            digest: digest.digest,
            size: digest.size,
            files: digest.files,
        }
    }
}

/// What a stage last ran with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StageLock {
    pub cmd: String,
    pub params: BTreeMap<String, String>,
    pub deps: BTreeMap<String, Entry>,
    pub outs: BTreeMap<String, Entry>,
}

/// The whole lock file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lock {
    pub stages: BTreeMap<String, StageLock>,
}

impl Lock {
    /// Reads `path`; a missing file is an empty lock.
    pub fn read(path: &Path) -> Result<Lock> {
        match std::fs::read_to_string(path) {
            Ok(text) => Lock::parse(&text, path),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Lock::default()),
            Err(source) => Err(PipelineError::io(path, source)),
        }
    }

    /// Parses lock text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Lock> {
        let doc = yaml::parse(text, file)?;
        let top = doc.as_map(file)?;
        if let Some(schema) = yaml::get(top, "schema")
            && schema.as_f64(file)? as i64 != SCHEMA
        {
            return Err(YamlError::new(
                file,
                schema.pos,
                format!(
                    "lock schema {} is not supported (this keel writes {SCHEMA})",
                    schema.scalar_text()
                ),
            )
            .into());
        }
        let mut lock = Lock::default();
        if let Some(stages) = yaml::get(top, "stages") {
            for (key, node) in stages.as_map(file)? {
                let entries = node.as_map(file)?;
                let cmd = yaml::get(entries, "cmd")
                    .map(|n| n.as_string(file))
                    .transpose()?
                    .unwrap_or_default();
                let mut params = BTreeMap::new();
                if let Some(node) = yaml::get(entries, "params") {
                    for (param, value) in node.as_map(file)? {
                        params.insert(param.name.clone(), value.as_string(file)?);
                    }
                }
                lock.stages.insert(
                    key.name.clone(),
                    StageLock {
                        cmd,
                        params,
                        deps: entry_list(yaml::get(entries, "deps"), file)?,
                        outs: entry_list(yaml::get(entries, "outs"), file)?,
                    },
                );
            }
        }
        Ok(lock)
    }

    /// The canonical text.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# keel.lock: what each stage last ran with (cmd, params, BLAKE3 of deps and outs).\n# Written by `keel run`; commit it with keel.yaml.\n",
        );
        out.push_str(&format!("schema: {SCHEMA}\nstages:\n"));
        if self.stages.is_empty() {
            out.truncate(out.len() - 1);
            out.push_str(" {}\n");
        }
        for (name, stage) in &self.stages {
            out.push_str(&format!(
                "  {}:\n    cmd: {}\n",
                quote(name),
                quote(&stage.cmd)
            ));
            if stage.params.is_empty() {
                out.push_str("    params: {}\n");
            } else {
                out.push_str("    params:\n");
                for (key, value) in &stage.params {
                    out.push_str(&format!("      {}: {}\n", quote(key), quote(value)));
                }
            }
            for (field, entries) in [("deps", &stage.deps), ("outs", &stage.outs)] {
                if entries.is_empty() {
                    out.push_str(&format!("    {field}: []\n"));
                    continue;
                }
                out.push_str(&format!("    {field}:\n"));
                for (path, entry) in entries {
                    out.push_str(&format!(
                        "      - {{path: {}, blake3: {}, size: {}, files: {}}}\n",
                        quote(path),
                        entry.digest,
                        entry.size,
                        entry.files
                    ));
                }
            }
        }
        out
    }

    /// Writes the lock atomically (keel-fs: temp file, fsync, rename, fsync of the folder).
    pub fn write(&self, path: &Path) -> Result<()> {
        keel_fs::write_atomic(path, self.render().as_bytes())
            .map_err(|source| PipelineError::io(path, source))
    }
}

fn entry_list(node: Option<&Node>, file: &Path) -> Result<BTreeMap<String, Entry>> {
    let mut out = BTreeMap::new();
    let Some(node) = node else {
        return Ok(out);
    };
    for item in node.as_seq(file)? {
        let fields = item.as_map(file)?;
        let field = |name: &str| -> Result<&Node> {
            yaml::get(fields, name).ok_or_else(|| {
                YamlError::new(file, item.pos, format!("lock entry needs `{name}`")).into()
            })
        };
        let path = field("path")?.as_string(file)?;
        let digest_node = field("blake3")?;
        let digest: Digest =
            digest_node
                .as_string(file)?
                .parse()
                .map_err(|error: keel_data::hash::BadDigest| {
                    YamlError::new(file, digest_node.pos, error.to_string())
                })?;
        let count = |name: &str| -> Result<u64> {
            let node = field(name)?;
            let value = node.as_f64(file)?;
            if value < 0.0 || value.fract() != 0.0 {
                return Err(YamlError::new(
                    file,
                    node.pos,
                    format!("`{name}` must be a whole number"),
                )
                .into());
            }
            Ok(value as u64)
        };
        out.insert(
            path,
            Entry {
                digest,
                size: count("size")?,
                files: count("files")?,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(byte: u8, size: u64) -> Entry {
        Entry {
            digest: Digest::of_bytes(&[byte]),
            size,
            files: 1,
        }
    }

    fn sample() -> Lock {
        let mut lock = Lock::default();
        let mut train = StageLock {
            cmd: "keel train --seed 7 --note \"quoted\"".into(),
            ..StageLock::default()
        };
        train.params.insert("train.seed".into(), "7".into());
        train.params.insert("train.lr".into(), "0.1".into());
        train.deps.insert("data/train.csv".into(), entry(1, 10));
        train.deps.insert("b c.csv".into(), entry(2, 20));
        train.outs.insert(
            "model".into(),
            Entry {
                files: 3,
                ..entry(3, 30)
            },
        );
        lock.stages.insert("train".into(), train);
        lock.stages.insert(
            "check".into(),
            StageLock {
                cmd: "keel validate d --schema s".into(),
                ..StageLock::default()
            },
        );
        lock
    }

    #[test]
    fn round_trips_in_a_stable_order() {
        let lock = sample();
        let text = lock.render();
        assert_eq!(Lock::parse(&text, Path::new("keel.lock")).unwrap(), lock);
        // Insertion order does not matter: the text is canonical.
        let mut again = Lock::default();
        for (name, stage) in lock.stages.iter().rev() {
            again.stages.insert(name.clone(), stage.clone());
        }
        assert_eq!(again.render(), text);
        let check = text.find("\"check\"").unwrap();
        let train = text.find("\"train\"").unwrap();
        assert!(check < train);
        assert!(text.find("\"b c.csv\"").unwrap() < text.find("\"data/train.csv\"").unwrap());
        assert!(text.find("train.lr").unwrap() < text.find("train.seed").unwrap());
        assert_eq!(
            Lock::parse(&Lock::default().render(), Path::new("k")).unwrap(),
            Lock::default()
        );
    }

    #[test]
    fn bad_lock_names_position() {
        let text = "schema: 1\nstages:\n  t:\n    cmd: x\n    deps:\n      - {path: a, blake3: nothex, size: 1, files: 1}\n";
        match Lock::parse(text, Path::new("keel.lock")) {
            Err(PipelineError::Yaml(error)) => assert_eq!(error.pos.line, 6),
            other => panic!("{other:?}"),
        }
        assert!(Lock::parse("schema: 9\n", Path::new("keel.lock")).is_err());
    }
}
