//! The output thread: turns each step's tokens into per-request events off the engine thread.
//! It owns every request's sink, incremental detokenizer and stop-string matcher; the engine
//! thread hands it what each step produced ([`OutMsg::Step`]: token ids, finish reasons,
//! logprobs) and runs its next step at once.
//!
//! A stop string found here ends the sequence's output (finish reason `stop`, the text up to the
//! stop string) and sends [`Msg::StopSeq`] back to the engine, which drops the sequence at its
//! next step; tokens the engine produced for it meanwhile are discarded here, never emitted or
//! counted. A request whose sink is closed or whose handle was cancelled is dropped here and
//! aborted on the engine ([`Msg::Abort`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

use super::engine::{Delta, Event, EventSink, Msg, Shared, Usage, SEQ_STRIDE};
use super::step_output::TokenOut;
use crate::serve::FinishReason;
use crate::text::{IncrementalDetokenizer, StopMatcher, Tokenizer};

/// Steps (and other messages) the engine may run ahead of the output thread before its send
/// blocks. Small on purpose: a stop string found here reaches the engine up to this many steps
/// late (each a wasted token for that sequence), and a backlog only adds latency, never
/// throughput: if detokenization is slower than the steps on average, the engine must wait.
/// A few steps absorb the bursts (a step where many sequences finish and flush at once).
pub(crate) const OUTPUT_QUEUE_STEPS: usize = 4;

/// What the engine thread hands the output thread, in order.
pub(crate) enum OutMsg {
    /// A request whose sequences the scheduler accepted.
    Add(Box<NewReq>),
    /// One step's tokens (the step ended at `at`) and the sequences it admitted, with the
    /// prompt tokens they took from the prefix cache.
    Step { tokens: Vec<TokenOut>, admitted: Vec<(u64, usize)>, at: Instant },
    /// The engine ended the request (cancelled): drop it without `Done`.
    Abort(u64),
    /// A step failed: these requests get the error and end.
    Fail(Vec<u64>, String),
}

pub(crate) struct NewReq {
    pub id: u64,
    pub n: usize,
    /// The last prompt ids (the detokenizer's context).
    pub prompt_tail: Vec<u32>,
    pub prompt_len: usize,
    pub stop: Vec<String>,
    pub sink: Box<dyn EventSink>,
    pub cancel: Arc<AtomicBool>,
    pub arrival: Instant,
}

/// Output-thread state of one request.
struct ReqState {
    sink: Box<dyn EventSink>,
    cancel: Arc<AtomicBool>,
    /// Choices, and those not finished.
    n: usize,
    live: usize,
    usage: Usage,
    arrival: Instant,
}

/// Output-thread state of one sequence (a choice of a request).
struct SeqState {
    req: u64,
    index: usize,
    detok: IncrementalDetokenizer,
    stop: StopMatcher,
    last: Option<Instant>,
}

pub(crate) struct OutputLoop {
    tok: Option<Arc<Tokenizer>>,
    shared: Arc<Shared>,
    /// Back to the engine: stop-string aborts and requests whose client is gone.
    to_engine: Sender<Msg>,
    /// Emptied token vectors go back to the engine for its next steps.
    recycle: Sender<Vec<TokenOut>>,
    reqs: HashMap<u64, ReqState>,
    seqs: HashMap<u64, SeqState>,
}

impl OutputLoop {
    pub fn new(
        tok: Option<Arc<Tokenizer>>,
        shared: Arc<Shared>,
        to_engine: Sender<Msg>,
        recycle: Sender<Vec<TokenOut>>,
    ) -> Self {
        OutputLoop { tok, shared, to_engine, recycle, reqs: HashMap::new(), seqs: HashMap::new() }
    }

