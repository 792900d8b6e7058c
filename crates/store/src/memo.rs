//! Memos: results of pure, expensive computations (parsing a large workflow or lockfile) kept by
//! the blake3 of their inputs, in the `memo` table of `.sluice/state.db`. A memo is only a cache:
//! a missing or unreadable one is recomputed, and `gc` empties the table.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};

use crate::digest::Digest;
use crate::error::StoreError;

pub(crate) struct Memo {
    db: Arc<Mutex<Connection>>,
}

impl Memo {
    pub(crate) fn new(db: Arc<Mutex<Connection>>) -> Result<Memo, StoreError> {
        db.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS memo (
                     key BLOB PRIMARY KEY NOT NULL,
                     value BLOB NOT NULL
                 ) WITHOUT ROWID;",
            )?;
        Ok(Memo { db })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db()
            .prepare_cached("SELECT value FROM memo WHERE key = ?1")?
            .query_row(params![&key.as_bytes()[..]], |row| row.get(0))
            .optional()?)
    }

    pub(crate) fn put(&self, key: &Digest, value: &[u8]) -> Result<(), StoreError> {
        self.db()
            .prepare_cached("INSERT OR REPLACE INTO memo (key, value) VALUES (?1, ?2)")?
            .execute(params![&key.as_bytes()[..], value])?;
        Ok(())
    }

    /// Forgets every memo; returns how many there were.
    pub(crate) fn clear(&self) -> Result<u64, StoreError> {
        Ok(self.db().execute("DELETE FROM memo", [])? as u64)
    }
}
