//! Why a stage runs (or would run): compared with its entry in the lockfile, as cargo's
//! `DirtyReason` explains a rebuild. "param `lr` changed: 0.001 → 0.01", "input `data` changed".

use std::collections::BTreeMap;
use std::fmt;

use sluice_lock::LockedStage;
use sluice_plan::ResolvedStage;

/// One reason a stage is stale.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// The lockfile has no entry for the stage.
    NeverRun,
    ParamChanged {
        name: String,
        old: Option<serde_json::Value>,
        new: Option<serde_json::Value>,
    },
    InputChanged {
        name: String,
        path: String,
    },
    InputAdded {
        name: String,
        path: String,
    },
    InputRemoved {
        name: String,
    },
    InputMissing {
        name: String,
        path: String,
    },
    CommandChanged,
    /// A builtin stage's `with:` options changed.
    OptionsChanged,
    /// A builtin stage could not say which files it reads.
    Unreadable {
        message: String,
    },
    EnvChanged {
        name: String,
    },
    OutputsChanged,
    UpstreamStale {
        stage: String,
    },
    /// The key is unchanged but no result for it is in the cache.
    NotCached,
    /// A cached object failed its digest check.
    CacheCorrupt {
        object: String,
    },
    /// `sluice repro` runs every stage.
    Forced,
    /// Not a reason to run: a cached output is missing from, or differs in, the workspace and
    /// will be restored.
    OutputMissing {
        name: String,
        path: String,
    },
    OutputModified {
        name: String,
        path: String,
    },
}

impl Reason {
    /// Whether this reason makes the stage run (the others only restore outputs).
    pub fn runs(&self) -> bool {
        !matches!(
            self,
            Reason::OutputMissing { .. } | Reason::OutputModified { .. }
        )
    }
}

fn show(v: &Option<serde_json::Value>) -> String {
    match v {
        None => "(unset)".to_owned(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NeverRun => write!(f, "never run"),
            Reason::ParamChanged { name, old, new } => {
                write!(f, "param `{name}` changed: {} → {}", show(old), show(new))
            }
            Reason::InputChanged { name, path } => write!(f, "input `{name}` changed ({path})"),
            Reason::InputAdded { name, path } => write!(f, "input `{name}` added ({path})"),
            Reason::InputRemoved { name } => write!(f, "input `{name}` removed"),
            Reason::InputMissing { name, path } => {
                write!(f, "input `{name}` is missing ({path})")
            }
            Reason::CommandChanged => write!(f, "command changed"),
            Reason::OptionsChanged => write!(f, "options (`with`) changed"),
            Reason::Unreadable { message } => write!(f, "{message}"),
            Reason::EnvChanged { name } => write!(f, "environment variable `{name}` changed"),
            Reason::OutputsChanged => write!(f, "declared outputs changed"),
            Reason::UpstreamStale { stage } => write!(f, "upstream stage `{stage}` is stale"),
            Reason::NotCached => write!(f, "no cached result"),
            Reason::CacheCorrupt { object } => {
                write!(f, "cached object {object} is corrupt")
            }
            Reason::Forced => write!(f, "forced"),
            Reason::OutputMissing { name, path } => {
                write!(
                    f,
                    "output `{name}` missing from the workspace ({path}); restored from cache"
                )
            }
            Reason::OutputModified { name, path } => {
                write!(
                    f,
                    "output `{name}` modified in the workspace ({path}); restored from cache"
                )
            }
        }
    }
}

/// What changed between the lockfile's entry and the stage as it is now, given the current
/// inputs as name → (path, digest).
pub fn diff(
    stage: &ResolvedStage,
    inputs: &BTreeMap<String, (String, String)>,
    previous: Option<&LockedStage>,
) -> Vec<Reason> {
    let Some(prev) = previous else {
        return vec![Reason::NeverRun];
    };
    let mut reasons = Vec::new();
    let names: std::collections::BTreeSet<&String> =
        stage.params.keys().chain(prev.params.keys()).collect();
    for name in names {
        let (old, new) = (prev.params.get(name), stage.params.get(name));
        if old != new {
            reasons.push(Reason::ParamChanged {
                name: name.clone(),
                old: old.cloned(),
                new: new.cloned(),
            });
        }
    }
    let mut path_changed = false;
    for (name, (path, digest)) in inputs {
        match prev.inputs.get(name) {
            None => reasons.push(Reason::InputAdded {
                name: name.clone(),
                path: path.clone(),
            }),
            Some(old) if old.digest != *digest || old.path != *path => {
                path_changed |= old.path != *path;
                reasons.push(Reason::InputChanged {
                    name: name.clone(),
                    path: path.clone(),
                });
            }
            Some(_) => {}
        }
    }
    for name in prev.inputs.keys() {
        if !inputs.contains_key(name) {
            reasons.push(Reason::InputRemoved { name: name.clone() });
        }
    }
    let env_names: std::collections::BTreeSet<&String> =
        stage.env.keys().chain(prev.env.keys()).collect();
    for name in env_names {
        if stage.env.get(name) != prev.env.get(name) {
            reasons.push(Reason::EnvChanged { name: name.clone() });
        }
    }
    let declared: BTreeMap<&String, &String> = stage.outputs.iter().collect();
    let locked: BTreeMap<&String, &String> =
        prev.outputs.iter().map(|(k, v)| (k, &v.path)).collect();
    if declared != locked {
        reasons.push(Reason::OutputsChanged);
    }
    let params_changed = reasons
        .iter()
        .any(|r| matches!(r, Reason::ParamChanged { .. }));
    if prev.cmd != stage.command && !params_changed && !path_changed {
        reasons.push(Reason::CommandChanged);
    }
    if prev.with != stage.with && !params_changed && !path_changed {
        reasons.push(Reason::OptionsChanged);
    }
    if reasons.is_empty() {
        reasons.push(Reason::NotCached);
    }
    reasons
}
