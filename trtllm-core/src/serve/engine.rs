//! The serving engine: a background thread that owns the [`Scheduler`] (model + KV cache) and
//! runs steps while there is work. Requests come in over a channel ([`EngineHandle::submit`]);
//! each step's tokens go to a second thread (`output.rs`) that sends each request's output
//! through its own [`EventSink`] (a `std::sync::mpsc::Sender`, or a tokio channel in the
//! server), as per-token deltas with detokenized text, stop strings applied, and a final usage
//! event.
//!
//! Cancellation: [`RequestHandle::cancel`] (or a sink whose receiver is gone) ends the
//! request's sequences at the start of the next step and frees their blocks. Shutdown
//! ([`EngineHandle::shutdown`]) refuses new requests and lets the thread exit once every
//! accepted request has finished (drain).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::scheduler::Scheduler;
use super::sequence::{FinishReason, SeqRequest};
use super::step_output::StepOutput;
use crate::runner::TokenLogprob;
use crate::runner::{Pooling, SamplingParams};
use crate::serve::EngineMetrics;
use crate::text::Tokenizer;

/// Output of one request.
#[derive(Clone, Debug)]
pub enum Event {
    /// New output of choice `index` (one token; `text` may be empty while held back).
    Delta(Delta),
    /// Every choice has finished.
    Done(Usage),
    /// The engine failed while running the request; its sequences are gone.
    Error(String),
}

#[derive(Clone, Debug)]
pub struct Delta {
    pub index: usize,
    pub token_ids: Vec<u32>,
    pub text: String,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: Option<FinishReason>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens served from the prefix cache (first choice).
    pub cached_tokens: usize,
}

/// Where a request's events go. `send` returns `false` once nobody listens (the request is
/// then cancelled).
pub trait EventSink: Send {
    fn send(&self, ev: Event) -> bool;
    fn is_closed(&self) -> bool {
        false
    }
}

impl EventSink for Sender<Event> {
    fn send(&self, ev: Event) -> bool {
        Sender::send(self, ev).is_ok()
    }
}

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the request queue is full ({0} requests waiting); retry later")]
    QueueFull(usize),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("`{field}`: {msg}")]
    Invalid { field: &'static str, msg: String },
}

/// What a request may ask for.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest prompt + max_new_tokens.
    pub max_total_tokens: usize,
    pub vocab_size: usize,
}

pub(crate) enum Msg {
    Add(Box<Pending>),
    Embed(Box<EmbedJob>),
    Abort(u64),
    /// The output thread found a stop string in this sequence's text: drop it.
    StopSeq(u64),
    Shutdown,
}

pub(crate) struct Pending {
    pub id: u64,
    pub prompt: Vec<u32>,
    pub params: Arc<SamplingParams>,
    pub sink: Box<dyn EventSink>,
    pub cancel: Arc<AtomicBool>,
    pub arrival: Instant,
}

/// Where an embedding request's vectors (one per input, pooled, unnormalized) go.
pub type EmbedReply = Box<dyn FnOnce(Result<Vec<Vec<f32>>, String>) + Send>;

/// An embedding request: run between steps on the engine thread (`EngineLoop::embed`).
pub(crate) struct EmbedJob {
    pub inputs: Vec<Vec<u32>>,
    pub pooling: Pooling,
    pub reply: EmbedReply,
}

pub(crate) struct Shared {
    pub metrics: EngineMetrics,
    limits: Limits,
    max_queue: usize,
    next_id: AtomicU64,
    closing: AtomicBool,
}

/// Submit requests to the engine; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct EngineHandle {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
}

/// One submitted request.
pub struct RequestHandle {
    pub id: u64,
    cancel: Arc<AtomicBool>,
    tx: Sender<Msg>,
}

impl RequestHandle {
    /// End the request; its blocks are freed at the start of the engine's next step.
    pub fn cancel(&self) {
        if !self.cancel.swap(true, Relaxed) {
            let _ = self.tx.send(Msg::Abort(self.id));
        }
    }
}

