//! [`Artifact`]: what a stage output or input is, as the store sees it: a file or a directory, its
//! digest and its size. A plain value; it must not touch the file system.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    File,
    /// A directory, whose digest names its tree object.
    Dir,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub kind: ArtifactKind,
    pub digest: Digest,
    /// Bytes: the file's length, or the sum of the lengths of every file under a directory.
    pub size: u64,
}
