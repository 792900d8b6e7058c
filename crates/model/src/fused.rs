//! Fused CPU kernels with their own backward pass, for the operations a training step spends
//! its elementwise time in: RMSNorm and LayerNorm, the scaled causal softmax of attention,
//! rotary embeddings and the masked cross-entropy over the vocabulary. Each replaces several candle ops (and
//! their intermediate tensors) by one pass over rows, parallel with rayon; reductions combine
//! fixed-size chunks in order, so results do not depend on the thread count.
//!
//! They run on the CPU only: [`crate::ops`] uses them for CPU tensors and the composite ops
//! elsewhere. Inputs must be contiguous f32.

use std::sync::Arc;

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail,
};
use rayon::prelude::*;

/// Rows per parallel task: large enough to amortise scheduling, fixed for determinism.
const ROWS_PER_TASK: usize = 64;

fn data<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{what}: needs f32 data")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{what}: needs a contiguous tensor"),
    }
}

fn last_dim(l: &Layout) -> usize {
    *l.dims().last().unwrap_or(&1)
}

/// A new buffer of `rows × cols`, each row written by `f(row_index, row)`, rows in parallel
/// tasks of [`ROWS_PER_TASK`].
fn map_rows(len: usize, cols: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) -> Vec<f32> {
    let mut out = vec![0f32; len];
    out.par_chunks_mut(cols * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, o)| {
            for (k, row) in o.chunks_mut(cols).enumerate() {
                f(task * ROWS_PER_TASK + k, row);
            }
        });
    out
}

/// Row `r` of a `cols`-wide matrix.
fn row(data: &[f32], r: usize, cols: usize) -> &[f32] {
    &data[r * cols..(r + 1) * cols]
}

// ---- RMSNorm ----------------------------------------------------------------------------

/// `y = x / sqrt(mean(x²) + eps) · w` over the last dimension.
pub struct RmsNorm {
    pub eps: f32,
}

fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ms = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
    1.0 / (ms + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "sluice-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = data(s1, l1, self.name())?;
        let w = data(s2, l2, self.name())?;
        let d = last_dim(l1);
        let out = map_rows(x.len(), d, |i, o| {
            let x = row(x, i, d);
            let r = inv_rms(x, self.eps);
            for ((o, x), w) in o.iter_mut().zip(x).zip(w) {
                *o = x * r * w;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = x.apply_op3_no_bwd(w, &grad, &RmsNormGradX { eps: self.eps })?;
        let dw = x.apply_op2_no_bwd(&grad, &RmsNormGradW { eps: self.eps })?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `dx = r · (g·w − x · r² · mean(g·w·x))`.
struct RmsNormGradX {
    eps: f32,
}

impl CustomOp3 for RmsNormGradX {
    fn name(&self) -> &'static str {
        "sluice-rms-norm-grad-x"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = data(s1, l1, self.name())?;
        let w = data(s2, l2, self.name())?;
        let g = data(s3, l3, self.name())?;
        let d = last_dim(l1);
        let out = map_rows(x.len(), d, |i, o| {
            let (x, g) = (row(x, i, d), row(g, i, d));
            let r = inv_rms(x, self.eps);
            let dot: f32 = x
                .iter()
                .zip(g)
                .zip(w)
                .map(|((x, g), w)| g * w * x)
                .sum::<f32>()
                / d as f32;
            let c = r * r * dot;
            for (((o, x), g), w) in o.iter_mut().zip(x).zip(g).zip(w) {
                *o = r * (g * w - x * c);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `dw = Σ_rows g · x · r`.
struct RmsNormGradW {
    eps: f32,
}

impl CustomOp2 for RmsNormGradW {
    fn name(&self) -> &'static str {
        "sluice-rms-norm-grad-w"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = data(s1, l1, self.name())?;
        let g = data(s2, l2, self.name())?;
        let d = last_dim(l1);
        let partials: Vec<Vec<f32>> = x
            .par_chunks(d * ROWS_PER_TASK)
            .zip(g.par_chunks(d * ROWS_PER_TASK))
            .map(|(x, g)| {
                let mut acc = vec![0f32; d];
                for (x, g) in x.chunks(d).zip(g.chunks(d)) {
                    let r = inv_rms(x, self.eps);
                    for ((a, x), g) in acc.iter_mut().zip(x).zip(g) {
                        *a += g * x * r;
                    }
                }
                acc
            })
            .collect();
        let mut out = vec![0f32; d];
        for p in partials {
            for (o, p) in out.iter_mut().zip(p) {
                *o += p;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(d)))
    }
}

// ---- LayerNorm ----------------------------------------------------------------------------

/// `y = (x − mean) / sqrt(var + eps) · w + b` over the last dimension (BERT's LayerNorm).
pub struct LayerNorm {
    pub eps: f32,
}

/// The mean and `1 / sqrt(var + eps)` of a row.
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "sluice-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = data(s1, l1, self.name())?;
        let w = data(s2, l2, self.name())?;
        let b = data(s3, l3, self.name())?;
        let d = last_dim(l1);
        let out = map_rows(x.len(), d, |i, o| {
            let x = row(x, i, d);
            let (mean, r) = moments(x, self.eps);
            for (((o, x), w), b) in o.iter_mut().zip(x).zip(w).zip(b) {
                *o = (x - mean) * r * w + b;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = x.apply_op3_no_bwd(w, &grad, &LayerNormGradX { eps: self.eps })?;
        let d = w.elem_count();
        let dwb = x.apply_op2_no_bwd(&grad, &LayerNormGradWB { eps: self.eps })?;
        Ok((
            Some(dx),
            Some(dwb.narrow(0, 0, d)?),
            Some(dwb.narrow(0, d, d)?),
        ))
    }
}

/// `dx = r · (g·w − mean(g·w) − x̂ · mean(g·w·x̂))`, with `x̂ = (x − mean) · r`.
struct LayerNormGradX {
    eps: f32,
}

impl CustomOp3 for LayerNormGradX {
    fn name(&self) -> &'static str {
        "sluice-layer-norm-grad-x"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = data(s1, l1, self.name())?;
        let w = data(s2, l2, self.name())?;
        let g = data(s3, l3, self.name())?;
        let d = last_dim(l1);
        let out = map_rows(x.len(), d, |i, o| {
            let (x, g) = (row(x, i, d), row(g, i, d));
            let (mean, r) = moments(x, self.eps);
            let mut sum_gw = 0f32;
            let mut sum_gwx = 0f32;
            for ((x, g), w) in x.iter().zip(g).zip(w) {
                let gw = g * w;
                sum_gw += gw;
                sum_gwx += gw * (x - mean) * r;
            }
            let (mean_gw, mean_gwx) = (sum_gw / d as f32, sum_gwx / d as f32);
            for (((o, x), g), w) in o.iter_mut().zip(x).zip(g).zip(w) {
                *o = r * (g * w - mean_gw - (x - mean) * r * mean_gwx);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `dw = Σ_rows g · x̂` and `db = Σ_rows g`, concatenated: `(2·d)`.
struct LayerNormGradWB {
    eps: f32,
}

impl CustomOp2 for LayerNormGradWB {
    fn name(&self) -> &'static str {
        "sluice-layer-norm-grad-wb"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = data(s1, l1, self.name())?;
        let g = data(s2, l2, self.name())?;
        let d = last_dim(l1);
        let partials: Vec<Vec<f32>> = x
            .par_chunks(d * ROWS_PER_TASK)
            .zip(g.par_chunks(d * ROWS_PER_TASK))
            .map(|(x, g)| {
                let mut acc = vec![0f32; 2 * d];
                for (x, g) in x.chunks(d).zip(g.chunks(d)) {
                    let (mean, r) = moments(x, self.eps);
                    let (dw, db) = acc.split_at_mut(d);
                    for (((dw, db), x), g) in dw.iter_mut().zip(db).zip(x).zip(g) {
                        *dw += g * (x - mean) * r;
                        *db += g;
                    }
                }
                acc
            })
            .collect();
        // Chunks combine in order, so the sums do not depend on the thread count.
        let mut out = vec![0f32; 2 * d];
        for p in partials {
            for (o, p) in out.iter_mut().zip(p) {
                *o += p;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(2 * d)))
    }
}

// ---- Scaled causal softmax ----------------------------------------------------------------

/// `softmax(scale · x + causal mask)` over the last dimension of `(…, len, start + len)`
/// attention scores: query `i` sees keys `0..=start + i`.
pub struct CausalSoftmax {
    pub scale: f32,
    pub start: usize,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "sluice-causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(s, l, self.name())?;
        let dims = l.dims();
        let cols = dims[dims.len() - 1];
        let len = dims[dims.len() - 2];
        let out = map_rows(x.len(), cols, |i, o| {
            let x = row(x, i, cols);
            let visible = (self.start + i % len + 1).min(cols);
            let max = x[..visible]
                .iter()
                .fold(f32::NEG_INFINITY, |m, v| m.max(*v))
                * self.scale;
            let mut sum = 0f32;
            for (o, x) in o[..visible].iter_mut().zip(&x[..visible]) {
                let e = (x * self.scale - max).exp();
                *o = e;
                sum += e;
            }
            let inv = 1.0 / sum;
            for o in &mut o[..visible] {
                *o *= inv;
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(res.apply_op2_no_bwd(
            &grad,
            &SoftmaxGrad { scale: self.scale },
        )?))
    }
}

/// `dx = scale · p · (g − Σ g·p)` per row.
struct SoftmaxGrad {
    scale: f32,
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "sluice-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let p = data(s1, l1, self.name())?;
        let g = data(s2, l2, self.name())?;
        let cols = last_dim(l1);
        let out = map_rows(p.len(), cols, |i, o| {
            let (p, g) = (row(p, i, cols), row(g, i, cols));
            let dot: f32 = p.iter().zip(g).map(|(p, g)| p * g).sum();
            for ((o, p), g) in o.iter_mut().zip(p).zip(g) {
                *o = self.scale * p * (g - dot);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

// ---- Rotary embeddings --------------------------------------------------------------------

/// `x · cos + rotate_half(x) · sin` for `x` of shape `(…, len, head_dim)` and tables
/// `(len, head_dim)`; with `transpose`, the adjoint (the backward pass).
pub struct Rope {
    pub transpose: bool,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "sluice-rope"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = data(s1, l1, self.name())?;
        let cos = data(s2, l2, self.name())?;
        let sin = data(s3, l3, self.name())?;
        let dims = l1.dims();
        let d = dims[dims.len() - 1];
        let len = dims[dims.len() - 2];
        let half = d / 2;
        let table = len * d;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(table)
            .zip(x.par_chunks(table))
            .for_each(|(o, x)| {
                for t in 0..len {
                    let (o, x) = (&mut o[t * d..(t + 1) * d], &x[t * d..(t + 1) * d]);
                    let (c, s) = (&cos[t * d..(t + 1) * d], &sin[t * d..(t + 1) * d]);
                    for k in 0..half {
                        let (x1, x2) = (x[k], x[k + half]);
                        if self.transpose {
                            // The adjoint of rotate-half: [u2, −u1] for u = x·sin.
                            o[k] = x1 * c[k] + x2 * s[k + half];
                            o[k + half] = x2 * c[k + half] - x1 * s[k];
                        } else {
                            o[k] = x1 * c[k] - x2 * s[k];
                            o[k + half] = x2 * c[k + half] + x1 * s[k + half];
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.apply_op3_no_bwd(
            cos,
            sin,
            &Rope {
                transpose: !self.transpose,
            },
        )?;
        Ok((Some(dx), None, None))
    }
}

// ---- Masked cross-entropy -----------------------------------------------------------------

/// `Σ_i w_i · −log softmax(logits_i)[t_i] / denominator` over rows of `(n, vocab)` logits: a
/// scalar. The softmax is recomputed in the backward pass instead of being stored.
pub struct CrossEntropy {
    pub targets: Arc<Vec<u32>>,
    pub weights: Arc<Vec<f32>>,
    pub denominator: f64,
}

fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
    max + sum.ln()
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "sluice-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(s, l, self.name())?;
        let v = last_dim(l);
        let rows = x.len() / v;
        if self.targets.len() != rows || self.weights.len() != rows {
            bail!(
                "{}: {} rows but {} targets",
                self.name(),
                rows,
                self.targets.len()
            );
        }
        let partials: Vec<f64> = x
            .par_chunks(v * ROWS_PER_TASK)
            .enumerate()
            .map(|(task, x)| {
                let mut acc = 0f64;
                for (k, row) in x.chunks(v).enumerate() {
                    let i = task * ROWS_PER_TASK + k;
                    let w = self.weights[i];
                    if w != 0.0 {
                        let t = self.targets[i] as usize;
                        acc += (w * (log_sum_exp(row) - row[t])) as f64;
                    }
                }
                acc
            })
            .collect();
        let total: f64 = partials.iter().sum::<f64>() / self.denominator;
        Ok((CpuStorage::F32(vec![total as f32]), Shape::from(())))
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = CrossEntropyGrad {
            targets: self.targets.clone(),
            weights: self.weights.clone(),
            denominator: self.denominator,
        };
        Ok(Some(logits.apply_op2_no_bwd(&grad.reshape(1)?, &op)?))
    }
}

/// `g · w_i / denominator · (softmax(logits_i) − onehot(t_i))`.
struct CrossEntropyGrad {
    targets: Arc<Vec<u32>>,
    weights: Arc<Vec<f32>>,
    denominator: f64,
}

impl CustomOp2 for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "sluice-cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = data(s1, l1, self.name())?;
        let g = data(s2, l2, self.name())?[0];
        let v = last_dim(l1);
        let out = map_rows(x.len(), v, |i, o| {
            let w = self.weights[i];
            if w == 0.0 {
                return;
            }
            let logits = row(x, i, v);
            let scale = g * w / self.denominator as f32;
            let lse = log_sum_exp(logits);
            for (o, x) in o.iter_mut().zip(logits) {
                *o = scale * (x - lse).exp();
            }
            o[self.targets[i] as usize] -= scale;
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}
