//! Exit codes and errors that are reported in a form of their own.

use sluice_spec::SpecErrors;

/// Everything went as asked.
pub const OK: u8 = 0;
/// A stage failed, the workflow is invalid, `--frozen` or `repro` found a difference.
pub const FAILED: u8 = 1;
/// Interrupted by Ctrl-C or SIGTERM (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;

/// Errors shown without the generic "error:" chain.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A workflow file's errors, already positioned and worded.
    #[error("{0}")]
    Spec(SpecErrors),
}
