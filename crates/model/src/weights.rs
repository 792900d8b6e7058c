//! Named weights, each frozen (a plain tensor) or trainable (a candle `Var` the optimizer updates).
//! Names are the Hugging Face ones (`model.layers.0.self_attn.q_proj.weight`), so a directory
//! written by `transformers` loads by name and ours loads there.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};

use crate::error::{ModelError, Result};
use crate::lora::Lora;

/// One weight.
#[derive(Clone, Debug)]
pub enum Param {
    Frozen(Tensor),
    Trainable(Var),
}

impl Param {
    pub fn tensor(&self) -> &Tensor {
        match self {
            Param::Frozen(t) => t,
            Param::Trainable(v) => v.as_tensor(),
        }
    }
}

/// Weights by name, in name order.
#[derive(Clone, Debug, Default)]
pub struct Weights {
    map: BTreeMap<String, Param>,
}

impl Weights {
    pub fn new() -> Weights {
        Weights::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, param: Param) {
        self.map.insert(name.into(), param);
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.map
            .get(name)
            .map(Param::tensor)
            .ok_or_else(|| ModelError::Other(format!("no weight named `{name}`")))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Param)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The trainable weights, in name order.
    pub fn trainable(&self) -> Vec<(&str, &Var)> {
        self.map
            .iter()
            .filter_map(|(k, p)| match p {
                Param::Trainable(v) => Some((k.as_str(), v)),
                Param::Frozen(_) => None,
            })
            .collect()
    }

    /// Makes every weight trainable (full fine-tuning) or frozen.
    pub fn set_trainable(&mut self, trainable: bool) -> Result<()> {
        for p in self.map.values_mut() {
            let t = p.tensor().clone();
            *p = if trainable {
                Param::Trainable(Var::from_tensor(&t)?)
            } else {
                Param::Frozen(t.detach())
            };
        }
        Ok(())
    }

    /// Makes the named weight trainable (a classifier's head beside adapters).
    pub fn make_trainable(&mut self, name: &str) -> Result<()> {
        let p = self
            .map
            .get_mut(name)
            .ok_or_else(|| ModelError::Other(format!("no weight named `{name}`")))?;
        if let Param::Frozen(t) = p {
            *p = Param::Trainable(Var::from_tensor(t)?);
        }
        Ok(())
    }

    /// Element counts: (trainable, total).
    pub fn counts(&self) -> (usize, usize) {
        let mut trainable = 0;
        let mut total = 0;
        for p in self.map.values() {
            let n = p.tensor().elem_count();
            total += n;
            if matches!(p, Param::Trainable(_)) {
                trainable += n;
            }
        }
        (trainable, total)
    }

    /// Every weight as a plain tensor, for saving.
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.map
            .iter()
            .map(|(k, p)| (k.clone(), p.tensor().clone()))
            .collect()
    }

    /// Replaces the values of the named trainable weights (resuming, restoring the best).
    pub fn assign(&self, values: &BTreeMap<String, Tensor>) -> Result<()> {
        for (name, value) in values {
            match self.map.get(name) {
                Some(Param::Trainable(v)) => v.set(value)?,
                Some(Param::Frozen(_)) => {
                    return Err(ModelError::Other(format!("weight `{name}` is frozen")));
                }
                None => return Err(ModelError::Other(format!("no weight named `{name}`"))),
            }
        }
        Ok(())
    }

    /// Converts every weight to `dtype` on `device` (loading f16/bf16 checkpoints as f32).
    pub fn to(&mut self, dtype: DType, device: &Device) -> Result<()> {
        for p in self.map.values_mut() {
            let t = p.tensor().to_dtype(dtype)?.to_device(device)?;
            *p = match p {
                Param::Frozen(_) => Param::Frozen(t),
                Param::Trainable(_) => Param::Trainable(Var::from_tensor(&t)?),
            };
        }
        Ok(())
    }
}

/// (trainable, total) parameter counts of a model's weights with its adapters.
pub fn parameter_counts(
    weights: &Weights,
    lora: Option<&Lora>,
    prompt: Option<&Param>,
) -> (usize, usize) {
    let (mut trainable, mut total) = weights.counts();
    if let Some(lora) = lora {
        let n = lora.parameter_count();
        trainable += n;
        total += n;
    }
    if let Some(p) = prompt {
        let n = p.tensor().elem_count();
        total += n;
        if matches!(p, Param::Trainable(_)) {
            trainable += n;
        }
    }
    (trainable, total)
}

/// Every trainable tensor of a model, named: base weights, adapter matrices, virtual tokens.
pub fn trainable_vars(
    weights: &Weights,
    lora: Option<&Lora>,
    prompt: Option<&Param>,
) -> Vec<(String, Var)> {
    let mut out: Vec<(String, Var)> = weights
        .trainable()
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.clone()))
        .collect();
    if let Some(lora) = lora {
        out.extend(lora.vars());
    }
    if let Some(Param::Trainable(v)) = prompt {
        out.push((crate::prompt::PROMPT_WEIGHT.to_owned(), v.clone()));
    }
    out
}
