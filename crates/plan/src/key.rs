//! Stage cache keys. A key is blake3 over the canonical JSON of a [`KeyMaterial`]: the format
//! version, the stage kind and its implementation version, the command as written, the params and
//! environment it uses, its inputs' paths and content digests, and its declared outputs. Never a
//! timestamp, an absolute path or the device it ran on. Inputs that come from other stages enter
//! by their output digest, not the upstream key, so an upstream change that produces the same
//! bytes re-runs nothing downstream (early cutoff).

use std::collections::BTreeMap;

use serde::Serialize;
use sluice_spec::ResolvedStage;

/// Bump to invalidate every cache at once.
pub const KEY_VERSION: u32 = 1;

/// What kind of work a stage does, with the version of its implementation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StageKind {
    pub name: String,
    pub version: u32,
}

impl StageKind {
    /// A shell command.
    pub fn run() -> StageKind {
        StageKind {
            name: "run".to_owned(),
            version: 1,
        }
    }
}

/// An input's path and content digest, as the key sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InputDigest {
    pub path: String,
    pub digest: String,
}

/// Everything that can change a stage's result, in canonical (sorted) form.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyMaterial<'a> {
    pub version: u32,
    pub kind: StageKind,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub command: &'a str,
    /// A builtin stage's options, references resolved.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub with: &'a serde_json::Value,
    pub params: &'a BTreeMap<String, serde_json::Value>,
    pub env: &'a BTreeMap<String, String>,
    pub inputs: BTreeMap<&'a str, InputDigest>,
    pub outputs: &'a BTreeMap<String, String>,
}

impl<'a> KeyMaterial<'a> {
    /// The key material of `stage` of `kind`, given each input's (path, digest) by name: the
    /// declared inputs, and for builtin stages the files they read.
    pub fn new(
        stage: &'a ResolvedStage,
        kind: StageKind,
        inputs: &'a BTreeMap<String, (String, String)>,
    ) -> KeyMaterial<'a> {
        KeyMaterial {
            version: KEY_VERSION,
            kind,
            command: &stage.command_template,
            with: &stage.with,
            params: &stage.params,
            env: &stage.env,
            inputs: inputs
                .iter()
                .map(|(name, (path, digest))| {
                    (
                        name.as_str(),
                        InputDigest {
                            path: path.clone(),
                            digest: digest.clone(),
                        },
                    )
                })
                .collect(),
            outputs: &stage.outputs,
        }
    }

    /// The canonical JSON that is hashed (shown by `-v` to explain a miss).
    pub fn canonical_json(&self) -> String {
        // Maps are BTreeMaps and structs serialise in declaration order: the text is canonical.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The key: blake3 of the canonical JSON, as 64 hex characters.
    pub fn key(&self) -> String {
        blake3::hash(self.canonical_json().as_bytes())
            .to_hex()
            .to_string()
    }
}
