//! Spool segments: the append-only files a replica writes before it answers.
//!
//! A segment starts with the 8-byte magic [`MAGIC`] and holds frames:
//! `u32 length | u32 CRC-32C of the payload | payload` (little endian). The
//! first payload byte is the frame kind: a model declaration (its schema,
//! written once per segment before the first prediction that refers to it by
//! id), a prediction (one request's rows) or feedback (one `/feedback`
//! request's items). A reader stops at the first frame that is cut short or
//! whose checksum does not match: that can only be the tail a crash or a
//! failed write left, whose requests were never answered.
//!
//! Segments are private to the writer (only the compactor reads them); the
//! durable, documented format is the Parquet they become.

use crate::schema::{Input, InputKind, ModelSchema};

/// First bytes of every segment.
pub const MAGIC: &[u8; 8] = b"KEELSPL1";

/// Largest frame accepted when reading (a corrupt length must not allocate).
const MAX_FRAME_BYTES: usize = 1 << 30;

const CRC: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

const KIND_MODEL: u8 = 1;
const KIND_PREDICTION: u8 = 2;
const KIND_FEEDBACK: u8 = 3;

/// A request's inputs, one column per signature input, in signature order.
#[derive(Debug, Clone, Copy)]
pub enum Inputs<'a> {
    /// Numbers; NaN is missing.
    Numbers(&'a [f64]),
    /// Categories; `None` is missing.
    Texts(&'a [Option<String>]),
}

/// A request's outputs.
#[derive(Debug, Clone, Copy)]
pub enum Outputs<'a> {
    /// A classifier: one label per row and `rows × k` probabilities, row-major
    /// in the order of the model's classes.
    Classes {
        /// Predicted class per row.
        labels: &'a [String],
        /// Probabilities, row-major.
        probabilities: &'a [f64],
    },
    /// A regressor: one value per row.
    Values(&'a [f64]),
}

/// One answered request's worth of prediction-log rows.
#[derive(Debug, Clone, Copy)]
pub struct Prediction<'a> {
    /// The request id (`x-request-id`).
    pub request_id: &'a str,
    /// Arrival, Unix ms.
    pub ts_ms: i64,
    /// `primary`, `canary` or `shadow`.
    pub role: &'a str,
    /// Arrival to answer, µs.
    pub latency_us: i64,
    /// Rows in the request.
    pub rows: usize,
    /// Input columns in the model's signature order.
    pub inputs: &'a [Inputs<'a>],
    /// The predictions.
    pub outputs: Outputs<'a>,
    /// Per-row flags; empty when no row has one.
    pub flags: &'a [Option<String>],
}

/// One label (or value) for a predicted row.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    /// The prediction's request id.
    pub request_id: String,
    /// Row within the request.
    pub row: i32,
    /// The true class, for classifiers.
    pub label: Option<String>,
    /// The true value, for regressors.
    pub value: Option<f64>,
}

// ------------------------------------------------------------------ encoding

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, v: &str) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v.as_bytes());
    }
    fn opt_str(&mut self, v: Option<&str>) {
        match v {
            Some(v) => self.str(v),
            None => self.u32(u32::MAX),
        }
    }
    fn len(&mut self, n: usize) {
        self.u32(n as u32);
    }

    /// Starts a frame: room for length and checksum, then the kind.
    fn start(capacity: usize, kind: u8) -> Writer {
        let mut writer = Writer(Vec::with_capacity(capacity + 9));
        writer.0.extend_from_slice(&[0; 8]);
        writer.u8(kind);
        writer
    }

    /// Fills in length and checksum.
    fn finish(mut self) -> Vec<u8> {
        let payload = &self.0[8..];
        let length = (payload.len() as u32).to_le_bytes();
        let checksum = CRC.checksum(payload).to_le_bytes();
        self.0[..4].copy_from_slice(&length);
        self.0[4..8].copy_from_slice(&checksum);
        self.0
    }
}

