//! The pack format, shared by remotes and the local cache: small objects
//! concatenated into one file `<H>.pack` (`H` being the BLAKE3 of the pack's
//! bytes) next to a text index `<H>.idx`: a `keel-pack 1` line, then
//! `<digest> <offset> <size>` per object. A pack counts only once its index
//! exists, and the index is always written after the pack, so a writer
//! killed in between leaves at worst a pack nobody reads.

use crate::hash::Digest;

/// First line of a pack index.
pub const HEADER: &str = "keel-pack 1";

/// One line of a pack index: digest, offset, size.
pub type Entry = (Digest, u64, u64);

/// Parses a pack index; errors carry the 1-based line.
pub fn parse_index(bytes: &[u8]) -> std::result::Result<Vec<Entry>, (usize, String)> {
    let text = std::str::from_utf8(bytes).map_err(|_| (0, "not UTF-8".to_string()))?;
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err((1, format!("expected `{HEADER}`")));
    }
    let mut entries = Vec::new();
    for (number, line) in lines.enumerate() {
        let bad = |what: &str| (number + 2, format!("{what} in `{line}`"));
        let mut fields = line.split(' ');
        let digest = fields
            .next()
            .and_then(|hex| hex.parse().ok())
            .ok_or_else(|| bad("bad digest"))?;
        let offset = fields
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad("bad offset"))?;
        let size = fields
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad("bad size"))?;
        if fields.next().is_some() {
            return Err(bad("extra field"));
        }
        entries.push((digest, offset, size));
    }
    Ok(entries)
}

/// A pack being assembled: the objects' offsets and sizes in the order they
/// were added, and the running hash that names the pack. The bytes
/// themselves are kept by the caller (a remote push concatenates them, the
/// local cache writes the pieces one after another).
#[derive(Debug, Default)]
pub struct Layout {
    entries: Vec<Entry>,
    hasher: blake3::Hasher,
    length: u64,
}

impl Layout {
    /// Appends an object.
    pub fn push(&mut self, digest: Digest, bytes: &[u8]) {
        self.entries.push((digest, self.length, bytes.len() as u64));
        self.hasher.update(bytes);
        self.length += bytes.len() as u64;
    }

    /// Objects so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pack's name (the BLAKE3 of its bytes), its index text and entries.
    pub fn finish(self) -> (Digest, String, Vec<Entry>) {
        let name = Digest(*self.hasher.finalize().as_bytes());
        (name, render_index(&self.entries), self.entries)
    }
}

/// The index text for `entries`.
pub fn render_index(entries: &[Entry]) -> String {
    let mut index = String::with_capacity(HEADER.len() + 1 + entries.len() * 84);
    index.push_str(HEADER);
    index.push('\n');
    for (digest, offset, size) in entries {
        index.push_str(&format!("{digest} {offset} {size}\n"));
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips_and_names_bad_lines() {
        let mut layout = Layout::default();
        layout.push(Digest::of_bytes(b"x"), b"x");
        layout.push(Digest::of_bytes(b"yz"), b"yz");
        let (name, text, entries) = layout.finish();
        assert_eq!(name, Digest::of_bytes(b"xyz"));
        assert_eq!(
            entries,
            [
                (Digest::of_bytes(b"x"), 0, 1),
                (Digest::of_bytes(b"yz"), 1, 2)
            ]
        );
        assert_eq!(parse_index(text.as_bytes()).unwrap(), entries);
        assert_eq!(parse_index(b"nope\n").unwrap_err().0, 1);
        let digest = Digest::of_bytes(b"x");
        let bad = format!("{HEADER}\n{digest} 0 1\n{digest} zero 1\n");
        let (line, message) = parse_index(bad.as_bytes()).unwrap_err();
        assert_eq!(line, 3);
        assert!(message.contains("bad offset"), "{message}");
        let extra = format!("{HEADER}\n{digest} 0 1 9\n");
        assert!(
            parse_index(extra.as_bytes())
                .unwrap_err()
                .1
                .contains("extra")
        );
    }
}
