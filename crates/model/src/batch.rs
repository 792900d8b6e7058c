//! Examples → token sequences with a loss weight per token → padded batches.
//!
//! A sequence is `[bos] prompt output [eos]`; the loss counts the output tokens and the end
//! token only (`loss: output`, the default), or every token (`loss: all`, and always for plain
//! text rows, whose `output` is empty). Conversations are rendered as ChatML and the loss counts
//! the assistant turns.

use candle_core::{Device, Tensor};
use sluice_data::schema::Example;

use crate::error::Result;
use crate::template::{self, Template};
use crate::tokenizer::{self, Tokenizer};

/// Token ids and, for each, whether predicting it counts towards the loss.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence {
    pub ids: Vec<u32>,
    pub weights: Vec<f32>,
}

impl Sequence {
    fn push(&mut self, ids: &[u32], weight: f32) {
        self.ids.extend_from_slice(ids);
        self.weights.extend(std::iter::repeat_n(weight, ids.len()));
    }

    /// Tokens whose prediction counts (the first token is never predicted).
    pub fn loss_tokens(&self) -> f64 {
        self.weights.iter().skip(1).map(|w| *w as f64).sum()
    }
}

/// How sequences are encoded.
pub struct Encoder<'a> {
    pub tokenizer: &'a Tokenizer,
    pub template: &'a Template,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Count every token in the loss, not only the outputs.
    pub loss_on_all: bool,
}

impl Encoder<'_> {
    pub fn encode(&self, ex: &Example) -> Result<Sequence> {
        let mut seq = Sequence {
            ids: Vec::new(),
            weights: Vec::new(),
        };
        if let Some(bos) = self.bos {
            seq.push(&[bos], 0.0);
        }
        let prompt_weight = if self.loss_on_all { 1.0 } else { 0.0 };
        match &ex.messages {
            Some(messages) if !messages.is_empty() => {
                for m in messages {
                    let w = if m.role == "assistant" {
                        1.0
                    } else {
                        prompt_weight
                    };
                    seq.push(
                        &tokenizer::encode(self.tokenizer, &template::chat_open(&m.role))?,
                        prompt_weight,
                    );
                    seq.push(&tokenizer::encode(self.tokenizer, &m.content)?, w);
                    seq.push(
                        &tokenizer::encode(self.tokenizer, &template::chat_close())?,
                        w,
                    );
                }
            }
            _ if ex.output.is_empty() => {
                seq.push(&tokenizer::encode(self.tokenizer, &ex.input)?, 1.0);
                if let Some(eos) = self.eos {
                    seq.push(&[eos], 1.0);
                }
            }
            _ => {
                let prompt = self.template.render(&ex.input);
                seq.push(&tokenizer::encode(self.tokenizer, &prompt)?, prompt_weight);
                seq.push(&tokenizer::encode(self.tokenizer, &ex.output)?, 1.0);
                if let Some(eos) = self.eos {
                    seq.push(&[eos], 1.0);
                }
            }
        }
        Ok(seq)
    }
}

/// What to do with a sequence longer than the limit.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Keep its first `seq_len` tokens.
    Truncate,
    /// Leave the example out.
    Drop,
}

/// Counts of what [`fit`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FitStats {
    pub truncated: usize,
    pub dropped: usize,
    /// Sequences left with no token that counts towards the loss (dropped).
    pub empty: usize,
}

/// Applies the length limit: a sequence of `seq_len + 1` tokens gives `seq_len` predictions.
pub fn fit(seqs: Vec<Sequence>, seq_len: usize, overflow: Overflow) -> (Vec<Sequence>, FitStats) {
    let mut stats = FitStats::default();
    let mut out = Vec::with_capacity(seqs.len());
    for mut s in seqs {
        if s.ids.len() > seq_len + 1 {
            match overflow {
                Overflow::Drop => {
                    stats.dropped += 1;
                    continue;
                }
                Overflow::Truncate => {
                    s.ids.truncate(seq_len + 1);
                    s.weights.truncate(seq_len + 1);
                    stats.truncated += 1;
                }
            }
        }
        if s.ids.len() < 2 || s.loss_tokens() == 0.0 {
            stats.empty += 1;
            continue;
        }
        out.push(s);
    }
    (out, stats)
}

/// A padded batch: inputs, next-token targets and loss weights, each `(batch, len)`.
pub struct Batch {
    pub inputs: Tensor,
    pub targets: Tensor,
    pub weights: Tensor,
    /// Real (unpadded) input tokens.
    pub tokens: usize,
    /// Tokens that count towards the loss.
    pub loss_tokens: f64,
}

/// Right-pads `seqs` to the longest; padding has weight 0, so it never counts (with right
/// padding a causal model never attends to it from a real position).
pub fn batch(seqs: &[&Sequence], pad: u32, device: &Device) -> Result<Batch> {
    let len = seqs.iter().map(|s| s.ids.len() - 1).max().unwrap_or(0);
    let mut inputs = Vec::with_capacity(seqs.len() * len);
    let mut targets = Vec::with_capacity(seqs.len() * len);
    let mut weights = Vec::with_capacity(seqs.len() * len);
    let mut tokens = 0;
    let mut loss_tokens = 0.0;
    for s in seqs {
        let n = s.ids.len() - 1;
        tokens += n;
        loss_tokens += s.loss_tokens();
        inputs.extend_from_slice(&s.ids[..n]);
        targets.extend_from_slice(&s.ids[1..]);
        weights.extend_from_slice(&s.weights[1..]);
        for _ in n..len {
            inputs.push(pad);
            targets.push(pad);
            weights.push(0.0);
        }
    }
    let shape = (seqs.len(), len);
    Ok(Batch {
        inputs: Tensor::from_vec(inputs, shape, device)?,
        targets: Tensor::from_vec(targets, shape, device)?,
        weights: Tensor::from_vec(weights, shape, device)?,
        tokens,
        loss_tokens,
    })
}
