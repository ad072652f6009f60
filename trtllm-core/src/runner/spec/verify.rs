//! Verification of draft tokens. A sequence with K drafts `d_1..d_K` after its last token has
//! K + 1 logit rows in the step; row `j` is the target's distribution `p_j` for the token after
//! `d_1..d_j`. Each row is chosen by the ordinary sampler as if decoding normally: argmax for
//! greedy rows, else the seeded sampler with the counter of the token's own index and the
//! penalties over the output up to `d_j`. Drafts are accepted while `d_{j+1}` equals row `j`'s
//! token; the sequence emits the accepted drafts and the token of the first row that differed
//! (or of row K when all were accepted).
//!
//! Drafts here are point masses (`q = δ_d`: prompt lookup, and a draft model's greedy token), for
//! which this is the standard rejection rule: `d` is accepted with probability
//! `min(1, p(d) / q(d)) = p(d)`, and on rejection the token is distributed as
//! `norm(max(0, p - q))` = `p` conditioned on `≠ d` — exactly the law of a token drawn from `p`
//! given that it is not `d`. So every emitted token has the distribution plain decoding gives it,
//! and a seeded request emits the very tokens plain decoding would (same rows, same counters).

use super::super::model_runner::{RunnerOutput, SampleInput, Sampled, ScheduledSeq};
use super::super::sampling::{sample_host_row, DeviceSampler};
use crate::{DType, Result, Tensor};

/// Logit rows of each scheduled sequence: `1 + drafts` when it samples.
pub fn rows_per_seq(seqs: &[ScheduledSeq<'_>]) -> Vec<usize> {
    seqs.iter().map(|s| 1 + if s.sample.is_some() { s.draft } else { 0 }).collect()
}

/// How many drafts are accepted given the tokens the target chose at each row (`chosen.len()`
/// = drafts + 1): the length of the common prefix.
pub fn accepted(drafts: &[u32], chosen: &[u32]) -> usize {
    drafts.iter().zip(chosen).take_while(|(d, c)| d == c).count()
}

/// The tokens of a step whose sequences may carry drafts: `logits` `[rows, vocab]`, rows as
/// [`rows_per_seq`]. Per sequence the target's token after the accepted drafts
/// (`sampled`), and the accepted drafts with their logprobs (`accepted`).
pub(in crate::runner) fn verify(
    ds: Option<&mut DeviceSampler>,
    logits: &Tensor,
    seqs: &[ScheduledSeq<'_>],
) -> Result<RunnerOutput> {
    // The output each row's sampler sees: the sequence's output, then the drafts before it.
    let mut exts: Vec<Vec<u32>> = vec![];
    for s in seqs {
        if let Some(x) = &s.sample {
            let d = &s.tokens[s.tokens.len() - s.draft..];
            for j in 1..=s.draft {
                exts.push([x.output, &d[..j]].concat());
            }
        }
    }
    let mut ext = exts.iter();
    let mut rows: Vec<(u64, Option<SampleInput<'_>>)> = vec![];
    for s in seqs {
        let Some(x) = &s.sample else {
            rows.push((s.id, None));
            continue;
        };
        rows.push((
            s.id,
            Some(SampleInput { params: x.params, prompt: x.prompt, output: x.output, sampler: x.sampler }),
        ));
        for _ in 0..s.draft {
            let output = ext.next().map_or(&[][..], |v| v.as_slice());
            rows.push((
                s.id,
                Some(SampleInput { params: x.params, prompt: x.prompt, output, sampler: x.sampler }),
            ));
        }
    }
    let chosen = choose(ds, logits, seqs, &rows)?;
    let mut out = RunnerOutput::default();
    let mut r = 0;
    for (s, n) in seqs.iter().zip(rows_per_seq(seqs)) {
        let row = &chosen[r..r + n];
        r += n;
        if s.sample.is_none() {
            out.sampled.push(None);
            out.accepted.push(vec![]);
            continue;
        }
        let tokens: Vec<u32> = row.iter().map(|c| c.as_ref().map_or(u32::MAX, |c| c.token)).collect();
        let a = accepted(&s.tokens[s.tokens.len() - s.draft..], &tokens);
        out.accepted.push(row[..a].iter().flatten().cloned().collect());
        out.sampled.push(row[a].clone());
    }
    Ok(out)
}

/// Every row's token: argmax when no row needs the sampler; the device sampler when the logits
/// are on the GPU and no drafted row uses penalties (the device token state holds one slot per
/// sequence, not per row); else the host sampler, row by row.
fn choose(
    ds: Option<&mut DeviceSampler>,
    logits: &Tensor,
    seqs: &[ScheduledSeq<'_>],
    rows: &[(u64, Option<SampleInput<'_>>)],
) -> Result<Vec<Option<Sampled>>> {
    let random = rows.iter().any(|r| r.1.as_ref().is_some_and(|x| x.params.needs_sampler()));
    if !random {
        let ids = crate::ops::argmax_rows(logits)?;
        return Ok(rows
            .iter()
            .zip(ids)
            .map(|(r, token)| r.1.as_ref().map(|_| Sampled { token, logprob: None }))
            .collect());
    }
    let refs: Vec<(u64, Option<&SampleInput<'_>>)> = rows.iter().map(|(id, x)| (*id, x.as_ref())).collect();
    let drafted_penalties =
        |s: &&ScheduledSeq<'_>| s.draft > 0 && s.sample.as_ref().is_some_and(|x| x.params.has_penalties());
    let host_only = seqs.iter().any(|s| drafted_penalties(&s));
    match ds {
        Some(ds) if logits.devbuf().is_some() && !host_only => ds.sample(logits, &refs),
        ds => {
            if let Some(ds) = ds {
                // Sampled on the host: their device token state would miss these tokens; the
                // slot is filled again from the sequence at its next device sample.
                for s in seqs.iter().filter(|s| s.sample.as_ref().is_some_and(|x| x.params.has_penalties())) {
                    ds.release(s.id);
                }
            }
            let host = logits.to_cpu()?.to_dtype(DType::F32)?;
            let (v, h) = (host.dim(1), host.f32s()?);
            Ok(refs
                .iter()
                .enumerate()
                .map(|(r, (_, x))| x.map(|x| sample_host_row(&h[r * v..(r + 1) * v], x)))
                .collect())
        }
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
