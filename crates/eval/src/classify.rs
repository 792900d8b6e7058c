//! Classification metrics from (reference label, predicted label) pairs, with scikit-learn's
//! conventions so that numbers agree with `classification_report` and `confusion_matrix`.
//!
//! The labels are the sorted union of references and predictions. A class that is never
//! predicted has precision 0 and a class that never occurs has recall 0 (`zero_division=0`); F1 is
//! `2·tp / (2·tp + fp + fn)`, 0 when that is 0/0. Macro averages are unweighted means over the
//! labels, weighted averages weigh each class by its support. With no pairs at all, every number
//! is 0.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// Counts of (reference, predicted) label pairs: `counts[r][p]` is how many examples of
/// `labels[r]` were predicted as `labels[p]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// Sorted, without duplicates.
    pub labels: Vec<String>,
    /// Rows are references, columns predictions, both in `labels` order.
    pub counts: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    /// The matrix of `pairs` of (reference, predicted) labels.
    pub fn from_pairs<R, P>(pairs: impl IntoIterator<Item = (R, P)>) -> ConfusionMatrix
    where
        R: AsRef<str>,
        P: AsRef<str>,
    {
        let pairs: Vec<(R, P)> = pairs.into_iter().collect();
        let labels: BTreeSet<&str> = pairs
            .iter()
            .flat_map(|(r, p)| [r.as_ref(), p.as_ref()])
            .collect();
        let index: BTreeMap<&str, usize> =
            labels.iter().enumerate().map(|(i, l)| (*l, i)).collect();
        let mut counts = vec![vec![0u64; labels.len()]; labels.len()];
        for (r, p) in &pairs {
            counts[index[r.as_ref()]][index[p.as_ref()]] += 1;
        }
        ConfusionMatrix {
            labels: labels.into_iter().map(str::to_owned).collect(),
            counts,
        }
    }

    /// How many examples of `reference` were predicted as `predicted`; 0 for unknown labels.
    pub fn count(&self, reference: &str, predicted: &str) -> u64 {
        let find = |label: &str| self.labels.binary_search_by(|l| l.as_str().cmp(label)).ok();
        match (find(reference), find(predicted)) {
            (Some(r), Some(p)) => self.counts[r][p],
            _ => 0,
        }
    }

    /// The number of pairs counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }
}

/// Precision, recall and F1 of one class, and its support (how often it is the reference).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// Precision, recall and F1 averaged over classes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Averages {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Everything scikit-learn's `classification_report` shows, and the confusion matrix. Its
/// `Display` prints the same table (`{:.4}` for four decimals instead of two).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClassificationReport {
    /// Correct predictions over all predictions.
    pub accuracy: f64,
    /// Unweighted means over the labels.
    pub macro_avg: Averages,
    /// Means weighted by each label's support.
    pub weighted_avg: Averages,
    /// Per label, in label order.
    pub per_class: BTreeMap<String, ClassMetrics>,
    pub confusion: ConfusionMatrix,
}

impl ClassificationReport {
    /// The report of `pairs` of (reference, predicted) labels.
    pub fn from_pairs<R, P>(pairs: impl IntoIterator<Item = (R, P)>) -> ClassificationReport
    where
        R: AsRef<str>,
        P: AsRef<str>,
    {
        ClassificationReport::from_confusion(ConfusionMatrix::from_pairs(pairs))
    }

    /// The report of an existing confusion matrix.
    pub fn from_confusion(confusion: ConfusionMatrix) -> ClassificationReport {
        let n = confusion.labels.len();
        let total = confusion.total();
        let correct: u64 = (0..n).map(|i| confusion.counts[i][i]).sum();
        let per_class: BTreeMap<String, ClassMetrics> = (0..n)
            .map(|i| {
                let tp = confusion.counts[i][i];
                let support: u64 = confusion.counts[i].iter().sum();
                let predicted: u64 = confusion.counts.iter().map(|row| row[i]).sum();
                let metrics = ClassMetrics {
                    precision: ratio(tp, predicted),
                    recall: ratio(tp, support),
                    f1: ratio(2 * tp, support + predicted),
                    support,
                };
                (confusion.labels[i].clone(), metrics)
            })
            .collect();
        let average = |weight: &dyn Fn(&ClassMetrics) -> f64| {
            let total_weight: f64 = per_class.values().map(weight).sum();
            let mean = |value: fn(&ClassMetrics) -> f64| {
                if total_weight == 0.0 {
                    0.0
                } else {
                    per_class
                        .values()
                        .map(|m| value(m) * weight(m))
                        .sum::<f64>()
                        / total_weight
                }
            };
            Averages {
                precision: mean(|m| m.precision),
                recall: mean(|m| m.recall),
                f1: mean(|m| m.f1),
            }
        };
        let macro_avg = average(&|_| 1.0);
        let weighted_avg = average(&|m| m.support as f64);
        ClassificationReport {
            accuracy: ratio(correct, total),
            macro_avg,
            weighted_avg,
            per_class,
            confusion,
        }
    }
}

