//! The HTTP handlers: route a request to a variant, parse it, wait for a slot, generate, and
//! answer as one JSON body or as server-sent events.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::api::{ApiError, ClassifyRequest, Endpoint, ParsedRequest, Reply, Route};
use crate::generation::{self, Piece};
use crate::metrics::{Gauge, Observation};
use crate::variant::splitmix64;
use crate::{AppState, Generation, VARIANT_HEADER};

pub(crate) async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    generate(state, Endpoint::Completions, headers, body).await
}

pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    generate(state, Endpoint::Chat, headers, body).await
}

/// A generation request from routing to the last byte. Every answer after routing, error or
/// not, names its variant in a header and is counted under it.
async fn generate(
    state: AppState,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let variant = match choose_variant(&state, &headers) {
        Ok(variant) => variant,
        Err(error) => return error.into_response(),
    };
    let mut observation = state.0.metrics.observe(variant, endpoint);
    let mut response = match start(&state, variant, endpoint, body).await {
        Ok(started) => started.respond(observation).await,
        Err(error) => {
            observation.fail(error.status.as_u16());
            error.into_response()
        }
    };
    let name = &state.0.variants.get(variant).name;
    if let Ok(value) = HeaderValue::from_str(name) {
        response.headers_mut().insert(VARIANT_HEADER, value);
    }
    response
}

/// `POST /v1/classify`: a classifier's label probabilities for one text or several, routed,
/// queued and counted as generations are.
pub(crate) async fn classify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let variant = match choose_variant(&state, &headers) {
        Ok(variant) => variant,
        Err(error) => return error.into_response(),
    };
    let mut observation = state.0.metrics.observe(variant, Route::Classify);
    let mut response = match classify_texts(&state, variant, body).await {
        Ok(value) => Json(value).into_response(),
        Err(error) => {
            observation.fail(error.status.as_u16());
            error.into_response()
        }
    };
    drop(observation);
    let name = &state.0.variants.get(variant).name;
    if let Ok(value) = HeaderValue::from_str(name) {
        response.headers_mut().insert(VARIANT_HEADER, value);
    }
    response
}

async fn classify_texts(
    state: &AppState,
    variant: usize,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    let body = read_body(state, body)?;
    let request = ClassifyRequest::parse(&body)?;
    if !state.0.variants.knows_model(&request.model) {
        return Err(ApiError::unknown_model(&request.model));
    }
    let backend = Arc::clone(&state.0.variants.get(variant).backend);
    let Some(labels) = backend.labels().map(<[String]>::to_vec) else {
        return Err(ApiError::invalid(
            format!(
                "the model `{}` generates text and does not classify: use /v1/completions or /v1/chat/completions",
                request.model
            ),
            Some("model"),
        ));
    };
    let ticket = state.0.queue.admit().ok_or_else(ApiError::overloaded)?;
    let queued = state.0.metrics.raise(Gauge::Queued, variant);
    let slot = ticket.slot().await;
    drop(queued);
    let in_flight = state.0.metrics.raise(Gauge::InFlight, variant);
    let probabilities = generation::classify(
        Arc::clone(&backend),
        request.texts,
        (ticket, slot, in_flight),
    )
    .await
    .map_err(ApiError::server)?;
    let unique = splitmix64(state.0.ids.fetch_add(1, Ordering::Relaxed) ^ state.0.id_salt);
    Ok(crate::api::classification(
        backend.id(),
        unique,
        &labels,
        &probabilities,
    ))
}

/// The request body, or the error that answers a body that could not be read.
fn read_body(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(state.0.config.body_limit)
        } else {
            ApiError::invalid(
                format!("could not read the request body: {}", rejection.body_text()),
                None,
            )
        }
    })
}

/// The forced variant of the `x-sluice-variant` header, or the router's choice.
fn choose_variant(state: &AppState, headers: &HeaderMap) -> Result<usize, ApiError> {
    match headers.get(VARIANT_HEADER) {
        Some(value) => {
            let name = value.to_str().unwrap_or_default();
            state
                .0
                .variants
                .position(name)
                .ok_or_else(|| ApiError::unknown_variant(name))
        }
        None => Ok(state.0.routing.route(&state.0.variants)),
    }
}

/// A generation under way, with what is needed to answer it.
struct Started {
    reply: Reply,
    stream: bool,
    include_usage: bool,
    /// Choices per prompt.
    n: usize,
    /// How many choices the pieces are of: `n` for each prompt.
    choices: usize,
    pieces: mpsc::Receiver<Piece>,
}

/// Parses and validates the request, takes a place in the queue, waits for a slot and starts
/// the backend.
async fn start(
    state: &AppState,
    variant: usize,
    endpoint: Endpoint,
    body: Result<Bytes, BytesRejection>,
) -> Result<Started, ApiError> {
    let body = read_body(state, body)?;
    let parsed = ParsedRequest::parse(endpoint, &body)?;
    if !state.0.variants.knows_model(&parsed.model) {
        return Err(ApiError::unknown_model(&parsed.model));
    }
    let backend = &state.0.variants.get(variant).backend;
    if backend.labels().is_some() {
        return Err(ApiError::invalid(
            format!(
                "the model `{}` is a classifier and does not generate text: send its texts to /v1/classify",
                parsed.model
            ),
            Some("model"),
        ));
    }
    let requests = parsed.generate_requests(backend.as_ref())?;

    let ticket = state.0.queue.admit().ok_or_else(ApiError::overloaded)?;
    let queued = state.0.metrics.raise(Gauge::Queued, variant);
    let slot = ticket.slot().await;
    drop(queued);
    let in_flight = state.0.metrics.raise(Gauge::InFlight, variant);

    let unique = splitmix64(state.0.ids.fetch_add(1, Ordering::Relaxed) ^ state.0.id_salt);
    let mut reply = Reply::new(endpoint, backend.id(), unique);
    reply.logprobs = parsed.logprobs.is_some();
    reply.echo = parsed.echo;
    Ok(Started {
        reply,
        stream: parsed.stream,
        include_usage: parsed.include_usage,
        n: parsed.n,
        choices: requests.len(),
        pieces: generation::start(Arc::clone(backend), requests, (ticket, slot, in_flight)),
    })
}

