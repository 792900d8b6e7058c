//! The deploy gate: a small boolean language over metric values that decides whether a model may
//! ship, such as `exact_match >= 0.6 && perplexity < 20`.
//!
//! ```text
//! gate       := or
//! or         := and (("||" | "or") and)*
//! and        := unary (("&&" | "and") unary)*
//! unary      := ("!" | "not") unary | primary
//! primary    := "(" or ")" | comparison
//! comparison := metric op number | number op metric
//! op         := "<" | "<=" | ">" | ">=" | "==" | "!="
//! metric     := [A-Za-z_][A-Za-z0-9_./-]*      (except the keywords and, or, not)
//! number     := -?([0-9]+(\.[0-9]+)? | \.[0-9]+)([eE][+-]?[0-9]+)?
//! ```
//!
//! `!` binds tightest, then comparisons, then `&&`, then `||`. A comparison always has a metric on
//! one side and a number on the other, so `!loss > 2` can only mean `!(loss > 2)`; `2 < loss` is
//! read as `loss > 2`. Any comparison with NaN is false, `!=` included, so a NaN metric never
//! satisfies a check.
//!
//! The parser is a hand-written tokenizer and recursive descent. It never panics: errors carry a
//! 1-based column (in characters) and say what was expected there. Nesting of `(` and `!` is
//! limited to [`MAX_NESTING`] levels so that no input can exhaust the stack.

mod check;
mod error;
mod parser;
mod token;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use check::{Check, CompareOp, GateOutcome};
pub use error::GateError;

/// How deeply `(` and `!` may nest.
pub const MAX_NESTING: usize = 64;

/// A parsed gate expression. Its `Display` is the canonical form, which parses back to an equal
/// gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Compare {
        metric: String,
        op: CompareOp,
        threshold: f64,
    },
    Not(Box<Expr>),
    /// `&&` of two or more operands.
    All(Vec<Expr>),
    /// `||` of two or more operands.
    Any(Vec<Expr>),
}

impl Gate {
    /// Parses a gate expression.
    pub fn parse(text: &str) -> Result<Gate, GateError> {
        Ok(Gate {
            expr: parser::parse(text)?,
        })
    }

    /// The names of the metrics the gate compares.
    pub fn metrics(&self) -> BTreeSet<&str> {
        let mut names = BTreeSet::new();
        self.expr.visit_comparisons(&mut |metric, _, _| {
            names.insert(metric);
        });
        names
    }

    /// Evaluates the gate on `metrics`. Every comparison is evaluated, without short-circuit, so
    /// that the outcome reports each one and a misspelt metric is caught in any branch.
    pub fn evaluate(&self, metrics: &BTreeMap<String, f64>) -> Result<GateOutcome, GateError> {
        let mut missing = None;
        self.expr.visit_comparisons(&mut |metric, _, _| {
            if missing.is_none() && !metrics.contains_key(metric) {
                missing = Some(metric);
            }
        });
        if let Some(name) = missing {
            let available: Vec<String> = metrics.keys().cloned().collect();
            return Err(GateError::UnknownMetric {
                name: name.to_owned(),
                suggestion: closest(name, metrics.keys().map(String::as_str)).map(str::to_owned),
                available,
            });
        }
        let mut checks = Vec::new();
        let passed = self.expr.evaluate(metrics, false, &mut checks);
        Ok(GateOutcome { passed, checks })
    }
}

impl Expr {
    /// Calls `f` on each comparison, in source order.
    fn visit_comparisons<'a>(&'a self, f: &mut impl FnMut(&'a str, CompareOp, f64)) {
        match self {
            Expr::Compare {
                metric,
                op,
                threshold,
            } => f(metric, *op, *threshold),
            Expr::Not(inner) => inner.visit_comparisons(f),
            Expr::All(items) | Expr::Any(items) => {
                for item in items {
                    item.visit_comparisons(f);
                }
            }
        }
    }

    /// The truth of the expression; every metric it names must be in `metrics`.
    fn evaluate(
        &self,
        metrics: &BTreeMap<String, f64>,
        negated: bool,
        checks: &mut Vec<Check>,
    ) -> bool {
        match self {
            Expr::Compare {
                metric,
                op,
                threshold,
            } => {
                let value = metrics.get(metric).copied().unwrap_or(f64::NAN);
                let held = op.holds(value, *threshold);
                checks.push(Check {
                    metric: metric.clone(),
                    value,
                    op: *op,
                    threshold: *threshold,
                    held,
                    negated,
                });
                held
            }
            Expr::Not(inner) => !inner.evaluate(metrics, !negated, checks),
            // Evaluate every operand before combining, so each comparison lands in `checks`.
            Expr::All(items) => {
                let held: Vec<bool> = items
                    .iter()
                    .map(|e| e.evaluate(metrics, negated, checks))
                    .collect();
                held.into_iter().all(|h| h)
            }
            Expr::Any(items) => {
                let held: Vec<bool> = items
                    .iter()
                    .map(|e| e.evaluate(metrics, negated, checks))
                    .collect();
                held.into_iter().any(|h| h)
            }
        }
    }
}

/// The candidate closest to `word`, when it is close enough to be a plausible typo.
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| {
            *d <= 2.max(c.chars().count() / 3) && *d < c.chars().count().max(word.chars().count())
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

impl FromStr for Gate {
    type Err = GateError;

    fn from_str(text: &str) -> Result<Gate, GateError> {
        Gate::parse(text)
    }
}

impl Serialize for Gate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Gate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Gate, D::Error> {
        let text = String::deserialize(deserializer)?;
        Gate::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Gate {
    /// The canonical form: single spaces around binary operators, `!` written `!`, `&&` and `||`
    /// for the keywords, a metric on the left of each comparison, and only the parentheses the
    /// structure needs (plus those around the operand of `!` when it is not another `!`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join =
            |f: &mut fmt::Formatter<'_>, items: &[Expr], sep: &str, grouped: fn(&Expr) -> bool| {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    if grouped(item) {
                        write!(f, "({item})")?;
                    } else {
                        write!(f, "{item}")?;
                    }
                }
                Ok(())
            };
        match self {
            Expr::Compare {
                metric,
                op,
                threshold,
            } => write!(f, "{metric} {op} {}", Number(*threshold)),
            Expr::Not(inner) if matches!(**inner, Expr::Not(_)) => write!(f, "!{inner}"),
            Expr::Not(inner) => write!(f, "!({inner})"),
            Expr::All(items) => join(f, items, " && ", |e| {
                matches!(e, Expr::All(_) | Expr::Any(_))
            }),
            Expr::Any(items) => join(f, items, " || ", |e| matches!(e, Expr::Any(_))),
        }
    }
}

/// A number as the gate language writes it: the shortest decimal that reads back to the same
/// float, with an exponent for very large or very small magnitudes.
struct Number(f64);

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let x = self.0;
        let magnitude = x.abs();
        if x == 0.0 || !x.is_finite() || (1e-5..1e16).contains(&magnitude) {
            write!(f, "{x}")
        } else {
            write!(f, "{x:e}")
        }
    }
}

#[cfg(test)]
mod tests;
