//! How outcomes are shown: one line per stage on stderr as stages finish, a summary at the end,
//! or one JSON object on stdout with `--json`. Human output goes to stderr, machine output to
//! stdout.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use sluice_exec::{Observer, StageOutcome, StageStatus};

/// Prints stage events to stderr as they happen.
pub struct Printer {
    width: usize,
    quiet: bool,
    /// "running" lines only help someone watching a terminal.
    live: bool,
    lock: Mutex<()>,
}

impl Printer {
    pub fn new(width: usize, quiet: bool) -> Printer {
        Printer {
            width,
            quiet,
            live: std::io::stderr().is_terminal(),
            lock: Mutex::new(()),
        }
    }
}

pub fn human_duration(ms: u64) -> String {
    let d = Duration::from_millis(ms);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

impl Observer for Printer {
    fn started(&self, stage: &str) {
        if self.quiet || !self.live {
            return;
        }
        let _guard = self.lock.lock();
        eprintln!("  {:<9} {stage}", "running");
    }

    fn finished(&self, o: &StageOutcome) {
        if self.quiet {
            return;
        }
        let _guard = self.lock.lock();
        let mut err = std::io::stderr().lock();
        let detail = match o.status {
            StageStatus::Ran if o.reasons.is_empty() => human_duration(o.duration_ms),
            StageStatus::Ran => format!(
                "{:<7} {}",
                human_duration(o.duration_ms),
                o.reasons.join("; ")
            ),
            StageStatus::Cached if !o.reasons.is_empty() => o.reasons.join("; "),
            StageStatus::Cached => String::new(),
            StageStatus::Failed => o.error.clone().unwrap_or_default(),
            StageStatus::Skipped | StageStatus::Cancelled => o.reasons.join("; "),
        };
        let _ = writeln!(
            err,
            "  {:<9} {:<w$} {detail}",
            o.status.as_str(),
            o.name,
            w = self.width
        )
        .map(|_| ());
        if o.status == StageStatus::Ran && !o.reasons.is_empty() {
            let _ = writeln!(
                err,
                "  {:<9} {:<w$} ({})",
                "",
                "",
                o.reasons.join("; "),
                w = self.width
            );
        }
        if !o.stderr_tail.is_empty() {
            let _ = writeln!(
                err,
                "  ┌─ last lines of output (full log: .sluice/logs/{}.log)",
                o.name
            );
            for line in &o.stderr_tail {
                let _ = writeln!(err, "  │ {line}");
            }
            let _ = writeln!(err, "  └─");
        }
    }

    fn output(&self, stage: &str, line: &str) {
        let _guard = self.lock.lock();
        eprintln!("  [{stage}] {line}");
    }

    fn warn(&self, message: &str) {
        let _guard = self.lock.lock();
        eprintln!("warning: {message}");
    }
}

/// Counts per status, for the summary line.
pub fn tally(stages: &[StageOutcome]) -> String {
    let count = |s: StageStatus| stages.iter().filter(|o| o.status == s).count();
    let mut parts = vec![
        format!("{} ran", count(StageStatus::Ran)),
        format!("{} cached", count(StageStatus::Cached)),
        format!("{} failed", count(StageStatus::Failed)),
        format!("{} skipped", count(StageStatus::Skipped)),
    ];
    let cancelled = count(StageStatus::Cancelled);
    if cancelled > 0 {
        parts.push(format!("{cancelled} cancelled"));
    }
    parts.join(", ")
}

/// Prints `value` as one line of JSON on stdout.
pub fn print_json(value: &impl Serialize) {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    println!("{text}");
}
