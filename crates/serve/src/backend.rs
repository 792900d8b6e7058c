//! The model-agnostic interface the server generates text through. A backend turns a prompt into
//! text — or, if it is a classifier, texts into label probabilities; it knows nothing of HTTP,
//! JSON, routing or queuing, and the server knows nothing of tokenizers, weights or devices.

use serde::{Deserialize, Serialize};

/// One message of a chat conversation, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, … passed through as given.
    pub role: String,
    /// The message's text (multi-part contents are joined into one string).
    pub content: String,
}

/// What to generate: a prompt (already templated for chat) and the sampling settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub prompt: String,
    /// The prompt as token ids, when the client sent ids: used as they are, instead of
    /// `prompt` (no begin token is added). The server checks them against
    /// [`Backend::vocab_size`].
    pub prompt_ids: Option<Vec<u32>>,
    /// At most this many completion tokens. The server checks that it is at least 1 and at most
    /// [`Backend::context_length`]; a backend whose prompt leaves less room stops at the context
    /// length with [`FinishReason::Length`].
    pub max_tokens: usize,
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    /// Sampling seed; `None` lets the backend choose one.
    pub seed: Option<u64>,
    /// Stop sequences: generation ends before the first of them, which is not part of the text.
    pub stop: Vec<String>,
    /// Log-probabilities to report: `None` for none; `Some(k)` for each token's, with its `k`
    /// most likely alternatives.
    pub logprobs: Option<usize>,
    /// Report the prompt too: its text in [`Generation::echo`] and, with `logprobs`, its
    /// tokens first in [`Generation::logprobs`]. `max_tokens` may then be 0.
    pub echo: bool,
}

/// Why generation ended, serialised as OpenAI spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The model emitted its end of sequence, a stop sequence matched, or the caller stopped.
    #[default]
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
}

/// The result of one generation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The whole completion: the concatenation of every piece passed to `on_text`.
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish_reason: FinishReason,
    /// With [`GenerateRequest::echo`], the prompt as text (decoded, for a prompt of ids).
    pub echo: Option<String>,
    /// With [`GenerateRequest::logprobs`], one entry per token: the prompt's first (with
    /// `echo`), then the completion's.
    pub logprobs: Vec<TokenLogprob>,
}

/// A token and how likely the model found it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's text (bytes that are not whole characters show as U+FFFD).
    pub token: String,
    /// The token's bytes.
    pub bytes: Vec<u8>,
    /// Its natural-log probability given the tokens before it; `None` for a prompt's first
    /// token, which has nothing before it.
    pub logprob: Option<f32>,
    /// The most likely tokens at its position, most likely first (as many as asked for).
    pub top: Vec<TopLogprob>,
    /// Whether it is a prompt token (with `echo`).
    pub prompt: bool,
}

/// One of the most likely tokens at a position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// A text generator the server can answer requests with.
///
/// Implementations must be cheap to share (`Arc<dyn Backend>`); the server calls `generate` from
/// blocking threads, possibly several at once when `max_concurrent` is above one.
pub trait Backend: Send + Sync + 'static {
    /// The model id shown by `/v1/models` and in every response's `model` field.
    fn id(&self) -> &str;

    /// The most tokens a prompt and its completion may hold together.
    fn context_length(&self) -> usize;

    /// Renders a conversation into a prompt with the model's chat template, ending where the
    /// assistant's reply begins.
    fn chat_prompt(&self, messages: &[ChatMessage]) -> String;

    /// Generates a completion of `req.prompt`. Blocking and CPU-bound.
    ///
    /// Calls `on_text` with each new piece of text as it is produced; when it returns `false`
    /// (the client went away) the backend should stop early and return what it has. An `Err` is
    /// reported to the client as a server error with this message.
    fn generate(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, String>;

    /// The number of token ids the model knows, against which a prompt of ids is checked;
    /// `None` (the default) when the backend takes no token ids.
    fn vocab_size(&self) -> Option<usize> {
        None
    }

    /// The labels of a classifier, in the order of [`Backend::classify`]'s probabilities;
    /// `None` (the default) for a model that generates text. A classifier answers
    /// `POST /v1/classify` and no generation endpoint.
    fn labels(&self) -> Option<&[String]> {
        None
    }

    /// The probability of each label for each of `texts`. Blocking and CPU-bound; called only
    /// when [`Backend::labels`] is `Some`.
    fn classify(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        let _ = texts;
        Err("this model does not classify".to_owned())
    }
}
