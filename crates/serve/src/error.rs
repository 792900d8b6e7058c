//! Errors of setting the server up. Errors answered to clients are `api::ApiError`.

/// What went wrong starting or running the server, in the user's terms.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid variant `{spec}`: {reason}")]
    InvalidVariant { spec: String, reason: String },
    #[error("variant name `{0}` is used twice")]
    DuplicateVariant(String),
    #[error(
        "variant weights add up to {0}, which leaves no share for the main model (they must add up to less than 1)"
    )]
    WeightsTooLarge(f64),
    #[error("invalid server configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the server stopped with an error")]
    Io(#[from] std::io::Error),
}
