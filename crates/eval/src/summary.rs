//! Aggregating per-example scores into run metrics, and comparing two runs' metrics.
//!
//! Metrics are `BTreeMap<String, f64>` from metric name to value, so that they serialise sorted.

use std::collections::BTreeMap;

/// The arithmetic mean of `values`, or `None` when there are none. A NaN among them makes the
/// mean NaN.
pub fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values
        .into_iter()
        .fold((0.0, 0usize), |(sum, count), v| (sum + v, count + 1));
    (count > 0).then(|| sum / count as f64)
}

/// Per metric name, the mean of its values over the `rows` (one row per example) that have it.
pub fn mean_metrics<'a>(
    rows: impl IntoIterator<Item = &'a BTreeMap<String, f64>>,
) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<&'a str, (f64, usize)> = BTreeMap::new();
    for row in rows {
        for (name, value) in row {
            let (sum, count) = sums.entry(name.as_str()).or_default();
            *sum += value;
            *count += 1;
        }
    }
    sums.into_iter()
        .map(|(name, (sum, count))| (name.to_owned(), sum / count as f64))
        .collect()
}

/// `after − base` for every metric in both maps; metrics in only one of them are left out.
pub fn delta(after: &BTreeMap<String, f64>, base: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(name, a)| base.get(name).map(|b| (name.clone(), a - b)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn check(actual: BTreeMap<String, f64>, expected: &[(&str, f64)]) {
        assert_eq!(actual, metrics(expected));
    }

    #[test]
    fn mean_of_values() {
        assert_eq!(mean([1.0, 2.0, 4.5]), Some(2.5));
        assert_eq!(mean([]), None);
        assert!(mean([1.0, f64::NAN]).unwrap().is_nan());
    }

    #[test]
    fn mean_per_metric_over_the_rows_that_have_it() {
        let rows = [
            metrics(&[("exact_match", 1.0), ("f1", 1.0)]),
            metrics(&[("exact_match", 0.0), ("f1", 0.5)]),
            metrics(&[("exact_match", 0.0), ("rouge_l", 0.25)]),
        ];
        check(
            mean_metrics(&rows),
            &[("exact_match", 1.0 / 3.0), ("f1", 0.75), ("rouge_l", 0.25)],
        );
        check(mean_metrics(&[]), &[]);
    }

    #[test]
    fn delta_of_shared_metrics() {
        let base = metrics(&[("exact_match", 0.5), ("loss", 2.0), ("old", 1.0)]);
        let after = metrics(&[("exact_match", 0.75), ("loss", 1.5), ("new", 1.0)]);
        check(
            delta(&after, &base),
            &[("exact_match", 0.25), ("loss", -0.5)],
        );
        check(
            delta(&base, &base),
            &[("exact_match", 0.0), ("loss", 0.0), ("old", 0.0)],
        );
        check(delta(&after, &BTreeMap::new()), &[]);
    }
}
