//! YAML with positions: every node keeps the line and column it starts at,
//! so a file's errors (a syntax error, a wrong type, an unknown field, a
//! missing input) can name `file:line:column`. Built on `saphyr`'s marked
//! loader.

use std::fmt;
use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// Where a node starts: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// A YAML value; mapping keys keep their own positions and document order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub pos: Pos,
    pub name: String,
}

/// A YAML file that cannot be read or does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{pos}: {message}", file.display())]
pub struct YamlError {
    pub file: PathBuf,
    pub pos: Pos,
    pub message: String,
}

impl YamlError {
    pub fn new(file: &Path, pos: Pos, message: impl Into<String>) -> Self {
        YamlError {
            file: file.to_path_buf(),
            pos,
            message: message.into(),
        }
    }
}

/// Deepest nesting of lists and mappings accepted. keel's files nest a
/// few levels; saphyr's loader (and the conversion below) recurse once
/// per level, so a hostile `- - - - …` line must be refused before loading
/// or it would overflow the stack.
pub const MAX_DEPTH: usize = 64;

/// Parses one YAML document (an empty file is `Null` at 1:1).
pub fn parse(text: &str, file: &Path) -> Result<Node, YamlError> {
    let lines = Lines::of(text);
    check_depth(text, file).map_err(|error| lines.within(error))?;
    let documents =
        MarkedYaml::load_from_str(text).map_err(|error| lines.within(scan_error(&error, file)))?;
    match documents.len() {
        0 => Ok(Node {
            pos: Pos { line: 1, column: 1 },
            value: Value::Null,
        }),
        1 => convert(&documents[0], file, &lines),
        _ => Err(YamlError::new(
            file,
            pos_of(&documents[1], &lines),
            "expected one YAML document, found several",
        )),
    }
}

fn scan_error(error: &saphyr::ScanError, file: &Path) -> YamlError {
    let marker = error.marker();
    YamlError::new(
        file,
        Pos {
            line: marker.line(),
            column: marker.col() + 1,
        },
        error.info().to_string(),
    )
}

/// The widths (in characters) of `text`'s lines, as YAML breaks them, to
/// keep every position inside the text: saphyr puts an error at the end of
/// the input on the line after the last one, and a tagged empty node on
/// line 0, which no editor can show.
struct Lines(Vec<usize>);

impl Lines {
    fn of(text: &str) -> Self {
        Lines(
            text.split("\r\n")
                .flat_map(|line| line.split(['\r', '\n']))
                .map(|line| line.chars().count())
                .collect(),
        )
    }

    /// `line` (1-based) and `column` (0-based, as saphyr counts), inside the text.
    fn pos(&self, line: usize, column: usize) -> Pos {
        let last = self.0.len().max(1);
        let (line, column) = match line {
            0 => (1, 0),
            line if line > last => (last, usize::MAX),
            line => (line, column),
        };
        let width = self.0.get(line - 1).copied().unwrap_or(0);
        Pos {
            line,
            column: column.min(width) + 1,
        }
    }

    fn within(&self, mut error: YamlError) -> YamlError {
        error.pos = self.pos(error.pos.line, error.pos.column.saturating_sub(1));
        error
    }
}

