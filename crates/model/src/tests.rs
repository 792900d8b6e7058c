//! Tests of the model code on tiny configurations (seconds each): gradients reach every
//! trainable tensor, the loss falls for each method, frozen weights stay bit-identical, saved
//! models reload to identical logits, checkpoints resume exactly, training is deterministic,
//! and bad options fail clearly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Device, Tensor};
use sluice_data::schema::Example;
use sluice_stage::{StageContext, StageError, StageKind, StageReport};

use crate::Train;
use crate::batch::{self, Encoder, Overflow};
use crate::config::LlamaConfig;
use crate::hf;
use crate::llama::Llama;
use crate::lora::{Lora, LoraConfig};
use crate::rng::Rng;
use crate::template::Template;

fn tiny_config() -> LlamaConfig {
    serde_json::from_value(serde_json::json!({
        "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 40,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "tie_word_embeddings": false
    }))
    .unwrap()
}

fn toy_batch(device: &Device) -> (Tensor, Tensor, Tensor) {
    // Sequences that count upwards: each token predicts the next.
    let ids: Vec<u32> = (0..2)
        .flat_map(|b| (0..9).map(move |t| (b * 3 + t) % 40))
        .collect();
    let ids = Tensor::from_vec(ids, (2, 9), device).unwrap();
    let inputs = ids.narrow(1, 0, 8).unwrap();
    let targets = ids.narrow(1, 1, 8).unwrap();
    let weights = Tensor::ones((2, 8), candle_core::DType::F32, device).unwrap();
    (inputs, targets, weights)
}

fn model(method: &str) -> Llama {
    let device = Device::Cpu;
    let mut m = Llama::init(tiny_config(), &mut Rng::new(1), &device).unwrap();
    // A random head of std 0.02 keeps every logit near zero, and adapters cannot change it:
    // a larger head gives the adapters something to steer, as a trained base would.
    let head = (m.weights.get("lm_head.weight").unwrap() * 25.0).unwrap();
    m.weights
        .insert("lm_head.weight", crate::weights::Param::Frozen(head));
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
            let modules = crate::llama::linear_modules(&m.config);
            m.lora = Some(
                Lora::new(
                    config,
                    crate::config::Arch::Llama,
                    &modules,
                    &m.weights,
                    &mut rng,
                    &device,
                )
                .unwrap(),
            );
        }
        "prompt" => {
            m.prompt = Some(
                crate::prompt::init(
                    3,
                    "model.embed_tokens.weight",
                    &m.weights,
                    &mut rng,
                    &device,
                )
                .unwrap(),
            )
        }
        _ => unreachable!(),
    }
    m
}

/// One AdamW step on the toy batch; returns the loss before it.
fn step(m: &Llama, opt: &mut crate::optim::AdamW, lr: f64) -> (f32, BTreeMap<String, Tensor>) {
    let (i, t, w) = toy_batch(&m.device);
    let loss = m.loss(&i, &t, &w, 16.0, None).unwrap();
    let store = loss.backward().unwrap();
    let vars = m.trainable();
    let grads: BTreeMap<String, Tensor> = vars
        .iter()
        .filter_map(|(n, v)| store.get(v.as_tensor()).map(|g| (n.clone(), g.clone())))
        .collect();
    opt.update(&vars, &grads, lr).unwrap();
    (loss.to_scalar::<f32>().unwrap(), grads)
}

fn adam() -> crate::optim::AdamW {
    crate::optim::AdamW::new(crate::optim::AdamWConfig::default())
}

#[test]
fn every_trainable_tensor_gets_a_nonzero_gradient() {
    for method in ["full", "lora", "prompt"] {
        let m = model(method);
        let mut opt = adam();
        // LoRA's B starts at zero, so A's gradient is zero until B has moved: check the second step.
        step(&m, &mut opt, 1e-2);
        let (_, grads) = step(&m, &mut opt, 1e-2);
        let vars = m.trainable();
        assert!(!vars.is_empty(), "{method}: nothing trains");
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
        let expected = match method {
            "full" => crate::llama::weight_shapes(&m.config).len(),
            "lora" => 2 * 7 * 2,
            _ => 1,
        };
        assert_eq!(vars.len(), expected, "{method}");
    }
}

