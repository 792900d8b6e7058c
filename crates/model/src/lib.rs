//! The model stage kinds of sluice, built on candle: `train` fine-tunes a llama-architecture
//! causal LM or a BERT sequence classifier — every weight (`full`), low-rank adapters (`lora`)
//! or virtual tokens (`prompt`) — from a Hugging Face model directory or from fresh weights with
//! a tokenizer trained in the stage; `evaluate` scores a model (and a baseline) on held-out examples; `deploy` gates a model
//! on its metrics and writes a versioned bundle. [`generate`] decodes text with the KV cache, for
//! `evaluate` and, through [`generate::ModelBackend`], for `sluice serve`.
//!
//! The models are written here from differentiable ops ([`ops`]), so that every trainable
//! tensor receives its gradient. Randomness comes from one seeded source ([`rng`]), which makes
//! CPU training bit-exact for the same inputs and seed.
//!
//! This crate knows the stage API and nothing else of the engine: no scheduler, no YAML, no store.
//! Of the server it knows only `sluice-serve`'s `Backend` trait: no HTTP.

pub mod batch;
pub mod bert;
pub mod causal;
pub mod checkpoint;
pub mod classifier;
pub mod classifier_backend;
pub mod config;
pub mod deploy;
pub mod error;
pub mod evaluate;
pub mod fused;
pub mod generate;
pub mod hf;
pub mod history;
mod hub;
pub mod llama;
pub mod lora;
pub mod ops;
pub mod optim;
pub mod options;
pub mod prompt;
pub mod rng;
pub mod safetensors;
pub mod template;
pub mod tokenizer;
mod train;
pub mod trainer;
pub mod weights;

#[cfg(test)]
mod classifier_tests;
#[cfg(test)]
mod tests;

use sluice_stage::StageKind;

pub use deploy::Deploy;
pub use error::ModelError;
pub use evaluate::Evaluate;
pub use train::Train;

/// The model stage kinds, for the binary's catalog.
pub fn kinds() -> Vec<Box<dyn StageKind>> {
    vec![Box::new(Train), Box::new(Evaluate), Box::new(Deploy)]
}

/// A GPU as the CUDA driver reports it.
#[derive(Clone, Debug)]
pub struct CudaGpu {
    /// The physical index (what `nvidia-smi` and `CUDA_VISIBLE_DEVICES` name).
    pub id: u32,
    pub name: String,
    pub memory_total: u64,
    pub memory_free: u64,
}

/// The GPUs the CUDA driver sees, through candle's cudarc; empty without a driver or a device.
/// Ordinals are mapped back to physical indices through `CUDA_VISIBLE_DEVICES`.
#[cfg(feature = "cuda")]
pub fn cuda_gpus() -> Vec<CudaGpu> {
    use candle_core::cuda::cudarc::driver::CudaContext;
    let Ok(count) = CudaContext::device_count() else {
        return Vec::new();
    };
    let visible = sluice_stage::cuda_visible_devices();
    (0..usize::try_from(count).unwrap_or(0))
        .filter_map(|ordinal| {
            let ctx = CudaContext::new(ordinal).ok()?;
            let (free, total) = ctx.mem_get_info().ok()?;
            let id = match &visible {
                Some(v) => *v.get(ordinal)?,
                None => u32::try_from(ordinal).ok()?,
            };
            Some(CudaGpu {
                id,
                name: ctx.name().ok()?,
                memory_total: total as u64,
                memory_free: free as u64,
            })
        })
        .collect()
}

/// Without the `cuda` feature there is no driver to ask.
#[cfg(not(feature = "cuda"))]
pub fn cuda_gpus() -> Vec<CudaGpu> {
    Vec::new()
}
