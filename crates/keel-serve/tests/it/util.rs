//! Helpers shared by keel-serve's integration tests: seeded models, a server
//! started in-process on a free port, request bodies, Parquet log reading.

use std::path::{Path, PathBuf};

use keel_learn::generate::{Dataset, GenerateOptions, generate};
use keel_learn::{Algorithm, Model, TrainOptions};
use keel_serve::ServeConfig;
use keel_table::{Column, Table};
use serde_json::{Map, Value, json};

pub const FEATURES: [&str; 8] = [
    "age",
    "income",
    "employment_years",
    "credit_score",
    "loan_amount",
    "debt_to_income",
    "home_ownership",
    "purpose",
];

pub fn portfolio(rows: usize, seed: u64) -> Table {
    let options = GenerateOptions {
        rows,
        seed,
        covariate_shift: 0.0,
        concept_drift: 0.0,
    };
    generate(Dataset::Portfolio, &options).unwrap()
}

/// Trains a small credit-risk classifier and saves its folder under `dir/name`.
pub fn train(dir: &Path, name: &str, algorithm: Algorithm, seed: u64) -> (PathBuf, Model) {
    let mut options = TrainOptions::new(algorithm, "default");
    options.forest.n_trees = 8;
    options.boost.n_iter = 15;
    options.seed = seed;
    let model = Model::train(&portfolio(800, seed), &options).unwrap();
    let folder = dir.join(name);
    model.save(&folder).unwrap();
    (folder, model)
}

/// Rows `range` of `table` as JSON records of the model's features.
pub fn records(table: &Table, range: std::ops::Range<usize>) -> Vec<Value> {
    range
        .map(|row| {
            let mut record = Map::new();
            for name in FEATURES {
                let value = match table.column(name).unwrap() {
                    Column::Numeric(values) => json!(values[row]),
                    Column::Categorical(values) => json!(values[row]),
                };
                record.insert(name.to_string(), value);
            }
            Value::Object(record)
        })
        .collect()
}

pub fn config(model_uri: &str, log_dir: &Path) -> ServeConfig {
    let mut config = ServeConfig::new(model_uri);
    config.port = 0;
    config.log_dir = Some(log_dir.display().to_string());
    config.cache_dir = log_dir.join("cache");
    config
}

/// A keel serve running in this process.
pub struct Running {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub async fn start(config: ServeConfig) -> Running {
        let server = keel_serve::bind(config).await.unwrap();
        let addr = server.addr;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        Running {
            base: format!("http://{addr}"),
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Graceful stop: in-flight requests finish, the log is written.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }
}

pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = client.post(url).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, value)
}

pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Every row of `model`'s prediction files under the log root `logs`
/// (`predictions/model=<model>/version=*/date=*/part-*.parquet`), read with
/// the Parquet crate itself, as JSON objects in file (seq) order.
pub fn read_log(logs: &Path, model: &str) -> Vec<Value> {
    read_parquet_rows(&logs.join("predictions").join(format!("model={model}")))
}

/// Every row of `model`'s feedback files under the log root `logs`.
pub fn read_feedback(logs: &Path, model: &str) -> Vec<Value> {
    read_parquet_rows(&logs.join("feedback").join(format!("model={model}")))
}

fn part_files(folder: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            part_files(&path, out);
        } else {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.starts_with("part-") && name.ends_with(".parquet"),
                "unexpected file {} in the log",
                path.display()
            );
            out.push(path);
        }
    }
}

fn read_parquet_rows(folder: &Path) -> Vec<Value> {
    use parquet::file::reader::SerializedFileReader;
    use parquet::record::Field;
    let mut files = Vec::new();
    part_files(folder, &mut files);
    // part-<replica>-<seq>.parquet: seq order is write order.
    files.sort_by_key(|f| {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let seq: String = name
            .trim_end_matches(".parquet")
            .rsplit('-')
            .next()
            .unwrap()
            .to_string();
        (seq, f.clone())
    });
    let mut rows = Vec::new();
    for file in files {
        let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
        for row in reader.into_iter() {
            let mut object = Map::new();
            for (name, field) in row.unwrap().get_column_iter() {
                let value = match field {
                    Field::Null => Value::Null,
                    Field::Int(v) => json!(v),
                    Field::Long(v) => json!(v),
                    Field::Double(v) => json!(v),
                    Field::Str(v) => json!(v),
                    other => panic!("unexpected field {name}: {other:?}"),
                };
                object.insert(name.clone(), value);
            }
            rows.push(Value::Object(object));
        }
    }
    rows
}

/// The ONNX Runtime library (configured for this process); None = skip, except under CI=true.
pub fn onnxruntime() -> Option<PathBuf> {
    static LIBRARY: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    LIBRARY
        .get_or_init(|| {
            let found = keel_engine::OnnxRuntimeSearch::from_environment()
                .with_python_env_variable("KEEL_PY_VENV")
                .locate()
                .ok()
                .map(|found| found.path);
            match found {
                Some(path) => {
                    keel_engine::set_onnxruntime_library(path.clone());
                    Some(path)
                }
                None if std::env::var("CI").as_deref() == Ok("true") => {
                    panic!("CI=true: no ONNX Runtime library (set KEEL_PY_VENV or KEEL_ONNXRUNTIME_LIB)")
                }
                None => {
                    eprintln!("skipping: no ONNX Runtime library found (KEEL_PY_VENV unset)");
                    None
                }
            }
        })
        .clone()
}
