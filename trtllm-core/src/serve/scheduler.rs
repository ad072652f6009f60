//! The continuous-batching scheduler: each [`Scheduler::step`] packs the decode tokens of the
//! running sequences and chunks of prefill of new or partially prefilled ones into one
//! [`ForwardBatch`], under a budget of `max_num_tokens` tokens and `max_batch_size` sequences.
//!
//! - **FCFS.** Running sequences are served in admission order, then waiting ones in arrival
//!   order; a waiting sequence is admitted only when its next chunk's blocks are available and
//!   nothing was preempted in this step.
//! - **Chunked prefill.** A prompt longer than the remaining budget is computed over several
//!   steps; only the step that completes it samples.
//! - **Preemption by recompute.** When a running sequence needs a block and none is left, the
//!   most recently admitted running sequence gives back its blocks and goes to the front of the
//!   queue with all its tokens so far; when readmitted it prefills them again (largely from the
//!   prefix cache) and continues where it was.
//! - **Prefix caching** ([`BlockManager`]): full computed blocks are registered by hash; a new
//!   sequence starts with the cached blocks of its prompt and skips their prefill.
//!
//! The scheduler only decides: each step hands the chosen work to an [`Executor`] (the
//! [`crate::runner::ModelRunner`], or a fake in tests) and applies what it sampled: stop
//! conditions, block registration in the prefix cache, retirement.

mod apply;

use std::collections::VecDeque;
use std::time::Instant;

use super::prefix_cache::BlockManager;
use super::sequence::{SeqRequest, Sequence};
use super::step_output::{masks_of, StepOutput, TokenOut};
use crate::load::SpecOptions;
use crate::runner::{Executor, ModelRunner, SampleInput, ScheduledSeq, SchedulerOutput};
use crate::text::TokenMatcher;
use crate::{Error, Result};
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Most sequences in one step.
    pub max_batch_size: usize,
    /// Most tokens (prefill + decode) in one step.
    pub max_num_tokens: usize,
    /// Longest sequence (prompt + generated).
    pub max_seq_len: usize,
    pub prefix_caching: bool,
    /// Speculative decoding (`serve::spec`); `None`: one token per sequence and step.
    pub speculative: Option<SpecOptions>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_batch_size: 64,
            max_num_tokens: 2048,
            max_seq_len: 4096,
            prefix_caching: true,
            speculative: None,
        }
    }
}

/// The scheduler over the runner `E` that executes its steps.
pub struct Scheduler<E: Executor = ModelRunner> {
    runner: E,
    block_size: usize,
    num_blocks: usize,
    blocks: BlockManager,
    cfg: SchedulerConfig,
    waiting: VecDeque<Sequence>,
    running: Vec<Sequence>,
    eos: Vec<u32>,
    /// Buffers reused from step to step (no per-step allocation that grows with the batch):
    /// the plan, and an emptied token vector handed back by the caller.
    plan_buf: Vec<(usize, usize)>,
    spare_tokens: Vec<TokenOut>,
}

