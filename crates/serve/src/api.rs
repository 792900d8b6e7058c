//! The OpenAI wire format: parsing and validating request bodies, shaping response bodies and
//! stream chunks, and OpenAI-style JSON errors. No routing, queuing or generation here.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{Backend, ChatMessage, GenerateRequest, Generation};

/// OpenAI's limit on stop sequences.
const MAX_STOP: usize = 4;
/// OpenAI's default `max_tokens` for `/v1/completions`.
const COMPLETION_DEFAULT_MAX_TOKENS: usize = 16;
/// The most prompts one `/v1/completions` request may hold.
const MAX_PROMPTS: usize = 64;
/// The most alternatives per token that `logprobs` / `top_logprobs` may ask for (OpenAI's).
const MAX_LOGPROBS: u64 = 20;

/// An error answered to a client: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<String>,
    code: Option<&'static str>,
    retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// A 400 about the request, pointing at `param` where there is one.
    pub(crate) fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            param: param.map(str::to_owned),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    fn with_code(self, code: &'static str) -> Self {
        Self {
            code: Some(code),
            ..self
        }
    }

    pub(crate) fn unknown_model(model: &str) -> Self {
        Self {
            param: Some("model".to_owned()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("the model `{model}` does not exist"),
            )
        }
        .with_code("model_not_found")
    }

    pub(crate) fn unknown_variant(name: &str) -> Self {
        Self::invalid(
            format!("the x-sluice-variant header names no variant: `{name}`"),
            None,
        )
        .with_code("unknown_variant")
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
        .with_code("request_too_large")
    }

    pub(crate) fn not_found(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("unknown url: {method} {path}"),
        )
        .with_code("unknown_url")
    }

    pub(crate) fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            format!("method {method} is not allowed on {path}"),
        )
        .with_code("method_not_allowed")
    }

    pub(crate) fn overloaded() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "the server is busy: too many requests are waiting, retry later",
            )
        }
        .with_code("overloaded")
    }

    pub(crate) fn server(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON object, also sent as a stream event when generation fails mid-stream.
    pub(crate) fn body(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// What a request asked for, as the metrics count it: a generation endpoint, or
/// `/v1/classify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Route {
    Generation(Endpoint),
    Classify,
}

impl Route {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Route::Generation(endpoint) => endpoint.label(),
            Route::Classify => "classify",
        }
    }
}

impl From<Endpoint> for Route {
    fn from(endpoint: Endpoint) -> Route {
        Route::Generation(endpoint)
    }
}

/// Which OpenAI generation endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Endpoint {
    Completions,
    Chat,
}

impl Endpoint {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Endpoint::Completions => "completions",
            Endpoint::Chat => "chat_completions",
        }
    }

    fn id_prefix(self) -> &'static str {
        match self {
            Endpoint::Completions => "cmpl",
            Endpoint::Chat => "chatcmpl",
        }
    }
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// The fields both endpoints share; unknown fields (`user`, `logit_bias`, penalties, …) are
/// accepted and ignored.
#[derive(Debug, Deserialize)]
struct CompletionBody {
    model: String,
    prompt: Value,
    max_tokens: Option<u64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<serde_json::Number>,
    stop: Option<Value>,
    n: Option<u64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    /// How many alternatives to report for each token, with its own log-probability.
    logprobs: Option<u64>,
    echo: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    model: String,
    messages: Vec<MessageBody>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<serde_json::Number>,
    stop: Option<Value>,
    n: Option<u64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    logprobs: Option<bool>,
    top_logprobs: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct MessageBody {
    role: String,
    #[serde(default)]
    content: Option<Value>,
}

/// What the request asks for, before a backend is known.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Input {
    /// One or more prompts, each answered with `n` choices.
    Prompts(Vec<Prompt>),
    Chat(Vec<ChatMessage>),
}

/// A completion prompt: text, or token ids.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

/// A parsed, validated request body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedRequest {
    pub(crate) model: String,
    pub(crate) input: Input,
    /// With the name of the parameter it came from, for errors.
    max_tokens: Option<(u64, &'static str)>,
    temperature: f32,
    top_p: f32,
    seed: Option<u64>,
    stop: Vec<String>,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    /// How many choices to generate for the one prompt (`n`).
    pub(crate) n: usize,
    /// `Some(k)`: report each token's log-probability and its `k` most likely alternatives.
    pub(crate) logprobs: Option<usize>,
    /// Completions: the prompt comes back before the completion.
    pub(crate) echo: bool,
}

