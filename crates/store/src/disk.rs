//! The few file-system moves the store makes beyond `std::fs`: removing what may already be gone,
//! listing the `ab/` fan-out directories, setting permission bits, and swapping a freshly built path
//! into place. Nothing here knows about digests or the layout of `.sluice`.

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::StoreError;

/// Removes a file; one that is already gone is fine.
pub(crate) fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io(path)(e)),
        _ => Ok(()),
    }
}

/// Removes a file or a whole directory; one that is already gone is fine.
pub(crate) fn remove_any(path: &Path) -> Result<(), StoreError> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io(path)(e)),
        _ => Ok(()),
    }
}

/// The `ab/` directories under an objects or records root, with their two-character names.
pub(crate) fn fan_out_dirs(root: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::io(root)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(StoreError::io(root))?;
        let is_dir = entry
            .file_type()
            .map_err(StoreError::io(entry.path()))?
            .is_dir();
        match entry.file_name().to_str() {
            Some(name) if is_dir && name.len() == 2 => out.push((name.to_owned(), entry.path())),
            _ => {}
        }
    }
    Ok(out)
}

/// Whether a file has any executable bit set.
pub(crate) fn is_executable(meta: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

/// Sets a file's permission bits (on other systems, only whether it is read-only).
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    #[cfg(unix)]
    let permissions = {
        use std::os::unix::fs::PermissionsExt;
        fs::Permissions::from_mode(mode)
    };
    #[cfg(not(unix))]
    let permissions = {
        let mut permissions = fs::metadata(path)
            .map_err(StoreError::io(path))?
            .permissions();
        permissions.set_readonly(mode & 0o200 == 0);
        permissions
    };
    fs::set_permissions(path, permissions).map_err(StoreError::io(path))
}

/// A name beside `path` that nothing uses yet, starting with a dot so that it stays out of sight.
pub(crate) fn sibling_name(path: &Path, tag: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let candidate =
            path.with_file_name(format!(".{name}.sluice-{tag}-{}-{n}", std::process::id()));
        if fs::symlink_metadata(&candidate).is_err() {
            return candidate;
        }
    }
}

/// Moves `new` to `dest`, replacing whatever `dest` is. A file replaces a file in one rename; a
/// directory (or a change of kind) moves the old entry aside first, so `dest` only ever holds the old
/// content, nothing, or the new content.
pub(crate) fn replace(new: &Path, dest: &Path) -> Result<(), StoreError> {
    let new_is_dir = fs::symlink_metadata(new)
        .map_err(StoreError::io(new))?
        .is_dir();
    let old = match fs::symlink_metadata(dest) {
        Ok(meta) => Some(meta.is_dir()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(StoreError::io(dest)(e)),
    };
    let direct = match old {
        None => true,
        Some(old_is_dir) => !old_is_dir && !new_is_dir,
    };
    if direct {
        return fs::rename(new, dest).map_err(StoreError::io(dest));
    }
    let aside = sibling_name(dest, "old");
    fs::rename(dest, &aside).map_err(StoreError::io(dest))?;
    if let Err(e) = fs::rename(new, dest) {
        // Put the old content back rather than leave nothing.
        let _ = fs::rename(&aside, dest);
        return Err(StoreError::io(dest)(e));
    }
    // `dest` is complete; an old copy that cannot be removed (say, a read-only directory of the
    // user's) is left beside it under a hidden name rather than failing the swap.
    let _ = remove_any(&aside);
    Ok(())
}
