//! The writer and the reader together: what is logged is read back with the
//! schema's columns; a crash's spool is recovered; replicas merge; the
//! capacity holds; format versions are checked.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::layout::{date_of, prediction_path};
use crate::schema::{Kind, prediction_columns};
use crate::*;

fn model(version: &str) -> ModelSchema {
    schema::example(version)
}

fn settings(root: &Path, replica: &str) -> LogSettings {
    let mut settings = LogSettings::new(root.join("logs").display().to_string(), replica);
    settings.spool = Some(root.join("spool"));
    settings.flush_interval = Duration::from_secs(3600);
    settings
}

/// Logs `n` one-row requests `<prefix>-<i>` at `ts_ms + i`.
async fn log_requests(
    log: &PredictionLog,
    model: &LoggedModel,
    prefix: &str,
    ts_ms: i64,
    n: usize,
) {
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        let income = [1000.0 * i as f64];
        let region = [if i % 2 == 0 {
            Some("n".to_string())
        } else {
            None
        }];
        let labels = ["yes".to_string()];
        let probabilities = [0.25, 0.75];
        let flags = [(i % 3 == 0).then(|| "null:region".to_string())];
        log.log(
            model,
            &Prediction {
                request_id: &id,
                ts_ms: ts_ms + i as i64,
                role: "primary",
                latency_us: 100,
                rows: 1,
                inputs: &[Inputs::Numbers(&income), Inputs::Texts(&region)],
                outputs: Outputs::Classes {
                    labels: &labels,
                    probabilities: &probabilities,
                },
                flags: &flags,
            },
        )
        .await
        .unwrap();
    }
}

fn ids(reader: &LogReader, since: Option<i64>) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    reader
        .scan_predictions("risk", since, |batch, row| -> Result<()> {
            out.push((batch.ts_ms[row], batch.request_id[row].clone()));
            Ok(())
        })
        .unwrap();
    out
}

