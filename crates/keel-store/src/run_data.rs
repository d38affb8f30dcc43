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
//! The encoding is keel-store's own and internal to it, little-endian:
//! a version byte (1), then metrics, params and tags, each a `u32` count
//! followed by its items in key order; a metric is its key, its value as an
//! IEEE double (NaN and the infinities kept as [`crate::runs::loaded_value`]
//! reads them back), its timestamp and step as `i64`; a param or tag is its
//! key and value; every string is a `u32` byte length and UTF-8 bytes. A
//! change of layout takes a new version byte. Why not protobuf (prost, in the
//! tree for ONNX): decoding a 109-run page with it cost 1.08 M instructions
//! (varint and generic buffer code per field, vectors grown one push at a
//! time), this codec about a third of that (callgrind, BENCHMARKS.md).

use keel_core::{Error, Metric, Param, RunData, Tag};

const VERSION: u8 = 1;

/// The bytes stored for `data`.
pub(crate) fn encode(data: &RunData) -> Vec<u8> {
    let items = data.metrics.len() + data.params.len() + data.tags.len();
    let mut out = Vec::with_capacity(13 + 48 * items);
    out.push(VERSION);
    put_count(&mut out, data.metrics.len());
    for metric in &data.metrics {
        put_str(&mut out, &metric.key);
        out.extend_from_slice(&metric.value.to_bits().to_le_bytes());
        out.extend_from_slice(&metric.timestamp.to_le_bytes());
        out.extend_from_slice(&metric.step.to_le_bytes());
    }
    put_count(&mut out, data.params.len());
    for param in &data.params {
        put_str(&mut out, &param.key);
        put_str(&mut out, &param.value);
    }
    put_count(&mut out, data.tags.len());
    for tag in &data.tags {
        put_str(&mut out, &tag.key);
        put_str(&mut out, &tag.value);
    }
    out
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    // Counts and lengths are bounded far below u32 by the batch and value limits.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_count(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// The [`RunData`] stored as `bytes` by [`encode`].
pub(crate) fn decode(bytes: &[u8]) -> Result<RunData, Error> {
    let mut reader = Reader(bytes);
    if reader.take(1)? != [VERSION] {
        return Err(corrupt());
    }
    // Each item takes at least 28 (metric) or 8 (pair) bytes, which bounds
    // what a count can make us allocate.
    let n = reader.count(28)?;
    let mut metrics = Vec::with_capacity(n);
    for _ in 0..n {
        let key = reader.string()?;
        let value = f64::from_bits(u64::from_le_bytes(reader.array()?));
        let timestamp = i64::from_le_bytes(reader.array()?);
        let step = i64::from_le_bytes(reader.array()?);
        metrics.push(Metric::new(key, value, timestamp, step));
    }
    let params = reader.pairs(|key, value| Param { key, value })?;
    let tags = reader.pairs(|key, value| Tag { key, value })?;
    if !reader.0.is_empty() {
        return Err(corrupt());
    }
    Ok(RunData {
        metrics,
        params,
        tags,
    })
}

fn corrupt() -> Error {
    Error::internal("a run's stored data (runs.run_data) does not decode")
}

/// The bytes not read yet.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.0.len() {
            return Err(corrupt());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        self.take(N)?.try_into().map_err(|_| corrupt())
    }

    fn len(&mut self) -> Result<usize, Error> {
        usize::try_from(u32::from_le_bytes(self.array()?)).map_err(|_| corrupt())
    }

    /// A count of items of at least `min_size` bytes each.
    fn count(&mut self, min_size: usize) -> Result<usize, Error> {
        let n = self.len()?;
        if n > self.0.len() / min_size {
            return Err(corrupt());
        }
        Ok(n)
    }

    /// A counted list of key/value pairs, each made by `make`.
    fn pairs<T>(&mut self, make: fn(String, String) -> T) -> Result<Vec<T>, Error> {
        let n = self.count(8)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            let key = self.string()?;
            items.push(make(key, self.string()?));
        }
        Ok(items)
    }

    fn string(&mut self) -> Result<String, Error> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?)
            .map(str::to_string)
            .map_err(|_| corrupt())
    }
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
        // Truncated, trailing bytes, a count larger than the bytes, bad UTF-8.
        let bytes = encode(&data);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        assert!(decode(&[VERSION, 0xff, 0xff, 0xff, 0x7f]).is_err());
        let mut bad = encode(&RunData {
            tags: vec![Tag::new("k", "v")],
            ..RunData::default()
        });
        let last = bad.len() - 1;
        bad[last] = 0xff;
        assert!(decode(&bad).is_err());
    }
}
