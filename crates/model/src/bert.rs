//! A BERT encoder with a sequence-classification head, as Hugging Face's
//! `BertForSequenceClassification`: embeddings (word, position, token type, LayerNorm), encoder
//! layers (bidirectional self-attention over the real tokens, GELU feed-forward, post-LayerNorm),
//! the pooler (dense and tanh on `[CLS]`), dropout and the `classifier`. Written from
//! differentiable candle ops, so every weight receives its gradient (candle-nn's fused
//! `layer_norm` has no backward pass). LoRA adapters hook into the linear modules; prompt tuning
//! puts virtual tokens right after `[CLS]`.
//!
//! Weights are named as `BertForSequenceClassification` names them: `bert.…` and `classifier.…`.

use candle_core::{D, DType, Device, IndexOp, Tensor};

use crate::config::BertConfig;
use crate::error::{ModelError, Result};
use crate::lora::Lora;
use crate::ops;
use crate::rng::Rng;
use crate::weights::{Param, Weights};

/// The classification head's weights, which train with every method.
pub const HEAD: [&str; 2] = ["classifier.weight", "classifier.bias"];
/// The pooler's weights, absent from encoders saved without one (sentence-transformers).
pub const POOLER: [&str; 2] = ["bert.pooler.dense.weight", "bert.pooler.dense.bias"];

/// The model: its configuration (whose `id2label` names the classes), weights and adapters.
pub struct Bert {
    pub config: BertConfig,
    pub weights: Weights,
    pub lora: Option<Lora>,
    /// Prompt tuning: `virtual_tokens × hidden` embeddings inserted after `[CLS]`.
    pub prompt: Option<Param>,
    pub device: Device,
}

/// The paths of the linear modules (without `.weight`), the pooler's last.
pub fn linear_modules(config: &BertConfig) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..config.num_hidden_layers {
        let p = format!("bert.encoder.layer.{i}");
        for m in ["query", "key", "value"] {
            names.push(format!("{p}.attention.self.{m}"));
        }
        names.push(format!("{p}.attention.output.dense"));
        names.push(format!("{p}.intermediate.dense"));
        names.push(format!("{p}.output.dense"));
    }
    names.push("bert.pooler.dense".to_owned());
    names
}

/// Every weight of the model with `labels` classes, with its shape.
pub fn weight_shapes(config: &BertConfig, labels: usize) -> Vec<(String, Vec<usize>)> {
    let d = config.hidden_size;
    let ff = config.intermediate_size;
    let e = "bert.embeddings";
    let mut shapes = vec![
        (
            format!("{e}.word_embeddings.weight"),
            vec![config.vocab_size, d],
        ),
        (
            format!("{e}.position_embeddings.weight"),
            vec![config.max_position_embeddings, d],
        ),
        (
            format!("{e}.token_type_embeddings.weight"),
            vec![config.type_vocab_size, d],
        ),
        (format!("{e}.LayerNorm.weight"), vec![d]),
        (format!("{e}.LayerNorm.bias"), vec![d]),
    ];
    for i in 0..config.num_hidden_layers {
        let p = format!("bert.encoder.layer.{i}");
        for m in ["query", "key", "value"] {
            shapes.push((format!("{p}.attention.self.{m}.weight"), vec![d, d]));
            shapes.push((format!("{p}.attention.self.{m}.bias"), vec![d]));
        }
        shapes.push((format!("{p}.attention.output.dense.weight"), vec![d, d]));
        shapes.push((format!("{p}.attention.output.dense.bias"), vec![d]));
        shapes.push((format!("{p}.attention.output.LayerNorm.weight"), vec![d]));
        shapes.push((format!("{p}.attention.output.LayerNorm.bias"), vec![d]));
        shapes.push((format!("{p}.intermediate.dense.weight"), vec![ff, d]));
        shapes.push((format!("{p}.intermediate.dense.bias"), vec![ff]));
        shapes.push((format!("{p}.output.dense.weight"), vec![d, ff]));
        shapes.push((format!("{p}.output.dense.bias"), vec![d]));
        shapes.push((format!("{p}.output.LayerNorm.weight"), vec![d]));
        shapes.push((format!("{p}.output.LayerNorm.bias"), vec![d]));
    }
    shapes.push((POOLER[0].to_owned(), vec![d, d]));
    shapes.push((POOLER[1].to_owned(), vec![d]));
    shapes.push((HEAD[0].to_owned(), vec![labels, d]));
    shapes.push((HEAD[1].to_owned(), vec![labels]));
    shapes
}