/// Walks the parser's events (an iterative state machine, no recursion)
/// and refuses nesting deeper than [`MAX_DEPTH`] at the list or mapping
/// that goes too deep. A syntax error is reported here as the loader would
/// report it, so the loader never recurses past the depth seen here.
fn check_depth(text: &str, file: &Path) -> Result<(), YamlError> {
    use saphyr_parser::{Event, Parser};
    let mut depth = 0usize;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|error| scan_error(&error, file))?;
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(YamlError::new(
                        file,
                        Pos {
                            line: span.start.line(),
                            column: span.start.col() + 1,
                        },
                        format!("lists and mappings nest deeper than {MAX_DEPTH} levels"),
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn pos_of(node: &MarkedYaml<'_>, lines: &Lines) -> Pos {
    lines.pos(node.span.start.line(), node.span.start.col())
}

fn convert(node: &MarkedYaml<'_>, file: &Path, lines: &Lines) -> Result<Node, YamlError> {
    let pos = pos_of(node, lines);
    let value = match &node.data {
        YamlData::Value(scalar) => scalar_value(scalar),
        YamlData::Representation(text, _, _) => Value::Str(text.to_string()),
        YamlData::Tagged(_, inner) => return convert(inner, file, lines),
        YamlData::Sequence(items) => Value::Seq(
            items
                .iter()
                .map(|item| convert(item, file, lines))
                .collect::<Result<_, _>>()?,
        ),
        YamlData::Mapping(entries) => {
            let mut out: Vec<(Key, Node)> = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                let key_pos = pos_of(key, lines);
                let name = match convert(key, file, lines)?.value {
                    Value::Str(text) => text,
                    Value::Int(number) => number.to_string(),
                    Value::Float(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    _ => {
                        return Err(YamlError::new(
                            file,
                            key_pos,
                            "mapping keys must be scalars",
                        ));
                    }
                };
                out.push((Key { pos: key_pos, name }, convert(value, file, lines)?));
            }
            Value::Map(out)
        }
        YamlData::Alias(_) => {
            return Err(YamlError::new(file, pos, "YAML aliases are not supported"));
        }
        YamlData::BadValue => return Err(YamlError::new(file, pos, "invalid YAML value")),
    };
    Ok(Node { pos, value })
}

fn scalar_value(scalar: &Scalar<'_>) -> Value {
    match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(flag) => Value::Bool(*flag),
        Scalar::Integer(number) => Value::Int(*number),
        Scalar::FloatingPoint(number) => Value::Float(number.into_inner()),
        Scalar::String(text) => Value::Str(text.to_string()),
    }
}

impl Node {
    /// What kind of value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    fn expected(&self, file: &Path, what: &str) -> YamlError {
        YamlError::new(
            file,
            self.pos,
            format!("expected {what}, found {}", self.kind()),
        )
    }

    /// The entries of a mapping (`null` reads as an empty mapping).
    pub fn as_map(&self, file: &Path) -> Result<&[(Key, Node)], YamlError> {
        match &self.value {
            Value::Map(entries) => Ok(entries),
            Value::Null => Ok(&[]),
            _ => Err(self.expected(file, "a mapping")),
        }
    }

    /// A string; numbers and booleans are accepted in their YAML spelling.
    pub fn as_string(&self, file: &Path) -> Result<String, YamlError> {
        match &self.value {
            Value::Str(text) => Ok(text.clone()),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => Ok(self.scalar_text()),
            _ => Err(self.expected(file, "a string")),
        }
    }

    /// A number.
    pub fn as_f64(&self, file: &Path) -> Result<f64, YamlError> {
        match &self.value {
            Value::Int(number) => Ok(*number as f64),
            Value::Float(number) => Ok(*number),
            _ => Err(self.expected(file, "a number")),
        }
    }

    /// A boolean.
    pub fn as_bool(&self, file: &Path) -> Result<bool, YamlError> {
        match &self.value {
            Value::Bool(flag) => Ok(*flag),
            _ => Err(self.expected(file, "true or false")),
        }
    }

    /// A list of strings; a single string reads as a list of one.
    pub fn as_strings(&self, file: &Path) -> Result<Vec<(Pos, String)>, YamlError> {
        match &self.value {
            Value::Seq(items) => items
                .iter()
                .map(|item| Ok((item.pos, item.as_string(file)?)))
                .collect(),
            Value::Null => Ok(Vec::new()),
            Value::Str(_) => Ok(vec![(self.pos, self.as_string(file)?)]),
            _ => Err(self.expected(file, "a list of strings")),
        }
    }

    /// A list of nodes.
    pub fn as_seq(&self, file: &Path) -> Result<&[Node], YamlError> {
        match &self.value {
            Value::Seq(items) => Ok(items),
            Value::Null => Ok(&[]),
            _ => Err(self.expected(file, "a list")),
        }
    }

    /// The text a scalar stands for (`1`, `0.5`, `true`, the string itself).
    pub fn scalar_text(&self) -> String {
        match &self.value {
            Value::Null => "null".into(),
            Value::Bool(flag) => flag.to_string(),
            Value::Int(number) => number.to_string(),
            Value::Float(number) => number.to_string(),
            Value::Str(text) => text.clone(),
            Value::Seq(_) | Value::Map(_) => String::new(),
        }
    }
}

