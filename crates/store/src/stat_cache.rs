//! The stat cache: workspace-relative path → (size, mtime, ctime, inode) → digest, so that an
//! unchanged file is never hashed twice.
//!
//! The table lives in SQLite at `.sluice/state.db` (WAL, busy timeout) and is loaded whole into
//! memory on open; lookups are a hash-map probe with no SQL, and new entries reach the database in one
//! transaction per [`StatCache::flush`]. An entry whose mtime lies within [`RACY_NS`] of the moment
//! it was observed is never recorded (it is "racy": a write in the same timestamp tick would keep the
//! same stamp), so such a file is hashed again next time. The cache only remembers what it is told;
//! it must not read or hash files itself.

use std::collections::HashMap;
use std::fs::Metadata;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, params};

use crate::digest::Digest;
use crate::error::StoreError;

/// How close to "now" an mtime must be for its entry to be racy.
pub(crate) const RACY_NS: i64 = 20_000_000;

/// Bump when the table's meaning changes: an old table is then dropped, not misread.
const SCHEMA_VERSION: i64 = 1;

/// What `stat` says about a file; equal stamps mean "unchanged" to the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) ctime_ns: i64,
    pub(crate) inode: u64,
}

impl Stamp {
    #[cfg(unix)]
    pub(crate) fn of(meta: &Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            size: meta.len(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ctime_ns: meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
            inode: meta.ino(),
        }
    }

    #[cfg(not(unix))]
    pub(crate) fn of(meta: &Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            mtime_ns: meta.modified().map(ns_since_epoch).unwrap_or(0),
            ctime_ns: 0,
            inode: 0,
        }
    }

    /// Whether a write observed at `now_ns` could still share this mtime.
    pub(crate) fn is_racy(&self, now_ns: i64) -> bool {
        self.mtime_ns > now_ns.saturating_sub(RACY_NS)
    }
}

/// Nanoseconds since the Unix epoch (negative before it).
pub(crate) fn ns_since_epoch(time: SystemTime) -> i64 {
    let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => ns(after),
        Err(before) => -ns(before.duration()),
    }
}

pub(crate) fn now_ns() -> i64 {
    ns_since_epoch(SystemTime::now())
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    stamp: Stamp,
    digest: Digest,
}

#[derive(Default)]
struct Entries {
    known: HashMap<String, Entry>,
    /// Changes not yet in the database: `None` deletes.
    dirty: HashMap<String, Option<Entry>>,
}

pub(crate) struct StatCache {
    db: Mutex<Connection>,
    entries: Mutex<Entries>,
}

