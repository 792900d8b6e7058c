//! What happened to each stage, as the CLI reports it (text on stderr, JSON on stdout).

use std::collections::BTreeMap;

use serde::Serialize;

/// The end state of a stage in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageStatus {
    /// Its command ran and its outputs were stored.
    Ran,
    /// Its result came from the cache.
    Cached,
    /// Its command failed, or it did not produce its outputs.
    Failed,
    /// It did not run: an upstream stage failed, or the run stopped.
    Skipped,
    /// It was running when the run was interrupted.
    Cancelled,
}

impl StageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Ran => "ran",
            StageStatus::Cached => "cached",
            StageStatus::Failed => "failed",
            StageStatus::Skipped => "skipped",
            StageStatus::Cancelled => "cancelled",
        }
    }
}

/// One stage's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct StageOutcome {
    pub name: String,
    pub status: StageStatus,
    /// The cache key, when the inputs could be hashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub duration_ms: u64,
    /// For a stage that ran: how long its own work took, in milliseconds to the microsecond (a
    /// command from just before it is spawned until it has exited and its output is drained; a
    /// builtin's run). `duration_ms` minus this is what the engine added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_ms: Option<f64>,
    /// Where it ran (`cpu`), for stages that ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Why it ran, or why it was skipped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The last lines the command wrote to stderr (stdout when stderr was empty), on failure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stderr_tail: Vec<String>,
    /// Headline numbers a builtin stage reported.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

impl StageOutcome {
    pub fn new(name: &str, status: StageStatus) -> StageOutcome {
        StageOutcome {
            name: name.to_owned(),
            status,
            key: None,
            duration_ms: 0,
            run_ms: None,
            device: None,
            reasons: Vec::new(),
            error: None,
            stderr_tail: Vec::new(),
            metrics: BTreeMap::new(),
        }
    }
}
