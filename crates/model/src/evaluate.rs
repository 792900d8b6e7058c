//! The `evaluate` stage kind: scores a model on example-schema data. For every example it
//! computes the loss of the reference output (teacher-forced, the prompt rendered with the
//! model's saved template), generates a prediction, and compares the two: SQuAD exact match and
//! token F1 and ROUGE-L for `task: causal`, accuracy, precision, recall, F1 and the confusion
//! matrix for `task: classify`. A BERT classifier (`model_type: bert`) is not asked to generate:
//! its head scores the labels, the prediction is the most likely one and the loss is the
//! cross-entropy of the reference label. An optional baseline model is scored on the same
//! examples, so the metrics show what fine-tuning changed.
//!
//! Outputs `metrics.json` (flat keys, sorted) and `predictions.parquet` (one row per example).

use std::collections::BTreeMap;

use candle_core::{D, IndexOp, Tensor};
use schemars::JsonSchema;
use serde::Deserialize;
use sluice_data::TableColumn;
use sluice_data::schema::Example;
use sluice_eval::ClassificationReport;
use sluice_stage::options::{self, workspace_path};
use sluice_stage::{OptionError, OutputSpec, StageContext, StageError, StageKind, StageReport};

use crate::bert::{self, Inputs};
use crate::config::Arch;
use crate::error::{ModelError, Result};
use crate::generate::{self, Decoding, Request};
use crate::hf::{self, Head, Loaded, LoadedClassifier};
use crate::template::{self, Template, Turn};
use crate::tokenizer;
use crate::trainer::candle_device;

pub const METRICS: &str = "metrics";
pub const PREDICTIONS: &str = "predictions";

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateOptions {
    /// The model to evaluate: a Hugging Face model directory, such as the `model` output of a
    /// `train` stage.
    pub model: String,
    /// The examples: an example-schema Parquet file (a `split` output such as `test`).
    pub data: String,
    /// A second model directory evaluated on the same examples (the base before fine-tuning):
    /// each headline metric gets a `base_` copy and a `delta_` (model − base).
    #[serde(default)]
    pub baseline: Option<String>,
    /// `causal`: free-text answers (loss, perplexity, exact match, F1, ROUGE-L); `classify`: the
    /// generated text is a label, compared with the example's `label` (else its `output`).
    #[serde(default)]
    pub task: Task,
    /// The most tokens generated per example.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// `greedy` takes the most likely token; `sample` draws with `temperature` and `top_p`,
    /// seeded by `seed`.
    #[serde(default)]
    pub decoding: DecodingMode,
    /// Softens (> 1) or sharpens (< 1) the distribution sampled from (`decoding: sample`;
    /// default 1).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling: draw from the most likely tokens whose probabilities add up to `top_p`
    /// (`decoding: sample`; default 1, every token).
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Seed for sampling; the same seed gives the same predictions.
    #[serde(default)]
    pub seed: u64,
    /// Evaluate only the first this many examples.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Generation ends before any of these strings.
    #[serde(default)]
    pub stop: Vec<String>,
}

fn default_max_new_tokens() -> usize {
    64
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    #[default]
    Causal,
    Classify,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecodingMode {
    #[default]
    Greedy,
    Sample,
}

impl EvaluateOptions {
    fn reads(&self) -> Vec<String> {
        let mut out = vec![self.model.clone(), self.data.clone()];
        out.extend(self.baseline.clone());
        out
    }

    fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        errors.extend(workspace_path(&["model"], &self.model));
        errors.extend(workspace_path(&["data"], &self.data));
        if let Some(b) = &self.baseline {
            errors.extend(workspace_path(&["baseline"], b));
        }
        if self.max_new_tokens == 0 {
            errors.push(OptionError::new(&["max_new_tokens"], "must be at least 1"));
        }
        if self.limit == Some(0) {
            errors.push(OptionError::new(&["limit"], "must be at least 1"));
        }
        let greedy = self.decoding == DecodingMode::Greedy;
        for (name, value) in [("temperature", self.temperature), ("top_p", self.top_p)] {
            if value.is_some() && greedy {
                errors.push(
                    OptionError::new(&[name], format!("`{name}` applies to sampling only"))
                        .hint("set `decoding: sample`"),
                );
            }
        }
        if let Some(t) = self.temperature
            && !(t > 0.0 && t.is_finite())
        {
            errors.push(OptionError::new(
                &["temperature"],
                format!("temperature {t} must be positive"),
            ));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            errors.push(OptionError::new(
                &["top_p"],
                format!("top_p {p} must be in (0, 1]"),
            ));
        }
        errors
    }

    fn decoding(&self, index: usize) -> Decoding {
        match self.decoding {
            DecodingMode::Greedy => Decoding::greedy(),
            DecodingMode::Sample => Decoding {
                temperature: self.temperature.unwrap_or(1.0),
                top_p: self.top_p.unwrap_or(1.0),
                // Each example draws from its own stream, so a prediction does not depend on
                // which examples came before it.
                seed: example_seed(self.seed, index),
            },
        }
    }
}

