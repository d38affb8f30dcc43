//! Per-row prediction cost of each engine on a keel-trained credit-risk model:
//! one-row batches (what a 1-row request pays) and 1000-row batches.
//!
//!   cargo run --release -p keel-engine --example row_latency [-- ALGORITHM]
//!
//! Prints CPU time per call (the work) and wall time (which on a shared
//! machine includes waiting for a core).
//!
//! ONNX Runtime is measured when KEEL_ONNXRUNTIME_LIB / ORT_DYLIB_PATH (or
//! KEEL_PY_VENV) names the library.

use std::time::Instant;

use keel_engine::{Batch, Column, EnginePreference, InputKind, LoadedModel};
use keel_learn::generate::{Dataset, GenerateOptions, generate};
use keel_learn::{Algorithm, Model, TrainOptions};
use keel_table::Table;

fn batch(model: &LoadedModel, table: &Table, rows: std::ops::Range<usize>) -> Batch {
    let picked = table.select_rows(&rows.collect::<Vec<_>>());
    Batch {
        rows: picked.n_rows(),
        columns: model
            .signature()
            .inputs
            .iter()
            .map(|input| {
                let column = picked.column(&input.name).expect("feature column");
                match (&input.kind, column) {
                    (InputKind::Categorical { .. }, Column::Numeric(_)) => {
                        Column::Categorical((0..picked.n_rows()).map(|i| column.text(i)).collect())
                    }
                    _ => column.clone(),
                }
            })
            .collect(),
    }
}

/// CPU seconds this process has used (user + system), from /proc/self/stat.
/// On a shared machine wall-clock time per call mostly measures the queue
/// for a core; CPU time measures the work.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name: utime is the 12th, stime the 13th.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<f64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0.0) + fields.get(12).copied().unwrap_or(0.0);
    ticks / 100.0
}

fn measure(label: &str, model: &LoadedModel, table: &Table) {
    let singles: Vec<Batch> = (0..1000).map(|i| batch(model, table, i..i + 1)).collect();
    for single in &singles[..100] {
        model.predict(single).expect("warm-up");
    }
    let repeats = 50;
    let (started, cpu) = (Instant::now(), cpu_seconds());
    for _ in 0..repeats {
        for single in &singles {
            model.predict(single).expect("predict");
        }
    }
    let calls = (repeats * singles.len()) as f64;
    let per_row = started.elapsed().as_secs_f64() * 1e6 / calls;
    let per_row_cpu = (cpu_seconds() - cpu) * 1e6 / calls;
    let big = batch(model, table, 0..1000);
    let (started, cpu) = (Instant::now(), cpu_seconds());
    for _ in 0..repeats {
        model.predict(&big).expect("predict");
    }
    let per_batch = started.elapsed().as_secs_f64() * 1e3 / repeats as f64;
    let per_batch_cpu = (cpu_seconds() - cpu) * 1e3 / repeats as f64;
    println!(
        "{label:<24} 1-row batch: {per_row_cpu:6.1} µs CPU ({per_row:6.1} wall)   \
         1000-row batch: {per_batch_cpu:6.2} ms CPU ({per_batch:6.2} wall)"
    );
}

fn main() {
    let algorithm = std::env::args()
        .nth(1)
        .map(|a| Algorithm::parse(&a).expect("algorithm"))
        .unwrap_or(Algorithm::Gbdt);
    let options = |rows, seed| GenerateOptions {
        rows,
        seed,
        covariate_shift: 0.0,
        concept_drift: 0.0,
    };
    let train = generate(Dataset::Portfolio, &options(5000, 1)).expect("data");
    let test = generate(Dataset::Portfolio, &options(1000, 2)).expect("data");
    let model = Model::train(&train, &TrainOptions::new(algorithm, "default")).expect("train");
    let dir = std::env::temp_dir().join(format!("keel-row-latency-{}", std::process::id()));
    model.save(&dir).expect("save");
    println!("model: {} on 8 portfolio features", algorithm.as_str());
    let native = LoadedModel::load(&dir, EnginePreference::Auto).expect("load");
    measure("keel-native", &native, &test);
    let library = keel_engine::OnnxRuntimeSearch::from_environment()
        .with_python_env_variable("KEEL_PY_VENV")
        .locate()
        .ok()
        .map(|found| found.path);
    match library {
        Some(library) => {
            keel_engine::set_onnxruntime_library(library);
            let onnx = LoadedModel::load(&dir, EnginePreference::Onnx).expect("load onnx");
            measure("onnxruntime (1 thread)", &onnx, &test);
        }
        None => {
            println!("onnxruntime: skipped (no library; set KEEL_PY_VENV or KEEL_ONNXRUNTIME_LIB)")
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
