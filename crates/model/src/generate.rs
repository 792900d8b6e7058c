//! Text generation with a loaded model: the prompt encoded (left-truncated to fit the context),
//! then one token at a time through the KV cache, greedy or seeded sampling (temperature, top-p),
//! until an end token, a stop string or `max_new_tokens`. Text is handed out in pieces as it is
//! decoded, only ever whole UTF-8 characters, and never a piece that a stop string might still
//! take back.
//!
//! [`ModelBackend`] puts a model behind `sluice-serve`'s [`Backend`] trait.

use candle_core::{DType, IndexOp, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use sluice_serve::{
    Backend, ChatMessage, FinishReason, GenerateRequest, Generation, TokenLogprob, TopLogprob,
};

use crate::error::{ModelError, Result};
use crate::hf::Loaded;
use crate::llama::KvCache;
use crate::template::{self, Turn};
use crate::tokenizer::{self, IM_END};

/// How to pick each next token.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoding {
    /// 0 picks the most likely token (greedy); above 0 samples from the softened distribution.
    pub temperature: f64,
    /// Nucleus sampling: draw from the smallest set of tokens whose probabilities reach `top_p`
    /// (1 draws from all).
    pub top_p: f64,
    /// The sampling seed: the same seed, prompt and model give the same text.
    pub seed: u64,
}

impl Decoding {
    pub fn greedy() -> Decoding {
        Decoding {
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }

    fn processor(&self) -> LogitsProcessor {
        let sampling = if self.temperature <= 0.0 {
            Sampling::ArgMax
        } else if self.top_p < 1.0 {
            Sampling::TopP {
                p: self.top_p,
                temperature: self.temperature,
            }
        } else {
            Sampling::All {
                temperature: self.temperature,
            }
        };
        LogitsProcessor::from_sampling(self.seed, sampling)
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub max_new_tokens: usize,
    pub decoding: Decoding,
    /// Generation ends before the first of these; it is not part of the text.
    pub stop: Vec<String>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-sequence token (`eos_token_id`, or `<|im_end|>`).
    End,
    /// A stop string matched.
    Stop,
    /// `max_new_tokens`, or the context is full.
    Length,
    /// The caller's `on_text` asked to stop.
    Cancelled,
}

/// A finished generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub text: String,
    /// Prompt tokens the model saw (after truncation, the begin token included).
    pub prompt_tokens: usize,
    /// Prompt tokens cut from the left to fit the context.
    pub truncated: usize,
    /// Tokens generated, an end token included.
    pub completion_tokens: usize,
    pub finish: Finish,
    /// With [`Report::logprobs`], one entry per token: the prompt's first (with
    /// [`Report::echo`]), then each generated token but an end token.
    pub logprobs: Vec<TokenLogprob>,
}

/// What to report beside the text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `Some(k)`: each token's log-probability under the model (before temperature and
    /// top-p), with its `k` most likely alternatives.
    pub logprobs: Option<usize>,
    /// The prompt's tokens too, first (with `logprobs`).
    pub echo: bool,
}

/// The positions a sequence may fill: the context less the prompt-tuning virtual tokens.
pub fn context_length(loaded: &Loaded) -> usize {
    let virtual_tokens = loaded
        .model
        .prompt
        .as_ref()
        .and_then(|p| p.tensor().dim(0).ok())
        .unwrap_or(0);
    loaded
        .model
        .config
        .max_position_embeddings
        .saturating_sub(virtual_tokens)
        .max(2)
}

/// The token ids of `prompt` as the model was trained to see them: the begin token, then the
/// text.
pub fn prompt_ids(loaded: &Loaded, prompt: &str) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = loaded.model.config.bos_token_id.into_iter().collect();
    ids.extend(tokenizer::encode(&loaded.tokenizer, prompt)?);
    Ok(ids)
}

/// Keeps the last tokens of `ids` so that at least one new token fits in `context`; a begin
/// token stays in front. Returns how many were cut.
pub fn truncate_left(ids: &mut Vec<u32>, context: usize, bos: Option<u32>) -> usize {
    let room = context.saturating_sub(1).max(1);
    if ids.len() <= room {
        return 0;
    }
    let keep_bos = bos.is_some() && ids.first() == bos.as_ref() && room > 1;
    let cut = ids.len() - room;
    if keep_bos {
        ids.drain(1..=cut);
    } else {
        ids.drain(..cut);
    }
    cut
}