/// The declaration frame of model `id`.
pub(crate) fn encode_model(id: u32, model: &ModelSchema) -> Vec<u8> {
    let mut w = Writer::start(64, KIND_MODEL);
    w.u32(id);
    w.str(&model.name);
    w.str(&model.version);
    w.len(model.inputs.len());
    for input in &model.inputs {
        w.u8(match input.kind {
            InputKind::Number => 0,
            InputKind::Text => 1,
        });
        w.str(&input.name);
    }
    match &model.classes {
        Some(classes) => {
            w.u8(1);
            w.len(classes.len());
            for class in classes {
                w.str(class);
            }
        }
        None => w.u8(0),
    }
    w.finish()
}

/// The frame of one request's predictions by model `id`. Columns shorter than
/// `rows` are padded with missing values, so a frame always decodes.
pub(crate) fn encode_prediction(id: u32, p: &Prediction<'_>) -> Vec<u8> {
    let rows = p.rows;
    let mut w = Writer::start(64 + rows * (p.inputs.len() + 2) * 8, KIND_PREDICTION);
    w.u32(id);
    w.str(p.role);
    w.i64(p.ts_ms);
    w.i64(p.latency_us);
    w.str(p.request_id);
    w.len(rows);
    w.len(p.inputs.len());
    for input in p.inputs {
        match input {
            Inputs::Numbers(values) => {
                w.u8(0);
                for i in 0..rows {
                    w.f64(values.get(i).copied().unwrap_or(f64::NAN));
                }
            }
            Inputs::Texts(values) => {
                w.u8(1);
                for i in 0..rows {
                    w.opt_str(values.get(i).and_then(Option::as_deref));
                }
            }
        }
    }
    match p.outputs {
        Outputs::Classes {
            labels,
            probabilities,
        } => {
            let k = probabilities.len().checked_div(rows).unwrap_or(0);
            w.u8(1);
            w.len(k);
            for i in 0..rows {
                w.str(labels.get(i).map_or("", String::as_str));
            }
            for p in &probabilities[..rows * k] {
                w.f64(*p);
            }
        }
        Outputs::Values(values) => {
            w.u8(0);
            for i in 0..rows {
                w.f64(values.get(i).copied().unwrap_or(f64::NAN));
            }
        }
    }
    if p.flags.iter().any(Option::is_some) {
        w.u8(1);
        for i in 0..rows {
            w.opt_str(p.flags.get(i).and_then(Option::as_deref));
        }
    } else {
        w.u8(0);
    }
    w.finish()
}

/// The frame of one `/feedback` request for `model`, received at `ts_ms`.
pub(crate) fn encode_feedback(model: &str, ts_ms: i64, items: &[Feedback]) -> Vec<u8> {
    let mut w = Writer::start(32 + items.len() * 48, KIND_FEEDBACK);
    w.str(model);
    w.i64(ts_ms);
    w.len(items.len());
    for item in items {
        w.str(&item.request_id);
        w.u32(item.row as u32);
        w.opt_str(item.label.as_deref());
        match item.value {
            Some(value) => {
                w.u8(1);
                w.f64(value);
            }
            None => w.u8(0),
        }
    }
    w.finish()
}

// ------------------------------------------------------------------ decoding

/// Inputs of a decoded prediction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum InputColumn {
    Numbers(Vec<f64>),
    Texts(Vec<Option<String>>),
}

/// Outputs of a decoded prediction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OutputColumns {
    Classes {
        labels: Vec<String>,
        probabilities: Vec<f64>,
        k: usize,
    },
    Values(Vec<f64>),
}

/// A decoded prediction frame.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PredictionFrame {
    pub model: u32,
    pub role: String,
    pub ts_ms: i64,
    pub latency_us: i64,
    pub request_id: String,
    pub rows: usize,
    pub inputs: Vec<InputColumn>,
    pub outputs: OutputColumns,
    pub flags: Option<Vec<Option<String>>>,
}

/// A decoded feedback frame.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FeedbackFrame {
    pub model: String,
    pub ts_ms: i64,
    pub items: Vec<Feedback>,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    Model(u32, ModelSchema),
    Prediction(PredictionFrame),
    Feedback(FeedbackFrame),
}

impl Frame {
    /// Log rows the frame holds.
    pub fn rows(&self) -> u64 {
        match self {
            Frame::Model(..) => 0,
            Frame::Prediction(p) => p.rows as u64,
            Frame::Feedback(f) => f.items.len() as u64,
        }
    }

