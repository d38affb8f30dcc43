//! keel-chart: the SVG charts keel draws itself.
//!
//! Pure functions from numbers to SVG text: no dependencies, no I/O, no
//! JavaScript. keel-monitor's HTML reports and the web UI (keel-ui) both draw
//! with them, so a chart looks and escapes the same everywhere. Every text that
//! reaches the SVG goes through [`escape`]; non-finite values are dropped; a
//! series longer than [`MAX_POINTS`] is thinned evenly (first and last point
//! kept), so the size of a chart is bounded whatever the data.

use std::fmt::Write;

/// Most points drawn per series.
pub const MAX_POINTS: usize = 2000;

/// Series colours, in order (colour-blind-safe Tableau 10).
const PALETTE: [&str; 10] = [
    "#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#76b7b2", "#b07aa1", "#edc948", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// The colour of the `index`-th series.
pub fn color(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// Escapes text for an HTML/SVG text node or a quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One named line: `(x, y)` points in x order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A series ready to draw: its palette index, itself, its finite thinned points.
type Drawn<'s> = (usize, &'s Series, Vec<(f64, f64)>);

/// How the x axis is labelled.
#[derive(Clone, Copy)]
pub enum XTicks<'a> {
    /// No tick labels (the legend and title say enough).
    Hidden,
    /// Plain numbers (steps).
    Numbers,
    /// Labels from a formatter (e.g. epoch milliseconds to a date).
    Labels(&'a dyn Fn(f64) -> String),
}

/// A line chart of several series on shared axes.
pub struct LineChart<'a> {
    pub series: &'a [Series],
    /// Caption under the x axis ("step", "time").
    pub x_title: &'a str,
    pub x_ticks: XTicks<'a>,
    /// Start the y axis at zero when all values are positive.
    pub y_from_zero: bool,
    /// A dashed horizontal reference line.
    pub threshold: Option<f64>,
}

impl<'a> LineChart<'a> {
    pub fn new(series: &'a [Series]) -> Self {
        LineChart {
            series,
            x_title: "",
            x_ticks: XTicks::Numbers,
            y_from_zero: false,
            threshold: None,
        }
    }