/// A fresh weight as `transformers` initialises BERT: normal(0, 0.02) for matrices and
/// embeddings, ones for LayerNorm gains, zeros for biases.
pub fn fresh(name: &str, shape: &[usize], rng: &mut Rng, device: &Device) -> Result<Tensor> {
    Ok(if shape.len() > 1 {
        let n = shape.iter().product();
        Tensor::from_vec(rng.normal_vec(n, 0.02), shape, device)?
    } else if name.ends_with("LayerNorm.weight") {
        Tensor::ones(shape, DType::F32, device)?
    } else {
        Tensor::zeros(shape, DType::F32, device)?
    })
}

/// A padded batch of token sequences for the encoder.
pub struct Inputs {
    /// `(batch, len)` token ids, padded on the right.
    pub ids: Tensor,
    /// `(batch, len)`, 1 for a real token, 0 for padding.
    pub mask: Tensor,
    /// Real tokens.
    pub tokens: usize,
}

impl Inputs {
    /// Right-pads `seqs` with `pad`.
    pub fn new(seqs: &[&[u32]], pad: u32, device: &Device) -> Result<Inputs> {
        let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(seqs.len() * len);
        let mut mask = Vec::with_capacity(seqs.len() * len);
        let mut tokens = 0;
        for s in seqs {
            tokens += s.len();
            ids.extend_from_slice(s);
            mask.extend(std::iter::repeat_n(1f32, s.len()));
            ids.extend(std::iter::repeat_n(pad, len - s.len()));
            mask.extend(std::iter::repeat_n(0f32, len - s.len()));
        }
        Ok(Inputs {
            ids: Tensor::from_vec(ids, (seqs.len(), len), device)?,
            mask: Tensor::from_vec(mask, (seqs.len(), len), device)?,
            tokens,
        })
    }
}

impl Bert {
    /// Fresh weights for `labels` classes (named in `config.id2label`).
    pub fn init(config: BertConfig, rng: &mut Rng, device: &Device) -> Result<Bert> {
        config.validate()?;
        let labels = config.labels()?.len();
        let mut weights = Weights::new();
        for (name, shape) in weight_shapes(&config, labels) {
            let t = fresh(&name, &shape, rng, device)?;
            weights.insert(name, Param::Frozen(t));
        }
        Ok(Bert {
            config,
            weights,
            lora: None,
            prompt: None,
            device: device.clone(),
        })
    }

    /// The class labels, in logit order.
    pub fn labels(&self) -> Result<Vec<String>> {
        self.config.labels()
    }

    /// The longest input (`[CLS]` and `[SEP]` included) the position table leaves room for
    /// beside the virtual tokens.
    pub fn max_tokens(&self) -> usize {
        let virtual_tokens = self.prompt.as_ref().map_or(0, |p| p.tensor().dims()[0]);
        self.config
            .max_position_embeddings
            .saturating_sub(virtual_tokens)
    }

    /// A linear module with its bias and its LoRA adapter, if it has one.
    fn linear(&self, module: &str, x: &Tensor, rng: &mut Option<&mut Rng>) -> Result<Tensor> {
        let w = self.weights.get(&format!("{module}.weight"))?;
        let b = self.weights.get(&format!("{module}.bias"))?;
        let y = ops::linear(x, w)?.broadcast_add(b)?;
        match &self.lora {
            Some(lora) => lora.apply(module, x, y, rng.as_deref_mut()),
            None => Ok(y),
        }
    }

    fn norm(&self, prefix: &str, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm(
            x,
            self.weights.get(&format!("{prefix}.weight"))?,
            self.weights.get(&format!("{prefix}.bias"))?,
            self.config.layer_norm_eps,
        )
    }

