//! The workflow file: parsing YAML with positions, interpolating `${{ … }}` references,
//! validating, and generating the JSON Schema. Pure: it reads no files (callers pass the text)
//! and knows nothing of stores, scheduling, candle or polars.

mod error;
mod kinds;
mod quantity;
mod resolve;
mod resolved;
mod schema;
mod template;
mod workflow;
mod yaml;

pub use error::{Pos, SpecError, SpecErrors, closest, suggestion};
pub use kinds::{KindInfo, KindOutput, Kinds, NoKinds, WithError};
pub use quantity::{ByteSize, Span};
pub use resolve::{ParamOverride, load, normalise_path};
pub use resolved::{Dependency, InputSource, Needs, ResolvedStage, ResolvedWorkflow};
pub use schema::json_schema;
pub use template::{Ref, Segment};
pub use workflow::{FORMAT_VERSION, Fallback, Resources, Stage, Workflow};
