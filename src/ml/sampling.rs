//! Choosing the next token: temperature, nucleus (top-p) sampling and a portable seeded RNG.
//!
//! Every sample has its own seed, so a generation job retried on another worker draws the
//! same solutions for the same seed regardless of how samples were batched.

use serde::{Deserialize, Serialize};

/// How a prover samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f64,
    /// Nucleus size: sample among the most likely tokens whose probabilities sum to `top_p`.
    pub top_p: f64,
    /// Hard cap on generated tokens per solution.
    pub max_new_tokens: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_p: 0.95,
            max_new_tokens: 256,
        }
    }
}

impl SamplingParams {
    /// Why these parameters are unusable, if they are.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=5.0).contains(&self.temperature) {
            return Err("temperature must be between 0 and 5".into());
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err("top_p must be in (0, 1]".into());
        }
        if self.max_new_tokens == 0 || self.max_new_tokens > 4096 {
            return Err("max_new_tokens must be between 1 and 4096".into());
        }
        Ok(())
    }
}

/// SplitMix64: tiny, fast, and the same sequence on every platform and crate version.
#[derive(Debug, Clone)]
pub struct SampleRng(u64);

impl SampleRng {
    /// A generator whose whole output is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box–Muller), for weight initialisation.
    pub fn next_normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Picks a token id from one row of logits.
pub fn sample_token(logits: &[f32], params: &SamplingParams, rng: &mut SampleRng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 { (i, v) } else { best }
            })
            .0 as u32
    };
    if params.temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inv_t = 1.0 / params.temperature;
    let mut weighted: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as u32, (((v - max) as f64) * inv_t).exp()))
        .filter(|(_, p)| *p > 0.0)
        .collect();
    let total: f64 = weighted.iter().map(|(_, p)| p).sum();
    if !(total.is_finite() && total > 0.0) {
        return argmax();
    }
    weighted.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
    let mut kept = 0.0;
    let mut cut = weighted.len();
    for (i, (_, p)) in weighted.iter().enumerate() {
        kept += p / total;
        if kept >= params.top_p {
            cut = i + 1;
            break;
        }
    }
    let nucleus = &weighted[..cut];
    let mass: f64 = nucleus.iter().map(|(_, p)| p).sum();
    let mut target = rng.next_f64() * mass;
    for (id, p) in nucleus {
        if target < *p {
            return *id;
        }
        target -= p;
    }
    nucleus.last().map(|(id, _)| *id).unwrap_or_else(argmax)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_maximum_and_top_p_limits_the_choice() {
        let logits = [0.0, 5.0, 4.9, -3.0];
        let greedy = SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        };
        let mut rng = SampleRng::new(1);
        assert_eq!(sample_token(&logits, &greedy, &mut rng), 1);
        let narrow = SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            max_new_tokens: 1,
        };
        for _ in 0..100 {
            assert_eq!(sample_token(&logits, &narrow, &mut rng), 1);
        }
        let wide = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 1,
        };
        let picks: std::collections::HashSet<u32> = (0..500)
            .map(|_| sample_token(&logits, &wide, &mut rng))
            .collect();
        assert!(picks.contains(&1) && picks.contains(&2));
    }

    #[test]
    fn the_same_seed_gives_the_same_draws() {
        let mut a = SampleRng::new(42);
        let mut b = SampleRng::new(42);
        assert!((0..10).all(|_| a.next_u64() == b.next_u64()));
        assert_ne!(SampleRng::new(1).next_u64(), SampleRng::new(2).next_u64());
    }
}
