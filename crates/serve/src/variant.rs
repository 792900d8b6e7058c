//! A/B variants: the backends a server answers with, their shares of the traffic, and the
//! deterministic choice of one per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Backend, ServeError};

/// A named backend and the share of requests routed to it.
#[derive(Clone)]
pub struct Variant {
    /// Shown in the `x-sluice-variant` header and the metrics' `variant` label; a client forces
    /// a variant by sending this name in that header. A request's `model` may name it too, but
    /// only to pass validation: `model` never routes.
    pub name: String,
    /// Share of requests in (0, 1). The main variant's weight is whatever the others leave.
    pub weight: f64,
    pub backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variant")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .field("model", &self.backend.id())
            .finish()
    }
}

/// The validated set of variants: the main one first, which takes the remaining share.
#[derive(Debug, Clone)]
pub struct Variants {
    variants: Vec<Variant>,
}

impl Variants {
    /// The main backend alone, answering every request.
    pub fn single(name: impl Into<String>, backend: Arc<dyn Backend>) -> Result<Self, ServeError> {
        Self::new(name, backend, Vec::new())
    }

    /// The main backend named `name` and the `others`, each with its weight in (0, 1); the
    /// weights must add up to less than 1, and the main backend gets the rest. Names must be
    /// distinct, non-empty, printable ASCII without spaces (they travel in a header).
    pub fn new(
        name: impl Into<String>,
        backend: Arc<dyn Backend>,
        others: Vec<Variant>,
    ) -> Result<Self, ServeError> {
        let name = name.into();
        check_name(&name)?;
        let mut total = 0.0;
        for other in &others {
            check_name(&other.name)?;
            check_weight(&other.name, other.weight)?;
            total += other.weight;
        }
        if total >= 1.0 {
            return Err(ServeError::WeightsTooLarge(total));
        }
        let mut variants = Vec::with_capacity(others.len() + 1);
        variants.push(Variant {
            name,
            weight: 1.0 - total,
            backend,
        });
        for other in others {
            if variants.iter().any(|v| v.name == other.name) {
                return Err(ServeError::DuplicateVariant(other.name));
            }
            variants.push(other);
        }
        Ok(Self { variants })
    }

    /// Every variant, the main one first.
    pub fn as_slice(&self) -> &[Variant] {
        &self.variants
    }

    pub(crate) fn get(&self, index: usize) -> &Variant {
        &self.variants[index]
    }

    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.variants.iter().position(|v| v.name == name)
    }

    /// Whether a request's `model` names one of the variants, by model id or variant name.
    pub(crate) fn knows_model(&self, model: &str) -> bool {
        self.variants
            .iter()
            .any(|v| v.name == model || v.backend.id() == model)
    }

    /// The variant for a uniform draw `u` in [0, 1): cumulative weights in order.
    fn pick(&self, u: f64) -> usize {
        let mut edge = 0.0;
        for (index, variant) in self.variants.iter().enumerate() {
            edge += variant.weight;
            if u < edge {
                return index;
            }
        }
        // Rounding left `u` past the last edge: the main variant takes the slack.
        0
    }
}

fn check_name(name: &str) -> Result<(), ServeError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServeError::InvalidVariant {
            spec: name.to_owned(),
            reason: "a variant name must be non-empty printable ASCII without spaces".to_owned(),
        });
    }
    Ok(())
}

fn check_weight(name: &str, weight: f64) -> Result<(), ServeError> {
    if !(weight > 0.0 && weight < 1.0) {
        return Err(ServeError::InvalidVariant {
            spec: format!("{name}={weight}"),
            reason: "the weight must be between 0 and 1, exclusive".to_owned(),
        });
    }
    Ok(())
}

/// Parses a command-line variant `NAME=WEIGHT`, such as `B=0.2`, with the weight in (0, 1).
pub fn parse_variant(spec: &str) -> Result<(String, f64), ServeError> {
    let invalid = |reason: &str| ServeError::InvalidVariant {
        spec: spec.to_owned(),
        reason: reason.to_owned(),
    };
    let (name, weight) = spec
        .rsplit_once('=')
        .ok_or_else(|| invalid("expected NAME=WEIGHT, such as `b=0.2`"))?;
    if name.is_empty() {
        return Err(invalid("the name before `=` is empty"));
    }
    let weight: f64 = weight
        .trim()
        .parse()
        .map_err(|_| invalid("the weight after `=` is not a number"))?;
    if !(weight > 0.0 && weight < 1.0) {
        return Err(invalid("the weight must be between 0 and 1, exclusive"));
    }
    Ok((name.to_owned(), weight))
}