/// The tokens that end a generation: the configuration's end tokens and ChatML's `<|im_end|>`.
pub fn end_tokens(loaded: &Loaded) -> Vec<u32> {
    let mut ends = loaded.model.config.eos_all();
    ends.extend(loaded.tokenizer.token_to_id(IM_END));
    ends.sort_unstable();
    ends.dedup();
    ends
}

/// Generates a continuation of `prompt`, calling `on_text` with each new piece of text; when it
/// returns false, generation stops ([`Finish::Cancelled`]).
pub fn generate(
    loaded: &Loaded,
    prompt: &str,
    request: &Request,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Generated> {
    let ids = prompt_ids(loaded, prompt)?;
    generate_from(loaded, ids, request, Report::default(), on_text)
}

/// As [`generate`], from the prompt's token ids as they are (no begin token added), reporting
/// what `report` asks for.
pub fn generate_from(
    loaded: &Loaded,
    mut ids: Vec<u32>,
    request: &Request,
    report: Report,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Generated> {
    let context = context_length(loaded);
    let truncated = truncate_left(&mut ids, context, loaded.model.config.bos_token_id);
    if ids.is_empty() {
        // Nothing to condition on: start from the begin token, or the end token as a stand-in.
        let start = loaded
            .model
            .config
            .bos_token_id
            .or(loaded.model.config.eos())
            .unwrap_or(0);
        ids.push(start);
    }
    let prompt_tokens = ids.len();
    let budget = request
        .max_new_tokens
        .min(context.saturating_sub(prompt_tokens));
    // With `echo`, the pass over the prompt scores it: the first step's, or one of its own when
    // nothing is generated.
    let score_prompt = if report.echo { report.logprobs } else { None };
    let mut logprobs = Vec::new();
    if let (Some(k), 0) = (score_prompt, budget) {
        let logits = forward(loaded, &ids, &mut KvCache::default())?;
        logprobs = prompt_logprobs(loaded, &ids, &logits, k)?;
    }
    let ends = end_tokens(loaded);
    let mut processor = request.decoding.processor();
    let mut cache = KvCache::default();
    let mut text = TextStream::new(&request.stop);
    let mut generated: Vec<u32> = Vec::new();
    let mut input = ids;
    let mut finish = Finish::Length;
    while generated.len() < budget {
        let logits = forward(loaded, &input, &mut cache)?;
        if let (Some(k), true) = (score_prompt, generated.is_empty()) {
            logprobs = prompt_logprobs(loaded, &input, &logits, k)?;
        }
        let last = logits.i((0, input.len() - 1))?;
        let next = processor.sample(&last)?;
        generated.push(next);
        if ends.contains(&next) {
            finish = Finish::End;
            break;
        }
        if let Some(k) = report.logprobs {
            let row = last.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            logprobs.push(token_logprob(loaded, next, Some(&row), k, false));
        }
        let decoded = tokenizer::decode(&loaded.tokenizer, &generated)?;
        let (piece, stopped) = text.push(&decoded);
        if !piece.is_empty() && !on_text(&piece) {
            finish = Finish::Cancelled;
            break;
        }
        if stopped {
            finish = Finish::Stop;
            break;
        }
        input = vec![next];
    }
    if finish != Finish::Stop && finish != Finish::Cancelled {
        let rest = text.finish();
        if !rest.is_empty() && !on_text(&rest) {
            finish = Finish::Cancelled;
        }
    }
    Ok(Generated {
        text: text.text,
        prompt_tokens,
        truncated,
        completion_tokens: generated.len(),
        finish,
        logprobs,
    })
}

/// The logits of `ids` after what `cache` holds: one row per position.
fn forward(loaded: &Loaded, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
    let t = Tensor::new(ids, &loaded.model.device)?.unsqueeze(0)?;
    loaded.model.forward_cached(&t, cache)
}

/// The prompt's tokens with their log-probabilities under `logits`, the pass over the whole
/// prompt, each position predicting the next token; the first token has nothing before it.
fn prompt_logprobs(
    loaded: &Loaded,
    ids: &[u32],
    logits: &Tensor,
    k: usize,
) -> Result<Vec<TokenLogprob>> {
    let logits = logits.to_dtype(DType::F32)?;
    let mut out = vec![token_logprob(loaded, ids[0], None, k, true)];
    for (position, &id) in ids.iter().enumerate().skip(1) {
        let row = logits.i((0, position - 1))?.to_vec1::<f32>()?;
        out.push(token_logprob(loaded, id, Some(&row), k, true));
    }
    Ok(out)
}

/// `id` with its log-probability under `logits` (none without them) and the `k` most likely
/// tokens there, most likely first (the lower id first among equals).
fn token_logprob(
    loaded: &Loaded,
    id: u32,
    logits: Option<&[f32]>,
    k: usize,
    prompt: bool,
) -> TokenLogprob {
    let text = |id: u32| {
        let token = loaded.tokenizer.decode(&[id], false).unwrap_or_default();
        let bytes = token.as_bytes().to_vec();
        (token, bytes)
    };
    let (token, bytes) = text(id);
    let Some(logits) = logits else {
        return TokenLogprob {
            token,
            bytes,
            logprob: None,
            top: Vec::new(),
            prompt,
        };
    };
    let log_probs = log_softmax(logits);
    let mut order: Vec<u32> = (0..log_probs.len() as u32).collect();
    let k = k.min(order.len());
    let better = |a: &u32, b: &u32| {
        log_probs[*b as usize]
            .total_cmp(&log_probs[*a as usize])
            .then(a.cmp(b))
    };
    if k > 0 && k < order.len() {
        order.select_nth_unstable_by(k - 1, better);
    }
    order.truncate(k);
    order.sort_by(better);
    TokenLogprob {
        token,
        bytes,
        logprob: log_probs.get(id as usize).copied(),
        top: order
            .into_iter()
            .map(|alt| {
                let (token, bytes) = text(alt);
                TopLogprob {
                    token,
                    bytes,
                    logprob: log_probs[alt as usize],
                }
            })
            .collect(),
        prompt,
    }
}

/// Natural-log probabilities of `logits`.
fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&x| f64::from(x - max).exp()).sum();
    let log_sum = max + sum.ln() as f32;
    logits.iter().map(|&x| x - log_sum).collect()
}

