//! The model configurations: the `config.json` of a Hugging Face llama or BERT directory, read
//! and written with the keys `transformers` uses, so that a directory we write loads in
//! `transformers` and one it writes loads here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// A llama-architecture causal LM (Llama, TinyLlama, SmolLM, …).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<EosTokens>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
}

/// `eos_token_id` is a number or a list of numbers in the wild.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EosTokens {
    One(u32),
    Many(Vec<u32>),
}

fn default_max_positions() -> usize {
    2048
}

fn default_eps() -> f64 {
    1e-6
}

fn default_theta() -> f64 {
    10_000.0
}

impl LlamaConfig {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// The first end-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        match &self.eos_token_id {
            Some(EosTokens::One(id)) => Some(*id),
            Some(EosTokens::Many(ids)) => ids.first().copied(),
            None => None,
        }
    }

    /// Every end-of-sequence token.
    pub fn eos_all(&self) -> Vec<u32> {
        match &self.eos_token_id {
            Some(EosTokens::One(id)) => vec![*id],
            Some(EosTokens::Many(ids)) => ids.clone(),
            None => Vec::new(),
        }
    }

    /// Rejects shapes the model cannot be built with, in the user's terms.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.num_attention_heads == 0 || self.hidden_size == 0 || self.vocab_size == 0 {
            return bad("hidden size, heads and vocabulary must be positive".into());
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden size {} is not a multiple of {} heads",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "head dimension {} must be even for RoPE",
                self.head_dim()
            ));
        }
        let kv = self.kv_heads();
        if kv == 0 || !self.num_attention_heads.is_multiple_of(kv) {
            return bad(format!(
                "{} attention heads are not a multiple of {kv} key/value heads",
                self.num_attention_heads
            ));
        }
        if let Some(act) = &self.hidden_act
            && act != "silu"
        {
            return bad(format!(
                "hidden activation `{act}` is not supported (only `silu`)"
            ));
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return bad("`rope_scaling` is not supported yet".into());
        }
        Ok(())
    }

    /// The `config.json` text `transformers` expects, with the architecture named.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serialises");
        let map = v.as_object_mut().expect("config is an object");
        map.retain(|_, v| !v.is_null());
        map.insert(
            "architectures".into(),
            serde_json::json!(["LlamaForCausalLM"]),
        );
        map.insert("model_type".into(), serde_json::json!("llama"));
        map.insert("hidden_act".into(), serde_json::json!("silu"));
        map.insert("torch_dtype".into(), serde_json::json!("float32"));
        map.insert("attention_bias".into(), serde_json::json!(false));
        map.insert("mlp_bias".into(), serde_json::json!(false));
        map.insert(
            "num_key_value_heads".into(),
            serde_json::json!(self.kv_heads()),
        );
        v
    }
}

/// The architecture a model directory holds, from its `config.json`'s `model_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// A llama-architecture causal LM (`llama`, `mistral`, `qwen2`, or no `model_type`).
    Llama,
    /// A BERT encoder with a sequence-classification head (`bert`).
    Bert,
}

impl Arch {
    /// The architecture named by a `model_type`; `None` for one we do not handle.
    pub fn from_model_type(model_type: Option<&str>) -> Option<Arch> {
        match model_type {
            None | Some("llama" | "mistral" | "qwen2") => Some(Arch::Llama),
            Some("bert") => Some(Arch::Bert),
            Some(_) => None,
        }
    }

    /// The architecture `init`'s `arch` names.
    pub fn from_init(arch: &str) -> Option<Arch> {
        match arch {
            "llama" => Some(Arch::Llama),
            "bert" => Some(Arch::Bert),
            _ => None,
        }
    }
}

