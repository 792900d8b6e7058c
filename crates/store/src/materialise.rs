//! [`Store::materialise`]: writing an artifact from the object store back to a workspace path.
//!
//! The new content is built under a hidden name beside the destination and swapped in only when
//! complete, with every object checked against its digest on the way (through the stat cache, so an
//! unchanged object is not re-read). A missing or corrupt object is an error that leaves the
//! destination as it was. Modes come from the tree: 0755 for executables, 0644 for other files.
//! It must not write anywhere but the one workspace path it is given (and that path's parents).

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use crate::artifact::{Artifact, ArtifactKind};
use crate::digest::Digest;
use crate::disk::{replace, set_mode};
use crate::error::StoreError;
use crate::stat_cache::now_ns;
use crate::store::{Store, workspace_key};
use crate::tree::EntryMode;

impl Store {
    /// Writes the artifact at workspace path `rel`, replacing whatever is there (file or
    /// directory). Parent directories are created.
    pub fn materialise(&self, artifact: &Artifact, rel: &Path) -> Result<(), StoreError> {
        let dest = self.workspace().join(workspace_key(rel)?);
        let parent = dest.parent().unwrap_or(self.workspace());
        fs::create_dir_all(parent).map_err(StoreError::io(parent))?;
        let name = dest.file_name().unwrap_or_default().to_string_lossy();
        let prefix = format!(".{name}.sluice-new-");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        let now = now_ns();
        let mut checked = HashSet::new();
        match artifact.kind {
            ArtifactKind::File => {
                let tmp = builder
                    .tempfile_in(parent)
                    .map_err(StoreError::io(parent))?
                    .into_temp_path();
                self.copy_object(&artifact.digest, &tmp, 0o644, now, &mut checked)?;
                replace(&tmp, &dest)?;
                // Already renamed: there is nothing left for the guard to delete.
                let _ = tmp.keep();
            }
            ArtifactKind::Dir => {
                let tmp = builder.tempdir_in(parent).map_err(StoreError::io(parent))?;
                self.write_tree(&artifact.digest, tmp.path(), now, &mut checked)?;
                set_mode(tmp.path(), 0o755)?;
                replace(tmp.path(), &dest)?;
                let _ = tmp.keep();
            }
        }
        Ok(())
    }

    fn write_tree(
        &self,
        digest: &Digest,
        dir: &Path,
        now: i64,
        checked: &mut HashSet<Digest>,
    ) -> Result<(), StoreError> {
        for entry in self.read_tree(digest)?.entries() {
            let path = dir.join(&entry.name);
            match entry.mode {
                EntryMode::Dir => {
                    fs::create_dir(&path).map_err(StoreError::io(&path))?;
                    self.write_tree(&entry.digest, &path, now, checked)?;
                }
                EntryMode::File => self.copy_object(&entry.digest, &path, 0o644, now, checked)?,
                EntryMode::Exec => self.copy_object(&entry.digest, &path, 0o755, now, checked)?,
            }
        }
        Ok(())
    }

    /// Copies a file object to `dest` (replacing a file there) with `mode`, checking the object
    /// first unless `checked` says it was checked already.
    fn copy_object(
        &self,
        digest: &Digest,
        dest: &Path,
        mode: u32,
        now: i64,
        checked: &mut HashSet<Digest>,
    ) -> Result<(), StoreError> {
        if !checked.contains(digest) {
            self.verify_file_object(digest, now)?;
            checked.insert(*digest);
        }
        let object = self.objects.path(digest);
        fs::copy(&object, dest).map_err(StoreError::io(&object))?;
        set_mode(dest, mode)
    }
}
