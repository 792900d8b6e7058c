//! The one error type of the store, [`StoreError`].
//!
//! Messages speak of workspace paths and short digests, the terms a user sees; they are lowercase
//! and carry no trailing period. This module must not grow recovery logic: it only names failures.

use std::path::PathBuf;

use crate::digest::Digest;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The workspace path does not exist.
    #[error("`{}` does not exist", path.display())]
    NotFound { path: PathBuf },

    /// A workspace path that the store refuses to touch: absolute, escaping the workspace, inside
    /// `.sluice`, empty, or not valid UTF-8.
    #[error("invalid workspace path `{}`: {reason}", path.display())]
    InvalidPath { path: PathBuf, reason: &'static str },

    /// A symbolic link (followed while hashing) whose target does not exist.
    #[error("`{}` is a symbolic link to a path that does not exist", path.display())]
    BrokenSymlink { path: PathBuf },

    /// A symbolic link that leads back into one of its own parent directories.
    #[error("`{}` is a symbolic link that loops back into its own parent directory", path.display())]
    SymlinkLoop { path: PathBuf },

    /// A socket, FIFO or device: only files and directories can be stored.
    #[error("`{}` is neither a file nor a directory", path.display())]
    Unsupported { path: PathBuf },

    /// A file changed while it was being copied into the store.
    #[error("`{}` changed while it was being stored; nothing was stored for it", path.display())]
    Changed { path: PathBuf },

    /// An object whose bytes do not hash to its digest. `path` is relative to the workspace.
    #[error(
        "object {} is corrupt: its content does not match its digest ({})",
        digest.short(),
        path.display()
    )]
    Corrupt { digest: Digest, path: PathBuf },

    /// An object that the store should hold and does not.
    #[error("object {} is missing from the store", digest.short())]
    Missing { digest: Digest },

    /// An object that was expected to be a directory tree and cannot be read as one.
    #[error("object {} is not a directory tree: {reason}", digest.short())]
    NotATree { digest: Digest, reason: String },

    #[error("cannot access `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("stat cache database error")]
    Db(#[from] rusqlite::Error),

    /// A stage record that cannot be encoded. (One that cannot be decoded reads as absent.)
    #[error("cannot write stage record `{}`", path.display())]
    BadRecord {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    /// A closure for `map_err` that wraps an io error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}