fn example_seed(seed: u64, index: usize) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(b"evaluate");
    h.update(&(index as u64).to_le_bytes());
    let bytes: [u8; 8] = h.finalize().as_bytes()[..8].try_into().expect("8 bytes");
    u64::from_le_bytes(bytes)
}

pub struct Evaluate;

impl StageKind for Evaluate {
    fn name(&self) -> &'static str {
        "evaluate"
    }

    fn version(&self) -> u32 {
        // 2: the predictions table is written with LZ4 pages (sluice-data's writer), not zstd.
        2
    }

    fn description(&self) -> &'static str {
        "Score a model on held-out examples: loss, perplexity, exact match, F1, ROUGE-L or classification metrics, against an optional baseline"
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        vec![
            OutputSpec {
                name: METRICS,
                file: "metrics.json",
                description: "the metrics: one flat JSON object, keys sorted",
            },
            OutputSpec {
                name: PREDICTIONS,
                file: "predictions.parquet",
                description: "one row per example: input, reference, prediction and its scores",
            },
        ]
    }

    fn schema(&self) -> serde_json::Value {
        options::schema::<EvaluateOptions>()
    }

    fn check(&self, with: &serde_json::Value) -> Vec<OptionError> {
        match options::parse::<EvaluateOptions>(with) {
            Ok(o) => o.validate(),
            Err(e) => vec![e],
        }
    }

    fn reads(
        &self,
        with: &serde_json::Value,
        _workspace: &std::path::Path,
    ) -> Result<Vec<String>, StageError> {
        let o: EvaluateOptions = options::parse_for_run(with)?;
        Ok(o.reads())
    }

    fn gpu_unavailable(&self) -> Option<&'static str> {
        crate::trainer::GPU_UNAVAILABLE
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageReport, StageError> {
        let o: EvaluateOptions = options::parse_for_run(ctx.with)?;
        Ok(run(ctx, &o)?)
    }
}

/// A classifier directory loaded for inference, a LoRA adapter folded in.
pub fn load_classifier_for_inference(
    dir: &std::path::Path,
    device: &candle_core::Device,
) -> Result<LoadedClassifier> {
    let mut loaded = hf::load_classifier(dir, device, Head::Saved)?;
    if let Some(lora) = loaded.model.lora.take() {
        lora.merge_into(&mut loaded.model.weights)?;
    }
    Ok(loaded)
}

/// Examples per forward pass when scoring with a classifier's head.
const CLASSIFY_BATCH: usize = 16;

