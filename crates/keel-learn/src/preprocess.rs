//! Preprocessing that is fitted with the model and saved inside it, so that
//! prediction takes raw rows: mean imputation of missing numbers, categorical
//! encoding with an "unknown" bucket (for unseen and missing categories), and
//! standardization for linear models.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{LearnError, Result};
use keel_table::{Column, Table};

/// At most this many categories per column get their own code; rarer ones
/// share the unknown bucket.
pub const MAX_CATEGORIES: usize = 64;

/// Dense row-major matrix of encoded features.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// `rows * cols` values, row after row.
    pub data: Vec<f64>,
}

impl Matrix {
    /// The values of row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Builds a matrix from rows of equal length (used by tests and benches).
    pub fn from_rows(rows: &[Vec<f64>]) -> Result<Self> {
        let cols = rows.first().map_or(0, Vec::len);
        if rows.iter().any(|row| row.len() != cols) {
            return Err(LearnError::data("rows of unequal length"));
        }
        Ok(Matrix {
            rows: rows.len(),
            cols,
            data: rows.concat(),
        })
    }
}

/// How one input column was seen in training, and how it is encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeatureKind {
    /// A number; missing values are replaced by `mean`.
    Numeric {
        /// Mean of the present training values (0 when all were missing).
        mean: f64,
        /// Population standard deviation (1 when constant).
        std: f64,
        /// Smallest training value.
        min: f64,
        /// Largest training value.
        max: f64,
        /// Share of training rows where it was missing.
        missing_fraction: f64,
    },
    /// A category; `categories` are the coded ones, most frequent first.
    Categorical {
        /// Categories with their own code.
        categories: Vec<String>,
        /// Share of training rows holding each category.
        frequencies: Vec<f64>,
        /// Share of training rows where it was missing.
        missing_fraction: f64,
    },
}

/// One model input: its name and how it is encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Column name.
    pub name: String,
    /// Type, training statistics and encoding.
    #[serde(flatten)]
    pub kind: FeatureKind,
}

/// How features are turned into numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Numbers standardized to mean 0 / std 1; categories one-hot with a last
    /// "unknown" column. For linear models.
    OneHotStandardized,
    /// Numbers as they are; categories as codes 0..k, with k for unknown.
    /// For trees.
    Ordinal,
}

/// Fitted preprocessing: feature specs plus the encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    /// The model's inputs, in order.
    pub features: Vec<FeatureSpec>,
    /// How they are encoded.
    pub encoding: Encoding,
}

impl Preprocessor {
    /// Learns feature statistics and categories from `table`'s `feature_names`.
    pub fn fit(table: &Table, feature_names: &[String], encoding: Encoding) -> Result<Self> {
        let rows = table.n_rows();
        if rows == 0 {
            return Err(LearnError::data("no rows to train on"));
        }
        let mut features = Vec::with_capacity(feature_names.len());
        for name in feature_names {
            let kind = match table.require(name)? {
                Column::Numeric(values) => numeric_stats(name, values)?,
                Column::Categorical(values) => {
                    let mut counts: HashMap<&str, usize> = HashMap::new();
                    let mut missing = 0usize;
                    for value in values {
                        match value {
                            Some(text) => *counts.entry(text.as_str()).or_default() += 1,
                            None => missing += 1,
                        }
                    }
                    let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
                    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                    ranked.truncate(MAX_CATEGORIES);
                    FeatureKind::Categorical {
                        categories: ranked.iter().map(|(c, _)| c.to_string()).collect(),
                        frequencies: ranked
                            .iter()
                            .map(|(_, n)| *n as f64 / rows as f64)
                            .collect(),
                        missing_fraction: missing as f64 / rows as f64,
                    }
                }
            };
            features.push(FeatureSpec {
                name: name.clone(),
                kind,
            });
        }
        Ok(Preprocessor { features, encoding })
    }

