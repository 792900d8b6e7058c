//! Spawning a stage's shell command in a process group of its own, so that cancellation reaches
//! every process it started, and with a parent-death signal, so that `kill -9` of sluice does not
//! leave the shell running. The only module with `unsafe` (two libc calls, each explained).

#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use tokio::process::{Child, Command};

/// Starts `sh -c command` in `dir`, stdout and stderr piped, in a new process group.
pub fn spawn_shell(
    command: &str,
    dir: &Path,
    env: &BTreeMap<String, String>,
) -> std::io::Result<Child> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent;
    // it is the documented way for a child to die with the process that spawned it.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
}

/// Sends `signal` to every process in the group led by `pid`.
pub fn signal_group(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) with a negative pid signals a process group; it has no memory effects.
    unsafe {
        libc::kill(-pid, signal);
    }
}