impl<E: Executor> Scheduler<E> {
    /// A scheduler whose steps `runner` executes. `eos`: the ids that end a sequence.
    pub fn new(runner: E, cfg: SchedulerConfig, eos: Vec<u32>) -> Result<Self> {
        if cfg.max_batch_size == 0 || cfg.max_num_tokens == 0 || cfg.max_seq_len == 0 {
            return Err(Error::Request(
                "max_batch_size, max_num_tokens and max_seq_len must be positive".into(),
            ));
        }
        if let Some(o) = &cfg.speculative {
            o.check()?;
        }
        let (num_blocks, block_size) = runner.kv_blocks();
        let blocks = BlockManager::new(num_blocks, block_size, cfg.prefix_caching);
        Ok(Scheduler {
            runner,
            block_size,
            num_blocks,
            blocks,
            cfg,
            waiting: VecDeque::new(),
            running: vec![],
            eos,
            plan_buf: vec![],
            spare_tokens: vec![],
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }
    pub fn vocab_size(&self) -> usize {
        self.runner.vocab_size()
    }
    pub fn runner(&self) -> &E {
        &self.runner
    }
    pub fn runner_mut(&mut self) -> &mut E {
        &mut self.runner
    }
    pub fn blocks_mut(&mut self) -> &mut BlockManager {
        &mut self.blocks
    }
    pub fn blocks(&self) -> &BlockManager {
        &self.blocks
    }
    pub fn block_size(&self) -> usize {
        self.block_size
    }
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }
    pub fn num_running(&self) -> usize {
        self.running.len()
    }
    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    /// Longest prompt + output that can ever run: the model's and the config's limits, and the
    /// whole cache (a sequence alone must fit, or preemption could never make room).
    pub fn max_total_tokens(&self) -> usize {
        self.cfg.max_seq_len.min(self.num_blocks * self.block_size)
    }

    /// Queue a sequence. Errors name the sequence and what is wrong with it.
    pub fn add(&mut self, r: SeqRequest) -> Result<()> {
        let total = r.prompt.len() + r.params.max_new_tokens;
        if r.prompt.is_empty() {
            return Err(Error::Request(format!("sequence {}: empty prompt", r.id)));
        }
        if total > self.max_total_tokens() {
            return Err(Error::Request(format!(
                "sequence {}: {} prompt tokens + {} new tokens exceed the limit of {}",
                r.id,
                r.prompt.len(),
                r.params.max_new_tokens,
                self.max_total_tokens()
            )));
        }
        let vocab = self.runner.vocab_size();
        if let Some(t) = r.prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Request(format!(
                "sequence {}: token id {t} is outside the vocabulary ({vocab})",
                r.id
            )));
        }
        r.params.validate()?;
        self.waiting.push_back(Sequence::new(r));
        Ok(())
    }

    /// End a sequence now, wherever it is, and release its blocks. `false` if unknown.
    pub fn abort(&mut self, id: u64) -> bool {
        self.runner.release(id);
        if let Some(i) = self.running.iter().position(|s| s.id == id) {
            let mut s = self.running.remove(i);
            self.blocks.release_all(&mut s.blocks);
            return true;
        }
        if let Some(i) = self.waiting.iter().position(|s| s.id == id) {
            if let Some(mut s) = self.waiting.remove(i) {
                self.blocks.release_all(&mut s.blocks);
            }
            return true;
        }
        false
    }

    /// Give back a step's emptied token vector: the next step fills it instead of a new one.
    pub fn recycle_tokens(&mut self, mut v: Vec<TokenOut>) {
        v.clear();
        if v.capacity() > self.spare_tokens.capacity() {
            self.spare_tokens = v;
        }
    }

    /// Ids of the running sequences (admitted, holding blocks).
    pub fn running_ids(&self) -> Vec<u64> {
        self.running.iter().map(|s| s.id).collect()
    }

    /// End every sequence and release all blocks.
    pub fn abort_all(&mut self) -> Vec<u64> {
        let ids: Vec<u64> = self.running.iter().chain(&self.waiting).map(|s| s.id).collect();
        for &id in &ids {
            self.abort(id);
        }
        ids
    }

    fn preempt(&mut self, mut s: Sequence, out: &mut StepOutput) {
        self.blocks.release_all(&mut s.blocks);
        s.reset();
        out.preempted.push(s.id);
        self.waiting.push_front(s);
    }

    /// Choose this step's work: `(index in running, tokens)`.
    fn schedule(&mut self, out: &mut StepOutput, plan: &mut Vec<(usize, usize)>) -> Result<()> {
        let mut budget = self.cfg.max_num_tokens;
        plan.clear();
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let n = self.running[i].uncomputed().min(budget);
            let len = self.running[i].cached + n;
            loop {
                let s = &mut self.running[i];
                if self.blocks.try_grow(&mut s.blocks, len)? {
                    plan.push((i, n));
                    budget -= n;
                    i += 1;
                    break;
                }
                // No block left: preempt the most recently admitted sequence, this one last.
                let Some(victim) = self.running.pop() else { break };
                let is_self = self.running.len() == i;
                self.preempt(victim, out);
                if is_self {
                    break;
                }
            }
        }
        if !out.preempted.is_empty() {
            return Ok(());
        }
        while budget > 0 && self.running.len() < self.cfg.max_batch_size {
            let Some(s) = self.waiting.front_mut() else { break };
            let hits =
                if s.cached == 0 && s.blocks.is_empty() { self.blocks.lookup(&s.tokens) } else { vec![] };
            let cached = s.cached.max(hits.len() * self.blocks.block_size());
            let n = (s.tokens.len() - cached).min(budget);
            let need = self.blocks.blocks_needed(&hits, cached + n);
            if need + self.blocks.evictable_among(&hits) > self.blocks.num_available() {
                break;
            }
            let mut table = std::mem::take(&mut s.blocks);
            self.blocks.take_cached(&hits, &mut table);
            if !self.blocks.try_grow(&mut table, cached + n)? {
                self.blocks.release_all(&mut table);
                break;
            }
            s.blocks = table;
            s.cached = cached;
            s.draft_cached = cached;
            if s.preemptions == 0 {
                s.cached_prompt_tokens = cached;
                self.blocks.record_lookup(s.prompt_len, cached);
            }
            let Some(s) = self.waiting.pop_front() else { break };
            if s.preemptions == 0 {
                out.admitted.push((s.id, s.cached_prompt_tokens));
            }
            self.running.push(s);
            plan.push((self.running.len() - 1, n));
            budget -= n;
        }
        Ok(())
    }

    /// Run one step: schedule, draft (speculative decoding), one forward, sample or verify,
    /// retire finished sequences.
    pub fn step(&mut self) -> Result<StepOutput> {
        let t0 = Instant::now();
        let mut out = StepOutput { tokens: std::mem::take(&mut self.spare_tokens), ..Default::default() };
        let mut plan = std::mem::take(&mut self.plan_buf);
        self.schedule(&mut out, &mut plan)?;
        if plan.is_empty() {
            self.plan_buf = plan;
            return Ok(out);
        }
        let drafts = match &self.cfg.speculative {
            Some(opts) => {
                let left = self.cfg.max_num_tokens.saturating_sub(plan.iter().map(|p| p.1).sum());
                let (d, secs) = super::spec::propose(
                    &mut self.runner,
                    &mut self.blocks,
                    &mut self.running,
                    &plan,
                    opts,
                    self.cfg.max_seq_len,
                    left,
                )?;
                out.spec.draft_s = secs;
                d
            }
            None => vec![], // no drafts: `draft(k)` is empty for every plan entry
        };
        let draft = |k: usize| drafts.get(k).map_or(&[][..], |d| d.as_slice());
        // Each planned chunk that has drafts, followed by them (empty without drafts).
        let chunks: Vec<Vec<u32>> = plan
            .iter()
            .zip(&drafts)
            .map(|(&(i, n), d)| {
                let s = &self.running[i];
                if d.is_empty() {
                    vec![]
                } else {
                    [&s.tokens[s.cached..s.cached + n], d].concat()
                }
            })
            .collect();
        // `plan` lists running sequences in increasing index order.
        let mut seqs = Vec::with_capacity(plan.len());
        let mut matchers: Vec<(usize, &mut TokenMatcher)> = vec![];
        let mut next = plan.iter().enumerate().peekable();
        for (i, s) in self.running.iter_mut().enumerate() {
            let Some((k, &(_, n))) = next.next_if(|p| p.1 .0 == i) else { continue };
            let (d, chunk) = (draft(k), chunks.get(k).map_or(&[][..], |c| c.as_slice()));
            let end = s.cached + n;
            let (prompt, output) = s.tokens.split_at(s.prompt_len);
            if end == s.tokens.len() {
                if let Some(m) = s.matcher.as_mut() {
                    matchers.push((seqs.len(), m));
                }
            }
            let sample = (end == s.tokens.len()).then_some(SampleInput {
                params: &s.params,
                prompt,
                output,
                sampler: &s.sampler,
            });
            seqs.push(ScheduledSeq {
                id: s.id,
                tokens: if d.is_empty() { &s.tokens[s.cached..end] } else { chunk },
                start_pos: s.cached,
                block_table: &s.blocks,
                sample,
                draft: d.len(),
            });
        }
        let t1 = Instant::now();
        let rows = seqs.len();
        let runner = &mut self.runner;
        // Grammar masks on a worker thread while the forward runs (rayon across sequences).
        let result = std::thread::scope(|sc| {
            // A step whose borrows end with the scope (the mask job joins a scoped thread).
            let mut work = SchedulerOutput { seqs, masks: None };
            if !matchers.is_empty() {
                let eos = &self.eos;
                let h = sc.spawn(move || masks_of(matchers, rows, eos));
                work.masks = Some(Box::new(move || {
                    h.join().map_err(|_| Error::Msg("structured outputs: the mask worker panicked".into()))?
                }));
            }
            runner.execute(work)
        })?;
        let now = Instant::now();
        out.execute_s = (now - t1).as_secs_f64();
        self.apply(&plan, result, &drafts, now, &mut out)?;
        for t in &out.tokens {
            if t.finish.is_some() {
                self.abort(t.seq);
            }
        }
        self.plan_buf = plan;
        out.host_s = t0.elapsed().as_secs_f64() - out.execute_s - out.spec.draft_s;
        Ok(out)
    }
}
