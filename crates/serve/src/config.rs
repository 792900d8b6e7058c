//! How the server listens and how much work it accepts at once.

use crate::ServeError;

/// Server settings. `host` and `port` are used by [`ServeConfig::bind`]; [`crate::serve`] takes
/// an already bound listener so that tests can bind port 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    pub host: String,
    pub port: u16,
    /// Generations running at once (each on a blocking thread).
    pub max_concurrent: usize,
    /// Requests waiting for a generation slot; one more is answered 503 with `Retry-After`.
    pub max_queue: usize,
    /// Largest request body in bytes; a larger one is answered 413.
    pub body_limit: usize,
    /// Seed of the A/B routing sequence: the same seed routes the n-th request the same way.
    pub seed: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 8080,
            max_concurrent: 1,
            max_queue: 64,
            body_limit: 1 << 20,
            seed: 0,
        }
    }
}

impl ServeConfig {
    /// Binds a TCP listener on `host:port`.
    pub async fn bind(&self) -> Result<tokio::net::TcpListener, ServeError> {
        let addr = (self.host.as_str(), self.port);
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: format!("{}:{}", self.host, self.port),
                source,
            })
    }

    pub(crate) fn validate(&self) -> Result<(), ServeError> {
        if self.max_concurrent == 0 {
            return Err(ServeError::Config(
                "max_concurrent must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}
