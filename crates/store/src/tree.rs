//! [`Tree`]: the canonical encoding of a directory, the node of the Merkle tree.
//!
//! A tree object's bytes are a compact JSON array of its entries sorted bytewise by name, each
//! `{"name":…,"mode":"file"|"exec"|"dir","digest":…,"size":…}`; a directory's digest is the blake3
//! of those bytes, so two directories with the same names, modes and contents share a digest wherever
//! they sit. Decoding accepts only the canonical bytes and only safe names (no `/`, NUL, `.` or `..`), so a
//! tree can be written to disk without escaping its directory. This module does no IO.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryMode {
    /// A plain file, materialised as 0644.
    File,
    /// A file with an executable bit, materialised as 0755.
    Exec,
    Dir,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeEntry {
    pub name: String,
    pub mode: EntryMode,
    /// The file's digest, or the subdirectory's tree digest.
    pub digest: Digest,
    /// Bytes: the file's length, or the sum over the subdirectory.
    pub size: u64,
}

/// A directory's entries, sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    entries: Vec<TreeEntry>,
}

impl Tree {
    /// Builds a tree from entries in any order. Fails on an unsafe or repeated name.
    pub fn new(mut entries: Vec<TreeEntry>) -> Result<Tree, String> {
        entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        let tree = Tree { entries };
        tree.check()?;
        Ok(tree)
    }

    pub fn entries(&self) -> &[TreeEntry] {
        &self.entries
    }

