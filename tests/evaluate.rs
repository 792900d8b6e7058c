//! `evaluate` and `deploy` driven through the engine on a tiny model: metrics in the lockfile
//! and the predictions file; a bundle written once, a second identical run writing nothing new;
//! a failing gate that shows both numbers and deploys nothing; `sluice deployments`.

use crate::support::Test;

pub const PIPELINE: &str = r#"version: 1
name: tiny
params:
  gate: perplexity < 1000000
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
      max_steps: 6
      batch_size: 4
      lr: 0.01
  finetune:
    uses: train
    with:
      base: ${{ stages.pretrain.outputs.model }}
      data: ${{ stages.collect.outputs.data }}
      method: lora
      lora: {rank: 2, targets: [q_proj, v_proj]}
      max_steps: 6
      batch_size: 4
  evaluate:
    uses: evaluate
    with:
      model: ${{ stages.finetune.outputs.model }}
      baseline: ${{ stages.pretrain.outputs.model }}
      data: ${{ stages.collect.outputs.data }}
      max_new_tokens: 6
      limit: 5
  deploy:
    uses: deploy
    with:
      model: ${{ stages.finetune.outputs.model }}
      name: tiny-bot
      metrics: ${{ stages.evaluate.outputs.metrics }}
      gate: ${{ params.gate }}
      data: [raw/qa.jsonl]
"#;

pub fn rows(n: usize) -> String {
    let words = ["red", "blue", "green", "black", "white"];
    (0..n)
        .map(|i| {
            let w = words[i % words.len()];
            format!("{{\"input\": \"colour {i}?\", \"output\": \"{w}\"}}\n")
        })
        .collect()
}

/// The one bundle under `deployments/tiny-bot/`, workspace-relative.
pub fn bundle(t: &Test) -> String {
    let dir = t.path("deployments/tiny-bot");
    let versions: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
    format!("deployments/tiny-bot/{}", versions[0])
}

#[test]
fn evaluate_then_deploy_a_bundle_once() {
    let t = Test::new();
    t.write("raw/qa.jsonl", &rows(20)).workflow(PIPELINE);
    let r = t.run(&[]);
    assert_eq!(r.status_of("deploy"), "ran", "{}", r.stdout);

    let metrics: serde_json::Value =
        serde_json::from_str(&t.read("build/tiny/evaluate/metrics.json")).unwrap();
    for k in [
        "examples",
        "loss",
        "perplexity",
        "exact_match",
        "f1",
        "rouge_l",
        "base_loss",
        "delta_loss",
        "base_exact_match",
    ] {
        assert!(metrics[k].is_number(), "{k} missing from {metrics}");
    }
    assert_eq!(metrics["examples"], 5.0);
    let lock = t.read("wf.lock");
    assert!(lock.contains("perplexity"), "{lock}");
    assert!(lock.contains("delta_f1"), "{lock}");
    assert!(t.exists("build/tiny/evaluate/predictions.parquet"));

    let bundle = bundle(&t);
    assert!(bundle.starts_with("deployments/tiny-bot/v-"), "{bundle}");
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "generation_config.json",
        "sluice.json",
        "metrics.json",
        "README.md",
        "deployment.json",
    ] {
        assert!(t.exists(&format!("{bundle}/{f}")), "{f}");
    }
    // Merged: no adapter files.
    assert!(!t.exists(&format!("{bundle}/adapter_model.safetensors")));
    let card = t.read(&format!("{bundle}/README.md"));
    assert!(card.contains("LoRA, merged"), "{card}");
    assert!(card.contains("raw/qa.jsonl"), "{card}");
    assert!(card.contains("| perplexity |"), "{card}");
    let receipt: serde_json::Value =
        serde_json::from_str(&t.read("build/tiny/deploy/deployment.json")).unwrap();
    assert_eq!(receipt["path"], bundle.as_str());
    let record = t.read(&format!("{bundle}/deployment.json"));
    // Once the run has written its lockfile, the bundle keeps a copy and its digest.
    let lock = t.read("wf.lock");
    assert_eq!(t.read(&format!("{bundle}/sluice.lock")), lock);
    let digest = blake3::hash(lock.as_bytes()).to_hex().to_string();
    let parsed: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(parsed["lockfile"], digest.as_str());
    assert!(t.read(&format!("{bundle}/README.md")).contains(&digest));

    // The same model again (the deploy stage forced to run by a gate that still passes):
    // same version, nothing rewritten.
    let r = t.run(&["-p", "gate=perplexity < 2000000"]);
    assert_eq!(r.status_of("deploy"), "ran", "{}", r.stdout);
    assert_eq!(self::bundle(&t), bundle);
    assert_eq!(t.read(&format!("{bundle}/deployment.json")), record);

    let listed = t.sluice(&["deployments", "--json"]).ok().json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "tiny-bot");
    assert_eq!(listed[0]["path"], bundle.as_str());
    assert!(listed[0]["metrics"]["perplexity"].is_number());
    t.sluice(&["deployments"])
        .ok()
        .stdout_has("tiny-bot")
        .stdout_has("perplexity=");
}

