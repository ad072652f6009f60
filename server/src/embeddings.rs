//! `POST /v1/embeddings` for decoder models: each input's final hidden state (after the final
//! norm), pooled over its tokens and L2-normalized.
//!
//! Fields: `input` (a string, an array of strings, an array of token ids, or an array of those),
//! `model`, `encoding_format` (`float`, or `base64`: little-endian f32 bytes), `dimensions`
//! (only the model's hidden size), `user` (accepted, no effect). Extensions: `pooling`
//! (`"last"`, the default, or `"mean"`), vLLM's `normalize` (default true) and
//! `add_special_tokens` (default true). Other vLLM fields are a 400 naming them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use trtllm_core::runner::{l2_normalize, Pooling};

use crate::error::{parse_body, ApiError, ApiResult};
use crate::AppState;

/// Most inputs one request may carry (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

#[derive(Deserialize)]
struct EmbeddingRequest {
    model: Option<String>,
    input: Option<Value>,
    encoding_format: Option<String>,
    dimensions: Option<i64>,
    #[allow(dead_code)]
    user: Option<String>,
    pooling: Option<String>,
    normalize: Option<bool>,
    add_special_tokens: Option<bool>,
}

const FIELDS: &[&str] = &[
    "model",
    "input",
    "encoding_format",
    "dimensions",
    "user",
    "pooling",
    "normalize",
    "add_special_tokens",
];
/// vLLM fields of the embeddings request we do not implement.
const UNSUPPORTED: &[&str] = &[
    "truncate_prompt_tokens",
    "priority",
    "messages",
    "chat_template",
    "chat_template_kwargs",
    "add_generation_prompt",
    "continue_final_message",
    "mm_processor_kwargs",
    "embed_dtype",
    "request_id",
];

pub async fn handler(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let start = std::time::Instant::now();
    match handle(st, &body, start).await {
        Ok(r) => r,
        Err(e) => {
            crate::gen::log_rejected("/v1/embeddings", &e);
            e.into_response()
        }
    }
}

async fn handle(st: Arc<AppState>, body: &[u8], start: std::time::Instant) -> ApiResult<Response> {
    crate::fields::check(body, "/v1/embeddings", FIELDS, UNSUPPORTED)?;
    let req: EmbeddingRequest = parse_body(body)?;
    st.check_model(req.model.as_deref())?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(f) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("`encoding_format` must be `float` or `base64`, got `{f}`"),
            ))
        }
    };
    let pooling = match req.pooling.as_deref() {
        None => Pooling::Last,
        Some(p) => Pooling::parse(p).ok_or_else(|| {
            ApiError::invalid("pooling", format!("`pooling` must be `last` or `mean`, got `{p}`"))
        })?,
    };
    if let Some(d) = req.dimensions {
        if d < 1 {
            return Err(ApiError::invalid("dimensions", format!("`dimensions` must be at least 1, got {d}")));
        }
    }
    let (input, special) = (req.input.clone(), req.add_special_tokens.unwrap_or(true));
    let inputs = crate::offload::blocking(&st, move |st| inputs(st, input.as_ref(), special)).await?;
    let prompt_tokens: usize = inputs.iter().map(Vec::len).sum();
    let (tx, rx) = tokio::sync::oneshot::channel();
    st.engine.embed(inputs, pooling, Box::new(move |r| drop(tx.send(r))))?;
    let id = format!("embd-{}", st.next_id());
    let vectors = rx.await.map_err(|_| ApiError::unavailable("the engine stopped"))?;
    let total_ms = || (start.elapsed().as_secs_f64() * 1e4).round() / 10.0;
    let vectors = vectors.map_err(|e| {
        tracing::error!(target: "trtllm::request", id = %id, status = "error", prompt_tokens, completion_tokens = 0,
            total_ms = total_ms(), "request finished");
        ApiError::internal(format!("engine error: {e}"))
    })?;
    let mut data = Vec::with_capacity(vectors.len());
    for (i, mut v) in vectors.into_iter().enumerate() {
        if let Some(d) = req.dimensions.filter(|&d| d as usize != v.len()) {
            return Err(ApiError::invalid(
                "dimensions",
                format!(
                    "`dimensions` {d} is not supported: this model's embeddings have {} (its hidden size)",
                    v.len()
                ),
            ));
        }
        if req.normalize.unwrap_or(true) {
            l2_normalize(&mut v);
        }
        let embedding = if base64 { Value::String(encode_base64(&v)) } else { json!(v) };
        data.push(json!({"object": "embedding", "index": i, "embedding": embedding}));
    }
    tracing::info!(target: "trtllm::request", id = %id, status = "ok", prompt_tokens, completion_tokens = 0,
        total_ms = total_ms(), "request finished");
    let body = json!({
        "id": id,
        "object": "list",
        "created": crate::unix_now(),
        "model": st.model_name,
        "data": data,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    });
    Ok(axum::Json(body).into_response())
}

/// `input` as token ids, one list per input.
fn inputs(st: &AppState, v: Option<&Value>, special: bool) -> ApiResult<Vec<Vec<u32>>> {
    let bad = || {
        ApiError::invalid(
            "input",
            "`input` must be a string, an array of strings, an array of token ids, or an array of those",
        )
    };
    let text = |i: usize, s: &str| -> ApiResult<Vec<u32>> {
        crate::offload::encode(st, s, special, &format!("input[{i}]"))
    };
    let ids = |a: &[Value]| -> ApiResult<Vec<u32>> {
        a.iter()
            .map(|x| x.as_u64().and_then(|t| u32::try_from(t).ok()))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(bad)
    };
    let out = match v {
        None | Some(Value::Null) => return Err(ApiError::invalid("input", "`input` is required")),
        Some(Value::String(s)) => vec![text(0, s)?],
        Some(Value::Array(a)) if a.is_empty() => return Err(ApiError::invalid("input", "`input` is empty")),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .enumerate()
            .map(|(i, s)| text(i, s.as_str().unwrap_or_default()))
            .collect::<ApiResult<_>>()?,
        Some(Value::Array(a)) if a.iter().all(Value::is_number) => vec![ids(a)?],
        Some(Value::Array(a)) if a.iter().all(Value::is_array) => a
            .iter()
            .map(|x| ids(x.as_array().map(Vec::as_slice).unwrap_or_default()))
            .collect::<ApiResult<_>>()?,
        Some(_) => return Err(bad()),
    };
    if out.len() > MAX_INPUTS {
        return Err(ApiError::invalid("input", format!("at most {MAX_INPUTS} inputs per request")));
    }
    if let Some(i) = out.iter().position(Vec::is_empty) {
        return Err(ApiError::invalid(format!("input[{i}]"), "an input has no tokens"));
    }
    Ok(out)
}

/// Standard base64 (with padding) of `v` as little-endian f32 bytes.
fn encode_base64(v: &[f32]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(ABC[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_of_f32_le() {
        // 1.0f32 = 00 00 80 3f
        assert_eq!(super::encode_base64(&[1.0]), "AACAPw==");
        assert_eq!(super::encode_base64(&[1.0, 2.0]), "AACAPwAAAEA=");
    }
}
