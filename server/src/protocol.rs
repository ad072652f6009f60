//! Request bodies of `/v1/completions` and `/v1/chat/completions` and their validation into
//! engine [`SamplingParams`]. Fields follow the OpenAI API; `top_k`, `min_p`,
//! `repetition_penalty`, `ignore_eos` and `stop_token_ids` are the usual vLLM extensions.
//! Which fields an endpoint takes is `fields.rs`: a field OpenAI or vLLM define that we do not
//! implement is a 400 naming it, a field no API defines is ignored with a warning; known fields
//! are checked here, and every error names its field.

use serde::Deserialize;
use serde_json::Value;
use trtllm_core::runner::{SamplingParams, MAX_LOGPROBS, MAX_N};

use crate::error::{ApiError, ApiResult};

#[derive(Deserialize, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling fields common to both endpoints, parsed from the same body as the endpoint's own
/// fields (not `#[serde(flatten)]`, which would lose the field name in type errors).
#[derive(Deserialize, Default)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub n: Option<i64>,
    pub seed: Option<u64>,
    pub stop: Option<Value>,
    pub stop_token_ids: Option<Vec<u32>>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub ignore_eos: Option<bool>,
    pub logit_bias: Option<serde_json::Map<String, Value>>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Option<Value>,
    pub max_tokens: Option<i64>,
    pub logprobs: Option<i64>,
    pub echo: Option<bool>,
    pub best_of: Option<i64>,
    pub suffix: Option<String>,
    /// vLLM's `return_token_ids`: each choice (each streamed chunk) also carries the ids of its
    /// tokens, and a streamed token whose text is still empty gets its own chunk.
    pub return_token_ids: Option<bool>,
}

#[derive(Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Option<Value>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<i64>,
    /// Extra chat-template variables (vLLM; e.g. Qwen3's `enable_thinking`).
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
}

/// A completion prompt: text, or token ids.
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

fn ids(v: &[Value], param: &str) -> ApiResult<Vec<u32>> {
    v.iter()
        .map(|x| x.as_u64().filter(|&t| t <= u32::MAX as u64).map(|t| t as u32))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            ApiError::invalid(param, format!("`{param}` must be a string, an array of strings, or token ids"))
        })
}

/// `prompt`: a string, an array of strings, an array of token ids, or an array of those.
pub fn prompts(v: Option<&Value>) -> ApiResult<Vec<Prompt>> {
    let bad = || ApiError::invalid("prompt", "`prompt` must be a string, an array of strings, or token ids");
    let out = match v {
        None | Some(Value::Null) => return Err(ApiError::invalid("prompt", "`prompt` is required")),
        Some(Value::String(s)) => vec![Prompt::Text(s.clone())],
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(ApiError::invalid("prompt", "`prompt` is empty"))
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            a.iter().filter_map(|s| s.as_str()).map(|s| Prompt::Text(s.into())).collect()
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_number) => vec![Prompt::Ids(ids(a, "prompt")?)],
        Some(Value::Array(a)) if a.iter().all(Value::is_array) => a
            .iter()
            .map(|x| Ok(Prompt::Ids(ids(x.as_array().ok_or_else(bad)?, "prompt")?)))
            .collect::<ApiResult<_>>()?,
        Some(_) => return Err(bad()),
    };
    Ok(out)
}

/// `stop`: a string or an array of up to 16 non-empty strings.
fn stops(v: Option<&Value>) -> ApiResult<Vec<String>> {
    let bad =
        || ApiError::invalid("stop", "`stop` must be a string or an array of up to 16 non-empty strings");
    let out: Vec<String> = match v {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => {
            a.iter().map(|s| s.as_str().map(String::from).ok_or_else(bad)).collect::<ApiResult<_>>()?
        }
        Some(_) => return Err(bad()),
    };
    if out.len() > 16 || out.iter().any(String::is_empty) {
        return Err(bad());
    }
    Ok(out)
}

fn range<T: PartialOrd + Copy + std::fmt::Display>(
    v: Option<T>,
    name: &str,
    lo: T,
    hi: T,
    default: T,
) -> ApiResult<T> {
    match v {
        None => Ok(default),
        Some(x) if x >= lo && x <= hi => Ok(x),
        Some(x) => Err(ApiError::invalid(name, format!("`{name}` must be in [{lo}, {hi}], got {x}"))),
    }
}

