//! A llama-architecture causal LM (RMSNorm, rotary embeddings, grouped-query attention, SwiGLU),
//! written from differentiable candle ops so that every weight receives its gradient: candle-nn's
//! fused `rms_norm`, `softmax_last_dim` and `rope` have no backward pass and would silently cut
//! the graph. Optional LoRA adapters and prompt-tuning embeddings hook into the same forward pass.

use candle_core::{D, DType, Device, IndexOp, Tensor};

use crate::config::LlamaConfig;
use crate::error::Result;
use crate::lora::Lora;
use crate::ops;
use crate::rng::Rng;
use crate::weights::{Param, Weights};

/// The model: its configuration, base weights and optional adapters.
pub struct Llama {
    pub config: LlamaConfig,
    pub weights: Weights,
    pub lora: Option<Lora>,
    /// Prompt tuning: `virtual_tokens × hidden` embeddings prepended to every input.
    pub prompt: Option<Param>,
    pub device: Device,
}

/// Keys and values of earlier positions, one pair per layer, for incremental decoding.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The weight names of layer `i`'s linear modules, without the `.weight` suffix.
pub fn linear_modules(config: &LlamaConfig) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..config.num_hidden_layers {
        for m in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            names.push(format!("model.layers.{i}.self_attn.{m}"));
        }
        for m in ["gate_proj", "up_proj", "down_proj"] {
            names.push(format!("model.layers.{i}.mlp.{m}"));
        }
    }
    names
}

/// Every weight the configuration needs, with its shape.
pub fn weight_shapes(config: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let d = config.hidden_size;
    let hd = config.head_dim();
    let q = config.num_attention_heads * hd;
    let kv = config.kv_heads() * hd;
    let ff = config.intermediate_size;
    let mut shapes = vec![(
        "model.embed_tokens.weight".to_owned(),
        vec![config.vocab_size, d],
    )];
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        shapes.push((format!("{p}.input_layernorm.weight"), vec![d]));
        shapes.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
        shapes.push((format!("{p}.self_attn.q_proj.weight"), vec![q, d]));
        shapes.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, d]));
        shapes.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, d]));
        shapes.push((format!("{p}.self_attn.o_proj.weight"), vec![d, q]));
        shapes.push((format!("{p}.mlp.gate_proj.weight"), vec![ff, d]));
        shapes.push((format!("{p}.mlp.up_proj.weight"), vec![ff, d]));
        shapes.push((format!("{p}.mlp.down_proj.weight"), vec![d, ff]));
    }
    shapes.push(("model.norm.weight".to_owned(), vec![d]));
    if !config.tie_word_embeddings {
        shapes.push(("lm_head.weight".to_owned(), vec![config.vocab_size, d]));
    }
    shapes
}

impl Llama {
    /// Fresh weights: normal(0, 0.02) for matrices, ones for norms (as `transformers` does).
    pub fn init(config: LlamaConfig, rng: &mut Rng, device: &Device) -> Result<Llama> {
        config.validate()?;
        let mut weights = Weights::new();
        for (name, shape) in weight_shapes(&config) {
            let t = if shape.len() == 1 {
                Tensor::ones(shape, DType::F32, device)?
            } else {
                let n = shape.iter().product();
                Tensor::from_vec(rng.normal_vec(n, 0.02), shape, device)?
            };
            weights.insert(name, Param::Frozen(t));
        }
        Ok(Llama {
            config,
            weights,
            lora: None,
            prompt: None,
            device: device.clone(),
        })
    }

    /// Logits for every token position: `(batch, seq, vocab)`. `rng` turns dropout on.
    pub fn forward(&self, ids: &Tensor, rng: Option<&mut Rng>) -> Result<Tensor> {
        let hidden = self.hidden(ids, None, rng)?;
        self.logits(&hidden)
    }

