//! What the spec needs to know about builtin stage kinds (`uses: collect`) without depending on
//! them: their names, outputs and option schemas, and a check of their `with:` options. The
//! binary implements [`Kinds`] over its catalog of stage kinds; tests can use [`NoKinds`].

/// An output of a stage kind and the file name it gets by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindOutput {
    pub name: String,
    pub file: String,
    pub description: String,
}

/// A builtin stage kind, as the spec sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct KindInfo {
    pub name: String,
    pub description: String,
    pub outputs: Vec<KindOutput>,
    /// The JSON Schema of its `with:` options.
    pub schema: serde_json::Value,
}

/// A problem in `with:`, at a path inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithError {
    pub path: Vec<String>,
    pub message: String,
    pub hint: Option<String>,
}

/// The builtin stage kinds a workflow may use.
pub trait Kinds {
    fn kinds(&self) -> Vec<KindInfo>;
    /// Checks resolved options (params are values, stage references are paths).
    fn check(&self, kind: &str, with: &serde_json::Value) -> Vec<WithError>;
}

/// No builtin kinds: only `run` stages.
pub struct NoKinds;

impl Kinds for NoKinds {
    fn kinds(&self) -> Vec<KindInfo> {
        Vec::new()
    }

    fn check(&self, _kind: &str, _with: &serde_json::Value) -> Vec<WithError> {
        Vec::new()
    }
}
