//! A run's latest metrics, params and tags kept a second time, as one value
//! on its `runs` row (`runs.run_data`), so that a page of runs is read with
//! one row per run instead of one row per metric, param and tag.
//!
//! The side tables (`latest_metrics`, `params`, `tags`) stay the truth: search
//! filters, metric history and the registry read them. `runs.run_data` is
//! derived from them by `runs::refresh_run_data`, which every write to a
//! run's metrics, params or tags calls inside its own transaction, so both
//! always commit together. A run whose `run_data` is NULL (written before migration 6) is
//! read from the side tables, as before; its next write fills it.
//!
//! The encoding is protobuf (prost, already keel's codec for ONNX files):
//! three repeated fields, each list in key order, metric values as IEEE
//! doubles (NaN and the infinities kept as read back by
//! [`crate::runs::loaded_value`]). It is internal to keel-store; a field may be
//! added under a new tag, never renumbered.

use keel_core::{Error, Metric, Param, RunData, Tag};
use prost::Message;

/// The stored form of a [`RunData`].
#[derive(Clone, PartialEq, Message)]
struct StoredData {
    #[prost(message, repeated, tag = "1")]
    metrics: Vec<StoredMetric>,
    #[prost(message, repeated, tag = "2")]
    params: Vec<StoredPair>,
    #[prost(message, repeated, tag = "3")]
    tags: Vec<StoredPair>,
}

#[derive(Clone, PartialEq, Message)]
struct StoredMetric {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(double, tag = "2")]
    value: f64,
    #[prost(int64, tag = "3")]
    timestamp: i64,
    #[prost(int64, tag = "4")]
    step: i64,
}

#[derive(Clone, PartialEq, Message)]
struct StoredPair {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

/// The bytes stored for `data`.
pub(crate) fn encode(data: &RunData) -> Vec<u8> {
    let pair = |key: &str, value: &str| StoredPair {
        key: key.to_string(),
        value: value.to_string(),
    };
    StoredData {
        metrics: data
            .metrics
            .iter()
            .map(|m| StoredMetric {
                key: m.key.clone(),
                value: m.value,
                timestamp: m.timestamp,
                step: m.step,
            })
            .collect(),
        params: data.params.iter().map(|p| pair(&p.key, &p.value)).collect(),
        tags: data.tags.iter().map(|t| pair(&t.key, &t.value)).collect(),
    }
    .encode_to_vec()
}

/// The [`RunData`] stored as `bytes` by [`encode`].
pub(crate) fn decode(bytes: &[u8]) -> Result<RunData, Error> {
    let stored = StoredData::decode(bytes)
        .map_err(|e| Error::internal(format!("a run's stored data does not decode: {e}")))?;
    Ok(RunData {
        metrics: stored
            .metrics
            .into_iter()
            .map(|m| Metric::new(m.key, m.value, m.timestamp, m.step))
            .collect(),
        params: stored
            .params
            .into_iter()
            .map(|p| Param {
                key: p.key,
                value: p.value,
            })
            .collect(),
        tags: stored
            .tags
            .into_iter()
            .map(|t| Tag::new(t.key, t.value))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trips_with_non_finite_values_and_empty_lists() {
        let data = RunData {
            metrics: vec![
                Metric::new("a", f64::NAN, 1, -2),
                Metric::new("b", f64::INFINITY, i64::MAX, i64::MIN),
                Metric::new("c", -0.5, 0, 0),
            ],
            params: vec![Param {
                key: "p".into(),
                value: String::new(),
            }],
            tags: vec![Tag::new("mlflow.runName", "ünïcode run")],
        };
        let back = decode(&encode(&data)).expect("decodes");
        assert!(back.metrics[0].value.is_nan());
        assert_eq!(back.metrics[1].value, f64::INFINITY);
        assert_eq!(
            (back.metrics[1].timestamp, back.metrics[1].step),
            (i64::MAX, i64::MIN)
        );
        assert_eq!(back.metrics[2], data.metrics[2]);
        assert_eq!(back.params, data.params);
        assert_eq!(back.tags, data.tags);
        let empty = decode(&encode(&RunData::default())).expect("decodes");
        assert!(empty.metrics.is_empty() && empty.params.is_empty() && empty.tags.is_empty());
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
