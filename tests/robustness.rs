//! Crashes, interruptions, concurrent runs and a corrupted store never leave a bad cache or a
//! half-written lockfile.

use std::process::Stdio;
use std::time::Duration;

use crate::support::{Test, wait_for};

/// `first` is quick; `second` signals that it started, then waits for a `release` file.
const GATED: &str = r#"version: 1
name: gated
stages:
  first:
    run: echo one > ${{ outputs.o }}
    outputs: {o: out/first.txt}
  second:
    run: touch started; while [ ! -f release ]; do sleep 0.05; done; cat ${{ stages.first.outputs.o }} > ${{ outputs.o }}
    outputs: {o: out/second.txt}
"#;

fn no_temp_leftovers(t: &Test) {
    let tmp = t.path(".sluice/tmp");
    let n = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(n, 0, "leftovers in .sluice/tmp");
}

#[test]
fn kill_9_in_the_middle_of_a_stage_then_run_again() {
    let t = Test::new();
    t.workflow(GATED);
    let mut child = t
        .command(&["run", "wf.yaml", "-j", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&t.path("started"));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::fs::remove_file(t.path("started")).unwrap();
    t.write("release", "");
    let r = t.run(&[]);
    assert_eq!(
        r.status_of("first"),
        "cached",
        "completed stages are not re-run"
    );
    assert_eq!(r.status_of("second"), "ran");
    assert_eq!(t.read("out/second.txt"), "one\n");
    no_temp_leftovers(&t);
    // The lockfile is whole and the store consistent: a third run is a no-op.
    assert!(t.run(&[]).statuses().iter().all(|(_, s)| s == "cached"));
    t.sluice(&["repro", "wf.yaml"]).ok();
}

#[test]
fn a_second_run_waits_for_the_first() {
    let t = Test::new();
    t.workflow(GATED);
    let first = t
        .command(&["run", "wf.yaml", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&t.path("started"));
    let second = t
        .command(&["run", "wf.yaml", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    t.write("release", "");
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    assert!(first.status.success());
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("waiting for another sluice process"),
        "{stderr}"
    );
    let j: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert!(
        j["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "cached"),
        "{j}"
    );
}

/// The object holding `content`.
fn object_with(t: &Test, content: &str) -> std::path::PathBuf {
    t.objects()
        .into_iter()
        .find(|p| std::fs::read_to_string(p).is_ok_and(|c| c == content))
        .expect("object")
}

fn flip_a_byte(path: &std::path::Path) {
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_corrupted_object_is_detected_and_rebuilt() {
    let t = Test::diamond();
    t.run(&[]);
    flip_a_byte(&object_with(&t, "ALPHA\nBETA\n"));
    std::fs::remove_file(t.path("build/upper.txt")).unwrap();
    let r = t.sluice(&["run", "wf.yaml", "--json"]).ok();
    r.stderr_has("is corrupt");
    assert_eq!(r.status_of("prep"), "cached");
    assert_eq!(r.status_of("upper"), "ran");
    assert_eq!(t.read("build/upper.txt"), "ALPHA\nBETA\n");
    // Rebuilt: the store is whole again.
    let r = t.run(&[]);
    assert!(r.statuses().iter().all(|(_, s)| s == "cached"));
    assert!(!r.stderr.contains("corrupt"));
}

#[test]
fn corruption_is_found_even_when_the_workspace_copy_is_intact() {
    let t = Test::diamond();
    t.run(&[]);
    flip_a_byte(&object_with(&t, "v1 2\n"));
    let r = t.sluice(&["run", "wf.yaml", "--json"]).ok();
    r.stderr_has("is corrupt");
    assert_eq!(r.status_of("count"), "ran");
}

#[test]
fn sigint_cancels_running_stages_and_the_next_run_resumes() {
    let t = Test::new();
    t.workflow(GATED);
    let child = t
        .command(&["run", "wf.yaml", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&t.path("started"));
    let pid = i32::try_from(child.id()).unwrap();
    std::process::Command::new("kill")
        .arg("-INT")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let second = j["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "second")
        .unwrap()
        .clone();
    assert_eq!(second["status"], "cancelled");
    assert!(!t.exists("out/second.txt"));
    no_temp_leftovers(&t);
    t.write("release", "");
    let r = t.run(&[]);
    assert_eq!(r.status_of("first"), "cached");
    assert_eq!(r.status_of("second"), "ran");
}

#[test]
fn sigterm_cancels_like_ctrl_c() {
    let t = Test::new();
    t.workflow(GATED);
    let child = t
        .command(&["run", "wf.yaml", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&t.path("started"));
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The completed stage is in the lockfile; the cancelled one is not.
    let lock = t.read("wf.lock");
    assert!(
        lock.contains("first:") && !lock.contains("second:"),
        "{lock}"
    );
}

/// Whether any process's command line contains `needle`.
fn running(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
            .unwrap_or(false)
    })
}

#[test]
fn commands_left_running_by_a_killed_sluice_are_stopped_by_the_next() {
    let t = Test::new();
    t.workflow("version: 1\nname: orphan\nstages:\n  slow:\n    run: touch started; sleep 123.4567; echo > ${{ outputs.o }}\n    outputs: {o: o.txt}\n");
    let mut child = t
        .command(&["run", "wf.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&t.path("started"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        running("sleep 123.4567"),
        "the command outlives a kill -9 of sluice"
    );
    let r = t.sluice(&["status", "wf.yaml"]).ok();
    r.stderr_has("died in this workspace; stopped 1 command it left running");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!running("sleep 123.4567"), "the next sluice stops it");
}