#[test]
fn loss_falls_for_each_method() {
    // Prompt tuning steers a frozen random model through a few input positions only, so it
    // moves the loss less than the others on this task.
    for (method, lr, factor) in [
        ("full", 1e-2, 0.8),
        ("lora", 1e-2, 0.8),
        ("prompt", 0.3, 0.95),
    ] {
        let m = model(method);
        let mut opt = adam();
        let first = step(&m, &mut opt, lr).0;
        let mut last = first;
        for _ in 0..40 {
            last = step(&m, &mut opt, lr).0;
        }
        assert!(last < first * factor, "{method}: loss {first} → {last}");
    }
}

#[test]
fn adapters_leave_base_weights_bit_identical() {
    for method in ["lora", "prompt"] {
        let m = model(method);
        let before: Vec<Vec<f32>> = m
            .weights
            .tensors()
            .values()
            .map(|t| t.flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        let mut opt = adam();
        for _ in 0..5 {
            step(&m, &mut opt, 1e-2);
        }
        let after: Vec<Vec<f32>> = m
            .weights
            .tensors()
            .values()
            .map(|t| t.flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        assert!(before == after, "{method} changed a base weight");
    }
}

#[test]
fn rms_norm_matches_its_definition() {
    let d = Device::Cpu;
    let x = Tensor::new(&[[3f32, 4.0]], &d).unwrap();
    let w = Tensor::new(&[1f32, 2.0], &d).unwrap();
    let y: Vec<Vec<f32>> = crate::ops::rms_norm(&x, &w, 0.0)
        .unwrap()
        .to_vec2()
        .unwrap();
    let rms = (12.5f32).sqrt();
    assert!((y[0][0] - 3.0 / rms).abs() < 1e-6 && (y[0][1] - 8.0 / rms).abs() < 1e-6);
}

#[test]
fn cached_decoding_matches_the_full_forward() {
    for method in ["full", "prompt"] {
        let m = model(method);
        let ids: Vec<u32> = vec![1, 5, 7, 9, 2, 3];
        let full = m.last_logits(&ids).unwrap().to_vec1::<f32>().unwrap();
        let mut cache = crate::llama::KvCache::default();
        let t = |s: &[u32]| Tensor::new(s, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        m.forward_cached(&t(&ids[..4]), &mut cache).unwrap();
        let step = m.forward_cached(&t(&ids[4..]), &mut cache).unwrap();
        let last = step
            .squeeze(0)
            .unwrap()
            .get(1)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (a, b) in full.iter().zip(&last) {
            assert!((a - b).abs() < 1e-4, "{method}: {a} vs {b}");
        }
    }
}

// ---- Stage-level tests: the `train` kind on Parquet data in a temp workspace. ----

pub(crate) struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    pub(crate) fn new() -> Workspace {
        let ws = Workspace {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(ws.dir.path().join("data")).unwrap();
        ws.write_rows("data/train.parquet", &toy_rows(0..48));
        ws.write_rows("data/val.parquet", &toy_rows(100..108));
        ws
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn write_rows(&self, rel: &str, rows: &[Example]) {
        sluice_data::write_examples(&self.root().join(rel), rows).unwrap();
    }

    /// Runs `train` with `with` (YAML) into `out/<name>`; `cancel_at` cancels when that step
    /// starts reporting.
    pub(crate) fn run(
        &self,
        name: &str,
        with: &str,
        key: &str,
        cancel_at: Option<usize>,
    ) -> Result<(StageReport, PathBuf), StageError> {
        let with: serde_json::Value = serde_yaml::from_str(with).unwrap();
        let errors = Train.check(&with);
        assert!(errors.is_empty(), "{errors:?}");
        let out = self.root().join("out").join(name);
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        let outputs: BTreeMap<String, PathBuf> = [
            ("model", "model"),
            ("history", "history.jsonl"),
            ("curve", "loss.svg"),
        ]
        .iter()
        .map(|(k, f)| ((*k).to_owned(), out.join(f)))
        .collect();
        let work = self.root().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let cancelled = AtomicBool::new(false);
        let progress = |m: &str| {
            if let Some(n) = cancel_at
                && m.starts_with(&format!("step {n}/"))
            {
                cancelled.store(true, Ordering::Relaxed);
            }
        };
        let ctx = StageContext {
            stage: "train",
            key,
            workspace: self.root(),
            with: &with,
            outputs: &outputs,
            work_dir: &work,
            device: &sluice_stage::Device::Cpu,
            progress: &progress,
            cancelled: &cancelled,
        };
        Train.run(&ctx).map(|r| (r, out))
    }
}

fn toy_rows(ids: std::ops::Range<usize>) -> Vec<Example> {
    // Echo a short word: learnable quickly by a tiny model.
    let words = [
        "apple", "river", "stone", "cloud", "green", "tiger", "piano", "lemon",
    ];
    ids.map(|i| {
        let w = words[i % words.len()];
        Example {
            id: format!("{i}"),
            input: format!("say {w}"),
            output: w.to_owned(),
            source: "toy".into(),
            source_row: i as u64 + 1,
            ..Example::default()
        }
    })
    .collect()
}

const INIT: &str = "base: {init: {arch: llama, hidden: 32, layers: 2, heads: 2, vocab: 300, seq: 32}}\ndata: data/train.parquet\n";

pub(crate) fn digest(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap())
        .to_hex()
        .to_string()
}

#[test]
fn init_training_lowers_validation_loss_and_writes_outputs() {
    let ws = Workspace::new();
    let with = format!(
        "{INIT}validation: data/val.parquet\nepochs: 6\nbatch_size: 8\nlr: 0.01\neval_every: 6\nseed: 3\n"
    );
    let (report, out) = ws.run("a", &with, "k1", None).unwrap();
    let m = &report.metrics;
    assert!(m["train_loss"] < m["initial_loss"] * 0.6, "{m:?}");
    assert!(m["val_loss"] < m["initial_loss"], "{m:?}");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
        "sluice.json",
    ] {
        assert!(out.join("model").join(f).exists(), "{f}");
    }
    let history = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), m["steps"] as usize);
    assert!(history.contains("\"val_loss\""));
    assert!(
        std::fs::read_to_string(out.join("loss.svg"))
            .unwrap()
            .starts_with("<svg")
    );
    // The saved model reloads and gives the same logits as before saving would: compare a
    // reload against a second reload, and against the training record.
    let a = hf::load_dir(&out.join("model"), &Device::Cpu).unwrap();
    let b = hf::load_dir(&out.join("model"), &Device::Cpu).unwrap();
    let ids = [1u32, 10, 20, 30];
    assert_eq!(
        a.model.last_logits(&ids).unwrap().to_vec1::<f32>().unwrap(),
        b.model.last_logits(&ids).unwrap().to_vec1::<f32>().unwrap()
    );
    assert_eq!(a.info.as_ref().unwrap().method, "full");

    // What Transformers reads: the special tokens and the chat template sluice prompts with,
    // generation ending at `</s>` and `<|im_end|>`, and `<s>` put first when asked for.
    let dir = out.join("model");
    let config: serde_json::Value = hf::read_json(&dir.join("tokenizer_config.json")).unwrap();
    assert_eq!(config["bos_token"], "<s>");
    assert_eq!(config["eos_token"], "</s>");
    assert_eq!(config["pad_token"], "<pad>");
    assert_eq!(
        config["model_max_length"],
        a.model.config.max_position_embeddings
    );
    assert!(
        config["chat_template"]
            .as_str()
            .unwrap()
            .contains("<|im_start|>assistant")
    );
    let generation: serde_json::Value = hf::read_json(&dir.join("generation_config.json")).unwrap();
    let im_end = a.tokenizer.token_to_id("<|im_end|>").unwrap();
    assert_eq!(generation["eos_token_id"], serde_json::json!([2, im_end]));
    let prompt = "Q: hello\nA: ";
    let with_specials = a.tokenizer.encode_fast(prompt, true).unwrap();
    assert_eq!(
        with_specials.get_ids(),
        crate::generate::prompt_ids(&a, prompt).unwrap()
    );
}