impl StatCache {
    /// Opens the database, creating it if needed. A file that is not a database (or is corrupt) is
    /// replaced by an empty one: it is only a cache.
    pub(crate) fn open(path: &Path) -> Result<StatCache, StoreError> {
        match StatCache::open_once(path) {
            Err(StoreError::Db(e))
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
                ) =>
            {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.as_os_str().to_owned();
                    file.push(suffix);
                    crate::disk::remove_if_present(Path::new(&file))?;
                }
                StatCache::open_once(path)
            }
            result => result,
        }
    }

    fn open_once(path: &Path) -> Result<StatCache, StoreError> {
        let db = Connection::open(path)?;
        db.busy_timeout(Duration::from_secs(10))?;
        db.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = db.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version != SCHEMA_VERSION {
            db.execute_batch(&format!(
                "BEGIN;
                 DROP TABLE IF EXISTS stat;
                 CREATE TABLE stat (
                     path TEXT PRIMARY KEY NOT NULL,
                     size INTEGER NOT NULL,
                     mtime_ns INTEGER NOT NULL,
                     ctime_ns INTEGER NOT NULL,
                     inode INTEGER NOT NULL,
                     digest BLOB NOT NULL
                 ) WITHOUT ROWID;
                 PRAGMA user_version = {SCHEMA_VERSION};
                 COMMIT;"
            ))?;
        }
        let mut known = HashMap::new();
        {
            let mut select =
                db.prepare("SELECT path, size, mtime_ns, ctime_ns, inode, digest FROM stat")?;
            let mut rows = select.query([])?;
            while let Some(row) = rows.next()? {
                let digest: Vec<u8> = row.get(5)?;
                let Ok(digest) = <[u8; 32]>::try_from(digest) else {
                    continue;
                };
                let stamp = Stamp {
                    size: row.get::<_, i64>(1)? as u64,
                    mtime_ns: row.get(2)?,
                    ctime_ns: row.get(3)?,
                    inode: row.get::<_, i64>(4)? as u64,
                };
                let entry = Entry {
                    stamp,
                    digest: Digest::from_bytes(digest),
                };
                known.insert(row.get(0)?, entry);
            }
        }
        Ok(StatCache {
            db: Mutex::new(db),
            entries: Mutex::new(Entries {
                known,
                dirty: HashMap::new(),
            }),
        })
    }

    /// The digest recorded for `key`, if its stamp is unchanged.
    pub(crate) fn get(&self, key: &str, stamp: &Stamp) -> Option<Digest> {
        let entries = self.entries();
        entries
            .known
            .get(key)
            .filter(|entry| entry.stamp == *stamp)
            .map(|entry| entry.digest)
    }

    /// Remembers a digest observed at `now_ns`; a racy stamp is forgotten instead.
    pub(crate) fn record(&self, key: &str, stamp: Stamp, digest: Digest, now_ns: i64) {
        if stamp.is_racy(now_ns) {
            self.forget(key);
            return;
        }
        let entry = Entry { stamp, digest };
        let mut entries = self.entries();
        let unchanged = entries
            .known
            .get(key)
            .is_some_and(|old| old.stamp == stamp && old.digest == digest);
        if !unchanged {
            entries.known.insert(key.to_owned(), entry);
            entries.dirty.insert(key.to_owned(), Some(entry));
        }
    }

    pub(crate) fn forget(&self, key: &str) {
        let mut entries = self.entries();
        if entries.known.remove(key).is_some() {
            entries.dirty.insert(key.to_owned(), None);
        }
    }

    /// Writes pending changes in one transaction; nothing to do costs one mutex probe.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let dirty = {
            let mut entries = self.entries();
            if entries.dirty.is_empty() {
                return Ok(());
            }
            std::mem::take(&mut entries.dirty)
        };
        let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        let written = write(&mut db, &dirty);
        if written.is_err() {
            // Keep the changes for the next flush, unless something newer replaced them.
            let mut entries = self.entries();
            for (key, change) in dirty {
                entries.dirty.entry(key).or_insert(change);
            }
        }
        written
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn write(db: &mut Connection, dirty: &HashMap<String, Option<Entry>>) -> Result<(), StoreError> {
    let tx = db.transaction()?;
    {
        let mut upsert = tx.prepare_cached(
            "INSERT OR REPLACE INTO stat (path, size, mtime_ns, ctime_ns, inode, digest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM stat WHERE path = ?1")?;
        for (key, change) in dirty {
            match change {
                Some(Entry { stamp, digest }) => {
                    upsert.execute(params![
                        key,
                        stamp.size as i64,
                        stamp.mtime_ns,
                        stamp.ctime_ns,
                        stamp.inode as i64,
                        &digest.as_bytes()[..],
                    ])?;
                }
                None => {
                    delete.execute([key])?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

impl Drop for StatCache {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn stamp(mtime_ns: i64) -> Stamp {
        Stamp {
            size: 3,
            mtime_ns,
            ctime_ns: mtime_ns,
            inode: 7,
        }
    }

    #[test]
    fn racy_rule() {
        let now = 1_000_000_000_000;
        let check = |mtime_ns: i64, racy: bool| {
            assert_eq!(stamp(mtime_ns).is_racy(now), racy, "mtime {mtime_ns}");
        };
        check(now + 1, true);
        check(now, true);
        check(now - RACY_NS + 1, true);
        check(now - RACY_NS, false);
        check(now - 1_000_000_000, false);
        check(-5, false);
    }

    #[test]
    fn remembers_only_unchanged_non_racy_stamps_and_persists_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let now = now_ns();
        let old = now - 10 * RACY_NS;
        let d = Digest::of_bytes(b"abc");
        {
            let cache = StatCache::open(&path).unwrap();
            cache.record("a", stamp(old), d, now);
            cache.record("racy", stamp(now - 1), d, now);
            assert_eq!(cache.get("a", &stamp(old)), Some(d));
            assert_eq!(cache.get("a", &stamp(old + 1)), None);
            assert_eq!(
                cache.get(
                    "a",
                    &Stamp {
                        inode: 8,
                        ..stamp(old)
                    }
                ),
                None
            );
            assert_eq!(
                cache.get(
                    "a",
                    &Stamp {
                        size: 4,
                        ..stamp(old)
                    }
                ),
                None
            );
            assert_eq!(
                cache.get(
                    "a",
                    &Stamp {
                        ctime_ns: 1,
                        ..stamp(old)
                    }
                ),
                None
            );
            assert_eq!(cache.get("racy", &stamp(now - 1)), None);
            cache.record("gone", stamp(old), d, now);
            cache.flush().unwrap();
            cache.forget("gone");
            cache.flush().unwrap();
            cache.flush().unwrap();
        }
        let cache = StatCache::open(&path).unwrap();
        assert_eq!(cache.get("a", &stamp(old)), Some(d));
        assert_eq!(cache.get("gone", &stamp(old)), None);
    }

    #[test]
    fn a_garbage_database_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        fs::write(&path, vec![0x5a; 8192]).unwrap();
        let cache = StatCache::open(&path).unwrap();
        assert_eq!(cache.get("a", &stamp(0)), None);
    }
}
