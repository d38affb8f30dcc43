//! The schema file (`schema.yaml`): per column its type, nullability,
//! range, allowed categories and uniqueness. Written by `keel schema infer`,
//! meant to be reviewed and committed, read by `keel validate`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Result, ValidateError};
use keel_yaml::{self as yaml, YamlError, quote};

/// A column's type. `integer` accepts whole floats (`3.0`); `float` accepts integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Boolean,
    Integer,
    Float,
    String,
}

impl ColumnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Boolean => "boolean",
            ColumnType::Integer => "integer",
            ColumnType::Float => "float",
            ColumnType::String => "string",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "boolean" | "bool" => ColumnType::Boolean,
            "integer" | "int" => ColumnType::Integer,
            "float" | "number" | "double" => ColumnType::Float,
            "string" | "str" | "text" => ColumnType::String,
            _ => return None,
        })
    }
}

/// One column's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSchema {
    pub name: String,
    pub kind: ColumnType,
    pub nullable: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Allowed values (compared as text).
    pub categories: Option<Vec<String>>,
    pub unique: bool,
}

/// A data file's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// Where it was read from (for reports), if anywhere.
    pub origin: Option<PathBuf>,
    /// A comment line written at the top (e.g. what it was inferred from).
    pub note: String,
    pub columns: Vec<ColumnSchema>,
}

fn number_text(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value:?}")
    }
}

impl Schema {
    /// The YAML text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in self.note.lines() {
            let _ = writeln!(out, "# {line}");
        }
        out.push_str("columns:\n");
        for column in &self.columns {
            let _ = writeln!(out, "  - name: {}", quote(&column.name));
            let _ = writeln!(out, "    type: {}", column.kind.as_str());
            let _ = writeln!(out, "    nullable: {}", column.nullable);
            if let Some(min) = column.min {
                let _ = writeln!(out, "    min: {}", number_text(min));
            }
            if let Some(max) = column.max {
                let _ = writeln!(out, "    max: {}", number_text(max));
            }
            if let Some(categories) = &column.categories {
                let quoted: Vec<String> = categories.iter().map(|c| quote(c)).collect();
                let _ = writeln!(out, "    categories: [{}]", quoted.join(", "));
            }
            if column.unique {
                out.push_str("    unique: true\n");
            }
        }
        out
    }

    /// Reads a schema file.
    pub fn read(path: &Path) -> Result<Schema> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ValidateError::io(path, source))?;
        Self::parse(&text, path)
    }

    /// Parses schema text; errors name `file:line:column`.
    pub fn parse(text: &str, file: &Path) -> Result<Schema> {
        let doc = yaml::parse(text, file)?;
        let top = doc.as_map(file)?;
        yaml::only_keys(top, &["columns"], file, "schema")?;
        let columns_node = yaml::get(top, "columns")
            .ok_or_else(|| YamlError::new(file, doc.pos, "schema needs `columns:`"))?;
        let mut columns: Vec<ColumnSchema> = Vec::new();
        for item in columns_node.as_seq(file)? {
            let fields = item.as_map(file)?;
            yaml::only_keys(
                fields,
                &[
                    "name",
                    "type",
                    "nullable",
                    "min",
                    "max",
                    "categories",
                    "unique",
                ],
                file,
                "column",
            )?;
            let name = yaml::get(fields, "name")
                .ok_or_else(|| YamlError::new(file, item.pos, "column needs `name:`"))?
                .as_string(file)?;
            if columns.iter().any(|c| c.name == name) {
                return Err(YamlError::new(
                    file,
                    item.pos,
                    format!("column `{name}` is listed twice"),
                )
                .into());
            }
            let kind = match yaml::get(fields, "type") {
                Some(node) => {
                    let text = node.as_string(file)?;
                    ColumnType::parse(&text).ok_or_else(|| {
                        YamlError::new(
                            file,
                            node.pos,
                            format!("unknown type `{text}` (boolean, integer, float, string)"),
                        )
                    })?
                }
                None => ColumnType::String,
            };
            let flag = |key: &str, default: bool| -> Result<bool> {
                yaml::get(fields, key).map_or(Ok(default), |node| Ok(node.as_bool(file)?))
            };
            let bound = |key: &str| -> Result<Option<f64>> {
                yaml::get(fields, key)
                    .map(|node| node.as_f64(file))
                    .transpose()
                    .map_err(Into::into)
            };
            let categories = yaml::get(fields, "categories")
                .map(|node| -> Result<Vec<String>> {
                    Ok(node
                        .as_strings(file)?
                        .into_iter()
                        .map(|(_, text)| text)
                        .collect())
                })
                .transpose()?;
            columns.push(ColumnSchema {
                name,
                kind,
                nullable: flag("nullable", true)?,
                min: bound("min")?,
                max: bound("max")?,
                categories,
                unique: flag("unique", false)?,
            });
        }
        Ok(Schema {
            origin: Some(file.to_path_buf()),
            note: String::new(),
            columns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_errors() {
        let schema = Schema {
            origin: None,
            note: "inferred from x.csv".into(),
            columns: vec![
                ColumnSchema {
                    name: "id".into(),
                    kind: ColumnType::Integer,
                    nullable: false,
                    min: Some(1.0),
                    max: Some(500.0),
                    categories: None,
                    unique: true,
                },
                ColumnSchema {
                    name: "a \"b\"".into(),
                    kind: ColumnType::String,
                    nullable: true,
                    min: None,
                    max: None,
                    categories: Some(vec!["x".into(), "1".into(), "y z".into()]),
                    unique: false,
                },
                ColumnSchema {
                    name: "f".into(),
                    kind: ColumnType::Float,
                    nullable: false,
                    min: Some(-0.25),
                    max: Some(1e20),
                    categories: None,
                    unique: false,
                },
            ],
        };
        let text = schema.render();
        let parsed = Schema::parse(&text, Path::new("s.yaml")).unwrap();
        assert_eq!(parsed.columns, schema.columns);
        let error = Schema::parse(
            "columns:\n  - name: a\n    type: decimal\n",
            Path::new("s.yaml"),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "s.yaml:3:11: unknown type `decimal` (boolean, integer, float, string)"
        );
    }
}
