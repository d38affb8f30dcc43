//! ONNX export of keel-learn models, written with `prost`-derived structs for
//! the subset of `onnx.proto` it needs (no protoc, no build script).
//!
//! The graph takes one float tensor `input` of shape `[N, F]`, columns in the
//! signature's input order. A numeric input is its value; a categorical input
//! is the index of its category in the signature's `categories` list, and
//! `len(categories)` means unknown; `NaN` means missing for both. Turning
//! category strings into these codes is the serving layer's job, from
//! `signature.json`. Inside the graph, plain `ai.onnx` ops impute (`IsNaN`,
//! `Where`), standardize (`Sub`, `Div`) and one-hot encode (`Equal`, `Cast`,
//! `Concat`) for linear models, then `MatMul`/`Add` and `Sigmoid`/`Softmax`;
//! tree models use `ai.onnx.ml` `TreeEnsembleRegressor` (one target per
//! class score, `AVERAGE` for forests, `SUM` plus base values for boosting),
//! followed by the same plain ops. Outputs: `probabilities` `[N, K]` and
//! `label` `[N]` (int64 index into the signature's `classes`) for
//! classifiers, `variable` `[N, 1]` for regressors. Values are float32, so
//! they agree with keel's native predictions to about 1e-6 relative.

use prost::Message;

use crate::error::{LearnError, Result};
use crate::gbdt::Loss;
use crate::model::{Estimator, Model, Task};
use crate::preprocess::{Encoding, FeatureKind};
use crate::tree::Tree;
use keel_table::{Column, Table};

/// File name of the exported model in a model folder.
pub const ONNX_FILE: &str = "model.onnx";

/// `onnx.ModelProto` (the fields keel writes).
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// IR version.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// Producer.
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// Producer version.
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// Documentation.
    #[prost(string, tag = "6")]
    pub doc_string: String,
    /// The graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// Operator sets used.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Free-form metadata.
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `onnx.OperatorSetIdProto`.
#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    /// Domain ("" for ai.onnx).
    #[prost(string, tag = "1")]
    pub domain: String,
    /// Version.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `onnx.StringStringEntryProto`.
#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    /// Key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `onnx.GraphProto`.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    /// Nodes, topologically sorted.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Constants.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Inputs.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// `onnx.NodeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    /// Input names.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name.
    #[prost(string, tag = "3")]
    pub name: String,
    /// Operator.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// Operator domain.
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// `onnx.AttributeProto` (scalar and list forms keel uses).
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Float value.
    #[prost(float, tag = "2")]
    pub f: f32,
    /// Int value.
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// String value.
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    /// Tensor value.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// Float list.
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    /// Int list.
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// String list.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    /// Which field is set (AttributeType).
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// `onnx.TensorProto` (float and int64 data).
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    /// Shape.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// Element type (DataType).
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// Float elements.
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// Int64 elements.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// Name (for initializers).
    #[prost(string, tag = "8")]
    pub name: String,
}

/// `onnx.ValueInfoProto`.
#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `onnx.TypeProto`: the tensor, sequence and map members of the `value`
/// oneof (sequences of maps are what skl2onnx's `ZipMap` outputs).
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    /// Tensor type.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
    /// Sequence type.
    #[prost(message, optional, boxed, tag = "4")]
    pub sequence_type: Option<Box<SequenceTypeProto>>,
    /// Map type.
    #[prost(message, optional, boxed, tag = "5")]
    pub map_type: Option<Box<MapTypeProto>>,
}

/// `onnx.TypeProto.Sequence`.
#[derive(Clone, PartialEq, Message)]
pub struct SequenceTypeProto {
    /// Element type.
    #[prost(message, optional, boxed, tag = "1")]
    pub elem_type: Option<Box<TypeProto>>,
}

/// `onnx.TypeProto.Map`.
#[derive(Clone, PartialEq, Message)]
pub struct MapTypeProto {
    /// Key element type (DataType).
    #[prost(int32, tag = "1")]
    pub key_type: i32,
    /// Value type.
    #[prost(message, optional, boxed, tag = "2")]
    pub value_type: Option<Box<TypeProto>>,
}

/// `onnx.TypeProto.Tensor`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    /// Element type (DataType).
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    /// Shape.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `onnx.TensorShapeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    /// Dimensions.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `onnx.TensorShapeProto.Dimension` (the `value` oneof as two optionals).
#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    /// Fixed size.
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// Symbolic size.
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

pub(crate) const FLOAT: i32 = 1;
pub(crate) const INT64: i32 = 7;
const ATTR_INT: i32 = 2;
const ATTR_STRING: i32 = 3;
const ATTR_FLOATS: i32 = 6;
const ATTR_INTS: i32 = 7;
const ATTR_STRINGS: i32 = 8;
pub(crate) const ML_DOMAIN: &str = "ai.onnx.ml";

fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: value,
        r#type: ATTR_INT,
        ..Default::default()
    }
}

fn attr_string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: value.as_bytes().to_vec(),
        r#type: ATTR_STRING,
        ..Default::default()
    }
}

fn attr_ints(name: &str, values: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: values,
        r#type: ATTR_INTS,
        ..Default::default()
    }
}

fn attr_floats(name: &str, values: Vec<f32>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        floats: values,
        r#type: ATTR_FLOATS,
        ..Default::default()
    }
}

fn attr_strings(name: &str, values: &[&str]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        strings: values.iter().map(|s| s.as_bytes().to_vec()).collect(),
        r#type: ATTR_STRINGS,
        ..Default::default()
    }
}

fn value_info(name: &str, elem_type: i32, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| match d {
                            Some(size) => Dimension {
                                dim_value: Some(*size),
                                dim_param: None,
                            },
                            None => Dimension {
                                dim_value: None,
                                dim_param: Some("N".into()),
                            },
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }),
    }
}

/// Builds a graph node by node, naming intermediate values uniquely.
#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
}

impl GraphBuilder {
    fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}_{}", self.counter)
    }

    fn constant_floats(&mut self, stem: &str, dims: Vec<i64>, values: Vec<f32>) -> String {
        let name = self.fresh(stem);
        self.initializers.push(TensorProto {
            dims,
            data_type: FLOAT,
            float_data: values,
            name: name.clone(),
            ..Default::default()
        });
        name
    }

    fn constant_ints(&mut self, stem: &str, dims: Vec<i64>, values: Vec<i64>) -> String {
        let name = self.fresh(stem);
        self.initializers.push(TensorProto {
            dims,
            data_type: INT64,
            int64_data: values,
            name: name.clone(),
            ..Default::default()
        });
        name
    }

    fn node(
        &mut self,
        op_type: &str,
        domain: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        output: Option<&str>,
    ) -> String {
        let output = output.map_or_else(|| self.fresh(&op_type.to_lowercase()), str::to_string);
        let name = self.fresh(op_type);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name,
            op_type: op_type.into(),
            attribute: attributes,
            domain: domain.into(),
        });
        output
    }

    fn op(&mut self, op_type: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        self.node(op_type, "", inputs, attributes, None)
    }
}

/// The graph input for `table`: `[rows, inputs]` float32, row-major, with
/// categories as codes and missing values as `NaN` (see the module doc).
pub fn encode_inputs(model: &Model, table: &Table) -> Result<Vec<f32>> {
    let features = &model.preprocessor.features;
    let rows = table.n_rows();
    let mut data = vec![0.0f32; rows * features.len()];
    for (j, feature) in features.iter().enumerate() {
        let column = table.require(&feature.name)?;
        match &feature.kind {
            FeatureKind::Numeric { .. } => {
                let Column::Numeric(values) = column else {
                    return Err(LearnError::InvalidData(format!(
                        "column {:?} must be numeric but holds text",
                        feature.name
                    )));
                };
                for (i, value) in values.iter().enumerate() {
                    data[i * features.len() + j] = *value as f32;
                }
            }
            FeatureKind::Categorical { categories, .. } => {
                for i in 0..rows {
                    data[i * features.len() + j] = match column.text(i) {
                        None => f32::NAN,
                        Some(text) => categories
                            .iter()
                            .position(|c| *c == text)
                            .unwrap_or(categories.len())
                            as f32,
                    };
                }
            }
        }
    }
    Ok(data)
}

