//! [`WorkspaceLock`]: the exclusive lock on `.sluice/lock` that one sluice process holds while it
//! changes the workspace.
//!
//! It is an OS file lock (`File::lock`), so it dies with its process and never needs cleaning up. The
//! holder writes its pid into the file so that a waiting process can say whom it waits for. This
//! module must not decide what the lock protects.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::StoreError;

/// Held until dropped.
#[derive(Debug)]
pub struct WorkspaceLock {
    file: File,
    path: PathBuf,
    crashed: Option<u32>,
}

impl WorkspaceLock {
    /// Takes the lock at `path`; if another process (or another open of the file) holds it, calls
    /// `on_wait` once with the holder's pid when known, then blocks until the lock is free.
    pub(crate) fn acquire(
        path: &Path,
        on_wait: impl FnOnce(Option<u32>),
    ) -> Result<WorkspaceLock, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(StoreError::io(path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                on_wait(holder(path));
                file.lock().map_err(StoreError::io(path))?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io(path)(e)),
        }
        // A holder clears its pid when it lets go; a pid still there means it died holding it.
        let crashed = fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .filter(|pid| *pid != std::process::id());
        let mut writer = &file;
        writer
            .set_len(0)
            .and_then(|()| writer.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(writer, "{}", std::process::id()))
            .map_err(StoreError::io(path))?;
        Ok(WorkspaceLock {
            file,
            path: path.to_path_buf(),
            crashed,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid of a previous holder that died without letting go (killed, crashed), if any.
    pub fn crashed_holder(&self) -> Option<u32> {
        self.crashed
    }
}

/// The pid written by the current holder, if it has written one yet.
fn holder(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Drop for WorkspaceLock {
    fn drop(&mut self) {
        // Clear our pid before letting go, so that no one is told to wait for a finished process.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}
