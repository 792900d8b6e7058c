//! Tests of the BERT classifier on tiny configurations: its logits match `transformers` on a
//! committed fixture, gradients reach every trainable tensor, the loss falls for each method,
//! adapters leave the base bit-identical, saved models reload to identical logits, training is
//! deterministic, and unlabelled or unseen labels fail clearly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use sluice_data::schema::Example;
use sluice_stage::StageKind;

use crate::Train;
use crate::bert::{self, Bert, Inputs};
use crate::config::{Arch, BertConfig};
use crate::hf::{self, Head};
use crate::lora::{Lora, LoraConfig};
use crate::optim::{AdamW, AdamWConfig};
use crate::rng::Rng;
use crate::tests::{Workspace, digest};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert-tiny")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn batch(seqs: &[Vec<u32>], pad: u32) -> Inputs {
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    Inputs::new(&refs, pad, &Device::Cpu).unwrap()
}

/// `crates/model/tests/fixtures/make_bert_tiny.py` wrote the fixture with `transformers` and
/// recorded its token ids and logits.
#[test]
fn logits_match_transformers_on_the_fixture() {
    let loaded = hf::load_classifier(&fixture(), &Device::Cpu, Head::Saved).unwrap();
    assert!(loaded.fresh.is_empty());
    let model = &loaded.model;
    assert_eq!(model.labels().unwrap(), ["negative", "neutral", "positive"]);
    let expected: serde_json::Value = hf::read_json(&fixture().join("expected.json")).unwrap();
    let texts: Vec<&str> = expected["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(expected["input_ids"].clone()).unwrap();
    let want_logits: Vec<Vec<f32>> = serde_json::from_value(expected["logits"].clone()).unwrap();
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            crate::classifier::encode(model, &loaded.tokenizer, t)
                .unwrap()
                .0
        })
        .collect();
    assert_eq!(ids, want_ids);
    // All texts in one padded batch, as transformers ran them, and each alone.
    let want = Tensor::new(want_logits, &Device::Cpu).unwrap();
    let logits = model
        .logits(&batch(&ids, model.config.pad()), None)
        .unwrap();
    let diff = max_diff(&logits, &want);
    assert!(diff < 1e-4, "logits differ from transformers' by {diff}");
    for (i, seq) in ids.iter().enumerate() {
        let alone = model
            .logits(&batch(std::slice::from_ref(seq), 0), None)
            .unwrap();
        let diff = max_diff(&alone.squeeze(0).unwrap(), &want.get(i).unwrap());
        assert!(diff < 1e-4, "text {i} alone differs by {diff}");
    }
}

/// The backward pass against PyTorch's: the mean cross-entropy of the fixture's labels, and
/// the gradient norm of every weight, as `make_bert_tiny.py` recorded them.
#[test]
fn loss_and_gradients_match_pytorch_on_the_fixture() {
    let mut loaded = hf::load_classifier(&fixture(), &Device::Cpu, Head::Saved).unwrap();
    loaded.model.weights.set_trainable(true).unwrap();
    let model = &loaded.model;
    let expected: serde_json::Value = hf::read_json(&fixture().join("expected.json")).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(expected["input_ids"].clone()).unwrap();
    let labels: Vec<u32> = serde_json::from_value(expected["labels"].clone()).unwrap();
    let norms: BTreeMap<String, f64> =
        serde_json::from_value(expected["grad_norms"].clone()).unwrap();
    let loss = model
        .loss(&batch(&ids, 0), &labels, labels.len() as f64, None)
        .unwrap();
    let want = expected["loss"].as_f64().unwrap();
    let got = loss.to_scalar::<f32>().unwrap() as f64;
    assert!((got - want).abs() < 1e-5, "loss {got} vs {want}");
    let grads = loss.backward().unwrap();
    let vars = model.trainable();
    assert_eq!(vars.len(), norms.len());
    for (name, var) in &vars {
        let g = grads.get(var.as_tensor()).unwrap();
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt() as f64;
        let want = norms[name];
        assert!(
            (norm - want).abs() <= 1e-4 + 1e-3 * want,
            "{name}: gradient norm {norm} vs PyTorch's {want}"
        );
    }
}

