//! Planning: compiles a validated workflow into a DAG of stages (petgraph), orders it, and
//! computes the cache key of a stage from its definition and its inputs' digests. Pure: no IO,
//! no tokio; it knows nothing of files on disk.

mod key;
mod plan;

pub use key::{InputDigest, KEY_VERSION, KeyMaterial, StageKind};
pub use plan::Plan;
pub use sluice_spec::{ByteSize, InputSource, Needs, ResolvedStage, ResolvedWorkflow, Span};
