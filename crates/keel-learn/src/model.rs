//! The trained model: preprocessing plus one learner, with the class list,
//! the input signature and the training-data profile. It predicts from raw
//! tables and is saved as a model folder (`model.json` in keel's native
//! format, `model.onnx` for serving, `signature.json` for serving and
//! monitoring).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{LearnError, Result};
use crate::forest::{Forest, ForestParams, ForestTarget, fit_forest};
use crate::gbdt::{BoostParams, BoostTarget, Boosted, fit_boosted, probabilities};
use crate::linear::{LinearModel, LogisticParams, fit_logistic, fit_ridge, sigmoid};
use crate::onnx::{ONNX_FILE, export_onnx};
use crate::preprocess::{Encoding, FeatureSpec, Preprocessor};
use keel_table::{Column, Table, format_number};

/// Name and version of the native model format written in `model.json`.
pub const MODEL_FORMAT: &str = "keel-learn/1";
/// File holding the whole model.
pub const MODEL_FILE: &str = "model.json";
/// File holding the signature and training profile.
pub const SIGNATURE_FILE: &str = "signature.json";

/// The learners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Logistic regression (classification).
    Logistic,
    /// Ordinary least squares (regression).
    Linear,
    /// Ridge regression (regression).
    Ridge,
    /// Random forest (both tasks).
    RandomForest,
    /// Histogram gradient-boosted trees (both tasks).
    Gbdt,
}

impl Algorithm {
    /// Every learner, in CLI order.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::Logistic,
        Algorithm::Linear,
        Algorithm::Ridge,
        Algorithm::RandomForest,
        Algorithm::Gbdt,
    ];

    /// CLI and file name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Logistic => "logistic",
            Algorithm::Linear => "linear",
            Algorithm::Ridge => "ridge",
            Algorithm::RandomForest => "random-forest",
            Algorithm::Gbdt => "gbdt",
        }
    }

    /// Parses a CLI name.
    pub fn parse(name: &str) -> Result<Self> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == name)
            .ok_or_else(|| {
                LearnError::param(format!(
                    "unknown algorithm {name:?} (one of: logistic, linear, ridge, random-forest, gbdt)"
                ))
            })
    }
}

/// Classification or regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Predict a class.
    Classification,
    /// Predict a number.
    Regression,
}

/// Settings of [`Model::train`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The learner.
    pub algorithm: Algorithm,
    /// Target column.
    pub target: String,
    /// Task; inferred from the target and algorithm when `None`.
    pub task: Option<Task>,
    /// Input columns; every other column when `None`.
    pub features: Option<Vec<String>>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Ridge penalty (for `ridge`).
    pub ridge_alpha: f64,
    /// Logistic regression settings.
    pub logistic: LogisticParams,
    /// Random forest settings.
    pub forest: ForestParams,
    /// Gradient boosting settings.
    pub boost: BoostParams,
}

impl TrainOptions {
    /// Defaults for `algorithm` on `target`.
    pub fn new(algorithm: Algorithm, target: impl Into<String>) -> Self {
        TrainOptions {
            algorithm,
            target: target.into(),
            task: None,
            features: None,
            seed: 0,
            ridge_alpha: 1.0,
            logistic: LogisticParams::default(),
            forest: ForestParams::default(),
            boost: BoostParams::default(),
        }
    }
}

/// The fitted learner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Estimator {
    /// Logistic, linear or ridge.
    Linear(LinearModel),
    /// Random forest.
    Forest(Forest),
    /// Gradient-boosted trees.
    Boosted(Boosted),
}

/// What the target looked like in training (monitoring's reference for predictions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetProfile {
    /// Rows trained on.
    pub rows: usize,
    /// Rows dropped because the target was missing.
    pub rows_without_target: usize,
    /// Share of each class (classification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_frequencies: Option<BTreeMap<String, f64>>,
    /// Mean, std, min, max of the target (regression).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_summary: Option<[f64; 4]>,
}

