//! Errors of parsing and evaluating a gate, worded for the person who wrote it.

use super::MAX_NESTING;

/// What went wrong parsing or evaluating a gate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GateError {
    #[error("expected {expected} at column {column}, found {found}")]
    Expected {
        expected: String,
        found: String,
        column: usize,
    },
    #[error(
        "unexpected character `{character}` at column {column}{}",
        hint_suffix(hint)
    )]
    UnexpectedCharacter {
        character: char,
        column: usize,
        hint: Option<String>,
    },
    #[error("number `{text}` at column {column} is out of range")]
    NumberOutOfRange { text: String, column: usize },
    #[error("the gate nests `(` and `!` more than {MAX_NESTING} levels deep at column {column}")]
    TooDeep { column: usize },
    #[error(
        "unknown metric `{name}` in the gate{}",
        unknown_metric_hint(suggestion, available)
    )]
    UnknownMetric {
        name: String,
        /// The available metric closest to `name`, when it looks like a typo of it.
        suggestion: Option<String>,
        available: Vec<String>,
    },
}

impl GateError {
    /// The 1-based column in the gate text, for errors found while parsing.
    pub fn column(&self) -> Option<usize> {
        match self {
            GateError::Expected { column, .. }
            | GateError::UnexpectedCharacter { column, .. }
            | GateError::NumberOutOfRange { column, .. }
            | GateError::TooDeep { column } => Some(*column),
            GateError::UnknownMetric { .. } => None,
        }
    }
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default()
}

fn unknown_metric_hint(suggestion: &Option<String>, available: &[String]) -> String {
    let mut hint = String::new();
    if let Some(s) = suggestion {
        hint.push_str(&format!("; did you mean `{s}`?"));
    }
    if available.is_empty() {
        hint.push_str(" (no metrics are available)");
    } else {
        let names: Vec<String> = available.iter().map(|n| format!("`{n}`")).collect();
        hint.push_str(&format!(" (available: {})", names.join(", ")));
    }
    hint
}