#[test]
fn same_inputs_and_seed_give_byte_identical_weights() {
    let ws = Workspace::new();
    let with = format!("{INIT}max_steps: 4\nbatch_size: 4\nseed: 9\n");
    let (_, a) = ws.run("a", &with, "k", None).unwrap();
    let (_, b) = ws.run("b", &with, "k", None).unwrap();
    for f in ["model.safetensors", "tokenizer.json", "config.json"] {
        assert_eq!(
            digest(&a.join("model").join(f)),
            digest(&b.join("model").join(f)),
            "{f}"
        );
    }
    let other = format!("{INIT}max_steps: 4\nbatch_size: 4\nseed: 10\n");
    let (_, c) = ws.run("c", &other, "k2", None).unwrap();
    assert_ne!(
        digest(&a.join("model/model.safetensors")),
        digest(&c.join("model/model.safetensors"))
    );
}

#[test]
fn a_cancelled_run_resumes_from_its_checkpoint_to_the_same_weights() {
    let ws = Workspace::new();
    let with = format!(
        "{INIT}max_steps: 6\nbatch_size: 4\nsave_every: 2\nvalidation: data/val.parquet\neval_every: 2\nseed: 5\n"
    );
    let (_, whole) = ws.run("whole", &with, "resume", None).unwrap();
    let whole_digest = digest(&whole.join("model/model.safetensors"));
    checkpoint_dir_is_clear(&ws);
    // Cancelled while step 5 reports: the checkpoint of step 4 is on disk.
    let err = ws.run("part", &with, "resume", Some(5)).unwrap_err();
    assert!(matches!(err, StageError::Cancelled));
    assert!(ws.root().join("work/checkpoint/state.json").exists());
    let (_, resumed) = ws.run("part", &with, "resume", None).unwrap();
    assert_eq!(
        digest(&resumed.join("model/model.safetensors")),
        whole_digest
    );
    let history = std::fs::read_to_string(resumed.join("history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 6);
    checkpoint_dir_is_clear(&ws);
    // A checkpoint of another key is not resumed.
    let err = ws.run("other", &with, "resume", Some(5)).unwrap_err();
    assert!(matches!(err, StageError::Cancelled));
    let (_, fresh) = ws
        .run("other", &format!("{with}lr: 0.001\n"), "different", None)
        .unwrap();
    assert_ne!(digest(&fresh.join("model/model.safetensors")), whole_digest);
}

fn checkpoint_dir_is_clear(ws: &Workspace) {
    assert!(!ws.root().join("work/checkpoint").exists());
}

#[test]
fn lora_and_prompt_tuning_train_a_saved_base_and_save_peft_adapters() {
    let ws = Workspace::new();
    let (base_report, base) = ws
        .run(
            "base",
            &format!("{INIT}validation: data/val.parquet\nepochs: 2\nbatch_size: 8\nlr: 0.01\n"),
            "b",
            None,
        )
        .unwrap();
    let base_rel = base
        .join("model")
        .strip_prefix(ws.root())
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let base_weights = digest(&base.join("model/model.safetensors"));

    let lora = format!(
        "base: {base_rel}\ndata: data/train.parquet\nvalidation: data/val.parquet\nmethod: lora\nlora: {{rank: 4, alpha: 8, targets: [q_proj, v_proj, down_proj]}}\nepochs: 3\nbatch_size: 8\nlr: 0.01\n"
    );
    let (report, out) = ws.run("lora", &lora, "l", None).unwrap();
    let dir = out.join("model");
    // Base weights are saved unchanged beside the adapter.
    assert_eq!(digest(&dir.join("model.safetensors")), base_weights);
    let config: serde_json::Value = hf::read_json(&dir.join("adapter_config.json")).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["down_proj", "q_proj", "v_proj"])
    );
    let adapter =
        crate::safetensors::load(&dir.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    let a = &adapter["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"];
    assert_eq!(a.dims(), &[4, 32]);
    assert!(report.metrics["trainable_params"] < report.metrics["total_params"] / 10.0);
    assert!(
        report.metrics["val_loss"] < base_report.metrics["val_loss"],
        "{:?} vs {:?}",
        report.metrics,
        base_report.metrics
    );

    // The same training merged: the merged weights give the adapter model's logits.
    let (_, merged) = ws
        .run(
            "merged",
            &lora.replace("down_proj]}", "down_proj], merge: true}"),
            "l",
            None,
        )
        .unwrap();
    assert!(!merged.join("model/adapter_config.json").exists());
    let ids = [1u32, 40, 50, 60, 70];
    let with_adapter = hf::load_dir(&dir, &Device::Cpu)
        .unwrap()
        .model
        .last_logits(&ids)
        .unwrap();
    let folded = hf::load_dir(&merged.join("model"), &Device::Cpu)
        .unwrap()
        .model
        .last_logits(&ids)
        .unwrap();
    let diff = (with_adapter - folded)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-4, "merged logits differ by {diff}");

    let prompt = format!(
        "base: {base_rel}\ndata: data/train.parquet\nmethod: prompt\nprompt: {{virtual_tokens: 4}}\nepochs: 2\nbatch_size: 8\n"
    );
    let (report, out) = ws.run("prompt", &prompt, "p", None).unwrap();
    let dir = out.join("model");
    assert_eq!(digest(&dir.join("model.safetensors")), base_weights);
    let config: serde_json::Value = hf::read_json(&dir.join("adapter_config.json")).unwrap();
    assert_eq!(config["peft_type"], "PROMPT_TUNING");
    assert_eq!(config["num_virtual_tokens"], 4);
    assert_eq!(report.metrics["trainable_params"], 4.0 * 32.0);
    let loaded = hf::load_dir(&dir, &Device::Cpu).unwrap();
    assert!(loaded.model.prompt.is_some());
}