/// Checks that a mapping has only `allowed` keys.
pub fn only_keys(
    entries: &[(Key, Node)],
    allowed: &[&str],
    file: &Path,
    what: &str,
) -> Result<(), YamlError> {
    for (key, _) in entries {
        if !allowed.contains(&key.name.as_str()) {
            return Err(YamlError::new(
                file,
                key.pos,
                format!(
                    "unknown field `{}` in {what} (expected one of: {})",
                    key.name,
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The value of `name` in a mapping.
pub fn get<'a>(entries: &'a [(Key, Node)], name: &str) -> Option<&'a Node> {
    entries
        .iter()
        .find(|(key, _)| key.name == name)
        .map(|(_, node)| node)
}

/// A YAML double-quoted scalar for `text` (JSON string escapes are valid
/// YAML). Characters outside YAML's printable set (C0 and C1 controls, DEL,
/// U+FFFE/U+FFFF), the byte-order mark and the Unicode line and paragraph
/// separators are written as `\uXXXX`, so any text reads back unchanged.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_errors() {
        let file = Path::new("k.yaml");
        let node = parse("a:\n  b: [1, 2.5, x]\n  c: \"q\"\n", file).unwrap();
        let map = node.as_map(file).unwrap();
        let a = get(map, "a").unwrap().as_map(file).unwrap();
        assert_eq!(a[0].0.pos, Pos { line: 2, column: 3 });
        let b = get(a, "b").unwrap().as_seq(file).unwrap();
        assert_eq!(b[1].value, Value::Float(2.5));
        assert_eq!(
            b[2].pos,
            Pos {
                line: 2,
                column: 15
            }
        );
        let error = parse("a: [1, 2\nb: 3\n", file).unwrap_err();
        assert_eq!(error.file, file);
        assert!(error.pos.line >= 2, "{error}");
        let error = get(map, "a").unwrap().as_string(file).unwrap_err();
        assert_eq!(
            error.to_string(),
            "k.yaml:2:3: expected a string, found a mapping"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let file = Path::new("deep.yaml");
        for text in [
            "- ".repeat(200_000) + "x\n",
            "[".repeat(250) + &"]".repeat(250),
            "a: ".to_string() + &"{b: ".repeat(240) + &"}".repeat(240),
        ] {
            let error = parse(&text, file).unwrap_err();
            assert_eq!(error.pos.line, 1, "{error}");
            assert!(error.pos.column > MAX_DEPTH, "{error}");
        }
        let ok = "- ".repeat(MAX_DEPTH) + "x\n";
        assert!(parse(&ok, file).is_ok());
        let too_deep = "- ".repeat(MAX_DEPTH + 1) + "x\n";
        assert!(
            parse(&too_deep, file)
                .unwrap_err()
                .message
                .contains("nest deeper")
        );
    }

    #[test]
    fn quoting_round_trips() {
        let file = Path::new("q.yaml");
        for text in [
            "plain",
            "with \"quotes\" and \\",
            "tab\tnew\nline",
            "ünï €",
            "#: {x}",
            "nel\u{85} c1\u{9b} bom\u{feff} ls\u{2028} \u{fffe}\u{ffff}",
        ] {
            let node = parse(&format!("k: {}\n", quote(text)), file).unwrap();
            let map = node.as_map(file).unwrap();
            assert_eq!(get(map, "k").unwrap().value, Value::Str(text.to_string()));
        }
    }
}
