//! keel-engine: load a model and predict a batch of rows, whatever the model's
//! format, behind one interface.
//!
//! - **Native**: a keel-learn model folder (`model.json`) is predicted by
//!   [`keel_learn::Model`] itself: no runtime library, exactly the numbers
//!   `keel evaluate` computes.
//! - **ONNX**: any `.onnx` file (keel's own `model.onnx`, skl2onnx,
//!   onnxmltools or PyTorch exports with one float input `[N, F]`) runs in ONNX
//!   Runtime through the `ort` crate, with the shared library loaded at run time
//!   from `KEEL_ONNXRUNTIME_LIB` or `ORT_DYLIB_PATH`, else found in the active
//!   Python's `onnxruntime` wheel or the system library folders
//!   ([`locate_onnxruntime`]).
//!
//! Both take a [`Batch`] (columns in signature order: numbers as `f64` with
//! `NaN` for missing, categories as text) and return [`Predictions`]. The
//! [`ServingSignature`] says what the inputs are (type, training range,
//! categories) and whether the model classifies or regresses; it comes from the
//! `signature.json` next to the model, or from the ONNX graph.
//!
//! Loading ends with a warm-up prediction, so a model that loads is one that
//! answers; the caller can swap it in without a cold first request.

mod native;
mod onnx;
mod signature;

use std::path::{Path, PathBuf};

pub use keel_table::Column;
pub use onnx::{
    LIBRARY_ENV, LibrarySource, ORT_ENV, OnnxRuntimeLibrary, OnnxRuntimeSearch, library_in_dir,
    library_in_python_env, loaded_onnxruntime_library, locate_onnxruntime, onnxruntime_library,
    set_onnxruntime_library,
};
pub use signature::{
    InputKind, InputSpec, LabelType, OutputKind, ServingSignature, SignatureSource,
};

/// Errors of loading and predicting; each names the file, input or output involved.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model files are missing, unreadable or not a model this engine serves.
    #[error("{path}: {message}")]
    Model {
        /// The file or folder involved.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// ONNX Runtime is unavailable (library not found or incompatible).
    #[error("{0}")]
    Runtime(String),
    /// The batch does not fit the model (column count, types).
    #[error("{0}")]
    Input(String),
    /// The model failed while predicting.
    #[error("prediction failed: {0}")]
    Predict(String),
}

impl EngineError {
    pub(crate) fn model(path: &Path, message: impl Into<String>) -> Self {
        EngineError::Model {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Rows to predict: one column per signature input, in signature order.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Number of rows.
    pub rows: usize,
    /// Columns in signature order: `Numeric` (NaN = missing) for numeric
    /// inputs, `Categorical` (None = missing) for categorical ones.
    pub columns: Vec<Column>,
}

/// What a model answered for a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// Classification: a label and the class probabilities per row.
    Classes {
        /// Predicted label per row.
        labels: Vec<String>,
        /// `rows * k` probabilities, row after row, in the signature's class order.
        probabilities: Vec<f64>,
        /// Number of classes.
        k: usize,
    },
    /// Regression: one value per row.
    Values(Vec<f64>),
}

impl Predictions {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        match self {
            Predictions::Classes { labels, .. } => labels.len(),
            Predictions::Values(values) => values.len(),
        }
    }

    /// Rows whose output holds a NaN or an infinity.
    pub fn non_finite_rows(&self) -> Vec<usize> {
        match self {
            Predictions::Classes {
                probabilities, k, ..
            } => probabilities
                .chunks(*k.max(&1))
                .enumerate()
                .filter(|(_, row)| row.iter().any(|p| !p.is_finite()))
                .map(|(i, _)| i)
                .collect(),
            Predictions::Values(values) => values
                .iter()
                .enumerate()
                .filter(|(_, v)| !v.is_finite())
                .map(|(i, _)| i)
                .collect(),
        }
    }
}

/// Which engine runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// keel-learn's own prediction code.
    Native,
    /// ONNX Runtime through `ort`.
    Onnx,
}

impl EngineKind {
    /// Name used in metrics and metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Native => "keel-native",
            EngineKind::Onnx => "onnxruntime",
        }
    }
}

/// Which engine to prefer when a folder holds both `model.json` and `model.onnx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnginePreference {
    /// Native for keel models, ONNX Runtime for anything else.
    #[default]
    Auto,
    /// Always ONNX Runtime (keel folders are served from their `model.onnx`).
    Onnx,
}

enum Engine {
    Native(native::NativeModel),
    Onnx(onnx::OnnxModel),
}

/// A loaded, warmed-up model.
pub struct LoadedModel {
    signature: ServingSignature,
    engine: Engine,
    path: PathBuf,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("path", &self.path)
            .field("engine", &self.kind())
            .finish_non_exhaustive()
    }
}

