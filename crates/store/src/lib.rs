//! The sluice store: everything under a workspace's `.sluice/` directory.
//!
//! - content-addressed objects, `.sluice/objects/ab/cdef…`, named by the blake3 of their bytes;
//! - directories as Merkle trees: a tree object lists sorted (name, mode, digest, size) entries;
//! - stage records, `.sluice/records/ab/cdef….json`: cache key → output artifacts;
//! - a stat cache in SQLite, `.sluice/state.db`, so unchanged files are not hashed again;
//! - a temp directory, `.sluice/tmp`, where everything is written before it is renamed into place;
//! - the workspace lock, `.sluice/lock`.
//!
//! Architecture invariant: the store knows nothing about stages, workflows, YAML or scheduling.
//! Keys arrive as opaque digests and paths as workspace-relative paths; it never touches a
//! workspace path it was not given, and no `unsafe` code.

mod artifact;
mod db;
mod digest;
mod disk;
mod error;
mod gc;
mod lock;
mod materialise;
mod memo;
mod objects;
mod record;
mod stat_cache;
mod store;
mod tree;

pub use artifact::{Artifact, ArtifactKind};
pub use digest::{Digest, DigestParseError};
pub use error::StoreError;
pub use gc::GcReport;
pub use lock::WorkspaceLock;
pub use record::StageRecord;
pub use store::{HashStats, STORE_DIR, Store};
pub use tree::{EntryMode, Tree, TreeEntry};

#[cfg(all(test, unix))]
mod tests;
