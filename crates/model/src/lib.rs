//! The model stage kinds of sluice, built on candle: `train` fine-tunes a llama-architecture
//! causal LM — every weight (`full`), low-rank adapters (`lora`) or virtual tokens (`prompt`) —
//! from a Hugging Face model directory or from fresh weights with a tokenizer trained in the
//! stage; `evaluate` scores a model (and a baseline) on held-out examples; `deploy` gates a model
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
pub mod checkpoint;
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