/// Routes requests to variants by their weights. The n-th routed request draws from a hash of
/// `(seed, n)`, so a run with the same seed and the same request order routes identically, and
/// the shares converge like independent draws (no periodic pattern for a client to line up with).
#[derive(Debug)]
pub(crate) struct Router {
    seed: u64,
    counter: AtomicU64,
}

impl Router {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn route(&self, variants: &Variants) -> usize {
        if variants.variants.len() == 1 {
            return 0;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        variants.pick(unit(splitmix64(self.seed ^ splitmix64(n))))
    }
}

/// SplitMix64's finaliser: a bijective, well-mixed hash of a 64-bit counter.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The top 53 bits as a float in [0, 1).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatMessage, GenerateRequest, Generation};

    struct Named(&'static str);

    impl Backend for Named {
        fn id(&self) -> &str {
            self.0
        }
        fn context_length(&self) -> usize {
            8
        }
        fn chat_prompt(&self, _: &[ChatMessage]) -> String {
            String::new()
        }
        fn generate(
            &self,
            _: &GenerateRequest,
            _: &mut dyn FnMut(&str) -> bool,
        ) -> Result<Generation, String> {
            Err("unused".to_owned())
        }
    }

    fn variant(name: &str, weight: f64) -> Variant {
        Variant {
            name: name.to_owned(),
            weight,
            backend: Arc::new(Named("m")),
        }
    }

    fn check_parse(spec: &str, expected: Result<(&str, f64), &str>) {
        let got = parse_variant(spec).map_err(|e| e.to_string());
        let expected = expected
            .map(|(n, w)| (n.to_owned(), w))
            .map_err(str::to_owned);
        assert_eq!(got, expected, "{spec}");
    }

    #[test]
    fn parses_variants() {
        check_parse("b=0.2", Ok(("b", 0.2)));
        check_parse("runs/b=0.5", Ok(("runs/b", 0.5)));
        check_parse("a=b=0.1", Ok(("a=b", 0.1)));
        check_parse(
            "b",
            Err("invalid variant `b`: expected NAME=WEIGHT, such as `b=0.2`"),
        );
        check_parse(
            "=0.2",
            Err("invalid variant `=0.2`: the name before `=` is empty"),
        );
        check_parse(
            "b=x",
            Err("invalid variant `b=x`: the weight after `=` is not a number"),
        );
        for bad in ["b=0", "b=1", "b=1.5", "b=-0.1", "b=NaN"] {
            check_parse(
                bad,
                Err(&format!(
                    "invalid variant `{bad}`: the weight must be between 0 and 1, exclusive"
                )),
            );
        }
    }

    #[test]
    fn validates_variant_sets() {
        let main = || Arc::new(Named("m")) as Arc<dyn Backend>;
        let ok = Variants::new("a", main(), vec![variant("b", 0.2), variant("c", 0.3)]).unwrap();
        let weights: Vec<f64> = ok.as_slice().iter().map(|v| v.weight).collect();
        assert!((weights[0] - 0.5).abs() < 1e-12, "{weights:?}");
        let err = |others| Variants::new("a", main(), others).unwrap_err().to_string();
        assert_eq!(
            err(vec![variant("a", 0.2)]),
            "variant name `a` is used twice"
        );
        assert!(
            err(vec![variant("b", 0.6), variant("c", 0.4)])
                .starts_with("variant weights add up to 1")
        );
        assert!(err(vec![variant("b c", 0.1)]).contains("printable ASCII"));
        assert!(err(vec![variant("b", 0.0)]).contains("between 0 and 1"));
    }

    #[test]
    fn routing_is_deterministic_and_follows_weights() {
        let variants = Variants::new("a", Arc::new(Named("m")), vec![variant("b", 0.2)]).unwrap();
        let draw = |seed| {
            let router = Router::new(seed);
            (0..10_000)
                .map(|_| router.route(&variants))
                .collect::<Vec<_>>()
        };
        let first = draw(7);
        assert_eq!(first, draw(7));
        assert_ne!(first, draw(8));
        let to_b = first.iter().filter(|&&i| i == 1).count();
        assert!((1800..=2200).contains(&to_b), "{to_b}");
    }
}
