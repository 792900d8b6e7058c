//! Request metrics in the Prometheus text format, every series labelled with its `variant`.
//! Counted when a request finishes (a stream when its last chunk is sent or its client leaves).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::Generation;
use crate::api::{Endpoint, Route};

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Debug)]
pub(crate) struct Metrics {
    variants: Vec<String>,
    counts: Mutex<Counts>,
    in_flight: Vec<AtomicI64>,
    queued: Vec<AtomicI64>,
}

#[derive(Debug, Default)]
struct Counts {
    requests: BTreeMap<(usize, Route), u64>,
    errors: BTreeMap<(usize, Route, u16), u64>,
    /// Per variant: the bucket counts (not cumulative), the sum and the count.
    latency: Vec<([u64; BUCKETS.len()], f64, u64)>,
    prompt_tokens: Vec<u64>,
    generated_tokens: Vec<u64>,
}

/// Which gauge a [`GaugeGuard`] holds up.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Gauge {
    InFlight,
    Queued,
}

impl Metrics {
    pub(crate) fn new(variants: Vec<String>) -> Self {
        let n = variants.len();
        let counts = Counts {
            latency: vec![([0; BUCKETS.len()], 0.0, 0); n],
            prompt_tokens: vec![0; n],
            generated_tokens: vec![0; n],
            ..Counts::default()
        };
        Self {
            variants,
            counts: Mutex::new(counts),
            in_flight: (0..n).map(|_| AtomicI64::new(0)).collect(),
            queued: (0..n).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    /// Starts timing a request routed to `variant`; it is counted when the observation drops.
    pub(crate) fn observe(
        self: &Arc<Self>,
        variant: usize,
        route: impl Into<Route>,
    ) -> Observation {
        Observation {
            metrics: Arc::clone(self),
            variant,
            route: route.into(),
            start: Instant::now(),
            status: 200,
            tokens: None,
        }
    }

    /// Raises a gauge until the guard drops.
    pub(crate) fn raise(self: &Arc<Self>, gauge: Gauge, variant: usize) -> GaugeGuard {
        self.gauge(gauge, variant).fetch_add(1, Ordering::Relaxed);
        GaugeGuard {
            metrics: Arc::clone(self),
            gauge,
            variant,
        }
    }

    fn gauge(&self, gauge: Gauge, variant: usize) -> &AtomicI64 {
        match gauge {
            Gauge::InFlight => &self.in_flight[variant],
            Gauge::Queued => &self.queued[variant],
        }
    }

    fn record(&self, observation: &Observation) {
        let seconds = observation.start.elapsed().as_secs_f64();
        // A poisoned lock only means a panic elsewhere mid-update; the counts are still usable.
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let v = observation.variant;
        *counts.requests.entry((v, observation.route)).or_default() += 1;
        if observation.status >= 400 {
            *counts
                .errors
                .entry((v, observation.route, observation.status))
                .or_default() += 1;
        }
        let (buckets, sum, count) = &mut counts.latency[v];
        if let Some(i) = BUCKETS.iter().position(|&le| seconds <= le) {
            buckets[i] += 1;
        }
        *sum += seconds;
        *count += 1;
        if let Some((prompt, generated)) = observation.tokens {
            counts.prompt_tokens[v] += prompt as u64;
            counts.generated_tokens[v] += generated as u64;
        }
    }

    /// The Prometheus text exposition of every series.
    pub(crate) fn render(&self) -> String {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::new();
        let label = |v: usize| escape(&self.variants[v]);
        let routes = [
            Route::Generation(Endpoint::Completions),
            Route::Generation(Endpoint::Chat),
            Route::Classify,
        ];

        header(
            &mut out,
            "sluice_requests_total",
            "counter",
            "Requests answered, by variant and endpoint.",
        );
        for v in 0..self.variants.len() {
            for endpoint in routes {
                let n = counts.requests.get(&(v, endpoint)).copied().unwrap_or(0);
                line(
                    &mut out,
                    "sluice_requests_total",
                    &format!("variant=\"{}\",endpoint=\"{}\"", label(v), endpoint.label()),
                    n,
                );
            }
        }

        header(
            &mut out,
            "sluice_request_errors_total",
            "counter",
            "Requests answered with an error status, by variant, endpoint and status.",
        );
        for (&(v, endpoint, status), &n) in &counts.errors {
            line(
                &mut out,
                "sluice_request_errors_total",
                &format!(
                    "variant=\"{}\",endpoint=\"{}\",status=\"{status}\"",
                    label(v),
                    endpoint.label()
                ),
                n,
            );
        }

        header(
            &mut out,
            "sluice_request_duration_seconds",
            "histogram",
            "Time from receiving a request to its last byte, by variant.",
        );
        for (v, (buckets, sum, count)) in counts.latency.iter().enumerate() {
            let mut cumulative = 0;
            for (le, n) in BUCKETS.iter().zip(buckets) {
                cumulative += n;
                line(
                    &mut out,
                    "sluice_request_duration_seconds_bucket",
                    &format!("variant=\"{}\",le=\"{le}\"", label(v)),
                    cumulative,
                );
            }
            line(
                &mut out,
                "sluice_request_duration_seconds_bucket",
                &format!("variant=\"{}\",le=\"+Inf\"", label(v)),
                *count,
            );
            let _ = writeln!(
                out,
                "sluice_request_duration_seconds_sum{{variant=\"{}\"}} {sum}",
                label(v)
            );
            line(
                &mut out,
                "sluice_request_duration_seconds_count",
                &format!("variant=\"{}\"", label(v)),
                *count,
            );
        }

        let per_variant = [
            (
                "sluice_prompt_tokens_total",
                "counter",
                "Prompt tokens of finished generations, by variant.",
                &counts.prompt_tokens,
            ),
            (
                "sluice_generated_tokens_total",
                "counter",
                "Completion tokens of finished generations, by variant.",
                &counts.generated_tokens,
            ),
        ];
        for (name, kind, help, values) in per_variant {
            header(&mut out, name, kind, help);
            for (v, n) in values.iter().enumerate() {
                line(&mut out, name, &format!("variant=\"{}\"", label(v)), *n);
            }
        }

        let gauges = [
            (
                "sluice_requests_in_flight",
                "Generations running now, by variant.",
                &self.in_flight,
            ),
            (
                "sluice_requests_queued",
                "Requests waiting for a generation slot, by variant.",
                &self.queued,
            ),
        ];
        for (name, help, values) in gauges {
            header(&mut out, name, "gauge", help);
            for (v, n) in values.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{variant=\"{}\"}} {n}", label(v));
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn line(out: &mut String, name: &str, labels: &str, value: u64) {
    let _ = writeln!(out, "{name}{{{labels}}} {value}");
}

/// Escapes a label value as the exposition format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

/// One request being timed; recorded when dropped, so that a request whose client goes away
/// mid-stream is still counted.
#[derive(Debug)]
pub(crate) struct Observation {
    metrics: Arc<Metrics>,
    variant: usize,
    route: Route,
    start: Instant,
    status: u16,
    tokens: Option<(usize, usize)>,
}

impl Observation {
    pub(crate) fn fail(&mut self, status: u16) {
        self.status = status;
    }

    /// A request answered with these generations, `n` choices to a prompt.
    pub(crate) fn succeed(&mut self, generations: &[Generation], n: usize) {
        self.status = 200;
        self.tokens = Some(crate::api::tokens(generations, n));
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        self.metrics.record(self);
    }
}

/// Holds a gauge one higher while alive.
#[derive(Debug)]
pub(crate) struct GaugeGuard {
    metrics: Arc<Metrics>,
    gauge: Gauge,
    variant: usize,
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.metrics
            .gauge(self.gauge, self.variant)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FinishReason;

    #[test]
    fn renders_labelled_series() {
        let metrics = Arc::new(Metrics::new(vec!["a".to_owned(), "b\"x".to_owned()]));
        {
            let mut ok = metrics.observe(0, Endpoint::Chat);
            ok.succeed(
                &[Generation {
                    text: String::new(),
                    prompt_tokens: 3,
                    completion_tokens: 5,
                    finish_reason: FinishReason::Stop,
                    ..Default::default()
                }],
                1,
            );
            metrics.observe(1, Endpoint::Completions).fail(400);
        }
        let _queued = metrics.raise(Gauge::Queued, 1);
        let text = metrics.render();
        for expected in [
            "sluice_requests_total{variant=\"a\",endpoint=\"chat_completions\"} 1",
            "sluice_requests_total{variant=\"b\\\"x\",endpoint=\"completions\"} 1",
            "sluice_request_errors_total{variant=\"b\\\"x\",endpoint=\"completions\",status=\"400\"} 1",
            "sluice_request_duration_seconds_bucket{variant=\"a\",le=\"+Inf\"} 1",
            "sluice_request_duration_seconds_count{variant=\"a\"} 1",
            "sluice_generated_tokens_total{variant=\"a\"} 5",
            "sluice_prompt_tokens_total{variant=\"a\"} 3",
            "sluice_generated_tokens_total{variant=\"b\\\"x\"} 0",
            "sluice_requests_queued{variant=\"b\\\"x\"} 1",
            "sluice_requests_in_flight{variant=\"a\"} 0",
        ] {
            assert!(text.contains(expected), "missing `{expected}` in\n{text}");
        }
        // Every sample line carries a variant label.
        for sample in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(sample.contains("variant=\""), "{sample}");
        }
    }
}
