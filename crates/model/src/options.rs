//! The `with:` options of the `train` stage: typed, documented (they become the JSON Schema) and
//! checked before anything runs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_stage::OptionError;
use sluice_stage::options::workspace_path;

use crate::batch::Overflow;
use crate::optim::Schedule;

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainOptions {
    /// The model to start from: a Hugging Face model directory (for example the `model` output of
    /// another `train` stage), `{hub: org/name}` for the Hugging Face cache, or
    /// `{init: {arch: llama, …}}` for fresh weights.
    pub base: Base,
    /// Training data: an example-schema Parquet file (a `split` output), or a list of
    /// `{from: file, weight: w}` mixed by weight (multi-task fine-tuning).
    pub data: Data,
    /// Validation data (one file or a list): its loss is computed every `eval_every` steps and
    /// at the end, and the best weights are the ones kept.
    #[serde(default)]
    pub validation: Option<Files>,
    /// `full` trains every weight; `lora` trains low-rank adapters; `prompt` trains virtual tokens.
    #[serde(default)]
    pub method: Method,
    /// LoRA options (with `method: lora`).
    #[serde(default)]
    pub lora: Option<LoraOptions>,
    /// Prompt-tuning options (with `method: prompt`).
    #[serde(default)]
    pub prompt: Option<PromptOptions>,
    /// Passes over the training data (fractions allowed); 1 when neither this nor `max_steps`
    /// is given.
    #[serde(default)]
    pub epochs: Option<f64>,
    /// Optimizer steps to take; overrides `epochs`.
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// Examples per micro-batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed into one optimizer step.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Peak learning rate; by default 3e-4 for `full`, 2e-3 for `lora`, 3e-2 for `prompt`.
    #[serde(default)]
    pub lr: Option<f64>,
    /// AdamW's decoupled weight decay (matrices only).
    #[serde(default)]
    pub weight_decay: f64,
    /// Optimizer steps of linear warmup from 0 to `lr`.
    #[serde(default)]
    pub warmup_steps: usize,
    /// The decay after warmup.
    #[serde(default = "default_schedule")]
    pub schedule: Schedule,
    /// Gradients are scaled down to this global L2 norm (0 turns clipping off).
    #[serde(default = "default_clip")]
    pub max_grad_norm: f64,
    /// Token limit per example; by default the base's `seq` (init) or 512.
    #[serde(default)]
    pub seq_len: Option<usize>,
    /// What to do with a longer example: `truncate` it or `drop` it.
    #[serde(default = "default_overflow")]
    pub overflow: Overflow,
    /// The prompt for input/output rows, with `{input}` where the input goes; the output
    /// follows it. Default: "### Input:\n{input}\n\n### Response:\n".
    #[serde(default)]
    pub template: Option<String>,
    /// `output`: only output tokens (and assistant turns) count towards the loss; `all`: every
    /// token does (language-model pretraining).
    #[serde(default)]
    pub loss: LossOn,
    /// Compute the validation loss every this many optimizer steps.
    #[serde(default)]
    pub eval_every: Option<usize>,
    /// Stop when the validation loss has not improved for `patience` evaluations.
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Save a checkpoint every this many optimizer steps; a killed run resumes from it.
    #[serde(default)]
    pub save_every: Option<usize>,
    /// Seed for initialisation, data order and dropout.
    #[serde(default)]
    pub seed: u64,
}

fn default_batch_size() -> usize {
    8
}

fn one() -> usize {
    1
}

fn default_schedule() -> Schedule {
    Schedule::Cosine
}

fn default_clip() -> f64 {
    1.0
}

fn default_overflow() -> Overflow {
    Overflow::Truncate
}

/// Where the base model comes from.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Base {
    /// A model directory, relative to the workspace.
    Path(String),
    Spec(BaseSpec),
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BaseSpec {
    /// A model directory, relative to the workspace.
    #[serde(default)]
    pub path: Option<String>,
    /// A Hugging Face model name (`org/name`), looked up in the local Hugging Face cache.
    #[serde(default)]
    pub hub: Option<String>,
    /// The revision of a `hub` model (default `main`).
    #[serde(default)]
    pub revision: Option<String>,
    /// Fresh weights of this shape.
    #[serde(default)]
    pub init: Option<InitOptions>,
}

