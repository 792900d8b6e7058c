//! Evaluation metrics for fine-tuned language models, and the deploy gate that decides from those
//! metrics whether a model may ship.
//!
//! - [`text`]: SQuAD answer normalisation, exact match and token F1.
//! - [`rouge`]: ROUGE-L (longest common subsequence) precision, recall and F-measure.
//! - [`classify`]: accuracy, per-class and macro/weighted precision, recall and F1, and the
//!   confusion matrix, with scikit-learn's conventions.
//! - [`summary`]: means over examples and differences between two runs' metrics.
//! - [`gate`]: the gate expression language, `exact_match >= 0.6 && perplexity < 20`.
//!
//! Every function here is pure: strings and numbers in, numbers out. This crate does no IO, runs
//! no model and knows nothing of stages, stores or scheduling; callers read predictions and write
//! metrics files.

pub mod classify;
pub mod gate;
pub mod rouge;
pub mod summary;
pub mod text;

pub use classify::{Averages, ClassMetrics, ClassificationReport, ConfusionMatrix};
pub use gate::{Check, CompareOp, Gate, GateError, GateOutcome};
pub use rouge::{RougeScore, max_rouge_l, rouge_l};
pub use summary::{delta, mean, mean_metrics};
pub use text::{exact_match, max_exact_match, max_token_f1, normalize_answer, token_f1};
