//! One sequence in the scheduler: its tokens (prompt + generated), how many of them have KV in
//! the cache, its blocks, its sampling state and its timing.

use std::sync::Arc;
use std::time::Instant;

use super::prefix_cache::block_hash;
use crate::runner::{Sampler, SamplingParams};
use crate::text::TokenMatcher;

/// Why a sequence stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_new_tokens` reached (OpenAI `length`).
    Length,
    /// An EOS / stop token or a stop string (OpenAI `stop`).
    Stop,
    /// Cancelled by the client, or failed.
    Abort,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::Stop => "stop",
            FinishReason::Abort => "abort",
        }
    }
}

/// A sequence the scheduler is asked to run.
#[derive(Clone, Debug)]
pub struct SeqRequest {
    /// Unique among live sequences; chosen by the caller.
    pub id: u64,
    pub prompt: Vec<u32>,
    pub params: Arc<SamplingParams>,
    /// Seed of this sequence's sampler (`params.seed + index` for the `n` of a request).
    pub seed: Option<u64>,
}

pub(crate) struct Sequence {
    pub id: u64,
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Tokens whose K/V are in the cache.
    pub cached: usize,
    /// Tokens whose K/V are in the draft model's cache (speculative decoding with a draft model).
    pub draft_cached: usize,
    pub blocks: Vec<u32>,
    /// Leading full blocks already registered in the prefix cache, and the hash of the last.
    pub registered: usize,
    pub last_hash: u64,
    pub params: Arc<SamplingParams>,
    pub sampler: Sampler,
    pub first_token: Option<Instant>,
    pub last_token: Option<Instant>,
    pub preemptions: usize,
    /// Prompt tokens served from the prefix cache at (last) admission.
    pub cached_prompt_tokens: usize,
    /// Where the output is in its grammar (structured outputs); advanced on each sampled token.
    pub matcher: Option<TokenMatcher>,
}

impl Sequence {
    pub fn new(r: SeqRequest) -> Self {
        let matcher = r.params.grammar.as_ref().map(|g| g.matcher());
        Sequence {
            id: r.id,
            prompt_len: r.prompt.len(),
            tokens: r.prompt,
            cached: 0,
            draft_cached: 0,
            blocks: vec![],
            registered: 0,
            last_hash: 0,
            params: r.params,
            sampler: Sampler::new(r.seed),
            first_token: None,
            last_token: None,
            preemptions: 0,
            cached_prompt_tokens: 0,
            matcher,
        }
    }

    pub fn num_generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    /// Tokens still to be computed before the next sample (1 for a decode).
    pub fn uncomputed(&self) -> usize {
        self.tokens.len() - self.cached
    }

    /// Hashes of the full blocks computed up to token `upto` (at most `cached`) not registered
    /// yet: `(block index, hash)`.
    pub fn new_full_blocks(&mut self, block_size: usize, upto: usize) -> Vec<(usize, u64)> {
        let mut out = vec![];
        while (self.registered + 1) * block_size <= upto.min(self.cached) {
            let i = self.registered;
            self.last_hash = block_hash(self.last_hash, &self.tokens[i * block_size..(i + 1) * block_size]);
            out.push((i, self.last_hash));
            self.registered += 1;
        }
        out
    }

    /// Back to the start (preemption by recompute): no blocks, nothing cached.
    pub fn reset(&mut self) {
        self.cached = 0;
        self.draft_cached = 0;
        self.registered = 0;
        self.last_hash = 0;
        self.preemptions += 1;
    }
}
