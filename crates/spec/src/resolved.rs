//! A workflow after validation: params applied, references resolved to workspace paths, every
//! path normalised and checked to stay inside the workspace. This is what the planner consumes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Pos;

/// A validated workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResolvedWorkflow {
    /// The file it was read from, as given.
    pub file: PathBuf,
    /// The file's text, for error messages found later (cycles).
    pub source: String,
    pub name: String,
    /// A canonical JSON encoding of the workflow as written (comments and layout do not count),
    /// hashed into the lockfile's workflow digest.
    pub canonical: String,
    /// The params in effect: file defaults with command-line overrides applied.
    pub params: BTreeMap<String, serde_json::Value>,
    /// Stages in file order.
    pub stages: Vec<ResolvedStage>,
}

impl ResolvedWorkflow {
    pub fn stage(&self, name: &str) -> Option<&ResolvedStage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// Where an input's content comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputSource {
    /// A file or directory in the workspace, not produced by any stage.
    Path(String),
    /// Another stage's output (an edge of the DAG), with that output's path.
    Stage {
        stage: String,
        output: String,
        path: String,
    },
}

impl InputSource {
    pub fn path(&self) -> &str {
        match self {
            InputSource::Path(p) | InputSource::Stage { path: p, .. } => p,
        }
    }
}

/// A reference from one stage to another stage's output, with where it is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub stage: String,
    pub output: String,
    pub pos: Pos,
}

/// One validated stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResolvedStage {
    pub name: String,
    pub desc: Option<String>,
    /// Where the stage's name is written.
    pub pos: Pos,
    /// The command as written, references unresolved (part of the cache key); empty for a
    /// builtin stage.
    pub command_template: String,
    /// The command to run, every reference replaced; empty for a builtin stage.
    pub command: String,
    /// The builtin stage kind, for a `uses` stage.
    pub uses: Option<String>,
    /// Its options, references resolved (part of the cache key); `null` for a `run` stage.
    pub with: serde_json::Value,
    /// The params this stage references, with their values (part of the cache key).
    pub params: BTreeMap<String, serde_json::Value>,
    /// Named inputs. References to stage outputs written in `run` or `env` rather than `inputs`
    /// appear here too, named `stages.S.outputs.O`; those in `with` are named `with.PATH`.
    pub inputs: BTreeMap<String, InputSource>,
    /// Named outputs and their normalised workspace-relative paths.
    pub outputs: BTreeMap<String, String>,
    /// Environment variables, references resolved.
    pub env: BTreeMap<String, String>,
    /// Every reference to another stage, in file order.
    pub dependencies: Vec<Dependency>,
    /// What the stage occupies while it runs.
    pub needs: Needs,
    /// Extra attempts after a failure.
    pub retries: u32,
    pub timeout: Option<Duration>,
}

/// Resources a stage occupies while it runs, with defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Needs {
    /// CPU slots (at least 1).
    pub cpu: u32,
    /// Host memory in bytes.
    pub memory: Option<u64>,
    /// GPUs.
    pub gpu: u32,
    /// Free memory each GPU must have, in bytes.
    pub gpu_memory: Option<u64>,
    /// Run on the CPU when the machine has no GPU.
    pub fallback_cpu: bool,
    /// Where `resources` is written, for placement errors.
    pub pos: Pos,
}

impl Default for Needs {
    fn default() -> Needs {
        Needs {
            cpu: 1,
            memory: None,
            gpu: 0,
            gpu_memory: None,
            fallback_cpu: false,
            pos: Pos::default(),
        }
    }
}
