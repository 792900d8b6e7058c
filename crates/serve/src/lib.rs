//! An OpenAI-compatible HTTP server (axum on tokio) over a model-agnostic [`Backend`]: the part
//! of `sluice serve` that knows HTTP but no models.
//!
//! It answers `POST /v1/completions` and `POST /v1/chat/completions` (whole, or streamed as
//! server-sent events in OpenAI's chunk shapes), `GET /v1/models`, `GET /healthz` and
//! `GET /metrics` (Prometheus text); a classifier backend answers `POST /v1/classify` instead of
//! the generation endpoints. Requests are routed among A/B [`Variants`] by weight,
//! deterministically for a given seed, or forced with the `x-sluice-variant` header; every
//! generation response names its variant in that header. At most `max_concurrent` generations
//! run at once, on blocking threads; `max_queue` more wait, and the rest are answered 503.
//! Errors are OpenAI-style JSON; a failing or panicking backend is a 500, never a crash.
//!
//! **Must not:** know about tokenizers, weights or devices (that is the backend's business), or
//! touch the terminal (the CLI does).

mod api;
mod backend;
mod config;
mod error;
mod generation;
mod handler;
mod metrics;
mod queue;
mod variant;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use crate::backend::{
    Backend, ChatMessage, FinishReason, GenerateRequest, Generation, TokenLogprob, TopLogprob,
};
pub use crate::config::ServeConfig;
pub use crate::error::ServeError;
pub use crate::variant::{Variant, Variants, parse_variant};

use crate::metrics::Metrics;
use crate::queue::Queue;

/// The request header that forces a variant, and the response header that names it.
pub const VARIANT_HEADER: &str = "x-sluice-variant";

/// Everything the handlers share: cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.0.config)
            .field("variants", &self.0.variants)
            .finish_non_exhaustive()
    }
}

struct Shared {
    config: ServeConfig,
    variants: Variants,
    routing: variant::Router,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    /// Unix time the server started, shown as the models' `created`.
    started: u64,
    /// Response ids: a counter hashed with a per-start salt.
    ids: AtomicU64,
    id_salt: u64,
}

impl AppState {
    /// Checks the configuration and sets up the queue, routing and metrics for `variants`.
    pub fn new(config: ServeConfig, variants: Variants) -> Result<Self, ServeError> {
        config.validate()?;
        let names = variants.as_slice().iter().map(|v| v.name.clone()).collect();
        let started = api::unix_now();
        let id_salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(Self(Arc::new(Shared {
            routing: variant::Router::new(config.seed),
            queue: Arc::new(Queue::new(config.max_concurrent, config.max_queue)),
            metrics: Arc::new(Metrics::new(names)),
            started,
            ids: AtomicU64::new(0),
            id_salt,
            variants,
            config,
        })))
    }
}

/// The application: every route, the body limit, JSON 404/405 answers and panic catching.
pub fn router(state: AppState) -> axum::Router {
    let body_limit = state.0.config.body_limit;
    axum::Router::new()
        .route("/v1/completions", post(handler::completions))
        .route("/v1/chat/completions", post(handler::chat_completions))
        .route("/v1/classify", post(handler::classify))
        .route("/v1/models", get(handler::models))
        .route("/v1/models/{model}", get(handler::model))
        .route("/healthz", get(handler::healthz))
        .route("/metrics", get(handler::metrics))
        .fallback(handler::not_found)
        .method_not_allowed_fallback(handler::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(handler::catch_panic))
        .with_state(state)
}

/// Serves `variants` on `listener` until `shutdown` completes, then stops accepting
/// connections and returns once every request in flight has been answered.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ServeConfig,
    variants: Variants,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let app = router(AppState::new(config, variants)?);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving the openai api");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
