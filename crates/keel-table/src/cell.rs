//! What one cell means: the one missing-value rule, how text becomes a
//! number, and how a number is written back as text. Every reader in keel
//! (training, validation, serving, monitoring, data diffs) reads cells
//! through this module, so a cell means the same thing everywhere.

/// Cell texts that mean "missing", compared case-insensitively after
/// trimming surrounding whitespace: the empty cell, `NA`, `NaN`, `null`,
/// `None`, `?` and `N/A`.
pub const MISSING_TOKENS: [&str; 7] = ["", "na", "nan", "null", "none", "?", "n/a"];

/// Whether a text cell is missing: one of [`MISSING_TOKENS`], or `NaN`
/// with a sign (`-nan`, which reads as a NaN number).
pub fn is_missing(text: &str) -> bool {
    let trimmed = text.trim();
    // Every spelling is at most 4 bytes long: most cells are decided here.
    trimmed.len() <= 4
        && (MISSING_TOKENS
            .iter()
            .any(|token| trimmed.eq_ignore_ascii_case(token))
            || trimmed
                .strip_prefix(['+', '-'])
                .is_some_and(|rest| rest.eq_ignore_ascii_case("nan")))
}

/// What a text cell means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Text<'a> {
    /// A missing value ([`is_missing`]).
    Missing,
    /// A number (Rust's float syntax: `1`, `-2.5e3`, `inf`); never NaN.
    Number(f64),
    /// Anything else, trimmed.
    Other(&'a str),
}

/// Reads one text cell: missing, a number, or other text.
pub fn read_text(text: &str) -> Text<'_> {
    if is_missing(text) {
        return Text::Missing;
    }
    let trimmed = text.trim();
    match trimmed.parse::<f64>() {
        Ok(value) if value.is_nan() => Text::Missing,
        Ok(value) => Text::Number(value),
        Err(_) => Text::Other(trimmed),
    }
}

/// One present cell value, typed: what schema inference, validation and
/// data diffs see.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// `true` / `false` (any case) in text, or a Parquet boolean.
    Bool(bool),
    /// A number without fraction or exponent that fits in an `i64`.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// Anything else.
    Text(String),
}

impl Cell {
    /// Reads a text cell; `None` when it is missing.
    pub fn parse(text: &str) -> Option<Cell> {
        Some(match read_text(text) {
            Text::Missing => return None,
            Text::Number(value) => {
                let trimmed = text.trim();
                trimmed.parse::<i64>().map_or(Cell::Float(value), Cell::Int)
            }
            Text::Other(other) if other.eq_ignore_ascii_case("true") => Cell::Bool(true),
            Text::Other(other) if other.eq_ignore_ascii_case("false") => Cell::Bool(false),
            Text::Other(other) => Cell::Text(other.to_string()),
        })
    }

    /// Reads a Parquet field: null and NaN are missing; strings are taken as
    /// written (a typed source marks missing values with null); dates,
    /// times and decimals become their text.
    pub fn from_field(field: parquet::record::Field) -> Option<Cell> {
        use parquet::record::Field;
        Some(match field {
            Field::Null => return None,
            Field::Bool(v) => Cell::Bool(v),
            Field::Byte(v) => Cell::Int(i64::from(v)),
            Field::Short(v) => Cell::Int(i64::from(v)),
            Field::Int(v) => Cell::Int(i64::from(v)),
            Field::Long(v) => Cell::Int(v),
            Field::UByte(v) => Cell::Int(i64::from(v)),
            Field::UShort(v) => Cell::Int(i64::from(v)),
            Field::UInt(v) => Cell::Int(i64::from(v)),
            Field::ULong(v) => i64::try_from(v).map_or(Cell::Float(v as f64), Cell::Int),
            Field::Float(v) if v.is_nan() => return None,
            Field::Double(v) if v.is_nan() => return None,
            Field::Float(v) => Cell::Float(f64::from(v)),
            Field::Double(v) => Cell::Float(v),
            Field::Str(v) => Cell::Text(v),
            other => Cell::Text(other.to_string()),
        })
    }

    /// The value as text (for categories and for examples in reports).
    pub fn text(&self) -> String {
        match self {
            Cell::Bool(flag) => flag.to_string(),
            Cell::Int(number) => number.to_string(),
            Cell::Float(number) => format_number(*number),
            Cell::Text(text) => text.clone(),
        }
    }

    /// The value as a number, when it is one.
    pub fn number(&self) -> Option<f64> {
        match self {
            Cell::Int(number) => Some(*number as f64),
            Cell::Float(number) => Some(*number),
            _ => None,
        }
    }
}

/// A number written as text the way category labels are (`1`, not `1.0`):
/// the shortest text that reads back as the same number.
pub fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_spelling_is_missing() {
        for text in [
            "", " ", "NA", "na", "NaN", "nan", "-nan", "NULL", "null", "None", "none", "?", " ? ",
            "N/A", "n/a",
        ] {
            assert!(
                matches!(read_text(text), Text::Missing),
                "{text:?} should be missing"
            );
            assert_eq!(Cell::parse(text), None, "{text:?}");
        }
        for text in ["0", "n", "nil", "-", "??", "none!", "inf", "-na"] {
            assert!(!is_missing(text), "{text:?} is not missing");
        }
    }

    #[test]
    fn numbers_and_text() {
        assert_eq!(read_text(" 2.5 "), Text::Number(2.5));
        assert_eq!(read_text("-1e3"), Text::Number(-1000.0));
        assert_eq!(read_text("inf"), Text::Number(f64::INFINITY));
        assert_eq!(read_text(" x y "), Text::Other("x y"));
        assert_eq!(Cell::parse("7"), Some(Cell::Int(7)));
        assert_eq!(Cell::parse("7.0"), Some(Cell::Float(7.0)));
        assert_eq!(Cell::parse("TRUE"), Some(Cell::Bool(true)));
        assert_eq!(Cell::parse(" abc "), Some(Cell::Text("abc".into())));
        assert_eq!(Cell::Float(7.0).text(), "7");
    }

    #[test]
    fn numbers_format_like_labels() {
        assert_eq!(format_number(1.0), "1");
        assert_eq!(format_number(-3.0), "-3");
        assert_eq!(format_number(0.25), "0.25");
        assert_eq!(format_number(1e20), "100000000000000000000");
    }
}
