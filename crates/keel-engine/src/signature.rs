//! The serving signature: the model's inputs (name, type, training range or
//! categories) and its output kind. Read from `signature.json` (keel-learn's
//! format, or the same fields written by hand for a foreign ONNX model), or
//! derived from the ONNX graph (`f0..fN-1`, numeric, no range).

use std::collections::HashMap;
use std::path::Path;

pub use keel_learn::model::LabelType;
use keel_learn::model::{SIGNATURE_FILE, Signature, Task};
use keel_learn::preprocess::FeatureKind;
use serde_json::Value;

use crate::{EngineError, Result};

/// Where a signature came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureSource {
    /// keel-learn's `signature.json` (with training statistics).
    Keel,
    /// A `signature.json` next to a foreign ONNX model.
    File,
    /// Derived from the ONNX graph's input shape.
    Graph,
}

/// One model input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// Column name.
    pub name: String,
    /// Type and what training saw.
    pub kind: InputKind,
}

/// Type of an input, with what training saw.
#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    /// A number.
    Numeric {
        /// Smallest and largest training value, when known.
        range: Option<(f64, f64)>,
        /// A typical value (the training mean), used for warm-up rows.
        typical: f64,
    },
    /// A category (text).
    Categorical {
        /// Categories seen in training, most frequent first.
        categories: Vec<String>,
        /// Position of each category in `categories`.
        index: HashMap<String, usize>,
    },
}

impl InputKind {
    /// A categorical input over `categories`.
    pub fn categorical(categories: Vec<String>) -> Self {
        let index = categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i))
            .collect();
        InputKind::Categorical { categories, index }
    }

    /// Whether it takes text.
    pub fn is_categorical(&self) -> bool {
        matches!(self, InputKind::Categorical { .. })
    }
}

/// What the model predicts.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputKind {
    /// A class, with probabilities over these labels.
    Classes(Vec<String>),
    /// A number.
    Value,
}

/// Inputs and output of a served model.
#[derive(Debug, Clone, PartialEq)]
pub struct ServingSignature {
    /// Inputs in the order the model takes them.
    pub inputs: Vec<InputSpec>,
    /// Output kind.
    pub output: OutputKind,
    /// The type of the class labels (how a JSON answer writes them).
    pub label_type: LabelType,
    /// Where this came from.
    pub source: SignatureSource,
}

impl ServingSignature {
    /// From keel-learn's signature.
    pub fn from_keel(signature: &Signature) -> Self {
        ServingSignature {
            inputs: signature
                .inputs
                .iter()
                .map(|feature| InputSpec {
                    name: feature.name.clone(),
                    kind: match &feature.kind {
                        FeatureKind::Numeric { mean, min, max, .. } => InputKind::Numeric {
                            range: Some((*min, *max)),
                            typical: *mean,
                        },
                        FeatureKind::Categorical { categories, .. } => {
                            InputKind::categorical(categories.clone())
                        }
                    },
                })
                .collect(),
            output: match signature.task {
                Task::Classification => OutputKind::Classes(signature.classes.clone()),
                Task::Regression => OutputKind::Value,
            },
            label_type: signature.label_type.unwrap_or_default(),
            source: SignatureSource::Keel,
        }
    }

    /// Numeric inputs `f0..f{n-1}` without ranges (an ONNX graph without a
    /// signature file); classes are the label values the graph outputs, or
    /// the indices `0..k`.
    pub fn from_width(n: usize, output: OutputKind, label_type: LabelType) -> Self {
        ServingSignature {
            inputs: (0..n)
                .map(|i| InputSpec {
                    name: format!("f{i}"),
                    kind: InputKind::Numeric {
                        range: None,
                        typical: 0.0,
                    },
                })
                .collect(),
            output,
            label_type,
            source: SignatureSource::Graph,
        }
    }

    /// Position of the input called `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|input| input.name == name)
    }

    /// Class labels, if it classifies.
    pub fn classes(&self) -> Option<&[String]> {
        match &self.output {
            OutputKind::Classes(classes) => Some(classes),
            OutputKind::Value => None,
        }
    }
}

/// What a `signature.json` next to an ONNX model says.
#[derive(Debug, Clone)]
pub(crate) struct FileSignature {
    pub inputs: Vec<InputSpec>,
    pub classes: Option<Vec<String>>,
    /// The classes' type, when the file gives classes.
    pub label_type: Option<LabelType>,
    pub regression: bool,
    pub source: SignatureSource,
}

/// Reads `folder/signature.json` if there is one. keel's own format is read
/// exactly; otherwise `inputs: [{name, type: numeric|categorical, min?, max?,
/// mean?, categories?}]` and optional `classes` / `task`.
pub(crate) fn read_signature_file(folder: &Path) -> Result<Option<FileSignature>> {
    let path = folder.join(SIGNATURE_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let bytes =
        std::fs::read(&path).map_err(|error| EngineError::model(&path, error.to_string()))?;
    if let Ok(keel) = serde_json::from_slice::<Signature>(&bytes) {
        let serving = ServingSignature::from_keel(&keel);
        let classes = serving.classes().map(<[String]>::to_vec);
        let regression = serving.output == OutputKind::Value;
        return Ok(Some(FileSignature {
            inputs: serving.inputs,
            classes,
            label_type: Some(serving.label_type),
            regression,
            source: SignatureSource::Keel,
        }));
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|error| EngineError::model(&path, format!("not JSON: {error}")))?;
    let inputs = value
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| EngineError::model(&path, "needs an \"inputs\" list"))?;
    let mut specs = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let name = input
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| EngineError::model(&path, format!("inputs[{i}] has no \"name\"")))?;
        let kind = match input
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("numeric")
        {
            "categorical" | "string" => {
                let categories = input
                    .get("categories")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .map(|c| match c {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                InputKind::categorical(categories)
            }
            "numeric" | "double" | "float" | "long" | "integer" => {
                let min = input.get("min").and_then(Value::as_f64);
                let max = input.get("max").and_then(Value::as_f64);
                let range = min.zip(max);
                let typical = input
                    .get("mean")
                    .and_then(Value::as_f64)
                    .or_else(|| range.map(|(a, b)| (a + b) / 2.0))
                    .unwrap_or(0.0);
                InputKind::Numeric { range, typical }
            }
            other => {
                return Err(EngineError::model(
                    &path,
                    format!(
                        "inputs[{i}] ({name:?}): unknown type {other:?} (numeric or categorical)"
                    ),
                ));
            }
        };
        specs.push(InputSpec {
            name: name.to_string(),
            kind,
        });
    }
    let listed = value.get("classes").and_then(Value::as_array);
    // Classes written as JSON numbers are integer labels, as the model's own.
    let label_type = listed.map(|list| {
        if list.iter().all(|c| c.as_i64().is_some()) {
            LabelType::Integer
        } else {
            LabelType::Text
        }
    });
    let classes = listed.map(|list| {
        list.iter()
            .map(|c| match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    });
    let regression = value.get("task").and_then(Value::as_str) == Some("regression");
    Ok(Some(FileSignature {
        inputs: specs,
        classes,
        label_type,
        regression,
        source: SignatureSource::File,
    }))
}
