//! Model directories in the Hugging Face layout `transformers`' `save_pretrained` writes:
//! `config.json`, `model.safetensors` (or shards listed by `model.safetensors.index.json`),
//! `tokenizer.json`, `generation_config.json`; plus PEFT adapter files for LoRA and prompt tuning,
//! and `sluice.json`, which records how the model was trained and the prompt template to use
//! with it.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::llama::{Llama, weight_shapes};
use crate::lora::{ADAPTER_CONFIG, Lora};
use crate::template::Template;
use crate::tokenizer::{self, Tokenizer};
use crate::weights::{Param, Weights};
use crate::{prompt, safetensors};

pub const CONFIG: &str = "config.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
pub const TOKENIZER: &str = "tokenizer.json";
pub const GENERATION_CONFIG: &str = "generation_config.json";
pub const SLUICE: &str = "sluice.json";

/// What sluice records beside a model it wrote (`sluice.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModelInfo {
    /// `full`, `lora` or `prompt`.
    pub method: String,
    /// Whether a LoRA adapter was merged into `model.safetensors`.
    #[serde(default)]
    pub merged: bool,
    /// The base: a directory, a hub name, or `init`.
    pub base: String,
    pub template: Template,
    pub trainable_parameters: usize,
    pub total_parameters: usize,
    pub seed: u64,
    /// Whether the weights are bit-exact for the same inputs (CPU) or not (GPU kernels).
    pub deterministic: bool,
}

/// A loaded model with its tokenizer and training record.
pub struct Loaded {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub info: Option<ModelInfo>,
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::file(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::file(path, e))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("serialises");
    text.push('\n');
    std::fs::write(path, text).map_err(|e| ModelError::file(path, e))
}

/// Loads a model directory. Adapters saved beside the weights are loaded too, frozen.
pub fn load_dir(dir: &Path, device: &Device) -> Result<Loaded> {
    if !dir.is_dir() {
        return Err(ModelError::file(dir, "is not a directory"));
    }
    let config_path = dir.join(CONFIG);
    if !config_path.exists() {
        return Err(ModelError::file(
            dir,
            "has no config.json: a base model directory is what `save_pretrained` writes (config.json, model.safetensors, tokenizer.json)",
        ));
    }
    let raw: serde_json::Value = read_json(&config_path)?;
    if let Some(kind) = raw.get("model_type").and_then(|v| v.as_str())
        && !matches!(kind, "llama" | "mistral" | "qwen2")
    {
        return Err(ModelError::file(
            &config_path,
            format!(
                "model_type `{kind}` is not supported; `train` handles llama-architecture causal LMs"
            ),
        ));
    }
    let config: LlamaConfig =
        serde_json::from_value(raw).map_err(|e| ModelError::file(&config_path, e))?;
    config.validate()?;
    let mut tensors = load_weights(dir, device)?;
    let mut weights = Weights::new();
    let mut config = config;
    for (name, shape) in weight_shapes(&config) {
        let t = match tensors.remove(&name) {
            Some(t) => t,
            // A head tied to the embeddings is often left out of the file.
            None if name == "lm_head.weight" => {
                config.tie_word_embeddings = true;
                continue;
            }
            None => {
                return Err(ModelError::MissingWeight {
                    name,
                    dir: dir.to_owned(),
                });
            }
        };
        if t.dims() != shape.as_slice() {
            return Err(ModelError::WeightShape {
                name,
                found: t.dims().to_vec(),
                expected: shape,
            });
        }
        weights.insert(name, Param::Frozen(t));
    }
    let tokenizer_path = dir.join(TOKENIZER);
    if !tokenizer_path.exists() {
        return Err(ModelError::file(dir, "has no tokenizer.json"));
    }
    let tokenizer = tokenizer::load(&tokenizer_path)?;
    let info: Option<ModelInfo> = if dir.join(SLUICE).exists() {
        Some(read_json(&dir.join(SLUICE))?)
    } else {
        None
    };
    let mut model = Llama {
        config,
        weights,
        lora: None,
        prompt: None,
        device: device.clone(),
    };
    if dir.join(ADAPTER_CONFIG).exists() {
        let peft: serde_json::Value = read_json(&dir.join(ADAPTER_CONFIG))?;
        match peft.get("peft_type").and_then(|v| v.as_str()) {
            Some("LORA") => model.lora = Some(Lora::load_peft(dir, &model.config, device)?),
            Some("PROMPT_TUNING") => {
                model.prompt = Some(prompt::load_peft(dir, &model.config, device)?)
            }
            other => {
                return Err(ModelError::file(
                    dir.join(ADAPTER_CONFIG),
                    format!("unsupported peft_type {other:?} (LORA and PROMPT_TUNING are)"),
                ));
            }
        }
    }
    Ok(Loaded {
        model,
        tokenizer,
        info,
    })
}

/// The tensors of `model.safetensors`, or of every shard an index names.
fn load_weights(dir: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    let single = dir.join(WEIGHTS);
    if single.exists() {
        return safetensors::load(&single, device);
    }
    let index = dir.join(WEIGHTS_INDEX);
    if index.exists() {
        #[derive(Deserialize)]
        struct Index {
            weight_map: BTreeMap<String, String>,
        }
        let index: Index = read_json(&index)?;
        let mut shards: Vec<&String> = index.weight_map.values().collect();
        shards.sort();
        shards.dedup();
        let mut all = BTreeMap::new();
        for shard in shards {
            all.extend(safetensors::load(&dir.join(shard), device)?);
        }
        return Ok(all);
    }
    if dir.join("pytorch_model.bin").exists() {
        return Err(ModelError::file(
            dir,
            "holds pytorch_model.bin only; save it as safetensors (`save_pretrained(dir, safe_serialization=True)`)",
        ));
    }
    Err(ModelError::file(
        dir,
        "has no model.safetensors or model.safetensors.index.json",
    ))
}

/// Writes `model` as a Hugging Face directory into `dir` (which must exist). A LoRA adapter is
/// merged into the weights when `merge` is set, else saved beside them in PEFT's layout;
/// prompt-tuning embeddings are always saved beside them.
pub fn save_dir(
    dir: &Path,
    model: &Llama,
    tokenizer: &Tokenizer,
    info: &ModelInfo,
    merge: bool,
) -> Result<()> {
    let mut weights = model.weights.clone();
    if let (Some(lora), true) = (&model.lora, merge) {
        lora.merge_into(&mut weights)?;
    }
    safetensors::save(&weights.tensors(), &dir.join(WEIGHTS))?;
    write_json(&dir.join(CONFIG), &model.config.to_hf_json())?;
    let mut generation = serde_json::Map::new();
    if let Some(bos) = model.config.bos_token_id {
        generation.insert("bos_token_id".into(), bos.into());
    }
    if let Some(eos) = &model.config.eos_token_id {
        generation.insert(
            "eos_token_id".into(),
            serde_json::to_value(eos).expect("serialises"),
        );
    }
    write_json(&dir.join(GENERATION_CONFIG), &generation)?;
    tokenizer::save(tokenizer, &dir.join(TOKENIZER))?;
    match (&model.lora, &model.prompt) {
        (Some(lora), _) if !merge => lora.save_peft(dir, &info.base)?,
        (_, Some(p)) => prompt::save_peft(p.tensor(), &model.config, dir, &info.base)?,
        _ => {}
    }
    let mut info = info.clone();
    info.merged = merge && model.lora.is_some();
    write_json(&dir.join(SLUICE), &info)
}
