//! Conversions between store artifacts and lockfile entries, and the lockfile entry of a stage.

use std::collections::BTreeMap;

use sluice_lock::{LockedArtifact, LockedStage};
use sluice_plan::ResolvedStage;
use sluice_store::{Artifact, ArtifactKind, Digest};

pub fn kind_name(kind: ArtifactKind) -> &'static str {
    match kind {
        ArtifactKind::File => "file",
        ArtifactKind::Dir => "dir",
    }
}

pub fn locked(path: &str, a: &Artifact) -> LockedArtifact {
    LockedArtifact {
        path: path.to_owned(),
        kind: kind_name(a.kind).to_owned(),
        digest: a.digest.hex(),
        size: a.size,
    }
}

/// The artifact a lockfile entry describes, if it is well-formed.
pub fn from_locked(l: &LockedArtifact) -> Option<Artifact> {
    let kind = match l.kind.as_str() {
        "file" => ArtifactKind::File,
        "dir" => ArtifactKind::Dir,
        _ => return None,
    };
    Some(Artifact {
        kind,
        digest: l.digest.parse::<Digest>().ok()?,
        size: l.size,
    })
}

/// A stage's lockfile entry.
#[allow(clippy::too_many_arguments)]
pub fn locked_stage(
    stage: &ResolvedStage,
    key: &str,
    inputs: &BTreeMap<String, Artifact>,
    outputs: &BTreeMap<String, Artifact>,
    device: &str,
    duration_ms: u64,
    metrics: &BTreeMap<String, f64>,
    unstable: &[String],
) -> LockedStage {
    LockedStage {
        unstable: unstable.to_vec(),
        key: key.to_owned(),
        cmd: stage.command.clone(),
        uses: stage.uses.clone().unwrap_or_default(),
        with: stage.with.clone(),
        metrics: metrics.clone(),
        params: stage.params.clone(),
        env: stage.env.clone(),
        inputs: inputs
            .iter()
            .map(|(name, a)| {
                (
                    name.clone(),
                    locked(&crate::cache::input_path(stage, name), a),
                )
            })
            .collect(),
        outputs: outputs
            .iter()
            .map(|(name, a)| {
                let path = stage.outputs.get(name).map(String::as_str).unwrap_or("");
                (name.clone(), locked(path, a))
            })
            .collect(),
        device: device.to_owned(),
        duration_ms,
    }
}