/// Rewrites the fixture as sentence-transformers saves an encoder: no `bert.` prefix, no pooler,
/// no head, no labels.
fn bare_encoder(dir: &Path) {
    for f in ["tokenizer.json", "config.json"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    let mut config: serde_json::Value = hf::read_json(&dir.join("config.json")).unwrap();
    let map = config.as_object_mut().unwrap();
    map.remove("id2label");
    map.remove("label2id");
    map.insert("architectures".into(), serde_json::json!(["BertModel"]));
    hf::write_json(&dir.join("config.json"), &config).unwrap();
    let tensors = crate::safetensors::load(&fixture().join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with("bert.") && !k.contains("pooler"))
        .map(|(k, v)| (k.trim_start_matches("bert.").to_owned(), v))
        .collect();
    crate::safetensors::save(&tensors, &dir.join("model.safetensors")).unwrap();
}

#[test]
fn an_encoder_without_prefix_pooler_or_head_gets_a_fresh_seeded_head() {
    let dir = tempfile::tempdir().unwrap();
    bare_encoder(dir.path());
    let err = hf::load_classifier(dir.path(), &Device::Cpu, Head::Saved)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("has no classification head"), "{err}");
    let labels = ["no".to_owned(), "yes".to_owned()];
    let load = |seed: u64| {
        let mut rng = Rng::new(seed);
        let head = Head::Fresh {
            labels: &labels,
            rng: &mut rng,
        };
        hf::load_classifier(dir.path(), &Device::Cpu, head).unwrap()
    };
    let (a, b) = (load(1), load(1));
    assert_eq!(
        a.fresh,
        ["a fresh pooler", "a fresh classification head"],
        "{:?}",
        a.fresh
    );
    let original = hf::load_classifier(&fixture(), &Device::Cpu, Head::Saved).unwrap();
    let w = "bert.encoder.layer.1.output.dense.weight";
    assert_eq!(
        max_diff(
            a.model.weights.get(w).unwrap(),
            original.model.weights.get(w).unwrap()
        ),
        0.0
    );
    assert_eq!(a.model.weights.get(bert::HEAD[0]).unwrap().dims(), [2, 32]);
    // Seeded: the same seed draws the same head.
    assert_eq!(
        max_diff(
            a.model.weights.get(bert::HEAD[0]).unwrap(),
            b.model.weights.get(bert::HEAD[0]).unwrap()
        ),
        0.0
    );
    // A head for other labels is replaced, one for the same labels kept.
    let mut rng = Rng::new(1);
    let other = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
    let fresh = hf::load_classifier(
        &fixture(),
        &Device::Cpu,
        Head::Fresh {
            labels: &other,
            rng: &mut rng,
        },
    )
    .unwrap()
    .fresh;
    assert_eq!(
        fresh,
        [
            "a fresh classification head for a, b, c labels (the base's is for negative, neutral, positive)"
        ]
    );
    let same = ["negative", "neutral", "positive"].map(str::to_owned);
    let kept = hf::load_classifier(
        &fixture(),
        &Device::Cpu,
        Head::Fresh {
            labels: &same,
            rng: &mut rng,
        },
    )
    .unwrap()
    .fresh;
    assert!(kept.is_empty(), "{kept:?}");
}

#[test]
fn gelu_erf_has_a_backward_pass_in_candle() {
    let x = candle_core::Var::new(&[-1.5f32, -0.2, 0.0, 0.7, 2.0], &Device::Cpu).unwrap();
    let grads = x
        .as_tensor()
        .gelu_erf()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let got: Vec<f32> = grads.get(x.as_tensor()).unwrap().to_vec1().unwrap();
    for (v, g) in x.as_tensor().to_vec1::<f32>().unwrap().iter().zip(got) {
        // d/dx x·Φ(x) = Φ(x) + x·φ(x), by central differences on the erf form.
        let gelu = |x: f64| 0.5 * x * (1.0 + erf(x / 2f64.sqrt()));
        let h = 1e-3;
        let want = (gelu(*v as f64 + h) - gelu(*v as f64 - h)) / (2.0 * h);
        assert!((g as f64 - want).abs() < 1e-3, "at {v}: {g} vs {want}");
    }
}

