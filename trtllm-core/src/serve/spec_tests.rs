//! Speculative decoding in the scheduler against a fake runner whose "model" is a known rule:
//! the token after `t` at position `p` is `next(t, p)`. The fake checks, before every step, that
//! the KV it would attend to (target cache, and draft cache for the draft model) holds exactly
//! the sequence's tokens (a rejected draft left visible, or reused from the prefix cache, breaks
//! the chain), verifies drafts by the rule, and its draft model proposes by the rule with
//! deliberate mistakes. Outputs must equal plain decoding's; blocks all come back.

use std::sync::Arc;

use super::scheduler::{Scheduler, SchedulerConfig};
use super::sequence::SeqRequest;
use crate::load::SpecOptions;
use crate::runner::spec::DraftChunk;
use crate::runner::{Executor, RunnerOutput, Sampled, SamplingParams, SchedulerOutput};
use crate::Result;

const VOCAB: u32 = 40;

/// The rule: a cycle through the vocabulary whose stride changes every 16 positions, so prompt
/// lookup is right inside a stretch and wrong across its end.
fn next(t: u32, p: usize) -> u32 {
    (t * 7 + 3 + (p / 16) as u32) % VOCAB
}

fn chain(first: u32, len: usize) -> Vec<u32> {
    let mut v = vec![first];
    while v.len() < len {
        let p = v.len() - 1;
        v.push(next(v[p], p));
    }
    v
}

struct Fake {
    bs: usize,
    blocks: usize,
    kv: Vec<Option<u32>>,
    draft_kv: Vec<Option<u32>>,
    draft_calls: usize,
}

impl Fake {
    fn new(blocks: usize, bs: usize) -> Self {
        Fake { bs, blocks, kv: vec![None; blocks * bs], draft_kv: vec![None; blocks * bs], draft_calls: 0 }
    }
}

/// Checks that positions `0..start` of `table` in `kv` hold a chain ending in `first` (the
/// chunk's first token at `start`), then writes the chunk.
fn check_write(kv: &mut [Option<u32>], bs: usize, table: &[u32], start: usize, tokens: &[u32], what: &str) {
    let slot = |p: usize| table[p / bs] as usize * bs + p % bs;
    for p in 0..start {
        let t = kv[slot(p)].unwrap_or_else(|| panic!("{what}: position {p} has no KV"));
        let after = if p + 1 < start { kv[slot(p + 1)].expect("kv") } else { tokens[0] };
        assert_eq!(next(t, p), after, "{what}: KV at position {p} is not the sequence's");
    }
    for (j, &t) in tokens.iter().enumerate() {
        kv[slot(start + j)] = Some(t);
    }
}

impl Executor for Fake {
    fn execute(&mut self, step: SchedulerOutput<'_>) -> Result<RunnerOutput> {
        let mut out = RunnerOutput::default();
        for s in step.seqs {
            check_write(&mut self.kv, self.bs, s.block_table, s.start_pos, s.tokens, "target");
            let Some(_) = s.sample else {
                out.sampled.push(None);
                out.accepted.push(vec![]);
                continue;
            };
            let base = s.tokens.len() - 1 - s.draft;
            let pos0 = s.start_pos + base;
            let mut acc = vec![];
            let mut j = 0;
            loop {
                let t = next(s.tokens[base + j], pos0 + j);
                if j < s.draft && s.tokens[base + j + 1] == t {
                    acc.push(Sampled { token: t, logprob: None });
                    j += 1;
                    continue;
                }
                out.sampled.push(Some(Sampled { token: t, logprob: None }));
                break;
            }
            out.accepted.push(acc);
        }
        Ok(out)
    }
    fn kv_blocks(&self) -> (usize, usize) {
        (self.blocks, self.bs)
    }
    fn vocab_size(&self) -> usize {
        VOCAB as usize
    }
    fn draft(&mut self, chunks: &[DraftChunk<'_>]) -> Result<Vec<Vec<u32>>> {
        self.draft_calls += 1;
        let mut out = vec![];
        for c in chunks {
            check_write(&mut self.draft_kv, self.bs, c.block_table, c.start_pos, c.tokens, "draft");
            let mut d = vec![];
            let (mut t, mut p) = (c.tokens[c.tokens.len() - 1], c.start_pos + c.tokens.len() - 1);
            for j in 0..c.k {
                // Every fifth position the draft is wrong.
                let n = if p % 5 == 0 { (next(t, p) + 1) % VOCAB } else { next(t, p) };
                if j + 1 < c.k {
                    // The draft writes the KV of its own tokens as it goes (not the last).
                    let slot = c.block_table[(p + 1) / self.bs] as usize * self.bs + (p + 1) % self.bs;
                    self.draft_kv[slot] = Some(n);
                }
                d.push(n);
                (t, p) = (n, p + 1);
            }
            out.push(d);
        }
        Ok(out)
    }
}

fn run(spec: Option<SpecOptions>, prefix_caching: bool, blocks: usize) -> (Vec<Vec<u32>>, usize) {
    let cfg = SchedulerConfig {
        max_batch_size: 4,
        max_num_tokens: 24,
        max_seq_len: 200,
        prefix_caching,
        speculative: spec,
    };
    let mut s = Scheduler::new(Fake::new(blocks, 4), cfg, vec![]).expect("scheduler");
    // Pairs of equal prompts (prefix-cache hits), of lengths that end inside and at a block.
    let prompts: Vec<Vec<u32>> = (0..8).map(|i| chain(1 + (i / 2) as u32 * 3, 9 + 4 * (i % 3))).collect();
    let add = |s: &mut Scheduler<Fake>, i: usize| {
        let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(30 + i) };
        s.add(SeqRequest { id: i as u64, prompt: prompts[i].clone(), params: Arc::new(params), seed: None })
            .expect("add");
    };
    let mut out = vec![vec![]; prompts.len()];
    let mut steps = 0;
    add(&mut s, 0);
    add(&mut s, 2);
    while s.has_work() || steps < 8 {
        if steps < 6 {
            add(&mut s, [1, 3, 4, 5, 6, 7][steps]);
        }
        for t in s.step().expect("step").tokens {
            out[t.seq as usize].push(t.token);
        }
        steps += 1;
        assert!(steps < 1000);
    }
    assert_eq!(s.blocks().num_available(), s.blocks().num_total(), "blocks leaked");
    let calls = s.runner().draft_calls;
    for (i, o) in out.iter().enumerate() {
        let full = chain(prompts[i][0], prompts[i].len() + o.len());
        assert_eq!(o[..], full[prompts[i].len()..], "sequence {i} is not the rule's continuation");
        assert_eq!(o.len(), 30 + i);
    }
    (out, calls)
}

#[test]
fn speculation_keeps_outputs_kv_and_prefix_cache_exact() {
    for caching in [false, true] {
        for blocks in [200, 40] {
            let (plain, _) = run(None, caching, blocks);
            for k in [1, 3, 6] {
                let (ngram, _) = run(Some(SpecOptions::ngram(k)), caching, blocks);
                assert_eq!(ngram, plain, "ngram K = {k}, prefix caching {caching}, {blocks} blocks");
                let (draft, calls) = run(Some(SpecOptions::draft("fake", k)), caching, blocks);
                assert_eq!(draft, plain, "draft K = {k}, prefix caching {caching}, {blocks} blocks");
                assert!(calls > 0);
            }
        }
    }
}