/// The type of a classifier's labels: its training target's. MLflow's
/// scoring server answers a model's own type (`[1, 0]` for integer
/// labels, `["yes", "no"]` for text), and so does `keel serve`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelType {
    /// Text labels (a categorical target; also every model written before
    /// keel recorded the type).
    #[default]
    Text,
    /// Integer labels (a numeric target whose values are whole numbers).
    Integer,
}

/// The model's contract and training profile, written as `signature.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// Format of the model next to it.
    pub format: String,
    /// The learner.
    pub algorithm: Algorithm,
    /// The task.
    pub task: Task,
    /// Target column.
    pub target: String,
    /// Class labels, in score order (classification).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// The labels' type (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_type: Option<LabelType>,
    /// Inputs with type, range / categories and training statistics.
    pub inputs: Vec<FeatureSpec>,
    /// What the target looked like in training.
    pub training: TargetProfile,
}

/// A trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Always [`MODEL_FORMAT`].
    pub format: String,
    /// The learner.
    pub algorithm: Algorithm,
    /// The task.
    pub task: Task,
    /// Target column.
    pub target: String,
    /// Class labels (classification), in score order.
    #[serde(default)]
    pub classes: Vec<String>,
    /// The labels' type (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_type: Option<LabelType>,
    /// Fitted preprocessing.
    pub preprocessor: Preprocessor,
    /// Fitted learner.
    pub estimator: Estimator,
    /// Training target profile.
    pub training: TargetProfile,
}

/// Model outputs for a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// Predicted class (index into `classes`) and class probabilities per row.
    Classes {
        /// Index of the most probable class.
        labels: Vec<usize>,
        /// Probabilities, one vector per row.
        probabilities: Vec<Vec<f64>>,
    },
    /// Predicted values.
    Values(Vec<f64>),
}

/// The target of `table` as the model sees it.
pub enum TargetValues {
    /// Class index per row; `None` for a label the model has not seen.
    Classes(Vec<Option<usize>>),
    /// Values.
    Values(Vec<f64>),
}