impl LoadedModel {
    /// Loads `path`: a folder holding `model.json` (keel) or a `.onnx` file
    /// (with an optional `signature.json`), or a `.onnx` / `model.json` file,
    /// then predicts one warm-up row.
    pub fn load(path: &Path, preference: EnginePreference) -> Result<LoadedModel> {
        let (model_file, folder) = locate(path, preference)?;
        let is_onnx = model_file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
        let model = if is_onnx {
            let file_signature = signature::read_signature_file(&folder)?;
            let (engine, signature) = onnx::OnnxModel::load(&model_file, file_signature)?;
            LoadedModel {
                signature,
                engine: Engine::Onnx(engine),
                path: model_file,
            }
        } else {
            let engine = native::NativeModel::load(&model_file)?;
            LoadedModel {
                signature: engine.signature(),
                engine: Engine::Native(engine),
                path: model_file,
            }
        };
        model.warm_up()?;
        Ok(model)
    }

    /// The model's inputs and outputs.
    pub fn signature(&self) -> &ServingSignature {
        &self.signature
    }

    /// The engine running it.
    pub fn kind(&self) -> EngineKind {
        match self.engine {
            Engine::Native(_) => EngineKind::Native,
            Engine::Onnx(_) => EngineKind::Onnx,
        }
    }

    /// The model file loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Predicts every row of `batch`.
    pub fn predict(&self, batch: &Batch) -> Result<Predictions> {
        if batch.columns.len() != self.signature.inputs.len() {
            return Err(EngineError::Input(format!(
                "{} columns given, the model takes {}",
                batch.columns.len(),
                self.signature.inputs.len()
            )));
        }
        if let Some((spec, column)) = self
            .signature
            .inputs
            .iter()
            .zip(&batch.columns)
            .find(|(_, column)| column.len() != batch.rows)
        {
            return Err(EngineError::Input(format!(
                "column {:?} has {} values for {} rows",
                spec.name,
                column.len(),
                batch.rows
            )));
        }
        if batch.rows == 0 {
            return Ok(match &self.signature.output {
                OutputKind::Classes(classes) => Predictions::Classes {
                    labels: Vec::new(),
                    probabilities: Vec::new(),
                    k: classes.len(),
                },
                OutputKind::Value => Predictions::Values(Vec::new()),
            });
        }
        match &self.engine {
            Engine::Native(model) => model.predict(batch),
            Engine::Onnx(model) => model.predict(batch, &self.signature),
        }
    }

    /// A one-row batch of typical values: training means (or range middles)
    /// and the most frequent categories.
    pub fn example_batch(&self) -> Batch {
        Batch {
            rows: 1,
            columns: self
                .signature
                .inputs
                .iter()
                .map(|input| match &input.kind {
                    InputKind::Numeric { typical, .. } => Column::Numeric(vec![*typical]),
                    InputKind::Categorical { categories, .. } => {
                        Column::Categorical(vec![categories.first().cloned()])
                    }
                })
                .collect(),
        }
    }

    fn warm_up(&self) -> Result<()> {
        let predictions = self.predict(&self.example_batch())?;
        if predictions.rows() != 1 {
            return Err(EngineError::model(
                &self.path,
                format!(
                    "warm-up: one row in, {} rows of predictions out",
                    predictions.rows()
                ),
            ));
        }
        Ok(())
    }
}

/// Finds the model file in `path` and the folder that may hold its signature.
fn locate(path: &Path, preference: EnginePreference) -> Result<(PathBuf, PathBuf)> {
    if path.is_file() {
        let folder = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        return Ok((path.to_path_buf(), folder));
    }
    if !path.is_dir() {
        return Err(EngineError::model(path, "no such file or folder"));
    }
    let native = path.join(keel_learn::model::MODEL_FILE);
    let keel_onnx = path.join(keel_learn::onnx::ONNX_FILE);
    if native.is_file() && preference == EnginePreference::Auto {
        return Ok((native, path.to_path_buf()));
    }
    if keel_onnx.is_file() {
        return Ok((keel_onnx, path.to_path_buf()));
    }
    let entries =
        std::fs::read_dir(path).map_err(|error| EngineError::model(path, error.to_string()))?;
    let mut onnx_files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
        })
        .collect();
    onnx_files.sort();
    match onnx_files.len() {
        1 => Ok((onnx_files.remove(0), path.to_path_buf())),
        0 if native.is_file() => Ok((native, path.to_path_buf())),
        0 => Err(EngineError::model(
            path,
            "holds neither model.json (keel) nor a .onnx file",
        )),
        _ => Err(EngineError::model(
            path,
            format!(
                "holds several .onnx files ({}); name one",
                onnx_files
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}
