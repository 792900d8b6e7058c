//! A BERT classifier through the engine: labelled text collected, split by label, a tiny BERT
//! trained from scratch, evaluated with its head, deployed behind a gate and served on
//! `/v1/classify`; unlabelled data fails naming the stage, the file and the fix; the bundled
//! sentiment pipeline.

use crate::serve::{Server, http};
use crate::support::Test;

pub const PIPELINE: &str = r#"version: 1
name: sentiment
params:
  epochs: 30
stages:
  collect:
    uses: collect
    with:
      sources:
        - path: raw/reviews.jsonl
          style: classification
  split:
    uses: split
    with:
      data: ${{ stages.collect.outputs.data }}
      ratios: {train: 0.7, validation: 0.15, test: 0.15}
      stratify: label
      seed: 1
  train:
    uses: train
    with:
      base: {init: {arch: bert, hidden: 32, layers: 2, heads: 2, vocab: 300, seq: 32}}
      data: ${{ stages.split.outputs.train }}
      validation: ${{ stages.split.outputs.validation }}
      epochs: ${{ params.epochs }}
      batch_size: 8
      lr: 0.003
      warmup_steps: 20
      eval_every: 10
  evaluate:
    uses: evaluate
    with:
      model: ${{ stages.train.outputs.model }}
      data: ${{ stages.split.outputs.test }}
      task: classify
  lm:
    uses: train
    with:
      base: {init: {arch: llama, hidden: 16, layers: 1, heads: 2, vocab: 300, seq: 32}}
      data: ${{ stages.split.outputs.train }}
      max_steps: 1
  deploy:
    uses: deploy
    with:
      model: ${{ stages.train.outputs.model }}
      name: sentiment
      metrics: ${{ stages.evaluate.outputs.metrics }}
      gate: accuracy >= 0.8
"#;

/// Reviews whose label is the mood of the one opinion word in them.
pub fn reviews(n: usize) -> String {
    let words = [
        ("positive", ["great", "lovely", "superb", "good"]),
        ("negative", ["awful", "boring", "bad", "dreadful"]),
        ("neutral", ["average", "okay", "ordinary", "plain"]),
    ];
    let subjects = ["the film", "this book", "the meal", "our hotel", "the show"];
    let tails = ["overall", "to be honest", "I think", "as expected"];
    (0..n)
        .map(|i| {
            let (label, moods) = words[i % 3];
            let text = format!(
                "{} was {} {}",
                subjects[(i / 3) % subjects.len()],
                moods[(i / 7) % moods.len()],
                tails[(i / 2) % tails.len()]
            );
            format!("{{\"text\": \"{text}\", \"label\": \"{label}\"}}\n")
        })
        .collect()
}

#[test]
fn collect_split_train_evaluate_and_deploy_a_classifier() {
    let t = Test::new();
    t.write("raw/reviews.jsonl", &reviews(120))
        .workflow(PIPELINE);
    let r = t.run(&[]);
    assert_eq!(r.status_of("deploy"), "ran", "{}", r.stdout);
    let metrics: serde_json::Value =
        serde_json::from_str(&t.read("build/sentiment/evaluate/metrics.json")).unwrap();
    for k in [
        "examples",
        "accuracy",
        "loss",
        "macro_f1",
        "macro_precision",
        "macro_recall",
        "f1.positive",
        "precision.negative",
        "recall.neutral",
        "support.neutral",
        "confusion.positive.positive",
    ] {
        assert!(metrics[k].is_number(), "{k} missing from {metrics}");
    }
    let accuracy = metrics["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.9, "{metrics}");
    assert!(metrics["loss"].as_f64().unwrap() < 0.3, "{metrics}");
    assert_eq!(metrics["examples"], 18.0);
    assert!(t.exists("build/sentiment/evaluate/predictions.parquet"));
    let lock = t.read("wf.lock");
    assert!(lock.contains("val_accuracy"), "{lock}");

    let model = "build/sentiment/train/model";
    let config: serde_json::Value =
        serde_json::from_str(&t.read(&format!("{model}/config.json"))).unwrap();
    assert_eq!(
        config["architectures"],
        serde_json::json!(["BertForSequenceClassification"])
    );
    assert_eq!(
        config["id2label"],
        serde_json::json!({"0": "negative", "1": "neutral", "2": "positive"})
    );

    let versions: Vec<String> = std::fs::read_dir(t.path("deployments/sentiment"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
    let bundle = format!("deployments/sentiment/{}", versions[0]);
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "README.md",
    ] {
        assert!(t.exists(&format!("{bundle}/{f}")), "{f}");
    }
    let card = t.read(&format!("{bundle}/README.md"));
    assert!(
        card.contains("AutoModelForSequenceClassification"),
        "{card}"
    );

    // Served, the bundle classifies and does not generate.
    let server = Server::start(&t, &[&bundle]);
    let model = bundle.trim_start_matches("deployments/");
    let request = serde_json::json!({
        "model": model,
        "input": ["the meal was superb overall", "this book was dreadful I think"],
    });
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v1/classify",
        Some(&request.to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let json = &body[body.find('{').unwrap()..];
    let answer: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(answer["data"][0]["label"], "positive", "{answer}");
    assert_eq!(answer["data"][1]["label"], "negative", "{answer}");
    let request = serde_json::json!({"model": model, "prompt": "hi"});
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v1/completions",
        Some(&request.to_string()),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is a classifier"), "{body}");
    drop(server);
    // A/B variants are all classifiers or all generators.
    t.sluice(&[
        "serve",
        &bundle,
        "--port",
        "0",
        "--variant",
        "build/sentiment/lm/model=0.5",
    ])
    .fails(1)
    .stderr_has("A/B variants must all generate text or all classify");

    let r = t.run(&[]);
    assert!(
        r.statuses().iter().all(|(_, s)| s == "cached"),
        "{}",
        r.stdout
    );
}

#[test]
fn unlabelled_data_fails_naming_the_stage_the_file_and_the_fix() {
    let t = Test::new();
    let rows: String = (0..20)
        .map(|i| format!("{{\"input\": \"text {i}\", \"output\": \"x\"}}\n"))
        .collect();
    let workflow = PIPELINE.replace("          style: classification\n", "");
    t.write("raw/reviews.jsonl", &rows).workflow(&workflow);
    let r = t.sluice(&["run", "wf.yaml"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("stage `train`: a BERT classifier trains on labelled rows, but row 1 of build/sentiment/split/train.parquet")
            && all.contains("has no label")
            && all.contains("style: classification"),
        "{all}"
    );
}

/// The bundled sentiment pipeline with a shorter training run (3 epochs instead of 6), which
/// still passes its gate (accuracy ≥ 0.8).
#[test]
fn the_sentiment_pipeline_runs_on_its_bundled_reviews() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let t = Test::new();
    for f in ["pipelines/sentiment.yaml", "data/reviews/reviews.jsonl"] {
        t.write(f, &std::fs::read_to_string(repo.join(f)).unwrap());
    }
    let r = t
        .sluice(&[
            "run",
            "pipelines/sentiment.yaml",
            "--json",
            "-p",
            "epochs=3",
        ])
        .ok();
    assert!(r.statuses().iter().all(|(_, s)| s == "ran"), "{}", r.stdout);
    let metrics: serde_json::Value =
        serde_json::from_str(&t.read("build/sentiment/evaluate/metrics.json")).unwrap();
    assert!(metrics["accuracy"].as_f64().unwrap() >= 0.8, "{metrics}");
    assert_eq!(metrics["support.positive"], 30.0, "{metrics}");
    assert!(t.path("deployments/sentiment").is_dir());
}
