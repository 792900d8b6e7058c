//! The classifier side of training: a BERT base (a Hugging Face directory, or fresh weights with
//! a tokenizer trained here), labelled examples encoded as `[CLS] text [SEP]` with a class index,
//! and the cross-entropy of the classification head — behind [`Learner`], so the loop in
//! [`crate::trainer`] is the one every model kind trains with.
//!
//! The classes are the sorted distinct labels of the training data; every training row needs a
//! label, and a validation label must be one of them.

use std::collections::BTreeSet;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use sluice_data::schema::Example;
use sluice_stage::StageContext;

use crate::batch::Overflow;
use crate::bert::{self, Bert, Inputs};
use crate::config::{Arch, BertConfig};
use crate::error::{ModelError, Result};
use crate::hf::{self, Head, ModelInfo};
use crate::lora::Lora;
use crate::options::{Base, InitOptions, LossOn, Method, TrainOptions};
use crate::prompt;
use crate::rng::Rng;
use crate::template::Template;
use crate::tokenizer::{self, Tokenizer};
use crate::trainer::{Learner, Prepared, Validation};

/// One example: its token ids (`[CLS] … [SEP]`) and class index.
#[derive(Clone, Debug, PartialEq)]
pub struct Labelled {
    pub ids: Vec<u32>,
    pub label: u32,
}

/// A BERT classifier with its encoded examples.
pub struct ClassifierLearner {
    model: Bert,
    tokenizer: Tokenizer,
    train: Vec<Vec<Labelled>>,
    validation: Vec<Labelled>,
    device: Device,
}