/// Scores `cases` with a classifier's head: the prediction is the most likely label, the loss
/// the negative log-probability of the reference (counted only when the reference is one of the
/// model's labels). Also returns how many inputs were cut to the model's positions.
pub fn score_with_head(
    loaded: &LoadedClassifier,
    cases: &[Case],
    check_cancelled: &dyn Fn() -> std::result::Result<(), StageError>,
) -> Result<(Vec<Scored>, usize)> {
    let model = &loaded.model;
    let labels = model.labels()?;
    let mut scored = Vec::with_capacity(cases.len());
    let mut truncated = 0;
    for chunk in cases.chunks(CLASSIFY_BATCH) {
        check_cancelled()?;
        let mut ids = Vec::with_capacity(chunk.len());
        for c in chunk {
            let (seq, cut) = crate::classifier::encode(model, &loaded.tokenizer, &c.input)?;
            truncated += usize::from(cut);
            ids.push(seq);
        }
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let inputs = Inputs::new(&refs, model.config.pad(), &model.device)?;
        let probabilities = bert::probabilities(&model.logits(&inputs, None)?)?;
        for (c, p) in chunk.iter().zip(probabilities) {
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
                .map_or(0, |(i, _)| i);
            let prediction = labels[best].clone();
            let reference = c.reference.trim();
            let (nll, tokens) = match labels.iter().position(|l| l == reference) {
                Some(i) => (-(p[i].max(f32::MIN_POSITIVE) as f64).ln(), 1),
                None => (0.0, 0),
            };
            scored.push(Scored {
                exact_match: sluice_eval::exact_match(&prediction, reference),
                f1: sluice_eval::token_f1(&prediction, reference),
                rouge_l: sluice_eval::rouge_l(&prediction, reference).f1,
                prediction,
                nll,
                tokens,
            });
        }
    }
    Ok((scored, truncated))
}

/// A model directory loaded for inference: a LoRA adapter is folded into the weights, which
/// gives the same outputs with fewer operations per token.
pub fn load_for_inference(dir: &std::path::Path, device: &candle_core::Device) -> Result<Loaded> {
    let mut loaded = hf::load_dir(dir, device)?;
    if let Some(lora) = loaded.model.lora.take() {
        lora.merge_into(&mut loaded.model.weights)?;
    }
    Ok(loaded)
}

/// One example, as the model is asked it.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub id: String,
    pub input: String,
    /// The prompt text (template rendered, or ChatML up to the last assistant turn).
    pub prompt: String,
    pub reference: String,
}

/// The prompt and reference of an example: a conversation is asked for its last assistant
/// turn; an input/output row is rendered with `template`, its reference the `label` when
/// classifying (if it has one), else the `output`.
pub fn case(example: &Example, template: &Template, task: Task) -> Case {
    if let Some(messages) = example.messages.as_deref()
        && let Some(last) = sluice_data::schema::last_assistant(messages)
    {
        let turns: Vec<Turn<'_>> = messages[..last]
            .iter()
            .map(|m| Turn {
                role: &m.role,
                content: &m.content,
            })
            .collect();
        return Case {
            id: example.id.clone(),
            input: example.input.clone(),
            prompt: template::chat_prompt(&turns),
            reference: messages[last].content.clone(),
        };
    }
    let reference = match (task, &example.label) {
        (Task::Classify, Some(label)) => label.clone(),
        _ => example.output.clone(),
    };
    Case {
        id: example.id.clone(),
        input: example.input.clone(),
        prompt: template.render(&example.input),
        reference,
    }
}

/// The summed negative log-likelihood of the reference's tokens (and the end token) after the
/// prompt, and how many tokens that is. A sequence longer than the context is cut at its end.
pub fn reference_nll(loaded: &Loaded, prompt: &str, reference: &str) -> Result<(f64, usize)> {
    let mut ids = generate::prompt_ids(loaded, prompt)?;
    let start = ids.len();
    ids.extend(tokenizer::encode(&loaded.tokenizer, reference)?);
    ids.extend(loaded.model.config.eos());
    let context = generate::context_length(loaded);
    ids.truncate(context + 1);
    // Predictions of positions start.. (each from the position before it).
    if ids.len() < 2 || start >= ids.len() {
        return Ok((0.0, 0));
    }
    let first = start.max(1);
    let input = Tensor::new(&ids[..ids.len() - 1], &loaded.model.device)?.unsqueeze(0)?;
    let logits = loaded.model.forward(&input, None)?.i(0)?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let targets = Tensor::new(&ids[first..], &loaded.model.device)?.unsqueeze(1)?;
    let picked = logp
        .narrow(0, first - 1, ids.len() - first)?
        .gather(&targets, 1)?;
    let nll = -(picked.sum_all()?.to_scalar::<f32>()? as f64);
    Ok((nll, ids.len() - first))
}