    /// The chart as an `<svg class="chart">` element, or a short note when
    /// there is nothing to draw.
    pub fn to_svg(&self) -> String {
        const W: f64 = 640.0;
        const PLOT_H: f64 = 200.0;
        const LEFT: f64 = 64.0;
        const RIGHT: f64 = 16.0;
        const TOP: f64 = 10.0;
        // (palette index, series, its drawable points)
        let series: Vec<Drawn> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s, thin(finite(&s.points))))
            .filter(|(_, _, points)| !points.is_empty())
            .collect();
        if series.is_empty() {
            return "<p class=\"muted\">no data to plot</p>".to_string();
        }
        let all = || series.iter().flat_map(|(_, _, p)| p.iter());
        let (mut x0, mut x1) = bounds(all().map(|p| p.0));
        let (mut y0, mut y1) = bounds(all().map(|p| p.1).chain(self.threshold));
        if self.y_from_zero && y0 > 0.0 {
            y0 = 0.0;
        }
        if x1 <= x0 {
            (x0, x1) = (x0 - 1.0, x1 + 1.0);
        }
        if y1 <= y0 {
            let pad = if y0 == 0.0 { 1.0 } else { y0.abs() * 0.1 };
            (y0, y1) = (y0 - pad, y1 + pad);
        } else {
            let pad = (y1 - y0) * 0.05;
            y1 += pad;
            if !(self.y_from_zero && y0 == 0.0) {
                y0 -= pad;
            }
        }
        let plot_w = W - LEFT - RIGHT;
        let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * plot_w;
        let py = |y: f64| TOP + (y1 - y) / (y1 - y0) * PLOT_H;
        let axis_y = TOP + PLOT_H;
        let legend = legend_rows(series.iter().map(|(i, s, _)| (*i, s.name.as_str())), W);
        let height = axis_y + 34.0 + 18.0 * legend.len() as f64;
        let mut svg = format!(
            "<svg class=\"chart\" viewBox=\"0 0 {W} {height}\" width=\"{W}\" height=\"{height}\" role=\"img\" \
             aria-label=\"{}\">",
            escape(
                &series
                    .iter()
                    .map(|(_, s, _)| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        );
        let _ = write!(
            svg,
            "<rect class=\"frame\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{PLOT_H}\" fill=\"none\" stroke=\"#ccc\"/>"
        );
        for tick in nice_ticks(y0, y1, 5) {
            let y = py(tick.value);
            let _ = write!(
                svg,
                "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
                 <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\" fill=\"#555\">{}</text>",
                LEFT + plot_w,
                LEFT - 4.0,
                y + 4.0,
                escape(&tick.label)
            );
        }
        let x_ticks = match self.x_ticks {
            XTicks::Hidden => Vec::new(),
            XTicks::Numbers => nice_ticks(x0, x1, 6),
            XTicks::Labels(format) => nice_ticks(x0, x1, 4)
                .into_iter()
                .map(|t| Tick {
                    label: format(t.value),
                    value: t.value,
                })
                .collect(),
        };
        for tick in x_ticks {
            let x = px(tick.value);
            let _ = write!(
                svg,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{axis_y}\" y2=\"{:.1}\" stroke=\"#999\"/>\
                 <text class=\"axis\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#555\">{}</text>",
                axis_y + 4.0,
                axis_y + 16.0,
                escape(&tick.label)
            );
        }
        if !self.x_title.is_empty() {
            let _ = write!(
                svg,
                "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\" fill=\"#555\">{}</text>",
                LEFT + plot_w,
                axis_y + 30.0,
                escape(self.x_title)
            );
        }
        if let Some(t) = self.threshold.filter(|t| t.is_finite()) {
            let _ = write!(
                svg,
                "<line class=\"thr\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#b00\" stroke-dasharray=\"4 3\"/>",
                LEFT + plot_w,
                py(t),
                py(t)
            );
        }
        for (index, s, points) in &series {
            let stroke = color(*index);
            let name = escape(&s.name);
            if points.len() > 1 {
                let coords: Vec<String> = points
                    .iter()
                    .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                    .collect();
                let _ = write!(
                    svg,
                    "<polyline class=\"series\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"1.8\" points=\"{}\"><title>{name}</title></polyline>",
                    coords.join(" ")
                );
            }
            if points.len() <= 40 {
                for &(x, y) in points {
                    let _ = write!(
                        svg,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{stroke}\"><title>{name}: {} at {}</title></circle>",
                        px(x),
                        py(y),
                        format_number(y),
                        format_number(x)
                    );
                }
            }
        }
        for (row, items) in legend.iter().enumerate() {
            let y = axis_y + 46.0 + 18.0 * row as f64;
            for (index, x, name) in items {
                let _ = write!(
                    svg,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"4\" fill=\"{}\"/>\
                     <text class=\"legend\" x=\"{:.1}\" y=\"{y:.1}\" font-size=\"12\" fill=\"#333\">{}</text>",
                    y - 6.0,
                    color(*index),
                    x + 16.0,
                    escape(name)
                );
            }
        }
        svg.push_str("</svg>");
        svg
    }
}

/// Legend entries laid out left to right, wrapping at `width`:
/// rows of (series index, x, name).
fn legend_rows<'n>(
    entries: impl Iterator<Item = (usize, &'n str)>,
    width: f64,
) -> Vec<Vec<(usize, f64, &'n str)>> {
    let mut rows: Vec<Vec<(usize, f64, &str)>> = Vec::new();
    let mut x = f64::INFINITY;
    for (index, name) in entries {
        let item = 28.0 + 6.5 * name.chars().count().min(60) as f64;
        if x + item > width {
            rows.push(Vec::new());
            x = 8.0;
        }
        if let Some(row) = rows.last_mut() {
            row.push((index, x, name));
        }
        x += item;
    }
    rows
}

