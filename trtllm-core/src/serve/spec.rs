//! The scheduler's side of speculative decoding: how many draft tokens each sequence gets this
//! step, where they come from (prompt lookup over its tokens, or the executor's draft model),
//! and the blocks they need. Verification is the runner's (`runner::spec::verify`); the
//! scheduler appends what was accepted and gives back the blocks past it (`Scheduler::step`).
//!
//! A sequence speculates in a step that samples it (a decode, or the end of its prompt) unless
//! it is under a grammar (the masks follow the matcher token by token). Its drafts are capped by
//! `max_new_tokens` (the step emits at most `1 + drafts` tokens), `max_seq_len`, the step's
//! token budget and the free blocks: no other sequence is preempted for a draft.
//!
//! With a draft model, its KV cache follows the target's through the same block tables: every
//! scheduled chunk is also run through the draft (`Sequence::draft_cached` counts the tokens
//! whose draft KV is computed), and a block is registered in the prefix cache only once both
//! caches hold it.

use super::prefix_cache::BlockManager;
use super::sequence::Sequence;
use crate::load::{SpecMethod, SpecOptions};
use crate::runner::spec::{ngram, DraftChunk};
use crate::runner::Executor;
use crate::Result;

/// What speculation did in one step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SpecStats {
    /// Sequences that verified at least one draft token.
    pub verify_rows: usize,
    /// Draft tokens proposed and verified.
    pub draft_tokens: usize,
    /// Of those, accepted.
    pub accepted_tokens: usize,
    /// Tokens the verifying sequences emitted (accepted + one of the target's own each, fewer
    /// where a sequence finished inside its drafts).
    pub emitted_tokens: usize,
    /// Seconds in the draft model (0 for prompt lookup).
    pub draft_s: f64,
}

impl SpecStats {
    pub fn add(&mut self, o: &SpecStats) {
        self.verify_rows += o.verify_rows;
        self.draft_tokens += o.draft_tokens;
        self.accepted_tokens += o.accepted_tokens;
        self.emitted_tokens += o.emitted_tokens;
        self.draft_s += o.draft_s;
    }
    /// Accepted / proposed draft tokens.
    pub fn acceptance_rate(&self) -> f64 {
        self.accepted_tokens as f64 / self.draft_tokens.max(1) as f64
    }
    /// Tokens per verifying sequence-step (1 without speculation).
    pub fn tokens_per_step(&self) -> f64 {
        if self.verify_rows == 0 {
            return 1.0;
        }
        self.emitted_tokens as f64 / self.verify_rows as f64
    }
}

/// Most drafts `s` may verify this step when it computes its next `n` tokens (then samples),
/// with `budget` tokens of the step left.
fn draft_cap(s: &Sequence, n: usize, opts: &SpecOptions, max_seq_len: usize, budget: usize) -> usize {
    if s.cached + n != s.tokens.len() || s.matcher.is_some() {
        return 0;
    }
    let left = s.params.max_new_tokens.saturating_sub(s.num_generated() + 1);
    opts.num_tokens.min(left).min(max_seq_len.saturating_sub(s.tokens.len())).min(budget)
}

/// The drafts of this step's plan (`(index in running, new tokens)`), one list per plan entry;
/// blocks are grown to hold them. With a draft model this also runs every planned chunk
/// through it (its KV follows the target's).
pub(crate) fn propose<E: Executor>(
    runner: &mut E,
    blocks: &mut BlockManager,
    running: &mut [Sequence],
    plan: &[(usize, usize)],
    opts: &SpecOptions,
    max_seq_len: usize,
    mut budget: usize,
) -> Result<(Vec<Vec<u32>>, f64)> {
    let lookup = opts.method == SpecMethod::Ngram;
    let mut caps = Vec::with_capacity(plan.len());
    let mut lookups = Vec::with_capacity(plan.len());
    for &(i, n) in plan {
        let s = &mut running[i];
        let cap = draft_cap(s, n, opts, max_seq_len, budget);
        let mut d = vec![];
        if lookup && cap > 0 {
            d = ngram::propose(&s.tokens, cap, opts.prompt_lookup_min, opts.prompt_lookup_max);
        }
        let mut k = if lookup { d.len() } else { cap };
        if k > 0 && !blocks.try_grow(&mut s.blocks, s.tokens.len() + k)? {
            k = 0;
            d.clear();
        }
        budget -= k;
        caps.push(k);
        lookups.push(d);
    }
    match opts.method {
        SpecMethod::Ngram => Ok((lookups, 0.0)),
        SpecMethod::Draft => {
            let t0 = std::time::Instant::now();
            let chunks: Vec<DraftChunk<'_>> = plan
                .iter()
                .zip(&caps)
                .map(|(&(i, n), &k)| {
                    let s = &running[i];
                    let from = s.draft_cached.min(s.cached);
                    DraftChunk {
                        tokens: &s.tokens[from..s.cached + n],
                        start_pos: from,
                        block_table: &s.blocks,
                        k,
                    }
                })
                .collect();
            let drafts = runner.draft(&chunks)?;
            Ok((drafts, t0.elapsed().as_secs_f64()))
        }
    }
}

/// Tokens whose draft KV is computed after a step that ran `s`'s chunk up to `end` (its tokens
/// before the step) with `k` drafts, of which the sequence kept `s.cached - end` (accepted):
/// the draft computed the chunk and its first `k - 1` drafts.
pub(crate) fn draft_cached_after(s: &Sequence, end: usize, k: usize) -> usize {
    if k == 0 {
        end
    } else {
        s.cached.min(end + k - 1)
    }
}