/// erf by Abramowitz and Stegun 7.1.26 (error below 1.5e-7).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    y.copysign(x)
}

fn tiny_config() -> BertConfig {
    let mut c: BertConfig = serde_json::from_value(serde_json::json!({
        "vocab_size": 30, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 32, "max_position_embeddings": 24
    }))
    .unwrap();
    c.set_labels(&["a".into(), "b".into(), "c".into()]);
    c
}

fn tiny(method: &str) -> Bert {
    let device = Device::Cpu;
    let mut m = Bert::init(tiny_config(), &mut Rng::new(1), &device).unwrap();
    // Weights of std 0.02 carry almost nothing of the input to `[CLS]`, and adapters on a frozen
    // model cannot change that: wider weights give them something to steer, as a trained base
    // would.
    let wide: Vec<(String, Tensor)> = m
        .weights
        .tensors()
        .into_iter()
        .filter(|(_, t)| t.rank() == 2)
        .map(|(k, t)| (k, (t * 10.0).unwrap()))
        .collect();
    for (k, t) in wide {
        m.weights.insert(k, crate::weights::Param::Frozen(t));
    }
    let mut rng = Rng::new(2);
    match method {
        "full" => m.weights.set_trainable(true).unwrap(),
        "lora" => {
            let config = LoraConfig {
                rank: 2,
                alpha: 4.0,
                dropout: 0.0,
                targets: vec!["all-linear".into()],
            };
            let modules = bert::linear_modules(&m.config);
            m.lora = Some(
                Lora::new(config, Arch::Bert, &modules, &m.weights, &mut rng, &device).unwrap(),
            );
        }
        "prompt" => {
            m.prompt = Some(
                crate::prompt::init(
                    3,
                    "bert.embeddings.word_embeddings.weight",
                    &m.weights,
                    &mut rng,
                    &device,
                )
                .unwrap(),
            );
        }
        _ => unreachable!(),
    }
    if method != "full" {
        for name in bert::HEAD {
            m.weights.make_trainable(name).unwrap();
        }
    }
    m
}

/// A learnable toy task: the class is which of three marker tokens the sequence holds.
fn toy() -> (Inputs, Vec<u32>) {
    let seqs: Vec<Vec<u32>> = (0..9u32)
        .map(|i| {
            let filler = 10 + (i * 7) % 15;
            let mut s = vec![2, filler, 5 + i % 3, filler + 1, 3];
            s.truncate(3 + (i as usize % 3));
            s.push(3);
            s
        })
        .collect();
    let labels = (0..9u32).map(|i| i % 3).collect();
    (batch(&seqs, 0), labels)
}

/// One AdamW step on the toy batch with dropout; returns the loss before it and the gradients.
fn step(m: &Bert, opt: &mut AdamW, lr: f64, seed: u64) -> (f32, BTreeMap<String, Tensor>) {
    let (inputs, labels) = toy();
    let mut rng = Rng::new(seed);
    let loss = m.loss(&inputs, &labels, 9.0, Some(&mut rng)).unwrap();
    let store = loss.backward().unwrap();
    let vars = m.trainable();
    let grads: BTreeMap<String, Tensor> = vars
        .iter()
        .filter_map(|(n, v)| store.get(v.as_tensor()).map(|g| (n.clone(), g.clone())))
        .collect();
    opt.update(&vars, &grads, lr).unwrap();
    (loss.to_scalar::<f32>().unwrap(), grads)
}

