//! The stage API: what a builtin stage kind (`collect`, `clean`, `train`…) implements, and what it
//! sees when it runs. The engine validates a stage's `with:` options through [`StageKind::check`],
//! hashes the files it reads ([`StageKind::reads`]) and its upstream outputs into the cache key,
//! then calls [`StageKind::run`] on a blocking thread with every path resolved.
//!
//! This crate knows nothing of the scheduler, YAML, candle or polars: a new stage kind is one type
//! implementing [`StageKind`], registered in the binary's catalog.

pub mod options;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// An output a stage kind produces, with the file or directory name it gets by default
/// (`build/<workflow>/<stage>/<file>` unless the workflow says otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    pub name: &'static str,
    pub file: &'static str,
    pub description: &'static str,
}

/// A problem with a stage's `with:` options, at a path inside `with` (`["sources", "0", "path"]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionError {
    pub path: Vec<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl OptionError {
    pub fn new(path: &[&str], message: impl Into<String>) -> OptionError {
        OptionError {
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> OptionError {
        self.hint = Some(hint.into());
        self
    }
}

/// Where a stage runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Device {
    Cpu,
    /// CUDA devices by index (as `CUDA_VISIBLE_DEVICES` would name them).
    Cuda(Vec<u32>),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(ids) => {
                let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
                write!(f, "gpu:{}", ids.join(","))
            }
        }
    }
}

impl Device {
    /// The CUDA ordinal (what `cudaSetDevice` and candle's `Device::new_cuda` take, counted within
    /// this process's visible devices) of the physical GPU `id`: its position in
    /// `CUDA_VISIBLE_DEVICES` when that variable lists indices, else `id` itself.
    pub fn cuda_ordinal(id: u32) -> Option<usize> {
        match cuda_visible_devices() {
            Some(visible) => visible.iter().position(|&v| v == id),
            None => Some(id as usize),
        }
    }
}

/// `CUDA_VISIBLE_DEVICES` when it is set to a list of indices (`0,2`); `None` when it is unset or
/// names devices otherwise (UUIDs), in which case indices are taken as they are.
pub fn cuda_visible_devices() -> Option<Vec<u32>> {
    parse_cuda_visible(&std::env::var("CUDA_VISIBLE_DEVICES").ok()?)
}

/// Parses a `CUDA_VISIBLE_DEVICES` value made of indices.
pub fn parse_cuda_visible(value: &str) -> Option<Vec<u32>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect()
}

/// Everything a running stage may use.
pub struct StageContext<'a> {
    /// The stage's name in the workflow.
    pub stage: &'a str,
    /// The stage's cache key (hex): what a checkpoint in `work_dir` must match to be resumed.
    pub key: &'a str,
    /// The workspace root; paths in `with` are relative to it.
    pub workspace: &'a Path,
    /// The options, every reference resolved: params are values, `${{ stages.S.outputs.O }}` are
    /// workspace-relative paths.
    pub with: &'a serde_json::Value,
    /// Where to write each output (absolute paths; parent directories exist, the paths do not).
    pub outputs: &'a BTreeMap<String, PathBuf>,
    /// A directory that survives between runs of this stage (checkpoints to resume from); it is
    /// never part of a key or an output.
    pub work_dir: &'a Path,
    pub device: &'a Device,
    /// Reports progress for the live display ("step 120/500 loss 1.73").
    pub progress: &'a (dyn Fn(&str) + Sync),
    /// Set when the run is cancelled; long stages check it and return [`StageError::Cancelled`].
    pub cancelled: &'a AtomicBool,
}

