//! How the runner tells the front end what is happening, without knowing how it is shown.

use crate::outcome::StageOutcome;

/// Receives run events; every method has a do-nothing default.
pub trait Observer: Send + Sync {
    /// A stage's command is about to start on `device` (`cpu`, `gpu:1`).
    fn started(&self, _stage: &str, _device: &str) {}
    /// A stage reported progress (a `sluice-progress: …` line of a command's stdout).
    fn progress(&self, _stage: &str, _message: &str) {}
    /// A stage finished, one way or another.
    fn finished(&self, _outcome: &StageOutcome) {}
    /// A line the stage's command wrote (only when output streaming is on).
    fn output(&self, _stage: &str, _line: &str) {}
    /// Something the user should know that is not an error (a corrupt cache object, say).
    fn warn(&self, _message: &str) {}
}

/// An observer that ignores everything.
pub struct Silent;

impl Observer for Silent {}
