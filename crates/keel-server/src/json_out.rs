//! A JSON writer for the answers that carry many entities (runs/search,
//! metric history, runs): the wire shapes in [`crate::dto`] are written
//! straight into the answer's bytes. serde_json spends most of such an answer
//! on per-string overhead (every key goes through its escaping map-key
//! serializer, every fragment through `io::Write`); here a key is a literal
//! (`"key":` written whole) and a string value is scanned once and copied
//! whole when nothing in it needs escaping.
//!
//! The bytes are serde_json's own: strings are escaped as serde_json escapes
//! them (`"`, `\`, and control characters, `\u00XX` where JSON has no short
//! form), integers are formatted by `itoa` and doubles by `zmij` (the
//! formatters serde_json uses), and callers write an object's keys in sorted
//! order, as a `serde_json::Map` does (dto's tests compare the bytes).

/// An answer being written.
pub struct JsonOut(Vec<u8>);

impl JsonOut {
    pub fn with_capacity(bytes: usize) -> Self {
        JsonOut(Vec::with_capacity(bytes))
    }

    /// Starts the top-level object.
    pub fn object(&mut self) -> Obj<'_> {
        self.0.push(b'{');
        Obj {
            out: &mut self.0,
            first: true,
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// An object being written; [`Obj::end`] closes it.
pub struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Obj<'_> {
    /// Writes `,"key":` (`key` is a field name: plain ASCII, never escaped).
    #[inline]
    fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        debug_assert!(!key.bytes().any(needs_escape), "field name {key:?}");
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    #[inline]
    pub fn str(&mut self, key: &'static str, value: &str) -> &mut Self {
        let out = self.key(key);
        write_str(out, value);
        self
    }

    pub fn int(&mut self, key: &'static str, value: i64) -> &mut Self {
        let out = self.key(key);
        out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// A double in protobuf JSON form ([`keel_core::json_double`]): a number,
    /// or a string for NaN and the infinities.
    pub fn double(&mut self, key: &'static str, value: f64) -> &mut Self {
        let out = self.key(key);
        match keel_core::json_double::non_finite_name(value) {
            Some(name) => write_str(out, name),
            None => out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes()),
        }
        self
    }

    /// A nested object, written by `fill`.
    pub fn object(&mut self, key: &'static str, fill: impl FnOnce(&mut Obj<'_>)) -> &mut Self {
        let out = self.key(key);
        out.push(b'{');
        let mut inner = Obj { out, first: true };
        fill(&mut inner);
        inner.end();
        self
    }

    /// A list of objects, one written by `each` per item; nothing at all when
    /// `items` is empty (protobuf JSON omits empty lists).
    pub fn list<T>(
        &mut self,
        key: &'static str,
        items: &[T],
        mut each: impl FnMut(&mut Obj<'_>, &T),
    ) -> &mut Self {
        if items.is_empty() {
            return self;
        }
        let out = self.key(key);
        out.push(b'[');
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.push(b'{');
            let mut inner = Obj {
                out: &mut *out,
                first: true,
            };
            each(&mut inner, item);
            inner.end();
        }
        out.push(b']');
        self
    }

    pub fn end(self) {
        self.out.push(b'}');
    }
}

/// The bytes JSON strings must escape.
#[inline]
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Writes `value` as a JSON string, escaped as serde_json escapes it.
#[inline]
fn write_str(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Most strings need no escape: checked 16 bytes at a time with no branch
    // per byte (the compiler vectorizes the fold), then copied whole.
    let clean = bytes
        .chunks(16)
        .all(|chunk| !chunk.iter().fold(false, |any, &b| any | needs_escape(b)));
    if clean {
        out.extend_from_slice(bytes);
    } else {
        let mut start = 0;
        for (i, &byte) in bytes.iter().enumerate() {
            if !needs_escape(byte) {
                continue;
            }
            out.extend_from_slice(&bytes[start..i]);
            start = i + 1;
            match byte {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x09 => out.extend_from_slice(b"\\t"),
                0x0A => out.extend_from_slice(b"\\n"),
                0x0C => out.extend_from_slice(b"\\f"),
                0x0D => out.extend_from_slice(b"\\r"),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(byte >> 4)]);
                    out.push(HEX[usize::from(byte & 0xF)]);
                }
            }
        }
        out.extend_from_slice(&bytes[start..]);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_string(value: &str) -> String {
        let mut out = JsonOut::with_capacity(16);
        let mut object = out.object();
        object.str("s", value);
        object.end();
        String::from_utf8(out.into_bytes()).expect("utf-8")
    }

    /// Every byte value that can start or sit in a string, and mixes of
    /// plain runs and escapes, come out byte for byte as serde_json writes them.
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut cases: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        cases.extend(
            [
                "",
                "plain text, longer than sixteen bytes to cross a chunk",
                "quote \" and backslash \\ and newline \n and tab \t",
                "\u{1}\u{1f}\u{7f} control, DEL, é, ☃, 🦀",
                "ends with an escape\"",
                "\"starts with one",
                "/ is not escaped",
            ]
            .map(str::to_string),
        );
        for case in cases {
            let expected = serde_json::json!({ "s": case }).to_string();
            assert_eq!(one_string(&case), expected, "{case:?}");
        }
    }

    #[test]
    fn numbers_are_formatted_as_serde_json_formats_them() {
        let doubles = [
            0.0,
            -0.0,
            0.5,
            1.0,
            0.1,
            1e-7,
            1e21,
            123456.789,
            f64::MAX,
            f64::MIN_POSITIVE,
        ];
        for value in doubles {
            for int in [0, -42, i64::MAX, i64::MIN] {
                let mut out = JsonOut::with_capacity(16);
                let mut object = out.object();
                object.int("i", int).double("v", value);
                object.end();
                let expected = serde_json::json!({ "i": int, "v": value }).to_string();
                assert_eq!(String::from_utf8(out.into_bytes()).unwrap(), expected);
            }
        }
        let mut out = JsonOut::with_capacity(16);
        let mut object = out.object();
        object
            .double("a", f64::NAN)
            .double("b", f64::INFINITY)
            .double("c", f64::NEG_INFINITY);
        object.end();
        assert_eq!(
            String::from_utf8(out.into_bytes()).unwrap(),
            r#"{"a":"NaN","b":"Infinity","c":"-Infinity"}"#
        );
    }

    #[test]
    fn nested_objects_and_lists_and_empty_lists() {
        let mut out = JsonOut::with_capacity(16);
        let mut top = out.object();
        top.list("empty", &[] as &[i64], |o, v| {
            o.int("v", *v);
        })
        .list("items", &[1, 2], |o, v| {
            o.int("v", *v);
        })
        .object("o", |o| {
            o.str("k", "x");
        });
        top.end();
        assert_eq!(
            String::from_utf8(out.into_bytes()).unwrap(),
            r#"{"items":[{"v":1},{"v":2}],"o":{"k":"x"}}"#
        );
    }
}
