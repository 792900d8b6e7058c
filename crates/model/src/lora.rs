//! LoRA (Hu et al., 2021): a low-rank update `scale · B·A` beside chosen linear modules, the
//! base weights frozen. Saved in Hugging Face PEFT's layout (`adapter_model.safetensors` with
//! `base_model.model.<module>.lora_A.weight` / `lora_B.weight`, and `adapter_config.json`), so
//! that `PeftModel.from_pretrained` loads it; `merge` folds it into the base weights.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::config::Arch;
use crate::error::{ModelError, Result};
use crate::rng::Rng;
use crate::safetensors;
use crate::weights::{Param, Weights};

/// The module names LoRA can target in a llama model.
pub const LLAMA_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The module names LoRA can target in a BERT model (`dense` is every projection after the
/// attention and in the feed-forward block, and the pooler's).
pub const BERT_MODULES: [&str; 4] = ["query", "key", "value", "dense"];

/// The target names of an architecture.
pub fn module_names(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::Llama => &LLAMA_MODULES,
        Arch::Bert => &BERT_MODULES,
    }
}

/// Every linear module but the output head, as PEFT's `all-linear` means.
pub const ALL_LINEAR: &str = "all-linear";

pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f32,
    /// Short module names (`q_proj`) or `all-linear`.
    pub targets: Vec<String>,
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// The module names the targets stand for in `arch`, checked and sorted.
    pub fn target_modules(&self, arch: Arch) -> Result<Vec<&'static str>> {
        let names = module_names(arch);
        let mut out = Vec::new();
        for t in &self.targets {
            if t == ALL_LINEAR {
                return Ok(sorted(names.to_vec()));
            }
            match names.iter().find(|m| **m == t.as_str()) {
                Some(m) => out.push(*m),
                None => {
                    return Err(ModelError::Config(format!(
                        "unknown LoRA target module `{t}`; a {} model has {} (or `{ALL_LINEAR}`)",
                        arch_name(arch),
                        names.join(", ")
                    )));
                }
            }
        }
        if out.is_empty() {
            return Err(ModelError::Config(
                "LoRA needs at least one target module".into(),
            ));
        }
        out.dedup();
        Ok(sorted(out))
    }
}

fn sorted(mut v: Vec<&'static str>) -> Vec<&'static str> {
    v.sort_unstable();
    v.dedup();
    v
}

fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::Llama => "llama",
        Arch::Bert => "BERT",
    }
}

