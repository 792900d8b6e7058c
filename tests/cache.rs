//! Incremental runs: what runs again after each kind of change, early cutoff, and the stat cache.

use crate::support::Test;

#[test]
fn first_run_runs_everything_and_materialises_outputs() {
    let t = Test::diamond();
    let r = t.run(&[]);
    assert_eq!(
        r.statuses(),
        [
            ("prep".into(), "ran".into()),
            ("upper".into(), "ran".into()),
            ("count".into(), "ran".into())
        ]
    );
    assert_eq!(t.read("build/prep.txt"), "alpha\nbeta\n");
    assert_eq!(t.read("build/upper.txt"), "ALPHA\nBETA\n");
    assert_eq!(t.read("build/count.txt"), "v1 2\n");
    let j = r.json();
    assert_eq!(j["ok"], true);
    for s in j["stages"].as_array().unwrap() {
        assert_eq!(s["key"].as_str().unwrap().len(), 64);
        assert!(s["duration_ms"].is_u64());
    }
    let lock = t.read("wf.lock");
    assert!(lock.contains("workflow-digest:"), "{lock}");
    assert!(lock.ends_with('\n'));
}

#[test]
fn second_run_runs_nothing_and_keeps_the_lockfile_byte_identical() {
    let t = Test::diamond();
    t.run(&[]);
    let lock = t.read("wf.lock");
    let mtime = std::fs::metadata(t.path("wf.lock"))
        .unwrap()
        .modified()
        .unwrap();
    let r = t.run(&[]);
    assert!(
        r.statuses().iter().all(|(_, s)| s == "cached"),
        "{}",
        r.stdout
    );
    assert_eq!(t.read("wf.lock"), lock);
    assert_eq!(
        std::fs::metadata(t.path("wf.lock"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
}

#[test]
fn changing_an_input_file_reruns_only_what_depends_on_it() {
    let t = Test::diamond();
    t.run(&[]);
    t.write("data/in.txt", "ALPHA\nbeta\ngamma\n");
    let r = t.run(&[]);
    assert_eq!(r.status_of("prep"), "ran");
    assert_eq!(r.status_of("upper"), "ran");
    assert_eq!(r.status_of("count"), "ran");
    let reasons = r.json()["stages"][0]["reasons"].to_string();
    assert!(reasons.contains("input `raw` changed"), "{reasons}");
}

#[test]
fn early_cutoff_when_upstream_output_is_unchanged() {
    let t = Test::diamond();
    t.run(&[]);
    // Line 3 is not read with n=2: prep re-runs and produces the same bytes.
    t.write("data/in.txt", "alpha\nbeta\nGAMMA\n");
    let r = t.run(&[]);
    assert_eq!(r.status_of("prep"), "ran");
    assert_eq!(r.status_of("upper"), "cached");
    assert_eq!(r.status_of("count"), "cached");
}

#[test]
fn a_param_change_reruns_the_stages_that_use_it() {
    let t = Test::diamond();
    t.run(&[]);
    let r = t.run(&["-p", "tag=v2"]);
    assert_eq!(r.status_of("prep"), "cached");
    assert_eq!(r.status_of("upper"), "cached");
    assert_eq!(r.status_of("count"), "ran");
    assert_eq!(t.read("build/count.txt"), "v2 2\n");
    assert!(t.read("wf.lock").contains("tag: v2"));
    // Going back to the old value is a cache hit: nothing runs, the old output is restored.
    let r = t.run(&[]);
    assert_eq!(r.status_of("count"), "cached");
    assert_eq!(t.read("build/count.txt"), "v1 2\n");
}

#[test]
fn a_param_change_in_the_file_reruns_the_stage_and_its_dependents() {
    let t = Test::diamond();
    t.run(&[]);
    t.workflow(&crate::support::DIAMOND.replace("n: 2", "n: 3"));
    let r = t.run(&[]);
    assert_eq!(r.status_of("prep"), "ran");
    assert_eq!(r.status_of("upper"), "ran");
    assert_eq!(r.status_of("count"), "ran");
    assert_eq!(t.read("build/count.txt"), "v1 3\n");
}

#[test]
fn a_command_change_reruns_only_that_stage() {
    let t = Test::diamond();
    t.run(&[]);
    t.workflow(&crate::support::DIAMOND.replace("tr a-z A-Z", "tr a-y A-Y"));
    let r = t.run(&[]);
    assert_eq!(r.status_of("prep"), "cached");
    assert_eq!(r.status_of("upper"), "ran");
    assert_eq!(r.status_of("count"), "cached");
    let reasons = r.json()["stages"][1]["reasons"].to_string();
    assert!(reasons.contains("command changed"), "{reasons}");
}

#[test]
fn a_deleted_or_edited_output_is_restored_from_cache_without_running() {
    let t = Test::diamond();
    t.run(&[]);
    std::fs::remove_file(t.path("build/upper.txt")).unwrap();
    t.write("build/count.txt", "tampered\n");
    let r = t.run(&[]);
    assert!(
        r.statuses().iter().all(|(_, s)| s == "cached"),
        "{}",
        r.stdout
    );
    assert_eq!(t.read("build/upper.txt"), "ALPHA\nBETA\n");
    assert_eq!(t.read("build/count.txt"), "v1 2\n");
}

#[test]
fn directory_inputs_and_outputs_hash_as_trees() {
    let t = Test::new();
    t.write("corpus/a.txt", "a\n").write("corpus/sub/b.txt", "b\n").workflow(
        r#"version: 1
name: dirs
stages:
  copy:
    run: mkdir -p ${{ outputs.out }} && cp -r ${{ inputs.corpus }}/. ${{ outputs.out }}/ && ls -R ${{ outputs.out }} > ${{ outputs.listing }}
    inputs:
      corpus: corpus
    outputs:
      out: build/copy
      listing: build/listing.txt
  size:
    run: du -a ${{ inputs.tree }} | wc -l > ${{ outputs.n }}
    inputs:
      tree: ${{ stages.copy.outputs.out }}
    outputs:
      n: build/n.txt
"#,
    );
    t.run(&[]);
    assert_eq!(t.read("build/copy/sub/b.txt"), "b\n");
    assert!(t.read("wf.lock").contains("kind: dir"));
    assert!(t.run(&[]).statuses().iter().all(|(_, s)| s == "cached"));
    // A new file anywhere in the tree changes the directory's digest.
    t.write("corpus/sub/c.txt", "c\n");
    let r = t.run(&[]);
    assert_eq!(r.status_of("copy"), "ran");
    assert_eq!(r.status_of("size"), "ran");
    // The output directory is restored as a whole.
    std::fs::remove_dir_all(t.path("build/copy")).unwrap();
    let r = t.run(&[]);
    assert_eq!(r.status_of("copy"), "cached");
    assert_eq!(t.read("build/copy/sub/c.txt"), "c\n");
}

#[test]
fn moving_the_workspace_keeps_every_stage_cached() {
    let t = Test::diamond();
    t.run(&[]);
    let moved = tempfile::tempdir().unwrap();
    let dest = moved.path().join("elsewhere");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(t.root())
        .arg(&dest)
        .status()
        .unwrap();
    assert!(status.success());
    let out = std::process::Command::new(crate::support::BIN)
        .args(["run", "wf.yaml", "--json"])
        .current_dir(&dest)
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in j["stages"].as_array().unwrap() {
        assert_eq!(s["status"], "cached", "{j}");
    }
    assert_eq!(
        std::fs::read_to_string(dest.join("wf.lock")).unwrap(),
        t.read("wf.lock")
    );
}

#[test]
fn unchanged_files_are_not_rehashed_and_touched_ones_only_once() {
    let t = Test::diamond();
    t.run(&[]);
    // Files written within the stat cache's racy window (20 ms) are hashed again once.
    std::thread::sleep(std::time::Duration::from_millis(100));
    t.run(&[]);
    let r = t.run(&[]);
    assert_eq!(r.json()["hashed"]["files"], 0, "{}", r.stdout);
    // Same content, new mtime: hashed once, still a cache hit…
    let f = std::fs::File::options()
        .write(true)
        .open(t.path("data/in.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    let r = t.run(&[]);
    assert_eq!(r.json()["hashed"]["files"], 1, "{}", r.stdout);
    assert_eq!(r.status_of("prep"), "cached");
    // …and not again.
    let r = t.run(&[]);
    assert_eq!(r.json()["hashed"]["files"], 0, "{}", r.stdout);
}