    /// Class logits `(batch, labels)`. `rng` turns dropout on (training).
    pub fn logits(&self, inputs: &Inputs, mut rng: Option<&mut Rng>) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, t) = inputs.ids.dims2()?;
        let d = cfg.hidden_size;
        let e = "bert.embeddings";
        let words = self
            .weights
            .get(&format!("{e}.word_embeddings.weight"))?
            .index_select(&inputs.ids.flatten_all()?, 0)?
            .reshape((b, t, d))?;
        let (words, mask) = match &self.prompt {
            Some(p) => {
                let p = p.tensor();
                let n = p.dim(0)?;
                let p = p.unsqueeze(0)?.broadcast_as((b, n, d))?;
                let words = Tensor::cat(
                    &[&words.narrow(1, 0, 1)?, &p, &words.narrow(1, 1, t - 1)?],
                    1,
                )?;
                let ones = Tensor::ones((b, n), DType::F32, &self.device)?;
                let mask = Tensor::cat(
                    &[
                        &inputs.mask.narrow(1, 0, 1)?,
                        &ones,
                        &inputs.mask.narrow(1, 1, t - 1)?,
                    ],
                    1,
                )?;
                (words, mask)
            }
            None => (words, inputs.mask.clone()),
        };
        let len = words.dim(1)?;
        if len > cfg.max_position_embeddings {
            return Err(ModelError::Other(format!(
                "{len} positions exceed the model's {}",
                cfg.max_position_embeddings
            )));
        }
        let positions = self
            .weights
            .get(&format!("{e}.position_embeddings.weight"))?
            .narrow(0, 0, len)?;
        // Every token is of type 0: one sentence per example.
        let token_type = self
            .weights
            .get(&format!("{e}.token_type_embeddings.weight"))?
            .narrow(0, 0, 1)?;
        let x = words
            .broadcast_add(&positions)?
            .broadcast_add(&token_type)?;
        let x = self.norm(&format!("{e}.LayerNorm"), &x)?;
        let mut x = ops::dropout(&x, cfg.hidden_dropout_prob, rng.as_deref_mut())?;
        // Padding gets a large negative score, so no position attends to it.
        let additive = ((mask - 1.0)? * 1e9)?.reshape((b, 1, 1, len))?;
        let gelu_tanh = cfg.gelu_tanh()?;
        for i in 0..cfg.num_hidden_layers {
            let p = format!("bert.encoder.layer.{i}");
            let attn = self.attention(&p, &x, &additive, &mut rng)?;
            let attn = self.linear(&format!("{p}.attention.output.dense"), &attn, &mut rng)?;
            let attn = ops::dropout(&attn, cfg.hidden_dropout_prob, rng.as_deref_mut())?;
            x = self.norm(&format!("{p}.attention.output.LayerNorm"), &(attn + &x)?)?;
            let h = self.linear(&format!("{p}.intermediate.dense"), &x, &mut rng)?;
            let h = if gelu_tanh { h.gelu()? } else { h.gelu_erf()? };
            let h = self.linear(&format!("{p}.output.dense"), &h, &mut rng)?;
            let h = ops::dropout(&h, cfg.hidden_dropout_prob, rng.as_deref_mut())?;
            x = self.norm(&format!("{p}.output.LayerNorm"), &(h + &x)?)?;
        }
        let cls = x.i((.., 0, ..))?.contiguous()?;
        let pooled = self.linear("bert.pooler.dense", &cls, &mut rng)?.tanh()?;
        let pooled = ops::dropout(&pooled, cfg.classifier_dropout(), rng)?;
        let w = self.weights.get(HEAD[0])?;
        let bias = self.weights.get(HEAD[1])?;
        Ok(ops::linear(&pooled, w)?.broadcast_add(bias)?)
    }

    fn attention(
        &self,
        p: &str,
        x: &Tensor,
        additive: &Tensor,
        rng: &mut Option<&mut Rng>,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, t, d) = x.dims3()?;
        let heads = cfg.num_attention_heads;
        let hd = cfg.head_dim();
        let split = |y: Tensor| -> Result<Tensor> {
            Ok(y.reshape((b, t, heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = split(self.linear(&format!("{p}.attention.self.query"), x, rng)?)?;
        let k = split(self.linear(&format!("{p}.attention.self.key"), x, rng)?)?;
        let v = split(self.linear(&format!("{p}.attention.self.value"), x, rng)?)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(additive)?;
        let probs = ops::softmax_last(&scores)?;
        let probs = ops::dropout(&probs, cfg.attention_probs_dropout_prob, rng.as_deref_mut())?;
        Ok(probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?)
    }

    /// The cross-entropy of `labels` (class indices, one per row) under the logits, summed and
    /// divided by `denominator` (the examples of the whole optimizer step).
    pub fn loss(
        &self,
        inputs: &Inputs,
        labels: &[u32],
        denominator: f64,
        rng: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let logits = self.logits(inputs, rng)?;
        class_nll(&logits, labels, denominator)
    }

    /// (trainable, total) parameter counts, adapters included.
    pub fn parameter_counts(&self) -> (usize, usize) {
        crate::weights::parameter_counts(&self.weights, self.lora.as_ref(), self.prompt.as_ref())
    }

    /// Every trainable tensor, named.
    pub fn trainable(&self) -> Vec<(String, candle_core::Var)> {
        crate::weights::trainable_vars(&self.weights, self.lora.as_ref(), self.prompt.as_ref())
    }
}

/// `Σ −log softmax(logits)[label] / denominator` over the rows of `logits` `(batch, classes)`.
pub fn class_nll(logits: &Tensor, labels: &[u32], denominator: f64) -> Result<Tensor> {
    let (b, _) = logits.dims2()?;
    let device = logits.device();
    let targets = Tensor::new(labels, device)?.reshape((b, 1))?;
    let weights = Tensor::ones((b, 1), DType::F32, device)?;
    ops::masked_nll(&logits.unsqueeze(1)?, &targets, &weights, denominator)
}

/// The softmax probabilities of `logits` `(batch, classes)`, row by row.
pub fn probabilities(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(candle_nn::ops::softmax(logits, D::Minus1)?.to_vec2::<f32>()?)
}