/// One bar pair: the share of two distributions in one bin or category.
#[derive(Debug, Clone, PartialEq)]
pub struct Bin<'a> {
    pub label: &'a str,
    pub a: f64,
    pub b: f64,
}

/// Grouped bars comparing two distributions bin by bin (at most 40 bins);
/// `classes` are the CSS classes of the two bars (the page colours them).
pub fn paired_bars(bins: &[Bin], classes: [&str; 2]) -> String {
    let bins: Vec<&Bin> = bins.iter().take(40).collect();
    if bins.is_empty() {
        return String::from("<p class=\"muted\">no distribution to plot</p>");
    }
    let (w, h, pad) = (520.0, 150.0, 20.0);
    let top = bins
        .iter()
        .map(|b| b.a.max(b.b))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let slot = (w - 2.0 * pad) / bins.len() as f64;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {}\" width=\"{w}\" height=\"{}\" role=\"img\">",
        h + 40.0,
        h + 40.0
    );
    for (i, bin) in bins.iter().enumerate() {
        let x = pad + i as f64 * slot;
        for (k, (share, class)) in [(bin.a, classes[0]), (bin.b, classes[1])]
            .into_iter()
            .enumerate()
        {
            let share = if share.is_finite() { share } else { 0.0 };
            let bh = share / top * h;
            let _ = write!(
                svg,
                "<rect class=\"{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}: {} {:.2}%</title></rect>",
                escape(class),
                x + k as f64 * slot * 0.45 + slot * 0.05,
                pad + h - bh,
                slot * 0.45,
                bh,
                escape(bin.label),
                escape(class),
                share * 100.0
            );
        }
    }
    let first = bins.first().map(|b| escape(b.label)).unwrap_or_default();
    let last = bins.last().map(|b| escape(b.label)).unwrap_or_default();
    let _ = write!(
        svg,
        "<text x=\"{pad}\" y=\"{}\" class=\"axis\">{first}</text><text x=\"{}\" y=\"{}\" class=\"axis\" text-anchor=\"end\">{last}</text></svg>",
        h + 36.0,
        w - pad,
        h + 36.0
    );
    svg
}

/// One vertical axis of a parallel-coordinates chart. `values[i]` is line
/// `i`'s value; for a categorical axis it is the index into `categories`.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub name: String,
    pub values: Vec<Option<f64>>,
    /// Empty for a numeric axis.
    pub categories: Vec<String>,
}