/// A request body that is a JSON object with a non-null value for every `required` parameter.
fn json_object(body: &[u8], required: &[&str]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            format!("could not parse the json body of the request: {e}"),
            None,
        )
    })?;
    let Value::Object(fields) = &value else {
        return Err(ApiError::invalid(
            "the request body must be a json object",
            None,
        ));
    };
    for name in required {
        if fields.get(*name).is_none_or(Value::is_null) {
            return Err(ApiError::invalid(
                format!("missing required parameter: `{name}`"),
                Some(name),
            ));
        }
    }
    Ok(value)
}

impl ParsedRequest {
    /// Parses a body for `endpoint`, checking everything that does not depend on the backend.
    pub(crate) fn parse(endpoint: Endpoint, body: &[u8]) -> Result<Self, ApiError> {
        let required: &[&str] = match endpoint {
            Endpoint::Completions => &["model", "prompt"],
            Endpoint::Chat => &["model", "messages"],
        };
        let value = json_object(body, required)?;
        let parsed = match endpoint {
            Endpoint::Completions => {
                let body: CompletionBody = typed(value)?;
                Self {
                    input: Input::Prompts(prompts(&body.prompt)?),
                    logprobs: body
                        .logprobs
                        .map(|k| alternatives(k, "logprobs"))
                        .transpose()?,
                    echo: body.echo.unwrap_or(false),
                    max_tokens: body.max_tokens.map(|n| (n, "max_tokens")),
                    temperature: body.temperature.unwrap_or(1.0),
                    top_p: body.top_p.unwrap_or(1.0),
                    seed: seed(body.seed)?,
                    stop: stop_sequences(body.stop)?,
                    stream: body.stream.unwrap_or(false),
                    include_usage: include_usage(body.stream_options),
                    n: choices(body.n)?,
                    model: body.model,
                }
                .checked()?
            }
            Endpoint::Chat => {
                let body: ChatBody = typed(value)?;
                let max_tokens = match (body.max_completion_tokens, body.max_tokens) {
                    (Some(n), _) => Some((n, "max_completion_tokens")),
                    (None, Some(n)) => Some((n, "max_tokens")),
                    (None, None) => None,
                };
                let logprobs = match (body.logprobs.unwrap_or(false), body.top_logprobs) {
                    (true, k) => Some(alternatives(k.unwrap_or(0), "top_logprobs")?),
                    (false, None | Some(0)) => None,
                    (false, Some(_)) => {
                        return Err(ApiError::invalid(
                            "top_logprobs needs logprobs: true",
                            Some("top_logprobs"),
                        ));
                    }
                };
                Self {
                    input: Input::Chat(chat_messages(body.messages)?),
                    logprobs,
                    echo: false,
                    max_tokens,
                    temperature: body.temperature.unwrap_or(1.0),
                    top_p: body.top_p.unwrap_or(1.0),
                    seed: seed(body.seed)?,
                    stop: stop_sequences(body.stop)?,
                    stream: body.stream.unwrap_or(false),
                    include_usage: include_usage(body.stream_options),
                    n: choices(body.n)?,
                    model: body.model,
                }
                .checked()?
            }
        };
        Ok(parsed)
    }

