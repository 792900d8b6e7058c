//! [`Digest`]: the blake3 hash that names every object, tree and stage key.
//!
//! A digest is shown as 64 lowercase hex characters (12 for humans) and serialised as that string.
//! This module hashes bytes and files; it must not know where objects live or cache anything.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Files at least this large are hashed through a memory map on all cores.
const MMAP_THRESHOLD: u64 = 1 << 20;

/// A blake3 hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    pub fn from_hasher(hasher: &blake3::Hasher) -> Digest {
        Digest(*hasher.finalize().as_bytes())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex characters.
    pub fn hex(&self) -> String {
        self.hex_buf().as_str().to_owned()
    }

    /// The first 12 hex characters, enough for a human to tell digests apart.
    pub fn short(&self) -> String {
        let mut hex = self.hex();
        hex.truncate(12);
        hex
    }

    /// Hashes a file's content, returning its digest and length. Large files go through
    /// `update_mmap_rayon` (as `b3sum` does); small ones are read into a buffer.
    pub(crate) fn of_file(path: &Path) -> io::Result<(Digest, u64)> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut hasher = blake3::Hasher::new();
        if len >= MMAP_THRESHOLD {
            drop(file);
            hasher.update_mmap_rayon(path)?;
        } else {
            // The length may have changed since the stat: read to the end, whatever it is.
            let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0) + 1);
            file.read_to_end(&mut buf)?;
            hasher.update(&buf);
        }
        Ok((Digest::from_hasher(&hasher), hasher.count()))
    }
}

/// A digest's hex form on the stack, so that displaying one allocates nothing.
struct HexBuf([u8; 64]);

impl HexBuf {
    fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into the buffer.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Digest {
    /// Appends the 64 hex characters to `out`.
    pub(crate) fn push_hex(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hex_buf().0);
    }

    fn hex_buf(&self) -> HexBuf {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 64];
        for (i, byte) in self.0.iter().enumerate() {
            buf[2 * i] = HEX[usize::from(byte >> 4)];
            buf[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        HexBuf(buf)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex_buf().as_str())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

/// Why a string is not a digest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    #[error("a digest has 64 hex characters, not {0}")]
    Length(usize),
    #[error("a digest has only hex characters, not {0:?}")]
    Character(char),
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Digest, DigestParseError> {
        if let Some(c) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(DigestParseError::Character(c));
        }
        if s.len() != 64 {
            return Err(DigestParseError::Length(s.len()));
        }
        // Only ASCII hex digits remain, so every byte is a nibble.
        let nibble = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            *byte = nibble(pair[0]) << 4 | nibble(pair[1]);
        }
        Ok(Digest(bytes))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a digest of 64 hex characters")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Digest, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        for bytes in [&b""[..], b"hello", &[0xff; 1000]] {
            let digest = Digest::of_bytes(bytes);
            let hex = digest.hex();
            assert_eq!(hex.len(), 64);
            assert!(
                hex.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            assert_eq!(hex.parse::<Digest>(), Ok(digest));
            assert_eq!(hex.to_uppercase().parse::<Digest>(), Ok(digest));
            assert_eq!(digest.to_string(), hex);
            assert_eq!(digest.short(), hex[..12]);
            assert_eq!(format!("{digest:?}"), format!("Digest({})", &hex[..12]));
            let json = serde_json::to_string(&digest).unwrap();
            assert_eq!(json, format!("\"{hex}\""));
            assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
        }
    }

    #[test]
    fn known_values() {
        // blake3 test vectors: the empty input and "hello".
        let check =
            |input: &[u8], expected: &str| assert_eq!(Digest::of_bytes(input).hex(), expected);
        check(
            b"",
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
        );
        check(
            b"hello",
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f",
        );
    }

    #[test]
    fn parse_errors() {
        let check = |input: &str, expected: DigestParseError| {
            assert_eq!(input.parse::<Digest>(), Err(expected));
        };
        check("", DigestParseError::Length(0));
        check("abc", DigestParseError::Length(3));
        check(&"0".repeat(65), DigestParseError::Length(65));
        check(
            &format!("{}g", "0".repeat(63)),
            DigestParseError::Character('g'),
        );
        check(
            &format!("{}é", "0".repeat(62)),
            DigestParseError::Character('é'),
        );
    }

    #[test]
    fn hashes_small_and_large_files_like_bytes() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 4095, 1 << 20, (1 << 20) + 12345] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &bytes).unwrap();
            let (digest, size) = Digest::of_file(&path).unwrap();
            assert_eq!(digest, Digest::of_bytes(&bytes), "len {len}");
            assert_eq!(size, len as u64);
        }
    }
}
