//! The per-stage questions shared by `run` and `status`: what are the inputs' digests, and does
//! the cache (or the lockfile, with matching workspace files) already hold the stage's result.

use std::collections::BTreeMap;
use std::path::Path;

use sluice_lock::LockedStage;
use sluice_plan::{InputSource, KeyMaterial, ResolvedStage, StageKind};
use sluice_stage::Catalog;
use sluice_store::{Artifact, Digest, StageRecord, Store, StoreError};

use crate::artifacts::from_locked;
use crate::reason::Reason;

/// Output artifacts of finished stages, by (stage, output).
pub type Produced = BTreeMap<(String, String), Artifact>;

/// Why a stage's inputs could not be hashed.
#[derive(Debug)]
pub enum InputError {
    /// A workspace input does not exist.
    Missing {
        name: String,
        path: String,
    },
    /// An upstream stage has no result (yet).
    Upstream {
        stage: String,
    },
    /// A builtin stage could not say what it reads (a bad glob, say).
    Reads(String),
    Store(StoreError),
}

/// Input names of the files a builtin stage reads (its sources) start with this.
const READ: &str = "read:";

/// The workspace path of a stage's input.
pub fn input_path(stage: &ResolvedStage, name: &str) -> String {
    match stage.inputs.get(name) {
        Some(source) => source.path().to_owned(),
        None => name.strip_prefix(READ).unwrap_or(name).to_owned(),
    }
}

/// The stage's inputs: artifacts by input name. A builtin stage's inputs include the files its
/// kind says it reads, named `read:PATH`.
pub fn hash_inputs(
    store: &Store,
    catalog: &Catalog,
    stage: &ResolvedStage,
    produced: &Produced,
) -> Result<BTreeMap<String, Artifact>, InputError> {
    let mut out = BTreeMap::new();
    if let Some(kind) = stage.uses.as_deref().and_then(|k| catalog.get(k)) {
        let reads = kind
            .reads(&stage.with, store.workspace())
            .map_err(|e| InputError::Reads(e.to_string()))?;
        let upstream: Vec<&str> = stage.inputs.values().map(InputSource::path).collect();
        for path in reads {
            // Upstream outputs are inputs already, by their stage's result.
            if upstream.contains(&path.as_str()) {
                continue;
            }
            let artifact = match store.hash_path(Path::new(&path)) {
                Ok(a) => a,
                Err(StoreError::NotFound { .. }) => {
                    return Err(InputError::Missing {
                        name: format!("{READ}{path}"),
                        path,
                    });
                }
                Err(e) => return Err(InputError::Store(e)),
            };
            out.insert(format!("{READ}{path}"), artifact);
        }
    }
    for (name, source) in &stage.inputs {
        let artifact = match source {
            InputSource::Stage {
                stage: up, output, ..
            } => *produced
                .get(&(up.clone(), output.clone()))
                .ok_or_else(|| InputError::Upstream { stage: up.clone() })?,
            InputSource::Path(path) => match store.hash_path(Path::new(path)) {
                Ok(a) => a,
                Err(StoreError::NotFound { .. }) => {
                    return Err(InputError::Missing {
                        name: name.clone(),
                        path: path.clone(),
                    });
                }
                Err(e) => return Err(InputError::Store(e)),
            },
        };
        out.insert(name.clone(), artifact);
    }
    Ok(out)
}

/// What kind of stage this is, with its implementation's version.
pub fn stage_kind(catalog: &Catalog, stage: &ResolvedStage) -> StageKind {
    match &stage.uses {
        None => StageKind::run(),
        Some(name) => StageKind {
            name: name.clone(),
            version: catalog.get(name).map_or(0, |k| k.version()),
        },
    }
}

/// The stage's key, and the canonical JSON it hashes (for `-v`).
pub fn key_of(
    catalog: &Catalog,
    stage: &ResolvedStage,
    inputs: &BTreeMap<String, Artifact>,
) -> (String, String) {
    let view = input_view(stage, inputs);
    let material = KeyMaterial::new(stage, stage_kind(catalog, stage), &view);
    (material.key(), material.canonical_json())
}

/// Inputs as (path, digest) by name, for the key and [`crate::reason::diff`].
pub fn input_view(
    stage: &ResolvedStage,
    inputs: &BTreeMap<String, Artifact>,
) -> BTreeMap<String, (String, String)> {
    inputs
        .iter()
        .map(|(k, a)| (k.clone(), (input_path(stage, k), a.digest.hex())))
        .collect()
}

/// What the cache knows of a stage's key.
#[derive(Debug)]
pub enum CacheCheck {
    /// A stored result; `restore` lists outputs whose workspace copy must be rewritten.
    Hit {
        record: StageRecord,
        restore: Vec<Reason>,
    },
    /// No record, but the lockfile has this key and the workspace holds exactly its outputs:
    /// they can be taken into the store without running anything.
    Adoptable {
        outputs: BTreeMap<String, Artifact>,
    },
    /// A stored object failed its check (or is gone); the stage must run again.
    Corrupt {
        object: Digest,
    },
    Miss,
}

/// Looks the key up. With `verify`, every object of a hit is checked against its digest
/// (stat-cache backed: cheap when unchanged); without it, only their presence.
pub fn check_cache(
    store: &Store,
    stage: &ResolvedStage,
    key: &Digest,
    previous: Option<&LockedStage>,
    verify: bool,
) -> Result<CacheCheck, StoreError> {
    if let Some(record) = store.record(key)? {
        let declared: Vec<&String> = stage.outputs.keys().collect();
        let recorded: Vec<&String> = record.outputs.keys().collect();
        if declared == recorded {
            for artifact in record.outputs.values() {
                if verify {
                    match store.verify(artifact) {
                        Ok(()) => {}
                        Err(StoreError::Corrupt { digest, .. })
                        | Err(StoreError::Missing { digest }) => {
                            return Ok(CacheCheck::Corrupt { object: digest });
                        }
                        Err(e) => return Err(e),
                    }
                } else if !store.contains(artifact) {
                    return Ok(CacheCheck::Corrupt {
                        object: artifact.digest,
                    });
                }
            }
            let mut restore = Vec::new();
            for (name, artifact) in &record.outputs {
                let path = &stage.outputs[name];
                match store.hash_path(Path::new(path)) {
                    Ok(current) if current.digest == artifact.digest => {}
                    Ok(_) => restore.push(Reason::OutputModified {
                        name: name.clone(),
                        path: path.clone(),
                    }),
                    Err(StoreError::NotFound { .. }) => restore.push(Reason::OutputMissing {
                        name: name.clone(),
                        path: path.clone(),
                    }),
                    Err(e) => return Err(e),
                }
            }
            return Ok(CacheCheck::Hit { record, restore });
        }
    }
    let Some(prev) = previous.filter(|p| p.key == key.hex()) else {
        return Ok(CacheCheck::Miss);
    };
    let mut outputs = BTreeMap::new();
    for (name, path) in &stage.outputs {
        let Some(expected) = prev.outputs.get(name).and_then(from_locked) else {
            return Ok(CacheCheck::Miss);
        };
        match store.hash_path(Path::new(path)) {
            Ok(current) if current.digest == expected.digest => {
                outputs.insert(name.clone(), current);
            }
            Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(CacheCheck::Miss),
            Err(e) => return Err(e),
        }
    }
    Ok(CacheCheck::Adoptable { outputs })
}