    fn checked(self) -> Result<Self, ApiError> {
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(ApiError::invalid(
                format!(
                    "temperature must be between 0 and 2, got {}",
                    self.temperature
                ),
                Some("temperature"),
            ));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return Err(ApiError::invalid(
                format!("top_p must be between 0 and 1, got {}", self.top_p),
                Some("top_p"),
            ));
        }
        if let Some((0, param)) = self.max_tokens
            && !self.echo
        {
            return Err(ApiError::invalid(
                format!("{param} must be at least 1 (0 only with echo)"),
                Some(param),
            ));
        }
        if self.echo && self.stream {
            return Err(ApiError::invalid(
                "echo cannot be streamed: send it with stream: false",
                Some("echo"),
            ));
        }
        Ok(self)
    }

    /// The generation requests for `backend`, one per choice: `n` for each prompt, in order
    /// (prompt 0's choices, then prompt 1's, …), choice `i` of a prompt seeded `seed + i`; the
    /// chat template applied and `max_tokens` defaulted and checked against the context length.
    pub(crate) fn generate_requests(
        &self,
        backend: &dyn Backend,
    ) -> Result<Vec<GenerateRequest>, ApiError> {
        let context = backend.context_length();
        let (prompts, default_max) = match &self.input {
            Input::Prompts(prompts) => {
                (prompts.clone(), COMPLETION_DEFAULT_MAX_TOKENS.min(context))
            }
            Input::Chat(messages) => (vec![Prompt::Text(backend.chat_prompt(messages))], context),
        };
        for prompt in &prompts {
            if let Prompt::Ids(ids) = prompt {
                let Some(vocab) = backend.vocab_size() else {
                    return Err(ApiError::invalid(
                        format!(
                            "the model `{}` takes text prompts, not token ids",
                            backend.id()
                        ),
                        Some("prompt"),
                    ));
                };
                if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
                    return Err(ApiError::invalid(
                        format!(
                            "token id {bad} is outside the vocabulary of the model `{}` ({vocab} tokens)",
                            backend.id()
                        ),
                        Some("prompt"),
                    ));
                }
            }
        }
        let max_tokens = match self.max_tokens {
            None => default_max,
            Some((n, param)) => match usize::try_from(n) {
                Ok(n) if n <= context => n,
                _ => {
                    return Err(ApiError::invalid(
                        format!(
                            "{param} is {n}, but the model `{}` has a context length of {context} tokens",
                            backend.id()
                        ),
                        Some(param),
                    ));
                }
            },
        };
        let mut requests = Vec::with_capacity(prompts.len() * self.n);
        for prompt in prompts {
            for choice in 0..self.n {
                let (text, ids) = match &prompt {
                    Prompt::Text(text) => (text.clone(), None),
                    Prompt::Ids(ids) => (String::new(), Some(ids.clone())),
                };
                requests.push(GenerateRequest {
                    prompt: text,
                    prompt_ids: ids,
                    logprobs: self.logprobs,
                    echo: self.echo,
                    max_tokens,
                    temperature: self.temperature,
                    top_p: self.top_p,
                    seed: self.seed.map(|seed| seed.wrapping_add(choice as u64)),
                    stop: self.stop.clone(),
                });
            }
        }
        Ok(requests)
    }
}

/// The most choices (`n`) one generation request may ask for.
pub(crate) const MAX_CHOICES: usize = 16;

/// How many alternatives per token `param` asks for: 0 to [`MAX_LOGPROBS`].
fn alternatives(k: u64, param: &str) -> Result<usize, ApiError> {
    if k <= MAX_LOGPROBS {
        Ok(k as usize)
    } else {
        Err(ApiError::invalid(
            format!("{param} must be between 0 and {MAX_LOGPROBS}, got {k}"),
            Some(param),
        ))
    }
}

/// `n`: 1 when absent, else 1 to [`MAX_CHOICES`].
fn choices(n: Option<u64>) -> Result<usize, ApiError> {
    match n {
        None => Ok(1),
        Some(n) if (1..=MAX_CHOICES as u64).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid(
            format!("n must be between 1 and {MAX_CHOICES}, got {n}"),
            Some("n"),
        )),
    }
}

/// Deserialises into `T`, naming the offending parameter on error.
/// The most texts one `/v1/classify` request may hold.
const MAX_CLASSIFY_INPUTS: usize = 256;

#[derive(Debug, Deserialize)]
struct ClassifyBody {
    model: String,
    input: Value,
}

/// A parsed `/v1/classify` body: `{"model": …, "input": "text" | ["text", …]}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClassifyRequest {
    pub(crate) model: String,
    pub(crate) texts: Vec<String>,
}

impl ClassifyRequest {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let body: ClassifyBody = typed(json_object(body, &["model", "input"])?)?;
        let invalid = || {
            ApiError::invalid(
                "input must be a string or an array of strings",
                Some("input"),
            )
        };
        let texts = match body.input {
            Value::String(text) => vec![text],
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(text) => Ok(text),
                    _ => Err(invalid()),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(invalid()),
        };
        if texts.is_empty() || texts.len() > MAX_CLASSIFY_INPUTS {
            return Err(ApiError::invalid(
                format!(
                    "input must hold 1 to {MAX_CLASSIFY_INPUTS} texts, got {}",
                    texts.len()
                ),
                Some("input"),
            ));
        }
        Ok(Self {
            model: body.model,
            texts,
        })
    }
}

