//! One API request in flight: its prompts submitted to the engine (one engine request per
//! prompt, each with `n` choices) and their events merged into one stream of
//! `(choice index, delta)`. Dropping it — the handler future or the SSE body dropped when the
//! client goes away — cancels whatever is still running, which frees its KV blocks.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use trtllm_core::runner::{SamplingParams, TokenLogprob};
use trtllm_core::serve::{Delta, Event, EventSink, FinishReason, RequestHandle, Usage};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

struct Sink {
    tx: UnboundedSender<(usize, Event)>,
    tag: usize,
}

impl EventSink for Sink {
    fn send(&self, ev: Event) -> bool {
        self.tx.send((self.tag, ev)).is_ok()
    }
    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

pub struct Running {
    rx: UnboundedReceiver<(usize, Event)>,
    /// Set at the drain deadline: the request ends with a 503 error (an error event + `[DONE]`
    /// on a stream).
    cut: tokio::sync::watch::Receiver<bool>,
    handles: Vec<RequestHandle>,
    pub n: usize,
    remaining: usize,
    pub usage: Usage,
    log: ReqLog,
}

/// What the request log line says when the request ends (`Drop`).
struct ReqLog {
    id: String,
    start: Instant,
    first: Option<Instant>,
    accepted: bool,
    error: bool,
}

impl Running {
    /// Submit every prompt of the API request `id` (the id its response and log line carry).
    pub fn submit(
        state: &AppState,
        id: &str,
        prompts: Vec<Vec<u32>>,
        params: SamplingParams,
    ) -> ApiResult<Self> {
        if state.is_draining() {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        let (tx, rx) = unbounded_channel();
        let n = params.n;
        let log = ReqLog { id: id.into(), start: Instant::now(), first: None, accepted: false, error: false };
        let mut run = Running {
            rx,
            cut: state.cut.subscribe(),
            handles: vec![],
            n,
            remaining: prompts.len(),
            usage: Usage::default(),
            log,
        };
        for (tag, p) in prompts.into_iter().enumerate() {
            let sink = Box::new(Sink { tx: tx.clone(), tag });
            // An error drops `run`, which cancels the prompts already submitted.
            let h = state.engine.submit(p, params.clone(), sink).map_err(|e| prompt_error(e.into(), tag))?;
            run.handles.push(h);
        }
        run.log.accepted = true;
        Ok(run)
    }

    /// The next delta as `(choice index, delta)`; `None` once every choice has finished.
    pub async fn next(&mut self) -> Option<ApiResult<(usize, Delta)>> {
        while self.remaining > 0 {
            let (rx, cut) = (&mut self.rx, &mut self.cut);
            let next = tokio::select! {
                biased;
                ev = rx.recv() => ev,
                Ok(_) = cut.wait_for(|c| *c) => {
                    return Some(Err(ApiError::unavailable(
                        "the server shut down before this request finished (its drain timeout passed)",
                    )));
                }
            };
            let Some((tag, ev)) = next else {
                return Some(Err(ApiError::internal("the engine stopped")));
            };
            match ev {
                Event::Delta(d) => {
                    self.log.first.get_or_insert_with(Instant::now);
                    return Some(Ok((tag * self.n + d.index, d)));
                }
                Event::Done(u) => {
                    self.remaining -= 1;
                    self.usage.prompt_tokens += u.prompt_tokens;
                    self.usage.completion_tokens += u.completion_tokens;
                    self.usage.cached_tokens += u.cached_tokens;
                }
                Event::Error(e) => {
                    self.remaining = 0;
                    self.log.error = true;
                    return Some(Err(ApiError::internal(e)));
                }
            }
        }
        None
    }

    /// Run to the end, collecting every choice.
    pub async fn collect(mut self, choices: usize) -> ApiResult<(Vec<Choice>, Usage)> {
        let mut out: Vec<Choice> = (0..choices).map(|_| Choice::default()).collect();
        while let Some(r) = self.next().await {
            let (i, d) = r?;
            if let Some(c) = out.get_mut(i) {
                c.push(d);
            }
        }
        Ok((out, self.usage))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.remaining > 0 {
            for h in &self.handles {
                h.cancel();
            }
        }
        if !self.log.accepted {
            return; // not submitted: the handler logs the rejection
        }
        let status = match (self.log.error, self.remaining) {
            (true, _) => "error",
            (false, 0) => "ok",
            _ => "cancelled",
        };
        let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        let engine_ids: Vec<u64> = self.handles.iter().map(|h| h.id).collect();
        let (l, u) = (&self.log, &self.usage);
        let ttft = l.first.map(|f| ms(f - l.start));
        let total = ms(l.start.elapsed());
        if l.error {
            tracing::error!(target: "trtllm::request", id = %l.id, ?engine_ids, status, prompt_tokens = u.prompt_tokens,
                completion_tokens = u.completion_tokens, ttft_ms = ?ttft, total_ms = total, "request finished");
        } else {
            tracing::info!(target: "trtllm::request", id = %l.id, ?engine_ids, status, prompt_tokens = u.prompt_tokens,
                completion_tokens = u.completion_tokens, ttft_ms = ?ttft, total_ms = total, "request finished");
        }
    }
}

/// The log line of a request refused before it reached the engine (a 4xx, 429, 503).
pub fn log_rejected(endpoint: &str, e: &ApiError) {
    if e.status.as_u16() != 500 {
        tracing::info!(target: "trtllm::request", endpoint, status = e.status.as_u16(), param = ?e.param,
            message = %e.message, "request rejected");
    }
}

fn prompt_error(mut e: ApiError, tag: usize) -> ApiError {
    if tag > 0 {
        e.message = format!("prompt {tag}: {}", e.message);
    }
    e
}

/// One choice, accumulated.
#[derive(Default)]
pub struct Choice {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: Option<FinishReason>,
}

impl Choice {
    pub fn push(&mut self, d: Delta) {
        self.text.push_str(&d.text);
        self.token_ids.extend(d.token_ids);
        self.logprobs.extend(d.logprobs);
        self.finish = d.finish.or(self.finish);
    }
}

pub fn finish_str(f: Option<FinishReason>) -> Option<&'static str> {
    f.map(FinishReason::as_str)
}

/// Token text for logprobs.
pub fn token_text(state: &Arc<AppState>, id: u32) -> String {
    state.tokenizer.decode(&[id], false).unwrap_or_default()
}