/// One model's result on one example.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub prediction: String,
    pub nll: f64,
    pub tokens: usize,
    pub exact_match: f64,
    pub f1: f64,
    pub rouge_l: f64,
}

impl Scored {
    /// The mean loss per reference token; NaN when the reference has none.
    pub fn loss(&self) -> f64 {
        if self.tokens == 0 {
            f64::NAN
        } else {
            self.nll / self.tokens as f64
        }
    }
}

/// What the model's text means as a prediction: for a label, its first line.
pub fn prediction(text: &str, task: Task) -> String {
    match task {
        Task::Causal => text.trim().to_owned(),
        Task::Classify => text.trim().lines().next().unwrap_or("").trim().to_owned(),
    }
}

fn score_one(
    loaded: &Loaded,
    case: &Case,
    request: &Request,
    task: Task,
) -> Result<(Scored, usize)> {
    let (nll, tokens) = reference_nll(loaded, &case.prompt, &case.reference)?;
    let generated = generate::generate(loaded, &case.prompt, request, &mut |_| true)?;
    let prediction = prediction(&generated.text, task);
    Ok((
        Scored {
            exact_match: sluice_eval::exact_match(&prediction, &case.reference),
            f1: sluice_eval::token_f1(&prediction, &case.reference),
            rouge_l: sluice_eval::rouge_l(&prediction, &case.reference).f1,
            prediction,
            nll,
            tokens,
        },
        generated.truncated,
    ))
}

/// The metrics of one model over every example.
pub fn metrics(cases: &[Case], scored: &[Scored], task: Task) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    m.insert("examples".to_owned(), cases.len() as f64);
    let tokens: usize = scored.iter().map(|s| s.tokens).sum();
    if tokens > 0 {
        let loss = scored.iter().map(|s| s.nll).sum::<f64>() / tokens as f64;
        m.insert("loss".to_owned(), loss);
        m.insert("perplexity".to_owned(), loss.exp());
    }
    match task {
        Task::Causal => {
            for (name, f) in [
                (
                    "exact_match",
                    (|s: &Scored| s.exact_match) as fn(&Scored) -> f64,
                ),
                ("f1", |s| s.f1),
                ("rouge_l", |s| s.rouge_l),
            ] {
                if let Some(mean) = sluice_eval::mean(scored.iter().map(f)) {
                    m.insert(name.to_owned(), mean);
                }
            }
        }
        Task::Classify => {
            let report = ClassificationReport::from_pairs(
                cases
                    .iter()
                    .zip(scored)
                    .map(|(c, s)| (c.reference.trim(), s.prediction.as_str())),
            );
            m.insert("accuracy".to_owned(), report.accuracy);
            m.insert("macro_precision".to_owned(), report.macro_avg.precision);
            m.insert("macro_recall".to_owned(), report.macro_avg.recall);
            m.insert("macro_f1".to_owned(), report.macro_avg.f1);
            m.insert("weighted_f1".to_owned(), report.weighted_avg.f1);
            for (label, c) in &report.per_class {
                let label = metric_label(label);
                m.insert(format!("precision.{label}"), c.precision);
                m.insert(format!("recall.{label}"), c.recall);
                m.insert(format!("f1.{label}"), c.f1);
                m.insert(format!("support.{label}"), c.support as f64);
            }
            let confusion = &report.confusion;
            for (r, row) in confusion.labels.iter().zip(&confusion.counts) {
                for (p, count) in confusion.labels.iter().zip(row) {
                    m.insert(
                        format!("confusion.{}.{}", metric_label(r), metric_label(p)),
                        *count as f64,
                    );
                }
            }
        }
    }
    m
}

/// A label as part of a metric name: characters other than ASCII letters, digits, `_` and `-`
/// become `_` (an empty label is `_`), so that the gate language can name it.
pub fn metric_label(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "_".to_owned() } else { s }
}

/// The model's metrics with the baseline's beside them: `base_K` and `delta_K` (model − base)
/// for every headline metric `K` (a name without a dot) but `examples`.
pub fn with_baseline(
    model: BTreeMap<String, f64>,
    base: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    let mut out = model.clone();
    for (k, b) in base {
        if k.contains('.') || k == "examples" {
            continue;
        }
        out.insert(format!("base_{k}"), *b);
        if let Some(a) = model.get(k) {
            out.insert(format!("delta_{k}"), a - b);
        }
    }
    out
}