/// A BERT encoder (BERT, MiniLM, …) as `transformers`' `BertConfig` writes it. `id2label` names
/// the classes of the classification head, in logit order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_bert_act")]
    pub hidden_act: String,
    #[serde(default = "default_bert_dropout")]
    pub hidden_dropout_prob: f32,
    #[serde(default = "default_bert_dropout")]
    pub attention_probs_dropout_prob: f32,
    /// Dropout before the classifier; `hidden_dropout_prob` when unset.
    #[serde(default)]
    pub classifier_dropout: Option<f32>,
    #[serde(default = "default_bert_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_bert_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    /// Class index (as a string, as JSON keys are) → label.
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
}

fn default_bert_act() -> String {
    "gelu".into()
}

fn default_bert_dropout() -> f32 {
    0.1
}

fn default_bert_positions() -> usize {
    512
}

fn default_type_vocab() -> usize {
    2
}

fn default_bert_eps() -> f64 {
    1e-12
}

impl BertConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn pad(&self) -> u32 {
        self.pad_token_id.unwrap_or(0)
    }

    pub fn classifier_dropout(&self) -> f32 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    /// The class labels in logit order; empty when the configuration names none.
    pub fn labels(&self) -> Result<Vec<String>, ModelError> {
        let Some(map) = &self.id2label else {
            return Ok(Vec::new());
        };
        let mut pairs = Vec::with_capacity(map.len());
        for (k, v) in map {
            let i: usize = k
                .parse()
                .map_err(|_| ModelError::Config(format!("id2label key `{k}` is not a number")))?;
            pairs.push((i, v.clone()));
        }
        pairs.sort();
        if pairs.iter().enumerate().any(|(i, (k, _))| i != *k) {
            return Err(ModelError::Config(
                "id2label must number its labels 0, 1, 2, …".into(),
            ));
        }
        Ok(pairs.into_iter().map(|(_, v)| v).collect())
    }

    pub fn set_labels(&mut self, labels: &[String]) {
        self.id2label = Some(
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), l.clone()))
                .collect(),
        );
    }

    /// Whether `hidden_act` is one we compute: `gelu` (erf) or its tanh approximations.
    pub fn gelu_tanh(&self) -> Result<bool, ModelError> {
        match self.hidden_act.as_str() {
            "gelu" => Ok(false),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(true),
            other => Err(ModelError::Config(format!(
                "hidden activation `{other}` is not supported (`gelu`, `gelu_new`, `gelu_pytorch_tanh`)"
            ))),
        }
    }

    /// Rejects shapes the model cannot be built with, in the user's terms.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.num_attention_heads == 0 || self.hidden_size == 0 || self.vocab_size == 0 {
            return bad("hidden size, heads and vocabulary must be positive".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden size {} is not a multiple of {} heads",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self
            .position_embedding_type
            .as_deref()
            .is_some_and(|p| p != "absolute")
        {
            return bad(format!(
                "position_embedding_type `{}` is not supported (only `absolute`)",
                self.position_embedding_type.as_deref().unwrap_or_default()
            ));
        }
        if self.type_vocab_size == 0 || self.max_position_embeddings == 0 {
            return bad("type_vocab_size and max_position_embeddings must be positive".into());
        }
        self.gelu_tanh()?;
        self.labels()?;
        Ok(())
    }

    /// The `config.json` of a `BertForSequenceClassification`.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serialises");
        let map = v.as_object_mut().expect("config is an object");
        map.retain(|_, v| !v.is_null());
        let labels = self.labels().unwrap_or_default();
        let label2id: BTreeMap<&str, usize> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        map.insert(
            "architectures".into(),
            serde_json::json!(["BertForSequenceClassification"]),
        );
        map.insert("model_type".into(), serde_json::json!("bert"));
        map.insert("num_labels".into(), serde_json::json!(labels.len()));
        map.insert("label2id".into(), serde_json::json!(label2id));
        map.insert(
            "problem_type".into(),
            serde_json::json!("single_label_classification"),
        );
        map.insert("torch_dtype".into(), serde_json::json!("float32"));
        map.insert(
            "position_embedding_type".into(),
            serde_json::json!("absolute"),
        );
        map.insert(
            "pad_token_id".into(),
            serde_json::json!(self.pad_token_id.unwrap_or(0)),
        );
        v
    }
}
