//! The tensor operations the models are made of, each differentiable: on the CPU through the
//! fused kernels of [`crate::fused`], which carry their own backward pass; elsewhere composed
//! from candle ops that have one (candle-nn's fused norm, softmax and rope kernels have none).

use std::sync::Arc;

use candle_core::{D, DType, Device, Tensor};

use crate::error::Result;
use crate::fused;

/// `x · wᵀ` for `x` of shape `(…, in)` and `w` of shape `(out, in)`.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let last = dims[dims.len() - 1];
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let y = x.reshape((rows, last))?.matmul(&w.t()?)?;
    let mut out = dims.to_vec();
    *out.last_mut().expect("non-empty shape") = w.dim(0)?;
    Ok(y.reshape(out)?)
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) · w`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if x.device().is_cpu() {
        let x = x.contiguous()?;
        return Ok(x.apply_op2(w, fused::RmsNorm { eps: eps as f32 })?);
    }
    rms_norm_composite(x, w, eps)
}

/// RMSNorm from candle ops (any device; the reference for the fused kernel).
pub fn rms_norm_composite(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = x.broadcast_div(&(ms + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(w)?)
}

/// LayerNorm over the last dimension, `(x − mean) / sqrt(var + eps) · w + b` (candle-nn's
/// `layer_norm` has no backward pass).
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    if x.device().is_cpu() {
        let x = x.contiguous()?;
        return Ok(x.apply_op3(w, b, fused::LayerNorm { eps: eps as f32 })?);
    }
    layer_norm_composite(x, w, b, eps)
}

/// LayerNorm from candle ops (any device; the reference for the fused kernel).
pub fn layer_norm_composite(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(w)?.broadcast_add(b)?)
}

/// Inverted dropout with probability `p`, drawn from `rng`; the identity without one.
pub fn dropout(x: &Tensor, p: f32, rng: Option<&mut crate::rng::Rng>) -> Result<Tensor> {
    match rng {
        Some(rng) if p > 0.0 => {
            let mask = rng.dropout_mask(x.elem_count(), p);
            Ok((x * Tensor::from_vec(mask, x.shape(), x.device())?)?)
        }
        _ => Ok(x.clone()),
    }
}

/// The softmax over the last dimension, from ops that all have a backward pass.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::softmax(x, D::Minus1)?)
}

/// Cosine and sine tables `(len, head_dim)` for positions `start..start + len`, in the
/// `rotate_half` layout Hugging Face's llama uses (the two halves repeat the frequencies).
pub fn rope_tables(
    head_dim: usize,
    theta: f64,
    start: usize,
    len: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(len * head_dim);
    let mut sin = Vec::with_capacity(len * head_dim);
    for pos in start..start + len {
        for rep in 0..2 {
            let _ = rep;
            for i in 0..half {
                let inv_freq = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
                let angle = pos as f64 * inv_freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
    }
    Ok((
        Tensor::from_vec(cos, (len, head_dim), device)?,
        Tensor::from_vec(sin, (len, head_dim), device)?,
    ))
}

/// Rotary embeddings on `x` of shape `(batch, heads, seq, head_dim)`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        let x = x.contiguous()?;
        return Ok(x.apply_op3(cos, sin, fused::Rope { transpose: false })?);
    }
    rope_composite(x, cos, sin)
}

/// Rotary embeddings from candle ops.
pub fn rope_composite(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let hd = x.dim(D::Minus1)?;
    let half = hd / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?)
}

/// The additive attention mask for `len` new positions after `start` cached ones:
/// `(len, start + len)`, zero where a query may look, a large negative number elsewhere.
pub fn causal_mask(start: usize, len: usize, device: &Device) -> Result<Tensor> {
    let total = start + len;
    let mut mask = Vec::with_capacity(len * total);
    for i in 0..len {
        for j in 0..total {
            mask.push(if j > start + i { -1e9f32 } else { 0.0 });
        }
    }
    Ok(Tensor::from_vec(mask, (len, total), device)?)
}

/// Repeats key/value heads for grouped-query attention: `(b, kv, t, d)` → `(b, kv·rep, t, d)`.
pub fn repeat_kv(x: &Tensor, rep: usize) -> Result<Tensor> {
    let (b, kv, t, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .broadcast_as((b, kv, rep, t, d))?
        .reshape((b, kv * rep, t, d))?)
}

/// Attention probabilities from raw scores `(…, len, start + len)`: `softmax(scale · scores)`
/// with query `i` seeing keys `0..=start + i`.
pub fn causal_softmax(scores: &Tensor, scale: f64, start: usize) -> Result<Tensor> {
    if scores.device().is_cpu() {
        let scores = scores.contiguous()?;
        return Ok(scores.apply_op1(fused::CausalSoftmax {
            scale: scale as f32,
            start,
        })?);
    }
    let len = scores.dim(D::Minus2)?;
    let mask = causal_mask(start, len, scores.device())?;
    softmax_last(&(scores * scale)?.broadcast_add(&mask)?)
}

/// `sum(-log p(target) · weight) / denominator` over every position of `logits` `(b, t, v)`.
pub fn masked_nll(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
    denominator: f64,
) -> Result<Tensor> {
    if logits.device().is_cpu() {
        let (b, t, v) = logits.dims3()?;
        let op = fused::CrossEntropy {
            targets: Arc::new(targets.flatten_all()?.to_vec1::<u32>()?),
            weights: Arc::new(
                weights
                    .flatten_all()?
                    .to_dtype(DType::F32)?
                    .to_vec1::<f32>()?,
            ),
            denominator,
        };
        return Ok(logits.reshape((b * t, v))?.contiguous()?.apply_op1(op)?);
    }
    masked_nll_composite(logits, targets, weights, denominator)
}

/// The masked cross-entropy from candle ops.
pub fn masked_nll_composite(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
    denominator: f64,
) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let logp = candle_nn::ops::log_softmax(&logits.reshape((b * t, v))?, D::Minus1)?;
    let picked = logp.gather(&targets.reshape((b * t, 1))?, 1)?.squeeze(1)?;
    let weighted = (picked * weights.reshape(b * t)?.to_dtype(DType::F32)?)?;
    Ok((weighted.sum_all()? * (-1.0 / denominator))?)
}