#[test]
fn a_failing_gate_shows_both_numbers_and_deploys_nothing() {
    let t = Test::new();
    t.write("raw/qa.jsonl", &rows(20)).workflow(PIPELINE);
    let r = t
        .sluice(&[
            "run",
            "wf.yaml",
            "-p",
            "gate=perplexity < 1.5 && examples >= 5",
        ])
        .fails(1);
    r.stderr_has("gate `perplexity < 1.5 && examples >= 5` failed")
        .stderr_has("perplexity = ")
        .stderr_has("needs < 1.5");
    assert!(!r.stderr.contains("examples = 5"), "{}", r.stderr);
    assert!(!t.exists("deployments/tiny-bot"));
    assert!(!t.exists("build/tiny/deploy/deployment.json"));
}

#[test]
fn gate_and_evaluate_option_errors_point_at_the_workflow() {
    let t = Test::new();
    t.write("raw/qa.jsonl", &rows(4)).workflow(
        &PIPELINE
            .replace("gate: perplexity < 1000000", "gate: perplexity <")
            .replace(
                "max_new_tokens: 6",
                "max_new_tokens: 6\n      temperature: 0.5",
            ),
    );
    t.sluice(&["run", "wf.yaml"])
        .fails(1)
        .stderr_has("wf.yaml:")
        .stderr_has("`temperature` applies to sampling only")
        .stderr_has("gate");
}

#[test]
fn a_prompt_tuned_classifier_is_scored_and_deployed_with_its_virtual_tokens() {
    let t = Test::new();
    let labelled: String = rows(20)
        .lines()
        .map(|l| {
            let w = l.rsplit('"').nth(1).unwrap();
            format!("{}, \"label\": \"{w}\"}}\n", l.trim_end_matches('}'))
        })
        .collect();
    let pipeline = PIPELINE
        .replace(
            "      method: lora\n      lora: {rank: 2, targets: [q_proj, v_proj]}\n",
            "      method: prompt\n      prompt: {virtual_tokens: 2}\n",
        )
        .replace("      limit: 5\n", "      limit: 5\n      task: classify\n")
        .replace("gate: perplexity < 1000000", "gate: accuracy >= 0");
    t.write("raw/qa.jsonl", &labelled).workflow(&pipeline);
    let r = t.run(&[]);
    assert_eq!(r.status_of("deploy"), "ran", "{}", r.stdout);
    let metrics = t.read("build/tiny/evaluate/metrics.json");
    for k in [
        "\"accuracy\"",
        "\"macro_f1\"",
        "\"base_accuracy\"",
        "\"confusion.",
    ] {
        assert!(metrics.contains(k), "{k} missing from {metrics}");
    }
    let bundle = bundle(&t);
    assert!(t.exists(&format!("{bundle}/adapter_model.safetensors")));
    assert!(t.exists(&format!("{bundle}/adapter_config.json")));
    assert!(
        t.read(&format!("{bundle}/README.md"))
            .contains("prompt tuning")
    );
}
