//! The scheduling policy against a fake runner: no model, no KV cache. The fake checks what a
//! real runner relies on (contiguous positions, block tables covering the step) and answers each
//! sampling row with `last token + 1`, so every sequence's output is predictable.

use std::sync::{Arc, Mutex};

use super::scheduler::{Scheduler, SchedulerConfig};
use super::sequence::{FinishReason, SeqRequest};
use crate::runner::{Executor, RunnerOutput, Sampled, SamplingParams, SchedulerOutput};
use crate::Result;

/// What one scheduled sequence was in a step: (first new token's position, new tokens, sampled?).
type Row = (usize, usize, bool);

struct FakeRunner {
    blocks: usize,
    block_size: usize,
    /// The KV the fake "holds": for each (block, offset) slot, the token last written there.
    slots: Vec<Option<u32>>,
    log: Arc<Mutex<Vec<Vec<Row>>>>,
}

impl FakeRunner {
    fn new(blocks: usize, block_size: usize) -> (Self, Arc<Mutex<Vec<Vec<Row>>>>) {
        let log = Arc::new(Mutex::new(vec![]));
        (FakeRunner { blocks, block_size, slots: vec![None; blocks * block_size], log: log.clone() }, log)
    }
}

impl Executor for FakeRunner {
    fn execute(&mut self, step: SchedulerOutput<'_>) -> Result<RunnerOutput> {
        let mut rows = vec![];
        let mut out = RunnerOutput::default();
        for s in step.seqs {
            let end = s.start_pos + s.tokens.len();
            assert!(s.block_table.len() * self.block_size >= end, "block table too short for {end} tokens");
            // Earlier positions must already hold KV (computed, or taken from the prefix cache).
            for p in 0..s.start_pos {
                let slot =
                    s.block_table[p / self.block_size] as usize * self.block_size + p % self.block_size;
                assert!(self.slots[slot].is_some(), "position {p} has no KV");
            }
            for (j, &t) in s.tokens.iter().enumerate() {
                let p = s.start_pos + j;
                let slot =
                    s.block_table[p / self.block_size] as usize * self.block_size + p % self.block_size;
                self.slots[slot] = Some(t);
            }
            rows.push((s.start_pos, s.tokens.len(), s.sample.is_some()));
            out.sampled
                .push(s.sample.map(|_| Sampled { token: s.tokens[s.tokens.len() - 1] + 1, logprob: None }));
        }
        self.log.lock().expect("log").push(rows);
        Ok(out)
    }
    fn kv_blocks(&self) -> (usize, usize) {
        (self.blocks, self.block_size)
    }
    fn vocab_size(&self) -> usize {
        1 << 20
    }
}

fn req(id: u64, prompt: Vec<u32>, new: usize) -> SeqRequest {
    let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(new) };
    SeqRequest { id, prompt, params: Arc::new(params), seed: None }
}

/// Steps until idle: every sequence's generated tokens, and how each finished.
fn run(s: &mut Scheduler<FakeRunner>) -> std::collections::BTreeMap<u64, (Vec<u32>, FinishReason)> {
    let mut out = std::collections::BTreeMap::<u64, (Vec<u32>, FinishReason)>::new();
    for _ in 0..10_000 {
        if !s.has_work() {
            return out;
        }
        for t in s.step().expect("step").tokens {
            let e = out.entry(t.seq).or_insert((vec![], FinishReason::Abort));
            e.0.push(t.token);
            if let Some(f) = t.finish {
                e.1 = f;
            }
        }
    }
    panic!("the scheduler did not finish");
}

fn cfg(max_batch_size: usize, max_num_tokens: usize, prefix_caching: bool) -> SchedulerConfig {
    SchedulerConfig { max_batch_size, max_num_tokens, max_seq_len: 1024, prefix_caching, speculative: None }
}

#[test]
fn admission_is_fcfs_and_capped_by_max_batch_size() {
    let (fake, log) = FakeRunner::new(64, 4);
    let mut s = Scheduler::new(fake, cfg(2, 1000, false), vec![]).expect("scheduler");
    for id in 0..3 {
        s.add(req(id, vec![10 * id as u32 + 1; 5], 3)).expect("add");
    }
    let first = s.step().expect("step");
    assert_eq!(
        first.admitted.iter().map(|a| a.0).collect::<Vec<_>>(),
        vec![0, 1],
        "two fit, in arrival order"
    );
    assert_eq!((s.num_running(), s.num_waiting()), (2, 1));
    let mut out = run(&mut s);
    for t in first.tokens {
        out.get_mut(&t.seq).expect("seq").0.insert(0, t.token);
    }
    // Each output continues `last + 1`; every sequence ran to its length.
    assert_eq!(out[&0], (vec![2, 3, 4], FinishReason::Length));
    assert_eq!(out[&2], (vec![22, 23, 24], FinishReason::Length));
    let log = log.lock().expect("log");
    assert_eq!(log[0], vec![(0, 5, true), (0, 5, true)], "both prefills in one step");
    assert!(log.iter().all(|step| step.len() <= 2), "never more than max_batch_size rows");
}