impl Sampling {
    /// Sampling parameters with `max_tokens` and `logprobs` decided by the endpoint.
    pub fn params(&self, max_tokens: usize, logprobs: Option<usize>) -> ApiResult<SamplingParams> {
        if self.logit_bias.as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(ApiError::invalid("logit_bias", "`logit_bias` is not supported"));
        }
        if self.stream_options.is_some() && self.stream != Some(true) {
            return Err(ApiError::invalid(
                "stream_options",
                "`stream_options` is only allowed when `stream` is true",
            ));
        }
        let temperature = range(self.temperature, "temperature", 0.0, 2.0, 1.0)?;
        if temperature.is_nan() {
            return Err(ApiError::invalid("temperature", "`temperature` must be a number"));
        }
        let top_p = range(self.top_p, "top_p", 0.0, 1.0, 1.0)?;
        if top_p == 0.0 {
            return Err(ApiError::invalid("top_p", "`top_p` must be in (0, 1]"));
        }
        let top_k = range(self.top_k, "top_k", -1, 1 << 20, 0)?.max(0) as usize;
        Ok(SamplingParams {
            max_new_tokens: max_tokens,
            temperature,
            top_k,
            top_p,
            min_p: range(self.min_p, "min_p", 0.0, 1.0, 0.0)?,
            seed: self.seed,
            stop_token_ids: self.stop_token_ids.clone().unwrap_or_default(),
            ignore_eos: self.ignore_eos.unwrap_or(false),
            stop: stops(self.stop.as_ref())?,
            n: range(self.n, "n", 1, MAX_N as i64, 1)? as usize,
            logprobs,
            presence_penalty: range(self.presence_penalty, "presence_penalty", -2.0, 2.0, 0.0)?,
            frequency_penalty: range(self.frequency_penalty, "frequency_penalty", -2.0, 2.0, 0.0)?,
            repetition_penalty: range(self.repetition_penalty, "repetition_penalty", 0.01, 100.0, 1.0)?,
            grammar: None,
        })
    }

    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }
    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }
}

/// `max_tokens` (or the chat spelling): at least 1; `default` when absent.
pub fn max_tokens(v: Option<i64>, name: &str, default: usize) -> ApiResult<usize> {
    match v {
        None => Ok(default),
        Some(x) if x >= 1 => Ok(x as usize),
        Some(x) => Err(ApiError::invalid(name, format!("`{name}` must be at least 1, got {x}"))),
    }
}

/// Completions' `logprobs`: the number of top alternatives, 0..=20.
pub fn completion_logprobs(v: Option<i64>) -> ApiResult<Option<usize>> {
    v.map(|k| range(Some(k), "logprobs", 0, MAX_LOGPROBS as i64, 0).map(|k| k as usize)).transpose()
}

/// Chat's `logprobs` + `top_logprobs`.
pub fn chat_logprobs(logprobs: Option<bool>, top: Option<i64>) -> ApiResult<Option<usize>> {
    let k = range(top, "top_logprobs", 0, MAX_LOGPROBS as i64, 0)? as usize;
    match (logprobs.unwrap_or(false), top) {
        (true, _) => Ok(Some(k)),
        (false, Some(_)) => {
            Err(ApiError::invalid("top_logprobs", "`top_logprobs` requires `logprobs` to be true"))
        }
        (false, None) => Ok(None),
    }
}

/// Chat `messages`: role + content (a string, or text parts) into template messages.
pub fn messages(v: Option<&Value>) -> ApiResult<Vec<trtllm_core::text::ChatMessage>> {
    let Some(Value::Array(list)) = v else {
        return Err(ApiError::invalid("messages", "`messages` must be a non-empty array"));
    };
    if list.is_empty() {
        return Err(ApiError::invalid("messages", "`messages` must be a non-empty array"));
    }
    let mut out = vec![];
    for (i, m) in list.iter().enumerate() {
        let p = |f: &str| format!("messages[{i}].{f}");
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid(p("role"), "each message needs a string `role`"))?;
        if !["system", "developer", "user", "assistant", "tool"].contains(&role) {
            return Err(ApiError::invalid(p("role"), format!("unknown role `{role}`")));
        }
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None if role == "assistant" => String::new(),
            Some(Value::Array(parts)) => {
                let mut s = String::new();
                for (j, part) in parts.iter().enumerate() {
                    match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str))
                    {
                        (Some("text"), Some(t)) => s.push_str(t),
                        _ => {
                            return Err(ApiError::invalid(
                                format!("messages[{i}].content[{j}]"),
                                "only text content parts are supported",
                            ))
                        }
                    }
                }
                s
            }
            _ => {
                return Err(ApiError::invalid(
                    p("content"),
                    "`content` must be a string or an array of text parts",
                ))
            }
        };
        let mut msg = trtllm_core::text::ChatMessage::new(role, content);
        if let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) {
            msg.tool_calls = Some(template_tool_calls(calls, &p("tool_calls"))?);
        }
        let text = |f: &str| m.get(f).and_then(Value::as_str).map(String::from);
        msg.tool_call_id = text("tool_call_id");
        msg.name = text("name");
        out.push(msg);
    }
    Ok(out)
}

/// An assistant message's `tool_calls` as chat templates read them: each call's `arguments`
/// (JSON text in the OpenAI API) parsed into an object, as vLLM does before rendering.
fn template_tool_calls(calls: &Value, param: &str) -> ApiResult<Value> {
    let bad = || {
        ApiError::invalid(param, "`tool_calls` must be an array of {id, type, function: {name, arguments}}")
    };
    let list = calls.as_array().ok_or_else(bad)?;
    let mut out = vec![];
    for c in list {
        let mut c = c.clone();
        let f = c.get_mut("function").filter(|f| f.is_object()).ok_or_else(bad)?;
        if f.get("name").and_then(Value::as_str).is_none() {
            return Err(bad());
        }
        if let Some(Value::String(a)) = f.get("arguments") {
            let parsed = serde_json::from_str::<Value>(a)
                .map_err(|e| ApiError::invalid(param, format!("tool call arguments are not JSON: {e}")))?;
            f["arguments"] = parsed;
        }
        out.push(c);
    }
    Ok(Value::Array(out))
}
