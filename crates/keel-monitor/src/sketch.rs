//! Mergeable summaries with known error: exact moments (Welford, merged with
//! Chan's formula), a fixed-layout logarithmic histogram with exact bucket
//! counts, and a HyperLogLog distinct-count estimate.
//!
//! The histogram is the DDSketch logarithmic mapping with an unbounded store
//! (nothing is ever collapsed), applied to `z = (x - center) / scale` where
//! `center` and `scale` are frozen from the reference data. Its bucket
//! boundaries do not depend on the data, so
//! - every bucket count is exact, and merging two histograms with the same
//!   layout is exact (the sum of counts): a profile of two halves merged is
//!   bit-for-bit the profile of the whole;
//! - a quantile is returned with relative error at most
//!   [`RELATIVE_ACCURACY`] on `|x - center|` (the DDSketch guarantee), and the
//!   rank of every bucket boundary is exact, so tests on the bucketed CDF are
//!   valid without a sketch-error correction;
//! - memory is bounded by the number of buckets (at most `2 * MAX_INDEX + 1`,
//!   about 2,300), whatever the row count.

use serde::{Deserialize, Serialize};

/// Relative accuracy of bucket representatives on `|x - center| / scale`.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// `|z|` below this falls in the zero bucket.
const MIN_Z: f64 = 1e-4;
/// `|z|` above `MIN_Z * GAMMA^MAX_INDEX` (about 1e6) is clamped to the last bucket.
pub const MAX_INDEX: i32 = 1152;

fn ln_gamma() -> f64 {
    ((1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)).ln()
}

/// Mean and variance of the finite values, mergeable exactly in count and
/// to rounding in the moments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Values seen.
    pub n: u64,
    /// Their mean.
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Moments {
    /// Adds one value (Welford).
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Combines two summaries (Chan, Golub and LeVeque).
    pub fn merge(&mut self, other: &Moments) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let n = self.n + other.n;
        let delta = other.mean - self.mean;
        let weight = other.n as f64 / n as f64;
        self.mean += delta * weight;
        self.m2 += other.m2 + delta * delta * self.n as f64 * weight;
        self.n = n;
    }

    /// Population variance (0 when fewer than two values).
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.m2 / self.n as f64).max(0.0)
        }
    }

    /// Population standard deviation.
    pub fn std(&self) -> f64 {
        self.variance().sqrt()
    }
}

/// Where the histogram's buckets are: `z = (x - center) / scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// Value mapped to the zero bucket.
    pub center: f64,
    /// Unit of `z`.
    pub scale: f64,
}

impl Layout {
    /// A layout centred on the median of `sample` with the robust scale
    /// (IQR / 1.349), falling back to the standard deviation, then to a scale
    /// derived from the magnitude, for constant or two-valued samples.
    pub fn from_sample(sample: &mut Vec<f64>) -> Layout {
        sample.retain(|x| x.is_finite());
        if sample.is_empty() {
            return Layout {
                center: 0.0,
                scale: 1.0,
            };
        }
        sample.sort_by(f64::total_cmp);
        let at = |q: f64| sample[((sample.len() - 1) as f64 * q).round() as usize];
        let center = at(0.5);
        let mut scale = (at(0.75) - at(0.25)) / 1.349;
        if !(scale > 0.0 && scale.is_finite()) {
            let mut moments = Moments::default();
            sample.iter().for_each(|&x| moments.push(x));
            scale = moments.std();
        }
        if !(scale > 0.0 && scale.is_finite()) {
            scale = if center != 0.0 {
                center.abs() * 1e-2
            } else {
                1.0
            };
        }
        Layout { center, scale }
    }

    /// Bucket of a finite value.
    pub fn index(&self, x: f64) -> i32 {
        let z = (x - self.center) / self.scale;
        let magnitude = z.abs();
        if magnitude.is_nan() || magnitude < MIN_Z {
            return 0;
        }
        let k = ((magnitude / MIN_Z).ln() / ln_gamma()).ceil();
        let k = if k >= MAX_INDEX as f64 {
            MAX_INDEX
        } else {
            (k as i32).max(1)
        };
        if z > 0.0 { k } else { -k }
    }

    /// Upper boundary of bucket `index` (a value).
    pub fn upper(&self, index: i32) -> f64 {
        let z = match index {
            0 => MIN_Z,
            i if i > 0 => MIN_Z * (ln_gamma() * i as f64).exp(),
            i => -MIN_Z * (ln_gamma() * (-i - 1) as f64).exp(),
        };
        self.center + z * self.scale
    }

    /// Lower boundary of bucket `index` (a value).
    pub fn lower(&self, index: i32) -> f64 {
        match index {
            0 => self.center - MIN_Z * self.scale,
            i if i > 0 => self.upper(i - 1).max(self.center + MIN_Z * self.scale),
            i => self.center - MIN_Z * (ln_gamma() * (-i) as f64).exp() * self.scale,
        }
    }