#[test]
fn chunked_prefill_splits_long_prompts_by_the_token_budget() {
    let (fake, log) = FakeRunner::new(64, 4);
    let mut s = Scheduler::new(fake, cfg(4, 8, false), vec![]).expect("scheduler");
    s.add(req(0, (1..=20).collect(), 2)).expect("add");
    let out = run(&mut s);
    assert_eq!(out[&0].0, vec![21, 22]);
    let log = log.lock().expect("log");
    // 20 prompt tokens in chunks of 8, 8, 4: only the last chunk samples.
    assert_eq!(log[0], vec![(0, 8, false)]);
    assert_eq!(log[1], vec![(8, 8, false)]);
    assert_eq!(log[2], vec![(16, 4, true)]);
    assert_eq!(log[3], vec![(20, 1, true)]);
}

#[test]
fn decode_rows_come_before_new_prefill_in_the_budget() {
    let (fake, log) = FakeRunner::new(64, 4);
    let mut s = Scheduler::new(fake, cfg(4, 6, false), vec![]).expect("scheduler");
    s.add(req(0, vec![1, 2, 3], 4)).expect("add");
    s.step().expect("prefill 0");
    s.add(req(1, (1..=12).collect(), 1)).expect("add");
    s.step().expect("mixed step");
    let log = log.lock().expect("log");
    assert_eq!(log[1], vec![(3, 1, true), (0, 5, false)], "one decode token, then 5 of the new prompt");
}

#[test]
fn preemption_recomputes_and_the_output_is_unchanged() {
    // 6 blocks of 4 tokens: two sequences of 8 prompt + 8 new tokens (4 blocks each) cannot both
    // run to the end; the later one is preempted, requeued and recomputed.
    let (fake, _log) = FakeRunner::new(6, 4);
    let mut s = Scheduler::new(fake, cfg(4, 64, false), vec![]).expect("scheduler");
    s.add(req(0, vec![100; 8], 8)).expect("add");
    s.add(req(1, vec![200; 8], 8)).expect("add");
    let mut preempted = vec![];
    let mut out = std::collections::BTreeMap::<u64, Vec<u32>>::new();
    while s.has_work() {
        let st = s.step().expect("step");
        preempted.extend(st.preempted);
        for t in st.tokens {
            out.entry(t.seq).or_default().push(t.token);
        }
    }
    assert_eq!(preempted, vec![1], "the most recently admitted sequence gives way");
    assert_eq!(out[&0], (101..=108).collect::<Vec<_>>());
    assert_eq!(out[&1], (201..=208).collect::<Vec<_>>(), "recompute continues where it was");
    assert_eq!(s.blocks().num_available(), 6, "every block back");
}

#[test]
fn prefix_reuse_skips_the_cached_blocks() {
    let (fake, log) = FakeRunner::new(64, 4);
    let mut s = Scheduler::new(fake, cfg(4, 64, true), vec![]).expect("scheduler");
    let prompt: Vec<u32> = (1..=10).collect();
    s.add(req(0, prompt.clone(), 2)).expect("add");
    run(&mut s);
    s.add(req(1, prompt, 2)).expect("add");
    let st = s.step().expect("step");
    // Two full blocks (8 tokens) come from the cache; the prefill computes the last 2.
    assert_eq!(st.admitted, vec![(1, 8)]);
    assert_eq!(log.lock().expect("log").last().expect("step").clone(), vec![(8, 2, true)]);
    assert_eq!(run(&mut s)[&1].0, vec![12]);
}

#[test]
fn requests_that_can_never_fit_are_refused_with_their_id() {
    let (fake, _log) = FakeRunner::new(4, 4);
    let mut s = Scheduler::new(fake, cfg(4, 64, false), vec![]).expect("scheduler");
    let e = s.add(req(7, vec![1; 10], 10)).expect_err("20 tokens > 16 slots").to_string();
    assert!(e.contains("sequence 7") && e.contains("exceed"), "{e}");
    let e = s.add(req(8, vec![], 1)).expect_err("empty").to_string();
    assert!(e.contains("sequence 8") && e.contains("empty"), "{e}");
}

#[test]
fn eos_and_stop_ids_end_a_sequence() {
    let (fake, _log) = FakeRunner::new(64, 4);
    let mut s = Scheduler::new(fake, cfg(4, 64, false), vec![5]).expect("scheduler");
    let p = SamplingParams { stop_token_ids: vec![13], ..SamplingParams::greedy(50) };
    s.add(SeqRequest { id: 0, prompt: vec![2], params: Arc::new(p.clone()), seed: None }).expect("add");
    s.add(SeqRequest { id: 1, prompt: vec![10], params: Arc::new(p), seed: None }).expect("add");
    let out = run(&mut s);
    assert_eq!(out[&0], (vec![3, 4, 5], FinishReason::Stop), "EOS 5");
    assert_eq!(out[&1], (vec![11, 12, 13], FinishReason::Stop), "stop id 13");
}
