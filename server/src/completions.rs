//! `POST /v1/completions`: text (or token-id) prompts, `n` choices each, stop strings,
//! logprobs (legacy format), streaming.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use trtllm_core::runner::TokenLogprob;

use crate::error::{parse_body, ApiError, ApiResult};
use crate::gen::{finish_str, token_text, Running};
use crate::protocol::{completion_logprobs, max_tokens, prompts, CompletionRequest, Prompt, Sampling};
use crate::sse::{self, usage_json, Item};
use crate::AppState;

pub async fn handler(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    match handle(st, &body).await {
        Ok(r) => r,
        Err(e) => {
            crate::gen::log_rejected("/v1/completions", &e);
            e.into_response()
        }
    }
}

async fn handle(st: Arc<AppState>, body: &[u8]) -> ApiResult<Response> {
    crate::fields::check_gen(body, "/v1/completions", crate::fields::COMPLETION)?;
    let req: CompletionRequest = parse_body(body)?;
    let sampling: Sampling = parse_body(body)?;
    st.check_model(req.model.as_deref())?;
    if req.echo == Some(true) {
        return Err(ApiError::invalid("echo", "`echo` is not supported"));
    }
    if req.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid("suffix", "`suffix` is not supported"));
    }
    let logprobs = completion_logprobs(req.logprobs)?;
    let mut params = sampling.params(max_tokens(req.max_tokens, "max_tokens", 16)?, logprobs)?;
    params.grammar = crate::guided::grammar(&st, body)?;
    if req.best_of.is_some_and(|b| b != params.n as i64) {
        return Err(ApiError::invalid(
            "best_of",
            "`best_of` must equal `n` (no server-side best-of selection)",
        ));
    }
    let prompts = prompts(req.prompt.as_ref())?;
    let ids = crate::offload::blocking(&st, move |st| {
        let mut ids = vec![];
        for (i, p) in prompts.into_iter().enumerate() {
            match p {
                Prompt::Ids(v) => ids.push(v),
                Prompt::Text(s) => {
                    ids.push(crate::offload::encode(st, &s, true, "prompt").map_err(|mut e| {
                        e.message = format!("prompt {i}: {}", e.message);
                        e
                    })?)
                }
            }
        }
        Ok(ids)
    })
    .await?;
    if ids.len() * params.n > crate::MAX_CHOICES {
        return Err(ApiError::invalid("n", format!("prompts x n must be at most {}", crate::MAX_CHOICES)));
    }
    let choices = ids.len() * params.n;
    let (id, created, model) = (format!("cmpl-{}", st.next_id()), crate::unix_now(), st.model_name.clone());
    let run = Running::submit(&st, &id, ids, params)?;
    if sampling.stream() {
        let include_usage = sampling.include_usage();
        let want_lp = logprobs.is_some();
        let want_ids = req.return_token_ids.unwrap_or(false);
        let st2 = st.clone();
        let mut offsets = vec![0usize; choices];
        let format = move |item: Item| -> Vec<Value> {
            let base = |choices: Value| json!({"id": id, "object": "text_completion", "created": created, "model": model, "choices": choices});
            match item {
                Item::Start => vec![],
                Item::Delta(_, d) if d.text.is_empty() && d.finish.is_none() && !want_lp && !want_ids => {
                    vec![]
                }
                Item::Delta(i, d) => {
                    let off =
                        offsets.get_mut(i).map(|o| std::mem::replace(o, *o + d.text.len())).unwrap_or(0);
                    let lp = want_lp.then(|| logprobs_json(&st2, &d.logprobs, off));
                    let mut c = json!({"index": i, "text": d.text, "logprobs": lp, "finish_reason": finish_str(d.finish)});
                    if want_ids {
                        c["token_ids"] = json!(d.token_ids);
                    }
                    vec![base(json!([c]))]
                }
                Item::End(u) if include_usage => {
                    let mut v = base(json!([]));
                    v["usage"] = usage_json(&u);
                    vec![v]
                }
                Item::End(_) => vec![],
            }
        };
        return Ok(sse::stream(run, format).into_response());
    }
    let (out, usage) = run.collect(choices).await?;
    let choices: Vec<Value> = out
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let lp = logprobs.is_some().then(|| logprobs_json(&st, &c.logprobs, 0));
            let mut v =
                json!({"index": i, "text": c.text, "logprobs": lp, "finish_reason": finish_str(c.finish)});
            if req.return_token_ids == Some(true) {
                v["token_ids"] = json!(c.token_ids);
            }
            v
        })
        .collect();
    let body = json!({"id": id, "object": "text_completion", "created": created, "model": model, "choices": choices, "usage": usage_json(&usage)});
    Ok(axum::Json(body).into_response())
}

/// The legacy completions logprobs object.
fn logprobs_json(st: &Arc<AppState>, lps: &[TokenLogprob], mut offset: usize) -> Value {
    let mut tokens = vec![];
    let mut token_logprobs = vec![];
    let mut top = vec![];
    let mut offsets = vec![];
    for lp in lps {
        let t = token_text(st, lp.token);
        offsets.push(offset);
        offset += t.len();
        tokens.push(t);
        token_logprobs.push(lp.logprob);
        // Tokens with the same text share a key: keep the first (most likely).
        let mut m = serde_json::Map::new();
        for &(id, l) in &lp.top {
            m.entry(token_text(st, id)).or_insert(json!(l));
        }
        top.push(Value::Object(m));
    }
    json!({"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": offsets})
}