impl EngineHandle {
    pub fn metrics(&self) -> &EngineMetrics {
        &self.shared.metrics
    }
    pub fn limits(&self) -> Limits {
        self.shared.limits
    }
    pub fn is_closing(&self) -> bool {
        self.shared.closing.load(Relaxed)
    }

    /// Queue `prompt` with `params`; events go to `sink`.
    pub fn submit(
        &self,
        prompt: Vec<u32>,
        params: SamplingParams,
        sink: Box<dyn EventSink>,
    ) -> Result<RequestHandle, SubmitError> {
        let reject = |e| {
            self.shared.metrics.requests_rejected.fetch_add(1, Relaxed);
            Err(e)
        };
        if self.is_closing() {
            return reject(SubmitError::ShuttingDown);
        }
        if let Err(e) = self.check(&prompt, &params) {
            return reject(e);
        }
        let queued = self.shared.metrics.queued_requests.fetch_add(1, Relaxed);
        if queued as usize >= self.shared.max_queue {
            self.shared.metrics.queued_requests.fetch_sub(1, Relaxed);
            return reject(SubmitError::QueueFull(queued as usize));
        }
        let id = self.shared.next_id.fetch_add(1, Relaxed);
        let cancel = Arc::new(AtomicBool::new(false));
        let p = Pending {
            id,
            prompt,
            params: Arc::new(params),
            sink,
            cancel: cancel.clone(),
            arrival: Instant::now(),
        };
        if self.tx.send(Msg::Add(Box::new(p))).is_err() {
            self.shared.metrics.queued_requests.fetch_sub(1, Relaxed);
            return reject(SubmitError::ShuttingDown);
        }
        Ok(RequestHandle { id, cancel, tx: self.tx.clone() })
    }

    /// Embed each of `inputs` (token ids) with `pooling`; the vectors go to `reply`, called on
    /// the engine thread between two steps.
    pub fn embed(
        &self,
        inputs: Vec<Vec<u32>>,
        pooling: Pooling,
        reply: EmbedReply,
    ) -> Result<(), SubmitError> {
        if self.is_closing() {
            return Err(SubmitError::ShuttingDown);
        }
        let l = self.shared.limits;
        for ids in &inputs {
            if ids.is_empty() {
                return Err(SubmitError::Invalid { field: "input", msg: "an input is empty".into() });
            }
            if let Some(t) = ids.iter().find(|&&t| t as usize >= l.vocab_size) {
                let msg = format!("token id {t} is outside the vocabulary (size {})", l.vocab_size);
                return Err(SubmitError::Invalid { field: "input", msg });
            }
            if ids.len() > l.max_total_tokens {
                let msg = format!(
                    "an input has {} tokens; this model's context is {} tokens",
                    ids.len(),
                    l.max_total_tokens
                );
                return Err(SubmitError::Invalid { field: "input", msg });
            }
        }
        let job = EmbedJob { inputs, pooling, reply };
        self.tx.send(Msg::Embed(Box::new(job))).map_err(|_| SubmitError::ShuttingDown)
    }

    fn check(&self, prompt: &[u32], p: &SamplingParams) -> Result<(), SubmitError> {
        let l = self.shared.limits;
        let inv = |field, msg: String| Err(SubmitError::Invalid { field, msg });
        if prompt.is_empty() {
            return inv("prompt", "the prompt is empty".into());
        }
        if let Some(t) = prompt.iter().find(|&&t| t as usize >= l.vocab_size) {
            return inv("prompt", format!("token id {t} is outside the vocabulary (size {})", l.vocab_size));
        }
        if prompt.len() >= l.max_total_tokens {
            return inv(
                "prompt",
                format!(
                    "the prompt has {} tokens; this model's context is {} tokens",
                    prompt.len(),
                    l.max_total_tokens
                ),
            );
        }
        if prompt.len() + p.max_new_tokens > l.max_total_tokens {
            let msg = format!(
                "{} prompt tokens + max_tokens {} exceed this model's context of {} tokens",
                prompt.len(),
                p.max_new_tokens,
                l.max_total_tokens
            );
            return inv("max_tokens", msg);
        }
        if let Err(e) = p.validate() {
            return inv("sampling", e.to_string().trim_start_matches("request: ").to_string());
        }
        Ok(())
    }

