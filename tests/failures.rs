//! Failing commands, missing inputs and outputs, --keep-going.

use crate::support::Test;

const BRANCHES: &str = r#"version: 1
name: branches
stages:
  good:
    run: echo ok > ${{ outputs.o }}
    outputs: {o: good.txt}
  bad:
    run: echo partial > ${{ outputs.o }}; echo "something broke" >&2; exit 3
    outputs: {o: bad.txt}
  after-bad:
    run: cat ${{ stages.bad.outputs.o }} > ${{ outputs.o }}
    outputs: {o: after.txt}
  after-good:
    run: cat ${{ stages.good.outputs.o }} > ${{ outputs.o }}
    outputs: {o: after-good.txt}
"#;

#[test]
fn a_failing_command_stops_the_run_and_shows_its_stderr() {
    let t = Test::new();
    t.workflow(BRANCHES);
    let r = t.sluice(&["run", "wf.yaml", "-j", "1"]).fails(1);
    r.stderr_has("stage `bad`: command exited with status 3");
    r.stderr_has("│ something broke");
    let j = t
        .sluice(&["run", "wf.yaml", "-j", "1", "--json"])
        .fails(1)
        .json();
    assert_eq!(j["ok"], false);
    let bad = &j["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "bad")
        .unwrap()
        .clone();
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["stderr_tail"][0], "something broke");
    let after = j["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "after-bad")
        .unwrap()
        .clone();
    assert_eq!(after["status"], "skipped");
    // Nothing of the failed stage entered the store or the lockfile.
    assert!(!t.read("wf.lock").contains("bad:"));
    let status = t.sluice(&["status", "wf.yaml", "--json"]).ok().json();
    let bad = status["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "bad")
        .unwrap()
        .clone();
    assert_eq!(bad["status"], "stale");
}

#[test]
fn keep_going_runs_every_independent_branch() {
    let t = Test::new();
    t.workflow(BRANCHES);
    let r = t
        .sluice(&["run", "wf.yaml", "-j", "1", "--keep-going", "--json"])
        .fails(1);
    assert_eq!(r.status_of("good"), "ran");
    assert_eq!(r.status_of("after-good"), "ran");
    assert_eq!(r.status_of("bad"), "failed");
    assert_eq!(r.status_of("after-bad"), "skipped");
    assert!(t.read("wf.lock").contains("after-good:"));
}

#[test]
fn a_missing_input_names_the_stage_and_the_path() {
    let t = Test::new();
    t.workflow("version: 1\nname: m\nstages:\n  read:\n    run: cat ${{ inputs.src }} > ${{ outputs.o }}\n    inputs: {src: data/nope.csv}\n    outputs: {o: o.txt}\n");
    let r = t.sluice(&["run", "wf.yaml"]).fails(1);
    r.stderr_has("stage `read`: input `src` not found: data/nope.csv");
    t.sluice(&["status", "wf.yaml"])
        .ok()
        .stdout_has("input `src` is missing (data/nope.csv)");
}

#[test]
fn a_command_that_does_not_write_its_output_fails() {
    let t = Test::new();
    t.workflow(
        "version: 1\nname: m\nstages:\n  lazy:\n    run: 'true'\n    outputs: {o: out/o.txt}\n",
    );
    t.sluice(&["run", "wf.yaml"])
        .fails(1)
        .stderr_has("stage `lazy` did not write its output `o` (out/o.txt)");
}

#[test]
fn a_stale_output_is_cleared_before_the_command_runs() {
    let t = Test::new();
    t.write("out/o.txt", "left over\n");
    t.workflow(
        "version: 1\nname: m\nstages:\n  lazy:\n    run: 'true'\n    outputs: {o: out/o.txt}\n",
    );
    t.sluice(&["run", "wf.yaml"]).fails(1);
    assert!(!t.exists("out/o.txt"));
}
