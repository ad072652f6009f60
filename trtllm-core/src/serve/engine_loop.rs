//! The engine thread's loop: take messages, apply cancellations, run a step, turn its tokens
//! into per-request events (text, stop strings, logprobs, usage) and update the metrics.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use super::engine::{
    count_step, new_seq, recv, Delta, EmbedJob, Event, Msg, Pending, ReqState, SeqState, Shared, SEQ_STRIDE,
};
use super::scheduler::Scheduler;
use super::step_output::{StepOutput, TokenOut};
use crate::runner::Executor;
use crate::serve::FinishReason;
use crate::text::Tokenizer;
use crate::text::{IncrementalDetokenizer, StopMatcher};

pub(crate) struct EngineLoop<E: Executor> {
    sched: Scheduler<E>,
    tok: Option<Arc<Tokenizer>>,
    shared: Arc<Shared>,
    reqs: HashMap<u64, ReqState>,
    seqs: HashMap<u64, SeqState>,
    draining: bool,
    /// The last periodic stats line: when, and the prompt / generated token counters then.
    stats_at: (std::time::Instant, u64, u64),
}

/// Seconds between the engine's periodic stats lines (while it has work).
const STATS_EVERY_S: f64 = 10.0;

impl<E: Executor> EngineLoop<E> {
    pub fn new(sched: Scheduler<E>, tok: Option<Arc<Tokenizer>>, shared: Arc<Shared>) -> Self {
        let stats_at = (std::time::Instant::now(), 0, 0);
        EngineLoop {
            sched,
            tok,
            shared,
            reqs: HashMap::new(),
            seqs: HashMap::new(),
            draining: false,
            stats_at,
        }
    }

    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut connected = true;
        loop {
            while connected {
                match recv(&rx, self.sched.has_work() || self.draining) {
                    Ok(Some(m)) => self.on_msg(m),
                    Ok(None) => break,
                    Err(()) => connected = false,
                }
                if self.sched.has_work() {
                    // Take whatever else arrived, without blocking.
                    while let Ok(m) = rx.try_recv() {
                        self.on_msg(m);
                    }
                    break;
                }
            }
            self.reap_cancelled();
            if !self.sched.has_work() {
                self.publish();
                if self.draining || !connected {
                    return;
                }
                continue;
            }
            match self.sched.step() {
                Ok(out) => self.on_step(out),
                Err(e) => self.fail_step(&e.to_string()),
            }
            self.publish();
            self.log_stats();
        }
    }

    fn on_msg(&mut self, m: Msg) {
        match m {
            Msg::Add(p) => self.add(*p),
            Msg::Embed(job) => self.embed(*job),
            Msg::Abort(id) => self.end_request(id, false),
            Msg::Shutdown => self.draining = true,
        }
    }

    fn add(&mut self, p: Pending) {
        let n = p.params.n.max(1);
        for i in 0..n {
            if let Err(e) = self.sched.add(new_seq(&p, i)) {
                for j in 0..i {
                    self.sched.abort(p.id * SEQ_STRIDE + j as u64);
                }
                self.shared.metrics.queued_requests.fetch_sub(1, Relaxed);
                self.shared.metrics.requests_rejected.fetch_add(1, Relaxed);
                p.sink.send(Event::Error(e.to_string()));
                return;
            }
            let detok = IncrementalDetokenizer::new(&p.prompt);
            let stop = StopMatcher::new(p.params.stop.clone());
            self.seqs.insert(
                p.id * SEQ_STRIDE + i as u64,
                SeqState { req: p.id, index: i, detok, stop, last: None },
            );
        }
        let usage = super::engine::Usage { prompt_tokens: p.prompt.len(), ..Default::default() };
        let st = ReqState {
            sink: p.sink,
            cancel: p.cancel,
            prompt_len: p.prompt.len(),
            live: n,
            usage,
            queued: true,
            arrival: p.arrival,
        };
        self.reqs.insert(p.id, st);
    }

    /// Embed every input of `job` now (between steps), each a prefill into blocks taken from the
    /// free pool and given back at once.
    fn embed(&mut self, job: EmbedJob) {
        let mut out = Vec::with_capacity(job.inputs.len());
        for ids in &job.inputs {
            let mut blocks = vec![];
            let r = match self.sched.blocks_mut().try_grow(&mut blocks, ids.len()) {
                Ok(true) => {
                    self.sched.runner_mut().embed(ids, &blocks, job.pooling).map_err(|e| e.to_string())
                }
                Ok(false) => Err(format!(
                    "not enough free KV blocks for an input of {} tokens; retry later",
                    ids.len()
                )),
                Err(e) => Err(e.to_string()),
            };
            self.sched.blocks_mut().release_all(&mut blocks);
            match r {
                Ok(v) => out.push(v),
                Err(e) => {
                    tracing::error!("embedding request failed: {e}");
                    (job.reply)(Err(e));
                    return;
                }
            }
        }
        (job.reply)(Ok(out));
    }

    /// End a request: abort its live sequences (their blocks are freed), send `Done` if it
    /// finished normally.
    fn end_request(&mut self, id: u64, ok: bool) {
        let Some(r) = self.reqs.remove(&id) else { return };
        let children: Vec<u64> = self.seqs.iter().filter(|(_, s)| s.req == id).map(|(&k, _)| k).collect();
        for sid in children {
            self.sched.abort(sid);
            self.seqs.remove(&sid);
        }
        let m = &self.shared.metrics;
        if r.queued {
            m.queued_requests.fetch_sub(1, Relaxed);
        }
        if ok {
            m.requests_ok.fetch_add(1, Relaxed);
            m.e2e.observe(r.arrival.elapsed());
            r.sink.send(Event::Done(r.usage));
        } else {
            m.requests_aborted.fetch_add(1, Relaxed);
        }
    }

    fn reap_cancelled(&mut self) {
        let dead: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, r)| r.cancel.load(Relaxed) || r.sink.is_closed())
            .map(|(&k, _)| k)
            .collect();
        for id in dead {
            self.end_request(id, false);
        }
    }

    /// A step failed: its requests (every running sequence's, the step's own among them) get
    /// the error and end; requests still waiting stay queued and run in later steps.
    fn fail_step(&mut self, msg: &str) {
        let running = self.sched.running_ids();
        tracing::error!("engine step failed ({} sequences): {msg}", running.len());
        let mut failed: Vec<u64> =
            running.iter().filter_map(|sid| self.seqs.get(sid).map(|s| s.req)).collect();
        failed.sort_unstable();
        failed.dedup();
        for id in failed {
            if let Some(r) = self.reqs.get(&id) {
                tracing::error!("request {id} failed in the step");
                r.sink.send(Event::Error(format!("engine error: {msg}")));
            }
            self.end_request(id, false);
        }
    }

    fn on_step(&mut self, out: StepOutput) {
        let m = &self.shared.metrics;
        count_step(m, &out);
        for &(sid, cached) in &out.admitted {
            if let Some(r) = self.reqs.get_mut(&(sid / SEQ_STRIDE)) {
                if r.queued {
                    r.queued = false;
                    m.queued_requests.fetch_sub(1, Relaxed);
                    m.prompt_tokens.fetch_add(r.prompt_len as u64, Relaxed);
                }
                if sid % SEQ_STRIDE == 0 {
                    r.usage.cached_tokens = cached;
                }
            }
        }
        let now = Instant::now();
        let mut finished_reqs = vec![];
        let mut gone = vec![];
        for t in out.tokens {
            let Some(req) = self.seqs.get(&t.seq).map(|s| s.req) else { continue };
            match self.on_token(t, now) {
                Some(true) => finished_reqs.push(req),
                Some(false) => {}
                None => gone.push(req),
            }
        }
        for id in gone {
            self.end_request(id, false);
        }
        for id in finished_reqs {
            self.end_request(id, true);
        }
    }

    /// Emit one token. `Some(true)`: its request is complete; `None`: the client is gone.
    fn on_token(&mut self, t: TokenOut, now: Instant) -> Option<bool> {
        let m = &self.shared.metrics;
        m.generation_tokens.fetch_add(1, Relaxed);
        let s = self.seqs.get_mut(&t.seq)?;
        let r = self.reqs.get_mut(&s.req)?;
        match s.last {
            None => m.ttft.observe(now - r.arrival),
            Some(l) => m.itl.observe(now - l),
        }
        s.last = Some(now);
        r.usage.completion_tokens += 1;
        let mut finish = t.finish;
        let mut text = String::new();
        if let Some(tok) = &self.tok {
            // A stop token's own text is not part of the output.
            let mut piece = if t.stop_token { Ok(String::new()) } else { s.detok.push(tok, t.token) };
            if let (Ok(p), Some(_)) = (&mut piece, finish) {
                p.push_str(&s.detok.flush(tok).unwrap_or_default());
            }
            match piece {
                Ok(piece) => {
                    let (emit, stopped) = s.stop.push(&piece);
                    text = emit;
                    if stopped && finish.is_none() {
                        finish = Some(FinishReason::Stop);
                        self.sched.abort(t.seq);
                    }
                }
                Err(e) => {
                    tracing::warn!("sequence {}: detokenizing token {}: {e}", t.seq, t.token);
                }
            }
            if finish.is_some() && !s.stop.stopped() {
                text.push_str(&s.stop.flush());
            }
        }
        let delta = Delta {
            index: s.index,
            token_ids: vec![t.token],
            text,
            logprobs: t.logprob.into_iter().collect(),
            finish,
        };
        if !r.sink.send(Event::Delta(delta)) {
            return None;
        }
        if finish.is_some() {
            self.seqs.remove(&t.seq);
            r.live -= 1;
            return Some(r.live == 0);
        }
        Some(false)
    }

    /// vLLM-style periodic line at info level: throughput since the last line, sequences, KV use.
    fn log_stats(&mut self) {
        let secs = self.stats_at.0.elapsed().as_secs_f64();
        if secs < STATS_EVERY_S {
            return;
        }
        let m = &self.shared.metrics;
        let (p, g) = (m.prompt_tokens.load(Relaxed), m.generation_tokens.load(Relaxed));
        let b = self.sched.blocks();
        let total = b.num_total().max(1);
        tracing::info!(
            "engine: prompt {:.1} tok/s, generation {:.1} tok/s, {} running, {} waiting, KV {:.1}% used ({} of {} blocks), prefix cache {} blocks",
            p.saturating_sub(self.stats_at.1) as f64 / secs,
            g.saturating_sub(self.stats_at.2) as f64 / secs,
            self.sched.num_running(),
            self.sched.num_waiting(),
            100.0 * (total - b.num_available().min(total)) as f64 / total as f64,
            total - b.num_available().min(total),
            total,
            b.num_cached(),
        );
        self.stats_at = (std::time::Instant::now(), p, g);
    }

    fn publish(&self) {
        let m = &self.shared.metrics;
        let b = self.sched.blocks();
        m.running_seqs.store(self.sched.num_running() as u64, Relaxed);
        m.waiting_seqs.store(self.sched.num_waiting() as u64, Relaxed);
        m.kv_blocks_free.store(b.num_available() as u64, Relaxed);
        m.kv_blocks_cached.store(b.num_cached() as u64, Relaxed);
        m.prefix_cache_queried_tokens.store(b.queried_tokens, Relaxed);
        m.prefix_cache_hit_tokens.store(b.hit_tokens, Relaxed);
    }
}
