//! keel-yaml: the one YAML reader of keel's own files (keel.yaml,
//! params.yaml, keel.lock, schema.yaml).
//!
//! [`parse`] reads a document with saphyr's marked loader, so every node
//! keeps the line and column it starts at; [`Node`]'s accessors and
//! [`only_keys`] give hand-written readers positioned errors, and
//! [`from_node`] deserializes a node into any `serde` type (a typed section,
//! such as keel-monitor's `monitor:`) with every error at `file:line:column`.
//! A crate of its own so that keel-validate, keel-monitor and keel-pipeline
//! share it without depending on each other. Knows nothing about what the
//! files mean.

mod de;
mod node;

pub use de::from_node;
pub use node::{Key, Node, Pos, Value, YamlError, get, only_keys, parse, quote};