impl StageContext<'_> {
    /// A workspace-relative path from `with`, made absolute.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.workspace.join(rel)
    }

    /// The path to write output `name` to.
    pub fn output(&self, name: &str) -> Result<&Path, StageError> {
        self.outputs
            .get(name)
            .map(PathBuf::as_path)
            .ok_or_else(|| StageError::Failed(format!("no output named `{name}`")))
    }

    /// `Err(Cancelled)` once the run has been cancelled.
    pub fn check_cancelled(&self) -> Result<(), StageError> {
        if self.cancelled.load(Ordering::Relaxed) {
            Err(StageError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// What a finished stage reports besides its outputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageReport {
    /// Headline numbers (rows kept, accuracy…): shown in the run summary, kept in the lockfile.
    pub metrics: BTreeMap<String, f64>,
    /// Outputs and metrics whose values may differ between two runs on the same inputs (a
    /// timing, results of non-deterministic GPU kernels). `sluice repro` does not compare
    /// these outputs' digests, and compares these metrics not at all; the lockfile lists them.
    pub unstable: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The stage failed; the message says why, in the user's terms.
    #[error("{0}")]
    Failed(String),
    /// The run was cancelled while the stage ran.
    #[error("cancelled")]
    Cancelled,
}

impl StageError {
    pub fn failed(message: impl Into<String>) -> StageError {
        StageError::Failed(message.into())
    }
}

/// A builtin stage kind.
pub trait StageKind: Send + Sync {
    /// The name written after `uses:`.
    fn name(&self) -> &'static str;
    /// The implementation's version: bump it when the same inputs would give different outputs,
    /// so that every cached result of this kind is invalidated.
    fn version(&self) -> u32;
    /// One line for `sluice stages` and the schema.
    fn description(&self) -> &'static str;
    /// The outputs it writes.
    fn outputs(&self) -> Vec<OutputSpec>;
    /// The JSON Schema of its `with:` options.
    fn schema(&self) -> serde_json::Value;
    /// Checks `with:` before anything runs. It is already resolved: `${{ params.X }}` standing
    /// alone is the param's value (a number stays a number), `${{ stages.S.outputs.O }}` is that
    /// output's workspace-relative path.
    fn check(&self, with: &serde_json::Value) -> Vec<OptionError>;
    /// Every workspace file and directory it reads, relative to the workspace, globs expanded:
    /// their digests enter the key (the engine skips those that are upstream outputs, whose
    /// digests are in the key already). `with` is resolved.
    fn reads(&self, with: &serde_json::Value, workspace: &Path) -> Result<Vec<String>, StageError> {
        let _ = (with, workspace);
        Ok(Vec::new())
    }
    /// Why this kind cannot run on a GPU that the scheduler gives it, in this build; `None` when
    /// it can, or when it never uses one (it runs on the CPU whatever it is given). A stage of
    /// such a kind that asks for a GPU is placed on the CPU when it allows `fallback: cpu`, and
    /// is an error before anything runs otherwise.
    fn gpu_unavailable(&self) -> Option<&'static str> {
        None
    }
    /// Does the work.
    fn run(&self, ctx: &StageContext<'_>) -> Result<StageReport, StageError>;
    /// Called after the workflow's lockfile has been written, for each stage of this kind that
    /// ran, with its outputs (absolute paths) and the lockfile: for results that record the run
    /// as a whole, such as a deployed bundle keeping a copy of the lockfile. It must not change
    /// the stage's outputs.
    fn after_lockfile(
        &self,
        workspace: &Path,
        outputs: &BTreeMap<String, PathBuf>,
        lockfile: &Path,
    ) -> Result<(), StageError> {
        let _ = (workspace, outputs, lockfile);
        Ok(())
    }
}

/// The stage kinds a binary knows, by name.
#[derive(Default)]
pub struct Catalog {
    kinds: Vec<Box<dyn StageKind>>,
}

impl Catalog {
    pub fn new() -> Catalog {
        Catalog::default()
    }

    pub fn add(&mut self, kind: Box<dyn StageKind>) -> &mut Catalog {
        self.kinds.push(kind);
        self
    }

    pub fn get(&self, name: &str) -> Option<&dyn StageKind> {
        self.kinds
            .iter()
            .find(|k| k.name() == name)
            .map(|k| k.as_ref())
    }

    pub fn kinds(&self) -> impl Iterator<Item = &dyn StageKind> {
        self.kinds.iter().map(|k| k.as_ref())
    }
}

/// Reads an option of `with` by path, for stage implementations.
pub fn option<'v>(with: &'v serde_json::Value, path: &[&str]) -> Option<&'v serde_json::Value> {
    let mut v = with;
    for p in path {
        v = match v {
            serde_json::Value::Object(m) => m.get(*p)?,
            serde_json::Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}