/// Checks targets for `arch`, or before the architecture is known (a base directory): then
/// each must be a module name of some architecture, and [`LoraConfig::target_modules`] checks
/// them for the real one when the stage runs.
pub fn check_targets(targets: &[String], arch: Option<Arch>) -> Result<()> {
    if let Some(arch) = arch {
        let config = LoraConfig {
            rank: 1,
            alpha: 1.0,
            dropout: 0.0,
            targets: targets.to_vec(),
        };
        return config.target_modules(arch).map(|_| ());
    }
    if targets.is_empty() {
        return Err(ModelError::Config(
            "LoRA needs at least one target module".into(),
        ));
    }
    let known =
        |t: &str| t == ALL_LINEAR || LLAMA_MODULES.contains(&t) || BERT_MODULES.contains(&t);
    match targets.iter().find(|t| !known(t)) {
        Some(bad) => Err(ModelError::Config(format!(
            "unknown LoRA target module `{bad}`; a llama model has {}, a BERT model has {} (or `{ALL_LINEAR}`)",
            LLAMA_MODULES.join(", "),
            BERT_MODULES.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The adapters of one model.
pub struct Lora {
    /// Its targets are the resolved module names, sorted.
    pub config: LoraConfig,
    /// Module path (`model.layers.0.self_attn.q_proj`) → (A: rank × in, B: out × rank).
    modules: BTreeMap<String, (Param, Param)>,
}

fn peft_name(module: &str, which: &str) -> String {
    format!("base_model.model.{module}.lora_{which}.weight")
}

impl Lora {
    /// Fresh adapters: A uniform in ±1/√in (PEFT's Kaiming init), B zero, so training starts
    /// from the base model exactly.
    /// `modules` are the model's linear modules by path (`model.layers.0.self_attn.q_proj`).
    pub fn new(
        mut config: LoraConfig,
        arch: Arch,
        modules: &[String],
        weights: &Weights,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Lora> {
        if config.rank == 0 {
            return Err(ModelError::Config("LoRA rank must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&config.dropout) {
            return Err(ModelError::Config(format!(
                "LoRA dropout {} must be in [0, 1)",
                config.dropout
            )));
        }
        let targets = config.target_modules(arch)?;
        config.targets = targets.iter().map(|t| (*t).to_owned()).collect();
        let mut adapted = BTreeMap::new();
        for module in modules {
            if !targets.iter().any(|t| module.ends_with(&format!(".{t}"))) {
                continue;
            }
            let (out, inp) = weights.get(&format!("{module}.weight"))?.dims2()?;
            let bound = 1.0 / (inp as f64).sqrt();
            let a = Tensor::from_vec(
                rng.uniform_vec(config.rank * inp, bound),
                (config.rank, inp),
                device,
            )?;
            let b = Tensor::zeros((out, config.rank), candle_core::DType::F32, device)?;
            adapted.insert(
                module.clone(),
                (
                    Param::Trainable(Var::from_tensor(&a)?),
                    Param::Trainable(Var::from_tensor(&b)?),
                ),
            );
        }
        Ok(Lora {
            config,
            modules: adapted,
        })
    }

    /// `y + scale · dropout(x)·Aᵀ·Bᵀ` when `module` has an adapter, else `y`.
    pub fn apply(
        &self,
        module: &str,
        x: &Tensor,
        y: Tensor,
        rng: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let Some((a, b)) = self.modules.get(module) else {
            return Ok(y);
        };
        let x = match rng {
            Some(rng) if self.config.dropout > 0.0 => {
                let mask = rng.dropout_mask(x.elem_count(), self.config.dropout);
                (x * Tensor::from_vec(mask, x.shape(), x.device())?)?
            }
            _ => x.clone(),
        };
        let low = crate::ops::linear(&x, a.tensor())?;
        let delta = crate::ops::linear(&low, b.tensor())?;
        Ok((y + (delta * self.config.scale())?)?)
    }

    pub fn parameter_count(&self) -> usize {
        self.modules
            .values()
            .map(|(a, b)| a.tensor().elem_count() + b.tensor().elem_count())
            .sum()
    }

    /// The adapter matrices, named as PEFT saves them.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for (module, (a, b)) in &self.modules {
            for (which, p) in [("A", a), ("B", b)] {
                if let Param::Trainable(v) = p {
                    out.push((peft_name(module, which), v.clone()));
                }
            }
        }
        out
    }

    /// The adapter matrices as tensors, named as PEFT saves them.
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (module, (a, b)) in &self.modules {
            out.insert(peft_name(module, "A"), a.tensor().clone());
            out.insert(peft_name(module, "B"), b.tensor().clone());
        }
        out
    }

    /// Freezes the adapters (inference, or merging).
    pub fn freeze(&mut self) {
        for (a, b) in self.modules.values_mut() {
            *a = Param::Frozen(a.tensor().detach());
            *b = Param::Frozen(b.tensor().detach());
        }
    }

    /// Folds `scale · B·A` into each base weight.
    pub fn merge_into(&self, weights: &mut Weights) -> Result<()> {
        for (module, (a, b)) in &self.modules {
            let name = format!("{module}.weight");
            let w = weights.get(&name)?;
            let delta = (b.tensor().matmul(a.tensor())? * self.config.scale())?;
            let merged = (w + delta)?.detach();
            weights.insert(name, Param::Frozen(merged));
        }
        Ok(())
    }

    /// Writes `adapter_model.safetensors` and `adapter_config.json` into `dir`. A classifier
    /// passes its head (`classifier.weight`, …), which trains beside the adapters: it is saved
    /// as PEFT saves `modules_to_save`, and the task is `SEQ_CLS`.
    pub fn save_peft(
        &self,
        dir: &Path,
        base: &str,
        head: Option<&BTreeMap<String, Tensor>>,
    ) -> Result<()> {
        let mut tensors = self.tensors();
        let mut modules_to_save = None;
        if let Some(head) = head {
            let mut names: Vec<String> = Vec::new();
            for (name, t) in head {
                tensors.insert(format!("base_model.model.{name}"), t.clone());
                let module = name.rsplit_once('.').map_or(name.as_str(), |(m, _)| m);
                if !names.iter().any(|n| n == module) {
                    names.push(module.to_owned());
                }
            }
            modules_to_save = Some(names);
        }
        safetensors::save(&tensors, &dir.join(ADAPTER_WEIGHTS))?;
        let mut targets = self.config.targets.clone();
        targets.sort_unstable();
        let config = PeftLoraConfig {
            peft_type: "LORA".into(),
            task_type: if head.is_some() {
                "SEQ_CLS"
            } else {
                "CAUSAL_LM"
            }
            .into(),
            r: self.config.rank,
            lora_alpha: self.config.alpha,
            lora_dropout: self.config.dropout,
            target_modules: targets,
            modules_to_save,
            bias: "none".into(),
            fan_in_fan_out: false,
            inference_mode: true,
            init_lora_weights: true,
            use_rslora: false,
            use_dora: false,
            base_model_name_or_path: base.to_owned(),
        };
        crate::hf::write_json(&dir.join(ADAPTER_CONFIG), &config)
    }

    /// Loads a PEFT LoRA adapter for the linear `modules` from `dir`, frozen, with the
    /// tensors of its `modules_to_save` (named as in the model: `classifier.weight`).
    pub fn load_peft(
        dir: &Path,
        modules: &[String],
        device: &Device,
    ) -> Result<(Lora, BTreeMap<String, Tensor>)> {
        let config: PeftLoraConfig = crate::hf::read_json(&dir.join(ADAPTER_CONFIG))?;
        if config.peft_type != "LORA" {
            return Err(ModelError::file(
                dir.join(ADAPTER_CONFIG),
                format!("peft_type is `{}`, not `LORA`", config.peft_type),
            ));
        }
        let tensors = safetensors::load(&dir.join(ADAPTER_WEIGHTS), device)?;
        let mut adapted = BTreeMap::new();
        for module in modules {
            let (a, b) = (peft_name(module, "A"), peft_name(module, "B"));
            if let (Some(a), Some(b)) = (tensors.get(&a), tensors.get(&b)) {
                adapted.insert(
                    module.clone(),
                    (Param::Frozen(a.clone()), Param::Frozen(b.clone())),
                );
            }
        }
        let mut head = BTreeMap::new();
        for module in config.modules_to_save.iter().flatten() {
            let prefix = format!("base_model.model.{module}.");
            for (name, t) in &tensors {
                if let Some(rest) = name.strip_prefix(&prefix) {
                    head.insert(format!("{module}.{rest}"), t.clone());
                }
            }
        }
        if adapted.is_empty() {
            return Err(ModelError::file(
                dir.join(ADAPTER_WEIGHTS),
                "holds no LoRA weights for this model",
            ));
        }
        let lora = Lora {
            config: LoraConfig {
                rank: config.r,
                alpha: config.lora_alpha,
                dropout: config.lora_dropout,
                targets: config.target_modules,
            },
            modules: adapted,
        };
        Ok((lora, head))
    }
}

/// `adapter_config.json` as PEFT writes it for LoRA.
#[derive(Serialize, Deserialize)]
struct PeftLoraConfig {
    peft_type: String,
    task_type: String,
    r: usize,
    lora_alpha: f64,
    lora_dropout: f32,
    target_modules: Vec<String>,
    /// Modules trained whole beside the adapters (a classifier's head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    modules_to_save: Option<Vec<String>>,
    bias: String,
    fan_in_fan_out: bool,
    inference_mode: bool,
    #[serde(default)]
    init_lora_weights: bool,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    base_model_name_or_path: String,
}
