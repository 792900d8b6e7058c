//! The causal-LM side of training: a llama base (loaded, from the hub, or fresh with a tokenizer
//! trained here), the method's adapters, examples encoded as token sequences with loss weights,
//! and the next-token loss — behind [`Learner`], so the loop in [`crate::trainer`] knows nothing
//! of it.

use std::path::Path;

use candle_core::{Device, Tensor, Var};
use sluice_data::schema::Example;
use sluice_stage::StageContext;

use crate::batch::{self, Encoder, Sequence};
use crate::config::{EosTokens, LlamaConfig};
use crate::error::{ModelError, Result};
use crate::hf::{self, ModelInfo};
use crate::llama::Llama;
use crate::lora::Lora;
use crate::options::{Base, InitOptions, LossOn, Method, TrainOptions};
use crate::prompt;
use crate::rng::Rng;
use crate::template::Template;
use crate::tokenizer::{self, Tokenizer};
use crate::trainer::{Learner, Prepared, Validation};

/// A llama model with its encoded examples.
pub struct CausalLearner {
    model: Llama,
    tokenizer: Tokenizer,
    train: Vec<Vec<Sequence>>,
    validation: Vec<Sequence>,
    pad: u32,
    device: Device,
}

/// The base model and tokenizer, and how to name the base in records.
struct Start {
    model: Llama,
    tokenizer: Tokenizer,
    base_name: String,
    template: Option<Template>,
}

fn load_base(
    ctx: &StageContext<'_>,
    opts: &TrainOptions,
    train_text: &[&Example],
    device: &Device,
) -> Result<Start> {
    let Some((dir, name)) = crate::trainer::base_dir(ctx, opts)? else {
        let Base::Spec(s) = &opts.base else {
            unreachable!("a path base has a directory")
        };
        let init = s.init.as_ref().expect("an init base");
        return init_base(ctx, opts, init, train_text, device);
    };
    let loaded = hf::load_dir(&dir, device)?;
    let mut model = loaded.model;
    // A base that was itself fine-tuned with LoRA starts from its merged weights.
    if let Some(lora) = model.lora.take() {
        lora.merge_into(&mut model.weights)?;
    }
    Ok(Start {
        model,
        tokenizer: loaded.tokenizer,
        base_name: name,
        template: loaded.info.map(|i| i.template),
    })
}

/// A fresh llama and its tokenizer (trained here on the training text unless one is given).
fn init_base(
    ctx: &StageContext<'_>,
    opts: &TrainOptions,
    init: &InitOptions,
    train_text: &[&Example],
    device: &Device,
) -> Result<Start> {
    let tokenizer = match &init.tokenizer {
        Some(p) => tokenizer::load(&ctx.path(p))?,
        None => {
            (ctx.progress)("training the tokenizer");
            let template = opts
                .template
                .as_deref()
                .map(Template::new)
                .unwrap_or_default();
            let texts: Vec<String> = train_text
                .iter()
                .flat_map(|e| example_texts(e, &template))
                .collect();
            tokenizer::train(texts.iter().map(String::as_str), init.vocab)?
        }
    };
    let token = |s: &str| tokenizer.token_to_id(s);
    let vocab = tokenizer.get_vocab_size(true);
    let intermediate = init
        .intermediate
        .unwrap_or_else(|| (init.hidden * 8 / 3).div_ceil(32) * 32);
    let config = LlamaConfig {
        hidden_size: init.hidden,
        intermediate_size: intermediate,
        num_hidden_layers: init.layers,
        num_attention_heads: init.heads,
        num_key_value_heads: Some(init.kv_heads.unwrap_or(init.heads)),
        vocab_size: vocab,
        max_position_embeddings: init.seq,
        rms_norm_eps: 1e-5,
        rope_theta: init.rope_theta,
        tie_word_embeddings: init.tie_embeddings,
        bos_token_id: token(tokenizer::BOS),
        eos_token_id: token(tokenizer::EOS).map(EosTokens::One),
        pad_token_id: token(tokenizer::PAD),
        head_dim: None,
        hidden_act: Some("silu".into()),
        rope_scaling: None,
    };
    let mut rng = Rng::derive(opts.seed, "init", 0);
    let model = Llama::init(config, &mut rng, device)?;
    Ok(Start {
        model,
        tokenizer,
        base_name: "init".into(),
        template: None,
    })
}

/// The text of an example as the model will see it, for tokenizer training.
fn example_texts(e: &Example, template: &Template) -> Vec<String> {
    match &e.messages {
        Some(m) if !m.is_empty() => m
            .iter()
            .flat_map(|m| [crate::template::chat_open(&m.role), m.content.clone()])
            .collect(),
        _ if e.output.is_empty() => vec![e.input.clone()],
        _ => vec![template.render(&e.input), e.output.clone()],
    }
}