    /// Logits of the new positions only, extending `cache` (generation).
    pub fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let hidden = self.hidden(ids, Some(cache), None)?;
        self.logits(&hidden)
    }

    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let head = if self.config.tie_word_embeddings {
            self.weights.get("model.embed_tokens.weight")?
        } else {
            self.weights.get("lm_head.weight")?
        };
        ops::linear(hidden, head)
    }

    /// The final hidden states of the token positions: `(batch, seq, hidden)`.
    pub fn hidden(
        &self,
        ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        mut rng: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let cfg = &self.config;
        let embed = self.weights.get("model.embed_tokens.weight")?;
        let mut x = embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, cfg.hidden_size))?;
        let start = cache.as_ref().map_or(0, |c| c.len);
        // Virtual tokens go in front of the first chunk only.
        let virtual_tokens = match (&self.prompt, start) {
            (Some(p), 0) => {
                let p = p.tensor();
                let n = p.dim(0)?;
                let p = p.unsqueeze(0)?.broadcast_as((b, n, cfg.hidden_size))?;
                x = Tensor::cat(&[&p, &x], 1)?;
                n
            }
            _ => 0,
        };
        let len = t + virtual_tokens;
        let (cos, sin) =
            ops::rope_tables(cfg.head_dim(), cfg.rope_theta, start, len, &self.device)?;
        if let Some(c) = cache.as_deref_mut()
            && c.layers.is_empty()
        {
            c.layers = vec![None; cfg.num_hidden_layers];
        }
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let normed = ops::rms_norm(
                &x,
                self.weights.get(&format!("{p}.input_layernorm.weight"))?,
                cfg.rms_norm_eps,
            )?;
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            let attn = self.attention(&p, &normed, &cos, &sin, start, layer_cache, &mut rng)?;
            x = (x + attn)?;
            let normed = ops::rms_norm(
                &x,
                self.weights
                    .get(&format!("{p}.post_attention_layernorm.weight"))?,
                cfg.rms_norm_eps,
            )?;
            let mlp = self.mlp(&p, &normed, &mut rng)?;
            x = (x + mlp)?;
        }
        if let Some(c) = cache {
            c.len += len;
        }
        let x = ops::rms_norm(&x, self.weights.get("model.norm.weight")?, cfg.rms_norm_eps)?;
        Ok(if virtual_tokens > 0 {
            x.narrow(1, virtual_tokens, t)?
        } else {
            x
        })
    }

    /// A linear module with its LoRA adapter, if it has one.
    fn linear(&self, module: &str, x: &Tensor, rng: &mut Option<&mut Rng>) -> Result<Tensor> {
        let w = self.weights.get(&format!("{module}.weight"))?;
        let y = ops::linear(x, w)?;
        match &self.lora {
            Some(lora) => lora.apply(module, x, y, rng.as_deref_mut()),
            None => Ok(y),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        p: &str,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        start: usize,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        rng: &mut Option<&mut Rng>,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, t, _) = x.dims3()?;
        let hd = cfg.head_dim();
        let heads = cfg.num_attention_heads;
        let kv_heads = cfg.kv_heads();
        let q = self.linear(&format!("{p}.self_attn.q_proj"), x, rng)?;
        let k = self.linear(&format!("{p}.self_attn.k_proj"), x, rng)?;
        let v = self.linear(&format!("{p}.self_attn.v_proj"), x, rng)?;
        let q = q.reshape((b, t, heads, hd))?.transpose(1, 2)?;
        let k = k.reshape((b, t, kv_heads, hd))?.transpose(1, 2)?;
        let v = v
            .reshape((b, t, kv_heads, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = ops::rope(&q, cos, sin)?;
        let k = ops::rope(&k, cos, sin)?;
        let (k, v) = match cache {
            Some(slot) => {
                let (k, v) = match slot.take() {
                    Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                    None => (k, v),
                };
                *slot = Some((k.clone(), v.clone()));
                (k, v)
            }
            None => (k, v),
        };
        let (k, v) = if kv_heads == heads {
            (k, v)
        } else {
            let rep = heads / kv_heads;
            (ops::repeat_kv(&k, rep)?, ops::repeat_kv(&v, rep)?)
        };
        let scale = 1.0 / (hd as f64).sqrt();
        let probs = ops::causal_softmax(&q.matmul(&k.t()?)?, scale, start)?;
        let out = probs.matmul(&v)?;
        let out = out.transpose(1, 2)?.reshape((b, t, heads * hd))?;
        self.linear(&format!("{p}.self_attn.o_proj"), &out, rng)
    }

    fn mlp(&self, p: &str, x: &Tensor, rng: &mut Option<&mut Rng>) -> Result<Tensor> {
        let gate = self.linear(&format!("{p}.mlp.gate_proj"), x, rng)?;
        let up = self.linear(&format!("{p}.mlp.up_proj"), x, rng)?;
        let h = (gate.silu()? * up)?;
        self.linear(&format!("{p}.mlp.down_proj"), &h, rng)
    }

    /// The language-model loss: the mean negative log-likelihood of `targets` where `weights`
    /// is 1, divided by `denominator` (the count of such tokens in the whole optimizer step, so
    /// that accumulated micro-batches average correctly).
    pub fn loss(
        &self,
        ids: &Tensor,
        targets: &Tensor,
        weights: &Tensor,
        denominator: f64,
        rng: Option<&mut Rng>,
    ) -> Result<Tensor> {
        let logits = self.forward(ids, rng)?;
        ops::masked_nll(&logits, targets, weights, denominator)
    }

    /// Logits of the last position of a single sequence (for scoring and decoding checks).
    pub fn last_logits(&self, ids: &[u32]) -> Result<Tensor> {
        let t = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        let logits = self.forward(&t, None)?;
        Ok(logits.i((0, ids.len() - 1))?)
    }

    /// (trainable, total) parameter counts, adapters included.
    pub fn parameter_counts(&self) -> (usize, usize) {
        crate::weights::parameter_counts(&self.weights, self.lora.as_ref(), self.prompt.as_ref())
    }

    /// Every trainable tensor, named: base weights, adapter matrices, virtual tokens.
    pub fn trainable(&self) -> Vec<(String, candle_core::Var)> {
        crate::weights::trainable_vars(&self.weights, self.lora.as_ref(), self.prompt.as_ref())
    }
}

/// The index of the largest logit.
pub fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}