#[test]
fn bad_options_fail_with_clear_errors() {
    let check = |with: &str, expected: &str| {
        let with: serde_json::Value = serde_yaml::from_str(with).unwrap();
        let errors = Train.check(&with);
        let text: Vec<String> = errors
            .iter()
            .map(|e| {
                format!(
                    "{}: {} {}",
                    e.path.join("."),
                    e.message,
                    e.hint.clone().unwrap_or_default()
                )
            })
            .collect();
        assert!(
            text.iter().any(|t| t.contains(expected)),
            "{text:?} lacks {expected:?}"
        );
    };
    check(
        &format!("{INIT}method: lora\nlora: {{targets: [q_prj]}}\n"),
        "lora.targets: unknown LoRA target module `q_prj`",
    );
    check(
        &format!("{INIT}method: lora\nlora: {{rank: 0}}\n"),
        "lora.rank: rank must be at least 1",
    );
    check(&format!("{INIT}lora: {{rank: 4}}\n"), "set `method: lora`");
    check(&format!("{INIT}epoch: 3\n"), "did you mean `epochs`?");
    check(
        "base: {init: {arch: llama, hidden: 30, layers: 1, heads: 4, vocab: 300, seq: 8}}\ndata: d.parquet\n",
        "not a multiple of 4 heads",
    );
    check(
        "base: {intt: {}}\ndata: d.parquet\n",
        "did you mean `init`?",
    );
    check(
        "base: {path: a, hub: b/c}\ndata: d.parquet\n",
        "exactly one of",
    );
    check(&format!("{INIT}eval_every: 5\n"), "needs `validation` data");
    check(
        &format!("{INIT}method: prompt\nprompt: {{virtual_tokens: 0}}\n"),
        "at least 1 virtual token",
    );

    // A base directory without config.json fails at run time, naming the directory.
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.root().join("models/empty")).unwrap();
    let err = ws
        .run(
            "x",
            "base: models/empty\ndata: data/train.parquet\n",
            "x",
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("has no config.json"), "{err}");
    let err = hf::load_dir(&ws.root().join("nowhere"), &Device::Cpu)
        .err()
        .unwrap();
    assert!(err.to_string().contains("is not a directory"), "{err}");
    let err = ws
        .run(
            "y",
            "base: {hub: nobody/nothing}\ndata: data/train.parquet\n",
            "y",
            None,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("huggingface-cli download nobody/nothing"),
        "{err}"
    );
}

