//! Running one stage's shell command: outputs cleared first (so a stale file is never taken for a
//! fresh one), stdout and stderr teed to `.sluice/logs/STAGE.log` and kept as a tail for error
//! reports, and the whole process group terminated on cancellation.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

use crate::observer::Observer;
use crate::process::{signal_group, spawn_shell};

/// Lines kept of a failed command's output.
const TAIL_LINES: usize = 20;
/// How long a cancelled command gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// How a command ended badly.
#[derive(Debug)]
pub struct CommandFailure {
    pub error: String,
    pub tail: Vec<String>,
    pub cancelled: bool,
}

/// Removes whatever is at each output path and creates the parent directories.
pub fn prepare_outputs(workspace: &Path, outputs: &BTreeMap<String, String>) -> Result<(), String> {
    for path in outputs.values() {
        let full = workspace.join(path);
        let removed = match std::fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&full),
            Ok(_) => std::fs::remove_file(&full),
            Err(_) => Ok(()),
        };
        removed.map_err(|e| format!("cannot clear output {path}: {e}"))?;
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create directory for output {path}: {e}"))?;
        }
    }
    Ok(())
}

struct Tail {
    lines: Mutex<VecDeque<String>>,
}

impl Tail {
    fn new() -> Arc<Tail> {
        Arc::new(Tail {
            lines: Mutex::new(VecDeque::new()),
        })
    }

    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn take(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect()
    }
}

/// The stage's log file, created at the first line (most stages print nothing, and on some
/// file systems every new file costs a millisecond).
struct Log {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    failed: bool,
}

impl Log {
    fn write(&mut self, bytes: &[u8]) {
        use std::io::Write;
        if self.file.is_none() && !self.failed {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            self.file = std::fs::File::create(&self.path).ok();
            self.failed = self.file.is_none();
        }
        if let Some(f) = self.file.as_mut() {
            let _ = f.write_all(bytes);
        }
    }
}

/// What a command prints on stdout to report progress: `sluice-progress: step 10/100 loss 0.53`.
pub const PROGRESS_PREFIX: &str = "sluice-progress:";

async fn pump(
    reader: impl AsyncRead + Unpin,
    stage: String,
    log: Arc<Mutex<Log>>,
    tail: Arc<Tail>,
    observer: Arc<dyn Observer>,
    stream: bool,
) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                log.lock().unwrap_or_else(|e| e.into_inner()).write(&buf);
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                if let Some(message) = line.strip_prefix(PROGRESS_PREFIX) {
                    observer.progress(&stage, message.trim());
                } else if stream {
                    observer.output(&stage, &line);
                }
                tail.push(line);
            }
        }
    }
}

/// Stops a command's process group: SIGTERM, then SIGKILL after [`GRACE`]; drops its output.
async fn stop(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
    pumps: Vec<tokio::task::JoinHandle<()>>,
) {
    if let Some(pid) = pid {
        signal_group(pid, libc::SIGTERM);
        if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
            signal_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
        }
    }
    for p in pumps {
        p.abort();
    }
}

/// Runs `command` for `stage` in `workspace`; Ok when it exits with status 0.
#[allow(clippy::too_many_arguments)]
pub async fn run_command(
    workspace: &Path,
    log_path: &Path,
    stage: &str,
    command: &str,
    env: &BTreeMap<String, String>,
    observer: Arc<dyn Observer>,
    stream: bool,
    timeout: Option<Duration>,
    mut cancel: watch::Receiver<bool>,
) -> Result<(), CommandFailure> {
    let fail = |error: String| CommandFailure {
        error,
        tail: Vec::new(),
        cancelled: false,
    };
    // An old log would describe another run.
    let _ = std::fs::remove_file(log_path);
    let log = Arc::new(Mutex::new(Log {
        path: log_path.to_path_buf(),
        file: None,
        failed: false,
    }));
    tracing::trace!(stage, "spawning");
    let mut child = spawn_shell(command, workspace, env)
        .map_err(|e| fail(format!("cannot start `sh`: {e}")))?;
    let pid = child.id();
    tracing::trace!(stage, "spawned");
    let out_tail = Tail::new();
    let err_tail = Tail::new();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut pumps = Vec::new();
    if let Some(s) = stdout {
        pumps.push(tokio::spawn(pump(
            s,
            stage.to_owned(),
            log.clone(),
            out_tail.clone(),
            observer.clone(),
            stream,
        )));
    }
    if let Some(s) = stderr {
        pumps.push(tokio::spawn(pump(
            s,
            stage.to_owned(),
            log.clone(),
            err_tail.clone(),
            observer.clone(),
            stream,
        )));
    }
    let cancelled = async {
        let _ = cancel.wait_for(|c| *c).await;
    };
    let timed_out = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let status = tokio::select! {
        status = child.wait() => status,
        () = timed_out => {
            stop(&mut child, pid, pumps).await;
            let limit = timeout.map(|t| sluice_plan::Span(t).to_string()).unwrap_or_default();
            return Err(CommandFailure {
                error: format!("timed out after {limit}"),
                tail: err_tail.take(),
                cancelled: false,
            });
        }
        () = cancelled => {
            stop(&mut child, pid, pumps).await;
            return Err(CommandFailure {
                error: "cancelled".into(),
                tail: err_tail.take(),
                cancelled: true,
            });
        }
    };
    tracing::trace!(stage, "exited");
    // The shell is gone; anything it left in the background must not outlive the stage.
    if let Some(pid) = pid {
        signal_group(pid, libc::SIGKILL);
    }
    for p in pumps {
        let _ = p.await;
    }
    tracing::trace!(stage, "drained");
    let status = status.map_err(|e| fail(format!("cannot wait for the command: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let mut tail = err_tail.take();
    if tail.is_empty() {
        tail = out_tail.take();
    }
    let error = match status.code() {
        Some(code) => format!("command exited with status {code}"),
        None => {
            use std::os::unix::process::ExitStatusExt;
            format!(
                "command was killed by signal {}",
                status.signal().unwrap_or(0)
            )
        }
    };
    Err(CommandFailure {
        error,
        tail,
        cancelled: false,
    })
}