/// The shape of a model built from scratch. Its tokenizer is a byte-level BPE trained on the
/// training text in the same stage (or the `tokenizer` file given).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitOptions {
    /// The architecture: `llama` (a causal LM) or `bert` (an encoder with a classification head
    /// for the training data's labels; `tie_embeddings`, `kv_heads` and `rope_theta` do not apply).
    #[serde(default = "default_arch")]
    pub arch: String,
    /// Hidden size.
    pub hidden: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention); default: `heads`.
    #[serde(default)]
    pub kv_heads: Option<usize>,
    /// MLP size; default: 8/3 of `hidden`, rounded up to a multiple of 32 (llama), 4 × `hidden`
    /// (bert).
    #[serde(default)]
    pub intermediate: Option<usize>,
    /// Vocabulary size of the tokenizer trained for it.
    pub vocab: usize,
    /// Longest sequence (positions).
    pub seq: usize,
    /// RoPE base frequency.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// Share the input embeddings with the output head.
    #[serde(default = "yes")]
    pub tie_embeddings: bool,
    /// A `tokenizer.json` to use instead of training one.
    #[serde(default)]
    pub tokenizer: Option<String>,
}

fn default_arch() -> String {
    "llama".into()
}

fn default_theta() -> f64 {
    10_000.0
}

fn yes() -> bool {
    true
}

/// One file or several.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Files {
    One(String),
    Many(Vec<String>),
}

impl Files {
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Files::One(p) => vec![p],
            Files::Many(ps) => ps.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Data {
    One(String),
    Mix(Vec<Source>),
}

/// One dataset of a mixture.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// An example-schema Parquet file.
    pub from: String,
    /// Its share of the examples drawn (weights are normalised).
    #[serde(default = "unit")]
    pub weight: f64,
}

fn unit() -> f64 {
    1.0
}

impl Data {
    pub fn sources(&self) -> Vec<(String, f64)> {
        match self {
            Data::One(p) => vec![(p.clone(), 1.0)],
            Data::Mix(s) => s.iter().map(|s| (s.from.clone(), s.weight)).collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    #[default]
    Full,
    Lora,
    Prompt,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Full => "full",
            Method::Lora => "lora",
            Method::Prompt => "prompt",
        }
    }

