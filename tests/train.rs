//! The `train` stage driven through the engine: a tiny model trained from scratch and then
//! fine-tuned with LoRA, cached on the second run, with metrics in the lockfile; option errors
//! with positions; and a killed run that resumes from its checkpoint.

use std::process::Stdio;

use crate::support::{Test, wait_for};

const PIPELINE: &str = r#"version: 1
name: tiny
params:
  steps: 6
stages:
  collect:
    uses: collect
    with:
      sources:
        - path: raw/qa.jsonl
  pretrain:
    uses: train
    with:
      base: {init: {arch: llama, hidden: 32, layers: 1, heads: 2, vocab: 300, seq: 48}}
      data: ${{ stages.collect.outputs.data }}
      loss: all
      max_steps: ${{ params.steps }}
      batch_size: 4
      lr: 0.01
  finetune:
    uses: train
    with:
      base: ${{ stages.pretrain.outputs.model }}
      data: ${{ stages.collect.outputs.data }}
      validation: ${{ stages.collect.outputs.data }}
      method: lora
      lora: {rank: 2, targets: [q_proj, v_proj]}
      max_steps: ${{ params.steps }}
      batch_size: 4
"#;

fn rows(n: usize) -> String {
    let words = ["red", "blue", "green", "black", "white"];
    (0..n)
        .map(|i| {
            let w = words[i % words.len()];
            format!("{{\"input\": \"colour {i}?\", \"output\": \"{w}\"}}\n")
        })
        .collect()
}

#[test]
fn train_from_scratch_then_lora_then_from_the_cache() {
    let t = Test::new();
    t.write("raw/qa.jsonl", &rows(20)).workflow(PIPELINE);
    let r = t.run(&[]);
    assert_eq!(r.status_of("finetune"), "ran", "{}", r.stdout);
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "sluice.json",
    ] {
        assert!(t.exists(&format!("build/tiny/pretrain/model/{f}")), "{f}");
    }
    assert!(t.exists("build/tiny/finetune/model/adapter_model.safetensors"));
    assert!(t.exists("build/tiny/finetune/history.jsonl"));
    assert!(t.exists("build/tiny/finetune/loss.svg"));
    let lock = t.read("wf.lock");
    assert!(lock.contains("trainable_params"), "{lock}");
    assert!(lock.contains("val_loss"), "{lock}");
    let r = t.run(&[]);
    assert!(
        r.statuses().iter().all(|(_, s)| s == "cached"),
        "{}",
        r.stdout
    );
    // Both stages read `steps`, so both run again.
    let r = t.run(&["-p", "steps=3"]);
    assert_eq!(r.status_of("pretrain"), "ran");
    assert_eq!(r.status_of("finetune"), "ran");
}

#[test]
fn train_option_errors_point_at_the_workflow() {
    let t = Test::new();
    t.write("raw/qa.jsonl", &rows(4)).workflow(
        &PIPELINE
            .replace("targets: [q_proj, v_proj]", "targets: [q_prj]")
            .replace("      loss: all\n", "      loss: all\n      epoch: 2\n"),
    );
    t.sluice(&["run", "wf.yaml"])
        .fails(1)
        .stderr_has("unknown LoRA target module `q_prj`")
        .stderr_has("did you mean `epochs`?")
        .stderr_has("wf.yaml:");
}

#[test]
fn a_missing_base_directory_names_the_stage_and_path() {
    let t = Test::new();
    t.write("raw/qa.jsonl", &rows(4))
        .workflow(&PIPELINE.replace(
            "base: ${{ stages.pretrain.outputs.model }}",
            "base: models/nothing-here",
        ));
    t.sluice(&["run", "wf.yaml", "-s", "finetune", "-k"])
        .fails(1)
        .stderr_has("finetune")
        .stderr_has("models/nothing-here");
}

