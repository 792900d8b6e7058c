//! ROUGE-L (Lin, 2004): how much of a reference's word order a prediction keeps, from the length
//! of their longest common subsequence of tokens.
//!
//! Scores match Google's `rouge-score` package with its default tokenizer and no stemmer:
//! lower-case, replace every run of characters outside `[a-z0-9]` with a space, split on
//! whitespace. Precision is the LCS length over the prediction's token count, recall over the
//! reference's, and the F-measure their harmonic mean; a side with no tokens scores all zeros.

use serde::{Deserialize, Serialize};

/// Precision, recall and F-measure of one ROUGE comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RougeScore {
    pub precision: f64,
    pub recall: f64,
    /// `rouge-score`'s `fmeasure`: the harmonic mean of precision and recall.
    pub f1: f64,
}

impl RougeScore {
    const ZERO: RougeScore = RougeScore {
        precision: 0.0,
        recall: 0.0,
        f1: 0.0,
    };
}

/// ROUGE-L of `prediction` against `reference`.
pub fn rouge_l(prediction: &str, reference: &str) -> RougeScore {
    let predicted = tokenize(prediction);
    let expected = tokenize(reference);
    if predicted.is_empty() || expected.is_empty() {
        return RougeScore::ZERO;
    }
    let lcs = lcs_len(&expected, &predicted) as f64;
    let precision = lcs / predicted.len() as f64;
    let recall = lcs / expected.len() as f64;
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    RougeScore {
        precision,
        recall,
        f1,
    }
}

/// ROUGE-L against the reference that gives the highest F-measure (the first on ties), as
/// `rouge-score`'s `score_multi` picks; all zeros when there are no references.
pub fn max_rouge_l<S: AsRef<str>>(prediction: &str, references: &[S]) -> RougeScore {
    references
        .iter()
        .map(|r| rouge_l(prediction, r.as_ref()))
        .fold(None, |best: Option<RougeScore>, s| match best {
            Some(b) if b.f1 >= s.f1 => Some(b),
            _ => Some(s),
        })
        .unwrap_or(RougeScore::ZERO)
}

/// `rouge-score`'s default tokenizer, without stemming.
fn tokenize(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The length of the longest common subsequence, one DP row at a time.
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut previous = vec![0usize; b.len() + 1];
    let mut current = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            current[j + 1] = if x == y {
                previous[j] + 1
            } else {
                previous[j + 1].max(current[j])
            };
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expected` is `(precision, recall, f1)`.
    fn check(prediction: &str, reference: &str, expected: (f64, f64, f64)) {
        let s = rouge_l(prediction, reference);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(
            close(s.precision, expected.0)
                && close(s.recall, expected.1)
                && close(s.f1, expected.2),
            "{prediction:?} vs {reference:?}: got {s:?}, expected {expected:?}"
        );
    }

    #[test]
    fn lin_2004_examples() {
        // Lin (2004), section 3.1: reference "police killed the gunman".
        let reference = "police killed the gunman";
        // S2 keeps "police ... the gunman": LCS 3 of 4.
        check("police kill the gunman", reference, (0.75, 0.75, 0.75));
        // S3 keeps only "the gunman": LCS 2 of 4.
        check("the gunman kill police", reference, (0.5, 0.5, 0.5));
        check(reference, reference, (1.0, 1.0, 1.0));
    }

    #[test]
    fn worked_examples() {
        // LCS "the gunman" = 2; precision 2/4, recall 2/7, F = 2·(1/2)·(2/7) / (1/2 + 2/7) = 4/11.
        check(
            "police killed the gunman",
            "the gunman was shot down by police",
            (0.5, 2.0 / 7.0, 4.0 / 11.0),
        );
        // rouge-score's README example (precision 0.625, recall 0.5555556, fmeasure 0.5882353):
        // the LCS is "the quick brown jumps the", 5 of the prediction's 8 and the target's 9.
        check(
            "The quick brown dog jumps on the log.",
            "The quick brown fox jumps over the lazy dog",
            (
                5.0 / 8.0,
                5.0 / 9.0,
                2.0 * (5.0 / 8.0) * (5.0 / 9.0) / (5.0 / 8.0 + 5.0 / 9.0),
            ),
        );
        // The tokenizer drops punctuation and non-ASCII letters, and lower-cases.
        check("Hello, WORLD!!", "hello world", (1.0, 1.0, 1.0));
        check("café au lait", "caf au lait", (1.0, 1.0, 1.0));
        check("it's 3pm", "it s 3pm", (1.0, 1.0, 1.0));
        // No tokens on either side scores zero, and so do disjoint texts.
        check("", "anything", (0.0, 0.0, 0.0));
        check("anything", "...", (0.0, 0.0, 0.0));
        check("a b c", "d e f", (0.0, 0.0, 0.0));
        // Repeated tokens count once per matched position.
        check("a a a", "a", (1.0 / 3.0, 1.0, 0.5));
    }

    #[test]
    fn many_references_take_the_best_f_measure() {
        let best = max_rouge_l(
            "police killed the gunman",
            &["nothing", "police kill the gunman"],
        );
        assert_eq!(best.f1, 0.75);
        assert_eq!(max_rouge_l("x", &[] as &[&str]), RougeScore::ZERO);
    }

    #[test]
    fn lcs_of_known_sequences() {
        let words = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(lcs_len(&words("a b c b d a b"), &words("b d c a b a")), 4);
        assert_eq!(lcs_len(&words("x"), &words("y")), 0);
    }
}
