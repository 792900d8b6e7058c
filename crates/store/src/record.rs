//! Stage records: what a stage produced for a given cache key, kept at
//! `.sluice/records/ab/cdef….json`.
//!
//! A record is written to `.sluice/tmp` and renamed into place, so a reader sees a whole record or
//! none. A record that cannot be parsed is deleted and reads as absent: a crash or a stray edit must
//! never wedge the cache. This module knows nothing about what a key is made of.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::artifact::Artifact;
use crate::digest::Digest;
use crate::disk::{fan_out_dirs, remove_if_present};
use crate::error::StoreError;

/// What a stage run produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StageRecord {
    /// Output name → artifact.
    pub outputs: BTreeMap<String, Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// The records directory.
#[derive(Debug)]
pub(crate) struct Records {
    root: PathBuf,
    tmp: PathBuf,
}

impl Records {
    pub(crate) fn new(root: PathBuf, tmp: PathBuf) -> Records {
        Records { root, tmp }
    }

    pub(crate) fn path(&self, key: &Digest) -> PathBuf {
        let hex = key.hex();
        self.root
            .join(&hex[..2])
            .join(format!("{}.json", &hex[2..]))
    }

    pub(crate) fn read(&self, key: &Digest) -> Result<Option<StageRecord>, StoreError> {
        let path = self.path(key);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(path)(e)),
        };
        match serde_json::from_slice(&bytes) {
            Ok(record) => Ok(Some(record)),
            Err(_) => {
                // Unreadable records are dropped so that the stage simply runs again.
                remove_if_present(&path)?;
                Ok(None)
            }
        }
    }

    pub(crate) fn write(&self, key: &Digest, record: &StageRecord) -> Result<(), StoreError> {
        let path = self.path(key);
        let mut bytes =
            serde_json::to_vec_pretty(record).map_err(|source| StoreError::BadRecord {
                path: path.clone(),
                source,
            })?;
        bytes.push(b'\n');
        let mut tmp =
            tempfile::NamedTempFile::new_in(&self.tmp).map_err(StoreError::io(&self.tmp))?;
        tmp.write_all(&bytes).map_err(StoreError::io(tmp.path()))?;
        let parent = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).map_err(StoreError::io(parent))?;
        tmp.persist(&path)
            .map_err(|e| StoreError::io(&path)(e.error))?;
        Ok(())
    }

    pub(crate) fn remove(&self, key: &Digest) -> Result<(), StoreError> {
        remove_if_present(&self.path(key))
    }

    /// Every record key present, with the record's path. Files that are not named like records are
    /// left out (and left alone).
    pub(crate) fn list(&self) -> Result<Vec<(Digest, PathBuf)>, StoreError> {
        let mut out = Vec::new();
        for (prefix, dir) in fan_out_dirs(&self.root)? {
            for entry in fs::read_dir(&dir).map_err(StoreError::io(&dir))? {
                let entry = entry.map_err(StoreError::io(&dir))?;
                let name = entry.file_name();
                let Some(rest) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                    continue;
                };
                if let Ok(key) = format!("{prefix}{rest}").parse() {
                    out.push((key, entry.path()));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::ArtifactKind;

    fn records() -> (tempfile::TempDir, Records) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("tmp")).unwrap();
        let records = Records::new(dir.path().join("records"), dir.path().join("tmp"));
        (dir, records)
    }

    fn sample() -> StageRecord {
        let artifact = |kind, bytes: &[u8]| Artifact {
            kind,
            digest: Digest::of_bytes(bytes),
            size: bytes.len() as u64,
        };
        StageRecord {
            outputs: BTreeMap::from([
                ("model".to_owned(), artifact(ArtifactKind::Dir, b"[]")),
                ("data".to_owned(), artifact(ArtifactKind::File, b"rows")),
            ]),
            duration_ms: Some(1234),
        }
    }

    #[test]
    fn round_trips_and_is_diff_friendly() {
        let (_dir, records) = records();
        let key = Digest::of_bytes(b"key");
        assert_eq!(records.read(&key).unwrap(), None);
        records.write(&key, &sample()).unwrap();
        assert_eq!(records.read(&key).unwrap(), Some(sample()));

        let text = fs::read_to_string(records.path(&key)).unwrap();
        assert!(text.ends_with("}\n"), "{text}");
        assert!(text.contains("\"duration-ms\": 1234"), "{text}");
        assert!(
            text.find("\"data\"").unwrap() < text.find("\"model\"").unwrap(),
            "{text}"
        );
        assert!(text.contains(&format!("\"digest\": \"{}\"", Digest::of_bytes(b"rows"))));

        let bare = StageRecord::default();
        records.write(&key, &bare).unwrap();
        assert_eq!(
            fs::read_to_string(records.path(&key)).unwrap(),
            "{\n  \"outputs\": {}\n}\n"
        );
        assert_eq!(records.list().unwrap(), vec![(key, records.path(&key))]);

        records.remove(&key).unwrap();
        records.remove(&key).unwrap();
        assert_eq!(records.read(&key).unwrap(), None);
    }

    #[test]
    fn unreadable_records_read_as_absent_and_are_removed() {
        let (_dir, records) = records();
        let key = Digest::of_bytes(b"key");
        for garbage in [&b""[..], b"{", b"\0\xff", b"{\"outputs\": 3}", b"[]"] {
            let path = records.path(&key);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, garbage).unwrap();
            assert_eq!(records.read(&key).unwrap(), None, "{garbage:?}");
            assert!(!path.exists());
        }
    }
}
