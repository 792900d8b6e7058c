//! Stage records: what a stage produced for a given cache key, kept in the `records` table of
//! `.sluice/state.db` (key → JSON).
//!
//! A row is written in one SQLite transaction (WAL), so a reader sees a whole record or none, and a
//! crash never leaves half of one; unlike a file per record, writing one costs no new inode. A
//! record that cannot be parsed is deleted and reads as absent: a crash or a stray edit must never
//! wedge the cache. This module knows nothing about what a key is made of.

use std::collections::BTreeMap;
#[cfg(test)]
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::artifact::Artifact;
use crate::digest::Digest;
use crate::error::StoreError;

/// What a stage run produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StageRecord {
    /// Output name → artifact.
    pub outputs: BTreeMap<String, Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Where the stage ran: `cpu`, `gpu:1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Headline numbers the stage reported.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// Outputs and metrics that may differ between runs on the same inputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unstable: Vec<String>,
}

/// The records table.
pub(crate) struct Records {
    db: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records").finish_non_exhaustive()
    }
}

impl Records {
    /// Opens the table in the database at `path` (which the stat cache has already opened and
    /// repaired if needed), creating it if missing.
    #[cfg(test)]
    pub(crate) fn open(path: &Path) -> Result<Records, StoreError> {
        Records::new(crate::db::open(path)?)
    }

    /// The table on a shared connection, created if missing.
    pub(crate) fn new(db: Arc<Mutex<Connection>>) -> Result<Records, StoreError> {
        db.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS records (
                     key BLOB PRIMARY KEY NOT NULL,
                     record TEXT NOT NULL
                 ) WITHOUT ROWID;",
            )?;
        Ok(Records { db })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn read(&self, key: &Digest) -> Result<Option<StageRecord>, StoreError> {
        let db = self.db();
        let text: Option<String> = db
            .prepare_cached("SELECT record FROM records WHERE key = ?1")?
            .query_row(params![&key.as_bytes()[..]], |row| row.get(0))
            .optional()
            .or_else(|e| match e {
                // A value that is not text is as good as garbage.
                rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::InvalidColumnType(..) => Ok(Some(String::new())),
                e => Err(e),
            })?;
        let Some(text) = text else {
            return Ok(None);
        };
        match serde_json::from_str(&text) {
            Ok(record) => Ok(Some(record)),
            Err(_) => {
                // Unreadable records are dropped so that the stage simply runs again.
                db.execute(
                    "DELETE FROM records WHERE key = ?1",
                    params![&key.as_bytes()[..]],
                )?;
                Ok(None)
            }
        }
    }

    pub(crate) fn write(&self, key: &Digest, record: &StageRecord) -> Result<(), StoreError> {
        let text = serde_json::to_string(record).map_err(|source| StoreError::BadRecord {
            path: format!("record {}", key.short()).into(),
            source,
        })?;
        self.db()
            .prepare_cached("INSERT OR REPLACE INTO records (key, record) VALUES (?1, ?2)")?
            .execute(params![&key.as_bytes()[..], text])?;
        Ok(())
    }

    pub(crate) fn remove(&self, key: &Digest) -> Result<(), StoreError> {
        self.db().execute(
            "DELETE FROM records WHERE key = ?1",
            params![&key.as_bytes()[..]],
        )?;
        Ok(())
    }

    /// Every record key present. Rows whose key is not a digest are left out (and left alone).
    pub(crate) fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let db = self.db();
        let mut select = db.prepare("SELECT key FROM records")?;
        let keys = select
            .query_map([], |row| row.get::<_, Vec<u8>>(0))?
            .filter_map(|k| k.ok().and_then(|k| <[u8; 32]>::try_from(k).ok()))
            .map(Digest::from_bytes)
            .collect();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::ArtifactKind;

    fn records() -> (tempfile::TempDir, Records) {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(&dir.path().join("state.db")).unwrap();
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
            device: Some("gpu:1".into()),
            metrics: BTreeMap::from([("rows".to_owned(), 12.0)]),
            unstable: vec!["model".to_owned()],
        }
    }

    #[test]
    fn round_trips() {
        let (_dir, records) = records();
        let key = Digest::of_bytes(b"key");
        assert_eq!(records.read(&key).unwrap(), None);
        records.write(&key, &sample()).unwrap();
        assert_eq!(records.read(&key).unwrap(), Some(sample()));
        records.write(&key, &StageRecord::default()).unwrap();
        assert_eq!(records.read(&key).unwrap(), Some(StageRecord::default()));
        assert_eq!(records.list().unwrap(), vec![key]);
        records.remove(&key).unwrap();
        records.remove(&key).unwrap();
        assert_eq!(records.read(&key).unwrap(), None);
        assert!(records.list().unwrap().is_empty());
    }

    /// A record's metrics come back bit for bit: `sluice repro` compares them exactly, and
    /// serde_json's default float parser may be one unit in the last place off (it needs its
    /// `float_roundtrip` feature). 29.842146183163294 came back as …297 before.
    #[test]
    fn metrics_round_trip_to_the_last_bit() {
        let (_dir, records) = records();
        let key = Digest::of_bytes(b"key");
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut values = vec![29.842146183163294, 0.9106619842622163, 0.9070459658171913];
        for _ in 0..2000 {
            // xorshift: doubles of every magnitude from bit patterns
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = f64::from_bits(state);
            if v.is_finite() {
                values.push(v);
            }
            values.push((state >> 11) as f64 / (1u64 << 53) as f64 * 100.0);
        }
        let record = StageRecord {
            metrics: values
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("m{i}"), *v))
                .collect(),
            ..StageRecord::default()
        };
        records.write(&key, &record).unwrap();
        let back = records.read(&key).unwrap().unwrap();
        for (name, v) in &record.metrics {
            assert_eq!(back.metrics[name].to_bits(), v.to_bits(), "{name}: {v:e}");
        }
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let key = Digest::of_bytes(b"key");
        Records::open(&dir.path().join("state.db"))
            .unwrap()
            .write(&key, &sample())
            .unwrap();
        let again = Records::open(&dir.path().join("state.db")).unwrap();
        assert_eq!(again.read(&key).unwrap(), Some(sample()));
    }

    #[test]
    fn unreadable_records_read_as_absent_and_are_removed() {
        let (_dir, records) = records();
        let key = Digest::of_bytes(b"key");
        for garbage in ["", "{", "{\"outputs\": 3}", "[]"] {
            records
                .db()
                .execute(
                    "INSERT OR REPLACE INTO records (key, record) VALUES (?1, ?2)",
                    params![&key.as_bytes()[..], garbage],
                )
                .unwrap();
            assert_eq!(records.read(&key).unwrap(), None, "{garbage:?}");
            assert!(records.list().unwrap().is_empty());
        }
    }
}