    /// Names of the encoded columns (`col=cat` for one-hot, `col=<unknown>` for the bucket).
    pub fn output_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for feature in &self.features {
            match (&feature.kind, self.encoding) {
                (FeatureKind::Categorical { categories, .. }, Encoding::OneHotStandardized) => {
                    names.extend(categories.iter().map(|c| format!("{}={c}", feature.name)));
                    names.push(format!("{}=<unknown>", feature.name));
                }
                _ => names.push(feature.name.clone()),
            }
        }
        names
    }

    /// Number of encoded columns.
    pub fn n_outputs(&self) -> usize {
        self.features
            .iter()
            .map(|feature| match (&feature.kind, self.encoding) {
                (FeatureKind::Categorical { categories, .. }, Encoding::OneHotStandardized) => {
                    categories.len() + 1
                }
                _ => 1,
            })
            .sum()
    }

    /// Names of the categorical inputs (read as text when loading data for this model).
    pub fn categorical_names(&self) -> Vec<String> {
        self.features
            .iter()
            .filter(|f| matches!(f.kind, FeatureKind::Categorical { .. }))
            .map(|f| f.name.clone())
            .collect()
    }

    /// Encodes `table` into the model's feature matrix.
    pub fn transform(&self, table: &Table) -> Result<Matrix> {
        let rows = table.n_rows();
        let cols = self.n_outputs();
        let mut data = vec![0.0; rows * cols];
        let mut offset = 0;
        for feature in &self.features {
            let column = table.require(&feature.name)?;
            match &feature.kind {
                FeatureKind::Numeric { mean, std, .. } => {
                    let Column::Numeric(values) = column else {
                        return Err(LearnError::data(format!(
                            "column {:?} must be numeric (it was numeric in training) but holds text",
                            feature.name
                        )));
                    };
                    let standardize = self.encoding == Encoding::OneHotStandardized;
                    for (row, &value) in values.iter().enumerate() {
                        if value.is_infinite() {
                            return Err(LearnError::data(format!(
                                "column {:?}, row {}: infinite value",
                                feature.name,
                                row + 1
                            )));
                        }
                        let value = if value.is_nan() { *mean } else { value };
                        data[row * cols + offset] = if standardize {
                            (value - mean) / std
                        } else {
                            value
                        };
                    }
                    offset += 1;
                }
                FeatureKind::Categorical { categories, .. } => {
                    let index: HashMap<&str, usize> = categories
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.as_str(), i))
                        .collect();
                    let unknown = categories.len();
                    for row in 0..rows {
                        let code = column
                            .text(row)
                            .and_then(|text| index.get(text.as_str()).copied())
                            .unwrap_or(unknown);
                        match self.encoding {
                            Encoding::OneHotStandardized => data[row * cols + offset + code] = 1.0,
                            Encoding::Ordinal => data[row * cols + offset] = code as f64,
                        }
                    }
                    offset += match self.encoding {
                        Encoding::OneHotStandardized => unknown + 1,
                        Encoding::Ordinal => 1,
                    };
                }
            }
        }
        Ok(Matrix { rows, cols, data })
    }
}

fn numeric_stats(name: &str, values: &[f64]) -> Result<FeatureKind> {
    let mut count = 0usize;
    let mut sum = 0.0;
    let mut min = f64::INFINITY;
    let mut max = f64::NEG_INFINITY;
    for (row, &value) in values.iter().enumerate() {
        if value.is_nan() {
            continue;
        }
        if value.is_infinite() {
            return Err(LearnError::data(format!(
                "column {name:?}, row {}: infinite value",
                row + 1
            )));
        }
        count += 1;
        sum += value;
        min = min.min(value);
        max = max.max(value);
    }
    let mean = if count > 0 { sum / count as f64 } else { 0.0 };
    let variance = if count > 0 {
        values
            .iter()
            .filter(|v| !v.is_nan())
            .map(|v| (v - mean).powi(2))
            .sum::<f64>()
            / count as f64
    } else {
        0.0
    };
    let std = if variance > 1e-24 {
        variance.sqrt()
    } else {
        1.0
    };
    if count == 0 {
        min = 0.0;
        max = 0.0;
    }
    Ok(FeatureKind::Numeric {
        mean,
        std,
        min,
        max,
        missing_fraction: (values.len() - count) as f64 / values.len().max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table::from_csv_reader("x,c\n1,a\n3,b\n,a\n5,\n".as_bytes(), &[]).unwrap()
    }

    #[test]
    fn one_hot_standardized_imputes_and_buckets_unknowns() {
        let t = table();
        let names = vec!["x".to_string(), "c".to_string()];
        let pre = Preprocessor::fit(&t, &names, Encoding::OneHotStandardized).unwrap();
        assert_eq!(pre.output_names(), vec!["x", "c=a", "c=b", "c=<unknown>"]);
        let m = pre.transform(&t).unwrap();
        // mean 3, std sqrt(8/3); the missing x becomes the mean, i.e. 0.
        let std = (8.0f64 / 3.0).sqrt();
        assert!((m.row(0)[0] + 2.0 / std).abs() < 1e-12);
        assert_eq!(m.row(2)[0], 0.0);
        assert_eq!(&m.row(0)[1..], &[1.0, 0.0, 0.0]);
        assert_eq!(&m.row(3)[1..], &[0.0, 0.0, 1.0]);
        let unseen = Table::from_csv_reader("x,c\n3,zzz\n".as_bytes(), &[]).unwrap();
        assert_eq!(
            &pre.transform(&unseen).unwrap().row(0)[1..],
            &[0.0, 0.0, 1.0]
        );
    }

    #[test]
    fn ordinal_codes_and_type_errors() {
        let t = table();
        let names = vec!["x".to_string(), "c".to_string()];
        let pre = Preprocessor::fit(&t, &names, Encoding::Ordinal).unwrap();
        let m = pre.transform(&t).unwrap();
        assert_eq!(m.data, vec![1.0, 0.0, 3.0, 1.0, 3.0, 0.0, 5.0, 2.0]);
        let wrong = Table::from_csv_reader("x,c\nhello,a\n".as_bytes(), &[]).unwrap();
        let error = pre.transform(&wrong).unwrap_err().to_string();
        assert!(
            error.contains("\"x\"") && error.contains("numeric"),
            "{error}"
        );
        let missing = Table::from_csv_reader("c\na\n".as_bytes(), &[]).unwrap();
        assert!(
            pre.transform(&missing)
                .unwrap_err()
                .to_string()
                .contains("\"x\"")
        );
    }
}
