//! Schema inference in one streaming pass.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use crate::error::Result;
use crate::schema::{ColumnSchema, ColumnType, Schema};
use crate::{MAX_CATEGORIES, UNIQUE_TRACK_LIMIT, value_hash};
use keel_table::Cell;
use keel_table::rows::{self as source, Rows};

#[derive(Default)]
struct Stats {
    nulls: u64,
    present: u64,
    bools: bool,
    ints: bool,
    floats: bool,
    texts: bool,
    min: Option<f64>,
    max: Option<f64>,
    /// Distinct texts while there are few (None once past MAX_CATEGORIES).
    categories: Option<BTreeSet<String>>,
    /// Distinct value hashes (None once a duplicate is seen or the bound is passed).
    distinct: Option<HashSet<u64>>,
}

impl Stats {
    fn new() -> Self {
        Stats {
            categories: Some(BTreeSet::new()),
            distinct: Some(HashSet::new()),
            ..Stats::default()
        }
    }

    fn add(&mut self, cell: &Option<Cell>) {
        let Some(cell) = cell else {
            self.nulls += 1;
            return;
        };
        self.present += 1;
        match cell {
            Cell::Bool(_) => self.bools = true,
            Cell::Int(_) => self.ints = true,
            Cell::Float(_) => self.floats = true,
            Cell::Text(_) => self.texts = true,
        }
        if let Some(number) = cell.number() {
            self.min = Some(self.min.map_or(number, |m| m.min(number)));
            self.max = Some(self.max.map_or(number, |m| m.max(number)));
        }
        let text = cell.text();
        if let Some(categories) = &mut self.categories
            && !categories.contains(&text)
        {
            if categories.len() >= MAX_CATEGORIES {
                self.categories = None;
            } else {
                categories.insert(text.clone());
            }
        }
        if let Some(distinct) = &mut self.distinct
            && (!distinct.insert(value_hash(&text)) || distinct.len() > UNIQUE_TRACK_LIMIT)
        {
            self.distinct = None;
        }
    }

    fn column(self, name: &str) -> ColumnSchema {
        let kind = if self.texts || (self.bools && (self.ints || self.floats)) || self.present == 0
        {
            ColumnType::String
        } else if self.bools {
            ColumnType::Boolean
        } else if self.floats {
            ColumnType::Float
        } else {
            ColumnType::Integer
        };
        let numeric = matches!(kind, ColumnType::Integer | ColumnType::Float);
        let categories = self
            .categories
            .filter(|c| {
                kind == ColumnType::String && !c.is_empty() && self.present >= 2 * c.len() as u64
            })
            .map(|c| c.into_iter().collect::<Vec<_>>());
        let unique = matches!(kind, ColumnType::Integer | ColumnType::String)
            && categories.is_none()
            && self.present >= 2
            && self.distinct.is_some();
        ColumnSchema {
            name: name.to_string(),
            kind,
            nullable: self.nulls > 0,
            min: if numeric { self.min } else { None },
            max: if numeric { self.max } else { None },
            categories,
            unique,
        }
    }
}

/// Infers a schema from rows; returns it with the number of rows read.
pub fn infer(rows: &mut dyn Rows) -> Result<(Schema, u64)> {
    let names: Vec<String> = rows.columns().to_vec();
    let mut stats: Vec<Stats> = names.iter().map(|_| Stats::new()).collect();
    let mut row = Vec::new();
    let mut count = 0u64;
    while rows.next_row(&mut row)? {
        count += 1;
        for (stat, cell) in stats.iter_mut().zip(&row) {
            stat.add(cell);
        }
    }
    let columns = stats
        .into_iter()
        .zip(&names)
        .map(|(stat, name)| stat.column(name))
        .collect();
    Ok((
        Schema {
            origin: None,
            note: String::new(),
            columns,
        },
        count,
    ))
}

/// Infers the schema of a CSV or Parquet file.
pub fn infer_path(path: &Path) -> Result<Schema> {
    let mut rows = source::open(path)?;
    let (mut schema, count) = infer(rows.as_mut())?;
    schema.note = format!(
        "keel schema, inferred from {} ({count} rows). Review and commit it; `keel validate DATA --schema FILE` checks data against it.",
        path.display()
    );
    Ok(schema)
}
