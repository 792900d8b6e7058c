//! [`Store`]: the `.sluice` directory of one workspace, tying together objects, trees, records, the
//! stat cache and the lock.
//!
//! It answers "what is the digest of this workspace path" (hashing only what the stat cache cannot
//! vouch for), copies paths into the object store, checks objects, and keeps stage records. It knows
//! nothing of stages, workflows or scheduling, and it only ever touches workspace paths it is given.
//! Every method is blocking and safe to call from many threads at once.

use std::collections::HashSet;
use std::fs::{self, Metadata};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::artifact::{Artifact, ArtifactKind};
use crate::digest::Digest;
use crate::disk::{is_executable, remove_any};
use crate::error::StoreError;
use crate::lock::WorkspaceLock;
use crate::memo::Memo;
use crate::objects::Objects;
use crate::record::{Records, StageRecord};
use crate::stat_cache::{Stamp, StatCache, now_ns};
use crate::tree::{EntryMode, Tree, TreeEntry};

/// The directory, under the workspace root, that the store owns.
pub const STORE_DIR: &str = ".sluice";

/// What this process has hashed for real (stat cache misses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HashStats {
    pub files: u64,
    pub bytes: u64,
}

pub struct Store {
    workspace: PathBuf,
    dir: PathBuf,
    tmp: PathBuf,
    pub(crate) objects: Objects,
    pub(crate) records: Records,
    pub(crate) memo: Memo,
    pub(crate) stat: StatCache,
    hashed_files: AtomicU64,
    hashed_bytes: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store at `<workspace>/.sluice`.
    pub fn open(workspace: &Path) -> Result<Store, StoreError> {
        let workspace = std::path::absolute(workspace).map_err(StoreError::io(workspace))?;
        match fs::metadata(&workspace) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::io(&workspace)(
                    io::ErrorKind::NotADirectory.into(),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { path: workspace });
            }
            Err(e) => return Err(StoreError::io(workspace)(e)),
        }
        let dir = workspace.join(STORE_DIR);
        let objects = dir.join("objects");
        let tmp = dir.join("tmp");
        for path in [&dir, &objects, &tmp] {
            fs::create_dir_all(path).map_err(StoreError::io(path))?;
        }
        let stat = StatCache::open(&dir.join("state.db"))?;
        let db = crate::db::open(&dir.join("state.db"))?;
        Ok(Store {
            objects: Objects::new(objects, tmp.clone()),
            records: Records::new(db.clone())?,
            memo: Memo::new(db)?,
            stat,
            workspace,
            dir,
            tmp,
            hashed_files: AtomicU64::new(0),
            hashed_bytes: AtomicU64::new(0),
        })
    }

    /// The workspace root, absolute.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// The `.sluice` directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Digest of a workspace path (a file, or a directory as a Merkle tree), answered from the stat
    /// cache for every file whose (size, mtime, ctime, inode) is unchanged. Symbolic links are
    /// followed. `rel` is relative to the workspace root.
    pub fn hash_path(&self, rel: &Path) -> Result<Artifact, StoreError> {
        self.walk(rel, Put::No)
    }

    /// Like [`Store::hash_path`], and also copies every file and tree into the object store.
    pub fn put_path(&self, rel: &Path) -> Result<Artifact, StoreError> {
        self.walk(rel, Put::Copy)
    }

    /// Like [`Store::put_path`], but a file the store lacks becomes an object by a hard link
    /// rather than a copy, and so read-only in the workspace too (see `Objects::put_file`). For
    /// the files sluice writes itself, which nothing else should write again; a file the store
    /// already has is left as it is.
    pub fn put_path_linked(&self, rel: &Path) -> Result<Artifact, StoreError> {
        self.walk(rel, Put::Link)
    }

    /// True when the artifact's object (and for a tree, every object under it) is present. Contents
    /// are not checked: see [`Store::verify`].
    pub fn contains(&self, artifact: &Artifact) -> bool {
        match artifact.kind {
            ArtifactKind::File => self.objects.contains(&artifact.digest),
            ArtifactKind::Dir => self.contains_tree(&artifact.digest, &mut HashSet::new()),
        }
    }

    /// Checks every object of the artifact against its digest, hashing only objects the stat cache
    /// cannot vouch for. The error names the first missing or corrupt object.
    pub fn verify(&self, artifact: &Artifact) -> Result<(), StoreError> {
        let now = now_ns();
        match artifact.kind {
            ArtifactKind::File => self.verify_file_object(&artifact.digest, now),
            ArtifactKind::Dir => self.verify_tree(&artifact.digest, now, &mut HashSet::new()),
        }
    }

    /// Removes an object (after corruption is found, so that it can be rebuilt). Absent is fine.
    pub fn remove_object(&self, digest: &Digest) -> Result<(), StoreError> {
        self.objects.remove(digest)?;
        self.stat.forget(&object_key(digest));
        Ok(())
    }

    /// The record stored under a stage key; an unreadable one is deleted and reads as `None`.
    pub fn record(&self, key: &Digest) -> Result<Option<StageRecord>, StoreError> {
        self.records.read(key)
    }

    /// Stores a record atomically, replacing any under the same key.
    pub fn put_record(&self, key: &Digest, record: &StageRecord) -> Result<(), StoreError> {
        self.records.write(key, record)
    }

    pub fn remove_record(&self, key: &Digest) -> Result<(), StoreError> {
        self.records.remove(key)
    }

    /// A memo: the stored result of a pure computation whose inputs hash to `key`.
    pub fn memo(&self, key: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        self.memo.get(key)
    }

    /// Stores a memo (see [`Store::memo`]).
    pub fn put_memo(&self, key: &Digest, value: &[u8]) -> Result<(), StoreError> {
        self.memo.put(key, value)
    }

    /// Persists new stat-cache entries. Cheap when nothing changed; also done on drop.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.stat.flush()
    }

    /// Files hashed for real by this store so far, and their bytes.
    pub fn hash_stats(&self) -> HashStats {
        HashStats {
            files: self.hashed_files.load(Ordering::Relaxed),
            bytes: self.hashed_bytes.load(Ordering::Relaxed),
        }
    }

    /// Takes the exclusive workspace lock (`.sluice/lock`). If another process holds it, calls
    /// `on_wait` once with its pid (when known) and then blocks until it is free. Released on drop.
    pub fn lock(&self, on_wait: impl FnOnce(Option<u32>)) -> Result<WorkspaceLock, StoreError> {
        WorkspaceLock::acquire(&self.dir.join("lock"), on_wait)
    }

    /// Deletes leftovers in `.sluice/tmp` from interrupted runs. Call while holding the lock: files
    /// being written by a live process are removed too.
    pub fn clean_tmp(&self) -> Result<(), StoreError> {
        let entries = match fs::read_dir(&self.tmp) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(&self.tmp)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(StoreError::io(&self.tmp))?;
            remove_any(&entry.path())?;
        }
        Ok(())
    }

    /// Counts a real hash.
    fn hashed(&self, bytes: u64) {
        self.hashed_files.fetch_add(1, Ordering::Relaxed);
        self.hashed_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn walk(&self, rel: &Path, put: Put) -> Result<Artifact, StoreError> {
        let key = workspace_key(rel)?;
        let abs = self.workspace.join(&key);
        let meta = match fs::metadata(&abs) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(if fs::symlink_metadata(&abs).is_ok() {
                    StoreError::BrokenSymlink { path: key.into() }
                } else {
                    StoreError::NotFound {
                        path: rel.to_path_buf(),
                    }
                });
            }
            Err(e) => return Err(StoreError::io(abs)(e)),
        };
        let mut walk = Walk {
            store: self,
            put,
            // Taken before any stat, so that every stamp seen later is judged against an earlier
            // "now": a mtime that could still be shared by a later write is always deemed racy.
            now: now_ns(),
            ancestors: Vec::new(),
        };
        let (mode, digest, size) = walk.node(&abs, &key, &meta)?;
        let kind = match mode {
            EntryMode::Dir => ArtifactKind::Dir,
            EntryMode::File | EntryMode::Exec => ArtifactKind::File,
        };
        Ok(Artifact { kind, digest, size })
    }

    /// Checks a file object, by its stamp when the stat cache knows it, else by hashing it.
    pub(crate) fn verify_file_object(&self, digest: &Digest, now: i64) -> Result<(), StoreError> {
        let path = self.objects.path(digest);
        let key = object_key(digest);
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing { digest: *digest });
            }
            Err(e) => return Err(StoreError::io(path)(e)),
        };
        let stamp = Stamp::of(&meta);
        if self.stat.get(&key, &stamp) == Some(*digest) {
            return Ok(());
        }
        let (actual, len) = Digest::of_file(&path).map_err(StoreError::io(&path))?;
        self.hashed(len);
        if actual != *digest {
            self.stat.forget(&key);
            return Err(StoreError::Corrupt {
                digest: *digest,
                path: key.into(),
            });
        }
        self.stat.record(&key, stamp, actual, now);
        Ok(())
    }

    /// Reads a tree object, checking its bytes against its digest.
    pub(crate) fn read_tree(&self, digest: &Digest) -> Result<Tree, StoreError> {
        let bytes = self.objects.read(digest)?;
        if Digest::of_bytes(&bytes) != *digest {
            return Err(StoreError::Corrupt {
                digest: *digest,
                path: object_key(digest).into(),
            });
        }
        Tree::decode(&bytes).map_err(|reason| StoreError::NotATree {
            digest: *digest,
            reason,
        })
    }

    /// Walks a tree's objects, leaving out those already in `seen` (as (digest, is a tree)).
    fn verify_tree(
        &self,
        digest: &Digest,
        now: i64,
        seen: &mut HashSet<(Digest, bool)>,
    ) -> Result<(), StoreError> {
        if !seen.insert((*digest, true)) {
            return Ok(());
        }
        for entry in self.read_tree(digest)?.entries() {
            match entry.mode {
                EntryMode::Dir => self.verify_tree(&entry.digest, now, seen)?,
                EntryMode::File | EntryMode::Exec => {
                    if seen.insert((entry.digest, false)) {
                        self.verify_file_object(&entry.digest, now)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn contains_tree(&self, digest: &Digest, seen: &mut HashSet<Digest>) -> bool {
        if !seen.insert(*digest) {
            return true;
        }
        let Ok(Ok(tree)) = self.objects.read(digest).map(|bytes| Tree::decode(&bytes)) else {
            return false;
        };
        tree.entries().iter().all(|entry| match entry.mode {
            EntryMode::Dir => self.contains_tree(&entry.digest, seen),
            EntryMode::File | EntryMode::Exec => self.objects.contains(&entry.digest),
        })
    }
}

/// The stat-cache key of an object file: its path relative to the workspace.
pub(crate) fn object_key(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{STORE_DIR}/objects/{}/{}", &hex[..2], &hex[2..])
}

/// The canonical `/`-separated form of a workspace-relative path; refuses absolute paths, `..`,
/// the empty path, non-UTF-8 names and anything under `.sluice`.
pub(crate) fn workspace_key(rel: &Path) -> Result<String, StoreError> {
    let invalid = |reason| StoreError::InvalidPath {
        path: rel.to_path_buf(),
        reason,
    };
    let mut parts = Vec::new();
    for component in rel.components() {
        match component {
            Component::Normal(part) => {
                parts.push(
                    part.to_str()
                        .ok_or_else(|| invalid("it is not valid UTF-8"))?,
                );
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(invalid("it leads out of the workspace")),
            Component::RootDir | Component::Prefix(_) => return Err(invalid("it is absolute")),
        }
    }
    match parts.first() {
        None => Err(invalid("it names the workspace root itself")),
        Some(&STORE_DIR) => Err(invalid("it is inside .sluice, which sluice manages")),
        Some(_) => Ok(parts.join("/")),
    }
}

/// Whether a walk stores what it hashes, and how.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Put {
    No,
    Copy,
    Link,
}

/// One hash_path or put_path traversal.
struct Walk<'a> {
    store: &'a Store,
    put: Put,
    now: i64,
    /// (device, inode) of the directories being walked, to catch symbolic link loops.
    ancestors: Vec<(u64, u64)>,
}

impl Walk<'_> {
    fn node(
        &mut self,
        abs: &Path,
        key: &str,
        meta: &Metadata,
    ) -> Result<(EntryMode, Digest, u64), StoreError> {
        if meta.is_dir() {
            let (digest, size) = self.dir(abs, key, meta)?;
            Ok((EntryMode::Dir, digest, size))
        } else if meta.is_file() {
            let (digest, size) = self.file(abs, key, meta)?;
            let mode = if is_executable(meta) {
                EntryMode::Exec
            } else {
                EntryMode::File
            };
            Ok((mode, digest, size))
        } else {
            Err(StoreError::Unsupported { path: key.into() })
        }
    }

    fn file(
        &mut self,
        abs: &Path,
        key: &str,
        meta: &Metadata,
    ) -> Result<(Digest, u64), StoreError> {
        let store = self.store;
        let stamp = Stamp::of(meta);
        let (digest, size) = match store.stat.get(key, &stamp) {
            Some(digest) => (digest, stamp.size),
            None => {
                let (digest, len) = Digest::of_file(abs).map_err(StoreError::io(abs))?;
                store.hashed(len);
                store.stat.record(key, stamp, digest, self.now);
                (digest, len)
            }
        };
        let stored = match self.put {
            Put::No => None,
            Put::Copy | Put::Link => {
                let link = self.put == Put::Link;
                store
                    .objects
                    .put_file(&digest, abs, meta, Path::new(key), link)?
            }
        };
        if let Some((object, linked)) = stored {
            let stamp = Stamp::of(&object);
            store
                .stat
                .record(&object_key(&digest), stamp, digest, self.now);
            if linked {
                // The file is the object, whose link and read-only mode changed its ctime.
                store.stat.record(key, stamp, digest, self.now);
            }
        }
        Ok((digest, size))
    }

    fn dir(&mut self, abs: &Path, key: &str, meta: &Metadata) -> Result<(Digest, u64), StoreError> {
        let id = dir_id(meta);
        if id.is_some_and(|id| self.ancestors.contains(&id)) {
            return Err(StoreError::SymlinkLoop { path: key.into() });
        }
        self.ancestors.extend(id);
        let entries = self.entries(abs, key);
        if id.is_some() {
            self.ancestors.pop();
        }
        // Names read from a directory are never empty, `.`, `..`, nor hold `/` or NUL.
        let tree = Tree::new(entries?).map_err(|_| StoreError::InvalidPath {
            path: key.into(),
            reason: "it holds a name that cannot be stored",
        })?;
        let bytes = tree.encode();
        let digest = Digest::of_bytes(&bytes);
        if self.put != Put::No {
            self.store.objects.put_bytes(&digest, &bytes)?;
        }
        Ok((digest, tree.size()))
    }

    fn entries(&mut self, abs: &Path, key: &str) -> Result<Vec<TreeEntry>, StoreError> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(abs).map_err(StoreError::io(abs))? {
            let entry = entry.map_err(StoreError::io(abs))?;
            let name = entry.file_name();
            let child_key = format!("{key}/{}", name.to_string_lossy());
            let name = name.to_str().ok_or_else(|| StoreError::InvalidPath {
                path: child_key.clone().into(),
                reason: "its name is not valid UTF-8",
            })?;
            let child = entry.path();
            let file_type = entry.file_type().map_err(StoreError::io(&child))?;
            let meta = if file_type.is_symlink() {
                fs::metadata(&child).map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => StoreError::BrokenSymlink {
                        path: child_key.clone().into(),
                    },
                    _ => StoreError::io(&child)(e),
                })?
            } else {
                entry.metadata().map_err(StoreError::io(&child))?
            };
            let (mode, digest, size) = self.node(&child, &child_key, &meta)?;
            entries.push(TreeEntry {
                name: name.to_owned(),
                mode,
                digest,
                size,
            });
        }
        Ok(entries)
    }
}

#[cfg(unix)]
fn dir_id(meta: &Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn dir_id(_: &Metadata) -> Option<(u64, u64)> {
    None
}