/// `numerator / denominator`, or 0 when the denominator is 0 (scikit-learn's `zero_division=0`).
fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

impl fmt::Display for ClassificationReport {
    /// scikit-learn's `classification_report` layout; the precision (default 2) sets the digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = f.precision().unwrap_or(2);
        let width = self
            .per_class
            .keys()
            .map(|l| l.chars().count())
            .chain([digits, "weighted avg".len()])
            .max()
            .unwrap_or(0);
        let total = self.confusion.total();
        writeln!(
            f,
            "{:>width$}  {:>9} {:>9} {:>9} {:>9}\n",
            "", "precision", "recall", "f1-score", "support"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, p: f64, r: f64, f1: f64, n: u64| {
            writeln!(
                f,
                "{name:>width$}  {p:>9.digits$} {r:>9.digits$} {f1:>9.digits$} {n:>9}"
            )
        };
        for (label, m) in &self.per_class {
            row(f, label, m.precision, m.recall, m.f1, m.support)?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:>width$}  {:>9} {:>9} {:>9.digits$} {:>9}",
            "accuracy", "", "", self.accuracy, total
        )?;
        let (m, w) = (self.macro_avg, self.weighted_avg);
        row(f, "macro avg", m.precision, m.recall, m.f1, total)?;
        row(f, "weighted avg", w.precision, w.recall, w.f1, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A label and its `(precision, recall, f1, support)`.
    type Row<'a> = (&'a str, (f64, f64, f64, u64));