#[test]
fn sequences_weigh_outputs_only_and_respect_the_limit() {
    let tok = crate::tokenizer::train(["hello world", "say hello", "world peace"].into_iter(), 300)
        .unwrap();
    let template = Template::new("Q: {input}\nA: ");
    let enc = Encoder {
        tokenizer: &tok,
        template: &template,
        bos: Some(1),
        eos: Some(2),
        loss_on_all: false,
    };
    let ex = Example {
        input: "say hello".into(),
        output: "world".into(),
        ..Example::default()
    };
    let s = enc.encode(&ex).unwrap();
    let out_tokens = crate::tokenizer::encode(&tok, "world").unwrap().len();
    assert_eq!(s.loss_tokens(), (out_tokens + 1) as f64);
    assert_eq!(s.ids[0], 1);
    assert_eq!(*s.ids.last().unwrap(), 2);
    let (kept, stats) = batch::fit(vec![s.clone()], 3, Overflow::Drop);
    assert!(kept.is_empty() && stats.dropped == 1);
    let (kept, stats) = batch::fit(vec![s.clone()], s.ids.len() - 2, Overflow::Truncate);
    assert_eq!(kept[0].ids.len(), s.ids.len() - 1);
    assert_eq!(stats.truncated, 1);
    // Training the same tokenizer twice gives the same file.
    let again =
        crate::tokenizer::train(["hello world", "say hello", "world peace"].into_iter(), 300)
            .unwrap();
    assert_eq!(
        tok.to_string(false).unwrap(),
        again.to_string(false).unwrap()
    );
}