#[test]
fn repro_checks_weights_exactly_and_unstable_stages_by_metrics() {
    let t = Test::new();
    t.write("raw/qa.jsonl", &rows(20)).workflow(PIPELINE);
    t.run(&[]);
    let lock = t.read("wf.lock");
    assert!(lock.contains("unstable:"), "{lock}");
    // On the CPU the weights are bit-exact; the history (timings) is skipped.
    t.sluice(&["repro", "wf.yaml"])
        .ok()
        .stdout_has("reproduced: 3 stages, all digests match");

    // A stage recorded as not bit-exact (as a GPU run is) is compared by its metrics, within
    // the tolerance.
    let doc: serde_yaml::Value = serde_yaml::from_str(&lock).unwrap();
    let val = doc["stages"]["finetune"]["metrics"]["val_loss"]
        .as_f64()
        .unwrap();
    let with = |factor: f64| {
        let mut doc = doc.clone();
        let stage = &mut doc["stages"]["finetune"];
        stage["unstable"] =
            serde_yaml::to_value(["history", "tokens_per_s", "model", "curve"]).unwrap();
        stage["outputs"]["model"]["digest"] = serde_yaml::Value::from("0".repeat(64));
        stage["metrics"]["val_loss"] = serde_yaml::Value::from(val * factor);
        t.write("wf.lock", &serde_yaml::to_string(&doc).unwrap());
    };
    with(1.01);
    t.sluice(&["repro", "wf.yaml"]).ok();
    with(1.10);
    t.sluice(&["repro", "wf.yaml"])
        .fails(1)
        .stdout_has("stage `finetune` metric `val_loss` differs from the lockfile")
        .stderr_has("beyond the tolerance of 2%");
    with(1.10);
    t.sluice(&["repro", "wf.yaml", "--tolerance", "0.2"]).ok();
}

#[test]
fn a_killed_training_run_resumes_from_its_checkpoint() {
    let t = Test::new();
    // Enough steps that the run is still going when the first checkpoint lands.
    let yaml = PIPELINE
        .replace("steps: 6", "steps: 300")
        .replace("      lr: 0.01\n", "      lr: 0.01\n      save_every: 5\n");
    t.write("raw/qa.jsonl", &rows(20)).workflow(&yaml);
    let mut child = t
        .command(&["run", "wf.yaml", "-s", "pretrain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = t.path(".sluice/work/pretrain/checkpoint/state.json");
    wait_for(&state);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // A kill between the checkpoint's two renames leaves the previous one as `checkpoint.old`.
    let saved = ["checkpoint", "checkpoint.old"]
        .iter()
        .map(|d| t.path(&format!(".sluice/work/pretrain/{d}/state.json")))
        .find(|p| p.exists())
        .expect("a checkpoint survives the kill");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(saved).unwrap()).unwrap();
    let step = saved["step"].as_u64().unwrap();
    assert!((5..300).contains(&step), "checkpoint at step {step}");
    let r = t
        .sluice(&["run", "wf.yaml", "-s", "pretrain", "--progress", "plain"])
        .ok();
    r.stderr_has(&format!("resumed_at_step={step}"));
    assert_eq!(
        t.read("build/tiny/pretrain/history.jsonl").lines().count(),
        300
    );
    assert!(
        !state.exists(),
        "the checkpoint is removed once the stage succeeds"
    );
}

/// In a sluice built without `cuda`, a model stage that asks for a GPU stops the run before
/// anything runs, unless it allows `fallback: cpu`, which places it on the CPU.
#[cfg(not(feature = "cuda"))]
#[test]
fn a_model_stage_asking_for_a_gpu_this_build_cannot_use() {
    let workflow = |resources: &str| {
        format!(
            "version: 1\nname: g\nstages:\n  collect:\n    uses: collect\n    with:\n      sources: [{{path: raw/qa.jsonl}}]\n  pretrain:\n    uses: train\n    with:\n      base: {{init: {{arch: llama, hidden: 16, layers: 1, heads: 2, vocab: 290, seq: 32}}}}\n      data: ${{{{ stages.collect.outputs.data }}}}\n      max_steps: 1\n    resources: {resources}\n"
        )
    };
    let t = Test::new();
    t.write("raw/qa.jsonl", &rows(8))
        .workflow(&workflow("{gpu: 1}"));
    let r = t.sluice(&["run", "wf.yaml", "--devices", "gpu:0"]).fails(1);
    r.stderr_has("stage `pretrain` asks for 1 GPU, but `train` cannot use one: this sluice was built without the `cuda` feature");
    r.stderr_has("--> wf.yaml:14:5");
    r.stderr_has("fallback: cpu");
    assert!(!t.exists("build/g/collect/data.parquet"), "nothing runs");

    t.workflow(&workflow("{gpu: 1, fallback: cpu}"));
    let r = t.run(&["--devices", "gpu:0"]);
    assert_eq!(r.status_of("pretrain"), "ran", "{}", r.stderr);
    let j = r.json();
    let pretrain = j["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "pretrain")
        .unwrap();
    assert_eq!(pretrain["device"], "cpu", "{j}");
}