/// The answer to `/v1/classify`: for each text its most likely label, that label's probability
/// and every label's.
pub(crate) fn classification(
    model: &str,
    unique: u64,
    labels: &[String],
    probabilities: &[Vec<f32>],
) -> Value {
    let data: Vec<Value> = probabilities
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let best = p
                .iter()
                .enumerate()
                .fold(0, |best, (i, v)| if *v > p[best] { i } else { best });
            let scores: serde_json::Map<String, Value> = labels
                .iter()
                .zip(p)
                .map(|(l, v)| (l.clone(), json!(v)))
                .collect();
            json!({
                "index": index,
                "label": labels.get(best),
                "score": p.get(best),
                "scores": scores,
            })
        })
        .collect();
    json!({
        "id": format!("clf-{unique:016x}"),
        "object": "classification",
        "created": unix_now(),
        "model": model,
        "data": data,
    })
}

fn typed<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let message = match message.split_once(" at line ") {
            Some((head, _)) => head.to_owned(),
            None => message,
        };
        ApiError::invalid(
            format!("invalid value for `{path}`: {message}"),
            Some(&path),
        )
    })
}

/// The prompts of a completion request: a string, an array of 1 to [`MAX_PROMPTS`] strings, an
/// array of token ids (one prompt), or an array of arrays of token ids.
fn prompts(prompt: &Value) -> Result<Vec<Prompt>, ApiError> {
    let invalid = |message: &str| ApiError::invalid(message, Some("prompt"));
    let ids = |items: &[Value]| -> Result<Vec<u32>, ApiError> {
        items
            .iter()
            .map(|v| v.as_u64().and_then(|id| u32::try_from(id).ok()))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| invalid("prompt token ids must be integers from 0 to 4294967295"))
    };
    let shapes = "prompt must be a string, an array of strings or an array of token ids";
    let items = match prompt {
        Value::String(text) => return Ok(vec![Prompt::Text(text.clone())]),
        Value::Array(items) => items,
        _ => return Err(invalid(shapes)),
    };
    if items.is_empty() {
        return Err(invalid("prompt must not be empty"));
    }
    if items.iter().all(Value::is_number) {
        return Ok(vec![Prompt::Ids(ids(items)?)]);
    }
    if items.len() > MAX_PROMPTS {
        return Err(invalid(&format!(
            "prompt is an array of {} prompts; the most one request may hold is {MAX_PROMPTS}",
            items.len()
        )));
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(text) => Ok(Prompt::Text(text.clone())),
            Value::Array(inner) if !inner.is_empty() => Ok(Prompt::Ids(ids(inner)?)),
            _ => Err(invalid(shapes)),
        })
        .collect()
}

fn stop_sequences(stop: Option<Value>) -> Result<Vec<String>, ApiError> {
    let invalid = || {
        ApiError::invalid(
            format!("stop must be a string or an array of at most {MAX_STOP} strings"),
            Some("stop"),
        )
    };
    let stop = match stop {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) if items.len() <= MAX_STOP => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                _ => Err(invalid()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid()),
    };
    // An empty stop sequence would match before anything was generated.
    Ok(stop.into_iter().filter(|s| !s.is_empty()).collect())
}

fn seed(seed: Option<serde_json::Number>) -> Result<Option<u64>, ApiError> {
    match seed {
        None => Ok(None),
        Some(n) => n
            .as_u64()
            // A negative seed is as good a seed as any: keep its bits.
            .or_else(|| n.as_i64().map(|i| i as u64))
            .map(Some)
            .ok_or_else(|| ApiError::invalid("seed must be an integer", Some("seed"))),
    }
}

fn include_usage(options: Option<StreamOptions>) -> bool {
    options.and_then(|o| o.include_usage).unwrap_or(false)
}

