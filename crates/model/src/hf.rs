//! Model directories in the Hugging Face layout `transformers`' `save_pretrained` writes:
//! `config.json`, `model.safetensors` (or shards listed by `model.safetensors.index.json`),
//! `tokenizer.json`, `tokenizer_config.json`, `generation_config.json`; plus PEFT adapter files for LoRA and prompt tuning,
//! and `sluice.json`, which records how the model was trained and the prompt template to use
//! with it. A BERT directory (`model_type: bert`) holds a sequence classifier: [`load_classifier`]
//! and [`save_classifier`] read and write it as `BertForSequenceClassification` does.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bert::{self, Bert};
use crate::config::{Arch, BertConfig, LlamaConfig};
use crate::error::{ModelError, Result};
use crate::llama::{Llama, weight_shapes};
use crate::lora::{ADAPTER_CONFIG, Lora};
use crate::prompt::PromptModel;
use crate::rng::Rng;
use crate::template::Template;
use crate::tokenizer::{self, Tokenizer};
use crate::weights::{Param, Weights};
use crate::{prompt, safetensors};

pub const CONFIG: &str = "config.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
pub const TOKENIZER: &str = "tokenizer.json";
pub const GENERATION_CONFIG: &str = "generation_config.json";
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
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

/// The `config.json` of a model directory, checked to exist.
fn read_config(dir: &Path) -> Result<serde_json::Value> {
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
    read_json(&config_path)
}

/// The architecture of a model directory, from its `config.json`'s `model_type`.
pub fn arch(dir: &Path) -> Result<Arch> {
    let raw = read_config(dir)?;
    let kind = raw.get("model_type").and_then(|v| v.as_str());
    Arch::from_model_type(kind).ok_or_else(|| {
        ModelError::file(
            dir.join(CONFIG),
            format!(
                "model_type `{}` is not supported; sluice handles llama-architecture causal LMs and BERT classifiers (`bert`)",
                kind.unwrap_or_default()
            ),
        )
    })
}

