//! Importing ONNX models trained elsewhere (skl2onnx, onnxmltools, PyTorch's
//! exporter): the model is decoded with the same `prost` structs keel's
//! exporter writes, its graph is checked, and a signature is derived so the
//! model can be registered and served like a keel-trained one.
//!
//! Checks: the bytes decode as an ONNX `ModelProto` with a graph; every
//! node's operator domain is declared in `opset_import` and is one keel's
//! serving runtime (ONNX Runtime) implements (`ai.onnx`, `ai.onnx.ml`,
//! `com.microsoft`); `ai.onnx.ml` operators are ones the ONNX-ML spec
//! defines; every node input is a graph input, an initializer or an earlier
//! node's output (ONNX requires topological order) and every graph output is
//! produced. The tabular contract is one float (or double) input of shape
//! `[N, F]`; `F` comes from the graph, or from the signature file when the
//! graph leaves it symbolic.
//!
//! Task and classes: a classifier operator (`LinearClassifier`,
//! `TreeEnsembleClassifier`, `SVMClassifier`) or a `ZipMap` names the class
//! labels; otherwise a graph whose first output comes from `Sigmoid` or
//! `Softmax` is a classifier with classes `0..K` (as PyTorch exports them);
//! anything else is a regressor. A signature file can state task, classes,
//! target and feature names; it wins where the graph is silent and must agree
//! where it is not (the feature count).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use prost::Message;
use serde::{Deserialize, Serialize};

use crate::error::{LearnError, Result};
use crate::model::Task;
use crate::onnx::{FLOAT, INT64, ML_DOMAIN, ModelProto, NodeProto, TypeProto, ValueInfoProto};

/// Format tag of the signature written for an imported model.
pub const IMPORT_FORMAT: &str = "keel-onnx/1";

const DOUBLE: i32 = 11;
const STRING: i32 = 8;

/// Operator domains keel's serving runtime implements.
const DOMAINS: [&str; 4] = ["", "ai.onnx", ML_DOMAIN, "com.microsoft"];

/// The operators of the `ai.onnx.ml` domain (ONNX-ML spec, opset 1-5).
const ML_OPERATORS: [&str; 19] = [
    "ArrayFeatureExtractor",
    "Binarizer",
    "CastMap",
    "CategoryMapper",
    "DictVectorizer",
    "FeatureVectorizer",
    "Imputer",
    "LabelEncoder",
    "LinearClassifier",
    "LinearRegressor",
    "Normalizer",
    "OneHotEncoder",
    "SVMClassifier",
    "SVMRegressor",
    "Scaler",
    "TreeEnsemble",
    "TreeEnsembleClassifier",
    "TreeEnsembleRegressor",
    "ZipMap",
];

/// One input column of an imported model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedInput {
    /// Column name (from the signature file, else `f0`, `f1`, ...).
    pub name: String,
    /// Always `numeric`: the model takes one float tensor.
    #[serde(rename = "type")]
    pub kind: String,
}

/// One graph output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedOutput {
    /// Output name in the graph.
    pub name: String,
    /// `tensor(float)`, `tensor(int64)`, `seq(map(int64,tensor(float)))`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Dimensions (`N` for symbolic ones); empty for non-tensors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shape: Vec<String>,
}

/// The `signature.json` of an imported model: what serving must feed and
/// what comes out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedSignature {
    /// Always [`IMPORT_FORMAT`].
    pub format: String,
    /// Classification or regression.
    pub task: Task,
    /// The target column, when the signature file names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Class labels in the model's score order (classification).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// Name of the graph's input tensor (`[N, F]`).
    pub input_tensor: String,
    /// Its element type: `float` or `double`.
    pub input_type: String,
    /// The `F` columns, in tensor order.
    pub inputs: Vec<ImportedInput>,
    /// The graph's outputs.
    pub outputs: Vec<ImportedOutput>,
    /// Producer name and version from the file (`skl2onnx 1.20.0`).
    pub producer: String,
    /// ONNX IR version.
    pub ir_version: i64,
    /// Declared operator sets: domain (`ai.onnx` for the default) → version.
    pub opsets: BTreeMap<String, i64>,
    /// `ai.onnx.ml` operators the graph uses, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ml_operators: Vec<String>,
    /// Number of nodes in the graph.
    pub nodes: usize,
}

