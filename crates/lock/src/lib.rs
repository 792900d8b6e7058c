//! The lockfile `X.lock` that sits beside a workflow `X.yaml` (as `dvc.lock` beside `dvc.yaml`):
//! the engine version, the workflow's digest, the params in effect and, per stage, its cache key
//! and the digests of what it read and wrote. YAML with kebab-case keys, sorted, empty fields
//! omitted, written atomically (temp file and rename) so that a crash never leaves half a lockfile.
//! It knows nothing of stores or scheduling: digests are plain hex strings here.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The lockfile format version.
pub const SCHEMA: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read lockfile {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lockfile {path} is not a valid sluice lockfile: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write lockfile {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Everything needed to reproduce a run and check that it reproduced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Lockfile {
    /// Lockfile format version.
    pub schema: u32,
    /// The sluice that wrote it, e.g. `sluice 0.1.0`.
    pub engine: String,
    /// The workflow's name.
    pub workflow: String,
    /// blake3 of the workflow's canonical form (layout and comments do not count).
    pub workflow_digest: String,
    /// The params in effect, overrides included.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Every stage that has completed, by name.
    #[serde(default)]
    pub stages: BTreeMap<String, LockedStage>,
}

/// One completed stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LockedStage {
    /// The stage's cache key (blake3, hex).
    pub key: String,
    /// The command as it ran, references resolved (`run` stages).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cmd: String,
    /// The builtin stage kind (`uses` stages).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uses: String,
    /// Its options, references resolved (`uses` stages).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub with: serde_json::Value,
    /// The params the stage references.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Declared environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, LockedArtifact>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, LockedArtifact>,
    /// Where the stage ran: `cpu`, `gpu:1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device: String,
    /// How long the stage's work took when it last ran.
    #[serde(default)]
    pub duration_ms: u64,
    /// Headline numbers the stage reported (rows kept, accuracy…).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// Outputs and metrics that may differ between runs on the same inputs (timings, GPU
    /// kernels): `sluice repro` skips these outputs' digests and these metrics, and compares
    /// the other metrics of such a stage within a tolerance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unstable: Vec<String>,
}

/// A file or directory with its content digest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LockedArtifact {
    pub path: String,
    /// `file` or `dir`.
    pub kind: String,
    pub digest: String,
    pub size: u64,
}

/// `pipelines/x.yaml` → `pipelines/x.lock`.
pub fn path_for(workflow: &Path) -> PathBuf {
    workflow.with_extension("lock")
}

impl Lockfile {
    /// Reads a lockfile; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<Lockfile>, LockError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LockError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Lockfile::parse(path, &text).map(Some)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Lockfile, LockError> {
        let lock: Lockfile = serde_yaml::from_str(text).map_err(|e| LockError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if lock.schema != SCHEMA {
            return Err(LockError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "lockfile schema {} is not supported (this sluice reads {SCHEMA})",
                    lock.schema
                ),
            });
        }
        Ok(lock)
    }

    /// The canonical text: YAML, sorted, ending with a newline.
    pub fn to_text(&self) -> String {
        let mut text = serde_yaml::to_string(self).unwrap_or_default();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }

    /// Writes atomically: a temp file in the same directory, synced, then renamed over `path`.
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        let err = |source| LockError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".sluice-lock-")
            .tempfile_in(dir)
            .map_err(err)?;
        tmp.write_all(self.to_text().as_bytes()).map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lockfile {
        let mut stages = BTreeMap::new();
        stages.insert(
            "prepare".to_owned(),
            LockedStage {
                key: "ab".repeat(32),
                cmd: "cp a b".into(),
                params: [("lr".to_owned(), serde_json::json!(0.001))].into(),
                outputs: [(
                    "data".to_owned(),
                    LockedArtifact {
                        path: "out/data.txt".into(),
                        kind: "file".into(),
                        digest: "cd".repeat(32),
                        size: 12,
                    },
                )]
                .into(),
                device: "cpu".into(),
                duration_ms: 5,
                ..LockedStage::default()
            },
        );
        Lockfile {
            schema: SCHEMA,
            engine: "sluice 0.1.0".into(),
            workflow: "demo".into(),
            workflow_digest: "ef".repeat(32),
            params: [("lr".to_owned(), serde_json::json!(0.001))].into(),
            stages,
        }
    }

    #[test]
    fn round_trips_through_text_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.lock");
        assert_eq!(Lockfile::read(&path).unwrap(), None);
        let lock = sample();
        lock.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'));
        assert!(text.contains("workflow-digest:"), "{text}");
        assert!(text.contains("duration-ms: 5"), "{text}");
        assert!(!text.contains("env:"), "empty fields are omitted: {text}");
        assert_eq!(Lockfile::read(&path).unwrap(), Some(lock));
        // No temp file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn rejects_foreign_files_and_versions() {
        let p = Path::new("x.lock");
        assert!(Lockfile::parse(p, "[[package]]\nname = \"x\"\n").is_err());
        let mut lock = sample();
        lock.schema = 99;
        let err = Lockfile::parse(p, &lock.to_text()).unwrap_err().to_string();
        assert!(err.contains("schema 99"), "{err}");
    }

    #[test]
    fn lock_path_sits_beside_the_workflow() {
        assert_eq!(
            path_for(Path::new("pipelines/q.yaml")),
            PathBuf::from("pipelines/q.lock")
        );
    }
}
