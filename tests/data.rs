//! Builtin data stages (collect, clean, augment, split) driven through the engine: caching,
//! keys that follow the files they read, determinism across thread counts, option errors.

use crate::support::Test;

const PIPELINE: &str = r#"version: 1
name: data
params:
  seed: 3
  min_chars: 4
stages:
  collect:
    uses: collect
    with:
      sources:
        - path: raw/*.jsonl
      fields: {input: q, output: a}
  clean:
    uses: clean
    with:
      data: ${{ stages.collect.outputs.data }}
      strip: ['\$[A-Z]{1,5}\b']
      min_chars: ${{ params.min_chars }}
      dedup: normalized
  augment:
    uses: augment
    with:
      data: ${{ stages.clean.outputs.data }}
      factor: 1.5
      seed: ${{ params.seed }}
  split:
    uses: split
    with:
      data: ${{ stages.augment.outputs.data }}
      ratios: {train: 0.6, validation: 0.2, test: 0.2}
      seed: ${{ params.seed }}
"#;

fn rows(n: usize) -> String {
    (0..n)
        .map(|i| {
            let q = format!("How do I reset router number {i}? I own $ACME");
            format!("{{\"id\": \"r{i}\", \"q\": \"{q}\", \"a\": \"Hold the button for {i} seconds.\"}}\n")
        })
        .collect()
}

fn pipeline() -> Test {
    let t = Test::new();
    // Row 0 appears twice, once in another case: normalized dedup drops it.
    let mut data = rows(40);
    data.push_str("{\"id\": \"dup\", \"q\": \"HOW DO I RESET ROUTER NUMBER 0? I own $ACME\", \"a\": \"Hold the button for 0 seconds.\"}\n");
    t.write("raw/a.jsonl", &data)
        .write("raw/b.jsonl", &rows(3))
        .workflow(PIPELINE);
    t
}

#[test]
fn data_stages_run_cache_and_report_metrics() {
    let t = pipeline();
    let r = t.run(&[]);
    assert!(r.statuses().iter().all(|(_, s)| s == "ran"), "{}", r.stdout);
    for f in [
        "collect/data.parquet",
        "collect/stats.json",
        "clean/data.parquet",
        "split/train.parquet",
        "split/validation.parquet",
        "split/test.parquet",
    ] {
        assert!(t.exists(&format!("build/data/{f}")), "{f}");
    }
    let j = r.json();
    let clean = j["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "clean")
        .unwrap()
        .clone();
    assert_eq!(clean["metrics"]["rows_in"], 44.0, "{clean}");
    assert!(
        clean["metrics"]["dropped_duplicate"].as_f64().unwrap() >= 1.0,
        "{clean}"
    );
    let lock = t.read("wf.lock");
    assert!(lock.contains("uses: clean"), "{lock}");
    assert!(lock.contains("rows_in:"), "{lock}");
    let r = t.run(&[]);
    assert!(
        r.statuses().iter().all(|(_, s)| s == "cached"),
        "{}",
        r.stdout
    );
    // Cached stages keep their metrics.
    assert_eq!(r.json()["stages"][1]["metrics"]["rows_in"], 44.0);
    t.sluice(&["status", "wf.yaml"])
        .ok()
        .stdout_has("everything is up to date");
}

#[test]
fn a_changed_source_file_reruns_collect_and_a_param_reruns_what_uses_it() {
    let t = pipeline();
    t.run(&[]);
    t.write("raw/b.jsonl", &rows(4));
    let r = t.run(&[]);
    assert_eq!(r.status_of("collect"), "ran");
    let reasons = r.json()["stages"][0]["reasons"].to_string();
    assert!(reasons.contains("raw/b.jsonl"), "{reasons}");
    let r = t.run(&["-p", "seed=4"]);
    assert_eq!(r.status_of("collect"), "cached");
    assert_eq!(r.status_of("clean"), "cached");
    assert_eq!(r.status_of("augment"), "ran");
    assert_eq!(r.status_of("split"), "ran");
    // A new source file matching the glob is an input too.
    t.write("raw/c.jsonl", &rows(2));
    assert_eq!(t.run(&["-p", "seed=4"]).status_of("collect"), "ran");
}

/// Every output's digest in the lockfile, as `stage.output digest` lines.
fn output_digests(t: &Test) -> Vec<String> {
    let lock: serde_yaml::Value = serde_yaml::from_str(&t.read("wf.lock")).unwrap();
    let mut out = Vec::new();
    for (stage, entry) in lock["stages"].as_mapping().unwrap() {
        for (name, o) in entry["outputs"].as_mapping().unwrap() {
            out.push(format!(
                "{}.{} {}",
                stage.as_str().unwrap(),
                name.as_str().unwrap(),
                o["digest"].as_str().unwrap()
            ));
        }
    }
    out
}

#[test]
fn outputs_are_byte_identical_whatever_the_thread_count() {
    let digests = |threads: &str| {
        let t = pipeline();
        let mut c = t.command(&["run", "wf.yaml", "--json"]);
        c.env("POLARS_MAX_THREADS", threads);
        assert!(c.output().unwrap().status.success());
        output_digests(&t)
    };
    let one = digests("1");
    assert_eq!(one.len(), 10);
    assert_eq!(one, digests("4"));
}

/// In one run a stage takes the frame the stage before it wrote instead of reading the file
/// back; a stage run on its own reads the file. Both write the same bytes.
#[test]
fn a_frame_handed_over_in_one_run_writes_what_the_file_read_back_writes() {
    let together = pipeline();
    together.run(&[]);
    let apart = pipeline();
    for stage in ["collect", "clean", "augment", "split"] {
        let run = apart.run(&["-s", stage]);
        assert_eq!(run.status_of(stage), "ran");
    }
    assert_eq!(output_digests(&together), output_digests(&apart));
}

#[test]
fn a_plain_workspace_file_as_data_is_an_input() {
    let t = pipeline();
    t.run(&[]);
    std::fs::copy(
        t.path("build/data/clean/data.parquet"),
        t.path("given.parquet"),
    )
    .unwrap();
    t.write("wf2.yaml", "version: 1\nname: given\nstages:\n  split:\n    uses: split\n    with:\n      data: given.parquet\n");
    let r = t.sluice(&["run", "wf2.yaml", "--json"]).ok();
    assert_eq!(r.status_of("split"), "ran");
    assert_eq!(
        t.sluice(&["run", "wf2.yaml", "--json"])
            .ok()
            .status_of("split"),
        "cached"
    );
    std::fs::copy(
        t.path("build/data/augment/data.parquet"),
        t.path("given.parquet"),
    )
    .unwrap();
    assert_eq!(
        t.sluice(&["run", "wf2.yaml", "--json"])
            .ok()
            .status_of("split"),
        "ran"
    );
}

#[test]
fn option_errors_point_at_the_option() {
    let t = Test::new();
    t.workflow("version: 1\nname: x\nstages:\n  clean:\n    uses: clean\n    with:\n      data: d.parquet\n      dedupe: exact\n");
    let r = t.sluice(&["validate", "wf.yaml"]).fails(1);
    r.stderr_has("--> wf.yaml:8:7");
    r.stderr_has("did you mean `dedup`?");
    t.workflow("version: 1\nname: x\nstages:\n  c:\n    uses: colect\n");
    t.sluice(&["validate", "wf.yaml"])
        .fails(1)
        .stderr_has("unknown stage kind `colect` in stage `c`")
        .stderr_has("did you mean `collect`?");
    t.workflow("version: 1\nname: x\nstages:\n  s:\n    uses: split\n    with:\n      data: d.parquet\n      ratios: {train: 0.5, validation: 0.1, test: 0.1}\n");
    t.sluice(&["validate", "wf.yaml"])
        .fails(1)
        .stderr_has("ratios");
    t.workflow("version: 1\nname: x\nstages:\n  s:\n    uses: split\n    run: echo\n");
    t.sluice(&["validate", "wf.yaml"])
        .fails(1)
        .stderr_has("has both `run` and `uses`");
}

#[test]
fn a_malformed_source_line_names_the_file_and_line() {
    let t = Test::new();
    t.write(
        "raw/a.jsonl",
        "{\"q\": \"a\", \"a\": \"b\"}\n{\"q\": oops}\n",
    );
    t.workflow("version: 1\nname: x\nstages:\n  collect:\n    uses: collect\n    with:\n      sources: [{path: raw/a.jsonl}]\n      fields: {input: q, output: a}\n");
    let r = t.sluice(&["run", "wf.yaml"]).fails(1);
    r.stderr_has("raw/a.jsonl:2: malformed JSON");
    t.workflow("version: 1\nname: x\nstages:\n  collect:\n    uses: collect\n    with:\n      sources: [{path: raw/a.jsonl}]\n      fields: {input: q, output: a}\n      on_error: skip\n");
    let r = t.run(&[]);
    assert_eq!(r.status_of("collect"), "ran");
}

#[test]
fn stages_lists_the_builtin_kinds() {
    let t = Test::new();
    let r = t.sluice(&["stages"]).ok();
    for k in ["collect", "clean", "augment", "split"] {
        r.stdout_has(k);
    }
    let r = t.sluice(&["stages", "split"]).ok();
    r.stdout_has("train.parquet");
    r.stdout_has("ratios");
    t.sluice(&["stages", "splt"])
        .fails(1)
        .stderr_has("did you mean `split`?");
}

fn link_count_and_mode(path: &std::path::Path) -> (u64, u32) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(path).unwrap();
    (meta.nlink(), meta.permissions().mode() & 0o777)
}

/// A builtin stage's outputs become cache objects by a hard link: read-only, stored once. One
/// edited in place anyway (after a chmod) is found out at the next run: its object is dropped, the
/// stage runs again, and the file comes back as it was; nothing downstream sees the edit.
#[test]
fn builtin_outputs_are_linked_read_only_and_an_edit_in_place_is_repaired() {
    let t = pipeline();
    t.run(&[]);
    let data = t.path("build/data/clean/data.parquet");
    assert_eq!(link_count_and_mode(&data), (2, 0o444));
    let original = std::fs::read(&data).unwrap();

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut edited = original.clone();
    edited.extend_from_slice(b"edited in place");
    std::fs::write(&data, &edited).unwrap();

    let r = t.run(&[]);
    assert_eq!(r.status_of("collect"), "cached");
    assert_eq!(r.status_of("clean"), "ran", "{}", r.stdout);
    assert_eq!(r.status_of("augment"), "cached");
    assert_eq!(r.status_of("split"), "cached");
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    assert_eq!(std::fs::read(&data).unwrap(), original);
    assert_eq!(link_count_and_mode(&data), (2, 0o444));
    t.sluice(&["status", "wf.yaml"])
        .ok()
        .stdout_has("everything is up to date");
}

/// A command's outputs are the user's: copied into the cache, left writable.
#[test]
fn run_stage_outputs_are_copied_not_linked() {
    let t = Test::new();
    t.workflow(
        "version: 1\nname: copy\nstages:\n  make:\n    run: echo hi > out.txt\n    outputs: {out: out.txt}\n",
    );
    t.run(&[]);
    assert_eq!(link_count_and_mode(&t.path("out.txt")), (1, 0o644));
}
