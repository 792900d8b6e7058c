//! What goes wrong in model code, in the user's terms.

use std::path::PathBuf;

use sluice_stage::StageError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("bad model configuration: {0}")]
    Config(String),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("weight `{name}` is missing from {dir}")]
    MissingWeight { name: String, dir: PathBuf },
    #[error("weight `{name}` has shape {found:?}, the configuration needs {expected:?}")]
    WeightShape {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Other(String),
    #[error(transparent)]
    Stage(#[from] StageError),
}

impl ModelError {
    pub fn file(path: impl Into<PathBuf>, message: impl ToString) -> ModelError {
        ModelError::File {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

impl From<ModelError> for StageError {
    fn from(e: ModelError) -> StageError {
        match e {
            ModelError::Cancelled => StageError::Cancelled,
            ModelError::Stage(e) => e,
            e => StageError::Failed(e.to_string()),
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
