//! Choosing the next token from logits: greedy, or a seeded chain like llama.cpp's default
//! (repetition penalty → top-k → top-p → min-p → temperature → draw).
//!
//! The sampler owns its candidate buffer, sized once for the vocabulary, so sampling allocates
//! nothing per token.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Sampling settings. `temperature <= 0` means greedy (argmax), whatever the rest says.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches `top_p`; 1.0 keeps all.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` × the best one's; 0.0 keeps all.
    pub min_p: f32,
    /// Penalty for tokens among the last `repeat_last_n` (1.0 = off), as llama.cpp applies it:
    /// positive logits are divided by it, negative ones multiplied.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Argmax decoding.
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            ..Default::default()
        }
    }
}

/// A seeded sampler for one sequence.
#[derive(Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: ChaCha8Rng,
    /// Candidates (id, logit then probability); capacity n_vocab, reused every call.
    cand: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig, n_vocab: usize) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        Sampler {
            cfg,
            rng,
            cand: Vec::with_capacity(n_vocab),
        }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Picks the next token from `logits` [n_vocab]; `history` is the sequence so far (prompt and
    /// generated), used by the repetition penalty.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let cfg = &self.cfg;
        self.cand.clear();
        self.cand
            .extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        if cfg.repeat_penalty != 1.0 && cfg.repeat_last_n > 0 {
            let window = &history[history.len().saturating_sub(cfg.repeat_last_n)..];
            for (i, &id) in window.iter().enumerate() {
                // A token seen several times in the window is penalised once, as llama.cpp does.
                if window[..i].contains(&id) {
                    continue;
                }
                if let Some(c) = self.cand.get_mut(id as usize) {
                    c.1 = if c.1 > 0.0 {
                        c.1 / cfg.repeat_penalty
                    } else {
                        c.1 * cfg.repeat_penalty
                    };
                }
            }
        }
        if cfg.temperature <= 0.0 {
            return argmax(&self.cand);
        }
        // Sort by logit, descending; ties by id so the order is fully determined.
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if cfg.top_k > 0 && cfg.top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(cfg.top_k - 1, by_logit);
            self.cand.truncate(cfg.top_k);
        }
        self.cand.sort_unstable_by(by_logit);
        softmax_in_place(&mut self.cand, 1.0);
        if cfg.top_p < 1.0 {
            let mut cum = 0.0f32;
            let mut keep = self.cand.len();
            for (i, c) in self.cand.iter().enumerate() {
                cum += c.1;
                if cum >= cfg.top_p {
                    keep = i + 1;
                    break;
                }
            }
            self.cand.truncate(keep.max(1));
        }
        if cfg.min_p > 0.0 {
            let floor = self.cand[0].1 * cfg.min_p;
            let keep = self.cand.iter().take_while(|c| c.1 >= floor).count();
            self.cand.truncate(keep.max(1));
        }
        // Temperature on the survivors: p^(1/T) renormalised equals softmax(logit / T).
        let inv_t = 1.0 / cfg.temperature;
        for c in self.cand.iter_mut() {
            c.1 = c.1.max(f32::MIN_POSITIVE).ln() * inv_t;
        }
        softmax_in_place(&mut self.cand, 1.0);
        let r: f32 = self.rng.random();
        let mut cum = 0.0f32;
        for c in &self.cand {
            cum += c.1;
            if r < cum {
                return c.0;
            }
        }
        self.cand[self.cand.len() - 1].0
    }
}

/// Index of the largest logit; the lowest id wins ties.
pub fn argmax_logits(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn argmax(cand: &[(u32, f32)]) -> u32 {
    let mut best = 0usize;
    for (i, c) in cand.iter().enumerate() {
        if c.1 > cand[best].1 {
            best = i;
        }
    }
    cand.get(best).map_or(0, |c| c.0)
}

/// Replaces the values (logits) by their softmax, scaled by `inv_t`.
fn softmax_in_place(cand: &mut [(u32, f32)], inv_t: f32) {
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for c in cand.iter_mut() {
        c.1 = ((c.1 - max) * inv_t).exp();
        sum += c.1;
    }
    for c in cand.iter_mut() {
        c.1 /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        (0..100).map(|i| ((i * 37) % 100) as f32 / 10.0).collect()
    }

    #[test]
    fn greedy_picks_argmax() {
        let l = logits();
        let mut s = Sampler::new(SamplerConfig::greedy(), l.len());
        let want = argmax_logits(&l);
        assert_eq!(l[want as usize], 9.9);
        assert_eq!(s.sample(&l, &[]), want);
    }

    #[test]
    fn same_seed_same_draws_and_other_seed_differs() {
        let l: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.1).collect();
        let cfg = SamplerConfig {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 42,
            ..Default::default()
        };
        let draw = |cfg: &SamplerConfig| {
            let mut s = Sampler::new(cfg.clone(), l.len());
            (0..40).map(|_| s.sample(&l, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(&cfg), draw(&cfg));
        let other = SamplerConfig {
            seed: 7,
            ..cfg.clone()
        };
        assert_ne!(draw(&cfg), draw(&other));
    }

    #[test]
    fn top_k_one_is_greedy_and_min_p_cuts_the_tail() {
        let l = logits();
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 1,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg, l.len());
        for _ in 0..10 {
            assert_eq!(s.sample(&l, &[]), argmax_logits(&l));
        }
        // min_p = 0.5 keeps only tokens within ln(2) of the best logit: 9.9 and 9.4 are out of reach
        // of 8.9 and below (e^-1 < 0.5).
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.5,
            seed: 3,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg, l.len());
        for _ in 0..200 {
            let id = s.sample(&l, &[]) as usize;
            assert!(l[id] >= 9.9 - std::f32::consts::LN_2, "{}", l[id]);
        }
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // Two tokens with 0.6 and 0.3 of the mass, the rest tiny: top_p 0.8 keeps exactly those two.
        let mut l = vec![-20.0f32; 10];
        l[3] = (0.6f32).ln();
        l[8] = (0.3f32).ln();
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.8,
            min_p: 0.0,
            seed: 1,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg, l.len());
        let mut seen = [0usize; 10];
        for _ in 0..300 {
            seen[s.sample(&l, &[]) as usize] += 1;
        }
        assert!(seen[3] > 0 && seen[8] > 0);
        assert_eq!(seen[3] + seen[8], 300);
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let mut l = vec![0.0f32; 4];
        l[0] = 2.0;
        l[1] = 1.9;
        let cfg = SamplerConfig {
            temperature: 0.0,
            repeat_penalty: 1.5,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg, l.len());
        assert_eq!(s.sample(&l, &[]), 0);
        // 2.0 / 1.5 < 1.9: the repeated token loses; penalised once even if seen twice.
        assert_eq!(s.sample(&l, &[0, 0]), 1);
    }
}