/// Loads or builds the llama base, sets up the method and encodes the examples.
pub fn prepare(
    ctx: &StageContext<'_>,
    opts: &TrainOptions,
    sets: &[(String, Vec<Example>)],
    validation: &[Example],
    device: &Device,
) -> Result<Prepared> {
    let all_train: Vec<&Example> = sets.iter().flat_map(|(_, rows)| rows).collect();
    let Start {
        mut model,
        tokenizer,
        base_name,
        template: base_template,
    } = load_base(ctx, opts, &all_train, device)?;

    // The method decides what trains.
    let mut rng = Rng::derive(opts.seed, "adapter", 0);
    match opts.method {
        Method::Full => model.weights.set_trainable(true)?,
        Method::Lora => {
            let config = opts
                .lora
                .clone()
                .unwrap_or_default()
                .config(crate::config::Arch::Llama);
            let modules = crate::llama::linear_modules(&model.config);
            model.lora = Some(Lora::new(
                config,
                crate::config::Arch::Llama,
                &modules,
                &model.weights,
                &mut rng,
                device,
            )?);
        }
        Method::Prompt => {
            let n = opts.prompt.clone().unwrap_or_default().virtual_tokens;
            model.prompt = Some(prompt::init(
                n,
                "model.embed_tokens.weight",
                &model.weights,
                &mut rng,
                device,
            )?);
        }
    }

    let template = opts
        .template
        .as_deref()
        .map(Template::new)
        .or(base_template)
        .unwrap_or_default();
    let encoder = Encoder {
        tokenizer: &tokenizer,
        template: &template,
        bos: model.config.bos_token_id,
        eos: model.config.eos(),
        loss_on_all: opts.loss == LossOn::All,
    };
    let seq_len = opts
        .seq_len
        .unwrap_or_else(|| model.config.max_position_embeddings.min(512));
    let prompt_len = model.prompt.as_ref().map_or(0, |p| p.tensor().dims()[0]);
    let limit = seq_len
        .min(
            model
                .config
                .max_position_embeddings
                .saturating_sub(prompt_len),
        )
        .max(1);
    let mut truncated = 0;
    let mut dropped = 0;
    let mut train = Vec::new();
    for (path, rows) in sets {
        let seqs = rows
            .iter()
            .map(|e| encoder.encode(e))
            .collect::<Result<Vec<_>>>()?;
        let (seqs, stats) = batch::fit(seqs, limit, opts.overflow);
        truncated += stats.truncated;
        dropped += stats.dropped + stats.empty;
        if seqs.is_empty() {
            return Err(ModelError::Other(format!(
                "no example of {path} has an output token within the first {limit} tokens; raise `seq_len` (or the base's `seq`), or shorten the template"
            )));
        }
        train.push(seqs);
    }
    let validation = {
        let seqs = validation
            .iter()
            .map(|e| encoder.encode(e))
            .collect::<Result<Vec<_>>>()?;
        batch::fit(seqs, limit, batch::Overflow::Truncate).0
    };
    let pad = model
        .config
        .pad_token_id
        .or(model.config.eos())
        .unwrap_or(0);
    Ok(Prepared {
        learner: Box::new(CausalLearner {
            model,
            tokenizer,
            train,
            validation,
            pad,
            device: device.clone(),
        }),
        base_name,
        template,
        truncated,
        dropped,
    })
}

impl Learner for CausalLearner {
    fn sizes(&self) -> Vec<usize> {
        self.train.iter().map(Vec::len).collect()
    }

    fn loss_units(&self, set: usize, index: usize) -> f64 {
        self.train[set][index].loss_tokens()
    }

    fn loss(
        &self,
        slots: &[(usize, usize)],
        denominator: f64,
        rng: &mut Rng,
    ) -> Result<(Tensor, usize)> {
        let seqs: Vec<&Sequence> = slots.iter().map(|(d, i)| &self.train[*d][*i]).collect();
        let b = batch::batch(&seqs, self.pad, &self.device)?;
        let loss = self
            .model
            .loss(&b.inputs, &b.targets, &b.weights, denominator, Some(rng))?;
        Ok((loss, b.tokens))
    }

    fn has_validation(&self) -> bool {
        !self.validation.is_empty()
    }

    /// The mean loss per counted token.
    fn validate(&self, batch_size: usize) -> Result<Validation> {
        let mut sum = 0.0;
        let mut count = 0.0;
        for chunk in self.validation.chunks(batch_size) {
            let refs: Vec<&Sequence> = chunk.iter().collect();
            let b = batch::batch(&refs, self.pad, &self.device)?;
            let loss = self
                .model
                .loss(&b.inputs, &b.targets, &b.weights, 1.0, None)?;
            sum += loss.to_scalar::<f32>()? as f64;
            count += b.loss_tokens;
        }
        Ok(Validation {
            loss: if count > 0.0 { sum / count } else { f64::NAN },
            accuracy: None,
        })
    }

    fn trainable(&self) -> Vec<(String, Var)> {
        self.model.trainable()
    }

    fn parameter_counts(&self) -> (usize, usize) {
        self.model.parameter_counts()
    }

    fn save(&self, dir: &Path, info: &ModelInfo, merge: bool) -> Result<()> {
        hf::save_dir(dir, &self.model, &self.tokenizer, info, merge)
    }
}