    /// Its time, for the lag gauge.
    pub fn ts_ms(&self) -> Option<i64> {
        match self {
            Frame::Model(..) => None,
            Frame::Prediction(p) => Some(p.ts_ms),
            Frame::Feedback(f) => Some(f.ts_ms),
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn opt_string(&mut self) -> Option<Option<String>> {
        let n = self.u32()?;
        if n == u32::MAX {
            return Some(None);
        }
        Some(Some(
            String::from_utf8(self.take(n as usize)?.to_vec()).ok()?,
        ))
    }
    /// A count whose items take at least `unit` bytes each (bounds allocation).
    fn count(&mut self, unit: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n.saturating_mul(unit) <= self.bytes.len() - self.at).then_some(n)
    }
}

fn decode_payload(payload: &[u8]) -> Option<Frame> {
    let mut r = Reader {
        bytes: payload,
        at: 0,
    };
    let frame = match r.u8()? {
        KIND_MODEL => {
            let id = r.u32()?;
            let name = r.string()?;
            let version = r.string()?;
            let n = r.count(5)?;
            let mut inputs = Vec::with_capacity(n);
            for _ in 0..n {
                let kind = match r.u8()? {
                    0 => InputKind::Number,
                    1 => InputKind::Text,
                    _ => return None,
                };
                inputs.push(Input {
                    name: r.string()?,
                    kind,
                });
            }
            let classes = match r.u8()? {
                0 => None,
                1 => {
                    let k = r.count(4)?;
                    Some((0..k).map(|_| r.string()).collect::<Option<Vec<_>>>()?)
                }
                _ => return None,
            };
            Frame::Model(
                id,
                ModelSchema {
                    name,
                    version,
                    inputs,
                    classes,
                },
            )
        }
        KIND_PREDICTION => {
            let model = r.u32()?;
            let role = r.string()?;
            let ts_ms = r.i64()?;
            let latency_us = r.i64()?;
            let request_id = r.string()?;
            let rows = r.count(1)?;
            let n_inputs = r.count(1)?;
            let mut inputs = Vec::with_capacity(n_inputs);
            for _ in 0..n_inputs {
                inputs.push(match r.u8()? {
                    0 => InputColumn::Numbers((0..rows).map(|_| r.f64()).collect::<Option<_>>()?),
                    1 => InputColumn::Texts(
                        (0..rows).map(|_| r.opt_string()).collect::<Option<_>>()?,
                    ),
                    _ => return None,
                });
            }
            let outputs = match r.u8()? {
                0 => OutputColumns::Values((0..rows).map(|_| r.f64()).collect::<Option<_>>()?),
                1 => {
                    let k = r.u32()? as usize;
                    let labels = (0..rows).map(|_| r.string()).collect::<Option<_>>()?;
                    let cells = rows.checked_mul(k)?;
                    (cells.saturating_mul(8) <= payload.len()).then_some(())?;
                    let probabilities = (0..cells).map(|_| r.f64()).collect::<Option<_>>()?;
                    OutputColumns::Classes {
                        labels,
                        probabilities,
                        k,
                    }
                }
                _ => return None,
            };
            let flags = match r.u8()? {
                0 => None,
                1 => Some((0..rows).map(|_| r.opt_string()).collect::<Option<_>>()?),
                _ => return None,
            };
            Frame::Prediction(PredictionFrame {
                model,
                role,
                ts_ms,
                latency_us,
                request_id,
                rows,
                inputs,
                outputs,
                flags,
            })
        }
        KIND_FEEDBACK => {
            let model = r.string()?;
            let ts_ms = r.i64()?;
            let n = r.count(9)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                let request_id = r.string()?;
                let row = r.u32()? as i32;
                let label = r.opt_string()?;
                let value = match r.u8()? {
                    0 => None,
                    1 => Some(r.f64()?),
                    _ => return None,
                };
                items.push(Feedback {
                    request_id,
                    row,
                    label,
                    value,
                });
            }
            Frame::Feedback(FeedbackFrame {
                model,
                ts_ms,
                items,
            })
        }
        _ => return None,
    };
    (r.at == payload.len()).then_some(frame)
}

