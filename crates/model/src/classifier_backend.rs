//! A BERT classifier behind `sluice-serve`: it answers `POST /v1/classify` with label
//! probabilities and refuses to generate. Scoring only reads the weights, so one model answers
//! concurrent requests.

use sluice_serve::{Backend, ChatMessage, GenerateRequest, Generation};

use crate::bert::{self, Inputs};
use crate::error::Result;
use crate::hf::LoadedClassifier;

/// Texts per forward pass.
const BATCH: usize = 16;

pub struct ClassifierBackend {
    id: String,
    loaded: LoadedClassifier,
    labels: Vec<String>,
}

impl ClassifierBackend {
    pub fn new(id: impl Into<String>, loaded: LoadedClassifier) -> Result<ClassifierBackend> {
        let labels = loaded.model.labels()?;
        Ok(ClassifierBackend {
            id: id.into(),
            loaded,
            labels,
        })
    }

    /// Loads a classifier directory on the CPU, a LoRA adapter folded into the weights.
    pub fn open(id: impl Into<String>, dir: &std::path::Path) -> Result<ClassifierBackend> {
        let loaded =
            crate::evaluate::load_classifier_for_inference(dir, &candle_core::Device::Cpu)?;
        ClassifierBackend::new(id, loaded)
    }

    /// The label probabilities of each text.
    pub fn probabilities(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let model = &self.loaded.model;
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(BATCH) {
            let ids = chunk
                .iter()
                .map(|t| Ok(crate::classifier::encode(model, &self.loaded.tokenizer, t)?.0))
                .collect::<Result<Vec<_>>>()?;
            let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
            let inputs = Inputs::new(&refs, model.config.pad(), &model.device)?;
            out.extend(bert::probabilities(&model.logits(&inputs, None)?)?);
        }
        Ok(out)
    }
}

impl Backend for ClassifierBackend {
    fn id(&self) -> &str {
        &self.id
    }

    fn context_length(&self) -> usize {
        self.loaded.model.max_tokens()
    }

    /// A classifier has no chat template; the server never asks it to generate.
    fn chat_prompt(&self, messages: &[ChatMessage]) -> String {
        messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn generate(
        &self,
        _req: &GenerateRequest,
        _on_text: &mut dyn FnMut(&str) -> bool,
    ) -> std::result::Result<Generation, String> {
        Err(format!(
            "`{}` is a classifier and does not generate text",
            self.id
        ))
    }

    fn labels(&self) -> Option<&[String]> {
        Some(&self.labels)
    }

    fn classify(&self, texts: &[String]) -> std::result::Result<Vec<Vec<f32>>, String> {
        self.probabilities(texts).map_err(|e| e.to_string())
    }
}
