//! The one source of randomness: ChaCha8 seeded from the workflow's seed. candle's CPU device
//! cannot be seeded, so weight initialisation, dropout masks and data order all come from here,
//! and a stream is derived per purpose and per step, so that resuming at step N needs no saved
//! generator state: the state is (seed, purpose, step).

use rand::{RngExt as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// An independent stream for `purpose` (`"init"`, `"data"`, `"dropout"`) and `index`.
    pub fn derive(seed: u64, purpose: &str, index: u64) -> Rng {
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes());
        h.update(purpose.as_bytes());
        h.update(&index.to_le_bytes());
        Rng(ChaCha8Rng::from_seed(*h.finalize().as_bytes()))
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    /// `n` draws from a normal distribution (Box–Muller).
    pub fn normal_vec(&mut self, n: usize, std: f64) -> Vec<f32> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let u1 = 1.0 - self.uniform(); // (0, 1]
            let u2 = self.uniform();
            let r = (-2.0 * u1.ln()).sqrt() * std;
            let a = std::f64::consts::TAU * u2;
            out.push((r * a.cos()) as f32);
            if out.len() < n {
                out.push((r * a.sin()) as f32);
            }
        }
        out
    }

    /// `n` draws uniform in [-bound, bound).
    pub fn uniform_vec(&mut self, n: usize, bound: f64) -> Vec<f32> {
        (0..n)
            .map(|_| ((self.uniform() * 2.0 - 1.0) * bound) as f32)
            .collect()
    }

    /// An inverted-dropout mask: 0 with probability `p`, else `1 / (1 - p)`.
    pub fn dropout_mask(&mut self, n: usize, p: f32) -> Vec<f32> {
        let keep = 1.0 / (1.0 - p);
        (0..n)
            .map(|_| if self.uniform() < p as f64 { 0.0 } else { keep })
            .collect()
    }

    /// A Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.0.random_range(0..=i);
            items.swap(i, j);
        }
    }
}
