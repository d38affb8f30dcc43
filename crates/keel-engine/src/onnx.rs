//! ONNX models in ONNX Runtime, through the `ort` crate with `load-dynamic`:
//! the shared library is found at run time (`locate.rs`: `--onnxruntime-lib`,
//! `KEEL_ONNXRUNTIME_LIB`, `ORT_DYLIB_PATH`, the active Python's
//! `onnxruntime` wheel, `LD_LIBRARY_PATH` and the system folders), never
//! downloaded.
//!
//! Contract: one float tensor input `[N, F]` (float32 or float64), columns in
//! signature order, categorical inputs as their index in the signature's
//! categories (`len` = unknown), NaN for missing. Outputs, by name first:
//! `label` + `probabilities` (keel, and skl2onnx / onnxmltools with
//! `zipmap=False`), `variable` (regressors); otherwise an integer or string
//! tensor is the label, a float `[N, K]` tensor the probabilities and a lone
//! float `[N]`/`[N, 1]` tensor the value.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use crate::signature::{
    FileSignature, InputKind, LabelType, OutputKind, ServingSignature, SignatureSource,
};
use crate::{Batch, Column, EngineError, Predictions, Result};

mod locate;

pub use locate::{
    LIBRARY_ENV, LibrarySource, ORT_ENV, OnnxRuntimeLibrary, OnnxRuntimeSearch, library_in_dir,
    library_in_python_env,
};

static CONFIGURED_LIBRARY: OnceLock<PathBuf> = OnceLock::new();
static LOADED_LIBRARY: OnceLock<OnnxRuntimeLibrary> = OnceLock::new();

/// Names the ONNX Runtime library to load (e.g. from a `--onnxruntime-lib`
/// flag); takes precedence over the environment. Only the first call before
/// the first ONNX model loads has an effect; returns whether this one did.
pub fn set_onnxruntime_library(path: PathBuf) -> bool {
    CONFIGURED_LIBRARY.set(path).is_ok()
}

/// The ONNX Runtime library this process would load, and how it was found
/// (the order is [`locate`]'s: `--onnxruntime-lib`, `KEEL_ONNXRUNTIME_LIB`,
/// `ORT_DYLIB_PATH`, the active Python's `onnxruntime` wheel, then
/// `LD_LIBRARY_PATH` and the system library folders).
pub fn locate_onnxruntime() -> Result<OnnxRuntimeLibrary> {
    let mut search = OnnxRuntimeSearch::from_environment();
    search.flag = CONFIGURED_LIBRARY.get().cloned();
    search.locate()
}

/// The path of [`locate_onnxruntime`]'s library.
pub fn onnxruntime_library() -> Result<PathBuf> {
    locate_onnxruntime().map(|found| found.path)
}

/// The ONNX Runtime library this process loaded, once an ONNX model has loaded.
pub fn loaded_onnxruntime_library() -> Option<&'static OnnxRuntimeLibrary> {
    LOADED_LIBRARY.get()
}

/// The process-wide ONNX Runtime environment (the library loads once).
fn environment() -> Result<&'static Environment> {
    static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    ENVIRONMENT
        .get_or_init(|| {
            let library = locate_onnxruntime().map_err(|e| e.to_string())?;
            let environment = ort::init_from(&library.path)
                .map_err(|error| format!("loading ONNX Runtime from {library}: {error}"))?
                .with_name("keel")
                .with_telemetry(false)
                .build()
                .map_err(|error| format!("starting ONNX Runtime from {library}: {error}"))?;
            tracing::info!(
                path = %library.path.display(),
                source = %library.source,
                "ONNX Runtime loaded"
            );
            let _ = LOADED_LIBRARY.set(library);
            Ok(environment)
        })
        .as_ref()
        .map_err(|message| EngineError::Runtime(message.clone()))
}

#[derive(Debug, Clone, Copy)]
enum Precision {
    F32,
    F64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LabelKind {
    /// Index into the signature's classes (keel's export).
    ClassIndex,
    /// The class label itself, as a number.
    Integer,
    /// The class label itself, as text.
    Text,
}

#[derive(Debug)]
enum Outputs {
    Classes {
        label: Option<(String, LabelKind)>,
        probabilities: String,
    },
    Value(String),
}

pub(crate) struct OnnxModel {
    /// One session per worker thread: `Session::run` takes `&mut self`.
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    precision: Precision,
    outputs: Outputs,
    path: PathBuf,
}

fn runtime_error<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> EngineError + '_ {
    move |error| EngineError::model(path, format!("ONNX Runtime: {error}"))
}