/// The frames of a segment's bytes, up to the first damaged one.
pub(crate) struct Decoded {
    pub frames: Vec<Frame>,
    /// Bytes after the last good frame (a torn tail), 0 for a clean segment.
    pub damaged_bytes: usize,
}

/// Decodes a whole segment; `None` when it does not start with [`MAGIC`]
/// (an empty file, created just before a crash, is an empty segment).
pub(crate) fn decode(bytes: &[u8]) -> Option<Decoded> {
    if bytes.is_empty() {
        return Some(Decoded {
            frames: Vec::new(),
            damaged_bytes: 0,
        });
    }
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let mut at = MAGIC.len();
    let mut frames = Vec::new();
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 8) else {
            break;
        };
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let checksum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if length > MAX_FRAME_BYTES {
            break;
        }
        let Some(payload) = bytes.get(at + 8..at + 8 + length) else {
            break;
        };
        if CRC.checksum(payload) != checksum {
            break;
        }
        let Some(frame) = decode_payload(payload) else {
            break;
        };
        frames.push(frame);
        at += 8 + length;
    }
    Some(Decoded {
        frames,
        damaged_bytes: bytes.len() - at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelSchema {
        crate::schema::example("2")
    }

    #[test]
    fn frames_round_trip_and_a_torn_tail_is_cut_off() {
        let numbers = [1.5, f64::NAN];
        let texts = [Some("n".to_string()), None];
        let labels = ["yes".to_string(), "no".to_string()];
        let probabilities = [0.25, 0.75, 0.9, 0.1];
        let flags = [None, Some("null:region".to_string())];
        let prediction = Prediction {
            request_id: "req-1",
            ts_ms: 1_700_000_000_000,
            role: "primary",
            latency_us: 250,
            rows: 2,
            inputs: &[Inputs::Numbers(&numbers), Inputs::Texts(&texts)],
            outputs: Outputs::Classes {
                labels: &labels,
                probabilities: &probabilities,
            },
            flags: &flags,
        };
        let feedback = [Feedback {
            request_id: "req-1".into(),
            row: 1,
            label: Some("no".into()),
            value: None,
        }];
        let mut segment = MAGIC.to_vec();
        segment.extend(encode_model(7, &model()));
        segment.extend(encode_prediction(7, &prediction));
        segment.extend(encode_feedback("risk", 5, &feedback));
        let whole = segment.len();
        let decoded = decode(&segment).unwrap();
        assert_eq!(decoded.damaged_bytes, 0);
        assert_eq!(decoded.frames.len(), 3);
        assert_eq!(decoded.frames[0], Frame::Model(7, model()));
        let Frame::Prediction(p) = &decoded.frames[1] else {
            panic!("{:?}", decoded.frames[1]);
        };
        assert_eq!((p.model, p.rows, p.ts_ms), (7, 2, 1_700_000_000_000));
        assert!(matches!(&p.inputs[0], InputColumn::Numbers(v) if v[0] == 1.5 && v[1].is_nan()));
        assert_eq!(p.inputs[1], InputColumn::Texts(texts.to_vec()));
        assert_eq!(
            p.outputs,
            OutputColumns::Classes {
                labels: labels.to_vec(),
                probabilities: probabilities.to_vec(),
                k: 2
            }
        );
        assert_eq!(p.flags, Some(flags.to_vec()));
        assert_eq!(
            decoded.frames[2],
            Frame::Feedback(FeedbackFrame {
                model: "risk".into(),
                ts_ms: 5,
                items: feedback.to_vec()
            })
        );
        // A write cut anywhere in the last frame keeps the frames before it.
        for cut in [whole - 1, whole - 20] {
            let torn = decode(&segment[..cut]).unwrap();
            assert_eq!(torn.frames.len(), 2);
            assert!(torn.damaged_bytes > 0);
        }
        // A flipped bit in a payload ends the segment there.
        let mut flipped = segment.clone();
        flipped[MAGIC.len() + 12] ^= 1;
        assert!(decode(&flipped).unwrap().frames.is_empty());
        assert!(decode(b"garbage!").is_none());
        assert!(decode(b"").unwrap().frames.is_empty());
    }
}