    /// Handle messages until the engine thread drops its sender.
    pub fn run(mut self, rx: Receiver<OutMsg>) {
        while let Ok(m) = rx.recv() {
            let t0 = Instant::now();
            match m {
                OutMsg::Add(r) => self.add(*r),
                OutMsg::Step { mut tokens, admitted, at } => {
                    self.on_step(&mut tokens, &admitted, at);
                    let _ = self.recycle.send(tokens);
                }
                OutMsg::Abort(id) => self.drop_request(id),
                OutMsg::Fail(ids, msg) => {
                    for id in ids {
                        if let Some(r) = self.reqs.get(&id) {
                            r.sink.send(Event::Error(format!("engine error: {msg}")));
                            self.drop_request(id);
                        }
                    }
                }
            }
            self.shared.metrics.output_ns.fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
        }
    }

    fn add(&mut self, r: NewReq) {
        for i in 0..r.n {
            let detok = IncrementalDetokenizer::new(&r.prompt_tail);
            let stop = StopMatcher::new(r.stop.clone());
            self.seqs.insert(
                r.id * SEQ_STRIDE + i as u64,
                SeqState { req: r.id, index: i, detok, stop, last: None },
            );
        }
        let usage = Usage { prompt_tokens: r.prompt_len, ..Default::default() };
        let st = ReqState { sink: r.sink, cancel: r.cancel, n: r.n, live: r.n, usage, arrival: r.arrival };
        self.reqs.insert(r.id, st);
    }

    /// Forget a request that did not finish (cancelled, client gone, failed step).
    fn drop_request(&mut self, id: u64) {
        let Some(r) = self.reqs.remove(&id) else { return };
        for i in 0..r.n as u64 {
            self.seqs.remove(&(id * SEQ_STRIDE + i));
        }
        self.shared.metrics.requests_aborted.fetch_add(1, Relaxed);
    }

    fn on_step(&mut self, tokens: &mut Vec<TokenOut>, admitted: &[(u64, usize)], at: Instant) {
        for &(sid, cached) in admitted {
            if let (Some(r), 0) = (self.reqs.get_mut(&(sid / SEQ_STRIDE)), sid % SEQ_STRIDE) {
                r.usage.cached_tokens = cached;
            }
        }
        for t in tokens.drain(..) {
            let Some(req) = self.seqs.get(&t.seq).map(|s| s.req) else { continue };
            match self.on_token(t, at) {
                Some(true) => self.finish_request(req),
                Some(false) => {}
                None => self.client_gone(req),
            }
        }
        // Requests cancelled or whose client left, also those still queued (no token yet).
        let gone: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, r)| r.cancel.load(Relaxed) || r.sink.is_closed())
            .map(|(&k, _)| k)
            .collect();
        for id in gone {
            self.client_gone(id);
        }
    }

    fn client_gone(&mut self, id: u64) {
        if self.reqs.contains_key(&id) {
            self.drop_request(id);
            let _ = self.to_engine.send(Msg::Abort(id));
        }
    }

    fn finish_request(&mut self, id: u64) {
        let Some(r) = self.reqs.remove(&id) else { return };
        let m = &self.shared.metrics;
        m.requests_ok.fetch_add(1, Relaxed);
        m.e2e.observe(r.arrival.elapsed());
        r.sink.send(Event::Done(r.usage));
    }

    /// Emit one token. `Some(true)`: its request is complete; `None`: the client is gone.
    fn on_token(&mut self, t: TokenOut, now: Instant) -> Option<bool> {
        let m = &self.shared.metrics;
        m.generation_tokens.fetch_add(1, Relaxed);
        let s = self.seqs.get_mut(&t.seq)?;
        let r = self.reqs.get_mut(&s.req)?;
        match s.last {
            None => m.ttft.observe(now.saturating_duration_since(r.arrival)),
            Some(l) => m.itl.observe(now.saturating_duration_since(l)),
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
                        // The engine drops the sequence at its next step; what it produced for
                        // it meanwhile is discarded (its sequence state is gone).
                        finish = Some(FinishReason::Stop);
                        let _ = self.to_engine.send(Msg::StopSeq(t.seq));
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
}
