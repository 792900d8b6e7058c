//! Prompt tuning (Lester et al., 2021): `virtual_tokens` learned embeddings prepended to every
//! input, the model frozen. Saved as PEFT saves it: `prompt_embeddings` in
//! `adapter_model.safetensors`, with an `adapter_config.json` of type `PROMPT_TUNING`.

use std::path::Path;

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::lora::{ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use crate::rng::Rng;
use crate::safetensors;
use crate::weights::{Param, Weights};

pub const PROMPT_WEIGHT: &str = "prompt_embeddings";

/// The model a prompt belongs to, as PEFT's `adapter_config.json` records it.
pub struct PromptModel {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    /// PEFT's task type: `CAUSAL_LM` or `SEQ_CLS`.
    pub task_type: &'static str,
}

/// Fresh virtual tokens: copies of randomly chosen rows of the `embeddings` weight, which start
/// training from inputs the model has seen (PEFT's sampled-vocabulary init) rather than from
/// noise.
pub fn init(
    virtual_tokens: usize,
    embeddings: &str,
    weights: &Weights,
    rng: &mut Rng,
    device: &Device,
) -> Result<Param> {
    if virtual_tokens == 0 {
        return Err(ModelError::Config(
            "prompt tuning needs at least 1 virtual token".into(),
        ));
    }
    let embed = weights.get(embeddings)?;
    let vocab = embed.dim(0)?;
    let rows: Vec<u32> = (0..virtual_tokens)
        .map(|_| rng.below(vocab) as u32)
        .collect();
    let picked = embed
        .index_select(&Tensor::new(rows.as_slice(), device)?, 0)?
        .detach();
    Ok(Param::Trainable(Var::from_tensor(&picked)?))
}

/// Writes the virtual tokens in PEFT's layout into `dir`.
pub fn save_peft(prompt: &Tensor, model: &PromptModel, dir: &Path, base: &str) -> Result<()> {
    let mut tensors = std::collections::BTreeMap::new();
    tensors.insert(PROMPT_WEIGHT.to_owned(), prompt.clone());
    safetensors::save(&tensors, &dir.join(ADAPTER_WEIGHTS))?;
    let peft = PeftPromptConfig {
        peft_type: "PROMPT_TUNING".into(),
        task_type: model.task_type.into(),
        num_virtual_tokens: prompt.dim(0)?,
        token_dim: model.hidden,
        num_transformer_submodules: 1,
        num_attention_heads: model.heads,
        num_layers: model.layers,
        prompt_tuning_init: "RANDOM".into(),
        inference_mode: true,
        base_model_name_or_path: base.to_owned(),
    };
    crate::hf::write_json(&dir.join(ADAPTER_CONFIG), &peft)
}

/// Loads PEFT prompt-tuning embeddings from `dir`, frozen.
pub fn load_peft(dir: &Path, hidden: usize, device: &Device) -> Result<Param> {
    let peft: PeftPromptConfig = crate::hf::read_json(&dir.join(ADAPTER_CONFIG))?;
    let mut tensors = safetensors::load(&dir.join(ADAPTER_WEIGHTS), device)?;
    let prompt = tensors
        .remove(PROMPT_WEIGHT)
        .ok_or_else(|| ModelError::MissingWeight {
            name: PROMPT_WEIGHT.into(),
            dir: dir.to_owned(),
        })?;
    let (n, d) = prompt.dims2()?;
    if n != peft.num_virtual_tokens || d != hidden {
        return Err(ModelError::WeightShape {
            name: PROMPT_WEIGHT.into(),
            found: vec![n, d],
            expected: vec![peft.num_virtual_tokens, hidden],
        });
    }
    Ok(Param::Frozen(prompt))
}

#[derive(Serialize, Deserialize)]
struct PeftPromptConfig {
    peft_type: String,
    task_type: String,
    num_virtual_tokens: usize,
    token_dim: usize,
    #[serde(default)]
    num_transformer_submodules: usize,
    #[serde(default)]
    num_attention_heads: usize,
    #[serde(default)]
    num_layers: usize,
    #[serde(default)]
    prompt_tuning_init: String,
    #[serde(default)]
    inference_mode: bool,
    #[serde(default)]
    base_model_name_or_path: String,
}
