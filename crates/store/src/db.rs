//! The connection to `.sluice/state.db` that the records and memo tables share (the stat cache
//! keeps its own). WAL mode, a busy timeout for concurrent readers, and `synchronous = NORMAL`:
//! a committed transaction survives a crash of the process, and the database is never corrupted.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use crate::error::StoreError;

pub(crate) fn open(path: &Path) -> Result<Arc<Mutex<Connection>>, StoreError> {
    let db = Connection::open(path)?;
    db.busy_timeout(Duration::from_secs(10))?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(Arc::new(Mutex::new(db)))
}
