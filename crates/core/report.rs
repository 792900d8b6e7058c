//! How a run is shown. Live mode (a terminal): one line per running stage (name, device, elapsed,
//! the stage's own progress) and an overall bar, through indicatif, with finished stages printed
//! above them. Plain mode (not a terminal, or `--progress plain`): one line per event. With
//! `--json`, nothing but warnings goes to stderr and the summary goes to stdout.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use sluice_exec::{Observer, StageOutcome, StageStatus};

use crate::cli::ProgressMode;

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

/// The line printed when a stage finishes, and the tail of a failed command's output.
fn finished_lines(o: &StageOutcome, width: usize) -> Vec<String> {
    let detail = match o.status {
        StageStatus::Ran => {
            let mut d = human_duration(o.duration_ms);
            if let Some(device) = o.device.as_deref().filter(|d| *d != "cpu") {
                d = format!("{d} on {device}");
            }
            if o.reasons.is_empty() {
                d
            } else {
                format!("{d:<7} {}", o.reasons.join("; "))
            }
        }
        StageStatus::Cached => o.reasons.join("; "),
        StageStatus::Failed => o.error.clone().unwrap_or_default(),
        StageStatus::Skipped | StageStatus::Cancelled => o.reasons.join("; "),
    };
    let metrics = if o.metrics.is_empty() || o.status == StageStatus::Cached {
        String::new()
    } else {
        let shown: Vec<String> = o
            .metrics
            .iter()
            .map(|(k, v)| {
                if v.fract() == 0.0 && v.abs() < 1e15 {
                    format!("{k}={}", *v as i64)
                } else {
                    format!("{k}={v:.4}")
                }
            })
            .collect();
        format!("  [{}]", shown.join(" "))
    };
    let mut lines = vec![
        format!(
            "  {:<9} {:<width$} {detail}{metrics}",
            o.status.as_str(),
            o.name
        )
        .trim_end()
        .to_owned(),
    ];
    if !o.stderr_tail.is_empty() {
        lines.push(format!(
            "  ┌─ last lines of output (full log: .sluice/logs/{}.log)",
            o.name
        ));
        lines.extend(o.stderr_tail.iter().map(|l| format!("  │ {l}")));
        lines.push("  └─".to_owned());
    }
    lines
}

/// Builds the observer for a run of `total` stages.
pub fn printer(mode: ProgressMode, width: usize, total: usize, json: bool) -> Box<dyn Observer> {
    let live = match mode {
        ProgressMode::Plain => false,
        ProgressMode::Auto => std::io::stderr().is_terminal(),
    };
    if live && !json {
        Box::new(Live::new(width, total))
    } else {
        Box::new(Plain {
            width,
            quiet: json,
            last_progress: Mutex::new(HashMap::new()),
        })
    }
}

/// One line per event on stderr.
struct Plain {
    width: usize,
    quiet: bool,
    /// When each stage's progress was last printed: at most one line per 10 s per stage.
    last_progress: Mutex<HashMap<String, Instant>>,
}

impl Observer for Plain {
    fn started(&self, stage: &str, device: &str) {
        if !self.quiet {
            eprintln!("  {:<9} {stage:<w$} {device}", "running", w = self.width);
        }
    }

    fn progress(&self, stage: &str, message: &str) {
        if self.quiet {
            return;
        }
        let mut last = self.last_progress.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last
            .get(stage)
            .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(10))
        {
            return;
        }
        last.insert(stage.to_owned(), now);
        eprintln!("  {:<9} {stage:<w$} {message}", "progress", w = self.width);
    }

    fn finished(&self, o: &StageOutcome) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        for line in finished_lines(o, self.width) {
            let _ = writeln!(err, "{line}");
        }
    }

    fn output(&self, stage: &str, line: &str) {
        eprintln!("  [{stage}] {line}");
    }

    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
}

/// Live lines per running stage and an overall bar.
struct Live {
    width: usize,
    multi: MultiProgress,
    overall: ProgressBar,
    running: Mutex<HashMap<String, (ProgressBar, String)>>,
}

impl Live {
    fn new(width: usize, total: usize) -> Live {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template("  {bar:30.cyan/blue} {pos}/{len} stages  {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        overall.enable_steady_tick(Duration::from_millis(200));
        Live {
            width,
            multi,
            overall,
            running: Mutex::new(HashMap::new()),
        }
    }

    fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }
}

impl Observer for Live {
    fn started(&self, stage: &str, device: &str) {
        let bar = self
            .multi
            .insert_before(&self.overall, ProgressBar::new_spinner());
        let template = format!(
            "  {{spinner:.green}} {{prefix:<{}}} {{msg}} {{elapsed}}",
            self.width
        );
        bar.set_style(
            ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(stage.to_owned());
        bar.set_message(format!("[{device}]"));
        bar.enable_steady_tick(Duration::from_millis(120));
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((old, _)) = running.insert(stage.to_owned(), (bar, device.to_owned())) {
            old.finish_and_clear();
        }
    }

    fn progress(&self, stage: &str, message: &str) {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((bar, device)) = running.get(stage) {
            bar.set_message(format!("[{device}] {message}"));
        }
    }

    fn finished(&self, o: &StageOutcome) {
        if let Some((bar, _)) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&o.name)
        {
            bar.finish_and_clear();
        }
        for line in finished_lines(o, self.width) {
            self.println(&line);
        }
        self.overall.inc(1);
    }

    fn output(&self, stage: &str, line: &str) {
        self.println(&format!("  [{stage}] {line}"));
    }

    fn warn(&self, message: &str) {
        self.println(&format!("warning: {message}"));
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.overall.finish_and_clear();
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
