//! The model configuration: the `config.json` of a Hugging Face llama directory, read and written
//! with the keys `transformers` uses, so that a directory we write loads in `transformers` and one
//! it writes loads here.

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
