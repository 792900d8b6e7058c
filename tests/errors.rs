//! Bad workflow files: one clear error each, with file:line:column and a hint, and exit 1.

use crate::support::Test;

/// Validates `yaml` as wf.yaml and checks that stderr holds every fragment.
fn check(yaml: &str, fragments: &[&str]) {
    let t = Test::new();
    t.workflow(yaml);
    let r = t.sluice(&["validate", "wf.yaml"]).fails(1);
    for f in fragments {
        assert!(r.stderr.contains(f), "stderr lacks {f:?}:\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn unknown_key_with_the_closest_valid_one() {
    check(
        "version: 1\nname: x\nstages:\n  a:\n    rnu: echo\n",
        &[
            "error: unknown key `rnu` in stage `a`",
            "--> wf.yaml:5:5",
            "5 |     rnu: echo",
            "^^^",
            "hint: did you mean `run`?",
        ],
    );
    check(
        "version: 1\nnmae: x\nstages: {}\n",
        &[
            "unknown key `nmae` in the workflow",
            "wf.yaml:2:1",
            "did you mean `name`?",
        ],
    );
}

#[test]
fn unknown_stage_or_output_in_a_reference() {
    check(
        "version: 1\nname: x\nstages:\n  prep:\n    run: echo > ${{ outputs.o }}\n    outputs: {o: a.txt}\n  use:\n    run: cat ${{ stages.prpe.outputs.o }}\n",
        &[
            "unknown stage `prpe` in `${{ stages.prpe.outputs.o }}`",
            "wf.yaml:8:14",
            "did you mean `prep`?",
        ],
    );
    check(
        "version: 1\nname: x\nstages:\n  prep:\n    run: echo > ${{ outputs.data }}\n    outputs: {data: a.txt}\n  use:\n    run: cat x\n    inputs:\n      d: ${{ stages.prep.outputs.dat }}\n",
        &[
            "stage `prep` has no output `dat`",
            "wf.yaml:10:10",
            "did you mean `data`? (stage `prep` has outputs: `data`)",
        ],
    );
    // Nothing close: the outputs, listed once.
    let t = Test::new();
    t.workflow("version: 1\nname: x\nstages:\n  prep:\n    run: echo > ${{ outputs.o }}\n    outputs: {o: a.txt}\n  use:\n    run: cat ${{ stages.prep.outputs.report }}\n");
    let r = t.sluice(&["validate", "wf.yaml"]).fails(1);
    assert!(
        r.stderr.contains("hint: valid outputs: `o`\n"),
        "{}",
        r.stderr
    );
}

#[test]
fn dependency_cycle_names_the_cycle() {
    check(
        "version: 1\nname: x\nstages:\n  a:\n    run: cat ${{ stages.b.outputs.o }} > ${{ outputs.o }}\n    outputs: {o: a.txt}\n  b:\n    run: cat ${{ stages.a.outputs.o }} > ${{ outputs.o }}\n    outputs: {o: b.txt}\n",
        &["dependency cycle: a → b → a", "wf.yaml:8:14"],
    );
}

#[test]
fn duplicate_output_paths() {
    check(
        "version: 1\nname: x\nstages:\n  a:\n    run: x\n    outputs: {o: out/a.txt}\n  b:\n    run: y\n    outputs: {o: ./out//a.txt}\n",
        &[
            "output path `out/a.txt` of stage `b` is also the output `o` of stage `a`",
            "wf.yaml:9:18",
        ],
    );
    check(
        "version: 1\nname: x\nstages:\n  a:\n    run: x\n    outputs: {o: out}\n  b:\n    run: y\n    outputs: {o: out/b.txt}\n",
        &["overlaps the output `o` of stage `a`"],
    );
}

#[test]
fn output_paths_outside_the_workspace() {
    check(
        "version: 1\nname: x\nstages:\n  a:\n    run: x\n    outputs:\n      o: ../escape.txt\n",
        &[
            "invalid output path for `o` of stage `a`: `../escape.txt` is outside the workspace",
            "wf.yaml:7:10",
        ],
    );
    check(
        "version: 1\nname: x\nstages:\n  a:\n    run: x\n    outputs:\n      o: /tmp/abs.txt\n",
        &["`/tmp/abs.txt` is an absolute path"],
    );
}

#[test]
fn undefined_param() {
    check(
        "version: 1\nname: x\nparams:\n  lr: 0.1\nstages:\n  a:\n    run: train --lr ${{ params.lrr }}\n",
        &[
            "param `lrr` is not defined",
            "wf.yaml:7:21",
            "did you mean `lr`?",
        ],
    );
}

#[test]
fn wrong_types() {
    check(
        "version: one\nname: x\nstages: {}\n",
        &["wrong type for `version`", "expected u32", "wf.yaml:1:10"],
    );
    check(
        "version: 1\nname: x\nstages:\n  a:\n    run: [echo, hi]\n",
        &[
            "wrong type for `run` of stage `a`: expected a string",
            "wf.yaml:5:10",
        ],
    );
    check(
        "version: 1\nname: x\nstages:\n  a:\n    inputs: {}\n",
        &[
            "stage `a` has neither `run` nor `uses`",
            "wf.yaml:4:3",
            "add `run: <shell command>`",
        ],
    );
}

#[test]
fn invalid_yaml_and_duplicate_keys() {
    check("version: 1\nname: [x\n", &["invalid YAML", "wf.yaml:3"]);
    check(
        "version: 1\nname: x\nstages:\n  a:\n    run: x\n  a:\n    run: y\n",
        &[
            "duplicate key `stages.a`",
            "wf.yaml:6:3",
            "first defined at line 4",
        ],
    );
    check("", &["the workflow file is empty"]);
}

#[test]
fn inputs_that_are_another_stages_output_must_be_references() {
    check(
        "version: 1\nname: x\nstages:\n  a:\n    run: x\n    outputs: {o: out/a.txt}\n  b:\n    run: y\n    inputs: {i: out/a.txt}\n",
        &[
            "input `i` of stage `b` is `out/a.txt`, which stage `a` writes",
            "write `${{ stages.a.outputs.o }}`",
        ],
    );
}

#[test]
fn io_references_must_exist() {
    check(
        "version: 1\nname: x\nstages:\n  a:\n    run: cat ${{ inputs.dta }} > ${{ outputs.o }}\n    inputs: {data: d.txt}\n    outputs: {o: o.txt}\n",
        &["the stage has no input `dta`", "did you mean `data`?"],
    );
}

#[test]
fn a_missing_workflow_file() {
    let t = Test::new();
    t.sluice(&["run", "nope.yaml"])
        .fails(1)
        .stderr_has("workflow file nope.yaml does not exist");
}