impl Model {
    /// Fits preprocessing and the learner on every row of `table` that has a target.
    pub fn train(table: &Table, options: &TrainOptions) -> Result<Model> {
        let target_column = table.require(&options.target)?;
        let present: Vec<usize> = (0..table.n_rows())
            .filter(|&i| target_column.text(i).is_some())
            .collect();
        if present.is_empty() {
            return Err(LearnError::data(format!(
                "target column {:?} has no values",
                options.target
            )));
        }
        let rows_without_target = table.n_rows() - present.len();
        let table = if rows_without_target > 0 {
            table.select_rows(&present)
        } else {
            table.clone()
        };
        let target_column = table.require(&options.target)?;
        let task = match (options.task, options.algorithm) {
            (Some(task), _) => task,
            (None, Algorithm::Logistic) => Task::Classification,
            (None, Algorithm::Linear | Algorithm::Ridge) => Task::Regression,
            (None, _) => infer_task(target_column),
        };
        match (task, options.algorithm) {
            (Task::Regression, Algorithm::Logistic) => {
                return Err(LearnError::param(
                    "logistic regression is for classification",
                ));
            }
            (Task::Classification, Algorithm::Linear | Algorithm::Ridge) => {
                return Err(LearnError::param(format!(
                    "{} regression is for regression targets; use logistic for classes",
                    options.algorithm.as_str()
                )));
            }
            _ => {}
        }
        let features: Vec<String> = match &options.features {
            Some(features) => features.clone(),
            None => table
                .names()
                .iter()
                .filter(|n| **n != options.target)
                .cloned()
                .collect(),
        };
        if features.contains(&options.target) {
            return Err(LearnError::param(format!(
                "the target {:?} cannot also be a feature",
                options.target
            )));
        }
        let encoding = match options.algorithm {
            Algorithm::Logistic | Algorithm::Linear | Algorithm::Ridge => {
                Encoding::OneHotStandardized
            }
            Algorithm::RandomForest | Algorithm::Gbdt => Encoding::Ordinal,
        };
        let preprocessor = Preprocessor::fit(&table, &features, encoding)?;
        let x = preprocessor.transform(&table)?;
        let n = table.n_rows();
        let (classes, estimator, training) = match task {
            Task::Classification => {
                let classes = class_labels(target_column);
                if classes.len() < 2 {
                    return Err(LearnError::data(format!(
                        "target column {:?} has a single class {:?}; classification needs two or more",
                        options.target,
                        classes.first().cloned().unwrap_or_default()
                    )));
                }
                let labels: Vec<usize> = (0..n)
                    .map(|i| {
                        let text = target_column.text(i).unwrap_or_default();
                        classes.iter().position(|c| *c == text).unwrap_or(0)
                    })
                    .collect();
                let k = classes.len();
                let estimator = match options.algorithm {
                    Algorithm::Logistic => {
                        Estimator::Linear(fit_logistic(&x, &labels, k, &options.logistic)?)
                    }
                    Algorithm::RandomForest => Estimator::Forest(fit_forest(
                        &x,
                        ForestTarget::Classes(&labels, k),
                        &options.forest,
                        options.seed,
                    )?),
                    Algorithm::Gbdt => Estimator::Boosted(fit_boosted(
                        &x,
                        BoostTarget::Classes(&labels, k),
                        &options.boost,
                        options.seed,
                    )?),
                    Algorithm::Linear | Algorithm::Ridge => {
                        return Err(LearnError::param("linear/ridge are regressors"));
                    }
                };
                let mut frequencies = BTreeMap::new();
                for &label in &labels {
                    *frequencies.entry(classes[label].clone()).or_insert(0.0) += 1.0 / n as f64;
                }
                let training = TargetProfile {
                    rows: n,
                    rows_without_target,
                    class_frequencies: Some(frequencies),
                    value_summary: None,
                };
                (classes, estimator, training)
            }
            Task::Regression => {
                let Column::Numeric(y) = target_column else {
                    return Err(LearnError::data(format!(
                        "target column {:?} holds text; regression needs numbers",
                        options.target
                    )));
                };
                let estimator = match options.algorithm {
                    Algorithm::Linear => Estimator::Linear(fit_ridge(&x, y, 0.0)?),
                    Algorithm::Ridge => Estimator::Linear(fit_ridge(&x, y, options.ridge_alpha)?),
                    Algorithm::RandomForest => Estimator::Forest(fit_forest(
                        &x,
                        ForestTarget::Values(y),
                        &options.forest,
                        options.seed,
                    )?),
                    Algorithm::Gbdt => Estimator::Boosted(fit_boosted(
                        &x,
                        BoostTarget::Values(y),
                        &options.boost,
                        options.seed,
                    )?),
                    Algorithm::Logistic => {
                        return Err(LearnError::param("logistic is a classifier"));
                    }
                };
                let mean = y.iter().sum::<f64>() / n as f64;
                let std = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
                let min = y.iter().cloned().fold(f64::INFINITY, f64::min);
                let max = y.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let training = TargetProfile {
                    rows: n,
                    rows_without_target,
                    class_frequencies: None,
                    value_summary: Some([mean, std, min, max]),
                };
                (Vec::new(), estimator, training)
            }
        };
        // A numeric target's classes are whole numbers (`infer_task`), but
        // `--task classification` can force fractions: those stay text.
        let integer = matches!(target_column, Column::Numeric(_))
            && classes.iter().all(|c| c.parse::<i64>().is_ok());
        let label_type = (task == Task::Classification).then_some(if integer {
            LabelType::Integer
        } else {
            LabelType::Text
        });
        Ok(Model {
            format: MODEL_FORMAT.to_string(),
            algorithm: options.algorithm,
            task,
            target: options.target.clone(),
            classes,
            label_type,
            preprocessor,
            estimator,
            training,
        })
    }