/// Metrics as `metrics.json`: one flat object, keys sorted, non-finite values left out,
/// newline-terminated.
pub fn metrics_json(metrics: &BTreeMap<String, f64>) -> String {
    let finite: BTreeMap<&String, &f64> = metrics.iter().filter(|(_, v)| v.is_finite()).collect();
    let mut text = serde_json::to_string_pretty(&finite).expect("numbers serialise");
    text.push('\n');
    text
}

fn run(ctx: &StageContext<'_>, o: &EvaluateOptions) -> Result<StageReport> {
    let device = candle_device(ctx.device)?;
    let mut examples = sluice_data::read_examples(&ctx.path(&o.data), &o.data)?;
    if let Some(limit) = o.limit {
        examples.truncate(limit);
    }
    if examples.is_empty() {
        return Err(StageError::failed(format!("{} holds no examples", o.data)).into());
    }
    let mut models = vec![(o.model.as_str(), "model")];
    if let Some(b) = &o.baseline {
        models.push((b.as_str(), "baseline"));
    }
    let mut results: Vec<(Vec<Case>, Vec<Scored>)> = Vec::new();
    let mut truncated = 0;
    for (dir, role) in &models {
        (ctx.progress)(&format!("loading the {role}"));
        if hf::arch(&ctx.path(dir))? == Arch::Bert {
            if o.task != Task::Classify {
                return Err(ModelError::Config(format!(
                    "{dir} is a BERT classifier: evaluate it with `task: classify`"
                )));
            }
            let loaded = load_classifier_for_inference(&ctx.path(dir), &device)?;
            let cases: Vec<Case> = examples
                .iter()
                .map(|e| case(e, &Template::default(), o.task))
                .collect();
            (ctx.progress)(&format!("{role}: {} examples", cases.len()));
            let (scored, cut) = score_with_head(&loaded, &cases, &|| ctx.check_cancelled())?;
            if *role == "model" {
                truncated += cut;
            }
            results.push((cases, scored));
            continue;
        }
        let loaded = load_for_inference(&ctx.path(dir), &device)?;
        let template = loaded
            .info
            .as_ref()
            .map(|i| i.template.clone())
            .unwrap_or_default();
        let cases: Vec<Case> = examples
            .iter()
            .map(|e| case(e, &template, o.task))
            .collect();
        let mut scored = Vec::with_capacity(cases.len());
        for (i, c) in cases.iter().enumerate() {
            ctx.check_cancelled()?;
            (ctx.progress)(&format!("{role}: example {}/{}", i + 1, cases.len()));
            let request = Request {
                max_new_tokens: o.max_new_tokens,
                decoding: o.decoding(i),
                stop: o.stop.clone(),
            };
            let (s, cut) = score_one(&loaded, c, &request, o.task)?;
            if *role == "model" && cut > 0 {
                truncated += 1;
            }
            scored.push(s);
        }
        results.push((cases, scored));
    }
    let (cases, scored) = &results[0];
    let mut all = metrics(cases, scored, o.task);
    all.insert("truncated".to_owned(), truncated as f64);
    if let Some((base_cases, base_scored)) = results.get(1) {
        all = with_baseline(all, &metrics(base_cases, base_scored, o.task));
    }
    let metrics_path = ctx.output(METRICS)?;
    std::fs::write(metrics_path, metrics_json(&all))
        .map_err(|e| crate::ModelError::file(metrics_path, e))?;
    write_predictions(
        ctx.output(PREDICTIONS)?,
        cases,
        scored,
        results.get(1).map(|(_, s)| s.as_slice()),
    )?;
    // GPU kernels do not promise the same sums run to run, so predictions (and the metrics
    // file) may differ there; on the CPU they are bit-exact.
    let unstable = if matches!(ctx.device, sluice_stage::Device::Cpu) {
        Vec::new()
    } else {
        vec![METRICS.to_owned(), PREDICTIONS.to_owned()]
    };
    Ok(StageReport {
        metrics: all.into_iter().filter(|(_, v)| v.is_finite()).collect(),
        unstable,
    })
}