    pub fn default_lr(self) -> f64 {
        match self {
            Method::Full => 3e-4,
            Method::Lora => 2e-3,
            Method::Prompt => 3e-2,
        }
    }
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraOptions {
    /// Rank of the update matrices.
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// Scale numerator: the update is multiplied by `alpha / rank`.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Dropout on the adapter's input.
    #[serde(default)]
    pub dropout: f32,
    /// Modules to adapt: `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`,
    /// `down_proj` (llama); `query`, `key`, `value`, `dense` (BERT, whose classification head
    /// trains beside the adapters); or `all-linear`. Default: `q_proj`, `v_proj` for llama,
    /// `query`, `value` for BERT.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    /// Fold the adapter into the base weights in the `model` output (else it is saved beside
    /// them as a PEFT adapter).
    #[serde(default)]
    pub merge: bool,
}

impl Default for LoraOptions {
    fn default() -> LoraOptions {
        LoraOptions {
            rank: default_rank(),
            alpha: default_alpha(),
            dropout: 0.0,
            targets: None,
            merge: false,
        }
    }
}

fn default_rank() -> usize {
    8
}

fn default_alpha() -> f64 {
    16.0
}

impl LoraOptions {
    /// The adapter configuration for `arch`: these options, with the architecture's default
    /// targets when none are given.
    pub fn config(&self, arch: crate::config::Arch) -> crate::lora::LoraConfig {
        let default: &[&str] = match arch {
            crate::config::Arch::Llama => &["q_proj", "v_proj"],
            crate::config::Arch::Bert => &["query", "value"],
        };
        crate::lora::LoraConfig {
            rank: self.rank,
            alpha: self.alpha,
            dropout: self.dropout,
            targets: self
                .targets
                .clone()
                .unwrap_or_else(|| default.iter().map(|t| (*t).to_owned()).collect()),
        }
    }
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptOptions {
    /// Learned embeddings prepended to every input.
    #[serde(default = "default_virtual_tokens")]
    pub virtual_tokens: usize,
}

impl Default for PromptOptions {
    fn default() -> PromptOptions {
        PromptOptions {
            virtual_tokens: default_virtual_tokens(),
        }
    }
}

fn default_virtual_tokens() -> usize {
    16
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LossOn {
    #[default]
    Output,
    All,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Evaluations without improvement before stopping.
    pub patience: usize,
}

impl TrainOptions {
    /// Every file or directory the stage reads, workspace-relative.
    pub fn reads(&self) -> Vec<String> {
        let mut out: Vec<String> = self.data.sources().into_iter().map(|(p, _)| p).collect();
        if let Some(v) = &self.validation {
            out.extend(v.paths().into_iter().map(str::to_owned));
        }
        match &self.base {
            Base::Path(p) => out.push(p.clone()),
            Base::Spec(s) => {
                out.extend(s.path.clone());
                if let Some(t) = s.init.as_ref().and_then(|i| i.tokenizer.clone()) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// The problems `check` reports, beyond what deserialisation catches.
    pub fn validate(&self) -> Vec<OptionError> {
        let mut errors = Vec::new();
        for (i, (p, w)) in self.data.sources().iter().enumerate() {
            let at: Vec<String> = match &self.data {
                Data::One(_) => vec!["data".into()],
                Data::Mix(_) => vec!["data".into(), i.to_string(), "from".into()],
            };
            let at: Vec<&str> = at.iter().map(String::as_str).collect();
            errors.extend(workspace_path(&at, p));
            if !(*w > 0.0 && w.is_finite()) {
                let mut at = at.clone();
                at.pop();
                at.push("weight");
                errors.push(OptionError::new(
                    &at,
                    format!("weight {w} must be positive"),
                ));
            }
        }
        if let Some(v) = &self.validation {
            for p in v.paths() {
                errors.extend(workspace_path(&["validation"], p));
            }
        }
        match &self.base {
            Base::Path(p) => errors.extend(workspace_path(&["base"], p)),
            Base::Spec(s) => {
                let given = [s.path.is_some(), s.hub.is_some(), s.init.is_some()]
                    .iter()
                    .filter(|b| **b)
                    .count();
                if given != 1 {
                    errors.push(
                        OptionError::new(&["base"], "give exactly one of `path`, `hub` and `init`")
                            .hint("for example `base: {init: {arch: llama, hidden: 128, layers: 2, heads: 4, vocab: 2048, seq: 256}}`"),
                    );
                }
                if let Some(p) = &s.path {
                    errors.extend(workspace_path(&["base", "path"], p));
                }
                if let Some(init) = &s.init {
                    errors.extend(validate_init(init));
                }
                if s.revision.is_some() && s.hub.is_none() {
                    errors.push(OptionError::new(
                        &["base", "revision"],
                        "`revision` goes with `hub`",
                    ));
                }
            }
        }
        match (self.method, &self.lora, &self.prompt) {
            (Method::Lora, Some(l), _) => {
                if l.rank == 0 {
                    errors.push(OptionError::new(
                        &["lora", "rank"],
                        "rank must be at least 1",
                    ));
                }
                if !(0.0..1.0).contains(&l.dropout) {
                    errors.push(OptionError::new(
                        &["lora", "dropout"],
                        "dropout must be in [0, 1)",
                    ));
                }
                let arch = match &self.base {
                    Base::Spec(BaseSpec {
                        init: Some(init), ..
                    }) => crate::config::Arch::from_init(&init.arch),
                    _ => None,
                };
                let result = match (&l.targets, arch) {
                    (Some(t), arch) => crate::lora::check_targets(t, arch),
                    (None, _) => Ok(()),
                };
                if let Err(e) = result {
                    let message = e.to_string();
                    let message = message.trim_start_matches("bad model configuration: ");
                    errors.push(OptionError::new(&["lora", "targets"], message));
                }
            }
            (Method::Prompt, _, Some(p)) if p.virtual_tokens == 0 => {
                errors.push(OptionError::new(
                    &["prompt", "virtual_tokens"],
                    "at least 1 virtual token is needed",
                ));
            }
            (m, Some(_), _) if m != Method::Lora => errors.push(
                OptionError::new(
                    &["lora"],
                    format!("`lora` options are given but the method is `{}`", m.name()),
                )
                .hint("set `method: lora`"),
            ),
            (m, _, Some(_)) if m != Method::Prompt => errors.push(
                OptionError::new(
                    &["prompt"],
                    format!(
                        "`prompt` options are given but the method is `{}`",
                        m.name()
                    ),
                )
                .hint("set `method: prompt`"),
            ),
            _ => {}
        }
        if self.batch_size == 0 {
            errors.push(OptionError::new(
                &["batch_size"],
                "batch size must be at least 1",
            ));
        }
        if self.grad_accum == 0 {
            errors.push(OptionError::new(&["grad_accum"], "must be at least 1"));
        }
        if self.max_steps == Some(0) {
            errors.push(OptionError::new(&["max_steps"], "must be at least 1"));
        }
        if let Some(e) = self.epochs
            && !(e > 0.0 && e.is_finite())
        {
            errors.push(OptionError::new(
                &["epochs"],
                format!("{e} must be positive"),
            ));
        }
        if let Some(lr) = self.lr
            && !(lr > 0.0 && lr.is_finite())
        {
            errors.push(OptionError::new(
                &["lr"],
                format!("learning rate {lr} must be positive"),
            ));
        }
        if self.seq_len == Some(0) {
            errors.push(OptionError::new(&["seq_len"], "must be at least 1"));
        }
        if self.eval_every == Some(0) {
            errors.push(OptionError::new(&["eval_every"], "must be at least 1"));
        }
        if self.save_every == Some(0) {
            errors.push(OptionError::new(&["save_every"], "must be at least 1"));
        }
        if self.eval_every.is_some() && self.validation.is_none() {
            errors.push(OptionError::new(&["eval_every"], "needs `validation` data"));
        }
        if self.early_stopping.is_some() && self.validation.is_none() {
            errors.push(OptionError::new(
                &["early_stopping"],
                "needs `validation` data",
            ));
        }
        let bert_init = matches!(&self.base, Base::Spec(BaseSpec { init: Some(init), .. })
            if crate::config::Arch::from_init(&init.arch) == Some(crate::config::Arch::Bert));
        if bert_init && self.template.is_some() {
            errors.push(OptionError::new(
                &["template"],
                "`template` applies to causal language models; a BERT classifier reads the `input` text as it is",
            ));
        }
        if bert_init && self.loss == LossOn::All {
            errors.push(OptionError::new(
                &["loss"],
                "`loss: all` applies to causal language models; a BERT classifier's loss is the cross-entropy of its labels",
            ));
        }
        if let Some(t) = &self.template
            && !t.contains("{input}")
        {
            errors.push(OptionError::new(
                &["template"],
                "the template has no `{input}` placeholder",
            ));
        }
        errors
    }
}

fn validate_init(init: &InitOptions) -> Vec<OptionError> {
    let mut errors = Vec::new();
    let at = |k: &'static str| vec!["base", "init", k];
    let arch = crate::config::Arch::from_init(&init.arch);
    if arch.is_none() {
        errors.push(
            OptionError::new(&at("arch"), format!("unknown architecture `{}`", init.arch))
                .hint("`init` builds `llama` (causal LM) and `bert` (classifier) models"),
        );
    }
    let llama = arch == Some(crate::config::Arch::Llama);
    if !llama {
        for (k, given) in [
            ("kv_heads", init.kv_heads.is_some()),
            ("rope_theta", init.rope_theta != default_theta()),
        ] {
            if given {
                errors.push(OptionError::new(
                    &at(k),
                    format!("`{k}` applies to `arch: llama`"),
                ));
            }
        }
    }
    for (k, v) in [
        ("hidden", init.hidden),
        ("layers", init.layers),
        ("heads", init.heads),
        ("seq", init.seq),
    ] {
        if v == 0 {
            errors.push(OptionError::new(&at(k), "must be at least 1"));
        }
    }
    if init.heads > 0 && !init.hidden.is_multiple_of(init.heads) {
        errors.push(OptionError::new(
            &at("hidden"),
            format!(
                "hidden size {} is not a multiple of {} heads",
                init.hidden, init.heads
            ),
        ));
    } else if llama && init.heads > 0 && !(init.hidden / init.heads).is_multiple_of(2) {
        errors.push(OptionError::new(
            &at("heads"),
            "the head size (hidden / heads) must be even",
        ));
    }
    if let Some(kv) = init.kv_heads
        && (kv == 0 || !init.heads.is_multiple_of(kv))
    {
        errors.push(OptionError::new(
            &at("kv_heads"),
            format!(
                "{} heads are not a multiple of {kv} key/value heads",
                init.heads
            ),
        ));
    }
    let minimum = crate::tokenizer::SPECIALS.len() + 256;
    if init.tokenizer.is_none() && init.vocab <= minimum {
        errors.push(OptionError::new(
            &at("vocab"),
            format!("a byte-level BPE vocabulary needs more than {minimum} entries"),
        ));
    }
    if let Some(t) = &init.tokenizer {
        errors.extend(workspace_path(&at("tokenizer"), t));
    }
    errors
}