    /// Total bytes of every file under the tree.
    pub fn size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// The canonical bytes, stored as the tree object.
    pub fn encode(&self) -> Vec<u8> {
        // Written by hand, byte for byte, so that the format cannot drift with a serializer's
        // settings; `decode` checks that serde_json reads back exactly these bytes.
        let mut out = Vec::with_capacity(2 + self.entries.len() * 128);
        out.push(b'[');
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"name\":");
            push_json_string(&mut out, &entry.name);
            out.extend_from_slice(b",\"mode\":\"");
            out.extend_from_slice(match entry.mode {
                EntryMode::File => b"file",
                EntryMode::Exec => b"exec",
                EntryMode::Dir => b"dir",
            });
            out.extend_from_slice(b"\",\"digest\":\"");
            entry.digest.push_hex(&mut out);
            out.extend_from_slice(b"\",\"size\":");
            out.extend_from_slice(entry.size.to_string().as_bytes());
            out.push(b'}');
        }
        out.push(b']');
        out
    }

    pub fn digest(&self) -> Digest {
        Digest::of_bytes(&self.encode())
    }

    /// Parses a tree object. Only the canonical encoding of a valid tree is accepted.
    pub fn decode(bytes: &[u8]) -> Result<Tree, String> {
        let entries: Vec<TreeEntry> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let tree = Tree { entries };
        tree.check()?;
        if tree.encode() != bytes {
            return Err("its encoding is not canonical".to_owned());
        }
        Ok(tree)
    }

    fn check(&self) -> Result<(), String> {
        for entry in &self.entries {
            let name = &entry.name;
            if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
                return Err(format!("entry name {name:?} is not a plain file name"));
            }
        }
        for pair in self.entries.windows(2) {
            if pair[0].name.as_bytes() >= pair[1].name.as_bytes() {
                return Err(format!(
                    "entry {:?} is out of order or repeated",
                    pair[1].name
                ));
            }
        }
        Ok(())
    }
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it: `"`, `\\` and control characters
/// only, with the short forms where JSON has them; everything else as raw UTF-8.
fn push_json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &byte in s.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x00..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, mode: EntryMode, content: &[u8]) -> TreeEntry {
        TreeEntry {
            name: name.to_owned(),
            mode,
            digest: Digest::of_bytes(content),
            size: content.len() as u64,
        }
    }

    #[test]
    fn encoding_is_canonical_and_pinned() {
        // Changing these bytes changes every directory digest: bump the cache format version too.
        let check = |entries: Vec<TreeEntry>, expected: &str| {
            let tree = Tree::new(entries).unwrap();
            let bytes = tree.encode();
            assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
            assert_eq!(Tree::decode(&bytes).unwrap(), tree);
            assert_eq!(tree.digest(), Digest::of_bytes(expected.as_bytes()));
        };
        check(vec![], "[]");
        let empty = Digest::of_bytes(b"");
        let hello = Digest::of_bytes(b"hello");
        check(
            vec![
                entry("b", EntryMode::Exec, b"hello"),
                entry("B", EntryMode::Dir, b""),
                entry("a", EntryMode::File, b""),
            ],
            &format!(
                concat!(
                    r#"[{{"name":"B","mode":"dir","digest":"{e}","size":0}},"#,
                    r#"{{"name":"a","mode":"file","digest":"{e}","size":0}},"#,
                    r#"{{"name":"b","mode":"exec","digest":"{h}","size":5}}]"#
                ),
                e = empty,
                h = hello
            ),
        );
    }

    #[test]
    fn hand_encoding_matches_serde_json() {
        let names = [
            "plain",
            "quote\"",
            "back\\slash",
            "nl\n",
            "tab\t",
            "bell\u{7}",
            "del\u{7f}",
            "é✓😀",
            "\u{1f}\u{8}\u{c}\r",
        ];
        let tree = Tree::new(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| TreeEntry {
                    size: i as u64 * 1_000_000_007,
                    ..entry(n, EntryMode::Exec, n.as_bytes())
                })
                .collect(),
        )
        .unwrap();
        assert_eq!(tree.encode(), serde_json::to_vec(tree.entries()).unwrap());
        assert_eq!(Tree::decode(&tree.encode()).unwrap(), tree);
    }

    #[test]
    fn names_sort_bytewise() {
        let tree = Tree::new(
            ["é", "z", "Z", "a.txt", "a", "a-b", "10", "9"]
                .map(|n| entry(n, EntryMode::File, b"x"))
                .to_vec(),
        )
        .unwrap();
        let names: Vec<&str> = tree.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["10", "9", "Z", "a", "a-b", "a.txt", "z", "é"]);
        assert_eq!(tree.size(), 8);
    }

    #[test]
    fn rejects_unsafe_or_non_canonical_input() {
        let check = |bytes: &str| assert!(Tree::decode(bytes.as_bytes()).is_err(), "{bytes}");
        let d = Digest::of_bytes(b"");
        let one =
            |name: &str| format!(r#"[{{"name":"{name}","mode":"file","digest":"{d}","size":0}}]"#);
        check("");
        check("{}");
        check(" []");
        check("[]\n");
        check(&one(""));
        check(&one("."));
        check(&one(".."));
        check(&one("a/b"));
        check(&one("a\\u0000"));
        check(&format!(
            r#"[{{"name":"a","mode":"link","digest":"{d}","size":0}}]"#
        ));
        check(&format!(
            r#"[{{"mode":"file","name":"a","digest":"{d}","size":0}}]"#
        ));
        check(&format!(
            r#"[{{"name":"a","mode":"file","digest":"{d}","size":0,"x":1}}]"#
        ));
        let a = one("a");
        let a = &a[1..a.len() - 1];
        check(&format!("[{a},{a}]"));
        let b = one("b");
        let b = &b[1..b.len() - 1];
        check(&format!("[{b},{a}]"));
        assert!(Tree::decode(format!("[{a},{b}]").as_bytes()).is_ok());

        for name in ["", ".", "..", "x/y"] {
            assert!(
                Tree::new(vec![entry(name, EntryMode::File, b"")]).is_err(),
                "{name}"
            );
        }
        assert!(
            Tree::new(vec![
                entry("x", EntryMode::File, b""),
                entry("x", EntryMode::Dir, b"")
            ])
            .is_err()
        );
    }
}
