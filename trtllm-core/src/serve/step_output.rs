//! What a scheduler step produces: the tokens (with their stop conditions applied, one at a
//! time: a speculative step can emit several per sequence) and the step's counters; and the
//! structured-output masks computed while the forward runs.

use std::time::Instant;

use super::sequence::{FinishReason, Sequence};
use super::spec::SpecStats;
use crate::runner::{Sampled, TokenLogprob};
use crate::text::TokenMatcher;
use crate::Result;

/// A token a sequence produced in a step.
#[derive(Clone, Debug)]
pub struct TokenOut {
    pub seq: u64,
    pub token: u32,
    pub logprob: Option<TokenLogprob>,
    /// Set when this token ends the sequence (its blocks are already released).
    pub finish: Option<FinishReason>,
    /// The token is an EOS or stop id (its text is not part of the output); a sequence can also
    /// finish on an ordinary token (length, a completed grammar).
    pub stop_token: bool,
}

/// What one step did.
#[derive(Clone, Debug, Default)]
pub struct StepOutput {
    pub tokens: Vec<TokenOut>,
    /// Sequences that ran for the first time (left the queue), with the prompt tokens they took
    /// from the prefix cache.
    pub admitted: Vec<(u64, usize)>,
    pub preempted: Vec<u64>,
    pub prefill_tokens: usize,
    pub decode_tokens: usize,
    /// Seconds this step spent choosing its work (before the runner) and applying what it
    /// sampled (after), on the calling thread.
    pub host_s: f64,
    /// Seconds in [`Executor::execute`]: the forward and sampling, up to the sampled ids on the
    /// host.
    pub execute_s: f64,
    /// Speculative decoding: drafts proposed, accepted, tokens emitted, time in the draft model.
    pub spec: SpecStats,
}

/// Append the token `s` produced and apply its stop conditions (`eos`: the ids that end a
/// sequence; `max_seq_len`: the longest sequence).
pub(super) fn emit(s: &mut Sequence, x: Sampled, now: Instant, eos: &[u32], max_seq_len: usize) -> TokenOut {
    let tok = x.token;
    s.tokens.push(tok);
    s.first_token.get_or_insert(now);
    s.last_token = Some(now);
    let p = &s.params;
    let eos = eos.contains(&tok);
    let grammar = match s.matcher.as_mut() {
        Some(m) if !eos => Some(m.accept(tok).map(|_| m.is_finished())),
        _ => None,
    };
    let stop_token = (!p.ignore_eos && eos) || p.stop_token_ids.contains(&tok);
    let finish = if let Some(Err(e)) = &grammar {
        tracing::warn!(seq = s.id, "structured outputs: {e}; the sequence ends");
        Some(FinishReason::Abort)
    } else if stop_token || matches!(grammar, Some(Ok(true))) {
        Some(FinishReason::Stop)
    } else if s.num_generated() >= p.max_new_tokens || s.tokens.len() >= max_seq_len {
        Some(FinishReason::Length)
    } else {
        None
    };
    TokenOut { seq: s.id, token: tok, logprob: x.logprob, finish, stop_token }
}

/// The masks of the constrained rows (`(row, matcher)`), one entry per row of the step. A
/// matcher that fails (its grammar allows nothing here) gets a mask of the EOS ids: the
/// sequence ends rather than the step.
pub(super) fn masks_of(
    matchers: Vec<(usize, &mut TokenMatcher)>,
    rows: usize,
    eos: &[u32],
) -> Result<Vec<Option<Vec<u32>>>> {
    use rayon::prelude::*;
    let computed: Vec<(usize, Result<Vec<u32>>, usize)> =
        matchers.into_par_iter().map(|(r, m)| (r, m.mask(), m.vocab())).collect();
    let mut out = vec![None; rows];
    for (r, m, vocab) in computed {
        out[r] = Some(m.unwrap_or_else(|e| {
            tracing::warn!("{e}; only EOS is allowed");
            let mut w = vec![0u32; crate::text::mask_words(vocab)];
            for &t in eos.iter().filter(|&&t| (t as usize) < vocab) {
                w[t as usize / 32] |= 1 << (t % 32);
            }
            w
        }));
    }
    Ok(out)
}
