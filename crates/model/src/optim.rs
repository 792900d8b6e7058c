//! AdamW (Loshchilov & Hutter, 2019) with decoupled weight decay, the learning-rate schedule and
//! gradient clipping by global norm. The optimizer's moments are plain named tensors, so a
//! checkpoint saves and restores them exactly.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};

use crate::error::Result;

#[derive(Clone, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> AdamWConfig {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

pub struct AdamW {
    pub config: AdamWConfig,
    /// Completed optimizer steps.
    pub step: usize,
    /// First and second moments by weight name.
    pub m: BTreeMap<String, Tensor>,
    pub v: BTreeMap<String, Tensor>,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> AdamW {
        AdamW {
            config,
            step: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }

    /// One update of `vars` with `grads` at learning rate `lr`. Weight decay applies to
    /// matrices only, not to norm gains (vectors), as is usual.
    pub fn update(
        &mut self,
        vars: &[(String, Var)],
        grads: &BTreeMap<String, Tensor>,
        lr: f64,
    ) -> Result<()> {
        self.step += 1;
        let c = &self.config;
        let t = self.step as i32;
        let correction1 = 1.0 - c.beta1.powi(t);
        let correction2 = 1.0 - c.beta2.powi(t);
        for (name, var) in vars {
            let Some(g) = grads.get(name) else { continue };
            let m = match self.m.get(name) {
                Some(m) => ((m * c.beta1)? + (g * (1.0 - c.beta1))?)?,
                None => (g * (1.0 - c.beta1))?,
            };
            let v = match self.v.get(name) {
                Some(v) => ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?,
                None => (g.sqr()? * (1.0 - c.beta2))?,
            };
            let m_hat = (&m / correction1)?;
            let v_hat = (&v / correction2)?;
            let step = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            let w = var.as_tensor();
            let decayed = if c.weight_decay > 0.0 && w.rank() >= 2 {
                (w * (1.0 - lr * c.weight_decay))?
            } else {
                w.clone()
            };
            var.set(&(decayed - (step * lr)?)?)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }
}

/// How the learning rate changes after warmup.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Half a cosine from the peak down to zero.
    Cosine,
    /// A straight line from the peak down to zero.
    Linear,
    /// The peak throughout.
    Constant,
}

/// The learning rate for optimizer step `step` (0-based) of `total`: a linear warmup over
/// `warmup` steps to `peak`, then `schedule`.
pub fn learning_rate(
    schedule: Schedule,
    peak: f64,
    warmup: usize,
    step: usize,
    total: usize,
) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    match schedule {
        Schedule::Constant => peak,
        Schedule::Linear => peak * (1.0 - progress),
        Schedule::Cosine => peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

/// Scales `grads` so that their global L2 norm is at most `max_norm`; returns the norm before.
pub fn clip_grad_norm(grads: &mut BTreeMap<String, Tensor>, max_norm: f64) -> Result<f64> {
    let mut total = 0.0f64;
    for g in grads.values() {
        total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = total.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.values_mut() {
            *g = (&*g * scale)?;
        }
    }
    Ok(norm)
}