fn chat_messages(messages: Vec<MessageBody>) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages must not be empty",
            Some("messages"),
        ));
    }
    messages
        .into_iter()
        .enumerate()
        .map(|(i, message)| {
            let param = format!("messages.[{i}].content");
            let content = match message.content {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text,
                // The multi-part form: [{"type": "text", "text": "…"}, …]; only text parts.
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|part| match (part.get("type"), part.get("text")) {
                        (Some(Value::String(kind)), Some(Value::String(text)))
                            if kind == "text" =>
                        {
                            Ok(text.as_str())
                        }
                        _ => Err(ApiError::invalid(
                            "only text content parts are supported",
                            Some(&param),
                        )),
                    })
                    .collect::<Result<String, _>>()?,
                Some(_) => {
                    return Err(ApiError::invalid(
                        "message content must be a string or an array of text parts",
                        Some(&param),
                    ));
                }
            };
            if message.role.is_empty() {
                return Err(ApiError::invalid(
                    "message role must not be empty",
                    Some(&format!("messages.[{i}].role")),
                ));
            }
            Ok(ChatMessage {
                role: message.role,
                content,
            })
        })
        .collect()
}

/// Response identity shared by a whole completion or every chunk of its stream.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) endpoint: Endpoint,
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: String,
    /// Whether each choice carries its tokens' log-probabilities.
    pub(crate) logprobs: bool,
    /// Whether a completion's text starts with its prompt.
    pub(crate) echo: bool,
}

impl Reply {
    pub(crate) fn new(endpoint: Endpoint, model: &str, unique: u64) -> Self {
        Self {
            endpoint,
            id: format!(
                "{}-{unique:016x}{:08x}",
                endpoint.id_prefix(),
                crate::variant::splitmix64(unique) as u32
            ),
            created: unix_now(),
            model: model.to_owned(),
            logprobs: false,
            echo: false,
        }
    }

    /// A choice's `logprobs` field: `null` unless they were asked for.
    fn choice_logprobs(&self, generation: &Generation) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        match self.endpoint {
            Endpoint::Completions => completion_logprobs(generation),
            Endpoint::Chat => json!({"content": chat_logprobs(generation), "refusal": null}),
        }
    }

    /// The whole, non-streamed response: one choice per generation, in order.
    pub(crate) fn completion(&self, generations: &[Generation], n: usize) -> Value {
        let choices: Vec<Value> = generations
            .iter()
            .enumerate()
            .map(|(index, generation)| match self.endpoint {
                Endpoint::Completions => {
                    let text = match (&generation.echo, self.echo) {
                        (Some(prompt), true) => format!("{prompt}{}", generation.text),
                        _ => generation.text.clone(),
                    };
                    json!({
                        "index": index,
                        "text": text,
                        "logprobs": self.choice_logprobs(generation),
                        "finish_reason": generation.finish_reason,
                    })
                }
                Endpoint::Chat => json!({
                    "index": index,
                    "message": {"role": "assistant", "content": generation.text},
                    "logprobs": self.choice_logprobs(generation),
                    "finish_reason": generation.finish_reason,
                }),
            })
            .collect();
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage(generations, n),
        })
    }

    /// A stream chunk of choice `index` carrying `text` (for chat, the first chunk of a choice
    /// names the role), or the last one of that choice, carrying its finish reason.
    pub(crate) fn chunk(
        &self,
        index: usize,
        text: &str,
        first: bool,
        finish: Option<&Generation>,
        include_usage: bool,
    ) -> Value {
        let finish_reason = finish.map(|g| g.finish_reason);
        // A choice's log-probabilities come whole, in its last chunk.
        let logprobs = finish.map_or(Value::Null, |g| self.choice_logprobs(g));
        let choice = match self.endpoint {
            Endpoint::Completions => json!({
                "index": index,
                "text": text,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }),
            Endpoint::Chat => {
                let delta = match (first, finish) {
                    (_, Some(_)) => json!({}),
                    (true, None) => json!({"role": "assistant", "content": text}),
                    (false, None) => json!({"content": text}),
                };
                json!({
                    "index": index,
                    "delta": delta,
                    "logprobs": logprobs,
                    "finish_reason": finish_reason,
                })
            }
        };
        let mut chunk = self.chunk_head(vec![choice]);
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    /// The extra last chunk of `stream_options.include_usage`: no choices, the usage of them
    /// all.
    pub(crate) fn usage_chunk(&self, generations: &[Generation], n: usize) -> Value {
        let mut chunk = self.chunk_head(Vec::new());
        chunk["usage"] = usage(generations, n);
        chunk
    }

    fn chunk_head(&self, choices: Vec<Value>) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Completions, _) => "text_completion",
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
        }
    }
}

