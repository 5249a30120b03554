//! A small local random generator: task data and the measurement's shuffles and resamples are
//! pure functions of their seeds, with no global state (libtorch's generator is shared by the
//! whole process).

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and good enough for sampling tokens.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for item `index` of a collection seeded with `seed`, independent of the
    /// generators of the other items.
    pub fn for_item(seed: u64, index: u64) -> Self {
        let mut mixer = Self(seed ^ 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(index.wrapping_add(1)));
        Self(mixer.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi); `lo < hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo) as u64;
        // Rejection keeps the draw exactly uniform.
        let zone = u64::MAX - u64::MAX % span;
        loop {
            let x = self.next_u64();
            if x < zone {
                return lo + (x % span) as i64;
            }
        }
    }

    /// `k` distinct values from [lo, hi), in random order; `k ≤ hi − lo`.
    pub fn distinct(&mut self, lo: i64, hi: i64, k: usize) -> Vec<i64> {
        let mut pool: Vec<i64> = (lo..hi).collect();
        for i in 0..k {
            let j = self.range(i as i64, pool.len() as i64) as usize;
            pool.swap(i, j);
        }
        pool.truncate(k);
        pool
    }

    /// `k` distinct indices from [0, weights.len()), drawn with probability proportional to
    /// `weights` without replacement (Efraimidis & Spirakis' keys u^(1/w)).
    pub fn weighted_distinct(&mut self, weights: &[f64], k: usize) -> Vec<usize> {
        let mut keyed: Vec<(f64, usize)> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| (self.unit().max(f64::MIN_POSITIVE).ln() / w, i))
            .collect();
        // Largest u^(1/w), i.e. largest ln(u)/w.
        keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
        keyed.into_iter().take(k).map(|(_, i)| i).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_in_range_and_distinct_when_asked() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let x = rng.range(3, 9);
            assert!((3..9).contains(&x));
        }
        let mut d = rng.distinct(10, 20, 10);
        d.sort();
        assert_eq!(d, (10..20).collect::<Vec<_>>());
    }

    #[test]
    fn weighted_draws_follow_the_weights() {
        let mut rng = Rng::new(1);
        let mut first = [0usize; 2];
        for _ in 0..4000 {
            first[rng.weighted_distinct(&[9.0, 1.0], 1)[0]] += 1;
        }
        assert!(first[0] > 3400 && first[0] < 3800, "{first:?}");
    }
}
