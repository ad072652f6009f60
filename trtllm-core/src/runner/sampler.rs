//! Sampling: greedy, temperature, top-k, top-p, min-p, seeded. The serving fields (stop strings,
//! `n`, logprobs, penalties) are applied by the scheduler (`runtime/scheduler.rs`,
//! `runtime/logits.rs`); `Llm::generate` uses the others.

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
    /// Structured outputs: every sampled token keeps the output inside this grammar; the
    /// sequence stops when the grammar is complete. Each sequence of `n` walks it on its own.
    pub grammar: Option<std::sync::Arc<crate::text::Grammar>>,
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
            grammar: None,
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
    /// More than greedy argmax: temperature, logprobs or penalties (the sampling kernel, not argmax).
    pub fn needs_sampler(&self) -> bool {
        self.temperature != 0.0 || self.logprobs.is_some() || self.has_penalties()
    }

    pub fn has_penalties(&self) -> bool {
        self.presence_penalty != 0.0 || self.frequency_penalty != 0.0 || self.repetition_penalty != 1.0
    }
}

/// One sequence's sampling seed. Sampling is counter-based (Philox keyed by the seed, counter =
/// the index of the token being generated), so a seed gives the same tokens whatever the batch
/// around the sequence, on the CPU and on the GPU (`runner/sampling.rs`).
#[derive(Clone, Copy, Debug)]
pub struct Sampler {
    seed: u64,
}

impl Sampler {
    /// `None`: a random seed.
    pub fn new(seed: Option<u64>) -> Self {
        Sampler { seed: seed.unwrap_or_else(rand::random) }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }
}