/// The legacy completions shape: parallel lists of tokens, their log-probabilities (`null` for
/// a prompt's first token), their most likely alternatives as `{token: logprob}` and each
/// token's character offset in the choice's text.
fn completion_logprobs(generation: &Generation) -> Value {
    let mut offset = 0;
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top_logprobs = Vec::new();
    let mut text_offset = Vec::new();
    for t in &generation.logprobs {
        tokens.push(json!(t.token));
        token_logprobs.push(json!(t.logprob));
        top_logprobs.push(match t.logprob {
            None => Value::Null,
            Some(_) => Value::Object(
                t.top
                    .iter()
                    .map(|alt| (alt.token.clone(), json!(alt.logprob)))
                    .collect(),
            ),
        });
        text_offset.push(json!(offset));
        offset += t.token.chars().count();
    }
    json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    })
}

/// The chat shape: one object per completion token, with its bytes and alternatives.
fn chat_logprobs(generation: &Generation) -> Value {
    generation
        .logprobs
        .iter()
        .filter(|t| !t.prompt)
        .map(|t| {
            let top: Vec<Value> = t
                .top
                .iter()
                .map(|alt| json!({"token": alt.token, "logprob": alt.logprob, "bytes": alt.bytes}))
                .collect();
            json!({
                "token": t.token,
                "logprob": t.logprob.unwrap_or(0.0),
                "bytes": t.bytes,
                "top_logprobs": top,
            })
        })
        .collect()
}