    /// The value reported for bucket `index`: within [`RELATIVE_ACCURACY`]
    /// of every `|x - center|` in it.
    pub fn representative(&self, index: i32) -> f64 {
        if index == 0 {
            return self.center;
        }
        let k = index.abs() as f64;
        let gamma = ln_gamma().exp();
        let magnitude = MIN_Z * (ln_gamma() * k).exp() * 2.0 / (1.0 + gamma);
        self.center + magnitude.copysign(index as f64) * self.scale
    }
}

/// Exact counts of finite values per logarithmic bucket of a [`Layout`].
#[derive(Debug, Clone, PartialEq)]
pub struct LogHistogram {
    /// The bucket layout.
    pub layout: Layout,
    start: i32,
    counts: Vec<u64>,
}

impl LogHistogram {
    /// An empty histogram.
    pub fn new(layout: Layout) -> Self {
        LogHistogram {
            layout,
            start: 0,
            counts: Vec::new(),
        }
    }

    /// Adds `count` values in bucket `index`.
    pub fn add_index(&mut self, index: i32, count: u64) {
        if self.counts.is_empty() {
            self.start = index;
            self.counts.push(0);
        } else if index < self.start {
            let grow = (self.start - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.start = index;
        } else if index >= self.start + self.counts.len() as i32 {
            self.counts.resize((index - self.start) as usize + 1, 0);
        }
        self.counts[(index - self.start) as usize] += count;
    }

    /// Adds one finite value.
    pub fn add(&mut self, x: f64) {
        let index = self.layout.index(x);
        self.add_index(index, 1);
    }

    /// Adds another histogram's counts; the layouts must be equal.
    pub fn merge(&mut self, other: &LogHistogram) -> bool {
        if self.layout != other.layout {
            return false;
        }
        for (index, count) in other.iter() {
            self.add_index(index, count);
        }
        true
    }

    /// Non-empty buckets as `(index, count)`, in increasing value order.
    pub fn iter(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (self.start + i as i32, *c))
    }

    /// Count in bucket `index`.
    pub fn count(&self, index: i32) -> u64 {
        let offset = index - self.start;
        if offset < 0 {
            return 0;
        }
        self.counts.get(offset as usize).copied().unwrap_or(0)
    }

    /// Total count.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Lowest and highest non-empty bucket.
    pub fn range(&self) -> Option<(i32, i32)> {
        let first = self.counts.iter().position(|&c| c > 0)?;
        let last = self.counts.iter().rposition(|&c| c > 0)?;
        Some((self.start + first as i32, self.start + last as i32))
    }

    /// The `q`-quantile (0..=1) as a bucket representative clamped to
    /// `[min, max]`; `None` when empty.
    pub fn quantile(&self, q: f64, min: f64, max: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (total - 1) as f64).floor() as u64;
        let mut seen = 0;
        for (index, count) in self.iter() {
            seen += count;
            if seen > rank {
                return Some(self.layout.representative(index).clamp(min, max));
            }
        }
        Some(max)
    }
}

/// Serialized form: the layout and the counts from the first to the last
/// non-empty bucket.
#[derive(Serialize, Deserialize)]
struct LogHistogramRepr {
    layout: Layout,
    start: i32,
    counts: Vec<u64>,
}