/// Serializes `model` as an ONNX `ModelProto`.
pub fn export_onnx(model: &Model) -> Result<Vec<u8>> {
    let mut graph = GraphBuilder::default();
    let features = &model.preprocessor.features;
    let n_inputs = features.len() as i64;
    // 1. Impute: NaN -> training mean (numeric) or the unknown code (categorical).
    let fill: Vec<f32> = features
        .iter()
        .map(|f| match &f.kind {
            FeatureKind::Numeric { mean, .. } => *mean as f32,
            FeatureKind::Categorical { categories, .. } => categories.len() as f32,
        })
        .collect();
    let fill = graph.constant_floats("fill", vec![1, n_inputs], fill);
    let missing = graph.op("IsNaN", &["input"], vec![]);
    let imputed = graph.op("Where", &[&missing, &fill, "input"], vec![]);
    // 2. Encode.
    let encoded = match model.preprocessor.encoding {
        Encoding::Ordinal => imputed,
        Encoding::OneHotStandardized => {
            let (means, stds): (Vec<f32>, Vec<f32>) = features
                .iter()
                .map(|f| match &f.kind {
                    FeatureKind::Numeric { mean, std, .. } => (*mean as f32, *std as f32),
                    FeatureKind::Categorical { .. } => (0.0, 1.0),
                })
                .unzip();
            let means = graph.constant_floats("mean", vec![1, n_inputs], means);
            let stds = graph.constant_floats("std", vec![1, n_inputs], stds);
            let centered = graph.op("Sub", &[&imputed, &means], vec![]);
            let scaled = graph.op("Div", &[&centered, &stds], vec![]);
            let mut pieces = Vec::new();
            for (index, feature) in features.iter().enumerate() {
                let column_index = graph.constant_ints("column", vec![1], vec![index as i64]);
                let column = graph.op(
                    "Gather",
                    &[&scaled, &column_index],
                    vec![attr_int("axis", 1)],
                );
                match &feature.kind {
                    FeatureKind::Numeric { .. } => pieces.push(column),
                    FeatureKind::Categorical { categories, .. } => {
                        let codes: Vec<f32> = (0..=categories.len()).map(|c| c as f32).collect();
                        let codes =
                            graph.constant_floats("codes", vec![1, codes.len() as i64], codes);
                        let equal = graph.op("Equal", &[&column, &codes], vec![]);
                        pieces.push(graph.op(
                            "Cast",
                            &[&equal],
                            vec![attr_int("to", FLOAT as i64)],
                        ));
                    }
                }
            }
            let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
            graph.op("Concat", &refs, vec![attr_int("axis", 1)])
        }
    };
    // 3. Score.
    let scores = match &model.estimator {
        Estimator::Linear(linear) => {
            let outputs = linear.weights.len();
            let d = linear.weights.first().map_or(0, Vec::len);
            // MatMul with W^T: [d, outputs].
            let mut transposed = vec![0.0f32; d * outputs];
            for (k, row) in linear.weights.iter().enumerate() {
                for (j, w) in row.iter().enumerate() {
                    transposed[j * outputs + k] = *w as f32;
                }
            }
            let weights =
                graph.constant_floats("weights", vec![d as i64, outputs as i64], transposed);
            let bias = graph.constant_floats(
                "bias",
                vec![1, outputs as i64],
                linear.intercepts.iter().map(|b| *b as f32).collect(),
            );
            let product = graph.op("MatMul", &[&encoded, &weights], vec![]);
            graph.op("Add", &[&product, &bias], vec![])
        }
        Estimator::Forest(forest) => {
            let attributes = tree_attributes(&forest.trees, forest.outputs, |_| 0, "AVERAGE", &[]);
            graph.node(
                "TreeEnsembleRegressor",
                ML_DOMAIN,
                &[&encoded],
                attributes,
                None,
            )
        }
        Estimator::Boosted(boosted) => {
            let k = boosted.init.len();
            let base: Vec<f32> = boosted.init.iter().map(|v| *v as f32).collect();
            let attributes = tree_attributes(&boosted.trees, k, |t| t % k, "SUM", &base);
            graph.node(
                "TreeEnsembleRegressor",
                ML_DOMAIN,
                &[&encoded],
                attributes,
                None,
            )
        }
    };
    // 4. Outputs.
    let mut outputs = Vec::new();
    match model.task {
        Task::Regression => {
            graph.node("Identity", "", &[&scores], vec![], Some("variable"));
            outputs.push(value_info("variable", FLOAT, &[None, Some(1)]));
        }
        Task::Classification => {
            let k = model.classes.len() as i64;
            let already_probabilities = matches!(model.estimator, Estimator::Forest(_));
            let single_logit = match &model.estimator {
                Estimator::Linear(linear) => linear.weights.len() == 1,
                Estimator::Boosted(boosted) => boosted.loss == Loss::Logistic,
                Estimator::Forest(_) => false,
            };
            if already_probabilities {
                graph.node("Identity", "", &[&scores], vec![], Some("probabilities"));
            } else if single_logit {
                let positive = graph.op("Sigmoid", &[&scores], vec![]);
                let one = graph.constant_floats("one", vec![1, 1], vec![1.0]);
                let negative = graph.op("Sub", &[&one, &positive], vec![]);
                graph.node(
                    "Concat",
                    "",
                    &[&negative, &positive],
                    vec![attr_int("axis", 1)],
                    Some("probabilities"),
                );
            } else {
                graph.node(
                    "Softmax",
                    "",
                    &[&scores],
                    vec![attr_int("axis", 1)],
                    Some("probabilities"),
                );
            }
            graph.node(
                "ArgMax",
                "",
                &["probabilities"],
                vec![attr_int("axis", 1), attr_int("keepdims", 0)],
                Some("label"),
            );
            outputs.push(value_info("label", INT64, &[None]));
            outputs.push(value_info("probabilities", FLOAT, &[None, Some(k)]));
        }
    }
    let proto = ModelProto {
        ir_version: 8,
        producer_name: "keel".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "keel-learn {} {:?} model for target {:?}; input columns in signature.json order",
            model.algorithm.as_str(),
            model.task,
            model.target
        ),
        graph: Some(GraphProto {
            node: graph.nodes,
            name: "keel".into(),
            initializer: graph.initializers,
            input: vec![value_info("input", FLOAT, &[None, Some(n_inputs)])],
            output: outputs,
        }),
        opset_import: vec![
            OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            },
            OperatorSetIdProto {
                domain: ML_DOMAIN.into(),
                version: 3,
            },
        ],
        metadata_props: vec![
            StringStringEntryProto {
                key: "keel.inputs".into(),
                value: features
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            },
            StringStringEntryProto {
                key: "keel.classes".into(),
                value: model.classes.join(","),
            },
        ],
    };
    Ok(proto.encode_to_vec())
}

