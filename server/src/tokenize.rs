//! `POST /tokenize` and `POST /detokenize`, with vLLM's request and response shapes.
//!
//! `/tokenize`: `{"model"?, "prompt": str, "add_special_tokens"? = true}` or
//! `{"model"?, "messages": [...], "add_generation_prompt"? = true, "add_special_tokens"? = false}`
//! → `{"count", "max_model_len", "tokens"}` (+ `"token_strs"` with `return_token_strs`).
//! `/detokenize`: `{"model"?, "tokens": [ids]}` → `{"prompt": str}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{parse_body, ApiError, ApiResult};
use crate::protocol::messages;
use crate::AppState;

#[derive(Deserialize)]
struct TokenizeRequest {
    model: Option<String>,
    prompt: Option<String>,
    messages: Option<Value>,
    add_special_tokens: Option<bool>,
    add_generation_prompt: Option<bool>,
    return_token_strs: Option<bool>,
    chat_template_kwargs: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize)]
struct DetokenizeRequest {
    model: Option<String>,
    tokens: Option<Vec<i64>>,
}

const TOKENIZE_FIELDS: &[&str] = &[
    "model",
    "prompt",
    "messages",
    "add_special_tokens",
    "add_generation_prompt",
    "return_token_strs",
    "chat_template_kwargs",
];
/// vLLM fields of `/tokenize` we do not implement.
const TOKENIZE_UNSUPPORTED: &[&str] =
    &["continue_final_message", "chat_template", "tools", "mm_processor_kwargs"];

pub async fn tokenize(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let r = crate::offload::blocking(&st, move |st| handle_tokenize(st, &body)).await;
    r.map(|v| axum::Json(v).into_response()).unwrap_or_else(|e| e.into_response())
}

pub async fn detokenize(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    handle_detokenize(&st, &body).map(|v| axum::Json(v).into_response()).unwrap_or_else(|e| e.into_response())
}

fn handle_tokenize(st: &AppState, body: &[u8]) -> ApiResult<Value> {
    crate::fields::check(body, "/tokenize", TOKENIZE_FIELDS, TOKENIZE_UNSUPPORTED)?;
    let req: TokenizeRequest = parse_body(body)?;
    st.check_model(req.model.as_deref())?;
    let ids = match (&req.prompt, &req.messages) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("messages", "give either `prompt` or `messages`, not both"))
        }
        (None, None) => {
            return Err(ApiError::invalid("prompt", "`prompt` (a string) or `messages` is required"))
        }
        (Some(p), None) => {
            if req.chat_template_kwargs.is_some() {
                return Err(ApiError::invalid(
                    "chat_template_kwargs",
                    "`chat_template_kwargs` applies to `messages` only",
                ));
            }
            if req.add_generation_prompt.is_some() {
                return Err(ApiError::invalid(
                    "add_generation_prompt",
                    "`add_generation_prompt` applies to `messages` only",
                ));
            }
            crate::offload::encode(st, p, req.add_special_tokens.unwrap_or(true), "prompt")?
        }
        (None, Some(m)) => {
            let msgs = messages(Some(m))?;
            let Some(tmpl) = &st.chat_template else {
                return Err(ApiError::invalid(
                    "messages",
                    "this model has no chat template; tokenize a `prompt`",
                ));
            };
            let kwargs = req.chat_template_kwargs.clone().unwrap_or_default();
            let text = tmpl
                .render_with(&msgs, req.add_generation_prompt.unwrap_or(true), &kwargs)
                .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
            crate::offload::encode(st, &text, req.add_special_tokens.unwrap_or(false), "messages")?
        }
    };
    let mut out = json!({
        "count": ids.len(),
        "max_model_len": st.engine.limits().max_total_tokens,
        "tokens": ids,
    });
    if req.return_token_strs == Some(true) {
        let strs: Vec<Value> = ids
            .iter()
            .map(|&id| st.tokenizer.decode(&[id], false).map(Value::String).unwrap_or(Value::Null))
            .collect();
        out["token_strs"] = Value::Array(strs);
    }
    Ok(out)
}

fn handle_detokenize(st: &AppState, body: &[u8]) -> ApiResult<Value> {
    crate::fields::check(body, "/detokenize", &["model", "tokens"], &[])?;
    let req: DetokenizeRequest = parse_body(body)?;
    st.check_model(req.model.as_deref())?;
    let Some(tokens) = req.tokens else {
        return Err(ApiError::invalid("tokens", "`tokens` (an array of token ids) is required"));
    };
    let vocab = st.engine.limits().vocab_size.max(st.tokenizer.vocab_size());
    let ids = tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            u32::try_from(t).ok().filter(|&t| (t as usize) < vocab).ok_or_else(|| {
                ApiError::invalid(
                    format!("tokens[{i}]"),
                    format!("token id {t} is outside the vocabulary (size {vocab})"),
                )
            })
        })
        .collect::<ApiResult<Vec<u32>>>()?;
    let text = st.tokenizer.decode(&ids, false).map_err(|e| ApiError::invalid("tokens", e.to_string()))?;
    Ok(json!({"prompt": text}))
}