#[test]
fn every_trainable_classifier_tensor_gets_a_nonzero_gradient() {
    for method in ["full", "lora", "prompt"] {
        let m = tiny(method);
        let mut opt = AdamW::new(AdamWConfig::default());
        // LoRA's B starts at zero, so A's gradient is zero until B has moved: check step two.
        step(&m, &mut opt, 1e-2, 1);
        let (_, grads) = step(&m, &mut opt, 1e-2, 2);
        let vars = m.trainable();
        for (name, _) in &vars {
            let g = grads
                .get(name)
                .unwrap_or_else(|| panic!("{method}: no gradient for {name}"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm > 0.0, "{method}: zero gradient for {name}");
        }
        let layers = m.config.num_hidden_layers;
        let expected = match method {
            "full" => bert::weight_shapes(&m.config, 3).len(),
            // A and B for 6 linear modules per layer and the pooler, and the head.
            "lora" => 2 * (6 * layers + 1) + 2,
            _ => 1 + 2,
        };
        assert_eq!(vars.len(), expected, "{method}");
    }
}

#[test]
fn classifier_loss_falls_and_adapters_leave_the_base_bit_identical() {
    // Prompt tuning steers a frozen random encoder through a few positions only, so it moves
    // the loss less than the others on this task.
    for (method, lr, factor) in [
        ("full", 1e-2, 0.5),
        ("lora", 1e-2, 0.5),
        ("prompt", 3e-2, 0.9),
    ] {
        let m = tiny(method);
        let base = |m: &Bert| -> Vec<Vec<f32>> {
            m.weights
                .tensors()
                .iter()
                .filter(|(k, _)| !bert::HEAD.contains(&k.as_str()))
                .map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap())
                .collect()
        };
        let before = base(&m);
        let mut opt = AdamW::new(AdamWConfig::default());
        let first = step(&m, &mut opt, lr, 0).0;
        for i in 0..30 {
            step(&m, &mut opt, lr, i + 1);
        }
        let (inputs, labels) = toy();
        let last = m
            .loss(&inputs, &labels, 9.0, None)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(last < first * factor, "{method}: loss {first} → {last}");
        if method != "full" {
            assert!(before == base(&m), "{method} changed a base weight");
        }
    }
}

#[test]
fn a_saved_classifier_reloads_to_identical_logits() {
    let tokenizer = crate::tokenizer::train_bert(
        ["good film", "bad film", "a good day", "a bad day"].into_iter(),
        300,
    )
    .unwrap();
    let info = crate::hf::ModelInfo {
        method: "lora".into(),
        base: "init".into(),
        ..Default::default()
    };
    let (inputs, _) = toy();
    for method in ["full", "lora", "prompt"] {
        let m = tiny(method);
        let mut opt = AdamW::new(AdamWConfig::default());
        for i in 0..3 {
            step(&m, &mut opt, 1e-2, i);
        }
        let want = m.logits(&inputs, None).unwrap();
        for merge in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            hf::save_classifier(dir.path(), &m, &tokenizer, &info, merge).unwrap();
            let loaded = hf::load_classifier(dir.path(), &Device::Cpu, Head::Saved).unwrap();
            assert_eq!(loaded.model.lora.is_some(), method == "lora" && !merge);
            assert_eq!(loaded.model.prompt.is_some(), method == "prompt");
            let got = loaded.model.logits(&inputs, None).unwrap();
            let diff = max_diff(&got, &want);
            // Unmerged, the same ops on the same weights: bit-identical. Merged, rounding.
            let tolerance = if merge && method == "lora" { 1e-5 } else { 0.0 };
            assert!(diff <= tolerance, "{method} merge={merge}: {diff}");
        }
    }
}

// ---- Stage-level: `train` with a BERT base on labelled Parquet data. ----

const POSITIVE: [&str; 4] = ["good", "great", "lovely", "fine"];
const NEGATIVE: [&str; 4] = ["bad", "awful", "poor", "dull"];
const FILLER: [&str; 6] = ["the", "film", "was", "really", "quite", "today"];

/// Labelled sentences: the class is whether a positive or a negative word occurs.
pub(crate) fn sentiment_rows(ids: std::ops::Range<usize>) -> Vec<Example> {
    ids.map(|i| {
        let positive = i % 2 == 0;
        let word = if positive { POSITIVE } else { NEGATIVE }[(i / 2) % 4];
        let a = FILLER[i % 6];
        let b = FILLER[(i / 3) % 6];
        let label = if positive { "pos" } else { "neg" };
        Example {
            id: format!("{i}"),
            input: format!("{a} {word} {b}"),
            output: label.to_owned(),
            label: Some(label.to_owned()),
            source: "toy".into(),
            source_row: i as u64 + 1,
            ..Example::default()
        }
    })
    .collect()
}

