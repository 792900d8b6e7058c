//! Frames handed from the stage that wrote them to the stage that reads them, in one process.
//!
//! A data stage writes its table to Parquet, and the stage after it, often in the same `sluice
//! run`, reads that file straight back: decompressing and decoding what was in memory a moment
//! before. Here the writer leaves the frame it wrote, filed under the identity of the file
//! (device, inode, size, modification time), and the first reader of that same file takes it
//! instead of decoding it. The store links a builtin stage's output into the cache, so the
//! object a later stage is given is the same inode; a copied object, or a file written again,
//! has another identity and is read from disk.
//!
//! Only what the file holds is handed over: the frame is left after the file is complete, and a
//! reader takes it only while the file's identity is the one the writer saw. At most
//! [`MAX_FRAMES`] frames wait, the oldest dropped first, so that frames nobody reads (a test
//! split read only by a later run) cost a bounded amount of memory.

use std::fs::Metadata;
use std::path::Path;
use std::sync::Mutex;

use polars::prelude::DataFrame;

/// How many written frames wait for a reader at most.
const MAX_FRAMES: usize = 4;

/// What identifies a file's content between its write and a read: the same inode, untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileId {
    #[cfg(unix)]
    fn of(meta: &Metadata) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        Some(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }

    /// Elsewhere nothing names a file's inode: nothing is handed over.
    #[cfg(not(unix))]
    fn of(_meta: &Metadata) -> Option<FileId> {
        None
    }

    fn of_path(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().as_ref().and_then(FileId::of)
    }
}

/// Frames waiting for their reader, oldest first.
pub(crate) struct Frames {
    waiting: Mutex<Vec<(FileId, DataFrame)>>,
}

/// The frames of this process.
pub(crate) static FRAMES: Frames = Frames::new();

impl Frames {
    const fn new() -> Frames {
        Frames {
            waiting: Mutex::new(Vec::new()),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<(FileId, DataFrame)>> {
        // A panic while the lock was held left at worst a frame too many or too few: still sound.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves `df` for the first reader of `path`, which was just written from it and closed.
    pub(crate) fn leave(&self, path: &Path, df: &DataFrame) {
        let Some(id) = FileId::of_path(path) else {
            return;
        };
        let mut frames = self.waiting();
        frames.retain(|(other, _)| *other != id);
        if frames.len() == MAX_FRAMES {
            frames.remove(0);
        }
        frames.push((id, df.clone()));
    }

    /// The frame written to `path`, if this process wrote it and the file is still what was
    /// written.
    pub(crate) fn take(&self, path: &Path) -> Option<DataFrame> {
        let id = FileId::of_path(path)?;
        let mut frames = self.waiting();
        let at = frames.iter().position(|(other, _)| *other == id)?;
        Some(frames.remove(at).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;

    fn frame(values: &[&str]) -> DataFrame {
        df!("text" => values).unwrap()
    }

    /// A file `name` in `dir` holding `bytes`.
    fn file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_frame_goes_to_the_first_reader_of_its_file_only() {
        let frames = Frames::new();
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir, "a", b"written");
        frames.leave(&path, &frame(&["a"]));
        let linked = dir.path().join("linked");
        std::fs::hard_link(&path, &linked).unwrap();
        // The same inode under another name (the store's object) is the same file.
        assert!(frames.take(&linked).unwrap().equals(&frame(&["a"])));
        assert!(frames.take(&path).is_none(), "handed over once");
    }

    #[test]
    fn a_file_written_again_is_not_the_frame() {
        let frames = Frames::new();
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir, "b", b"written");
        frames.leave(&path, &frame(&["b"]));
        std::fs::write(&path, b"written again, longer").unwrap();
        assert!(frames.take(&path).is_none());
        let copy = dir.path().join("copy");
        std::fs::write(&path, b"x").unwrap();
        frames.leave(&path, &frame(&["c"]));
        std::fs::copy(&path, &copy).unwrap();
        assert!(frames.take(&copy).is_none(), "a copy is another file");
        assert!(frames.take(&dir.path().join("missing")).is_none());
    }

    #[test]
    fn at_most_a_few_frames_wait() {
        let frames = Frames::new();
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = (0..=MAX_FRAMES)
            .map(|i| {
                let path = file(&dir, &i.to_string(), &vec![b'x'; i + 1]);
                frames.leave(&path, &frame(&["x"]));
                path
            })
            .collect();
        assert!(frames.take(&paths[0]).is_none(), "the oldest was dropped");
        assert!(paths[1..].iter().all(|p| frames.take(p).is_some()));
    }
}