/// TreeEnsembleRegressor attributes for `trees`; `target_of(t)` is the score
/// (class) tree `t` adds to.
fn tree_attributes(
    trees: &[Tree],
    n_targets: usize,
    target_of: impl Fn(usize) -> usize,
    aggregate: &str,
    base_values: &[f32],
) -> Vec<AttributeProto> {
    let mut tree_ids = Vec::new();
    let mut node_ids = Vec::new();
    let mut feature_ids = Vec::new();
    let mut modes: Vec<&str> = Vec::new();
    let mut values = Vec::new();
    let mut true_ids = Vec::new();
    let mut false_ids = Vec::new();
    let mut target_tree_ids = Vec::new();
    let mut target_node_ids = Vec::new();
    let mut target_ids = Vec::new();
    let mut target_weights = Vec::new();
    for (t, tree) in trees.iter().enumerate() {
        for node in 0..tree.len() {
            tree_ids.push(t as i64);
            node_ids.push(node as i64);
            if tree.features[node] >= 0 {
                feature_ids.push(i64::from(tree.features[node]));
                modes.push("BRANCH_LEQ");
                values.push(tree.thresholds[node] as f32);
                true_ids.push(i64::from(tree.left[node]));
                false_ids.push(i64::from(tree.right[node]));
            } else {
                feature_ids.push(0);
                modes.push("LEAF");
                values.push(0.0);
                true_ids.push(0);
                false_ids.push(0);
                let leaf = &tree.values[node * tree.outputs..(node + 1) * tree.outputs];
                if tree.outputs == 1 {
                    target_tree_ids.push(t as i64);
                    target_node_ids.push(node as i64);
                    target_ids.push(target_of(t) as i64);
                    target_weights.push(leaf[0] as f32);
                } else {
                    for (k, value) in leaf.iter().enumerate() {
                        target_tree_ids.push(t as i64);
                        target_node_ids.push(node as i64);
                        target_ids.push(k as i64);
                        target_weights.push(*value as f32);
                    }
                }
            }
        }
    }
    let mut attributes = vec![
        attr_int("n_targets", n_targets as i64),
        attr_string("aggregate_function", aggregate),
        attr_string("post_transform", "NONE"),
        attr_ints("nodes_treeids", tree_ids),
        attr_ints("nodes_nodeids", node_ids),
        attr_ints("nodes_featureids", feature_ids),
        attr_strings("nodes_modes", &modes),
        attr_floats("nodes_values", values),
        attr_ints("nodes_truenodeids", true_ids),
        attr_ints("nodes_falsenodeids", false_ids),
        attr_ints("target_treeids", target_tree_ids),
        attr_ints("target_nodeids", target_node_ids),
        attr_ints("target_ids", target_ids),
        attr_floats("target_weights", target_weights),
    ];
    if !base_values.is_empty() {
        attributes.push(attr_floats("base_values", base_values.to_vec()));
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_a_model_proto() {
        let proto = ModelProto {
            ir_version: 8,
            producer_name: "keel".into(),
            graph: Some(GraphProto {
                name: "g".into(),
                input: vec![value_info("input", FLOAT, &[None, Some(3)])],
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = proto.encode_to_vec();
        // Field 1 (ir_version, varint) comes first: tag byte 0x08, value 8.
        assert_eq!(&bytes[..2], &[0x08, 0x08]);
        assert_eq!(ModelProto::decode(bytes.as_slice()).unwrap(), proto);
    }
}
