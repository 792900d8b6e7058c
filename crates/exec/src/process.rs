//! Spawning a stage's shell command in a process group of its own, so that cancellation reaches
//! every process it started; and, after a crash, finding the process groups a dead sluice left
//! running. The only module with `unsafe` (libc calls, each explained).
//!
//! Commands are started with `posix_spawn` (no `pre_exec` hook, which would force a much slower
//! `fork` from this multi-threaded process). Instead of a parent-death signal, each command carries
//! `SLUICE_WORKSPACE` and `SLUICE_PARENT` in its environment, and the next sluice to take the
//! workspace lock after a crash kills the groups whose parent is gone ([`reap_orphans`]).

#![allow(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use tokio::process::{Child, Command};

/// Environment variables that tie a command to the sluice that started it.
pub const WORKSPACE_VAR: &str = "SLUICE_WORKSPACE";
pub const PARENT_VAR: &str = "SLUICE_PARENT";

/// Starts `sh -c command` in `dir`, stdout and stderr piped, in a new process group.
pub fn spawn_shell(
    command: &str,
    dir: &Path,
    env: &BTreeMap<String, String>,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(shell());
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .envs(env)
        .env(WORKSPACE_VAR, dir)
        .env(PARENT_VAR, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn()
}

/// `sh` as found on `PATH`, looked up once: a spawn by bare name tries every `PATH` entry with
/// a failing `execve` first, which costs each of a thousand stages a little.
fn shell() -> &'static Path {
    static SHELL: OnceLock<PathBuf> = OnceLock::new();
    SHELL.get_or_init(|| {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("sh"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("sh"))
    })
}

/// Sends `signal` to every process in the group led by `pid`.
pub fn signal_group(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) with a negative pid signals a process group; it has no memory effects.
    unsafe {
        libc::kill(-pid, signal);
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn group_of(pid: i32) -> Option<i32> {
    // SAFETY: getpgid(2) reads a process's group id; it has no memory effects.
    let g = unsafe { libc::getpgid(pid) };
    (g > 0).then_some(g)
}

/// Kills the process groups of commands that a sluice process, now dead, started in `workspace`
/// (found through their environment in `/proc`). Returns how many groups it killed.
pub fn reap_orphans(workspace: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let want_ws = format!("{WORKSPACE_VAR}={}", workspace.display());
    let mut groups = BTreeSet::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if !vars.contains(&want_ws.as_bytes()) {
            continue;
        }
        let parent = vars.iter().find_map(|v| {
            std::str::from_utf8(v)
                .ok()?
                .strip_prefix(PARENT_VAR)?
                .strip_prefix('=')?
                .parse::<i32>()
                .ok()
        });
        if let Some(parent) = parent
            && parent != std::process::id() as i32
            && !alive(parent)
            && let Some(group) = group_of(pid)
        {
            groups.insert(group);
        }
    }
    for g in &groups {
        signal_group(*g as u32, libc::SIGKILL);
    }
    groups.len()
}
