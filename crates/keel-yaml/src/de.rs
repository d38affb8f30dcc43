//! Typed sections: a [`Node`] deserialized into any `serde` type, with
//! every error at the line and column of the node (or mapping key) it is
//! about. A section type that says `#[serde(deny_unknown_fields)]` rejects a
//! typo as `keel.yaml:12:5: unknown field `min_efect`, expected one of …`.

use std::fmt;
use std::path::Path;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use crate::node::{Key, Node, Pos, Value, YamlError};

/// Deserializes `node` (read from `file`) into `T`.
pub fn from_node<T: DeserializeOwned>(node: &Node, file: &Path) -> Result<T, YamlError> {
    T::deserialize(NodeDe(node))
        .map_err(|error| YamlError::new(file, error.pos.unwrap_or(node.pos), error.message))
}

/// An error with the position of the innermost node it was raised for.
#[derive(Debug)]
struct Error {
    pos: Option<Pos>,
    message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Error {
            pos: None,
            message: message.to_string(),
        }
    }
}

/// Gives an error raised while reading the node at `pos` that position,
/// unless a node inside it already claimed the error.
fn at(pos: Pos) -> impl FnOnce(Error) -> Error {
    move |mut error| {
        error.pos.get_or_insert(pos);
        error
    }
}

struct NodeDe<'a>(&'a Node);

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let node = self.0;
        match &node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(flag) => visitor.visit_bool(*flag),
            Value::Int(number) => visitor.visit_i64(*number),
            Value::Float(number) => visitor.visit_f64(*number),
            Value::Str(text) => visitor.visit_str(text),
            Value::Seq(items) => visitor.visit_seq(SeqDe(items.iter())),
            Value::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
            }),
        }
        .map_err(at(node.pos))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.value {
            // `section:` with nothing under it is an empty mapping.
            Value::Null => visitor.visit_map(MapDe {
                entries: [].iter(),
                value: None,
            }),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.value {
            Value::Null => visitor.visit_seq(SeqDe([].iter())),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let node = self.0;
        match &node.value {
            // A unit variant: `correction: holm`.
            Value::Str(text) => visitor.visit_enum(text.as_str().into_deserializer()),
            // A variant with data: `{webhook: http://…}`.
            Value::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                visitor.visit_enum(EnumDe { key, value })
            }
            _ => Err(de::Error::custom(format!(
                "expected a name or a mapping with one key, found {}",
                node.kind()
            ))),
        }
        .map_err(at(node.pos))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple tuple_struct identifier ignored_any
    }
}

struct SeqDe<'a>(std::slice::Iter<'a, Node>);

impl<'de> SeqAccess<'de> for SeqDe<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.0.next() {
            Some(node) => seed
                .deserialize(NodeDe(node))
                .map(Some)
                .map_err(at(node.pos)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for MapDe<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        // An unknown field is reported here, at the key.
        seed.deserialize(key.name.as_str().into_deserializer())
            .map(Some)
            .map_err(at(key.pos))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let node = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("a value without a key"))?;
        seed.deserialize(NodeDe(node)).map_err(at(node.pos))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct EnumDe<'a> {
    key: &'a Key,
    value: &'a Node,
}

impl<'de, 'a> EnumAccess<'de> for EnumDe<'a> {
    type Error = Error;
    type Variant = NodeDe<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'a>), Error> {
        let variant = seed
            .deserialize(self.key.name.as_str().into_deserializer())
            .map_err(at(self.key.pos))?;
        Ok((variant, NodeDe(self.value)))
    }
}

impl<'de> VariantAccess<'de> for NodeDe<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.0.value {
            Value::Null => Ok(()),
            _ => Err(<Error as de::Error>::custom(format!(
                "expected nothing, found {}",
                self.0.kind()
            )))
            .map_err(at(self.0.pos)),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_any(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_any(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::node::parse;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Section {
        name: String,
        #[serde(default)]
        share: f64,
        #[serde(default)]
        limit: Option<u32>,
        #[serde(default)]
        columns: BTreeMap<String, Column>,
        #[serde(default)]
        sinks: Vec<Sink>,
        #[serde(default)]
        mode: Mode,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Column {
        ignore: bool,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Sink {
        Webhook(String),
        Log(bool),
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        #[default]
        Fast,
        Exact,
    }

    fn read(text: &str) -> Result<Section, YamlError> {
        let file = Path::new("keel.yaml");
        from_node(&parse(text, file).unwrap(), file)
    }

    #[test]
    fn typed_sections() {
        let section = read(
            "name: risk\nshare: 1\nlimit: 3\ncolumns: {income: {ignore: true}}\nsinks: [{webhook: 'http://h/x'}, {log: true}]\nmode: exact\n",
        )
        .unwrap();
        assert_eq!(section.share, 1.0);
        assert_eq!(section.limit, Some(3));
        assert!(section.columns["income"].ignore);
        assert_eq!(
            section.sinks,
            [Sink::Webhook("http://h/x".into()), Sink::Log(true)]
        );
        assert_eq!(section.mode, Mode::Exact);
        assert_eq!(read("name: x\nlimit: null\n").unwrap().limit, None);
        // A key with nothing under it is an empty mapping or list.
        let empty = read("name: x\ncolumns:\nsinks:\n").unwrap();
        assert!(empty.columns.is_empty() && empty.sinks.is_empty());
    }

    #[test]
    fn errors_name_line_and_column() {
        let message = |text: &str| read(text).unwrap_err().to_string();
        assert_eq!(
            message("name: x\ncolumns:\n  income: {ignroe: true}\n"),
            "keel.yaml:3:12: unknown field `ignroe`, expected `ignore`"
        );
        assert_eq!(
            message("name: x\nshar: 1\n"),
            "keel.yaml:2:1: unknown field `shar`, expected one of `name`, `share`, `limit`, `columns`, `sinks`, `mode`"
        );
        assert_eq!(
            message("name: x\nlimit: -1\n"),
            "keel.yaml:2:8: invalid value: integer `-1`, expected u32"
        );
        assert_eq!(
            message("name: x\nsinks:\n  - {hook: x}\n"),
            "keel.yaml:3:6: unknown variant `hook`, expected `webhook` or `log`"
        );
        assert_eq!(
            message("name: x\nmode: slow\n"),
            "keel.yaml:2:7: unknown variant `slow`, expected `fast` or `exact`"
        );
        assert_eq!(message("share: 1\n"), "keel.yaml:1:1: missing field `name`");
        assert_eq!(
            message("name: [a]\n"),
            "keel.yaml:1:7: invalid type: sequence, expected a string"
        );
    }
}