/// The fused CPU kernels against the composite ops they replace: values and gradients.
#[test]
fn fused_kernels_match_the_composite_ops() {
    use candle_core::Var;
    let d = Device::Cpu;
    let mut rng = Rng::new(4);
    let mut var = |shape: &[usize]| {
        let n = shape.iter().product();
        Var::from_tensor(&Tensor::from_vec(rng.normal_vec(n, 1.0), shape, &d).unwrap()).unwrap()
    };
    let close = |a: &Tensor, b: &Tensor, what: &str| {
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "{what}: differs by {diff}");
    };
    // Each case: a scalar loss from the fused and the composite op, and the vars to compare.
    let probe = var(&[2, 3, 5, 8]);
    let weights = probe.as_tensor().sqr().unwrap();
    let check = |fused: Tensor, composite: Tensor, vars: &[&Var], what: &str| {
        close(&fused, &composite, what);
        let lf = (fused.flatten_all().unwrap()
            * weights
                .flatten_all()
                .unwrap()
                .narrow(0, 0, fused.elem_count())
                .unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
        let lc = (composite.flatten_all().unwrap()
            * weights
                .flatten_all()
                .unwrap()
                .narrow(0, 0, composite.elem_count())
                .unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
        let (gf, gc) = (lf.backward().unwrap(), lc.backward().unwrap());
        for v in vars {
            close(
                gf.get(v.as_tensor()).unwrap(),
                gc.get(v.as_tensor()).unwrap(),
                &format!("{what} gradient"),
            );
        }
    };
    let x = var(&[2, 3, 4, 8]);
    let w = var(&[8]);
    check(
        crate::ops::rms_norm(&x, &w, 1e-5).unwrap(),
        crate::ops::rms_norm_composite(&x, &w, 1e-5).unwrap(),
        &[&x, &w],
        "rms_norm",
    );
    let b = var(&[8]);
    check(
        crate::ops::layer_norm(&x, &w, &b, 1e-5).unwrap(),
        crate::ops::layer_norm_composite(&x, &w, &b, 1e-5).unwrap(),
        &[&x, &w, &b],
        "layer_norm",
    );
    let (cos, sin) = crate::ops::rope_tables(8, 10_000.0, 3, 4, &d).unwrap();
    check(
        crate::ops::rope(&x, &cos, &sin).unwrap(),
        crate::ops::rope_composite(&x, &cos, &sin).unwrap(),
        &[&x],
        "rope",
    );
    let scores = var(&[2, 3, 4, 6]);
    let mask = crate::ops::causal_mask(2, 4, &d).unwrap();
    check(
        crate::ops::causal_softmax(&scores, 0.5, 2).unwrap(),
        crate::ops::softmax_last(
            &(scores.as_tensor() * 0.5)
                .unwrap()
                .broadcast_add(&mask)
                .unwrap(),
        )
        .unwrap(),
        &[&scores],
        "causal_softmax",
    );
    let logits = var(&[2, 3, 7]);
    let targets = Tensor::new(&[[1u32, 6, 0], [3, 3, 2]], &d).unwrap();
    let mask = Tensor::new(&[[1f32, 0.0, 1.0], [1.0, 1.0, 0.0]], &d).unwrap();
    check(
        crate::ops::masked_nll(&logits, &targets, &mask, 4.0)
            .unwrap()
            .reshape(1)
            .unwrap(),
        crate::ops::masked_nll_composite(&logits, &targets, &mask, 4.0)
            .unwrap()
            .reshape(1)
            .unwrap(),
        &[&logits],
        "masked_nll",
    );
}

#[test]
fn weights_do_not_depend_on_the_thread_count() {
    let ws = Workspace::new();
    let with = format!("{INIT}max_steps: 3\nbatch_size: 4\nseed: 2\n");
    let run = |threads: usize, name: &str| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let (_, out) = pool.install(|| ws.run(name, &with, "t", None)).unwrap();
        digest(&out.join("model/model.safetensors"))
    };
    assert_eq!(run(1, "one"), run(3, "three"));
}

