//! The workflow file as written: the serde types that a YAML file deserialises into and that the
//! JSON Schema is generated from. No validation beyond types lives here (see `resolve`).

use std::collections::BTreeMap;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::quantity::{ByteSize, Span};

/// The workflow format version this build understands.
pub const FORMAT_VERSION: u32 = 1;

/// A sluice workflow: named params and a set of stages whose references to each other form a DAG.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "sluice workflow")]
pub struct Workflow {
    /// Format version of this file. Always `1`.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// Name of the workflow, shown in summaries and recorded in the lockfile.
    pub name: String,
    /// Named values that stages reference as `${{ params.NAME }}`; override them from the command
    /// line with `-p NAME=VALUE`. A stage's cache key includes the params it references.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(with = "BTreeMap<String, ParamValueSchema>")]
    pub params: IndexMap<String, serde_json::Value>,
    /// The stages, by name. Order does not matter: references between stages decide it.
    pub stages: IndexMap<String, Stage>,
}

/// Stands for a param's value in the schema: a string, number, boolean, list or mapping.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
enum ParamValueSchema {
    String(String),
    Number(f64),
    Bool(bool),
    List(Vec<serde_json::Value>),
    Map(BTreeMap<String, serde_json::Value>),
}

/// One stage: a shell command (`run`) with declared inputs and outputs, or a builtin stage kind
/// (`uses`) configured by `with`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// A one-line description, shown by `sluice dag` and `sluice status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// The shell command (run with `sh -c` in the workspace root). It may reference
    /// `${{ params.NAME }}`, `${{ inputs.NAME }}`, `${{ outputs.NAME }}` (their paths) and
    /// `${{ stages.STAGE.outputs.NAME }}`. A stage has either `run` or `uses`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// A builtin stage kind (`collect`, `clean`, `augment`, `split`…), configured by `with`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// Options of a builtin stage kind. A value that is exactly `${{ params.NAME }}` takes the
    /// param's value; `${{ stages.STAGE.outputs.NAME }}` stands for that output's path and makes
    /// it an input of this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub with: Option<serde_json::Value>,
    /// Named inputs of a `run` stage: a workspace path (file or directory) or
    /// `${{ stages.STAGE.outputs.NAME }}`. Their content digests are part of the stage's cache key.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub inputs: IndexMap<String, String>,
    /// Named outputs: workspace paths (files or directories) that the command writes. They are
    /// stored in the content-addressed cache and restored from it. For a `uses` stage, they
    /// override where its outputs go (default `build/WORKFLOW/STAGE/FILE`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub outputs: IndexMap<String, String>,
    /// Environment variables set for the command of a `run` stage; part of the cache key.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, String>,
    /// What the stage needs to run; the scheduler waits until it is free. Not part of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Run a failing command again up to this many times before the stage fails. Not part of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Stop the command and fail the stage after this long, e.g. `30m`. Not part of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Span>,
}

/// Resources a stage occupies while it runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU slots, out of `-j N` (default 1; more than N counts as N).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// Host memory, e.g. `8GiB`; the stage waits until that much is not reserved by others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// GPUs, each given to one stage at a time; the command sees them as `CUDA_VISIBLE_DEVICES`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
    /// Free memory each of its GPUs must have, e.g. `20GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory: Option<ByteSize>,
    /// `cpu`: run on the CPU when the machine has no GPU at all (instead of failing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

/// Where a GPU stage may run instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    Cpu,
}