/// The text generated so far, and how much of it has been handed out. Decoding the whole
/// completion each step keeps merges across token boundaries right; a trailing U+FFFD is an
/// incomplete UTF-8 sequence (byte-level BPE splits characters across tokens) and waits for
/// the next token.
struct TextStream<'a> {
    stop: &'a [String],
    /// Every whole character decoded, cut at a stop string once one matches.
    text: String,
    /// Bytes of `text` already handed out.
    emitted: usize,
}

impl<'a> TextStream<'a> {
    fn new(stop: &'a [String]) -> TextStream<'a> {
        TextStream {
            stop,
            text: String::new(),
            emitted: 0,
        }
    }

    /// Takes the completion decoded so far; returns the new piece that is safe to hand out, and
    /// whether a stop string matched.
    fn push(&mut self, decoded: &str) -> (String, bool) {
        let whole = decoded.trim_end_matches('\u{FFFD}');
        // Decoding more tokens never changes the text before an incomplete tail.
        if whole.len() > self.text.len() && whole.starts_with(self.text.as_str()) {
            self.text = whole.to_owned();
        } else if !whole.starts_with(self.text.as_str()) {
            // A tokenizer whose decoding is not prefix-stable: take the new text as it is, but
            // never take back what was handed out.
            self.text = whole.to_owned();
            self.emitted = self.emitted.min(common_prefix(&self.text, whole));
        }
        // A stop string may start in text handed out already (only a partial match was held
        // back), so search from the earliest place one could start.
        if let Some(at) = self.first_stop() {
            self.text.truncate(at);
            let piece = self.text.get(self.emitted..).unwrap_or("").to_owned();
            self.emitted = self.text.len();
            return (piece, true);
        }
        let safe = self.text.len() - self.held_back();
        let piece = self.text[self.emitted.min(safe)..safe].to_owned();
        self.emitted = self.emitted.max(safe);
        (piece, false)
    }

    /// The rest of the text, at the end of generation.
    fn finish(&mut self) -> String {
        let piece = self.text.get(self.emitted..).unwrap_or("").to_owned();
        self.emitted = self.text.len();
        piece
    }

    fn first_stop(&self) -> Option<usize> {
        self.stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.text.find(s.as_str()))
            .min()
    }

