//! [`Store::gc`]: deleting objects and records that nothing live refers to.
//!
//! Reachability is computed from the artifacts and record keys the caller says are live, walking
//! trees; the store itself keeps no reference counts. Call it while holding the workspace lock, as a
//! concurrent run could otherwise lose objects it is about to use. It must never touch the
//! workspace itself, only `.sluice`.

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;

use crate::artifact::{Artifact, ArtifactKind};
use crate::digest::Digest;
use crate::error::StoreError;
use crate::store::{Store, object_key};
use crate::tree::{EntryMode, Tree};

/// What a collection removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub objects_removed: u64,
    pub bytes_freed: u64,
    pub records_removed: u64,
}

impl Store {
    /// Removes every object not reachable from `live` (walking trees) and every record whose key is
    /// not in `live_keys`.
    pub fn gc(
        &self,
        live: &[Artifact],
        live_keys: &BTreeSet<Digest>,
    ) -> Result<GcReport, StoreError> {
        let mut reachable = HashSet::new();
        let mut walked = HashSet::new();
        for artifact in live {
            match artifact.kind {
                ArtifactKind::File => {
                    reachable.insert(artifact.digest);
                }
                ArtifactKind::Dir => self.mark_tree(&artifact.digest, &mut reachable, &mut walked),
            }
        }

        let mut report = GcReport::default();
        for (digest, _) in self.objects.list()? {
            if reachable.contains(&digest) {
                continue;
            }
            if let Some(size) = self.objects.remove(&digest)? {
                report.objects_removed += 1;
                report.bytes_freed += size;
            }
            self.stat.forget(&object_key(&digest));
        }
        self.objects.prune_empty_dirs()?;

        for key in self.records.list()? {
            if !live_keys.contains(&key) {
                self.records.remove(&key)?;
                report.records_removed += 1;
            }
        }
        self.memo.clear()?;
        self.stat.flush()?;
        Ok(report)
    }

    /// Marks a tree and everything under it. A missing or unreadable tree keeps only itself: what it
    /// would have referred to cannot be known.
    fn mark_tree(
        &self,
        digest: &Digest,
        reachable: &mut HashSet<Digest>,
        walked: &mut HashSet<Digest>,
    ) {
        reachable.insert(*digest);
        if !walked.insert(*digest) {
            return;
        }
        let Ok(Ok(tree)) = self.objects.read(digest).map(|bytes| Tree::decode(&bytes)) else {
            return;
        };
        for entry in tree.entries() {
            match entry.mode {
                EntryMode::Dir => self.mark_tree(&entry.digest, reachable, walked),
                EntryMode::File | EntryMode::Exec => {
                    reachable.insert(entry.digest);
                }
            }
        }
    }
}