fn labelled_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write_rows("data/train.parquet", &sentiment_rows(0..48));
    ws.write_rows("data/val.parquet", &sentiment_rows(100..116));
    ws
}

const BERT_INIT: &str = "base: {init: {arch: bert, hidden: 32, layers: 2, heads: 2, vocab: 300, seq: 24}}\ndata: data/train.parquet\n";

#[test]
fn a_bert_init_learns_the_toy_task_deterministically() {
    let ws = labelled_workspace();
    let with = format!(
        "{BERT_INIT}validation: data/val.parquet\nepochs: 8\nbatch_size: 8\nlr: 0.003\neval_every: 6\nseed: 3\n"
    );
    let (report, out) = ws.run("a", &with, "k", None).unwrap();
    let m = &report.metrics;
    assert!(m["val_accuracy"] >= 0.9, "{m:?}");
    assert!(m["val_loss"] < 0.4, "{m:?}");
    assert!(!m.contains_key("val_perplexity"));
    let dir = out.join("model");
    let config: serde_json::Value = hf::read_json(&dir.join("config.json")).unwrap();
    assert_eq!(
        config["architectures"],
        serde_json::json!(["BertForSequenceClassification"])
    );
    assert_eq!(config["num_labels"], 2);
    assert_eq!(
        config["id2label"],
        serde_json::json!({"0": "neg", "1": "pos"})
    );
    assert_eq!(config["label2id"], serde_json::json!({"neg": 0, "pos": 1}));
    let tokenizer_config: serde_json::Value =
        hf::read_json(&dir.join("tokenizer_config.json")).unwrap();
    assert_eq!(
        tokenizer_config["tokenizer_class"],
        "PreTrainedTokenizerFast"
    );
    assert_eq!(tokenizer_config["cls_token"], "[CLS]");
    assert_eq!(tokenizer_config["model_max_length"], 24);
    let history = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
    assert!(history.contains("\"val_accuracy\""), "{history}");
    let tensors = crate::safetensors::load(&dir.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(tensors.contains_key("bert.pooler.dense.weight"));
    assert_eq!(tensors["classifier.weight"].dims(), [2, 32]);
    let tokenizer = crate::tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let ids = tokenizer
        .encode("good film", true)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!((ids[0], *ids.last().unwrap()), (2, 3), "[CLS] … [SEP]");

    let (_, again) = ws.run("b", &with, "k", None).unwrap();
    for f in ["model.safetensors", "tokenizer.json", "config.json"] {
        assert_eq!(
            digest(&dir.join(f)),
            digest(&again.join("model").join(f)),
            "{f}"
        );
    }
}

#[test]
fn lora_on_a_saved_classifier_saves_the_head_as_modules_to_save() {
    let ws = labelled_workspace();
    let (_, base) = ws
        .run(
            "base",
            &format!("{BERT_INIT}max_steps: 3\nbatch_size: 8\n"),
            "b",
            None,
        )
        .unwrap();
    let base_rel = "out/base/model";
    let base_tensors =
        crate::safetensors::load(&base.join("model/model.safetensors"), &Device::Cpu).unwrap();
    let lora = format!(
        "base: {base_rel}\ndata: data/train.parquet\nvalidation: data/val.parquet\nmethod: lora\nlora: {{rank: 4, alpha: 8, targets: [query, value, dense]}}\nepochs: 2\nbatch_size: 8\nlr: 0.01\n"
    );
    let (report, out) = ws.run("lora", &lora, "l", None).unwrap();
    assert!(report.metrics["trainable_params"] < report.metrics["total_params"] / 2.0);
    let dir = out.join("model");
    let config: serde_json::Value = hf::read_json(&dir.join("adapter_config.json")).unwrap();
    assert_eq!(config["task_type"], "SEQ_CLS");
    assert_eq!(config["modules_to_save"], serde_json::json!(["classifier"]));
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["dense", "query", "value"])
    );
    let adapter =
        crate::safetensors::load(&dir.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    assert!(adapter.contains_key("base_model.model.classifier.weight"));
    assert!(
        adapter.contains_key(
            "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"
        )
    );
    assert!(adapter.contains_key("base_model.model.bert.pooler.dense.lora_B.weight"));
    // The encoder is saved unchanged; the head trained.
    let saved = crate::safetensors::load(&dir.join("model.safetensors"), &Device::Cpu).unwrap();
    for (name, t) in &base_tensors {
        let same = max_diff(t, &saved[name]) == 0.0;
        assert_eq!(same, !bert::HEAD.contains(&name.as_str()), "{name}");
    }
    // Merged, the same training gives the adapter model's logits.
    let (_, merged) = ws
        .run(
            "merged",
            &lora.replace("dense]}", "dense], merge: true}"),
            "l",
            None,
        )
        .unwrap();
    assert!(!merged.join("model/adapter_config.json").exists());
    let a = hf::load_classifier(&dir, &Device::Cpu, Head::Saved).unwrap();
    let b = hf::load_classifier(&merged.join("model"), &Device::Cpu, Head::Saved).unwrap();
    let (inputs, _) = toy();
    let diff = max_diff(
        &a.model.logits(&inputs, None).unwrap(),
        &b.model.logits(&inputs, None).unwrap(),
    );
    assert!(diff < 1e-4, "merged logits differ by {diff}");

    let prompt = format!(
        "base: {base_rel}\ndata: data/train.parquet\nmethod: prompt\nprompt: {{virtual_tokens: 4}}\nmax_steps: 2\nbatch_size: 8\n"
    );
    let (report, out) = ws.run("prompt", &prompt, "p", None).unwrap();
    assert_eq!(
        report.metrics["trainable_params"],
        (4 * 32 + 2 * 32 + 2) as f64
    );
    let config: serde_json::Value = hf::read_json(&out.join("model/adapter_config.json")).unwrap();
    assert_eq!(config["peft_type"], "PROMPT_TUNING");
    assert_eq!(config["task_type"], "SEQ_CLS");
}

