use proptest::prelude::*;

use super::*;

/// Parses `input` and compares the canonical form, or the error message, with `expected`.
fn check(input: &str, expected: &str) {
    let actual = match Gate::parse(input) {
        Ok(gate) => {
            let canonical = gate.to_string();
            assert_eq!(
                Gate::parse(&canonical).as_ref(),
                Ok(&gate),
                "canonical form {canonical:?} of {input:?} parses differently"
            );
            canonical
        }
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(actual, expected, "{input:?}");
}

fn metrics(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// Evaluates `gate` on `values` and compares the outcome, rendered as `passed`/`failed` and one
/// line per check marked `ok` or `FAIL`, or the error message, with `expected`.
fn check_eval(gate: &str, values: &[(&str, f64)], expected: &str) {
    let gate = Gate::parse(gate).unwrap();
    let actual = match gate.evaluate(&metrics(values)) {
        Ok(outcome) => {
            let mut lines = vec![if outcome.passed { "passed" } else { "failed" }.to_owned()];
            for check in &outcome.checks {
                let mark = if check.ok() { "ok" } else { "FAIL" };
                lines.push(format!("{mark}: {check}"));
            }
            lines.join("\n")
        }
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(actual, expected, "{gate}");
}

#[test]
fn parses_to_canonical_form() {
    check(
        "exact_match >= 0.6 && perplexity < 20",
        "exact_match >= 0.6 && perplexity < 20",
    );
    check(
        "exact_match>=0.6&&perplexity<20",
        "exact_match >= 0.6 && perplexity < 20",
    );
    check(
        "a > 1 and b < 2 or not c == 3",
        "a > 1 && b < 2 || !(c == 3)",
    );
    // `&&` binds tighter than `||`; parentheses are kept only where they matter.
    check("a > 1 || b > 2 && c > 3", "a > 1 || b > 2 && c > 3");
    check("(a > 1 || b > 2) && c > 3", "(a > 1 || b > 2) && c > 3");
    check("((a > 1))", "a > 1");
    check("(a > 1 && b > 2) && c > 3", "(a > 1 && b > 2) && c > 3");
    check("a > 1 || (b > 2 || c > 3)", "a > 1 || (b > 2 || c > 3)");
    check("a > 1 || (b > 2 && c > 3)", "a > 1 || b > 2 && c > 3");
    // `!` negates a whole comparison, or a parenthesised group.
    check("!loss > 2", "!(loss > 2)");
    check("!!loss > 2", "!!(loss > 2)");
    check("not (a < 1 || b < 1)", "!(a < 1 || b < 1)");
    check("! not a != 1", "!!(a != 1)");
    // All six operators; a number on the left is moved to the right.
    check(
        "a<1 && a<=1 && a>1 && a>=1 && a==1 && a!=1",
        "a < 1 && a <= 1 && a > 1 && a >= 1 && a == 1 && a != 1",
    );
    check("0.6 <= exact_match", "exact_match >= 0.6");
    check(
        "20 > perplexity && 1 == x && 2 != y",
        "perplexity < 20 && x == 1 && y != 2",
    );
    // Metric names with dots, slashes, dashes and digits.
    check("eval/rouge-l.f1 >= .25", "eval/rouge-l.f1 >= 0.25");
    check(
        "_x2 > 1 && android > 1 && order > 1 && nothing > 1",
        "_x2 > 1 && android > 1 && order > 1 && nothing > 1",
    );
    check("loss<-1", "loss < -1");
    // Numbers: integers, decimals, exponents, negatives; printed in their shortest form.
    check(
        "a > 1e3 && b < -2.50 && c > 1E-3 && d > -.5 && e > 3e+0",
        "a > 1000 && b < -2.5 && c > 0.001 && d > -0.5 && e > 3",
    );
    check(
        "a > 1e20 && b > 1.5e-7 && c > -0",
        "a > 1e20 && b > 1.5e-7 && c > -0",
    );
    check("  \t a\n>\r\n1  ", "a > 1");
}

#[test]
fn syntax_errors_say_what_was_expected_and_where() {
    check(
        "exact_match >= ",
        "error: expected a number after `>=` at column 16, found the end of the gate",
    );
    check(
        "exact_match >= x",
        "error: expected a number after `>=` at column 16, found metric name `x`",
    );
    check(
        "",
        "error: expected a comparison such as `exact_match >= 0.6`, `!` or `(` at column 1, found the end of the gate",
    );
    check(
        "a > 1 &&",
        "error: expected a comparison such as `exact_match >= 0.6`, `!` or `(` at column 9, found the end of the gate",
    );
    check(
        "a > 1 && || b > 2",
        "error: expected a comparison such as `exact_match >= 0.6`, `!` or `(` at column 10, found `||`",
    );
    check(
        "a 1",
        "error: expected a comparison operator (`<`, `<=`, `>`, `>=`, `==` or `!=`) after `a` at column 3, found number `1`",
    );
    check(
        "a",
        "error: expected a comparison operator (`<`, `<=`, `>`, `>=`, `==` or `!=`) after `a` at column 2, found the end of the gate",
    );
    check(
        "1 < 2",
        "error: expected a metric name after `<` at column 5, found number `2`",
    );
    check(
        "a < b",
        "error: expected a number after `<` at column 5, found metric name `b`",
    );
    check(
        "a > 1 b > 2",
        "error: expected `&&`, `||` or the end of the gate at column 7, found metric name `b`",
    );
    check(
        "a > 1 > 2",
        "error: expected `&&`, `||` or the end of the gate at column 7, found `>`",
    );
    check(
        "(a > 1",
        "error: expected `&&`, `||` or `)` to close the `(` at column 1 at column 7, found the end of the gate",
    );
    check(
        "a > 1)",
        "error: expected `&&`, `||` or the end of the gate at column 6, found `)`",
    );
    check(
        "()",
        "error: expected a comparison such as `exact_match >= 0.6`, `!` or `(` at column 2, found `)`",
    );
    check(
        "and > 1",
        "error: expected a comparison such as `exact_match >= 0.6`, `!` or `(` at column 1, found `and`",
    );
    check(
        "a = 1",
        "error: unexpected character `=` at column 3; did you mean `==`?",
    );
    check(
        "a => 1",
        "error: unexpected character `=` at column 3; did you mean `>=`?",
    );
    check(
        "a > 1 & b > 1",
        "error: unexpected character `&` at column 7; did you mean `&&`?",
    );
    check(
        "a > 1 | b > 1",
        "error: unexpected character `|` at column 7; did you mean `||`?",
    );
    check(
        "a > - 1",
        "error: unexpected character `-` at column 5; `-` starts a number only right before a digit",
    );
    check(
        "précision > 1",
        "error: unexpected character `é` at column 3; metric names are ASCII letters, digits, `_`, `.`, `/` and `-`",
    );
    check(
        "a > 1 # note",
        "error: unexpected character `#` at column 7",
    );
    check(
        "a > 1.",
        "error: expected a digit after `1.` at column 7, found the end of the gate",
    );
    check(
        "a > 1.x",
        "error: expected a digit after `1.` at column 7, found `x`",
    );
    check(
        "a > 2e",
        "error: expected a digit of the exponent after `2e` at column 7, found the end of the gate",
    );
    check(
        "a > 2e+",
        "error: expected a digit of the exponent after `2e+` at column 8, found the end of the gate",
    );
    check(
        "a > 1e999",
        "error: number `1e999` at column 5 is out of range",
    );
    // Columns count characters, not bytes.
    check(
        "(ü",
        "error: unexpected character `ü` at column 2; metric names are ASCII letters, digits, `_`, `.`, `/` and `-`",
    );
    check("«» a >", "error: unexpected character `«` at column 1");
}

#[test]
fn nesting_is_limited() {
    let deep = |open: &str, n: usize| {
        format!(
            "{}a > 1{}",
            open.repeat(n),
            if open == "(" {
                ")".repeat(n)
            } else {
                String::new()
            }
        )
    };
    assert!(Gate::parse(&deep("(", MAX_NESTING)).is_ok());
    assert!(Gate::parse(&deep("!", MAX_NESTING)).is_ok());
    check(
        &deep("(", MAX_NESTING + 1),
        "error: the gate nests `(` and `!` more than 64 levels deep at column 65",
    );
    check(
        &deep("!", 100_000),
        "error: the gate nests `(` and `!` more than 64 levels deep at column 65",
    );
    // Long flat chains are fine.
    let long = vec!["a > 1"; 10_000].join(" && ");
    assert_eq!(Gate::parse(&long).unwrap().metrics().len(), 1);
}

#[test]
fn evaluates_every_check() {
    check_eval(
        "exact_match >= 0.6 && perplexity < 20",
        &[("exact_match", 0.42), ("perplexity", 12.5)],
        "failed\nFAIL: exact_match = 0.42, needs >= 0.6\nok: perplexity = 12.5, needs < 20",
    );
    check_eval(
        "exact_match >= 0.6 && perplexity < 20",
        &[("exact_match", 0.6), ("perplexity", 12.5), ("unused", 1.0)],
        "passed\nok: exact_match = 0.6, needs >= 0.6\nok: perplexity = 12.5, needs < 20",
    );
    // No short-circuit: the second operand of a true `||` is still reported.
    check_eval(
        "a > 1 || b > 1",
        &[("a", 2.0), ("b", 0.0)],
        "passed\nok: a = 2, needs > 1\nFAIL: b = 0, needs > 1",
    );
    check_eval(
        "a > 1 || b > 1",
        &[("a", 0.0), ("b", 0.0)],
        "failed\nFAIL: a = 0, needs > 1\nFAIL: b = 0, needs > 1",
    );
    // `&&` before `||`: true || (false && false).
    check_eval(
        "a == 1 || b == 1 && c == 1",
        &[("a", 1.0), ("b", 0.0), ("c", 0.0)],
        "passed\nok: a = 1, needs == 1\nFAIL: b = 0, needs == 1\nFAIL: c = 0, needs == 1",
    );
    check_eval(
        "(a == 1 || b == 1) && c == 1",
        &[("a", 1.0), ("b", 0.0), ("c", 0.0)],
        "failed\nok: a = 1, needs == 1\nFAIL: b = 0, needs == 1\nFAIL: c = 0, needs == 1",
    );
    // Under `!` a check is ok when it does not hold.
    check_eval(
        "!(loss > 2)",
        &[("loss", 3.0)],
        "failed\nFAIL: loss = 3, needs not > 2",
    );
    check_eval(
        "not loss > 2",
        &[("loss", 1.0)],
        "passed\nok: loss = 1, needs not > 2",
    );
    check_eval(
        "!!(loss > 2)",
        &[("loss", 3.0)],
        "passed\nok: loss = 3, needs > 2",
    );
    check_eval(
        "a <= 1 && a < 2 && a >= 1 && a > 0 && a == 1 && a != 2",
        &[("a", 1.0)],
        "passed\nok: a = 1, needs <= 1\nok: a = 1, needs < 2\nok: a = 1, needs >= 1\nok: a = 1, needs > 0\nok: a = 1, needs == 1\nok: a = 1, needs != 2",
    );
}

#[test]
fn nan_compares_false() {
    for op in ["<", "<=", ">", ">=", "==", "!="] {
        let gate = format!("loss {op} 1");
        check_eval(
            &gate,
            &[("loss", f64::NAN)],
            &format!("failed\nFAIL: loss = NaN, needs {op} 1"),
        );
    }
    check_eval(
        "!(loss < 1)",
        &[("loss", f64::NAN)],
        "passed\nok: loss = NaN, needs not < 1",
    );
    check_eval(
        "loss < 1",
        &[("loss", f64::INFINITY)],
        "failed\nFAIL: loss = inf, needs < 1",
    );
}

#[test]
fn unknown_metrics_are_errors_with_a_suggestion() {
    check_eval(
        "exact_mach >= 0.6",
        &[("exact_match", 0.7), ("perplexity", 10.0)],
        "error: unknown metric `exact_mach` in the gate; did you mean `exact_match`? (available: `exact_match`, `perplexity`)",
    );
    // Even in an operand that could not change the outcome.
    check_eval(
        "a > 1 || zzz > 1",
        &[("a", 2.0), ("perplexity", 10.0)],
        "error: unknown metric `zzz` in the gate (available: `a`, `perplexity`)",
    );
    check_eval(
        "a > 1",
        &[],
        "error: unknown metric `a` in the gate (no metrics are available)",
    );
    let err = Gate::parse("f1 > 0.5")
        .unwrap()
        .evaluate(&metrics(&[("f2", 1.0), ("g1", 1.0)]))
        .unwrap_err();
    assert_eq!(
        err,
        GateError::UnknownMetric {
            name: "f1".to_owned(),
            suggestion: Some("f2".to_owned()),
            available: vec!["f2".to_owned(), "g1".to_owned()],
        }
    );
    assert_eq!(err.column(), None);
}

#[test]
fn metrics_lists_names_once() {
    let gate = Gate::parse("b > 1 && (a < 2 || !(b == 3)) && c.d/e > 0").unwrap();
    assert_eq!(
        gate.metrics().into_iter().collect::<Vec<_>>(),
        ["a", "b", "c.d/e"]
    );
}

#[test]
fn outcome_and_errors_render_for_people() {
    let gate: Gate = "exact_match >= 0.6 && perplexity < 20".parse().unwrap();
    let outcome = gate
        .evaluate(&metrics(&[("exact_match", 0.42), ("perplexity", 25.0)]))
        .unwrap();
    assert_eq!(
        outcome.to_string(),
        "failed: exact_match = 0.42, needs >= 0.6; perplexity = 25, needs < 20"
    );
    assert_eq!(outcome.failures().count(), 2);
    let outcome = gate
        .evaluate(&metrics(&[("exact_match", 0.7), ("perplexity", 5.0)]))
        .unwrap();
    assert_eq!(outcome.to_string(), "passed");
    assert_eq!(Gate::parse("a >").unwrap_err().column(), Some(4));
}

#[test]
fn gate_and_outcome_serialise() {
    let gate: Gate = serde_json::from_str(r#""not a>1 or b<=2""#).unwrap();
    assert_eq!(
        serde_json::to_string(&gate).unwrap(),
        r#""!(a > 1) || b <= 2""#
    );
    let err = serde_json::from_str::<Gate>(r#""a >""#).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("expected a number after `>` at column 4"),
        "{err}"
    );
    let outcome = gate.evaluate(&metrics(&[("a", 0.5), ("b", 3.0)])).unwrap();
    let json = serde_json::to_value(&outcome).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "passed": true,
            "checks": [
                {"metric": "a", "value": 0.5, "op": ">", "threshold": 1.0, "held": false, "negated": true},
                {"metric": "b", "value": 3.0, "op": "<=", "threshold": 2.0, "held": false},
            ]
        })
    );
    assert_eq!(
        serde_json::from_value::<GateOutcome>(json).unwrap(),
        outcome
    );
}

/// Gate-shaped text: tokens of the language, near-misses and stray characters.
fn token_soup() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a", "b.c/d", "x-y", "_", "and", "or", "not", "0", "0.5", "-1e3", ".5", "1.", "1e", "-",
        "-.", ".", "<", "<=", ">", ">=", "==", "!=", "=", "!", "&&", "&", "||", "|", "(", ")", " ",
        "\t", "é", "1e999", "#",
    ]);
    prop::collection::vec(pieces, 0..24).prop_map(|p| p.concat())
}