    /// The length of the longest tail of the text that a stop string starts with.
    fn held_back(&self) -> usize {
        let mut longest = 0;
        for s in self.stop.iter().filter(|s| !s.is_empty()) {
            for (i, _) in self.text.char_indices().rev().take(s.chars().count()) {
                let tail = &self.text[i..];
                if s.starts_with(tail) {
                    longest = longest.max(tail.len());
                }
            }
        }
        longest
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}

/// A model behind `sluice-serve`: completions take the prompt verbatim, chats are rendered as
/// ChatML. Generation only reads the weights, so one model answers concurrent requests.
pub struct ModelBackend {
    id: String,
    loaded: Loaded,
}

impl ModelBackend {
    pub fn new(id: impl Into<String>, loaded: Loaded) -> ModelBackend {
        ModelBackend {
            id: id.into(),
            loaded,
        }
    }

    /// Loads a model directory on the CPU, a LoRA adapter folded into the weights.
    pub fn open(id: impl Into<String>, dir: &std::path::Path) -> Result<ModelBackend> {
        let loaded = crate::evaluate::load_for_inference(dir, &candle_core::Device::Cpu)?;
        Ok(ModelBackend::new(id, loaded))
    }

    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }
}

impl Backend for ModelBackend {
    fn id(&self) -> &str {
        &self.id
    }

    fn context_length(&self) -> usize {
        context_length(&self.loaded)
    }

    fn chat_prompt(&self, messages: &[ChatMessage]) -> String {
        let turns: Vec<Turn<'_>> = messages
            .iter()
            .map(|m| Turn {
                role: &m.role,
                content: &m.content,
            })
            .collect();
        template::chat_prompt(&turns)
    }

    fn vocab_size(&self) -> Option<usize> {
        Some(self.loaded.model.config.vocab_size)
    }

    fn generate(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> std::result::Result<Generation, String> {
        let request = Request {
            max_new_tokens: req.max_tokens,
            decoding: Decoding {
                temperature: f64::from(req.temperature.max(0.0)),
                top_p: f64::from(req.top_p).clamp(f64::MIN_POSITIVE, 1.0),
                seed: req.seed.unwrap_or_else(fresh_seed),
            },
            stop: req.stop.clone(),
        };
        let ids = match &req.prompt_ids {
            Some(ids) => ids.clone(),
            None => prompt_ids(&self.loaded, &req.prompt).map_err(|e| e.to_string())?,
        };
        let echo = req.echo.then(|| match &req.prompt_ids {
            Some(ids) => tokenizer::decode(&self.loaded.tokenizer, ids).unwrap_or_default(),
            None => req.prompt.clone(),
        });
        let report = Report {
            logprobs: req.logprobs,
            echo: req.echo,
        };
        let out = generate_from(&self.loaded, ids, &request, report, on_text)
            .map_err(|e: ModelError| e.to_string())?;
        Ok(Generation {
            text: out.text,
            prompt_tokens: out.prompt_tokens,
            completion_tokens: out.completion_tokens,
            finish_reason: match out.finish {
                Finish::Length => FinishReason::Length,
                Finish::End | Finish::Stop | Finish::Cancelled => FinishReason::Stop,
            },
            echo,
            logprobs: out.logprobs,
        })
    }
}

/// A seed for a request that gave none: different per request, as OpenAI's API behaves.
fn fresh_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_stream(stop: &[&str], steps: &[&str], pieces: &[&str], stopped_at: Option<usize>) {
        let stop: Vec<String> = stop.iter().map(|s| (*s).to_owned()).collect();
        let mut stream = TextStream::new(&stop);
        let mut got = Vec::new();
        let mut stopped = None;
        for (i, s) in steps.iter().enumerate() {
            let (piece, done) = stream.push(s);
            got.push(piece);
            if done {
                stopped = Some(i);
                break;
            }
        }
        if stopped.is_none() {
            got.push(stream.finish());
        }
        assert_eq!(got, pieces, "{steps:?}");
        assert_eq!(stopped, stopped_at, "{steps:?}");
        assert_eq!(stream.text, got.concat());
    }