#[test]
fn unlabelled_rows_unseen_labels_and_bad_targets_fail_clearly() {
    let ws = labelled_workspace();
    let mut rows = sentiment_rows(0..10);
    rows[3].label = None;
    ws.write_rows("data/unlabelled.parquet", &rows);
    let err = ws
        .run(
            "x",
            &BERT_INIT.replace("data/train.parquet", "data/unlabelled.parquet"),
            "x",
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a BERT classifier trains on labelled rows, but row 4 of data/unlabelled.parquet (id `3`) has no label")
            && err.contains("style: classification"),
        "{err}"
    );
    let mut val = sentiment_rows(0..4);
    val[1].label = Some("meh".into());
    ws.write_rows("data/odd.parquet", &val);
    let err = ws
        .run(
            "y",
            &format!("{BERT_INIT}validation: data/odd.parquet\n"),
            "y",
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("row 2 of the validation data data/odd.parquet has label `meh`, which the training data does not have (it has neg, pos)"),
        "{err}"
    );

    let check = |with: &str| -> Vec<String> {
        let with: serde_json::Value = serde_yaml::from_str(with).unwrap();
        Train.check(&with).into_iter().map(|e| e.message).collect()
    };
    assert_eq!(
        check(&format!(
            "{BERT_INIT}method: lora\nlora: {{targets: [q_proj]}}\n"
        )),
        [
            "unknown LoRA target module `q_proj`; a BERT model has query, key, value, dense (or `all-linear`)"
        ]
    );
    assert_eq!(
        check("base: some/dir\ndata: d.parquet\nmethod: lora\nlora: {targets: [qkv]}\n"),
        [
            "unknown LoRA target module `qkv`; a llama model has q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, a BERT model has query, key, value, dense (or `all-linear`)"
        ]
    );
    assert!(
        check(&format!(
            "{BERT_INIT}method: lora\nlora: {{targets: [all-linear]}}\n"
        ))
        .is_empty()
    );
    assert_eq!(
        check(&format!(
            "{BERT_INIT}loss: all\ntemplate: \"Q: {{input}}\"\n"
        )),
        [
            "`template` applies to causal language models; a BERT classifier reads the `input` text as it is",
            "`loss: all` applies to causal language models; a BERT classifier's loss is the cross-entropy of its labels"
        ]
    );
    // At run time the real architecture decides: llama names on a BERT base fail.
    let (_, base) = ws
        .run("base", &format!("{BERT_INIT}max_steps: 1\n"), "b", None)
        .unwrap();
    assert!(base.join("model/config.json").exists());
    let err = ws
        .run(
            "z",
            "base: out/base/model\ndata: data/train.parquet\nmethod: lora\nlora: {targets: [q_proj]}\n",
            "z",
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a BERT model has query, key, value, dense"),
        "{err}"
    );
}