#[test]
fn mixtures_draw_by_weight_and_cycle_through_every_example() {
    let plan = crate::trainer::schedule(&[10, 7], &[0.75, 0.25], 100, 8, 1);
    let slots: Vec<(usize, usize)> = plan.into_iter().flatten().collect();
    let first = slots.iter().filter(|(d, _)| *d == 0).count() as f64;
    let share = first / slots.len() as f64;
    assert!(
        (share - 0.75).abs() < 0.05,
        "share of the first dataset: {share}"
    );
    // Within each pass over a dataset every example appears once.
    let firsts: Vec<usize> = slots
        .iter()
        .filter(|(d, _)| *d == 1)
        .map(|(_, i)| *i)
        .take(7)
        .collect();
    let mut sorted = firsts.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..7).collect::<Vec<_>>());
    // One dataset: epochs are plain passes.
    let plan = crate::trainer::schedule(&[5], &[1.0], 2, 5, 3);
    for step in plan {
        let mut s: Vec<usize> = step.iter().map(|(_, i)| *i).collect();
        s.sort_unstable();
        assert_eq!(s, vec![0, 1, 2, 3, 4]);
    }
}

#[test]
fn conversations_count_assistant_turns_only() {
    use sluice_data::schema::Message;
    let tok = crate::tokenizer::train(["hi there", "hello you"].into_iter(), 300).unwrap();
    let template = Template::default();
    let enc = Encoder {
        tokenizer: &tok,
        template: &template,
        bos: None,
        eos: Some(2),
        loss_on_all: false,
    };
    let ex = Example {
        messages: Some(vec![
            Message {
                role: "user".into(),
                content: "hi there".into(),
            },
            Message {
                role: "assistant".into(),
                content: "hello you".into(),
            },
        ]),
        ..Example::default()
    };
    let s = enc.encode(&ex).unwrap();
    let answer = crate::tokenizer::encode(&tok, "hello you").unwrap().len();
    let close = crate::tokenizer::encode(&tok, &crate::template::chat_close())
        .unwrap()
        .len();
    assert_eq!(s.loss_tokens(), (answer + close) as f64);
    let text = crate::tokenizer::decode(&tok, &s.ids).unwrap();
    assert!(
        text.contains("hi there") && text.contains("hello you"),
        "{text}"
    );
}