fn write_predictions(
    path: &std::path::Path,
    cases: &[Case],
    scored: &[Scored],
    base: Option<&[Scored]>,
) -> Result<()> {
    let text = |f: fn(&Case) -> &String| TableColumn::Text(cases.iter().map(f).cloned().collect());
    let number =
        |s: &[Scored], f: fn(&Scored) -> f64| TableColumn::Number(s.iter().map(f).collect());
    let mut columns = vec![
        ("id", text(|c| &c.id)),
        ("input", text(|c| &c.input)),
        ("reference", text(|c| &c.reference)),
        (
            "prediction",
            TableColumn::Text(scored.iter().map(|s| s.prediction.clone()).collect()),
        ),
        ("exact_match", number(scored, |s| s.exact_match)),
        ("f1", number(scored, |s| s.f1)),
        ("rouge_l", number(scored, |s| s.rouge_l)),
        ("loss", number(scored, Scored::loss)),
    ];
    if let Some(base) = base {
        columns.push((
            "base_prediction",
            TableColumn::Text(base.iter().map(|s| s.prediction.clone()).collect()),
        ));
        columns.push(("base_exact_match", number(base, |s| s.exact_match)));
        columns.push(("base_f1", number(base, |s| s.f1)));
        columns.push(("base_rouge_l", number(base, |s| s.rouge_l)));
        columns.push(("base_loss", number(base, Scored::loss)));
    }
    sluice_data::write_table(path, &columns)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(prediction: &str, nll: f64, tokens: usize, em: f64, f1: f64, rouge: f64) -> Scored {
        Scored {
            prediction: prediction.to_owned(),
            nll,
            tokens,
            exact_match: em,
            f1,
            rouge_l: rouge,
        }
    }

    fn cases(references: &[&str]) -> Vec<Case> {
        references
            .iter()
            .enumerate()
            .map(|(i, r)| Case {
                id: i.to_string(),
                input: String::new(),
                prompt: String::new(),
                reference: (*r).to_owned(),
            })
            .collect()
    }

    fn check(actual: &BTreeMap<String, f64>, expected: &[(&str, f64)]) {
        let keys: Vec<&str> = actual.keys().map(String::as_str).collect();
        let want: Vec<&str> = expected.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, want);
        for (k, v) in expected {
            assert!((actual[*k] - v).abs() < 1e-12, "{k}: {} != {v}", actual[*k]);
        }
    }

    #[test]
    fn causal_metrics_weigh_the_loss_by_tokens_and_average_the_scores() {
        // Losses 2.0 over 1 token and 4.0 over 3: 6 / 4 per token, not the mean of 2 and 4/3.
        let s = [
            scored("a", 2.0, 1, 1.0, 1.0, 1.0),
            scored("b", 4.0, 3, 0.0, 0.5, 0.25),
        ];
        let m = metrics(&cases(&["a", "c"]), &s, Task::Causal);
        check(
            &m,
            &[
                ("exact_match", 0.5),
                ("examples", 2.0),
                ("f1", 0.75),
                ("loss", 1.5),
                ("perplexity", 1.5f64.exp()),
                ("rouge_l", 0.625),
            ],
        );
        assert!(scored("", 0.0, 0, 0.0, 0.0, 0.0).loss().is_nan());
    }

    #[test]
    fn classify_metrics_have_per_class_scores_and_the_confusion_matrix() {
        // References yes, yes, no; predictions yes, no, no.
        let s = [
            scored("yes", 1.0, 1, 0.0, 0.0, 0.0),
            scored("no", 1.0, 1, 0.0, 0.0, 0.0),
            scored("no", 1.0, 1, 0.0, 0.0, 0.0),
        ];
        let m = metrics(&cases(&["yes", "yes", "no"]), &s, Task::Classify);
        // no: tp 1, fp 1, fn 0 → P 1/2, R 1, F1 2/3. yes: tp 1, fp 0, fn 1 → P 1, R 1/2, F1 2/3.
        check(
            &m,
            &[
                ("accuracy", 2.0 / 3.0),
                ("confusion.no.no", 1.0),
                ("confusion.no.yes", 0.0),
                ("confusion.yes.no", 1.0),
                ("confusion.yes.yes", 1.0),
                ("examples", 3.0),
                ("f1.no", 2.0 / 3.0),
                ("f1.yes", 2.0 / 3.0),
                ("loss", 1.0),
                ("macro_f1", 2.0 / 3.0),
                ("macro_precision", 0.75),
                ("macro_recall", 0.75),
                ("perplexity", 1.0f64.exp()),
                ("precision.no", 0.5),
                ("precision.yes", 1.0),
                ("recall.no", 1.0),
                ("recall.yes", 0.5),
                ("support.no", 1.0),
                ("support.yes", 2.0),
                ("weighted_f1", 2.0 / 3.0),
            ],
        );
    }

    #[test]
    fn the_baseline_adds_base_and_delta_keys_for_headline_metrics() {
        let model: BTreeMap<String, f64> = [("examples", 2.0), ("f1", 0.75), ("f1.x", 1.0)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let base: BTreeMap<String, f64> = [("examples", 2.0), ("f1", 0.25), ("f1.x", 0.0)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        check(
            &with_baseline(model, &base),
            &[
                ("base_f1", 0.25),
                ("delta_f1", 0.5),
                ("examples", 2.0),
                ("f1", 0.75),
                ("f1.x", 1.0),
            ],
        );
    }

    #[test]
    fn labels_become_metric_names_and_predictions_are_trimmed() {
        assert_eq!(metric_label("very good"), "very_good");
        assert_eq!(metric_label("a.b/c-d_e"), "a_b_c-d_e");
        assert_eq!(metric_label(""), "_");
        assert_eq!(prediction("  yes\nbecause\n", Task::Classify), "yes");
        assert_eq!(prediction("  two\nlines \n", Task::Causal), "two\nlines");
        let mut m = BTreeMap::new();
        m.insert("b".to_owned(), 1.0);
        m.insert("a".to_owned(), f64::NAN);
        assert_eq!(metrics_json(&m), "{\n  \"b\": 1.0\n}\n");
    }

    #[test]
    fn examples_become_prompts_and_references() {
        use sluice_data::schema::Message;
        let template = Template::new("Q: {input}\nA: ");
        let row = Example {
            id: "1".into(),
            input: "2+2?".into(),
            output: "four".into(),
            label: Some("math".into()),
            ..Example::default()
        };
        let c = case(&row, &template, Task::Causal);
        assert_eq!(
            (c.prompt.as_str(), c.reference.as_str()),
            ("Q: 2+2?\nA: ", "four")
        );
        assert_eq!(case(&row, &template, Task::Classify).reference, "math");
        let turn = |role: &str, content: &str| Message {
            role: role.into(),
            content: content.into(),
        };
        let chat = Example {
            messages: Some(vec![
                turn("user", "hi"),
                turn("assistant", "hello"),
                turn("user", "2+2?"),
                turn("assistant", "four"),
            ]),
            ..row
        };
        let c = case(&chat, &template, Task::Causal);
        assert_eq!(
            c.prompt,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(c.reference, "four");
    }

    #[test]
    fn options_are_checked() {
        let errors = |with: serde_json::Value| -> Vec<String> {
            match options::parse::<EvaluateOptions>(&with) {
                Ok(o) => o.validate().into_iter().map(|e| e.message).collect(),
                Err(e) => vec![e.message],
            }
        };
        let ok = serde_json::json!({"model": "m", "data": "d.parquet"});
        assert!(errors(ok).is_empty());
        assert_eq!(
            errors(serde_json::json!({"model": "m", "data": "d", "temperature": 0.7})),
            ["`temperature` applies to sampling only"]
        );
        assert_eq!(
            errors(
                serde_json::json!({"model": "m", "data": "d", "decoding": "sample", "top_p": 1.5})
            ),
            ["top_p 1.5 must be in (0, 1]"]
        );
        assert_eq!(
            errors(serde_json::json!({"model": "/m", "data": "d", "max_new_tokens": 0})),
            ["`/m` is absolute", "must be at least 1"]
        );
    }
}