fn metric_name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_./-]{0,6}"
        .prop_filter("keyword", |s| !matches!(s.as_str(), "and" | "or" | "not"))
}

fn threshold() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
        (-1000i32..1000).prop_map(|n| f64::from(n) / 8.0),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    let op = prop::sample::select(vec![
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Eq,
        CompareOp::Ne,
    ]);
    let leaf = (metric_name(), op, threshold()).prop_map(|(metric, op, threshold)| Expr::Compare {
        metric,
        op,
        threshold,
    });
    leaf.prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::All),
            prop::collection::vec(inner, 2..4).prop_map(Expr::Any),
        ]
    })
}

proptest! {
    #[test]
    fn parse_never_panics_on_any_text(text in any::<String>()) {
        let _ = Gate::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_gate_like_text(text in token_soup()) {
        if let Ok(gate) = Gate::parse(&text) {
            let canonical = gate.to_string();
            prop_assert_eq!(Gate::parse(&canonical), Ok(gate.clone()));
            let values: BTreeMap<String, f64> = gate.metrics().into_iter().map(|m| (m.to_owned(), 0.5)).collect();
            let outcome = gate.evaluate(&values).unwrap();
            let mut comparisons = 0;
            gate.expr.visit_comparisons(&mut |_, _, _| comparisons += 1);
            prop_assert_eq!(outcome.checks.len(), comparisons);
        } else if let Err(e) = Gate::parse(&text) {
            prop_assert!(e.column().is_some_and(|c| c >= 1 && c <= text.chars().count() + 1), "{e}");
        }
    }

    #[test]
    fn canonical_form_parses_back(expr in expr()) {
        let gate = Gate { expr };
        let canonical = gate.to_string();
        prop_assert_eq!(Gate::parse(&canonical), Ok(gate), "{}", canonical);
    }
}
