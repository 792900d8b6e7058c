//! The object directory, `.sluice/objects/ab/cdef…`: immutable files named by the digest of their
//! bytes.
//!
//! An object is written under `.sluice/tmp`, made read-only (0444), then renamed into place, so no
//! half-written object ever carries a real name; writing one that exists is a no-op. This module
//! moves bytes; it must not hash them (the caller knows the digest) nor decide what is reachable.

use std::fs::{self, Metadata};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::digest::Digest;
use crate::disk::{fan_out_dirs, set_mode};
use crate::error::StoreError;
use crate::stat_cache::Stamp;

#[derive(Debug)]
pub(crate) struct Objects {
    root: PathBuf,
    tmp: PathBuf,
    /// `ab/` directories known to exist, so that installing an object costs no `mkdir`.
    made: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
}

impl Objects {
    pub(crate) fn new(root: PathBuf, tmp: PathBuf) -> Objects {
        Objects {
            root,
            tmp,
            made: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    pub(crate) fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join(&hex[..2]).join(&hex[2..])
    }

    pub(crate) fn contains(&self, digest: &Digest) -> bool {
        fs::symlink_metadata(self.path(digest)).is_ok_and(|meta| meta.is_file())
    }

    /// An object's bytes, unchecked.
    pub(crate) fn read(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.path(digest);
        fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::Missing { digest: *digest },
            _ => StoreError::io(path)(e),
        })
    }

    /// Stores `bytes` (which hash to `digest`) unless the object exists.
    pub(crate) fn put_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        if self.contains(digest) {
            return Ok(());
        }
        let mut tmp = self.temp_file()?;
        tmp.write_all(bytes).map_err(StoreError::io(tmp.path()))?;
        self.install(tmp, digest)
    }

    /// Stores the file at `src` (whose content hashes to `digest`, as of `src_meta`) unless the
    /// object exists, by a copy or, with `link`, by a hard link. Returns the new object's
    /// metadata, whose mtime is the source's so that its stamp is not racy, and whether it was
    /// linked. `shown` names the source in errors.
    ///
    /// A linked object is `src` itself: no byte is copied, and as the object is read-only like
    /// every object, `src` becomes read-only too. A write to it after a `chmod` changes the
    /// object's stamp, so the object is found corrupt when it is next checked, never used as it
    /// is. Where no hard link can stand (another file system, a symbolic link, an executable,
    /// whose mode the object cannot keep) the file is copied.
    pub(crate) fn put_file(
        &self,
        digest: &Digest,
        src: &Path,
        src_meta: &Metadata,
        shown: &Path,
        link: bool,
    ) -> Result<Option<(Metadata, bool)>, StoreError> {
        if self.contains(digest) {
            return Ok(None);
        }
        let linked = if link {
            self.link_in(src, src_meta, shown)?
        } else {
            None
        };
        let is_link = linked.is_some();
        match linked {
            Some(tmp) => self.install(tmp, digest)?,
            None => self.install(self.copy_in(src, src_meta, shown)?, digest)?,
        }
        let path = self.path(digest);
        let meta = fs::metadata(&path).map_err(StoreError::io(path))?;
        Ok(Some((meta, is_link)))
    }

    /// A copy of `src` in a temp file, with its mtime.
    fn copy_in(
        &self,
        src: &Path,
        src_meta: &Metadata,
        shown: &Path,
    ) -> Result<NamedTempFile, StoreError> {
        let mut tmp = self.temp_file()?;
        // `io::copy` between two files uses copy_file_range (or a reflink) where it can: the bytes
        // need not pass through this process, and the hash was taken already. Copying into the
        // open temp file (rather than `fs::copy`, which reopens it with O_TRUNC) spares ext4 the
        // forced writeback it does when a truncated file is closed.
        let mut from = fs::File::open(src).map_err(StoreError::io(src))?;
        io::copy(&mut from, tmp.as_file_mut()).map_err(StoreError::io(src))?;
        let after = fs::metadata(src).map_err(StoreError::io(src))?;
        if Stamp::of(&after) != Stamp::of(src_meta) {
            return Err(StoreError::Changed {
                path: shown.to_path_buf(),
            });
        }
        let mtime = src_meta.modified().map_err(StoreError::io(src))?;
        tmp.as_file()
            .set_modified(mtime)
            .map_err(StoreError::io(tmp.path()))?;
        Ok(tmp)
    }

    /// A hard link to `src` in a temp name, or `None` where none can stand (see
    /// [`Objects::put_file`]).
    fn link_in(
        &self,
        src: &Path,
        src_meta: &Metadata,
        shown: &Path,
    ) -> Result<Option<NamedTempFile<()>>, StoreError> {
        if crate::disk::is_executable(src_meta) {
            return Ok(None);
        }
        let linked = tempfile::Builder::new().make_in(&self.tmp, |path| fs::hard_link(src, path));
        let Ok(tmp) = linked else {
            return Ok(None);
        };
        let meta = fs::symlink_metadata(tmp.path()).map_err(StoreError::io(tmp.path()))?;
        if !meta.is_file() || !same_file(&meta, src_meta) {
            // A symbolic link was linked rather than its target (dropping `tmp` removes it).
            return Ok(None);
        }
        // The link changed the inode's ctime, nothing else: a new size or mtime is a write since
        // the hash was taken.
        let (now, then) = (Stamp::of(&meta), Stamp::of(src_meta));
        if (now.size, now.mtime_ns) != (then.size, then.mtime_ns) {
            return Err(StoreError::Changed {
                path: shown.to_path_buf(),
            });
        }
        Ok(Some(tmp))
    }

    /// Deletes an object, returning its size, or `None` when it was not there.
    pub(crate) fn remove(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let path = self.path(digest);
        let size = match fs::symlink_metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(path)(e)),
        };
        #[cfg(not(unix))]
        set_mode(&path, 0o644)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(Some(size)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(path)(e)),
        }
    }

    /// Every object present with its size; stray files that are not named like objects are left out.
    pub(crate) fn list(&self) -> Result<Vec<(Digest, u64)>, StoreError> {
        let mut out = Vec::new();
        for (prefix, dir) in fan_out_dirs(&self.root)? {
            for entry in fs::read_dir(&dir).map_err(StoreError::io(&dir))? {
                let entry = entry.map_err(StoreError::io(&dir))?;
                let Some(rest) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let Ok(digest) = format!("{prefix}{rest}").parse() else {
                    continue;
                };
                let meta = entry.metadata().map_err(StoreError::io(entry.path()))?;
                if meta.is_file() {
                    out.push((digest, meta.len()));
                }
            }
        }
        Ok(out)
    }

    /// Removes the `ab/` directories left empty (after a collection).
    pub(crate) fn prune_empty_dirs(&self) -> Result<(), StoreError> {
        self.made.lock().unwrap_or_else(|e| e.into_inner()).clear();
        for (_, dir) in fan_out_dirs(&self.root)? {
            // Fails, harmlessly, on a directory that still holds objects.
            let _ = fs::remove_dir(&dir);
        }
        Ok(())
    }

    fn temp_file(&self) -> Result<NamedTempFile, StoreError> {
        NamedTempFile::new_in(&self.tmp).map_err(StoreError::io(&self.tmp))
    }

    fn install<F>(&self, tmp: NamedTempFile<F>, digest: &Digest) -> Result<(), StoreError> {
        set_mode(tmp.path(), 0o444)?;
        let path = self.path(digest);
        let parent = path.parent().unwrap_or(&self.root);
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if !made.contains(parent) {
            fs::create_dir_all(parent).map_err(StoreError::io(parent))?;
            made.insert(parent.to_path_buf());
        }
        drop(made);
        // Another writer may have installed the same object meanwhile: same bytes, either wins.
        tmp.persist(&path)
            .map_err(|e| StoreError::io(&path)(e.error))?;
        Ok(())
    }
}

/// Whether two metadata describe the same file (device and inode).
#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

/// Without inode numbers, a link is never trusted to be the file: the caller copies.
#[cfg(not(unix))]
fn same_file(_: &Metadata, _: &Metadata) -> bool {
    false
}