/// The classes: the sorted distinct labels of the training sets. A row without a label fails,
/// naming the file and the row (the runner names the stage).
pub fn labels(sets: &[(String, Vec<Example>)]) -> Result<Vec<String>> {
    let mut labels = BTreeSet::new();
    for (path, rows) in sets {
        for (i, row) in rows.iter().enumerate() {
            match row.label.as_deref() {
                Some(l) => {
                    labels.insert(l.to_owned());
                }
                None => return Err(missing_label(path, i, row)),
            }
        }
    }
    if labels.len() < 2 {
        return Err(ModelError::Other(format!(
            "a classifier needs at least two labels, the training data has {}",
            labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(labels.into_iter().collect())
}

fn missing_label(path: &str, i: usize, row: &Example) -> ModelError {
    ModelError::Other(format!(
        "a BERT classifier trains on labelled rows, but row {} of {path} (id `{}`) has no label (its `label` column is missing or null); collect labelled text with `style: classification` (fields `text` and `label`), or name your label field with `fields: {{label: …}}`",
        i + 1,
        row.id
    ))
}

/// How examples become token ids.
struct Encoding<'a> {
    tokenizer: &'a Tokenizer,
    cls: u32,
    sep: u32,
    /// The most tokens, `[CLS]` and `[SEP]` included.
    limit: usize,
}

impl Encoding<'_> {
    /// `[CLS] text [SEP]`, and whether the text was cut to the limit.
    fn ids(&self, text: &str) -> Result<(Vec<u32>, bool)> {
        let mut content = tokenizer::encode(self.tokenizer, text)?;
        let room = self.limit.saturating_sub(2);
        let cut = content.len() > room;
        content.truncate(room);
        let mut ids = Vec::with_capacity(content.len() + 2);
        ids.push(self.cls);
        ids.extend(content);
        ids.push(self.sep);
        Ok((ids, cut))
    }
}

/// The id of a special token the classifier needs.
fn special(tokenizer: &Tokenizer, token: &str) -> Result<u32> {
    tokenizer.token_to_id(token).ok_or_else(|| {
        ModelError::Tokenizer(format!(
            "the tokenizer has no `{token}` token, which a BERT classifier puts around every text"
        ))
    })
}

/// `[CLS] text [SEP]` for inference, cut to the model's positions; and whether it was cut.
pub fn encode(model: &Bert, tokenizer: &Tokenizer, text: &str) -> Result<(Vec<u32>, bool)> {
    let encoding = Encoding {
        tokenizer,
        cls: special(tokenizer, tokenizer::CLS)?,
        sep: special(tokenizer, tokenizer::SEP)?,
        limit: model.max_tokens(),
    };
    encoding.ids(text)
}

/// A fresh BERT for `labels` and a tokenizer trained on the training text (or the one given).
fn init_base(
    ctx: &StageContext<'_>,
    opts: &TrainOptions,
    init: &InitOptions,
    sets: &[(String, Vec<Example>)],
    labels: &[String],
    device: &Device,
) -> Result<(Bert, Tokenizer)> {
    let tokenizer = match &init.tokenizer {
        Some(p) => tokenizer::load(&ctx.path(p))?,
        None => {
            (ctx.progress)("training the tokenizer");
            let texts = sets
                .iter()
                .flat_map(|(_, rows)| rows.iter().map(|e| e.input.as_str()));
            tokenizer::train_bert(texts, init.vocab)?
        }
    };
    let mut config = BertConfig {
        vocab_size: tokenizer.get_vocab_size(true),
        hidden_size: init.hidden,
        num_hidden_layers: init.layers,
        num_attention_heads: init.heads,
        intermediate_size: init.intermediate.unwrap_or(4 * init.hidden),
        hidden_act: "gelu".into(),
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
        classifier_dropout: None,
        max_position_embeddings: init.seq,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        pad_token_id: Some(special(&tokenizer, tokenizer::BERT_PAD)?),
        position_embedding_type: None,
        id2label: None,
    };
    config.set_labels(labels);
    let mut rng = Rng::derive(opts.seed, "init", 0);
    Ok((Bert::init(config, &mut rng, device)?, tokenizer))
}

/// Loads or builds the BERT base with a head for the training labels, sets up the method and
/// encodes the examples.
pub fn prepare(
    ctx: &StageContext<'_>,
    opts: &TrainOptions,
    sets: &[(String, Vec<Example>)],
    validation: &[(String, Vec<Example>)],
    device: &Device,
) -> Result<Prepared> {
    if opts.template.is_some() {
        return Err(ModelError::Config(
            "`template` applies to causal language models; a BERT classifier reads the `input` text as it is".into(),
        ));
    }
    if opts.loss == LossOn::All {
        return Err(ModelError::Config(
            "`loss: all` applies to causal language models; a BERT classifier's loss is the cross-entropy of its labels".into(),
        ));
    }
    let labels = labels(sets)?;
    (ctx.progress)(&format!("{} labels: {}", labels.len(), labels.join(", ")));
    let (mut model, tokenizer, base_name) = match crate::trainer::base_dir(ctx, opts)? {
        Some((dir, name)) => {
            let mut rng = Rng::derive(opts.seed, "head", 0);
            let head = Head::Fresh {
                labels: &labels,
                rng: &mut rng,
            };
            let loaded = hf::load_classifier(&dir, device, head)?;
            for note in &loaded.fresh {
                (ctx.progress)(note);
            }
            let mut model = loaded.model;
            // A base that was itself fine-tuned with LoRA starts from its merged weights.
            if let Some(lora) = model.lora.take() {
                lora.merge_into(&mut model.weights)?;
            }
            (model, loaded.tokenizer, name)
        }
        None => {
            let Base::Spec(s) = &opts.base else {
                unreachable!("a path base has a directory")
            };
            let init = s.init.as_ref().expect("an init base");
            let (model, tokenizer) = init_base(ctx, opts, init, sets, &labels, device)?;
            (model, tokenizer, "init".to_owned())
        }
    };

    // The method decides what trains; the head trains with every method.
    let mut rng = Rng::derive(opts.seed, "adapter", 0);
    match opts.method {
        Method::Full => model.weights.set_trainable(true)?,
        Method::Lora => {
            let config = opts
                .lora
                .clone()
                .unwrap_or_default()
                .config(crate::config::Arch::Bert);
            let modules = bert::linear_modules(&model.config);
            model.lora = Some(Lora::new(
                config,
                Arch::Bert,
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
                "bert.embeddings.word_embeddings.weight",
                &model.weights,
                &mut rng,
                device,
            )?);
        }
    }
    if opts.method != Method::Full {
        for name in bert::HEAD {
            model.weights.make_trainable(name)?;
        }
    }

    let limit = opts.seq_len.unwrap_or(512).min(model.max_tokens()).max(2);
    let encoding = Encoding {
        tokenizer: &tokenizer,
        cls: special(&tokenizer, tokenizer::CLS)?,
        sep: special(&tokenizer, tokenizer::SEP)?,
        limit,
    };
    let index = |label: &str| labels.binary_search_by(|l| l.as_str().cmp(label)).ok();
    let mut truncated = 0;
    let mut dropped = 0;
    let mut train = Vec::new();
    for (path, rows) in sets {
        let mut encoded = Vec::with_capacity(rows.len());
        for row in rows {
            let (ids, cut) = encoding.ids(&row.input)?;
            if cut && opts.overflow == Overflow::Drop {
                dropped += 1;
                continue;
            }
            truncated += usize::from(cut);
            let label = row
                .label
                .as_deref()
                .and_then(index)
                .expect("labels hold every label");
            encoded.push(Labelled {
                ids,
                label: label as u32,
            });
        }
        if encoded.is_empty() {
            return Err(ModelError::Other(format!(
                "every example of {path} is longer than {limit} tokens and `overflow: drop` left them all out; raise `seq_len`"
            )));
        }
        train.push(encoded);
    }
    let mut val = Vec::new();
    for (path, rows) in validation {
        for (i, row) in rows.iter().enumerate() {
            let Some(label) = row.label.as_deref() else {
                return Err(missing_label(path, i, row));
            };
            let Some(class) = index(label) else {
                return Err(ModelError::Other(format!(
                    "row {} of the validation data {path} has label `{label}`, which the training data does not have (it has {}): a classifier only predicts labels it was trained on",
                    i + 1,
                    labels.join(", ")
                )));
            };
            val.push(Labelled {
                ids: encoding.ids(&row.input)?.0,
                label: class as u32,
            });
        }
    }
    Ok(Prepared {
        learner: Box::new(ClassifierLearner {
            model,
            tokenizer,
            train,
            validation: val,
            device: device.clone(),
        }),
        base_name,
        // The text goes in as it is; recorded so that `sluice.json` does not suggest a prompt.
        template: Template::new("{input}"),
        truncated,
        dropped,
    })
}

fn inputs(examples: &[&Labelled], pad: u32, device: &Device) -> Result<Inputs> {
    let seqs: Vec<&[u32]> = examples.iter().map(|e| e.ids.as_slice()).collect();
    Inputs::new(&seqs, pad, device)
}

impl Learner for ClassifierLearner {
    fn sizes(&self) -> Vec<usize> {
        self.train.iter().map(Vec::len).collect()
    }

    fn loss_units(&self, _set: usize, _index: usize) -> f64 {
        1.0
    }

    fn loss(
        &self,
        slots: &[(usize, usize)],
        denominator: f64,
        rng: &mut Rng,
    ) -> Result<(Tensor, usize)> {
        let examples: Vec<&Labelled> = slots.iter().map(|(d, i)| &self.train[*d][*i]).collect();
        let batch = inputs(&examples, self.model.config.pad(), &self.device)?;
        let labels: Vec<u32> = examples.iter().map(|e| e.label).collect();
        let loss = self.model.loss(&batch, &labels, denominator, Some(rng))?;
        Ok((loss, batch.tokens))
    }

    fn has_validation(&self) -> bool {
        !self.validation.is_empty()
    }

    /// The mean cross-entropy per example, and the accuracy.
    fn validate(&self, batch_size: usize) -> Result<Validation> {
        let mut sum = 0.0;
        let mut right = 0usize;
        for chunk in self.validation.chunks(batch_size) {
            let examples: Vec<&Labelled> = chunk.iter().collect();
            let batch = inputs(&examples, self.model.config.pad(), &self.device)?;
            let labels: Vec<u32> = chunk.iter().map(|e| e.label).collect();
            let logits = self.model.logits(&batch, None)?;
            sum += bert::class_nll(&logits, &labels, 1.0)?.to_scalar::<f32>()? as f64;
            let predicted = logits.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?;
            right += predicted
                .iter()
                .zip(&labels)
                .filter(|(p, l)| p == l)
                .count();
        }
        let n = self.validation.len() as f64;
        Ok(Validation {
            loss: sum / n,
            accuracy: Some(right as f64 / n),
        })
    }

    fn trainable(&self) -> Vec<(String, Var)> {
        self.model.trainable()
    }

    fn parameter_counts(&self) -> (usize, usize) {
        self.model.parameter_counts()
    }

    fn save(&self, dir: &Path, info: &ModelInfo, merge: bool) -> Result<()> {
        hf::save_classifier(dir, &self.model, &self.tokenizer, info, merge)
    }
}
