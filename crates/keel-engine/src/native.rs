//! keel-learn models predicted by keel-learn itself.

use std::path::Path;

use keel_learn::Model;
use keel_learn::model::Predictions as LearnPredictions;
use keel_table::Table;

use crate::signature::ServingSignature;
use crate::{Batch, EngineError, Predictions, Result};

pub(crate) struct NativeModel {
    model: Model,
    names: Vec<String>,
}

impl NativeModel {
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let model =
            Model::load(path).map_err(|error| EngineError::model(path, error.to_string()))?;
        let names = model
            .preprocessor
            .features
            .iter()
            .map(|f| f.name.clone())
            .collect();
        Ok(NativeModel { model, names })
    }

    pub(crate) fn signature(&self) -> ServingSignature {
        ServingSignature::from_keel(&self.model.signature())
    }

    pub(crate) fn predict(&self, batch: &Batch) -> Result<Predictions> {
        let table = Table::new(self.names.clone(), batch.columns.clone())
            .map_err(|error| EngineError::Input(error.to_string()))?;
        let predictions = self
            .model
            .predict(&table)
            .map_err(|error| EngineError::Predict(error.to_string()))?;
        Ok(match predictions {
            LearnPredictions::Values(values) => Predictions::Values(values),
            LearnPredictions::Classes {
                labels,
                probabilities,
            } => {
                let k = self.model.classes.len();
                let mut flat = Vec::with_capacity(labels.len() * k);
                for row in &probabilities {
                    flat.extend_from_slice(row);
                }
                Predictions::Classes {
                    labels: labels
                        .iter()
                        .map(|&label| self.model.classes[label].clone())
                        .collect(),
                    probabilities: flat,
                    k,
                }
            }
        })
    }
}
