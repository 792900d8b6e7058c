//! Near-duplicate detection with MinHash signatures and locality-sensitive hashing (Broder 1997;
//! Leskovec, Rajaraman & Ullman, "Mining of Massive Datasets", ch. 3).
//!
//! A text becomes the set of its character n-grams; a signature keeps, for each of `num_perm`
//! seeded hash functions, the smallest hash over that set, so that two signatures agree at a
//! position with probability equal to the Jaccard similarity of the sets. LSH cuts signatures into
//! `bands` of `rows` values; texts sharing any band become candidates, and a candidate counts as a
//! duplicate when the signatures' agreement reaches the threshold. Everything is portable
//! integer arithmetic, so results do not depend on the platform or the thread count.

use std::collections::HashMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seeded hash functions that turn a text into a signature: `h_i(x) = a_i·x + b_i mod 2^64`
/// with odd `a_i`, a permutation of the 64-bit shingle hashes (each already well mixed).
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
    ngram: usize,
}

/// A 64-bit finaliser (splitmix64): a fast bijection that mixes every input bit into every
/// output bit.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a over bytes: the shingle's identity before the seeded mixing.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

impl MinHasher {
    pub fn new(num_perm: usize, ngram: usize, seed: u64) -> MinHasher {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut a = Vec::with_capacity(num_perm);
        let mut b = Vec::with_capacity(num_perm);
        for _ in 0..num_perm {
            a.push(rng.random::<u64>() | 1);
            b.push(rng.random::<u64>());
        }
        MinHasher {
            a,
            b,
            ngram: ngram.max(1),
        }
    }

    /// The distinct n-gram hashes of a text (a text shorter than n is one shingle).
    fn shingles(&self, text: &str) -> Vec<u64> {
        let bounds: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(text.len()))
            .collect();
        let chars = bounds.len() - 1;
        let mut hashes = if chars == 0 {
            Vec::new()
        } else if chars <= self.ngram {
            vec![mix(fnv1a(text.as_bytes()))]
        } else {
            (0..=chars - self.ngram)
                .map(|i| mix(fnv1a(&text.as_bytes()[bounds[i]..bounds[i + self.ngram]])))
                .collect()
        };
        hashes.sort_unstable();
        hashes.dedup();
        hashes
    }

    pub fn signature(&self, text: &str) -> Vec<u64> {
        let shingles = self.shingles(text);
        let mut signature = vec![u64::MAX; self.a.len()];
        // Shingle by shingle, so that the inner loop over the functions vectorises.
        for &x in &shingles {
            for ((min, a), b) in signature.iter_mut().zip(&self.a).zip(&self.b) {
                *min = (*min).min(a.wrapping_mul(x).wrapping_add(*b));
            }
        }
        signature
    }
}

/// Whether two signatures differ in at most `allowed` positions: `similarity >= threshold`,
/// stopping as soon as the answer is known.
fn within(a: &[u64], b: &[u64], allowed: usize) -> bool {
    // Counted in blocks, which vectorise, with a check after each block.
    let mut mismatches = 0;
    for (x, y) in a.chunks(32).zip(b.chunks(32)) {
        mismatches += x.iter().zip(y).filter(|(p, q)| p != q).count();
        if mismatches > allowed {
            return false;
        }
    }
    true
}

/// The (bands, rows) that best separate pairs above and below `threshold` with `num_perm`
/// values, weighing false positives and false negatives equally (as datasketch does).
pub fn optimal_bands(threshold: f64, num_perm: usize) -> (usize, usize) {
    // P(candidate | similarity s) = 1 - (1 - s^r)^b, integrated by Simpson's rule.
    let integrate = |f: &dyn Fn(f64) -> f64, a: f64, b: f64| {
        let n = 64;
        let h = (b - a) / n as f64;
        let mut sum = f(a) + f(b);
        for i in 1..n {
            let x = a + i as f64 * h;
            sum += if i % 2 == 1 { 4.0 } else { 2.0 } * f(x);
        }
        sum * h / 3.0
    };
    let mut best = (1, num_perm);
    let mut best_error = f64::INFINITY;
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let p = |s: f64| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
            let false_positive = integrate(&p, 0.0, threshold);
            let false_negative = integrate(&|s| 1.0 - p(s), threshold, 1.0);
            let error = 0.5 * false_positive + 0.5 * false_negative;
            if error < best_error {
                best_error = error;
                best = (b, r);
            }
        }
    }
    best
}