    #[test]
    fn text_is_handed_out_in_whole_characters_and_cut_at_stop_strings() {
        // Plain growth, then the rest at the end.
        check_stream(&[], &["a", "ab", "abc"], &["a", "b", "c", ""], None);
        // An incomplete character waits for its last byte.
        check_stream(&[], &["h", "h\u{FFFD}", "hé"], &["h", "", "é", ""], None);
        // A partial stop match is held back, then released when it does not complete.
        check_stream(
            &["###"],
            &["x", "x#", "x##", "x##y"],
            &["x", "", "", "##y", ""],
            None,
        );
        // A completed stop string ends the text before it.
        check_stream(
            &["###"],
            &["x", "x#", "x##", "x###", "x###z"],
            &["x", "", "", ""],
            Some(3),
        );
        // A stop string inside one step.
        check_stream(&["\n"], &["ok\nmore"], &["ok"], Some(0));
        // The earliest of several.
        check_stream(&["b", "cd"], &["acdb"], &["a"], Some(0));
    }

    #[test]
    fn prompts_are_cut_from_the_left_keeping_the_begin_token() {
        let check = |ids: &[u32], context, bos, expected: &[u32], cut| {
            let mut v = ids.to_vec();
            assert_eq!(truncate_left(&mut v, context, bos), cut, "{ids:?}");
            assert_eq!(v, expected, "{ids:?}");
        };
        check(&[1, 5, 6, 7], 8, Some(1), &[1, 5, 6, 7], 0);
        check(&[1, 5, 6, 7, 8], 4, Some(1), &[1, 7, 8], 2);
        check(&[5, 6, 7, 8], 4, None, &[6, 7, 8], 1);
        check(&[5, 6, 7, 8], 4, Some(1), &[6, 7, 8], 1);
    }

