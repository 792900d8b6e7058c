//! The workflow file as written: the serde types that a YAML file deserialises into and that the
//! JSON Schema is generated from. No validation beyond types lives here (see `resolve`).

use std::collections::BTreeMap;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

/// One stage: a shell command with declared inputs and outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// A one-line description, shown by `sluice dag` and `sluice status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// The shell command (run with `sh -c` in the workspace root). It may reference
    /// `${{ params.NAME }}`, `${{ inputs.NAME }}`, `${{ outputs.NAME }}` (their paths) and
    /// `${{ stages.STAGE.outputs.NAME }}`.
    pub run: String,
    /// Named inputs: a workspace path (file or directory) or `${{ stages.STAGE.outputs.NAME }}`.
    /// Their content digests are part of the stage's cache key.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub inputs: IndexMap<String, String>,
    /// Named outputs: workspace paths (files or directories) that the command writes. They are
    /// stored in the content-addressed cache and restored from it.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub outputs: IndexMap<String, String>,
    /// Environment variables set for the command; part of the cache key.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, String>,
}