impl Started {
    async fn respond(mut self, mut observation: Observation) -> Response {
        if !self.stream {
            return match generation::finish(&mut self.pieces, self.choices).await {
                Ok(generations) => {
                    observation.succeed(&generations, self.n);
                    Json(self.reply.completion(&generations, self.n)).into_response()
                }
                Err(message) => {
                    observation.fail(500);
                    ApiError::server(message).into_response()
                }
            };
        }
        // Wait for the first piece before committing to a 200, so that a backend that fails
        // at once is answered with a plain 500.
        let first = match self.pieces.recv().await {
            Some(Piece::Done(_, Err(message))) => {
                observation.fail(500);
                return ApiError::server(message).into_response();
            }
            None => {
                observation.fail(500);
                return ApiError::server("the backend stopped without a result").into_response();
            }
            Some(piece) => piece,
        };
        let (events, rx) = mpsc::channel::<Result<Event, Infallible>>(16);
        tokio::spawn(stream_events(self, first, events, observation));
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        });
        Sse::new(stream).into_response()
    }
}

/// Turns the backend's pieces into OpenAI stream chunks. Stops, and lets the backend stop,
/// as soon as the client goes away.
async fn stream_events(
    started: Started,
    first: Piece,
    events: mpsc::Sender<Result<Event, Infallible>>,
    mut observation: Observation,
) {
    let Started {
        reply,
        include_usage,
        n,
        choices,
        mut pieces,
        ..
    } = started;
    let send = |value: &Value| {
        let event = Event::default().data(value.to_string());
        let events = events.clone();
        async move { events.send(Ok(event)).await.is_ok() }
    };
    // Chat streams open each choice with the assistant's role and empty content, as OpenAI's
    // do. The choices follow one another: all of choice 0's chunks, then choice 1's, …
    let mut opened = 0;
    let mut done: Vec<Generation> = Vec::with_capacity(choices);
    let mut next = Some(first);
    loop {
        let piece = match next.take() {
            Some(piece) => Some(piece),
            None => pieces.recv().await,
        };
        let index = match &piece {
            Some(Piece::Text(index, _) | Piece::Done(index, Ok(_))) => Some(*index),
            _ => None,
        };
        if let Some(index) = index
            && reply.endpoint == Endpoint::Chat
        {
            while opened <= index {
                if !send(&reply.chunk(opened, "", true, None, include_usage)).await {
                    return;
                }
                opened += 1;
            }
        }
        match piece {
            Some(Piece::Text(index, text)) => {
                if !send(&reply.chunk(index, &text, false, None, include_usage)).await {
                    return;
                }
            }
            Some(Piece::Done(index, Ok(generation))) => {
                let finish = reply.chunk(index, "", false, Some(&generation), include_usage);
                done.push(generation);
                if done.len() == choices {
                    observation.succeed(&done, n);
                }
                if !send(&finish).await {
                    return;
                }
                if done.len() < choices {
                    continue;
                }
                if include_usage && !send(&reply.usage_chunk(&done, n)).await {
                    return;
                }
                // Counted before the client can see the end of the stream.
                drop(observation);
                let _ = events.send(Ok(Event::default().data("[DONE]"))).await;
                return;
            }
            Some(Piece::Done(_, Err(message))) => {
                observation.fail(500);
                send(&ApiError::server(message).body()).await;
                return;
            }
            None => {
                observation.fail(500);
                send(&ApiError::server("the backend stopped without a result").body()).await;
                return;
            }
        }
    }
}

pub(crate) async fn models(State(state): State<AppState>) -> Json<Value> {
    let mut data: Vec<Value> = Vec::new();
    for variant in state.0.variants.as_slice() {
        let id = variant.backend.id();
        if !data.iter().any(|m| m["id"] == id) {
            data.push(model_object(&state, id));
        }
    }
    Json(json!({"object": "list", "data": data}))
}

pub(crate) async fn model(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let known = state
        .0
        .variants
        .as_slice()
        .iter()
        .any(|v| v.backend.id() == id);
    if known {
        Json(model_object(&state, &id)).into_response()
    } else {
        ApiError::unknown_model(&id).into_response()
    }
}

fn model_object(state: &AppState, id: &str) -> Value {
    json!({"id": id, "object": "model", "created": state.0.started, "owned_by": "sluice"})
}

pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.0.metrics.render(),
    )
        .into_response()
}

pub(crate) async fn not_found(request: Request) -> Response {
    ApiError::not_found(request.method().as_str(), request.uri().path()).into_response()
}

pub(crate) async fn method_not_allowed(request: Request) -> Response {
    ApiError::method_not_allowed(request.method().as_str(), request.uri().path()).into_response()
}

/// Answers 500 instead of dropping the connection should a handler ever panic.
pub(crate) async fn catch_panic(request: Request, next: Next) -> Response {
    AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            ApiError::server("internal error while handling the request").into_response()
        })
}