/// Parallel coordinates: one polyline per entry of `lines` across `axes`,
/// coloured by its value on the last axis (low blue, high red). A missing
/// value breaks the line.
pub fn parallel_coordinates(axes: &[Axis], lines: &[String]) -> String {
    if axes.len() < 2 || lines.is_empty() {
        return "<p class=\"muted\">a parallel-coordinates chart needs at least two axes and one run</p>"
            .to_string();
    }
    const W: f64 = 640.0;
    const TOP: f64 = 34.0;
    const PLOT_H: f64 = 200.0;
    let gap = (W - 100.0) / (axes.len() - 1) as f64;
    let ax = |i: usize| 50.0 + gap * i as f64;
    let scales: Vec<(f64, f64)> = axes
        .iter()
        .map(|axis| {
            if axis.categories.is_empty() {
                let (lo, hi) = bounds(axis.values.iter().flatten().copied());
                if hi > lo {
                    (lo, hi)
                } else {
                    (lo - 1.0, hi + 1.0)
                }
            } else {
                (-0.5, axis.categories.len() as f64 - 0.5)
            }
        })
        .collect();
    let y = |axis: usize, v: f64| {
        let (lo, hi) = scales[axis];
        TOP + (hi - v) / (hi - lo) * PLOT_H
    };
    let mut svg = format!(
        "<svg class=\"chart parallel\" viewBox=\"0 0 {W} {h}\" width=\"{W}\" height=\"{h}\" role=\"img\" aria-label=\"parallel coordinates\">",
        h = TOP + PLOT_H + 24.0
    );
    let last = axes.len() - 1;
    let (c0, c1) = scales[last];
    for (line, name) in lines.iter().enumerate() {
        let value_at = |axis: usize| {
            axes[axis]
                .values
                .get(line)
                .copied()
                .flatten()
                .filter(|v| v.is_finite())
        };
        let stroke = match value_at(last) {
            Some(v) if axes[last].categories.is_empty() => heat((v - c0) / (c1 - c0)),
            Some(v) => heat((v + 0.5) / (c1 - c0)),
            None => "#999".to_string(),
        };
        let mut segment: Vec<String> = Vec::new();
        let flush = |segment: &mut Vec<String>, svg: &mut String| {
            if segment.len() > 1 {
                let _ = write!(
                    svg,
                    "<polyline class=\"pc-line\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"1.6\" points=\"{}\"><title>{}</title></polyline>",
                    segment.join(" "),
                    escape(name)
                );
            }
            segment.clear();
        };
        for axis in 0..axes.len() {
            match value_at(axis) {
                Some(v) => segment.push(format!("{:.1},{:.1}", ax(axis), y(axis, v))),
                None => flush(&mut segment, &mut svg),
            }
        }
        flush(&mut segment, &mut svg);
    }
    for (i, axis) in axes.iter().enumerate() {
        let x = ax(i);
        let anchor = if i == 0 {
            "start"
        } else if i == last {
            "end"
        } else {
            "middle"
        };
        let label: String = axis.name.chars().take(22).collect();
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#444\"/>\
             <text class=\"axis-name\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"12\" fill=\"#222\">{}<title>{}</title></text>",
            TOP + PLOT_H,
            if i == 0 {
                x - 6.0
            } else if i == last {
                x + 6.0
            } else {
                x
            },
            TOP - 16.0,
            escape(&label),
            escape(&axis.name)
        );
        let ticks: Vec<(f64, String)> = if axis.categories.is_empty() {
            let (lo, hi) = scales[i];
            vec![(hi, format_number(hi)), (lo, format_number(lo))]
        } else {
            axis.categories
                .iter()
                .enumerate()
                .take(12)
                .map(|(k, c)| (k as f64, c.chars().take(14).collect()))
                .collect()
        };
        for (value, text) in ticks {
            let _ = write!(
                svg,
                "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#555\">{}</text>",
                x + 3.0,
                y(i, value) + 3.0,
                escape(&text)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Blue (0) to red (1) through grey.
fn heat(t: f64) -> String {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let (r, g, b) = if t < 0.5 {
        let k = t * 2.0;
        (
            lerp(0x3b, 0xaa, k),
            lerp(0x6f, 0xaa, k),
            lerp(0xc4, 0xaa, k),
        )
    } else {
        let k = (t - 0.5) * 2.0;
        (
            lerp(0xaa, 0xd6, k),
            lerp(0xaa, 0x3a, k),
            lerp(0xaa, 0x2e, k),
        )
    };
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn lerp(a: u8, b: u8, t: f64) -> u8 {
    (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8
}

fn finite(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

/// At most [`MAX_POINTS`] points, evenly spaced, first and last kept.
fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let n = points.len();
    (0..MAX_POINTS)
        .map(|i| points[i * (n - 1) / (MAX_POINTS - 1)])
        .collect()
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi { (0.0, 0.0) } else { (lo, hi) }
}

/// An axis tick: where, and its label.
#[derive(Debug, Clone, PartialEq)]
struct Tick {
    value: f64,
    label: String,
}

/// About `target` round-numbered ticks (steps of 1, 2 or 5 × 10ⁿ) inside [lo, hi].
fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<Tick> {
    if hi <= lo || !lo.is_finite() || !hi.is_finite() {
        return Vec::new();
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last)
        .take(50)
        .map(|k| {
            let value = k as f64 * step;
            let label = if value.abs() >= 1e6 || (value != 0.0 && value.abs() < 1e-4) {
                format!("{value:.2e}")
            } else {
                format!("{value:.decimals$}")
            };
            Tick { value, label }
        })
        .collect()
}

/// A number as a person reads it: up to 6 significant digits.
pub fn format_number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value == value.trunc() && value.abs() < 1e15 {
        return format!("{}", value as i64);
    }
    let magnitude = value.abs();
    if !(1e-4..1e9).contains(&magnitude) {
        return format!("{value:.4e}");
    }
    let decimals = (5 - magnitude.log10().floor() as i64).clamp(0, 10) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        let ticks = nice_ticks(0.13, 0.92, 5);
        let values: Vec<f64> = ticks.iter().map(|t| t.value).collect();
        assert_eq!(values.len(), 4, "{values:?}");
        assert!((values[0] - 0.2).abs() < 1e-12 && (values[3] - 0.8).abs() < 1e-12);
        assert_eq!(ticks[0].label, "0.2");
        assert!(nice_ticks(1.0, 1.0, 5).is_empty());
        assert!(nice_ticks(0.0, f64::NAN, 5).is_empty());
        assert_eq!(nice_ticks(0.0, 1000.0, 5)[1].label, "200");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(0.123456789), "0.123457");
        assert_eq!(format_number(1234.5678), "1234.57");
        assert_eq!(format_number(-0.5), "-0.5");
        assert_eq!(format_number(1.5e-7), "1.5000e-7");
        assert_eq!(format_number(f64::NAN), "NaN");
    }

    #[test]
    fn line_chart_draws_escaped_series_and_skips_non_finite_points() {
        let series = vec![
            Series {
                name: "<script>loss</script>".into(),
                points: vec![(0.0, 1.0), (1.0, 0.5), (2.0, f64::NAN), (3.0, 0.25)],
            },
            Series {
                name: "acc".into(),
                points: vec![(0.0, 0.5), (3.0, 0.9)],
            },
        ];
        let svg = LineChart::new(&series).to_svg();
        assert!(svg.starts_with("<svg class=\"chart\""));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;loss"));
        assert!(!svg.contains("NaN"));
        let empty = LineChart::new(&[]).to_svg();
        assert!(empty.contains("no data"));
    }

    #[test]
    fn long_series_are_thinned_to_the_bound() {
        let points: Vec<(f64, f64)> = (0..100_000).map(|i| (i as f64, i as f64)).collect();
        let thinned = thin(points);
        assert_eq!(thinned.len(), MAX_POINTS);
        assert_eq!(thinned.first(), Some(&(0.0, 0.0)));
        assert_eq!(thinned.last(), Some(&(99_999.0, 99_999.0)));
    }

    #[test]
    fn parallel_coordinates_break_lines_at_missing_values() {
        let axes = vec![
            Axis {
                name: "lr".into(),
                values: vec![Some(0.1), Some(0.01), None],
                categories: vec![],
            },
            Axis {
                name: "model".into(),
                values: vec![Some(0.0), Some(1.0), Some(1.0)],
                categories: vec!["rf".into(), "gbdt".into()],
            },
            Axis {
                name: "rmse".into(),
                values: vec![Some(0.3), Some(0.2), Some(0.25)],
                categories: vec![],
            },
        ];
        let svg = parallel_coordinates(&axes, &["a".into(), "b".into(), "c".into()]);
        // a and b span all three axes; c starts at the second.
        assert_eq!(svg.matches("class=\"pc-line\"").count(), 3);
        assert!(svg.contains(">gbdt<"));
        assert!(parallel_coordinates(&axes[..1], &["a".into()]).contains("at least two axes"));
    }

    #[test]
    fn heat_runs_blue_to_red() {
        assert_eq!(heat(0.0), "#3b6fc4");
        assert_eq!(heat(1.0), "#d63a2e");
        assert_eq!(heat(f64::NAN), heat(0.5));
    }
}
