//! Server-sent events for streaming responses: one `data: {json}` per chunk, an error chunk if
//! the engine fails, a final usage chunk when asked for, then `data: [DONE]`. The stream owns
//! the [`Running`] request, so a client that disconnects drops it and cancels the request.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::Value;
use trtllm_core::serve::{Delta, Usage};

use crate::gen::Running;

/// What a formatter turns into chunks.
pub enum Item {
    /// Before the first token (chat: the role chunks).
    Start,
    Delta(usize, Delta),
    /// After the last token, with the request's usage.
    End(Usage),
}

struct State<F> {
    run: Option<Running>,
    format: F,
    started: bool,
}

fn data(v: &Value) -> Result<Event, Infallible> {
    Ok(Event::default().data(v.to_string()))
}

/// Stream `run`'s output, each item formatted into zero or more JSON chunks by `format`.
pub fn stream<F>(run: Running, format: F) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: FnMut(Item) -> Vec<Value> + Send + 'static,
{
    let st = State { run: Some(run), format, started: false };
    let s = stream::unfold(st, |mut st| async move {
        let run = st.run.as_mut()?;
        let mut out: Vec<Result<Event, Infallible>> = vec![];
        if !st.started {
            st.started = true;
            out.extend((st.format)(Item::Start).iter().map(data));
        }
        match run.next().await {
            Some(Ok((i, d))) => out.extend((st.format)(Item::Delta(i, d)).iter().map(data)),
            Some(Err(e)) => {
                out.push(data(&e.body()));
                out.push(Ok(Event::default().data("[DONE]")));
                st.run = None;
            }
            None => {
                let usage = run.usage;
                out.extend((st.format)(Item::End(usage)).iter().map(data));
                out.push(Ok(Event::default().data("[DONE]")));
                st.run = None;
            }
        }
        Some((stream::iter(out), st))
    })
    .flatten();
    Sse::new(s).keep_alive(KeepAlive::default())
}

/// The OpenAI `usage` object.
pub fn usage_json(u: &Usage) -> Value {
    serde_json::json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}