impl Serialize for LogHistogram {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (start, counts) = match self.range() {
            Some((lo, hi)) => (
                lo,
                self.counts[(lo - self.start) as usize..=(hi - self.start) as usize].to_vec(),
            ),
            None => (0, Vec::new()),
        };
        LogHistogramRepr {
            layout: self.layout,
            start,
            counts,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for LogHistogram {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = LogHistogramRepr::deserialize(deserializer)?;
        let end = repr.start as i64 + repr.counts.len() as i64;
        if repr.start < -MAX_INDEX || end > MAX_INDEX as i64 + 1 {
            return Err(serde::de::Error::custom(format!(
                "histogram buckets {}..{end} outside -{MAX_INDEX}..={MAX_INDEX}",
                repr.start
            )));
        }
        Ok(LogHistogram {
            layout: repr.layout,
            start: repr.start,
            counts: repr.counts,
        })
    }
}

/// A stable 64-bit hash (FNV-1a, then the SplitMix64 finalizer), so
/// serialized cardinality sketches stay comparable across builds.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

const HLL_BITS: u32 = 12;
const HLL_REGISTERS: usize = 1 << HLL_BITS;

/// HyperLogLog with 4,096 registers: distinct-count estimate with a
/// standard error of about 1.6 %, merged exactly (register maximum).
#[derive(Debug, Clone, PartialEq)]
pub struct Hll {
    registers: Vec<u8>,
}

impl Default for Hll {
    fn default() -> Self {
        Hll {
            registers: vec![0; HLL_REGISTERS],
        }
    }
}

impl Hll {
    /// Adds a hashed item.
    pub fn add_hash(&mut self, hash: u64) {
        let index = (hash >> (64 - HLL_BITS)) as usize;
        let rest = (hash << HLL_BITS) | (1 << (HLL_BITS - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        if self.registers[index] < rank {
            self.registers[index] = rank;
        }
    }

    /// Register-wise maximum.
    pub fn merge(&mut self, other: &Hll) {
        for (mine, theirs) in self.registers.iter_mut().zip(&other.registers) {
            *mine = (*mine).max(*theirs);
        }
    }

    /// Estimated number of distinct items.
    pub fn estimate(&self) -> f64 {
        let m = HLL_REGISTERS as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self
            .registers
            .iter()
            .map(|&r| 2f64.powi(-i32::from(r)))
            .sum();
        let raw = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }
}

impl Serialize for Hll {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let hex: String = self.registers.iter().map(|r| format!("{r:02x}")).collect();
        serializer.serialize_str(&hex)
    }
}

impl<'de> Deserialize<'de> for Hll {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(deserializer)?;
        if hex.len() != HLL_REGISTERS * 2 || !hex.is_ascii() {
            return Err(serde::de::Error::custom(format!(
                "HyperLogLog registers: expected {} hex digits",
                HLL_REGISTERS * 2
            )));
        }
        let registers = (0..HLL_REGISTERS)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(serde::de::Error::custom)?;
        Ok(Hll { registers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_merge_equals_one_pass() {
        let values: Vec<f64> = (0..1000).map(|i| ((i * 37) % 101) as f64 * 0.5).collect();
        let mut whole = Moments::default();
        values.iter().for_each(|&x| whole.push(x));
        let (mut a, mut b) = (Moments::default(), Moments::default());
        values[..313].iter().for_each(|&x| a.push(x));
        values[313..].iter().for_each(|&x| b.push(x));
        a.merge(&b);
        assert_eq!(a.n, whole.n);
        assert!((a.mean - whole.mean).abs() < 1e-12);
        assert!((a.variance() - whole.variance()).abs() < 1e-9);
    }

    #[test]
    fn buckets_are_ordered_and_quantiles_within_relative_accuracy() {
        let layout = Layout {
            center: 10.0,
            scale: 2.0,
        };
        let mut last = f64::NEG_INFINITY;
        for index in -MAX_INDEX..=MAX_INDEX {
            let (lo, hi) = (layout.lower(index), layout.upper(index));
            assert!(lo <= hi && hi >= last, "bucket {index}: {lo}..{hi}");
            last = hi;
        }
        let values: Vec<f64> = (1..=10_000).map(|i| i as f64 / 100.0).collect();
        let mut histogram = LogHistogram::new(layout);
        values.iter().for_each(|&x| histogram.add(x));
        for &x in &values {
            let index = layout.index(x);
            assert!(
                x > layout.lower(index) - 1e-9 && x <= layout.upper(index) + 1e-9,
                "{x} not in bucket {index}"
            );
        }
        for q in [0.01, 0.1, 0.5, 0.9, 0.99] {
            let exact = values[((values.len() - 1) as f64 * q).floor() as usize];
            let estimate = histogram.quantile(q, 0.01, 100.0).unwrap();
            let tolerance = RELATIVE_ACCURACY * (exact - 10.0).abs() + MIN_Z * 2.0 + 1e-9;
            assert!(
                (estimate - exact).abs() <= tolerance,
                "q{q}: {estimate} vs {exact}"
            );
        }
        let json = serde_json::to_string(&histogram).unwrap();
        let back: LogHistogram = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            histogram.iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn hll_estimates_within_a_few_percent_and_merges() {
        let (mut a, mut b) = (Hll::default(), Hll::default());
        for i in 0..50_000u64 {
            a.add_hash(stable_hash(&i.to_le_bytes()));
        }
        for i in 25_000..100_000u64 {
            b.add_hash(stable_hash(&i.to_le_bytes()));
        }
        a.merge(&b);
        let estimate = a.estimate();
        assert!((estimate / 100_000.0 - 1.0).abs() < 0.05, "{estimate}");
        let mut small = Hll::default();
        for i in 0..100u64 {
            small.add_hash(stable_hash(&i.to_le_bytes()));
        }
        assert!(
            (small.estimate() - 100.0).abs() < 5.0,
            "{}",
            small.estimate()
        );
        let back: Hll = serde_json::from_str(&serde_json::to_string(&small).unwrap()).unwrap();
        assert_eq!(back, small);
    }
}
