//! The step's results applied to its sequences: computed tokens counted as cached, sampled
//! (and accepted draft) tokens emitted, full blocks registered for prefix sharing, rejected
//! drafts' blocks released.

use std::time::Instant;

use super::super::step_output::{emit, StepOutput};
use super::Scheduler;
use crate::load::SpecMethod;
use crate::runner::{Executor, RunnerOutput};
use crate::{Error, Result};

impl<E: Executor> Scheduler<E> {
    /// Apply `result` of the step that ran `plan` (running index, tokens) with `drafts` (per plan
    /// entry; empty without speculation) to the running sequences; tokens go to `out`.
    pub(super) fn apply(
        &mut self,
        plan: &[(usize, usize)],
        result: RunnerOutput,
        drafts: &[Vec<u32>],
        now: Instant,
        out: &mut StepOutput,
    ) -> Result<()> {
        let draft = |k: usize| drafts.get(k).map_or(&[][..], |d| d.as_slice());
        let bs = self.block_size;
        let draft_model = self.cfg.speculative.as_ref().is_some_and(|o| o.method == SpecMethod::Draft);
        let mut accepted = result.accepted.into_iter();
        for (k, (&(i, n), sampled)) in plan.iter().zip(result.sampled).enumerate() {
            let d = draft(k);
            let acc = accepted.next().unwrap_or_default();
            let s = &mut self.running[i];
            if s.cached < s.prompt_len || s.tokens.len() - s.cached > 1 {
                out.prefill_tokens += n; // a prompt chunk, or a recompute after preemption
            } else {
                out.decode_tokens += n;
            }
            s.cached += n;
            let end = s.cached;
            if let Some(x) = sampled {
                if acc.len() > d.len() {
                    return Err(Error::Msg(format!(
                        "sequence {}: {} drafts accepted of {}",
                        s.id,
                        acc.len(),
                        d.len()
                    )));
                }
                let emitted = acc.len() + 1;
                let before = out.tokens.len();
                for (j, x) in acc.into_iter().chain(std::iter::once(x)).enumerate() {
                    if j > 0 {
                        self.running[i].cached += 1; // an accepted draft: its KV was computed in this step
                    }
                    let t = emit(&mut self.running[i], x, now, &self.eos, self.cfg.max_seq_len);
                    let fin = t.finish.is_some();
                    out.tokens.push(t);
                    if fin {
                        break;
                    }
                }
                if !d.is_empty() {
                    let spec = &mut out.spec;
                    spec.verify_rows += 1;
                    spec.draft_tokens += d.len();
                    spec.accepted_tokens += emitted - 1;
                    spec.emitted_tokens += out.tokens.len() - before;
                }
            }
            let s = &mut self.running[i];
            if draft_model {
                s.draft_cached = super::super::spec::draft_cached_after(s, end, d.len());
            }
            let upto = if draft_model { s.draft_cached } else { s.cached };
            for (bi, hash) in s.new_full_blocks(bs, upto) {
                self.blocks.register(s.blocks[bi], hash, &s.tokens[bi * bs..(bi + 1) * bs]);
            }
            if !d.is_empty() {
                self.blocks.truncate(&mut s.blocks, s.cached);
            }
        }
        Ok(())
    }
}