/// Finds, in order, the texts that nearly duplicate an earlier kept one.
pub struct Lsh {
    bands: usize,
    rows: usize,
    threshold: f64,
    buckets: Vec<HashMap<u64, Vec<usize>>>,
    kept: Vec<Vec<u64>>,
}

impl Lsh {
    pub fn new(bands: usize, rows: usize, threshold: f64) -> Lsh {
        Lsh {
            bands,
            rows,
            threshold,
            buckets: (0..bands).map(|_| HashMap::new()).collect(),
            kept: Vec::new(),
        }
    }

    /// The most positions two signatures of `len` values may differ in and still reach the
    /// threshold.
    fn allowed_mismatches(&self, len: usize) -> usize {
        let needed = (self.threshold * len as f64 - 1e-9).ceil().max(0.0) as usize;
        len.saturating_sub(needed)
    }

    fn band_key(&self, signature: &[u64], band: usize) -> u64 {
        signature[band * self.rows..(band + 1) * self.rows]
            .iter()
            .fold(band as u64, |h, v| mix(h ^ v))
    }

    /// `true` if `signature` nearly duplicates a kept one; otherwise it is kept.
    pub fn is_duplicate(&mut self, signature: Vec<u64>) -> bool {
        let keys: Vec<u64> = (0..self.bands)
            .map(|b| self.band_key(&signature, b))
            .collect();
        let allowed = self.allowed_mismatches(signature.len());
        for (band, key) in keys.iter().enumerate() {
            if let Some(candidates) = self.buckets[band].get(key)
                && candidates
                    .iter()
                    .any(|&c| within(&self.kept[c], &signature, allowed))
            {
                return true;
            }
        }
        let index = self.kept.len();
        for (band, key) in keys.into_iter().enumerate() {
            self.buckets[band].entry(key).or_default().push(index);
        }
        self.kept.push(signature);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fraction of positions where two signatures agree: an estimate of the Jaccard similarity.
    fn similarity(a: &[u64], b: &[u64]) -> f64 {
        if a.is_empty() {
            return 0.0;
        }
        let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
        same as f64 / a.len() as f64
    }

    #[test]
    fn similar_texts_have_similar_signatures() {
        let h = MinHasher::new(128, 5, 1);
        let a = h.signature("how do i reset my password on the mobile app");
        let b = h.signature("how do i reset my password on the mobile app please");
        let c = h.signature("what are your opening hours on public holidays");
        assert!(similarity(&a, &b) > 0.7, "{}", similarity(&a, &b));
        assert!(similarity(&a, &c) < 0.2, "{}", similarity(&a, &c));
    }

    #[test]
    fn within_matches_the_threshold() {
        let lsh = Lsh::new(1, 128, 0.8);
        let allowed = lsh.allowed_mismatches(128);
        assert_eq!(allowed, 25);
        let a: Vec<u64> = (0..128).collect();
        let mut b = a.clone();
        for v in b.iter_mut().take(25) {
            *v += 1000;
        }
        assert!(within(&a, &b, allowed));
        assert!(similarity(&a, &b) >= 0.8);
        b[25] += 1000;
        assert!(!within(&a, &b, allowed));
        assert!(similarity(&a, &b) < 0.8);
    }

    #[test]
    fn optimal_bands_fit_the_signature() {
        let (b, r) = optimal_bands(0.8, 128);
        assert!(b * r <= 128);
        assert!(b > 1 && r > 1, "{b} {r}");
    }

    #[test]
    fn lsh_keeps_the_first_of_near_duplicates() {
        let h = MinHasher::new(128, 5, 7);
        let (b, r) = optimal_bands(0.8, 128);
        let mut lsh = Lsh::new(b, r, 0.8);
        let texts = [
            "my order arrived damaged, can i get a refund",
            "where is my parcel, it has been two weeks",
            "my order arrived damaged, can i get a refund?",
            "my order arrived damaged, can i get a refund!!",
        ];
        let dup: Vec<bool> = texts
            .iter()
            .map(|t| lsh.is_duplicate(h.signature(t)))
            .collect();
        assert_eq!(dup, [false, false, true, true]);
    }
}
