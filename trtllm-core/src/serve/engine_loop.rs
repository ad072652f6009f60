//! The engine thread's loop: take messages, apply cancellations and stop-string aborts, run a
//! step and hand its tokens to the output thread (`output.rs`: detokenization, stop strings,
//! events), update the step metrics. Nothing per token happens here beyond the scheduler.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::engine::{count_step, new_seq, recv, EmbedJob, Event, Msg, Pending, Shared, SEQ_STRIDE};
use super::output::{NewReq, OutMsg};
use super::scheduler::Scheduler;
use super::step_output::{StepOutput, TokenOut};
use crate::runner::Executor;

/// Engine-thread state of one request: what admission and retirement need.
struct ReqState {
    /// Choices (sequences `id * SEQ_STRIDE + 0..n`), and those the scheduler still runs.
    n: usize,
    live: usize,
    prompt_len: usize,
    queued: bool,
}

pub(crate) struct EngineLoop<E: Executor> {
    sched: Scheduler<E>,
    shared: Arc<Shared>,
    reqs: HashMap<u64, ReqState>,
    /// To the output thread (bounded: `output::OUTPUT_QUEUE_STEPS`).
    out: SyncSender<OutMsg>,
    /// From the output thread: stop-string and client-gone aborts.
    back: Receiver<Msg>,
    /// Token vectors the output thread has emptied, reused by the next steps.
    recycled: Receiver<Vec<TokenOut>>,
    output_thread: Option<JoinHandle<()>>,
    draining: bool,
    /// The last periodic stats line: when, and the prompt / generated token counters then.
    stats_at: (std::time::Instant, u64, u64),
}

/// Seconds between the engine's periodic stats lines (while it has work).
const STATS_EVERY_S: f64 = 10.0;

impl<E: Executor> EngineLoop<E> {
    pub fn new(
        sched: Scheduler<E>,
        shared: Arc<Shared>,
        out: SyncSender<OutMsg>,
        (back, recycled): (Receiver<Msg>, Receiver<Vec<TokenOut>>),
        output_thread: JoinHandle<()>,
    ) -> Self {
        let stats_at = (std::time::Instant::now(), 0, 0);
        EngineLoop {
            sched,
            shared,
            reqs: HashMap::new(),
            out,
            back,
            recycled,
            output_thread: Some(output_thread),
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
            while let Ok(m) = self.back.try_recv() {
                self.on_msg(m);
            }
            if !self.sched.has_work() {
                self.publish();
                if self.draining || !connected {
                    break;
                }
                continue;
            }
            while let Ok(v) = self.recycled.try_recv() {
                self.sched.recycle_tokens(v);
            }
            let t0 = Instant::now();
            let device_s = match self.sched.step() {
                Ok(out) => {
                    let d = out.execute_s + out.spec.draft_s;
                    self.on_step(out);
                    d
                }
                Err(e) => {
                    self.fail_step(&e.to_string());
                    0.0
                }
            };
            self.publish();
            self.log_stats();
            let host_ns = (t0.elapsed().as_secs_f64() - device_s).max(0.0) * 1e9;
            self.shared.metrics.engine_host_ns.fetch_add(host_ns as u64, Relaxed);
        }
        // Every event is out when the engine thread ends: the output thread drains its queue.
        let EngineLoop { out, output_thread, .. } = self;
        drop(out);
        if let Some(t) = output_thread {
            let _ = t.join();
        }
    }

    /// Hand a message to the output thread (blocks while it is `OUTPUT_QUEUE_STEPS` behind).
    fn to_output(&self, m: OutMsg) {
        if self.out.send(m).is_err() {
            tracing::error!("the output thread is gone; request events are lost");
        }
    }

    fn on_msg(&mut self, m: Msg) {
        match m {
            Msg::Add(p) => self.add(*p),
            Msg::Embed(job) => self.embed(*job),
            Msg::Abort(id) => self.end_request(id),
            Msg::StopSeq(sid) => {
                if self.sched.abort(sid) {
                    self.seq_done(sid);
                }
            }
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
        }
        let tail = p.prompt[p.prompt.len().saturating_sub(5)..].to_vec();
        self.reqs.insert(p.id, ReqState { n, live: n, prompt_len: p.prompt.len(), queued: true });
        self.to_output(OutMsg::Add(Box::new(NewReq {
            id: p.id,
            n,
            prompt_tail: tail,
            prompt_len: p.prompt.len(),
            stop: p.params.stop.clone(),
            sink: p.sink,
            cancel: p.cancel,
            arrival: p.arrival,
        })));
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

    /// A sequence of a request stopped running (finished, or stopped by the output thread);
    /// the request is forgotten once none runs.
    fn seq_done(&mut self, sid: u64) {
        let id = sid / SEQ_STRIDE;
        if let Some(r) = self.reqs.get_mut(&id) {
            r.live = r.live.saturating_sub(1);
            if r.live == 0 {
                self.reqs.remove(&id);
            }
        }
    }

    /// End a request early (cancelled, client gone, failed): abort its sequences (their blocks
    /// are freed) and tell the output thread, which drops it without `Done`.
    fn end_request(&mut self, id: u64) {
        let Some(r) = self.reqs.remove(&id) else { return };
        for i in 0..r.n as u64 {
            self.sched.abort(id * SEQ_STRIDE + i);
        }
        if r.queued {
            self.shared.metrics.queued_requests.fetch_sub(1, Relaxed);
        }
        self.to_output(OutMsg::Abort(id));
    }

    /// A step failed: its requests (every running sequence's, the step's own among them) get
    /// the error and end; requests still waiting stay queued and run in later steps.
    fn fail_step(&mut self, msg: &str) {
        let running = self.sched.running_ids();
        tracing::error!("engine step failed ({} sequences): {msg}", running.len());
        let mut failed: Vec<u64> = running.iter().map(|sid| sid / SEQ_STRIDE).collect();
        failed.sort_unstable();
        failed.dedup();
        failed.retain(|id| self.reqs.contains_key(id));
        for &id in &failed {
            tracing::error!("request {id} failed in the step");
        }
        // The error events go first; the output thread then ignores the aborts.
        self.to_output(OutMsg::Fail(failed.clone(), msg.to_string()));
        for id in failed {
            self.end_request(id);
        }
    }

    fn on_step(&mut self, out: StepOutput) {
        let m = &self.shared.metrics;
        count_step(m, &out);
        for &(sid, _) in &out.admitted {
            if let Some(r) = self.reqs.get_mut(&(sid / SEQ_STRIDE)) {
                if r.queued {
                    r.queued = false;
                    m.queued_requests.fetch_sub(1, Relaxed);
                    m.prompt_tokens.fetch_add(r.prompt_len as u64, Relaxed);
                }
            }
        }
        for t in &out.tokens {
            if t.finish.is_some() {
                self.seq_done(t.seq);
            }
        }
        let at = Instant::now();
        self.to_output(OutMsg::Step { tokens: out.tokens, admitted: out.admitted, at });
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