    /// A tiny random model with a tokenizer trained on a few words.
    fn tiny() -> Loaded {
        let texts = ["red green blue", "colour of the sky", "hello world é ü"];
        let tokenizer = crate::tokenizer::train(texts.iter().copied(), 300).unwrap();
        let config: crate::config::LlamaConfig = serde_json::from_value(serde_json::json!({
            "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": tokenizer.get_vocab_size(true),
            "max_position_embeddings": 24, "tie_word_embeddings": true,
            "bos_token_id": tokenizer.token_to_id(crate::tokenizer::BOS),
        }))
        .unwrap();
        let mut model = crate::llama::Llama::init(
            config,
            &mut crate::rng::Rng::new(3),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        // Sharper logits than the init's, so that sampling differs from greedy decoding.
        let embed = (model.weights.get("model.embed_tokens.weight").unwrap() * 40.0).unwrap();
        model.weights.insert(
            "model.embed_tokens.weight",
            crate::weights::Param::Frozen(embed),
        );
        Loaded {
            model,
            tokenizer,
            info: None,
        }
    }

    #[test]
    fn cached_greedy_decoding_matches_full_forward_passes() {
        let loaded = tiny();
        let request = Request {
            max_new_tokens: 8,
            decoding: Decoding::greedy(),
            stop: Vec::new(),
        };
        let mut pieces = Vec::new();
        let out = generate(&loaded, "red green", &request, &mut |p| {
            pieces.push(p.to_owned());
            true
        })
        .unwrap();
        assert_eq!(pieces.concat(), out.text);
        // The same tokens, one full forward pass per step.
        let mut ids = prompt_ids(&loaded, "red green").unwrap();
        assert_eq!(out.prompt_tokens, ids.len());
        let ends = end_tokens(&loaded);
        let mut generated = Vec::new();
        for _ in 0..out.completion_tokens {
            let next = crate::llama::argmax(&loaded.model.last_logits(&ids).unwrap()).unwrap();
            generated.push(next);
            ids.push(next);
            if ends.contains(&next) {
                break;
            }
        }
        let expected = generated
            .iter()
            .copied()
            .filter(|t| !ends.contains(t))
            .collect::<Vec<_>>();
        assert_eq!(
            out.text,
            crate::tokenizer::decode(&loaded.tokenizer, &expected).unwrap()
        );
    }

    #[test]
    fn sampling_is_seeded_and_the_context_bounds_the_length() {
        let loaded = tiny();
        let sample = |seed| {
            let request = Request {
                max_new_tokens: 100,
                decoding: Decoding {
                    temperature: 1.0,
                    top_p: 0.9,
                    seed,
                },
                stop: Vec::new(),
            };
            generate(&loaded, "hello", &request, &mut |_| true).unwrap()
        };
        let a = sample(1);
        assert_eq!(a, sample(1));
        // 24 positions in all: the prompt's and the generated tokens'.
        assert!(a.prompt_tokens + a.completion_tokens <= 24, "{a:?}");
        // A prompt longer than the context is cut from the left, and one token still fits.
        let long = "red green blue ".repeat(20);
        let request = Request {
            max_new_tokens: 4,
            decoding: Decoding::greedy(),
            stop: Vec::new(),
        };
        let out = generate(&loaded, &long, &request, &mut |_| true).unwrap();
        assert!(out.truncated > 0, "{out:?}");
        assert_eq!(out.prompt_tokens, 23);
        assert!(out.completion_tokens <= 1);
        // A caller that stops listening ends the generation.
        let out = generate(&loaded, "red", &request, &mut |_| false).unwrap();
        assert!(
            matches!(out.finish, Finish::Cancelled | Finish::End),
            "{out:?}"
        );
    }

    #[test]
    fn log_probabilities_of_greedy_tokens_and_of_the_echoed_prompt() {
        let loaded = tiny();
        let request = Request {
            max_new_tokens: 5,
            decoding: Decoding::greedy(),
            stop: Vec::new(),
        };
        let ids = prompt_ids(&loaded, "red green").unwrap();
        let report = Report {
            logprobs: Some(3),
            echo: true,
        };
        let out = generate_from(&loaded, ids.clone(), &request, report, &mut |_| true).unwrap();
        let (prompt, completion): (Vec<_>, Vec<_>) = out.logprobs.iter().partition(|t| t.prompt);
        assert_eq!(prompt.len(), ids.len());
        assert_eq!(
            prompt[0].logprob, None,
            "nothing comes before the first token"
        );
        assert_eq!(prompt[0].token, crate::tokenizer::BOS);
        let ended = out.finish == Finish::End;
        assert_eq!(completion.len(), out.completion_tokens - usize::from(ended));
        for t in out.logprobs.iter().skip(1) {
            let lp = t.logprob.unwrap();
            assert!(lp <= 0.0, "{t:?}");
            assert_eq!(t.top.len(), 3);
            assert!(
                t.top.windows(2).all(|w| w[0].logprob >= w[1].logprob),
                "{t:?}"
            );
            // Greedy decoding picks the most likely token.
            if !t.prompt {
                assert_eq!(t.top[0].token, t.token, "{t:?}");
                assert!((t.top[0].logprob - lp).abs() < 1e-6);
            }
        }
        // The same numbers as a full forward pass: the prompt's second token given the first.
        let logits = loaded.model.last_logits(&ids[..1]).unwrap();
        let row = logits.to_vec1::<f32>().unwrap();
        let expected = log_softmax(&row)[ids[1] as usize];
        assert!((prompt[1].logprob.unwrap() - expected).abs() < 1e-5);
        // Nothing to generate, the prompt only.
        let none = Request {
            max_new_tokens: 0,
            ..request.clone()
        };
        let out = generate_from(&loaded, ids.clone(), &none, report, &mut |_| true).unwrap();
        assert_eq!(out.completion_tokens, 0);
        assert_eq!(out.logprobs.len(), ids.len());
        assert!(out.logprobs.iter().all(|t| t.prompt));
        // Without a report, nothing is recorded.
        let out = generate(&loaded, "red", &request, &mut |_| true).unwrap();
        assert!(out.logprobs.is_empty());
    }
}
