//! The one partition rule for data processed in shards (`--shard I/N` of
//! `keel monitor profile` and `keel predict`).
//!
//! A file set is taken in sorted path order (a folder stands for its
//! visible files). It is cut into *units*: every row group of a Parquet
//! file, every CSV file as a whole. Shard `I` of `N` takes the contiguous
//! units `[I·U/N, (I+1)·U/N)` of the `U` units, so the shards are disjoint,
//! cover every row, and shard outputs concatenated in shard order are the
//! rows in file order. `auto/N` takes `I` from the `JOB_COMPLETION_INDEX`
//! environment variable (a Kubernetes Indexed Job).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use parquet::file::reader::FileReader;

use crate::error::{Result, TableError};
use crate::rows::{is_parquet, open_parquet};

/// Environment variable `--shard auto/N` reads the index from.
pub const INDEX_VARIABLE: &str = "JOB_COMPLETION_INDEX";
/// Most shards a file set is cut into.
pub const MAX_SHARDS: usize = 1_000_000;

/// Shard `index` of `count` (`0 <= index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Zero-based index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// The whole data set as one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N`, or `auto/N` with `I` from `index_variable` (the value
    /// of [`INDEX_VARIABLE`], passed in so callers and tests choose).
    pub fn parse(text: &str, index_variable: Option<&str>) -> Result<Shard> {
        let bad = |why: &str| TableError::Data(format!("--shard {text:?}: {why}"));
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| bad("expected I/N (e.g. 0/4) or auto/N"))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| bad("N is not a whole number"))?;
        if count == 0 || count > MAX_SHARDS {
            return Err(bad(&format!("N must be between 1 and {MAX_SHARDS}")));
        }
        let index = match index.trim() {
            "auto" => index_variable
                .ok_or_else(|| bad(&format!("auto needs {INDEX_VARIABLE} in the environment")))?
                .trim()
                .parse::<usize>()
                .map_err(|_| bad(&format!("{INDEX_VARIABLE} is not a whole number")))?,
            index => index.parse().map_err(|_| bad("I is not a whole number"))?,
        };
        if index >= count {
            return Err(bad(&format!("I must be below N ({index} >= {count})")));
        }
        Ok(Shard { index, count })
    }

    /// The units of this shard: a contiguous run of `units`.
    pub fn select<'a>(&self, units: &'a [Unit]) -> &'a [Unit] {
        let (start, end) = self.range(units.len());
        &units[start..end]
    }

    /// This shard's `[start, end)` among `total` units.
    pub fn range(&self, total: usize) -> (usize, usize) {
        let at = |i: usize| (i as u128 * total as u128 / self.count as u128) as usize;
        (at(self.index), at(self.index + 1))
    }
}

impl FromStr for Shard {
    type Err = TableError;

    /// `I/N`, or `auto/N` reading [`INDEX_VARIABLE`] from the environment.
    fn from_str(text: &str) -> Result<Shard> {
        Shard::parse(text, std::env::var(INDEX_VARIABLE).ok().as_deref())
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// One unit of work: a CSV file, or one row group of a Parquet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The file.
    pub path: PathBuf,
    /// The row group (Parquet), `None` for a CSV file.
    pub row_group: Option<usize>,
    /// Rows in the unit when known without reading it (Parquet).
    pub rows: Option<u64>,
}

/// The files of a data set: folders replaced by their visible files, all
/// sorted by path and deduplicated. They must all be CSV or all Parquet.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| TableError::io(path, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| TableError::io(path, e))?;
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                let file = entry.path();
                if !hidden && file.is_file() {
                    files.push(file);
                }
            }
        } else {
            files.push(path.clone());
        }
    }
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(TableError::Data("no input files".into()));
    }
    if files.iter().any(|f| is_parquet(f)) && !files.iter().all(|f| is_parquet(f)) {
        return Err(TableError::Data(
            "a data set is all CSV or all Parquet, not a mix".into(),
        ));
    }
    Ok(files)
}

/// The units of a sorted file set (see [`files`]): the row groups of every
/// Parquet file in order, or one unit per CSV file.
pub fn units(files: &[PathBuf]) -> Result<Vec<Unit>> {
    let mut units = Vec::new();
    for path in files {
        if is_parquet(path) {
            let reader = open_parquet(path)?;
            for (group, meta) in reader.metadata().row_groups().iter().enumerate() {
                units.push(Unit {
                    path: path.clone(),
                    row_group: Some(group),
                    rows: Some(meta.num_rows().max(0) as u64),
                });
            }
        } else {
            units.push(Unit {
                path: path.clone(),
                row_group: None,
                rows: None,
            });
        }
    }
    Ok(units)
}

/// Row groups of `path` among `units`, in order.
pub fn row_groups_of(units: &[Unit], path: &Path) -> Vec<usize> {
    units
        .iter()
        .filter(|u| u.path == path)
        .filter_map(|u| u.row_group)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_index_count_and_auto() {
        assert_eq!(
            Shard::parse("2/5", None).unwrap(),
            Shard { index: 2, count: 5 }
        );
        assert_eq!(
            Shard::parse("auto/4", Some("3")).unwrap(),
            Shard { index: 3, count: 4 }
        );
        for bad in ["5/5", "1", "a/2", "0/0", "-1/2", "auto/2"] {
            assert!(Shard::parse(bad, None).is_err(), "{bad}");
        }
        assert!(Shard::parse("auto/2", Some("2")).is_err());
        assert!(Shard::parse("auto/2", Some("x")).is_err());
    }

    #[test]
    fn shards_partition_the_units_in_order() {
        for total in 0..12 {
            for count in 1..6 {
                let mut covered = Vec::new();
                for index in 0..count {
                    let (start, end) = Shard { index, count }.range(total);
                    assert!(start <= end);
                    covered.extend(start..end);
                    // Balanced: sizes differ by at most one.
                    assert!(end - start <= total / count + 1);
                }
                assert_eq!(covered, (0..total).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn files_are_sorted_and_not_mixed() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.csv", "a.csv", ".hidden.csv"] {
            std::fs::write(dir.path().join(name), "x\n1\n").unwrap();
        }
        let found = files(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.csv", "b.csv"]);
        let units = units(&found).unwrap();
        assert_eq!(units.len(), 2);
        assert!(units.iter().all(|u| u.row_group.is_none()));
        let mixed = [dir.path().join("a.csv"), dir.path().join("c.parquet")];
        assert!(files(&mixed).is_err());
    }
}
