//! `POST /v1/chat/completions`: messages rendered with the model's chat template (minijinja,
//! `trtllm_core::text::ChatTemplate`), `n` choices, stop strings, logprobs, streaming.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use trtllm_core::runner::TokenLogprob;

use crate::error::{parse_body, ApiError, ApiResult};
use crate::gen::{finish_str, token_text, Running};
use crate::protocol::{chat_logprobs, max_tokens, messages, ChatRequest, Sampling};
use crate::sse::{self, usage_json, Item};
use crate::tools::{self, ToolFormat, ToolStream};
use crate::AppState;

pub async fn handler(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    match handle(st, &body).await {
        Ok(r) => r,
        Err(e) => {
            crate::gen::log_rejected("/v1/chat/completions", &e);
            e.into_response()
        }
    }
}

async fn handle(st: Arc<AppState>, body: &[u8]) -> ApiResult<Response> {
    crate::fields::check_gen(body, "/v1/chat/completions", crate::fields::CHAT)?;
    let req: ChatRequest = parse_body(body)?;
    let sampling: Sampling = parse_body(body)?;
    st.check_model(req.model.as_deref())?;
    let msgs = messages(req.messages.as_ref())?;
    let Some(tmpl) = &st.chat_template else {
        return Err(ApiError::invalid("messages", "this model has no chat template (tokenizer_config.json `chat_template` or chat_template.jinja); use /v1/completions"));
    };
    let raw: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let tools = tools::parse(&raw)?.filter(|t| t.choice != tools::Choice::None);
    let format = ToolFormat::of_template(&tmpl.source);
    let mut kwargs = req.chat_template_kwargs.unwrap_or_default();
    if let Some(t) = &tools {
        kwargs.insert("tools".into(), Value::Array(t.defs.clone()));
    }
    let ids = crate::offload::blocking(&st, move |st| {
        let tmpl =
            st.chat_template.as_ref().ok_or_else(|| ApiError::invalid("messages", "no chat template"))?;
        let text = tmpl
            .render_with(&msgs, true, &kwargs)
            .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
        crate::offload::encode(st, &text, false, "messages")
    })
    .await?;
    let logprobs = chat_logprobs(req.logprobs, req.top_logprobs)?;
    // Without a limit, generate up to the end of the context.
    let room = st.engine.limits().max_total_tokens.saturating_sub(ids.len()).max(1);
    let max_new = match (req.max_completion_tokens, req.max_tokens) {
        (Some(m), _) => max_tokens(Some(m), "max_completion_tokens", room)?,
        (None, m) => max_tokens(m, "max_tokens", room)?,
    };
    let mut params = sampling.params(max_new, logprobs)?;
    params.grammar = crate::guided::grammar(&st, body)?;
    if let Some(spec) = tools.as_ref().and_then(|t| t.grammar(format)) {
        if params.grammar.is_some() {
            return Err(ApiError::invalid(
                "tool_choice",
                "a required or named `tool_choice` cannot be combined with a structured-output constraint",
            ));
        }
        params.grammar = Some(crate::guided::compile(&st, &spec, "tools")?);
    }
    let parse_tools = tools.is_some();
    let choices = params.n;
    let (id, created, model) =
        (format!("chatcmpl-{}", st.next_id()), crate::unix_now(), st.model_name.clone());
    let run = Running::submit(&st, &id, vec![ids], params)?;
    if sampling.stream() {
        let include_usage = sampling.include_usage();
        let want_lp = logprobs.is_some();
        let st2 = st.clone();
        let mut held = vec![ToolStream::default(); choices];
        let call_id = id.clone();
        let fmt = move |item: Item| -> Vec<Value> {
            let base = |choices: Value| json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices});
            match item {
                Item::Start => (0..choices)
                    .map(|i| base(json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}])))
                    .collect(),
                Item::Delta(i, d) if parse_tools => {
                    let (text, calls) = held[i].push(format, &d.text, d.finish.is_some());
                    let mut out = vec![];
                    let lp = want_lp.then(|| logprobs_json(&st2, &d.logprobs));
                    if !text.is_empty() || lp.is_some() {
                        let delta = if text.is_empty() { json!({}) } else { json!({"content": text}) };
                        out.push(base(json!([{"index": i, "delta": delta, "logprobs": lp, "finish_reason": null}])));
                    }
                    for (k, c) in calls.iter().enumerate() {
                        let tc = tools::calls_json(std::slice::from_ref(c), &format!("{call_id}_{i}_{k}"));
                        let mut tc = tc[0].clone();
                        tc["index"] = json!(k);
                        out.push(base(json!([{"index": i, "delta": {"tool_calls": [tc]}, "logprobs": null, "finish_reason": null}])));
                    }
                    if d.finish.is_some() {
                        let f = if calls.is_empty() { finish_str(d.finish) } else { Some("tool_calls") };
                        out.push(base(json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": f}])));
                    }
                    out
                }
                Item::Delta(_, d) if d.text.is_empty() && d.finish.is_none() && !want_lp => vec![],
                Item::Delta(i, d) => {
                    let delta = if d.text.is_empty() { json!({}) } else { json!({"content": d.text}) };
                    let lp = want_lp.then(|| logprobs_json(&st2, &d.logprobs));
                    vec![base(json!([{"index": i, "delta": delta, "logprobs": lp, "finish_reason": finish_str(d.finish)}]))]
                }
                Item::End(u) if include_usage => {
                    let mut v = base(json!([]));
                    v["usage"] = usage_json(&u);
                    vec![v]
                }
                Item::End(_) => vec![],
            }
        };
        return Ok(sse::stream(run, fmt).into_response());
    }
    let (out, usage) = run.collect(choices).await?;
    let choices: Vec<Value> = out
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let lp = logprobs.is_some().then(|| logprobs_json(&st, &c.logprobs));
            if parse_tools {
                let (content, calls) = tools::parse_output(format, &c.text);
                if !calls.is_empty() {
                    let tc = tools::calls_json(&calls, &format!("{id}_{i}"));
                    let msg = json!({"role": "assistant", "content": content, "tool_calls": tc});
                    return json!({"index": i, "message": msg, "logprobs": lp, "finish_reason": "tool_calls"});
                }
            }
            json!({"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": lp, "finish_reason": finish_str(c.finish)})
        })
        .collect();
    let body = json!({"id": id, "object": "chat.completion", "created": created, "model": model, "choices": choices, "usage": usage_json(&usage)});
    Ok(axum::Json(body).into_response())
}

/// The chat logprobs object: `{"content": [{token, logprob, bytes, top_logprobs}]}`.
fn logprobs_json(st: &Arc<AppState>, lps: &[TokenLogprob]) -> Value {
    let entry = |id: u32, lp: f32| {
        let t = token_text(st, id);
        json!({"token": t, "logprob": lp, "bytes": t.as_bytes()})
    };
    let content: Vec<Value> = lps
        .iter()
        .map(|lp| {
            let mut e = entry(lp.token, lp.logprob);
            e["top_logprobs"] = lp.top.iter().map(|&(id, l)| entry(id, l)).collect();
            e
        })
        .collect();
    json!({"content": content})
}