/// What a user-supplied signature file may say. Accepted shapes: keel's own
/// `signature.json`; `{"inputs": [{"name": ...}, ...], "task": ...,
/// "classes": [...], "target": ...}`; MLflow's model signature, whose
/// `inputs` is a JSON string of column specs; or a bare list of names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SignatureHint {
    /// Feature names, in tensor order.
    pub inputs: Option<Vec<String>>,
    /// Task.
    pub task: Option<Task>,
    /// Class labels.
    pub classes: Option<Vec<String>>,
    /// Target column.
    pub target: Option<String>,
}

impl SignatureHint {
    /// Reads a signature file (see the type's docs for accepted shapes).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| LearnError::io(path, source))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|error| {
            LearnError::data(format!("{}: not valid JSON: {error}", path.display()))
        })?;
        Self::from_json(&value)
            .map_err(|message| LearnError::data(format!("{}: {message}", path.display())))
    }

    fn from_json(value: &serde_json::Value) -> std::result::Result<Self, String> {
        use serde_json::Value;
        let names = |list: &Value, what: &str| -> std::result::Result<Vec<String>, String> {
            let Value::Array(items) = list else {
                return Err(format!("`{what}` must be a list"));
            };
            items
                .iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Value::String(name) => Ok(name.clone()),
                    Value::Number(number) => Ok(number.to_string()),
                    Value::Object(fields) => fields
                        .get("name")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| format!("`{what}[{index}]` has no string `name`")),
                    _ => Err(format!("`{what}[{index}]` is not a name")),
                })
                .collect()
        };
        let mut hint = SignatureHint::default();
        match value {
            Value::Array(_) => hint.inputs = Some(names(value, "inputs")?),
            Value::Object(fields) => {
                if let Some(inputs) = fields.get("inputs") {
                    hint.inputs = Some(match inputs {
                        // MLflow's signature: the column specs as a JSON string.
                        Value::String(text) => {
                            let parsed: Value = serde_json::from_str(text)
                                .map_err(|error| format!("`inputs` is not JSON: {error}"))?;
                            names(&parsed, "inputs")?
                        }
                        other => names(other, "inputs")?,
                    });
                }
                if let Some(classes) = fields.get("classes") {
                    hint.classes = Some(names(classes, "classes")?);
                }
                if let Some(task) = fields.get("task") {
                    hint.task = Some(match task.as_str() {
                        Some("classification") => Task::Classification,
                        Some("regression") => Task::Regression,
                        _ => {
                            return Err(
                                "`task` must be \"classification\" or \"regression\"".into()
                            );
                        }
                    });
                }
                if let Some(target) = fields.get("target").and_then(Value::as_str) {
                    hint.target = Some(target.to_string());
                }
            }
            _ => return Err("expected a JSON object or a list of feature names".into()),
        }
        Ok(hint)
    }
}

