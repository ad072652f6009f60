//! Sampling: greedy, temperature, top-k, top-p, min-p, seeded. The serving fields (stop strings,
//! `n`, logprobs, penalties) are applied by the scheduler (`runtime/scheduler.rs`,
//! `runtime/logits.rs`); `Llm::generate` uses the others.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::{Error, Result};

/// Most completions per request (`n`).
pub const MAX_N: usize = 64;
/// Most top alternatives per token (`logprobs`).
pub const MAX_LOGPROBS: usize = 20;

#[derive(Clone, Debug)]
pub struct SamplingParams {
    pub max_new_tokens: usize,
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 means no top-k.
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub seed: Option<u64>,
    /// Stop on these ids in addition to the model's EOS ids.
    pub stop_token_ids: Vec<u32>,
    /// Keep generating past EOS (benchmarks, reference comparisons).
    pub ignore_eos: bool,
    /// Stop when the generated text contains one of these (excluded from the output). Serving.
    pub stop: Vec<String>,
    /// Independent completions of the prompt (seeds `seed + i`). Serving.
    pub n: usize,
    /// Return the sampled token's log-probability and this many top alternatives. Serving.
    pub logprobs: Option<usize>,
    /// OpenAI penalties on generated tokens: `-presence` if seen, `-frequency * count`.
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// HF repetition penalty over prompt and output (1 = off).
    pub repetition_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_new_tokens: 64,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: None,
            stop_token_ids: vec![],
            ignore_eos: false,
            stop: vec![],
            n: 1,
            logprobs: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
        }
    }
}

impl SamplingParams {
    pub fn greedy(max_new_tokens: usize) -> Self {
        SamplingParams { max_new_tokens, ..Default::default() }
    }
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Request(m.to_string()));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature must be a finite number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p must be in [0, 1]");
        }
        if self.n == 0 || self.n > MAX_N {
            return Err(Error::Request(format!("n must be in [1, {MAX_N}]")));
        }
        if self.logprobs.is_some_and(|k| k > MAX_LOGPROBS) {
            return Err(Error::Request(format!("logprobs must be in [0, {MAX_LOGPROBS}]")));
        }
        for (name, v) in
            [("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)]
        {
            if !(-2.0..=2.0).contains(&v) {
                return Err(Error::Request(format!("{name} must be in [-2, 2]")));
            }
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition_penalty must be a finite number > 0");
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return bad("stop strings must not be empty");
        }
        Ok(())
    }

    /// Whether sampling needs the logits on the host (anything but plain greedy).
    pub fn needs_host_logits(&self) -> bool {
        self.temperature != 0.0 || self.logprobs.is_some() || self.has_penalties()
    }

    pub fn has_penalties(&self) -> bool {
        self.presence_penalty != 0.0 || self.frequency_penalty != 0.0 || self.repetition_penalty != 1.0
    }
}

/// One sequence's sampler state (its RNG).
pub struct Sampler {
    rng: SmallRng,
}

impl Sampler {
    pub fn new(seed: Option<u64>) -> Self {
        Sampler { rng: SmallRng::seed_from_u64(seed.unwrap_or_else(rand::random)) }
    }

    pub fn sample(&mut self, logits: &[f32], p: &SamplingParams) -> u32 {
        if p.temperature == 0.0 {
            return crate::ops::argmax(logits) as u32;
        }
        let mut cand: Vec<(usize, f32)> = logits.iter().map(|&l| l / p.temperature).enumerate().collect();
        cand.sort_by(|a, b| b.1.total_cmp(&a.1));
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.truncate(p.top_k);
        }
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|c| (c.1 - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        let mut keep = probs.len();
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, &x) in probs.iter().enumerate() {
                acc += x;
                if acc >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p;
            keep = keep.min(probs.iter().take_while(|&&x| x >= floor).count().max(1));
        }
        let total: f32 = probs[..keep].iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for i in 0..keep {
            r -= probs[i];
            if r <= 0.0 {
                return cand[i].0 as u32;
            }
        }
        cand[keep - 1].0 as u32
    }
}