#[test]
fn a_cancelled_classifier_run_resumes_to_the_same_weights_on_any_thread_count() {
    let ws = labelled_workspace();
    let with = format!(
        "{BERT_INIT}validation: data/val.parquet\nmax_steps: 6\nbatch_size: 8\nsave_every: 2\neval_every: 2\nseed: 4\n"
    );
    let (whole_report, whole) = ws.run("whole", &with, "resume", None).unwrap();
    let want = digest(&whole.join("model/model.safetensors"));
    // Cancelled while step 5 reports: the checkpoint of step 4 is on disk.
    let err = ws.run("part", &with, "resume", Some(5)).unwrap_err();
    assert!(matches!(err, sluice_stage::StageError::Cancelled));
    assert!(ws.root().join("work/checkpoint/state.json").exists());
    let (report, resumed) = ws.run("part", &with, "resume", None).unwrap();
    assert_eq!(digest(&resumed.join("model/model.safetensors")), want);
    assert_eq!(report.metrics["resumed_at_step"], 4.0);
    assert_eq!(
        report.metrics["val_accuracy"],
        whole_report.metrics["val_accuracy"]
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let (_, three) = pool
        .install(|| ws.run("three", &with, "threads", None))
        .unwrap();
    assert_eq!(digest(&three.join("model/model.safetensors")), want);
}

#[test]
fn early_stopping_keeps_the_classifier_with_the_best_validation_loss() {
    let ws = labelled_workspace();
    // A learning rate this high makes the validation loss worse after the first evaluations.
    let with = format!(
        "{BERT_INIT}validation: data/val.parquet\nmax_steps: 40\nbatch_size: 8\nlr: 0.05\nschedule: constant\neval_every: 2\nearly_stopping: {{patience: 2}}\nseed: 1\n"
    );
    let (report, out) = ws.run("a", &with, "k", None).unwrap();
    let m = &report.metrics;
    assert_eq!(m.get("stopped_early"), Some(&1.0), "{m:?}");
    assert!(m["steps"] < 40.0, "{m:?}");
    let history = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
    let best = history
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["val_loss"].as_f64())
        .fold(f64::INFINITY, f64::min);
    assert!(
        (m["val_loss"] - best).abs() < 1e-12,
        "{} vs {best}",
        m["val_loss"]
    );
}

#[test]
fn the_serving_backend_gives_the_fixture_probabilities_and_refuses_to_generate() {
    use sluice_serve::Backend;
    let backend = crate::classifier_backend::ClassifierBackend::open("tiny", &fixture()).unwrap();
    assert_eq!(
        backend.labels().unwrap(),
        ["negative", "neutral", "positive"]
    );
    let expected: serde_json::Value = hf::read_json(&fixture().join("expected.json")).unwrap();
    let texts: Vec<String> = serde_json::from_value(expected["texts"].clone()).unwrap();
    let logits: Vec<Vec<f32>> = serde_json::from_value(expected["logits"].clone()).unwrap();
    let got = backend.classify(&texts).unwrap();
    for (p, l) in got.iter().zip(&logits) {
        let z: f32 = l.iter().map(|v| v.exp()).sum();
        for (a, b) in p.iter().zip(l) {
            assert!((a - b.exp() / z).abs() < 1e-5, "{p:?} vs {l:?}");
        }
    }
    let request = sluice_serve::GenerateRequest {
        prompt: "hi".into(),
        max_tokens: 4,
        temperature: 0.0,
        top_p: 1.0,
        seed: None,
        stop: Vec::new(),
        ..Default::default()
    };
    let err = backend.generate(&request, &mut |_| true).unwrap_err();
    assert!(err.contains("is a classifier"), "{err}");
}
