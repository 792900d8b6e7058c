//! Training checkpoints in the stage's work directory: trainable weights, AdamW moments, the
//! best weights so far and the loop's counters. The random state needs no saving: every stream
//! is derived from (seed, purpose, step). A checkpoint carries the stage's cache key and is only
//! resumed by a run with the same key; it is replaced atomically (written beside, then renamed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::history::Row;
use crate::safetensors;

const DIR: &str = "checkpoint";
const STATE: &str = "state.json";
const WEIGHTS: &str = "trainable.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
const BEST: &str = "best.safetensors";

/// The loop's counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoopState {
    pub key: String,
    /// Optimizer steps completed.
    pub step: usize,
    pub best_loss: Option<f64>,
    pub best_step: Option<usize>,
    /// The validation accuracy at the best step (classifiers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_accuracy: Option<f64>,
    /// Evaluations since the last improvement.
    pub stale: usize,
    pub history: Vec<Row>,
}

pub struct Checkpoint {
    pub state: LoopState,
    pub weights: BTreeMap<String, Tensor>,
    pub m: BTreeMap<String, Tensor>,
    pub v: BTreeMap<String, Tensor>,
    pub best: Option<BTreeMap<String, Tensor>>,
}

fn dir(work: &Path) -> PathBuf {
    work.join(DIR)
}

/// Writes `checkpoint` into `work`, replacing the previous one only once it is complete.
pub fn save(work: &Path, checkpoint: &Checkpoint) -> Result<()> {
    let target = dir(work);
    let fresh = work.join(format!("{DIR}.new"));
    let old = work.join(format!("{DIR}.old"));
    let io = |p: &Path, e: std::io::Error| ModelError::file(p, e);
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh).map_err(|e| io(&fresh, e))?;
    }
    std::fs::create_dir_all(&fresh).map_err(|e| io(&fresh, e))?;
    safetensors::save(&checkpoint.weights, &fresh.join(WEIGHTS))?;
    let mut moments = BTreeMap::new();
    for (k, t) in &checkpoint.m {
        moments.insert(format!("m/{k}"), t.clone());
    }
    for (k, t) in &checkpoint.v {
        moments.insert(format!("v/{k}"), t.clone());
    }
    safetensors::save(&moments, &fresh.join(OPTIMIZER))?;
    if let Some(best) = &checkpoint.best {
        safetensors::save(best, &fresh.join(BEST))?;
    }
    crate::hf::write_json(&fresh.join(STATE), &checkpoint.state)?;
    if target.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
        }
        std::fs::rename(&target, &old).map_err(|e| io(&target, e))?;
    }
    std::fs::rename(&fresh, &target).map_err(|e| io(&fresh, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
    }
    Ok(())
}

/// The checkpoint in `work` for `key`, if there is a complete one.
pub fn load(work: &Path, key: &str, device: &Device) -> Result<Option<Checkpoint>> {
    // A crash between the two renames leaves only the old one.
    let candidates = [dir(work), work.join(format!("{DIR}.old"))];
    let Some(found) = candidates.iter().find(|d| d.join(STATE).exists()) else {
        return Ok(None);
    };
    let state: LoopState = match crate::hf::read_json(&found.join(STATE)) {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    if state.key != key {
        return Ok(None);
    }
    let weights = safetensors::load(&found.join(WEIGHTS), device)?;
    let mut m = BTreeMap::new();
    let mut v = BTreeMap::new();
    for (k, t) in safetensors::load(&found.join(OPTIMIZER), device)? {
        if let Some(name) = k.strip_prefix("m/") {
            m.insert(name.to_owned(), t);
        } else if let Some(name) = k.strip_prefix("v/") {
            v.insert(name.to_owned(), t);
        }
    }
    let best = if found.join(BEST).exists() {
        Some(safetensors::load(&found.join(BEST), device)?)
    } else {
        None
    };
    Ok(Some(Checkpoint {
        state,
        weights,
        m,
        v,
        best,
    }))
}

/// Removes the checkpoint once the stage's outputs are written.
pub fn clear(work: &Path) {
    for d in [
        dir(work),
        work.join(format!("{DIR}.old")),
        work.join(format!("{DIR}.new")),
    ] {
        let _ = std::fs::remove_dir_all(d);
    }
}
