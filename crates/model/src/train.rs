//! The `train` stage kind: fine-tunes a llama-architecture causal LM or a BERT sequence
//! classifier (full, LoRA or prompt tuning) on example-schema Parquet data.

use sluice_stage::options;
use sluice_stage::{OptionError, OutputSpec, StageContext, StageError, StageKind, StageReport};

use crate::options::TrainOptions;
use crate::trainer::{self, CURVE, HISTORY, MODEL};

pub struct Train;

impl StageKind for Train {
    fn name(&self) -> &'static str {
        "train"
    }

    fn version(&self) -> u32 {
        // 2: a llama's directory has tokenizer_config.json (special tokens, ChatML
        // template), generation_config.json ends at `<|im_end|>` too, and a tokenizer trained here
        // puts `<s>` first when asked for special tokens.
        2
    }

    fn description(&self) -> &'static str {
        "Fine-tune a causal language model or a BERT classifier with candle: full, LoRA or prompt tuning"
    }

    fn outputs(&self) -> Vec<OutputSpec> {
        vec![
            OutputSpec {
                name: MODEL,
                file: "model",
                description: "the trained model: a Hugging Face directory (config.json, model.safetensors, tokenizer.json, PEFT adapter files); for a classifier, as BertForSequenceClassification saves it",
            },
            OutputSpec {
                name: HISTORY,
                file: "history.jsonl",
                description: "one JSON line per optimizer step: loss, validation loss, learning rate, tokens/s",
            },
            OutputSpec {
                name: CURVE,
                file: "loss.svg",
                description: "the training and validation loss curve",
            },
        ]
    }

    fn schema(&self) -> serde_json::Value {
        options::schema::<TrainOptions>()
    }

    fn check(&self, with: &serde_json::Value) -> Vec<OptionError> {
        match options::parse::<TrainOptions>(with) {
            Ok(o) => o.validate(),
            Err(e) => vec![better_base_error(with).unwrap_or(e)],
        }
    }

    fn reads(
        &self,
        with: &serde_json::Value,
        _workspace: &std::path::Path,
    ) -> Result<Vec<String>, StageError> {
        let o: TrainOptions = options::parse_for_run(with)?;
        Ok(o.reads())
    }

    fn gpu_unavailable(&self) -> Option<&'static str> {
        crate::trainer::GPU_UNAVAILABLE
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<StageReport, StageError> {
        let o: TrainOptions = options::parse_for_run(ctx.with)?;
        trainer::run(ctx, &o)
    }
}

/// `base` is a path or a map; serde can only say that it matched neither, so a map is read
/// again on its own to find the real mistake (an unknown key, a wrong type).
fn better_base_error(with: &serde_json::Value) -> Option<OptionError> {
    let base = with.get("base")?;
    if !base.is_object() {
        return None;
    }
    let wrapped = serde_json::json!({ "base": base });
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Only {
        base: crate::options::BaseSpec,
    }
    options::parse::<Only>(&wrapped).err()
}
