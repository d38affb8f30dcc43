//! Where the files go, relative to the log root (a local directory or
//! `s3://bucket/prefix`). Hive-style partitions, so DuckDB, Spark and
//! DataFusion read the tree as it is:
//!
//! ```text
//! predictions/model=<name>/version=<version>/date=<YYYY-MM-DD>/part-<replica>-<seq>.parquet
//! feedback/model=<name>/date=<YYYY-MM-DD>/part-<replica>-<seq>.parquet
//! ```
//!
//! - `date` is the UTC day of each row's `ts_ms` (a segment spanning midnight
//!   becomes one file per day);
//! - `replica` names the serving process that wrote the file (one writer per
//!   replica, so replicas never write the same name);
//! - `seq` is the Unix ms at which the replica sealed the spool segment the file
//!   was compacted from: strictly increasing per replica, zero-padded to 13
//!   digits, and later than the arrival of every row in the file (a reader
//!   looking for rows since T skips files with `seq < T`). Compacting the same
//!   segment again (after a crash between the upload and the segment's
//!   deletion) writes the same names with the same content.
//!
//! Partition values escape `/`, `\`, `%`, `=`, `#`, control characters and a
//! leading `.` as `%XX` (UTF-8 bytes, as Hive does).

use crate::error::{LogError, Result};

/// Folder of the prediction files.
pub const PREDICTIONS_DIR: &str = "predictions";
/// Folder of the feedback files.
pub const FEEDBACK_DIR: &str = "feedback";
/// Extension of the data files.
pub const PARQUET_EXTENSION: &str = ".parquet";

/// The partition value for `text`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let special =
            matches!(c, '/' | '\\' | '%' | '=' | '#') || c.is_control() || (i == 0 && c == '.');
        if special {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// The text of a partition value written by [`escape`].
pub fn unescape(value: &str) -> String {
    if value == "%00" {
        return String::new();
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = value
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The folder of `model`'s prediction files (all versions).
pub fn model_predictions_dir(model: &str) -> String {
    format!("{PREDICTIONS_DIR}/model={}", escape(model))
}

/// The folder of `model`'s feedback files.
pub fn model_feedback_dir(model: &str) -> String {
    format!("{FEEDBACK_DIR}/model={}", escape(model))
}

/// The file name of a replica's part.
pub fn part_name(replica: &str, seq: u64, index: usize) -> String {
    if index == 0 {
        format!("part-{replica}-{seq:013}{PARQUET_EXTENSION}")
    } else {
        // A second group of rows for the same partition in one segment (a model
        // version loaded twice with different signatures): rare, but named apart.
        format!("part-{replica}-{seq:013}-{index}{PARQUET_EXTENSION}")
    }
}

/// Path of a prediction file.
pub fn prediction_path(
    model: &str,
    version: &str,
    date: &str,
    replica: &str,
    seq: u64,
    index: usize,
) -> String {
    format!(
        "{}/version={}/date={date}/{}",
        model_predictions_dir(model),
        escape(version),
        part_name(replica, seq, index)
    )
}

/// Path of a feedback file.
pub fn feedback_path(model: &str, date: &str, replica: &str, seq: u64) -> String {
    format!(
        "{}/date={date}/{}",
        model_feedback_dir(model),
        part_name(replica, seq, 0)
    )
}

/// `(replica, seq)` of a `part-<replica>-<seq>[-<index>].parquet` file name.
pub fn parse_part_name(name: &str) -> Option<(String, u64)> {
    let stem = name
        .strip_prefix("part-")?
        .strip_suffix(PARQUET_EXTENSION)?;
    // The seq has 13 or more digits; an index after it has fewer.
    let is_seq = |s: &str| s.len() >= 13 && s.bytes().all(|b| b.is_ascii_digit());
    let (rest, last) = stem.rsplit_once('-')?;
    let (replica, seq) = if is_seq(last) {
        (rest, last)
    } else if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        rest.rsplit_once('-').filter(|(_, seq)| is_seq(seq))?
    } else {
        return None;
    };
    if replica.is_empty() {
        return None;
    }
    Some((replica.to_string(), seq.parse().ok()?))
}

/// The value of a `key=value` path segment.
pub fn partition_value<'a>(segment: &'a str, key: &str) -> Option<&'a str> {
    segment.strip_prefix(key)?.strip_prefix('=')
}

/// The UTC day (`YYYY-MM-DD`) of a Unix ms time.
pub fn date_of(ms: i64) -> String {
    let (year, month, day) = keel_core::civil::utc_date(ms);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Checks a replica id: 1–64 characters of `A-Z a-z 0-9 . _ -`, not starting
/// with `.` or `-` (it becomes part of file and folder names).
pub fn check_replica(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with(['.', '-'])
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(LogError::Config(format!(
            "replica id {id:?}: use 1-64 characters of A-Z a-z 0-9 . _ - (not starting with . or -)"
        )))
    }
}

/// The default replica id of a process listening on `port`: `<host name>-<port>`
/// (unique per machine; in Kubernetes the host name is the pod's name).
pub fn default_replica(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let mut cleaned: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    cleaned = cleaned.trim_start_matches(['.', '-']).to_string();
    cleaned.truncate(48);
    if cleaned.is_empty() {
        cleaned.push_str("keel");
    }
    format!("{cleaned}-{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_hive_partitions() {
        assert_eq!(
            prediction_path("risk", "3", "2026-12-06", "pod-a", 1_765_000_000_000, 0),
            "predictions/model=risk/version=3/date=2026-12-06/part-pod-a-1765000000000.parquet"
        );
        assert_eq!(
            feedback_path("risk", "2026-12-06", "pod-a", 7),
            "feedback/model=risk/date=2026-12-06/part-pod-a-0000000000007.parquet"
        );
        assert_eq!(
            parse_part_name("part-pod-a-1765000000000.parquet"),
            Some(("pod-a".into(), 1_765_000_000_000))
        );
        assert_eq!(
            parse_part_name("part-h-8080-0000000000007-1.parquet"),
            Some(("h-8080".into(), 7))
        );
        assert_eq!(
            parse_part_name("part-x-0000000000007.parquet"),
            Some(("x".into(), 7))
        );
        assert_eq!(parse_part_name("part-x-12.parquet"), None);
        assert_eq!(parse_part_name("other.parquet"), None);
    }

    #[test]
    fn escaping_round_trips_and_keeps_segments_single() {
        for name in ["risk", "a/b", "x=y", "100%", ".hidden", "", "ü b"] {
            let escaped = escape(name);
            assert!(
                !escaped.contains('/') && !escaped.contains('='),
                "{escaped}"
            );
            assert!(!escaped.starts_with('.'), "{escaped}");
            assert_eq!(unescape(&escaped), name);
        }
        assert_eq!(escape("a/b"), "a%2Fb");
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date_of(-1), "1969-12-31");
        assert_eq!(date_of(1_765_000_000_000), "2025-12-06");
    }

    #[test]
    fn replica_ids() {
        assert!(check_replica("pod-7.a_b").is_ok());
        for bad in ["", "-x", ".x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_replica(bad).is_err(), "{bad:?}");
        }
        let id = default_replica(8080);
        assert!(id.ends_with("-8080"), "{id}");
        check_replica(&id).unwrap();
    }
}