/// Loads a causal LM directory. Adapters saved beside the weights are loaded too, frozen.
pub fn load_dir(dir: &Path, device: &Device) -> Result<Loaded> {
    let raw = read_config(dir)?;
    let config_path = dir.join(CONFIG);
    if arch(dir)? == Arch::Bert {
        return Err(ModelError::file(
            dir,
            "holds a BERT sequence classifier (model_type `bert`), not a causal LM: it does not generate text (evaluate it with `task: classify`; `sluice serve` answers `POST /v1/classify` for it)",
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
        check_shape(&name, &t, shape)?;
        weights.insert(name, Param::Frozen(t));
    }
    let (tokenizer, info) = tokenizer_and_info(dir)?;
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
            Some("LORA") => {
                let modules = crate::llama::linear_modules(&model.config);
                model.lora = Some(Lora::load_peft(dir, &modules, device)?.0);
            }
            Some("PROMPT_TUNING") => {
                model.prompt = Some(prompt::load_peft(dir, model.config.hidden_size, device)?)
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
    // A conversation's assistant turn ends with `<|im_end|>`, where sluice's generation stops
    // too: Transformers and vLLM stop there when it is an end token here.
    let mut ends = model.config.eos_all();
    if let (false, Some(im_end)) = (ends.is_empty(), tokenizer.token_to_id(tokenizer::IM_END)) {
        if !ends.contains(&im_end) {
            ends.push(im_end);
        }
        generation.insert("eos_token_id".into(), ends.into());
    }
    write_json(&dir.join(GENERATION_CONFIG), &generation)?;
    tokenizer::save(tokenizer, &dir.join(TOKENIZER))?;
    write_json(
        &dir.join(TOKENIZER_CONFIG),
        &causal_tokenizer_config(model, tokenizer),
    )?;
    match (&model.lora, &model.prompt) {
        (Some(lora), _) if !merge => lora.save_peft(dir, &info.base, None)?,
        (_, Some(p)) => {
            let shape = PromptModel {
                hidden: model.config.hidden_size,
                heads: model.config.num_attention_heads,
                layers: model.config.num_hidden_layers,
                task_type: "CAUSAL_LM",
            };
            prompt::save_peft(p.tensor(), &shape, dir, &info.base)?
        }
        _ => {}
    }
    let mut info = info.clone();
    info.merged = merge && model.lora.is_some();
    write_json(&dir.join(SLUICE), &info)
}

/// The ChatML template of [`crate::template::chat_prompt`], in the Jinja of Transformers'
/// `apply_chat_template`: the same prompt that `sluice serve` renders for a conversation.
const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// `tokenizer_config.json` for a causal model, so that `AutoTokenizer` knows its special tokens,
/// its context and the chat template sluice prompts it with.
fn causal_tokenizer_config(
    model: &Llama,
    tokenizer: &Tokenizer,
) -> serde_json::Map<String, serde_json::Value> {
    let c = &model.config;
    let specials = [
        ("bos_token", c.bos_token_id),
        ("eos_token", c.eos()),
        ("pad_token", c.pad_token_id),
    ]
    .into_iter()
    .filter_map(|(key, id)| Some((key, tokenizer.id_to_token(id?)?)));
    let mut config = tokenizer_config(specials, c.max_position_embeddings);
    config.insert("chat_template".into(), CHATML_TEMPLATE.into());
    config
}

/// A `tokenizer_config.json` for the `tokenizer.json` beside it: read as a fast tokenizer, with
/// these special tokens (`bos_token`, …) and context.
fn tokenizer_config(
    specials: impl IntoIterator<Item = (&'static str, String)>,
    max_length: usize,
) -> serde_json::Map<String, serde_json::Value> {
    let mut config = serde_json::Map::new();
    config.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
    for (key, token) in specials {
        config.insert(key.into(), token.into());
    }
    config.insert("model_max_length".into(), max_length.into());
    config
}

/// A loaded classifier with its tokenizer and training record.
pub struct LoadedClassifier {
    pub model: Bert,
    pub tokenizer: Tokenizer,
    pub info: Option<ModelInfo>,
    /// The weights drawn fresh because the directory lacked them (or held a head for other
    /// labels), as sentences for the progress line.
    pub fresh: Vec<String>,
}

/// Where a classifier's head comes from.
pub enum Head<'a> {
    /// From the directory, which must hold it and its labels (inference).
    Saved,
    /// For training on `labels`: a head or pooler the directory lacks, or a head for other
    /// labels, is drawn fresh from `rng`.
    Fresh {
        labels: &'a [String],
        rng: &'a mut Rng,
    },
}

/// A weight name of a BERT checkpoint as `BertForSequenceClassification` names it: encoders
/// saved alone (sentence-transformers) lack the `bert.` prefix, and old checkpoints call the
/// LayerNorm parameters `gamma` and `beta`. Names of other heads map to `None`.
fn bert_name(name: &str) -> Option<String> {
    let name = name
        .replace("LayerNorm.gamma", "LayerNorm.weight")
        .replace("LayerNorm.beta", "LayerNorm.bias");
    let bare = name.strip_prefix("bert.").unwrap_or(&name);
    if ["embeddings.", "encoder.", "pooler."]
        .iter()
        .any(|p| bare.starts_with(p))
    {
        Some(format!("bert.{bare}"))
    } else if name.starts_with("classifier.") {
        Some(name.clone())
    } else {
        None
    }
}

/// Loads a BERT directory as a sequence classifier. A LoRA adapter saved beside the weights is
/// loaded frozen, with the head it saved; prompt-tuning embeddings too.
pub fn load_classifier(dir: &Path, device: &Device, head: Head<'_>) -> Result<LoadedClassifier> {
    let raw = read_config(dir)?;
    let config_path = dir.join(CONFIG);
    let mut config: BertConfig =
        serde_json::from_value(raw).map_err(|e| ModelError::file(&config_path, e))?;
    config
        .validate()
        .map_err(|e| ModelError::file(&config_path, e))?;
    let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, t) in load_weights(dir, device)? {
        if let Some(name) = bert_name(&name) {
            tensors.insert(name, t);
        }
    }
    let adapter: Option<serde_json::Value> = if dir.join(ADAPTER_CONFIG).exists() {
        Some(read_json(&dir.join(ADAPTER_CONFIG))?)
    } else {
        None
    };
    let mut lora = None;
    let mut prompt_param = None;
    match adapter
        .as_ref()
        .map(|a| a.get("peft_type").and_then(|v| v.as_str()))
    {
        None => {}
        Some(Some("LORA")) => {
            let (l, saved_head) = Lora::load_peft(dir, &bert::linear_modules(&config), device)?;
            tensors.extend(saved_head);
            lora = Some(l);
        }
        Some(Some("PROMPT_TUNING")) => {
            prompt_param = Some(prompt::load_peft(dir, config.hidden_size, device)?);
        }
        Some(other) => {
            return Err(ModelError::file(
                dir.join(ADAPTER_CONFIG),
                format!("unsupported peft_type {other:?} (LORA and PROMPT_TUNING are)"),
            ));
        }
    }
    let saved_labels = config.labels()?;
    let mut fresh = Vec::new();
    let labels: Vec<String> = match &head {
        Head::Saved => {
            if saved_labels.is_empty() || !tensors.contains_key(bert::HEAD[0]) {
                return Err(ModelError::file(
                    dir,
                    "has no classification head (`classifier.weight` and `id2label`): train one with `uses: train` on labelled data first",
                ));
            }
            saved_labels.clone()
        }
        Head::Fresh { labels, .. } => labels.to_vec(),
    };
    // A head trained for other labels is no start for these.
    if saved_labels != labels {
        for name in bert::HEAD {
            tensors.remove(name);
        }
    }
    config.set_labels(&labels);
    let mut rng = match head {
        Head::Fresh { rng, .. } => Some(rng),
        Head::Saved => None,
    };
    let mut weights = crate::weights::Weights::new();
    for (name, shape) in bert::weight_shapes(&config, labels.len()) {
        let t = match (tensors.remove(&name), rng.as_deref_mut()) {
            (Some(t), _) => t,
            (None, Some(rng))
                if bert::HEAD.contains(&name.as_str()) || bert::POOLER.contains(&name.as_str()) =>
            {
                if name == bert::HEAD[0] {
                    fresh.push(if saved_labels.is_empty() || saved_labels == labels {
                        "a fresh classification head".to_owned()
                    } else {
                        format!(
                            "a fresh classification head for {} labels (the base's is for {})",
                            labels.join(", "),
                            saved_labels.join(", ")
                        )
                    });
                } else if name == bert::POOLER[0] {
                    fresh.push("a fresh pooler".to_owned());
                }
                bert::fresh(&name, &shape, rng, device)?
            }
            (None, _) => {
                return Err(ModelError::MissingWeight {
                    name,
                    dir: dir.to_owned(),
                });
            }
        };
        check_shape(&name, &t, shape)?;
        weights.insert(name, Param::Frozen(t));
    }
    let (tokenizer, info) = tokenizer_and_info(dir)?;
    Ok(LoadedClassifier {
        model: Bert {
            config,
            weights,
            lora,
            prompt: prompt_param,
            device: device.clone(),
        },
        tokenizer,
        info,
        fresh,
    })
}

/// Writes a classifier as a `BertForSequenceClassification` directory into `dir` (which must
/// exist). A LoRA adapter is merged when `merge` is set, else saved beside the weights in PEFT's
/// layout with the head as `modules_to_save`; prompt-tuning embeddings are saved beside them.
pub fn save_classifier(
    dir: &Path,
    model: &Bert,
    tokenizer: &Tokenizer,
    info: &ModelInfo,
    merge: bool,
) -> Result<()> {
    let mut weights = model.weights.clone();
    if let (Some(lora), true) = (&model.lora, merge) {
        lora.merge_into(&mut weights)?;
    }
    let tensors = weights.tensors();
    safetensors::save(&tensors, &dir.join(WEIGHTS))?;
    write_json(&dir.join(CONFIG), &model.config.to_hf_json())?;
    tokenizer::save(tokenizer, &dir.join(TOKENIZER))?;
    // Without it, `AutoTokenizer` builds a WordPiece `BertTokenizer` for `model_type: bert`,
    // which is not the tokenizer in tokenizer.json.
    let specials = [
        ("cls_token", tokenizer::CLS),
        ("sep_token", tokenizer::SEP),
        ("pad_token", tokenizer::BERT_PAD),
        ("unk_token", tokenizer::UNK),
        ("mask_token", tokenizer::MASK),
    ]
    .into_iter()
    .filter(|(_, token)| tokenizer.token_to_id(token).is_some())
    .map(|(key, token)| (key, token.to_owned()));
    write_json(
        &dir.join(TOKENIZER_CONFIG),
        &tokenizer_config(specials, model.max_tokens()),
    )?;
    match (&model.lora, &model.prompt) {
        (Some(lora), _) if !merge => {
            let head: BTreeMap<String, Tensor> = bert::HEAD
                .iter()
                .map(|n| ((*n).to_owned(), tensors[*n].clone()))
                .collect();
            lora.save_peft(dir, &info.base, Some(&head))?
        }
        (_, Some(p)) => {
            let shape = PromptModel {
                hidden: model.config.hidden_size,
                heads: model.config.num_attention_heads,
                layers: model.config.num_hidden_layers,
                task_type: "SEQ_CLS",
            };
            prompt::save_peft(p.tensor(), &shape, dir, &info.base)?
        }
        _ => {}
    }
    let mut info = info.clone();
    info.merged = merge && model.lora.is_some();
    write_json(&dir.join(SLUICE), &info)
}

/// A model directory's `tokenizer.json` (required) and `sluice.json` (when sluice wrote it).
fn tokenizer_and_info(dir: &Path) -> Result<(Tokenizer, Option<ModelInfo>)> {
    let tokenizer_path = dir.join(TOKENIZER);
    if !tokenizer_path.exists() {
        return Err(ModelError::file(dir, "has no tokenizer.json"));
    }
    let tokenizer = tokenizer::load(&tokenizer_path)?;
    let info = if dir.join(SLUICE).exists() {
        Some(read_json(&dir.join(SLUICE))?)
    } else {
        None
    };
    Ok((tokenizer, info))
}

/// A weight from a file must have the shape the config gives it.
fn check_shape(name: &str, t: &Tensor, expected: Vec<usize>) -> Result<()> {
    if t.dims() == expected.as_slice() {
        return Ok(());
    }
    Err(ModelError::WeightShape {
        name: name.to_owned(),
        found: t.dims().to_vec(),
        expected,
    })
}