impl OnnxModel {
    pub(crate) fn load(
        path: &Path,
        file_signature: Option<FileSignature>,
    ) -> Result<(OnnxModel, ServingSignature)> {
        let environment = environment()?;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut sessions = Vec::with_capacity(workers);
        for _ in 0..workers {
            let session = Session::builder(environment)
                .map_err(runtime_error(path))?
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(runtime_error(path))?
                .with_intra_threads(1)
                .map_err(runtime_error(path))?
                .with_inter_threads(1)
                .map_err(runtime_error(path))?
                .commit_from_file(path)
                .map_err(runtime_error(path))?;
            sessions.push(Mutex::new(session));
        }
        let first = sessions[0]
            .lock()
            .map_err(|_| EngineError::model(path, "session lock poisoned"))?;
        let inputs = first.inputs();
        if inputs.len() != 1 {
            return Err(EngineError::model(
                path,
                format!(
                    "takes {} inputs ({}); keel serves ONNX models with one float tensor [N, F]",
                    inputs.len(),
                    inputs
                        .iter()
                        .map(|i| i.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let (precision, width) = match inputs[0].dtype() {
            ValueType::Tensor { ty, shape, .. } => {
                let precision = match ty {
                    TensorElementType::Float32 => Precision::F32,
                    TensorElementType::Float64 => Precision::F64,
                    other => {
                        return Err(EngineError::model(
                            path,
                            format!(
                                "input {:?} is a {other:?} tensor; keel feeds float32 or float64 [N, F]",
                                inputs[0].name()
                            ),
                        ));
                    }
                };
                if shape.len() != 2 {
                    return Err(EngineError::model(
                        path,
                        format!(
                            "input {:?} has shape {:?}; keel feeds [N, F]",
                            inputs[0].name(),
                            &shape[..]
                        ),
                    ));
                }
                (precision, usize::try_from(shape[1]).ok())
            }
            other => {
                return Err(EngineError::model(
                    path,
                    format!("input {:?} is {other:?}, not a tensor", inputs[0].name()),
                ));
            }
        };
        let keel_labels = file_signature
            .as_ref()
            .is_some_and(|s| s.source == SignatureSource::Keel);
        let outputs = discover_outputs(path, first.outputs(), keel_labels)?;
        let proba_width = match &outputs {
            Outputs::Classes { probabilities, .. } => first
                .outputs()
                .iter()
                .find(|o| o.name() == probabilities)
                .and_then(|o| o.dtype().tensor_shape().map(|s| s.to_vec()))
                .and_then(|s| s.get(1).copied())
                .and_then(|k| usize::try_from(k).ok()),
            Outputs::Value(_) => None,
        };
        drop(first);

        // A label output gives the labels' type; else signature.json does; the
        // default classes are the indices 0..k.
        let graph_labels = match &outputs {
            Outputs::Classes {
                label: Some((_, LabelKind::Integer)),
                ..
            } => Some(LabelType::Integer),
            Outputs::Classes {
                label: Some((_, LabelKind::Text)),
                ..
            } => Some(LabelType::Text),
            _ => None,
        };
        let signature = match file_signature {
            Some(file) => {
                if let Some(width) = width
                    && width != file.inputs.len()
                {
                    return Err(EngineError::model(
                        path,
                        format!(
                            "the graph takes {width} features but signature.json lists {} inputs",
                            file.inputs.len()
                        ),
                    ));
                }
                let output = match (&outputs, file.classes, file.regression) {
                    (Outputs::Value(_), _, _) | (_, _, true) => OutputKind::Value,
                    (Outputs::Classes { .. }, Some(classes), false) => OutputKind::Classes(classes),
                    (Outputs::Classes { .. }, None, false) => {
                        OutputKind::Classes(default_classes(path, proba_width)?)
                    }
                };
                ServingSignature {
                    inputs: file.inputs,
                    output,
                    label_type: graph_labels
                        .or(file.label_type)
                        .unwrap_or(LabelType::Integer),
                    source: file.source,
                }
            }
            None => {
                let width = width.ok_or_else(|| {
                    EngineError::model(
                        path,
                        "the input's feature dimension is symbolic; add a signature.json naming the inputs",
                    )
                })?;
                let output = match &outputs {
                    Outputs::Classes { .. } => {
                        OutputKind::Classes(default_classes(path, proba_width)?)
                    }
                    Outputs::Value(_) => OutputKind::Value,
                };
                ServingSignature::from_width(
                    width,
                    output,
                    graph_labels.unwrap_or(LabelType::Integer),
                )
            }
        };
        if let (OutputKind::Classes(classes), Some(k)) = (&signature.output, proba_width)
            && classes.len() != k
        {
            return Err(EngineError::model(
                path,
                format!(
                    "{} classes in signature.json but the probabilities output has {k} columns",
                    classes.len()
                ),
            ));
        }
        Ok((
            OnnxModel {
                sessions,
                next: AtomicUsize::new(0),
                precision,
                outputs,
                path: path.to_path_buf(),
            },
            signature,
        ))
    }

    pub(crate) fn predict(
        &self,
        batch: &Batch,
        signature: &ServingSignature,
    ) -> Result<Predictions> {
        let rows = batch.rows;
        let width = signature.inputs.len();
        let mut data = vec![f64::NAN; rows * width];
        for (c, (spec, column)) in signature.inputs.iter().zip(&batch.columns).enumerate() {
            match (&spec.kind, column) {
                (InputKind::Numeric { .. }, Column::Numeric(values)) => {
                    for (r, value) in values.iter().enumerate() {
                        data[r * width + c] = *value;
                    }
                }
                (InputKind::Categorical { categories, index }, Column::Categorical(values)) => {
                    for (r, value) in values.iter().enumerate() {
                        if let Some(text) = value {
                            let code = index.get(text).copied().unwrap_or(categories.len());
                            data[r * width + c] = code as f64;
                        }
                    }
                }
                _ => {
                    return Err(EngineError::Input(format!(
                        "column {:?}: expected {} values",
                        spec.name,
                        if spec.kind.is_categorical() {
                            "text"
                        } else {
                            "numeric"
                        }
                    )));
                }
            }
        }
        let input: DynValue = match self.precision {
            Precision::F32 => Tensor::from_array((
                [rows, width],
                data.iter().map(|&v| v as f32).collect::<Vec<f32>>(),
            ))
            .map(Into::into),
            Precision::F64 => Tensor::from_array(([rows, width], data)).map(Into::into),
        }
        .map_err(|e| EngineError::Predict(e.to_string()))?;

        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len();
        let mut session = self.sessions[slot]
            .lock()
            .map_err(|_| EngineError::Predict("ONNX session lock poisoned".into()))?;
        let outputs = session
            .run(ort::inputs![input])
            .map_err(|e| EngineError::Predict(format!("{}: {e}", self.path.display())))?;
        let get = |name: &str| {
            outputs
                .get(name)
                .ok_or_else(|| EngineError::Predict(format!("output {name:?} missing")))
        };
        match &self.outputs {
            Outputs::Value(name) => {
                let values = floats(get(name)?, name)?;
                if values.len() != rows {
                    return Err(EngineError::Predict(format!(
                        "output {name:?} has {} values for {rows} rows",
                        values.len()
                    )));
                }
                Ok(Predictions::Values(values))
            }
            Outputs::Classes {
                label,
                probabilities,
            } => {
                let classes = signature.classes().unwrap_or(&[]);
                let k = classes.len().max(1);
                let probabilities_values = floats(get(probabilities)?, probabilities)?;
                if probabilities_values.len() != rows * k {
                    return Err(EngineError::Predict(format!(
                        "output {probabilities:?} has {} values for {rows} rows of {k} classes",
                        probabilities_values.len()
                    )));
                }
                let labels = match label {
                    Some((name, kind)) => {
                        let value = get(name)?;
                        let labels: Vec<String> = match kind {
                            LabelKind::Text => {
                                value
                                    .try_extract_strings()
                                    .map_err(|e| {
                                        EngineError::Predict(format!("output {name:?}: {e}"))
                                    })?
                                    .1
                            }
                            LabelKind::Integer | LabelKind::ClassIndex => {
                                let (_, ints) = value.try_extract_tensor::<i64>().map_err(|e| {
                                    EngineError::Predict(format!("output {name:?}: {e}"))
                                })?;
                                ints.iter()
                                    .map(|&i| {
                                        if *kind == LabelKind::ClassIndex {
                                            usize::try_from(i)
                                                .ok()
                                                .and_then(|i| classes.get(i))
                                                .cloned()
                                                .unwrap_or_else(|| i.to_string())
                                        } else {
                                            i.to_string()
                                        }
                                    })
                                    .collect()
                            }
                        };
                        if labels.len() != rows {
                            return Err(EngineError::Predict(format!(
                                "output {name:?} has {} labels for {rows} rows",
                                labels.len()
                            )));
                        }
                        labels
                    }
                    None => probabilities_values
                        .chunks(k)
                        .map(|row| {
                            let best = (0..row.len())
                                .fold(0, |best, j| if row[j] > row[best] { j } else { best });
                            classes
                                .get(best)
                                .cloned()
                                .unwrap_or_else(|| best.to_string())
                        })
                        .collect(),
                };
                Ok(Predictions::Classes {
                    labels,
                    probabilities: probabilities_values,
                    k,
                })
            }
        }
    }
}

/// Float output values (float32 or float64) as f64.
fn floats(value: &DynValue, name: &str) -> Result<Vec<f64>> {
    if let Ok((_, values)) = value.try_extract_tensor::<f32>() {
        return Ok(values.iter().map(|&v| f64::from(v)).collect());
    }
    value
        .try_extract_tensor::<f64>()
        .map(|(_, values)| values.to_vec())
        .map_err(|e| EngineError::Predict(format!("output {name:?} is not a float tensor: {e}")))
}

fn default_classes(path: &Path, width: Option<usize>) -> Result<Vec<String>> {
    let k = width.ok_or_else(|| {
        EngineError::model(
            path,
            "the probabilities output has a symbolic class dimension; add a signature.json with \"classes\"",
        )
    })?;
    Ok((0..k).map(|i| i.to_string()).collect())
}

fn discover_outputs(
    path: &Path,
    outlets: &[ort::value::Outlet],
    keel_labels: bool,
) -> Result<Outputs> {
    let find = |name: &str| outlets.iter().find(|o| o.name() == name);
    let element = |o: &ort::value::Outlet| o.dtype().tensor_type();
    if let Some(outlet) = outlets
        .iter()
        .find(|o| matches!(o.dtype(), ValueType::Sequence(_) | ValueType::Map { .. }))
    {
        return Err(EngineError::model(
            path,
            format!(
                "output {:?} is a ZipMap (sequence of maps); export classifiers with zipmap=False \
                 (skl2onnx: options={{id(model): {{'zipmap': False}}}})",
                outlet.name()
            ),
        ));
    }
    let label_kind = |o: &ort::value::Outlet| match element(o) {
        Some(TensorElementType::String) => Some(LabelKind::Text),
        Some(TensorElementType::Int64) => Some(if keel_labels {
            LabelKind::ClassIndex
        } else {
            LabelKind::Integer
        }),
        _ => None,
    };
    let is_float = |o: &ort::value::Outlet| {
        matches!(
            element(o),
            Some(TensorElementType::Float32 | TensorElementType::Float64)
        )
    };
    if let Some(probabilities) = find("probabilities").filter(|o| is_float(o)) {
        let label = find("label")
            .or_else(|| find("output_label"))
            .and_then(|o| label_kind(o).map(|kind| (o.name().to_string(), kind)));
        return Ok(Outputs::Classes {
            label,
            probabilities: probabilities.name().to_string(),
        });
    }
    if let Some(variable) = find("variable").filter(|o| is_float(o)) {
        return Ok(Outputs::Value(variable.name().to_string()));
    }
    let labels: Vec<_> = outlets.iter().filter(|o| label_kind(o).is_some()).collect();
    let float_outputs: Vec<_> = outlets.iter().filter(|o| is_float(o)).collect();
    match (labels.as_slice(), float_outputs.as_slice()) {
        ([label], [probabilities]) => Ok(Outputs::Classes {
            label: label_kind(label).map(|kind| (label.name().to_string(), kind)),
            probabilities: probabilities.name().to_string(),
        }),
        ([], [value]) => {
            let columns = value
                .dtype()
                .tensor_shape()
                .and_then(|s| s.get(1).copied())
                .unwrap_or(1);
            if columns > 1 {
                // A float [N, K] without a label: class scores.
                Ok(Outputs::Classes {
                    label: None,
                    probabilities: value.name().to_string(),
                })
            } else {
                Ok(Outputs::Value(value.name().to_string()))
            }
        }
        _ => Err(EngineError::model(
            path,
            format!(
                "cannot tell the prediction outputs among {}; keel reads label + probabilities, \
                 variable, or a single float output",
                outlets
                    .iter()
                    .map(|o| format!("{} ({:?})", o.name(), o.dtype()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}