fn describe_type(value_type: Option<&TypeProto>) -> (String, Vec<String>) {
    let Some(value_type) = value_type else {
        return ("unknown".into(), Vec::new());
    };
    if let Some(tensor) = &value_type.tensor_type {
        let shape = tensor
            .shape
            .as_ref()
            .map(|shape| {
                shape
                    .dim
                    .iter()
                    .map(|dim| match (&dim.dim_value, &dim.dim_param) {
                        (Some(size), _) => size.to_string(),
                        (None, Some(name)) if !name.is_empty() => name.clone(),
                        _ => "?".into(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        return (format!("tensor({})", elem_name(tensor.elem_type)), shape);
    }
    if let Some(sequence) = &value_type.sequence_type {
        let (inner, _) = describe_type(sequence.elem_type.as_deref());
        return (format!("seq({inner})"), Vec::new());
    }
    if let Some(map) = &value_type.map_type {
        let (inner, _) = describe_type(map.value_type.as_deref());
        return (
            format!("map({},{inner})", elem_name(map.key_type)),
            Vec::new(),
        );
    }
    ("unknown".into(), Vec::new())
}

fn elem_name(elem_type: i32) -> &'static str {
    match elem_type {
        FLOAT => "float",
        2 => "uint8",
        3 => "int8",
        6 => "int32",
        INT64 => "int64",
        STRING => "string",
        9 => "bool",
        10 => "float16",
        DOUBLE => "double",
        _ => "other",
    }
}

fn attribute_strings(node: &NodeProto, name: &str) -> Option<Vec<String>> {
    let attribute = node.attribute.iter().find(|a| a.name == name)?;
    if !attribute.strings.is_empty() {
        return Some(
            attribute
                .strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        );
    }
    if !attribute.ints.is_empty() {
        return Some(attribute.ints.iter().map(i64::to_string).collect());
    }
    None
}

/// Decodes and checks an ONNX model and derives its signature. `origin`
/// names the file in errors.
pub fn inspect_onnx(
    bytes: &[u8],
    origin: &Path,
    hint: Option<&SignatureHint>,
) -> Result<ImportedSignature> {
    let invalid = |message: String| LearnError::InvalidModel {
        path: origin.to_path_buf(),
        message,
    };
    let model = ModelProto::decode(bytes)
        .map_err(|error| invalid(format!("not an ONNX model (protobuf: {error})")))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| invalid("the ONNX model has no graph".into()))?;
    if model.ir_version <= 0 {
        return Err(invalid("no ONNX IR version (is this an ONNX file?)".into()));
    }
    if graph.node.is_empty() {
        return Err(invalid("the graph has no nodes".into()));
    }
    let mut opsets = BTreeMap::new();
    for opset in &model.opset_import {
        let domain = if opset.domain.is_empty() {
            "ai.onnx"
        } else {
            opset.domain.as_str()
        };
        opsets.insert(domain.to_string(), opset.version);
    }
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut available: HashSet<&str> = initializers.clone();
    let inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|input| !initializers.contains(input.name.as_str()))
        .collect();
    available.extend(inputs.iter().map(|input| input.name.as_str()));
    let mut ml_operators = std::collections::BTreeSet::new();
    let mut classes_in_graph: Option<Vec<String>> = None;
    let mut classifier_op = false;
    let mut producer_of: BTreeMap<&str, &NodeProto> = BTreeMap::new();
    for (index, node) in graph.node.iter().enumerate() {
        let label = if node.name.is_empty() {
            format!("node {index} ({})", node.op_type)
        } else {
            format!("node `{}` ({})", node.name, node.op_type)
        };
        let domain = if node.domain.is_empty() {
            "ai.onnx"
        } else {
            node.domain.as_str()
        };
        if !DOMAINS.contains(&node.domain.as_str()) {
            return Err(invalid(format!(
                "{label}: operator domain `{domain}` is not one keel's runtime implements (ai.onnx, ai.onnx.ml, com.microsoft)"
            )));
        }
        if !opsets.contains_key(domain) {
            return Err(invalid(format!(
                "{label}: domain `{domain}` is not declared in opset_import"
            )));
        }
        if node.domain == ML_DOMAIN {
            if !ML_OPERATORS.contains(&node.op_type.as_str()) {
                return Err(invalid(format!(
                    "{label}: `{}` is not an ai.onnx.ml operator",
                    node.op_type
                )));
            }
            ml_operators.insert(node.op_type.clone());
            if node.op_type.ends_with("Classifier") {
                classifier_op = true;
            }
            if (node.op_type.ends_with("Classifier") || node.op_type == "ZipMap")
                && classes_in_graph.is_none()
            {
                // LinearClassifier and SVMClassifier say `classlabels_ints`,
                // the tree ensembles and ZipMap `classlabels_int64s`.
                classes_in_graph = attribute_strings(node, "classlabels_strings")
                    .or_else(|| attribute_strings(node, "classlabels_int64s"))
                    .or_else(|| attribute_strings(node, "classlabels_ints"));
            }
        }
        for input in &node.input {
            if !input.is_empty() && !available.contains(input.as_str()) {
                return Err(invalid(format!(
                    "{label}: input `{input}` is not a graph input, an initializer or an earlier node's output"
                )));
            }
        }
        for output in &node.output {
            if !output.is_empty() {
                available.insert(output);
                producer_of.insert(output, node);
            }
        }
    }
    if graph.output.is_empty() {
        return Err(invalid("the graph has no outputs".into()));
    }
    for output in &graph.output {
        if !available.contains(output.name.as_str()) {
            return Err(invalid(format!(
                "graph output `{}` is not produced by any node",
                output.name
            )));
        }
    }
    // The tabular contract: one [N, F] float tensor.
    let input = match inputs.as_slice() {
        [input] => *input,
        [] => return Err(invalid("the graph has no inputs".into())),
        many => {
            let names: Vec<&str> = many.iter().map(|input| input.name.as_str()).collect();
            return Err(invalid(format!(
                "the graph has {} inputs ({}); keel serves models with one [N, F] float input \
                 (skl2onnx: initial_types=[(\"X\", FloatTensorType([None, F]))])",
                names.len(),
                names.join(", ")
            )));
        }
    };
    let tensor = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| invalid(format!("input `{}` is not a tensor", input.name)))?;
    let input_type = match tensor.elem_type {
        FLOAT => "float",
        DOUBLE => "double",
        other => {
            return Err(invalid(format!(
                "input `{}` holds {} values; keel feeds float or double",
                input.name,
                elem_name(other)
            )));
        }
    };
    let dims = tensor
        .shape
        .as_ref()
        .map(|shape| shape.dim.as_slice())
        .unwrap_or_default();
    if dims.len() != 2 {
        return Err(invalid(format!(
            "input `{}` has rank {}; keel feeds a [N, F] table",
            input.name,
            dims.len()
        )));
    }
    let graph_features = dims[1].dim_value.filter(|size| *size > 0);
    let hinted = hint.and_then(|hint| hint.inputs.clone());
    let features = match (graph_features, &hinted) {
        (Some(count), Some(names)) if names.len() as i64 != count => {
            return Err(invalid(format!(
                "input `{}` has {count} columns but the signature names {}",
                input.name,
                names.len()
            )));
        }
        (_, Some(names)) => names.clone(),
        (Some(count), None) => (0..count).map(|i| format!("f{i}")).collect(),
        (None, None) => {
            return Err(invalid(format!(
                "input `{}` has a symbolic column count; pass --signature with the feature names",
                input.name
            )));
        }
    };
    let outputs: Vec<ImportedOutput> = graph
        .output
        .iter()
        .map(|output| {
            let (kind, shape) = describe_type(output.r#type.as_ref());
            ImportedOutput {
                name: output.name.clone(),
                kind,
                shape,
            }
        })
        .collect();
    // Task and classes: the signature file, then the graph.
    let first_op = producer_of
        .get(graph.output[0].name.as_str())
        .map(|node| node.op_type.as_str());
    let graph_task = (classifier_op
        || classes_in_graph.is_some()
        || matches!(first_op, Some("Sigmoid" | "Softmax")))
    .then_some(Task::Classification);
    let task = hint
        .and_then(|hint| hint.task)
        .or(graph_task)
        .unwrap_or(Task::Regression);
    let hinted_classes = hint.and_then(|hint| hint.classes.clone());
    let classes = match task {
        Task::Regression => Vec::new(),
        Task::Classification => match (hinted_classes, classes_in_graph) {
            (Some(hinted), Some(graph)) if hinted.len() != graph.len() => {
                return Err(invalid(format!(
                    "the graph has {} classes ({}) but the signature names {}",
                    graph.len(),
                    graph.join(", "),
                    hinted.len()
                )));
            }
            (Some(hinted), _) => hinted,
            (None, Some(graph)) => graph,
            (None, None) => {
                // A probability tensor [N, K]; K = 1 is a sigmoid's P(class 1).
                let width = outputs[0]
                    .shape
                    .get(1)
                    .and_then(|k| k.parse::<usize>().ok());
                match width {
                    Some(1) => vec!["0".into(), "1".into()],
                    Some(k) => (0..k).map(|i| i.to_string()).collect(),
                    None => {
                        return Err(invalid(
                            "a classifier whose class count is not in the graph; pass --signature with \"classes\"".into(),
                        ));
                    }
                }
            }
        },
    };
    Ok(ImportedSignature {
        format: IMPORT_FORMAT.to_string(),
        task,
        target: hint.and_then(|hint| hint.target.clone()),
        classes,
        input_tensor: input.name.clone(),
        input_type: input_type.to_string(),
        inputs: features
            .into_iter()
            .map(|name| ImportedInput {
                name,
                kind: "numeric".into(),
            })
            .collect(),
        outputs,
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string(),
        ir_version: model.ir_version,
        opsets,
        ml_operators: ml_operators.into_iter().collect(),
        nodes: graph.node.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{GraphProto, OperatorSetIdProto, TensorProto};

    fn tensor_input(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
        use crate::onnx::{Dimension, TensorShapeProto, TensorTypeProto};
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: FLOAT,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|d| Dimension {
                                dim_value: *d,
                                dim_param: d.is_none().then(|| "batch".to_string()),
                            })
                            .collect(),
                    }),
                }),
                ..Default::default()
            }),
        }
    }

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            op_type: op.into(),
            ..Default::default()
        }
    }

    /// MatMul + Add + Sigmoid, as PyTorch exports a logistic layer.
    fn torch_like(features: Option<i64>, last: &str) -> ModelProto {
        ModelProto {
            ir_version: 8,
            producer_name: "pytorch".into(),
            producer_version: "2.5.0".into(),
            graph: Some(GraphProto {
                node: vec![
                    node("MatMul", &["input", "W"], "z0"),
                    node("Add", &["z0", "B"], "z"),
                    node(last, &["z"], "output"),
                ],
                initializer: vec![
                    TensorProto {
                        name: "W".into(),
                        dims: vec![3, 1],
                        data_type: FLOAT,
                        float_data: vec![0.1, 0.2, 0.3],
                        ..Default::default()
                    },
                    TensorProto {
                        name: "B".into(),
                        dims: vec![1],
                        data_type: FLOAT,
                        float_data: vec![0.5],
                        ..Default::default()
                    },
                ],
                input: vec![tensor_input("input", &[None, features])],
                output: vec![tensor_input("output", &[None, Some(1)])],
                ..Default::default()
            }),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn pytorch_like_graph_gets_a_signature() {
        let bytes = torch_like(Some(3), "Sigmoid").encode_to_vec();
        let signature = inspect_onnx(&bytes, Path::new("m.onnx"), None).unwrap();
        assert_eq!(signature.task, Task::Classification);
        assert_eq!(signature.classes, ["0", "1"]);
        assert_eq!(signature.input_tensor, "input");
        let names: Vec<&str> = signature.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["f0", "f1", "f2"]);
        assert_eq!(signature.outputs[0].shape, ["batch", "1"]);
        assert_eq!(signature.producer, "pytorch 2.5.0");
        assert_eq!(signature.opsets["ai.onnx"], 17);
        // Without the Sigmoid it is a regressor.
        let bytes = torch_like(Some(3), "Identity").encode_to_vec();
        let signature = inspect_onnx(&bytes, Path::new("m.onnx"), None).unwrap();
        assert_eq!(signature.task, Task::Regression);
    }

    #[test]
    fn symbolic_width_needs_names_and_names_must_fit() {
        let bytes = torch_like(None, "Sigmoid").encode_to_vec();
        let error = inspect_onnx(&bytes, Path::new("m.onnx"), None).unwrap_err();
        assert!(error.to_string().contains("pass --signature"), "{error}");
        let hint = SignatureHint::from_json(&serde_json::json!({
            "inputs": [{"name": "age"}, {"name": "income"}, {"name": "debt"}],
            "target": "default",
        }))
        .unwrap();
        let signature = inspect_onnx(&bytes, Path::new("m.onnx"), Some(&hint)).unwrap();
        assert_eq!(signature.inputs[1].name, "income");
        assert_eq!(signature.target.as_deref(), Some("default"));
        let bytes = torch_like(Some(2), "Sigmoid").encode_to_vec();
        let error = inspect_onnx(&bytes, Path::new("m.onnx"), Some(&hint)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("has 2 columns but the signature names 3"),
            "{error}"
        );
    }

    #[test]
    fn broken_graphs_are_refused_with_the_node_named() {
        let mut model = torch_like(Some(3), "Sigmoid");
        model.graph.as_mut().unwrap().node[1].input[1] = "nowhere".into();
        let error = inspect_onnx(&model.encode_to_vec(), Path::new("m.onnx"), None).unwrap_err();
        assert!(
            error.to_string().contains("node 1 (Add): input `nowhere`"),
            "{error}"
        );
        let mut model = torch_like(Some(3), "Sigmoid");
        model.graph.as_mut().unwrap().node[2].domain = "ai.onnx.ml".into();
        let error = inspect_onnx(&model.encode_to_vec(), Path::new("m.onnx"), None).unwrap_err();
        assert!(
            error.to_string().contains("not declared in opset_import"),
            "{error}"
        );
        let mut model = torch_like(Some(3), "Sigmoid");
        model.graph.as_mut().unwrap().node[2].domain = "org.example".into();
        let error = inspect_onnx(&model.encode_to_vec(), Path::new("m.onnx"), None).unwrap_err();
        assert!(error.to_string().contains("`org.example`"), "{error}");
        let error = inspect_onnx(b"not onnx at all", Path::new("m.onnx"), None).unwrap_err();
        assert!(error.to_string().starts_with("model m.onnx: "), "{error}");
    }

    #[test]
    fn signature_files_in_several_shapes() {
        let mlflow = serde_json::json!({
            "inputs": "[{\"type\": \"double\", \"name\": \"a\"}, {\"type\": \"double\", \"name\": \"b\"}]",
            "outputs": "[{\"type\": \"long\"}]",
        });
        let hint = SignatureHint::from_json(&mlflow).unwrap();
        assert_eq!(hint.inputs.unwrap(), ["a", "b"]);
        let bare = SignatureHint::from_json(&serde_json::json!(["x", "y"])).unwrap();
        assert_eq!(bare.inputs.unwrap(), ["x", "y"]);
        let keel = serde_json::json!({
            "task": "classification", "classes": ["no", "yes"], "target": "t",
            "inputs": [{"name": "x", "type": "numeric", "mean": 1.0}],
        });
        let hint = SignatureHint::from_json(&keel).unwrap();
        assert_eq!(hint.task, Some(Task::Classification));
        assert_eq!(hint.classes.unwrap(), ["no", "yes"]);
        assert!(SignatureHint::from_json(&serde_json::json!({"task": "ranking"})).is_err());
    }
}