const T0: i64 = 1_765_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_rows_are_read_back_with_the_schema_columns() {
    let dir = tempfile::tempdir().unwrap();
    let log = PredictionLog::start(settings(dir.path(), "r1"), Arc::default()).unwrap();
    let logged = log.register(model("3"));
    log_requests(&log, &logged, "req", T0, 5).await;
    log.feedback(
        "risk",
        T0 + 100,
        &[Feedback {
            request_id: "req-1".into(),
            row: 0,
            label: Some("no".into()),
            value: None,
        }],
    )
    .await
    .unwrap();
    // Concurrent requests are group-committed: fewer writes than requests.
    let log = Arc::new(log);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            let logged = logged.clone();
            tokio::spawn(async move {
                log_requests(&log, &logged, &format!("c{t}"), T0 + 1000, 50).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(log.stats().queue_rows.load(Ordering::Relaxed), 406);
    log.shutdown();
    let stats = log.stats();
    assert_eq!(stats.rows_written.load(Ordering::Relaxed), 405);
    assert_eq!(stats.feedback_rows_written.load(Ordering::Relaxed), 1);
    assert_eq!(log.stats().queue_rows.load(Ordering::Relaxed), 0);
    // No segment is left in the spool.
    let spool: Vec<_> = std::fs::read_dir(log.spool_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    assert!(spool.is_empty(), "{spool:?}");

    // The file is where the layout says, with the schema's columns and types.
    let reader = LogReader::open(&dir.path().join("logs").display().to_string()).unwrap();
    let files = reader.prediction_files("risk", None).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    assert_eq!(
        file.path,
        prediction_path("risk", "3", &date_of(T0), "r1", file.seq, 0)
    );
    let raw = std::fs::read(dir.path().join("logs").join(&file.path)).unwrap();
    let parquet = SerializedFileReader::new(bytes::Bytes::from(raw)).unwrap();
    let metadata = parquet.metadata().file_metadata();
    let written: Vec<(String, Kind, bool)> = metadata
        .schema_descr()
        .columns()
        .iter()
        .map(|c| {
            let kind = match c.physical_type() {
                parquet::basic::Type::BYTE_ARRAY => Kind::Text,
                parquet::basic::Type::INT32 => Kind::Int32,
                parquet::basic::Type::INT64 => Kind::Int64,
                parquet::basic::Type::DOUBLE => Kind::Double,
                other => panic!("{other:?}"),
            };
            (c.name().to_string(), kind, c.max_def_level() > 0)
        })
        .collect();
    let declared: Vec<(String, Kind, bool)> = prediction_columns(&model("3"))
        .into_iter()
        .map(|c| (c.name, c.kind, c.nullable))
        .collect();
    assert_eq!(written, declared);
    let format = metadata
        .key_value_metadata()
        .unwrap()
        .iter()
        .find(|kv| kv.key == schema::FORMAT_KEY)
        .and_then(|kv| kv.value.clone());
    assert_eq!(format.as_deref(), Some(schema::PREDICTION_FORMAT));

    let batch = reader.read_predictions(file).unwrap();
    assert_eq!(batch.len(), 405);
    let at = batch
        .request_id
        .iter()
        .position(|id| id == "req-1")
        .unwrap();
    assert_eq!(batch.ts_ms[at], T0 + 1);
    assert_eq!(batch.row[at], 0);
    assert_eq!(batch.model_version[at], "3");
    assert_eq!(batch.role[at], "primary");
    assert_eq!(batch.replica[at], "r1");
    assert_eq!(batch.label[at].as_deref(), Some("yes"));
    assert_eq!(batch.score[at], Some(0.75));
    assert_eq!(batch.probabilities_of("no").unwrap()[at], Some(0.25));
    assert_eq!(batch.value[at], None);
    match batch.input("income").unwrap() {
        InputValues::Numbers(v) => assert_eq!(v[at], Some(1000.0)),
        other => panic!("{other:?}"),
    }
    match batch.input("region").unwrap() {
        InputValues::Texts(v) => assert_eq!(v[at], None),
        other => panic!("{other:?}"),
    }
    let first = batch
        .request_id
        .iter()
        .position(|id| id == "req-0")
        .unwrap();
    assert_eq!(batch.flags[first].as_deref(), Some("null:region"));
    assert_eq!(batch.flags[at], None);

    let feedback = reader.feedback("risk", None).unwrap();
    assert_eq!(feedback.len(), 1);
    assert_eq!(
        feedback.get("req-1", 0).unwrap().label.as_deref(),
        Some("no")
    );
    assert!(feedback.get("req-1", 1).is_none());
    // A window: rows since T0 + 1000 are the concurrent ones only.
    assert_eq!(ids(&reader, Some(T0 + 1000)).len(), 400);
    // A missing local log reads as empty.
    let none = LogReader::open(&dir.path().join("nowhere").display().to_string()).unwrap();
    assert!(none.prediction_files("risk", None).unwrap().is_empty());
    assert!(!dir.path().join("nowhere").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_spool_is_compacted_at_the_next_start_and_a_torn_tail_dropped() {
    let dir = tempfile::tempdir().unwrap();
    for policy in [
        FsyncPolicy::Never,
        FsyncPolicy::Interval,
        FsyncPolicy::Always,
    ] {
        let root = dir.path().join(policy.as_str());
        let mut first = settings(&root, "r1");
        first.fsync = policy;
        let log = PredictionLog::start(first.clone(), Arc::default()).unwrap();
        let logged = log.register(model("1"));
        log_requests(&log, &logged, "acked", T0, 30).await;
        // "kill -9": the process is gone, its spool is what the OS holds. A copy
        // of the spool taken now is what a restarted process would find.
        let crashed = root.join("crashed-spool");
        copy_dir(&root.join("spool"), &crashed);
        drop(log);
        std::fs::remove_dir_all(root.join("logs")).unwrap();
        // A torn frame at the end: a request that was never answered.
        let replica_dir = crashed.join("r1");
        let open: Vec<_> = std::fs::read_dir(&replica_dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        assert_eq!(open.len(), 1, "{open:?}");
        let mut bytes = std::fs::read(&open[0]).unwrap();
        bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 2, 9, 9]);
        std::fs::write(&open[0], bytes).unwrap();
        std::fs::remove_file(replica_dir.join("lock")).unwrap();

        let mut second = first.clone();
        second.spool = Some(crashed);
        let stats = Arc::new(Stats::default());
        let log = PredictionLog::start(second, stats.clone()).unwrap();
        assert_eq!(stats.queue_rows.load(Ordering::Relaxed), 30);
        log.shutdown();
        let reader = LogReader::open(&first.location).unwrap();
        let found = ids(&reader, None);
        assert_eq!(found.len(), 30, "{policy:?}");
        assert!(found.iter().all(|(_, id)| id.starts_with("acked-")));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_write_apart_and_the_reader_merges_them_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for (r, replica) in ["pod-a", "pod-b", "pod-c"].iter().enumerate() {
        let log = PredictionLog::start(settings(dir.path(), replica), Arc::default()).unwrap();
        let logged = log.register(model(if r == 2 { "2" } else { "1" }));
        // Interleaved arrival times: pod-a at T0, T0+3, ...; pod-b at T0+1, ...
        for i in 0..20 {
            let ts = T0 + (i * 3 + r) as i64;
            log_requests(&log, &logged, &format!("{replica}-{i}"), ts, 1).await;
            expected.push((ts, format!("{replica}-{i}-0")));
        }
        log.shutdown();
    }
    let reader = LogReader::open(&dir.path().join("logs").display().to_string()).unwrap();
    let files = reader.prediction_files("risk", None).unwrap();
    let replicas: Vec<&str> = files.iter().map(|f| f.replica.as_str()).collect();
    assert_eq!(replicas, ["pod-a", "pod-b", "pod-c"]);
    assert_eq!(files[2].version.as_deref(), Some("2"));
    expected.sort();
    assert_eq!(ids(&reader, None), expected);
    // Each replica's spool folder is its own.
    for replica in ["pod-a", "pod-b", "pod-c"] {
        assert!(dir.path().join("spool").join(replica).is_dir());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphaned_spool_is_adopted_under_its_own_replica_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = PredictionLog::start(settings(dir.path(), "old-8080"), Arc::default()).unwrap();
    let logged = log.register(model("1"));
    log_requests(&log, &logged, "old", T0, 7).await;
    let orphan = dir.path().join("copy");
    copy_dir(&dir.path().join("spool"), &orphan);
    drop(log);
    std::fs::remove_dir_all(dir.path().join("spool")).unwrap();
    std::fs::rename(&orphan, dir.path().join("spool")).unwrap();
    std::fs::remove_file(dir.path().join("spool/old-8080/lock")).unwrap();
    // The process comes back on another port: another replica id.
    let log = PredictionLog::start(settings(dir.path(), "new-9090"), Arc::default()).unwrap();
    log.shutdown();
    let reader = LogReader::open(&dir.path().join("logs").display().to_string()).unwrap();
    let files = reader.prediction_files("risk", None).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].replica, "old-8080");
    assert_eq!(ids(&reader, None).len(), 7);
    // A live replica's spool is locked, and not adopted by another.
    let live = PredictionLog::start(settings(dir.path(), "live"), Arc::default()).unwrap();
    let other = PredictionLog::start(settings(dir.path(), "other"), Arc::default()).unwrap();
    assert!(live.spool_dir().join("lock").exists());
    drop(other);
    drop(live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_refuses_instead_of_answering_unlogged() {
    let dir = tempfile::tempdir().unwrap();
    let mut limited = settings(dir.path(), "r1");
    limited.capacity_rows = 10;
    let log = PredictionLog::start(limited, Arc::default()).unwrap();
    let logged = log.register(model("1"));
    log_requests(&log, &logged, "fits", T0, 10).await;
    let income = [1.0];
    let region = [None];
    let labels = ["no".to_string()];
    let refused = log
        .log(
            &logged,
            &Prediction {
                request_id: "over",
                ts_ms: T0,
                role: "primary",
                latency_us: 1,
                rows: 1,
                inputs: &[Inputs::Numbers(&income), Inputs::Texts(&region)],
                outputs: Outputs::Classes {
                    labels: &labels,
                    probabilities: &[0.5, 0.5],
                },
                flags: &[],
            },
        )
        .await;
    assert_eq!(refused, Err(Refused::Full));
    assert_eq!(log.stats().rows_refused.load(Ordering::Relaxed), 1);
    log.shutdown();
    assert!(log.feedback("risk", T0, &[]).await.is_err());
}

#[test]
fn files_of_a_newer_major_version_are_refused_and_unknown_columns_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("logs");
    let write = |path: &str, format: &str, extra: bool| {
        let mut columns: Vec<(schema::Column, parquet_io::Values)> = vec![
            (
                (&schema::REQUEST_ID).into(),
                parquet_io::Values::texts(["a"].into_iter()),
            ),
            ((&schema::ROW).into(), parquet_io::Values::Int32(vec![0])),
            ((&schema::TS_MS).into(), parquet_io::Values::Int64(vec![T0])),
        ];
        if extra {
            columns.push((
                schema::Column {
                    name: "added_later".into(),
                    kind: Kind::Int64,
                    nullable: false,
                },
                parquet_io::Values::Int64(vec![1]),
            ));
        }
        let bytes = parquet_io::write(format, columns).unwrap();
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, bytes).unwrap();
    };
    write(
        &prediction_path("risk", "1", &date_of(T0), "a", 1, 0),
        schema::PREDICTION_FORMAT,
        true,
    );
    let reader = LogReader::open(&root.display().to_string()).unwrap();
    let files = reader.prediction_files("risk", None).unwrap();
    let batch = reader.read_predictions(&files[0]).unwrap();
    assert_eq!(batch.request_id, ["a"]);
    assert_eq!(batch.model_version, ["1"], "from the partition");
    assert_eq!(batch.label, [None]);
    write(
        &prediction_path("risk", "1", &date_of(T0), "b", 2, 0),
        "keel-prediction-log/2",
        false,
    );
    let files = reader.prediction_files("risk", None).unwrap();
    let error = reader.read_predictions(&files[1]).unwrap_err().to_string();
    assert!(error.contains("newer"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_names_with_separators_stay_one_partition() {
    let dir = tempfile::tempdir().unwrap();
    let log = PredictionLog::start(settings(dir.path(), "r1"), Arc::default()).unwrap();
    let mut schema = model("1");
    schema.name = "team/risk model=2%".into();
    let logged = log.register(schema);
    log_requests(&log, &logged, "x", T0, 3).await;
    log.shutdown();
    let reader = LogReader::open(&dir.path().join("logs").display().to_string()).unwrap();
    let files = reader.prediction_files("team/risk model=2%", None).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0]
            .path
            .starts_with("predictions/model=team%2Frisk model%3D2%25/version=1/"),
        "{}",
        files[0].path
    );
    assert!(reader.prediction_files("team", None).unwrap().is_empty());
    assert_eq!(reader.read_predictions(&files[0]).unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_rotated_under_concurrent_appends_keep_every_row() {
    // Small segments and a short interval: the compactor seals segments while
    // requests keep appending, and every row must land in exactly one file.
    let dir = tempfile::tempdir().unwrap();
    let mut busy = settings(dir.path(), "r1");
    busy.flush_interval = Duration::from_millis(10);
    busy.max_segment_rows = 40;
    let log = Arc::new(PredictionLog::start(busy, Arc::default()).unwrap());
    let logged = log.register(model("1"));
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (log, logged) = (log.clone(), logged.clone());
            tokio::spawn(async move {
                for round in 0..10 {
                    if round == 5 {
                        // Half-way, wait until the compactor has written a
                        // file (while other tasks may still append), so the
                        // rest lands after a rotation whatever the load.
                        let give_up = std::time::Instant::now() + Duration::from_secs(60);
                        while log.stats().rows_written.load(Ordering::Relaxed) == 0 {
                            assert!(std::time::Instant::now() < give_up, "no compaction in 60 s");
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    log_requests(&log, &logged, &format!("t{t}-{round}"), T0, 30).await;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    log.shutdown();
    assert_eq!(log.stats().rows_written.load(Ordering::Relaxed), 2400);
    let reader = LogReader::open(&dir.path().join("logs").display().to_string()).unwrap();
    let mut found = ids(&reader, None);
    assert!(reader.prediction_files("risk", None).unwrap().len() > 1);
    found.sort();
    found.dedup();
    assert_eq!(found.len(), 2400);
}