    /// Per label in order, then accuracy, the macro and the weighted averages as
    /// `(precision, recall, f1)`.
    struct Expected<'a> {
        per_class: &'a [Row<'a>],
        accuracy: f64,
        macro_avg: (f64, f64, f64),
        weighted_avg: (f64, f64, f64),
    }

    fn check(pairs: &[(&str, &str)], expected: Expected<'_>) {
        let report = ClassificationReport::from_pairs(pairs.iter().copied());
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let triple = |a: Averages| (a.precision, a.recall, a.f1);
        let close3 = |a: (f64, f64, f64), b: (f64, f64, f64)| {
            close(a.0, b.0) && close(a.1, b.1) && close(a.2, b.2)
        };
        let actual: Vec<Row<'_>> = report
            .per_class
            .iter()
            .map(|(l, m)| (l.as_str(), (m.precision, m.recall, m.f1, m.support)))
            .collect();
        let per_class_ok = actual.len() == expected.per_class.len()
            && actual.iter().zip(expected.per_class).all(|(a, e)| {
                a.0 == e.0 && close3((a.1.0, a.1.1, a.1.2), (e.1.0, e.1.1, e.1.2)) && a.1.3 == e.1.3
            });
        assert!(
            per_class_ok
                && close(report.accuracy, expected.accuracy)
                && close3(triple(report.macro_avg), expected.macro_avg)
                && close3(triple(report.weighted_avg), expected.weighted_avg),
            "{pairs:?}:\n{report:.4}{report:?}"
        );
    }

    fn pairs<'a>(references: &[&'a str], predictions: &[&'a str]) -> Vec<(&'a str, &'a str)> {
        references
            .iter()
            .copied()
            .zip(predictions.iter().copied())
            .collect()
    }

    #[test]
    fn scikit_learn_documentation_example() {
        // `classification_report([0, 1, 2, 2, 2], [0, 0, 2, 2, 1])` from the scikit-learn docs.
        check(
            &pairs(&["0", "1", "2", "2", "2"], &["0", "0", "2", "2", "1"]),
            Expected {
                per_class: &[
                    ("0", (0.5, 1.0, 2.0 / 3.0, 1)),
                    ("1", (0.0, 0.0, 0.0, 1)),
                    ("2", (1.0, 2.0 / 3.0, 0.8, 3)),
                ],
                accuracy: 0.6,
                macro_avg: (0.5, 5.0 / 9.0, (2.0 / 3.0 + 0.8) / 3.0),
                weighted_avg: (0.7, 0.6, (2.0 / 3.0 + 2.4) / 5.0),
            },
        );
    }

    #[test]
    fn hand_computed_three_classes() {
        // Confusion (rows reference, columns predicted; bird, cat, dog):
        //   bird [0 1 0]   cat [0 2 1]   dog [0 1 1]
        // bird is never predicted: precision 0 by zero_division=0.
        // cat: tp 2, predicted 4, support 3 → P 1/2, R 2/3, F1 4/7.
        // dog: tp 1, predicted 2, support 2 → P 1/2, R 1/2, F1 1/2.
        check(
            &pairs(
                &["cat", "cat", "cat", "dog", "dog", "bird"],
                &["cat", "dog", "cat", "dog", "cat", "cat"],
            ),
            Expected {
                per_class: &[
                    ("bird", (0.0, 0.0, 0.0, 1)),
                    ("cat", (0.5, 2.0 / 3.0, 4.0 / 7.0, 3)),
                    ("dog", (0.5, 0.5, 0.5, 2)),
                ],
                accuracy: 0.5,
                macro_avg: (1.0 / 3.0, 7.0 / 18.0, 5.0 / 14.0),
                weighted_avg: (5.0 / 12.0, 0.5, 19.0 / 42.0),
            },
        );
    }

    #[test]
    fn a_label_that_is_only_predicted_has_no_support() {
        check(
            &pairs(&["a", "b"], &["a", "c"]),
            Expected {
                per_class: &[
                    ("a", (1.0, 1.0, 1.0, 1)),
                    ("b", (0.0, 0.0, 0.0, 1)),
                    ("c", (0.0, 0.0, 0.0, 0)),
                ],
                accuracy: 0.5,
                macro_avg: (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0),
                weighted_avg: (0.5, 0.5, 0.5),
            },
        );
        check(
            &pairs(&["x", "x"], &["x", "x"]),
            Expected {
                per_class: &[("x", (1.0, 1.0, 1.0, 2))],
                accuracy: 1.0,
                macro_avg: (1.0, 1.0, 1.0),
                weighted_avg: (1.0, 1.0, 1.0),
            },
        );
        check(
            &[],
            Expected {
                per_class: &[],
                accuracy: 0.0,
                macro_avg: (0.0, 0.0, 0.0),
                weighted_avg: (0.0, 0.0, 0.0),
            },
        );
    }

    #[test]
    fn confusion_matrix_rows_are_references() {
        let m = ConfusionMatrix::from_pairs(pairs(
            &["cat", "cat", "cat", "dog", "dog", "bird"],
            &["cat", "dog", "cat", "dog", "cat", "cat"],
        ));
        assert_eq!(m.labels, ["bird", "cat", "dog"]);
        assert_eq!(m.counts, [[0, 1, 0], [0, 2, 1], [0, 1, 1]]);
        assert_eq!(m.count("cat", "dog"), 1);
        assert_eq!(m.count("dog", "cat"), 1);
        assert_eq!(m.count("fish", "cat"), 0);
        assert_eq!(m.total(), 6);
    }

    #[test]
    fn report_prints_like_scikit_learn() {
        let report = ClassificationReport::from_pairs(pairs(
            &["class 0", "class 1", "class 2", "class 2", "class 2"],
            &["class 0", "class 0", "class 2", "class 2", "class 1"],
        ));
        // Verbatim from the scikit-learn documentation of `classification_report`.
        let expected = "              precision    recall  f1-score   support

     class 0       0.50      1.00      0.67         1
     class 1       0.00      0.00      0.00         1
     class 2       1.00      0.67      0.80         3

    accuracy                           0.60         5
   macro avg       0.50      0.56      0.49         5
weighted avg       0.70      0.60      0.61         5
";
        assert_eq!(report.to_string(), expected);
    }

    #[test]
    fn report_serialises_with_kebab_case_keys() {
        let report = ClassificationReport::from_pairs([("a", "a"), ("a", "b")]);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["accuracy"], 0.5);
        assert_eq!(json["macro-avg"]["recall"], 0.25);
        assert_eq!(json["per-class"]["a"]["support"], 2);
        assert_eq!(
            json["confusion"]["counts"],
            serde_json::json!([[1, 1], [0, 0]])
        );
        let back: ClassificationReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}