    /// Predicts every row of `table` (raw values; extra columns are ignored).
    pub fn predict(&self, table: &Table) -> Result<Predictions> {
        let x = self.preprocessor.transform(table)?;
        let scores: Vec<Vec<f64>> = (0..x.rows)
            .map(|i| {
                let row = x.row(i);
                match &self.estimator {
                    Estimator::Linear(model) => model.scores(row),
                    Estimator::Forest(forest) => forest.predict(row),
                    Estimator::Boosted(boosted) => boosted.scores(row),
                }
            })
            .collect();
        Ok(match self.task {
            Task::Regression => Predictions::Values(scores.into_iter().map(|s| s[0]).collect()),
            Task::Classification => {
                let probabilities: Vec<Vec<f64>> = scores
                    .into_iter()
                    .map(|s| match &self.estimator {
                        Estimator::Forest(_) => s,
                        Estimator::Linear(_) if s.len() == 1 => {
                            let p = sigmoid(s[0]);
                            vec![1.0 - p, p]
                        }
                        _ => probabilities(&s),
                    })
                    .collect();
                let labels = probabilities
                    .iter()
                    .map(|p| (0..p.len()).fold(0, |best, k| if p[k] > p[best] { k } else { best }))
                    .collect();
                Predictions::Classes {
                    labels,
                    probabilities,
                }
            }
        })
    }

    /// The target of `table` as class indices or values, for evaluation.
    pub fn target_values(&self, table: &Table) -> Result<TargetValues> {
        let column = table.require(&self.target)?;
        Ok(match self.task {
            Task::Classification => TargetValues::Classes(
                (0..table.n_rows())
                    .map(|i| {
                        column
                            .text(i)
                            .and_then(|t| self.classes.iter().position(|c| *c == t))
                    })
                    .collect(),
            ),
            Task::Regression => match column {
                Column::Numeric(values) => TargetValues::Values(values.clone()),
                Column::Categorical(_) => {
                    return Err(LearnError::data(format!(
                        "target column {:?} holds text; this regression model needs numbers",
                        self.target
                    )));
                }
            },
        })
    }

    /// Reads `path` (CSV or Parquet) with this model's categorical inputs kept as text.
    pub fn read_table(&self, path: &Path) -> Result<Table> {
        Ok(Table::read(path, &self.preprocessor.categorical_names())?)
    }

    /// The contract and profile written to `signature.json`.
    pub fn signature(&self) -> Signature {
        Signature {
            format: self.format.clone(),
            algorithm: self.algorithm,
            task: self.task,
            target: self.target.clone(),
            classes: self.classes.clone(),
            label_type: self.label_type,
            inputs: self.preprocessor.features.clone(),
            training: self.training.clone(),
        }
    }

    /// Writes `model.json` and `signature.json` into `dir` (created if needed),
    /// each through a temporary file and a rename.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| LearnError::io(dir, source))?;
        write_json_atomic(&dir.join(MODEL_FILE), self)?;
        write_json_atomic(&dir.join(SIGNATURE_FILE), &self.signature())?;
        write_atomic(&dir.join(ONNX_FILE), &export_onnx(self)?)
    }

    /// Reads a model folder written by [`Model::save`] (or the `model.json` file itself).
    pub fn load(path: &Path) -> Result<Model> {
        let file = if path.is_dir() {
            path.join(MODEL_FILE)
        } else {
            path.to_path_buf()
        };
        let bytes = std::fs::read(&file).map_err(|source| LearnError::io(&file, source))?;
        let model: Model =
            serde_json::from_slice(&bytes).map_err(|error| LearnError::InvalidModel {
                path: file.clone(),
                message: error.to_string(),
            })?;
        if model.format != MODEL_FORMAT {
            return Err(LearnError::InvalidModel {
                path: file,
                message: format!(
                    "format {:?}, this keel reads {MODEL_FORMAT:?}",
                    model.format
                ),
            });
        }
        Ok(model)
    }
}