/// The usage of a request's choices, `n` to a prompt: each prompt counted once (as OpenAI
/// does), the completions added up.
fn usage(generations: &[Generation], n: usize) -> Value {
    let (prompt_tokens, completion_tokens) = tokens(generations, n);
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// Prompt tokens (each prompt once) and completion tokens (all choices) of a request's
/// generations, `n` to a prompt.
pub(crate) fn tokens(generations: &[Generation], n: usize) -> (usize, usize) {
    let prompt = generations
        .iter()
        .step_by(n.max(1))
        .map(|g| g.prompt_tokens)
        .sum();
    let completion = generations.iter().map(|g| g.completion_tokens).sum();
    (prompt, completion)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `body` for `endpoint` and compares the error's param and message (or `Ok`).
    fn check(endpoint: Endpoint, body: &str, expected: Result<(), (Option<&str>, &str)>) {
        let got = ParsedRequest::parse(endpoint, body.as_bytes()).map(|_| ());
        match (got, expected) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err((param, message))) => {
                assert_eq!(e.param.as_deref(), param, "{body}");
                assert!(
                    e.message.contains(message),
                    "{body}: `{}` lacks `{message}`",
                    e.message
                );
                assert_eq!(e.status, StatusCode::BAD_REQUEST);
            }
            (got, expected) => panic!("{body}: got {got:?}, expected {expected:?}"),
        }
    }

    use Endpoint::{Chat, Completions};

    #[test]
    fn parses_and_rejects_bodies() {
        check(Completions, r#"{"model":"m","prompt":"hi"}"#, Ok(()));
        check(
            Completions,
            r#"{"model":"m","prompt":["hi"],"stop":"x","user":"u","n":1,"logit_bias":{},"stream_options":{"include_usage":true},"seed":-3}"#,
            Ok(()),
        );
        check(
            Completions,
            r#"{"model":"m","prompt":"hi""#,
            Err((None, "could not parse the json")),
        );
        check(Completions, "[]", Err((None, "must be a json object")));
        check(
            Completions,
            r#"{"prompt":"hi"}"#,
            Err((Some("model"), "missing required parameter: `model`")),
        );
        check(
            Completions,
            r#"{"model":"m"}"#,
            Err((Some("prompt"), "missing")),
        );
        check(Completions, r#"{"model":"m","prompt":["a","b"]}"#, Ok(()));
        check(Completions, r#"{"model":"m","prompt":[1,2]}"#, Ok(()));
        check(Completions, r#"{"model":"m","prompt":[[1,2],[3]]}"#, Ok(()));
        for bad in ["[1,-2]", "[1.5]", "[[1],\"a\",[]]", "[[1],{}]", "{}"] {
            check(
                Completions,
                &format!(r#"{{"model":"m","prompt":{bad}}}"#),
                Err((Some("prompt"), "prompt")),
            );
        }
        check(
            Completions,
            r#"{"model":"m","prompt":[]}"#,
            Err((Some("prompt"), "must not be empty")),
        );
        check(
            Completions,
            &format!(r#"{{"model":"m","prompt":{:?}}}"#, vec!["a"; 65]),
            Err((Some("prompt"), "the most one request may hold is 64")),
        );
        check(Completions, r#"{"model":"m","prompt":"a","n":2}"#, Ok(()));
        check(
            Chat,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":16}"#,
            Ok(()),
        );
        for n in ["0", "17", "-1"] {
            check(
                Completions,
                &format!(r#"{{"model":"m","prompt":"a","n":{n}}}"#),
                Err((Some("n"), "n")),
            );
        }
        check(
            Completions,
            r#"{"model":"m","prompt":"a","max_tokens":0}"#,
            Err((Some("max_tokens"), "at least 1")),
        );
        // Log-probabilities and echo.
        check(
            Completions,
            r#"{"model":"m","prompt":"a","max_tokens":0,"echo":true,"logprobs":5}"#,
            Ok(()),
        );
        check(
            Completions,
            r#"{"model":"m","prompt":"a","logprobs":21}"#,
            Err((Some("logprobs"), "between 0 and 20")),
        );
        check(
            Completions,
            r#"{"model":"m","prompt":"a","echo":true,"stream":true}"#,
            Err((Some("echo"), "cannot be streamed")),
        );
        let hi = r#""messages":[{"role":"user","content":"hi"}]"#;
        check(
            Chat,
            &format!(r#"{{"model":"m",{hi},"logprobs":true,"top_logprobs":20}}"#),
            Ok(()),
        );
        check(
            Chat,
            &format!(r#"{{"model":"m",{hi},"logprobs":false,"top_logprobs":0}}"#),
            Ok(()),
        );
        check(
            Chat,
            &format!(r#"{{"model":"m",{hi},"top_logprobs":2}}"#),
            Err((Some("top_logprobs"), "needs logprobs: true")),
        );
        check(
            Chat,
            &format!(r#"{{"model":"m",{hi},"logprobs":true,"top_logprobs":21}}"#),
            Err((Some("top_logprobs"), "between 0 and 20")),
        );
        check(
            Completions,
            r#"{"model":"m","prompt":"a","max_tokens":"x"}"#,
            Err((Some("max_tokens"), "invalid value for `max_tokens`")),
        );
        check(
            Completions,
            r#"{"model":"m","prompt":"a","temperature":3}"#,
            Err((Some("temperature"), "between 0 and 2")),
        );
        check(
            Completions,
            r#"{"model":"m","prompt":"a","stop":["a","b","c","d","e"]}"#,
            Err((Some("stop"), "at most 4")),
        );
        check(
            Chat,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            Ok(()),
        );
        check(
            Chat,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"assistant","content":null}],"max_completion_tokens":3}"#,
            Ok(()),
        );
        check(
            Chat,
            r#"{"model":"m","messages":[]}"#,
            Err((Some("messages"), "must not be empty")),
        );
        check(
            Chat,
            r#"{"model":"m","messages":[{"content":"x"}]}"#,
            Err((Some("messages[0]"), "missing field `role`")),
        );
        check(
            Chat,
            r#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
            Err((Some("messages.[0].content"), "must be a string")),
        );
        check(
            Chat,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_completion_tokens":0}"#,
            Err((Some("max_completion_tokens"), "at least 1")),
        );
    }

    #[test]
    fn chat_max_completion_tokens_wins() {
        let parsed = ParsedRequest::parse(
            Chat,
            br#"{"model":"m","messages":[{"role":"u","content":"x"}],"max_tokens":9,"max_completion_tokens":3}"#,
        )
        .unwrap();
        assert_eq!(parsed.max_tokens, Some((3, "max_completion_tokens")));
    }
}
