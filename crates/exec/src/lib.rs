//! Execution: the scheduler that runs a plan's stages (in parallel where the DAG allows),
//! answers from the content-addressed cache, and produces the next lockfile; and `status`, which
//! says what a run would do and why. It knows nothing of YAML, candle or polars: it sees stages
//! through the plan and files through the store.

mod artifacts;
mod cache;
mod command;
mod devices;
mod observer;
mod outcome;
mod placement;
mod process;
mod reason;
mod runner;
mod status;

pub use artifacts::{from_locked, kind_name};
pub use command::PROGRESS_PREFIX;
pub use devices::{Gpu, Inventory, parse_devices};
pub use observer::{Observer, Silent};
pub use outcome::{StageOutcome, StageStatus};
pub use placement::Grant;
pub use process::reap_orphans;
pub use reason::Reason;
pub use runner::{RunOptions, RunReport, Unplaceable, check_placement, run};
pub use status::{Freshness, StageState, StatusReport, status};