/// Writes `value` as pretty JSON to `path`, atomically (keel-fs).
fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|error| {
        LearnError::data(format!("{}: cannot serialize: {error}", path.display()))
    })?;
    write_atomic(path, &bytes)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    keel_fs::write_atomic(path, bytes).map_err(|source| LearnError::io(path, source))
}

/// Classification when the target is text, or numbers that are all integers
/// with at most 20 distinct values; regression otherwise.
fn infer_task(target: &Column) -> Task {
    match target {
        Column::Categorical(_) => Task::Classification,
        Column::Numeric(values) => {
            let mut distinct: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
            distinct.sort_by(f64::total_cmp);
            distinct.dedup();
            if distinct.len() <= 20 && distinct.iter().all(|v| v.fract() == 0.0) {
                Task::Classification
            } else {
                Task::Regression
            }
        }
    }
}

/// Class labels in a stable order: numerically for numbers, else by text.
fn class_labels(target: &Column) -> Vec<String> {
    match target {
        Column::Numeric(values) => {
            let mut distinct: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
            distinct.sort_by(f64::total_cmp);
            distinct.dedup();
            distinct.into_iter().map(format_number).collect()
        }
        Column::Categorical(values) => {
            let mut distinct: Vec<String> = values.iter().flatten().cloned().collect();
            distinct.sort();
            distinct.dedup();
            distinct
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Dataset, GenerateOptions, generate};
    use crate::metrics::{Metrics, evaluate};
    use crate::preprocess::FeatureKind;

    fn story(dataset: Dataset, rows: usize, seed: u64) -> Table {
        let options = GenerateOptions {
            rows,
            seed,
            covariate_shift: 0.0,
            concept_drift: 0.0,
        };
        generate(dataset, &options).unwrap()
    }

    fn quick(algorithm: Algorithm, target: &str) -> TrainOptions {
        let mut options = TrainOptions::new(algorithm, target);
        options.forest.n_trees = 15;
        options.boost.n_iter = 30;
        options
    }

    #[test]
    fn every_classifier_learns_credit_risk_and_round_trips_through_its_folder() {
        let train = story(Dataset::Portfolio, 2000, 1);
        let test = story(Dataset::Portfolio, 1000, 2);
        let dir = tempfile::tempdir().unwrap();
        for algorithm in [
            Algorithm::Logistic,
            Algorithm::RandomForest,
            Algorithm::Gbdt,
        ] {
            let model = Model::train(&train, &quick(algorithm, "default")).unwrap();
            assert_eq!(model.task, Task::Classification);
            assert_eq!(model.classes, vec!["0", "1"]);
            assert_eq!(model.label_type, Some(LabelType::Integer));
            let Metrics::Classification(metrics) = evaluate(&model, &test).unwrap() else {
                panic!("classification metrics expected");
            };
            let auc = metrics.roc_auc.unwrap();
            assert!(auc > 0.7, "{}: AUC {auc}", algorithm.as_str());
            let folder = dir.path().join(algorithm.as_str());
            model.save(&folder).unwrap();
            let loaded = Model::load(&folder).unwrap();
            assert_eq!(
                loaded.predict(&test).unwrap(),
                model.predict(&test).unwrap()
            );
            let signature: Signature =
                serde_json::from_slice(&std::fs::read(folder.join(SIGNATURE_FILE)).unwrap())
                    .unwrap();
            let home = signature
                .inputs
                .iter()
                .find(|i| i.name == "home_ownership")
                .unwrap();
            assert!(
                matches!(&home.kind, FeatureKind::Categorical { categories, .. } if categories.len() == 3)
            );
            assert!(folder.join(ONNX_FILE).is_file());
        }
    }

    #[test]
    fn multiclass_sizes_beat_the_majority_class_and_regressors_fit() {
        let train = story(Dataset::Retail, 3000, 1);
        let test = story(Dataset::Retail, 1000, 2);
        let model = Model::train(&train, &quick(Algorithm::Gbdt, "size")).unwrap();
        let Metrics::Classification(metrics) = evaluate(&model, &test).unwrap() else {
            panic!("classification metrics expected");
        };
        let majority = metrics
            .confusion_matrix
            .iter()
            .map(|row| row.iter().sum::<usize>())
            .max()
            .unwrap() as f64
            / metrics.rows as f64;
        assert!(
            metrics.accuracy > majority + 0.15,
            "{} vs {majority}",
            metrics.accuracy
        );
        for algorithm in [
            Algorithm::Linear,
            Algorithm::Ridge,
            Algorithm::RandomForest,
            Algorithm::Gbdt,
        ] {
            let model = Model::train(&train, &quick(algorithm, "weight_kg")).unwrap();
            let Metrics::Regression(metrics) = evaluate(&model, &test).unwrap() else {
                panic!("regression metrics expected");
            };
            assert!(
                metrics.r2 > 0.5,
                "{}: R² {}",
                algorithm.as_str(),
                metrics.r2
            );
        }
    }

    #[test]
    fn unseen_categories_and_missing_values_predict_without_error() {
        let train = Table::from_csv_reader(
            "x,c,y\n1,a,0\n2,b,1\n3,a,0\n4,b,1\n5,a,0\n6,b,1\n".as_bytes(),
            &[],
        )
        .unwrap();
        let model = Model::train(&train, &TrainOptions::new(Algorithm::Logistic, "y")).unwrap();
        let new = Table::from_csv_reader("x,c\n,zzz\n6,\n".as_bytes(), &[]).unwrap();
        let Predictions::Classes { probabilities, .. } = model.predict(&new).unwrap() else {
            panic!("classes expected");
        };
        assert!(probabilities.iter().flatten().all(|p| p.is_finite()));
    }

    #[test]
    fn user_errors_name_the_column_or_setting() {
        let train = story(Dataset::Portfolio, 200, 1);
        let missing =
            Model::train(&train, &TrainOptions::new(Algorithm::Gbdt, "nope")).unwrap_err();
        assert!(missing.to_string().contains("\"nope\""), "{missing}");
        let text_target =
            Model::train(&train, &TrainOptions::new(Algorithm::Linear, "purpose")).unwrap_err();
        assert!(
            text_target.to_string().contains("\"purpose\""),
            "{text_target}"
        );
        let one_class = Table::from_csv_reader("x,y\n1,a\n2,a\n".as_bytes(), &[]).unwrap();
        let single =
            Model::train(&one_class, &TrainOptions::new(Algorithm::Logistic, "y")).unwrap_err();
        assert!(single.to_string().contains("single class"), "{single}");
        assert!(
            Algorithm::parse("xgboost")
                .unwrap_err()
                .to_string()
                .contains("xgboost")
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MODEL_FILE), b"{\"format\": 3}").unwrap();
        let corrupt = Model::load(dir.path()).unwrap_err().to_string();
        assert!(corrupt.contains(MODEL_FILE), "{corrupt}");
    }

    #[test]
    fn task_inference_from_the_target() {
        assert_eq!(
            infer_task(&Column::Numeric(vec![0.0, 1.0, 1.0])),
            Task::Classification
        );
        assert_eq!(
            infer_task(&Column::Numeric(vec![0.5, 1.0, 2.0])),
            Task::Regression
        );
        let many: Vec<f64> = (0..50).map(f64::from).collect();
        assert_eq!(infer_task(&Column::Numeric(many)), Task::Regression);
        assert_eq!(
            infer_task(&Column::Categorical(vec![Some("a".into())])),
            Task::Classification
        );
    }
}
