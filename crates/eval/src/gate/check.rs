//! The evaluated side of a gate: comparison operators, one [`Check`] per comparison, and the
//! [`GateOutcome`] that says whether the gate passed and why.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Number;

/// A comparison operator of the gate language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CompareOp {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl CompareOp {
    /// The operator as written in a gate.
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
        }
    }

    /// Whether `value op threshold` holds; false whenever either side is NaN.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        if value.is_nan() || threshold.is_nan() {
            return false;
        }
        match self {
            CompareOp::Lt => value < threshold,
            CompareOp::Le => value <= threshold,
            CompareOp::Gt => value > threshold,
            CompareOp::Ge => value >= threshold,
            CompareOp::Eq => value == threshold,
            CompareOp::Ne => value != threshold,
        }
    }

    /// The operator with its sides swapped: `a < b` is `b > a`.
    pub(super) fn swapped(self) -> CompareOp {
        match self {
            CompareOp::Lt => CompareOp::Gt,
            CompareOp::Le => CompareOp::Ge,
            CompareOp::Gt => CompareOp::Lt,
            CompareOp::Ge => CompareOp::Le,
            CompareOp::Eq | CompareOp::Ne => self,
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// One comparison of a gate, evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Check {
    pub metric: String,
    /// The metric's actual value.
    pub value: f64,
    pub op: CompareOp,
    pub threshold: f64,
    /// Whether `value op threshold` held.
    pub held: bool,
    /// Whether the comparison sits under an odd number of `!`, so that the gate wants it to fail.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub negated: bool,
}

impl Check {
    /// Whether this check went the way the gate wants: it held, or it failed under a `!`.
    pub fn ok(&self) -> bool {
        self.held != self.negated
    }
}

impl fmt::Display for Check {
    /// `exact_match = 0.42, needs >= 0.6` (`needs not >= 0.6` under a `!`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let not = if self.negated { "not " } else { "" };
        write!(
            f,
            "{} = {}, needs {not}{} {}",
            self.metric,
            Number(self.value),
            self.op,
            Number(self.threshold)
        )
    }
}

/// The result of evaluating a gate: whether it passed, and every comparison in source order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateOutcome {
    pub passed: bool,
    pub checks: Vec<Check>,
}

impl GateOutcome {
    /// The checks that went against the gate. When the gate failed, these are why; a passing gate
    /// may still have some, in an `||` that another operand satisfied.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok())
    }
}

impl fmt::Display for GateOutcome {
    /// `passed`, or `failed: ` and the failing checks separated by `; `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed {
            return f.write_str("passed");
        }
        f.write_str("failed")?;
        for (i, check) in self.failures().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{check}")?;
        }
        Ok(())
    }
}