    /// Refuse new requests; the engine thread exits when the accepted ones are done.
    pub fn shutdown(&self) {
        self.shared.closing.store(true, Relaxed);
        let _ = self.tx.send(Msg::Shutdown);
    }
}

/// The running engine thread.
pub struct Engine {
    handle: EngineHandle,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Start the engine thread over `sched`. `tokenizer` turns tokens into text (and enables
    /// stop strings); without one, deltas carry ids only.
    pub fn start<E: crate::runner::Executor>(
        sched: Scheduler<E>,
        tokenizer: Option<Arc<Tokenizer>>,
        max_queue: usize,
    ) -> crate::Result<Engine> {
        let limits = Limits { max_total_tokens: sched.max_total_tokens(), vocab_size: sched.vocab_size() };
        let shared = Arc::new(Shared {
            metrics: EngineMetrics::default(),
            limits,
            max_queue: max_queue.max(1),
            next_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
        });
        shared.metrics.kv_blocks_total.store(sched.blocks().num_total() as u64, Relaxed);
        shared.metrics.kv_blocks_free.store(sched.blocks().num_available() as u64, Relaxed);
        let (tx, rx) = mpsc::channel();
        let (out_tx, out_rx) = mpsc::sync_channel(super::output::OUTPUT_QUEUE_STEPS);
        let (recycle_tx, recycle_rx) = mpsc::channel();
        // Stop-string and client-gone aborts from the output thread: a channel of their own, so
        // that the engine's request channel still disconnects when every handle is gone.
        let (back_tx, back_rx) = mpsc::channel();
        let output = super::output::OutputLoop::new(tokenizer, shared.clone(), back_tx, recycle_tx);
        let output_thread = std::thread::Builder::new()
            .name("trtllm-output".into())
            .spawn(move || output.run(out_rx))
            .map_err(|e| crate::Error::Msg(format!("starting the output thread: {e}")))?;
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("trtllm-engine".into())
            .spawn(move || {
                super::engine_loop::EngineLoop::new(sched, sh, out_tx, (back_rx, recycle_rx), output_thread)
                    .run(rx)
            })
            .map_err(|e| crate::Error::Msg(format!("starting the engine thread: {e}")))?;
        Ok(Engine { handle: EngineHandle { tx, shared }, thread: Some(thread) })
    }

    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// Drain and stop: waits until every accepted request has finished.
    pub fn shutdown(mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.shutdown();
            let _ = t.join();
        }
    }
}

/// Sequence ids: `request id * SEQ_STRIDE + choice index`.
pub(crate) const SEQ_STRIDE: u64 = 128;

pub(crate) fn recv(rx: &Receiver<Msg>, busy: bool) -> Result<Option<Msg>, ()> {
    if busy {
        return match rx.try_recv() {
            Ok(m) => Ok(Some(m)),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(()),
        };
    }
    match rx.recv_timeout(Duration::from_millis(50)) {
        Ok(m) => Ok(Some(m)),
        Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(RecvTimeoutError::Disconnected) => Err(()),
    }
}

pub(crate) fn new_seq(p: &Pending, index: usize) -> SeqRequest {
    SeqRequest {
        id: p.id * SEQ_STRIDE + index as u64,
        prompt: p.prompt.clone(),
        params: p.params.clone(),
        seed: p.params.seed.map(|s| s.wrapping_add(index as u64)),
    }
}

/// Count a step's admissions and preemptions.
pub(crate) fn count_step(m: &EngineMetrics, out: &StepOutput) {
    m.steps.fetch_add(1, Relaxed);
    m.preemptions.fetch_add(out.preempted.len() as u64, Relaxed);
    let s = &out.spec;
    m.spec_verify_steps.fetch_add(s.verify_rows as u64, Relaxed);
    m.spec_draft_tokens.fetch_add(s.draft_tokens as u64, Relaxed);
    m.spec_accepted_tokens.fetch_add(s.accepted_tokens as u64, Relaxed);
    m.spec_emitted_tokens.fetch_add(s.emitted_tokens as u64, Relaxed);
}
