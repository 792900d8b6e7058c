//! `sluice status`: which stages would run and why, without running anything. Inputs are hashed
//! (through the stat cache), keys computed and looked up; a stage below a stale stage cannot know
//! its key until that stage has run, so it is reported as stale because of its upstream.

use std::collections::BTreeMap;

use serde::Serialize;
use sluice_lock::{LockedStage, Lockfile};
use sluice_plan::Plan;
use sluice_stage::Catalog;
use sluice_store::{Store, StoreError};

use crate::artifacts::locked_stage;
use crate::cache::{
    CacheCheck, InputError, Produced, check_cache, hash_inputs, input_view, key_of,
};
use crate::reason::{Reason, diff};

/// A stage's state before a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Freshness {
    /// The cache holds its result: `run` would not run it.
    Cached,
    /// `run` would run it.
    Stale,
}

#[derive(Clone, Debug, Serialize)]
pub struct StageState {
    pub name: String,
    pub status: Freshness,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(skip)]
    pub reason_list: Vec<Reason>,
    /// The lockfile entry a run would write, for cached stages.
    #[serde(skip)]
    pub locked: Option<LockedStage>,
}

/// The state of every stage, in plan order.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub stages: Vec<StageState>,
}

impl StatusReport {
    pub fn is_fresh(&self) -> bool {
        self.stages.iter().all(|s| s.status == Freshness::Cached)
    }

    /// The lockfile a run would write, when no stage would run.
    pub fn projected_lockfile(&self, plan: &Plan, previous: Option<&Lockfile>) -> Option<Lockfile> {
        if !self.is_fresh() {
            return None;
        }
        let wf = &plan.workflow;
        let stages = self
            .stages
            .iter()
            .filter_map(|s| {
                let mut l = s.locked.clone()?;
                // A cached stage keeps the duration it had when it ran.
                if let Some(p) = previous.and_then(|p| p.stages.get(&s.name))
                    && p.key == l.key
                {
                    l.duration_ms = p.duration_ms;
                    if !p.device.is_empty() {
                        l.device = p.device.clone();
                    }
                }
                Some((s.name.clone(), l))
            })
            .collect();
        Some(Lockfile {
            schema: sluice_lock::SCHEMA,
            engine: format!("sluice {}", env!("CARGO_PKG_VERSION")),
            workflow: wf.name.clone(),
            workflow_digest: blake3::hash(wf.canonical.as_bytes()).to_hex().to_string(),
            params: wf.params.clone(),
            stages,
        })
    }
}

/// Computes every stage's state.
pub fn status(
    plan: &Plan,
    store: &Store,
    previous: Option<&Lockfile>,
    catalog: &Catalog,
) -> Result<StatusReport, StoreError> {
    let mut produced: Produced = BTreeMap::new();
    let mut states = Vec::new();
    for &i in plan.order() {
        let stage = plan.stage(i);
        let prev = previous.and_then(|p| p.stages.get(&stage.name));
        let stale = |reasons: Vec<Reason>, key: Option<String>| StageState {
            name: stage.name.clone(),
            status: Freshness::Stale,
            key,
            reasons: reasons.iter().map(ToString::to_string).collect(),
            reason_list: reasons,
            locked: None,
        };
        let inputs = match hash_inputs(store, catalog, stage, &produced) {
            Ok(inputs) => inputs,
            Err(InputError::Missing { name, path }) => {
                states.push(stale(vec![Reason::InputMissing { name, path }], None));
                continue;
            }
            Err(InputError::Upstream { stage: up }) => {
                states.push(stale(vec![Reason::UpstreamStale { stage: up }], None));
                continue;
            }
            Err(InputError::Store(e)) => return Err(e),
            Err(InputError::Reads(e)) => {
                states.push(stale(vec![Reason::Unreadable { message: e }], None));
                continue;
            }
        };
        let (key, _) = key_of(catalog, stage, &inputs);
        let digest = key
            .parse()
            .unwrap_or_else(|_| sluice_store::Digest::of_bytes(key.as_bytes()));
        let (outputs, duration, device, metrics, unstable, notes) =
            match check_cache(store, stage, &digest, prev, false)? {
                CacheCheck::Hit { record, restore } => (
                    record.outputs,
                    record.duration_ms.unwrap_or(0),
                    record.device,
                    record.metrics,
                    record.unstable,
                    restore,
                ),
                CacheCheck::Adoptable { outputs } => (
                    outputs,
                    prev.map_or(0, |p| p.duration_ms),
                    prev.map(|p| p.device.clone()),
                    prev.map(|p| p.metrics.clone()).unwrap_or_default(),
                    prev.map(|p| p.unstable.clone()).unwrap_or_default(),
                    Vec::new(),
                ),
                CacheCheck::Corrupt { object } => {
                    states.push(stale(
                        vec![Reason::CacheCorrupt {
                            object: object.short(),
                        }],
                        Some(key),
                    ));
                    continue;
                }
                CacheCheck::Miss => {
                    let reasons = diff(stage, &input_view(stage, &inputs), prev);
                    states.push(stale(reasons, Some(key)));
                    continue;
                }
            };
        for (o, a) in &outputs {
            produced.insert((stage.name.clone(), o.clone()), *a);
        }
        states.push(StageState {
            name: stage.name.clone(),
            status: Freshness::Cached,
            key: Some(key.clone()),
            reasons: notes.iter().map(ToString::to_string).collect(),
            reason_list: notes,
            locked: Some(locked_stage(
                stage,
                &key,
                &inputs,
                &outputs,
                device.as_deref().filter(|d| !d.is_empty()).unwrap_or("cpu"),
                duration,
                &metrics,
                &unstable,
            )),
        });
    }
    Ok(StatusReport { stages: states })
}
