//! Request-field policy of the newer endpoints (`/tokenize`, `/detokenize`, `/v1/embeddings`):
//! a field the endpoint supports is parsed, a field an API defines that we do not support is a
//! 400 naming it, and a field no API defines is ignored with a warning in the log.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Fields of both generation endpoints (`protocol::Sampling`).
const SAMPLING: &[&str] = &[
    "model",
    "max_tokens",
    "logprobs",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "n",
    "seed",
    "stop",
    "stop_token_ids",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "ignore_eos",
    "logit_bias",
    "stream",
    "stream_options",
    // Accepted, no effect on the output (an end-user id for abuse tracking).
    "user",
];

/// `/v1/completions`: the sampling fields and these.
pub const COMPLETION: &[&str] = &["prompt", "echo", "best_of", "suffix", "return_token_ids"];
/// `/v1/chat/completions`: the sampling fields and these.
pub const CHAT: &[&str] = &[
    "messages",
    "max_completion_tokens",
    "top_logprobs",
    "chat_template_kwargs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
];

/// Fields OpenAI or vLLM define for generation that we do not implement: a 400 naming them.
pub const GEN_UNSUPPORTED: &[&str] = &[
    "functions",
    "function_call",
    "guided_decoding_backend",
    "guided_whitespace_pattern",
    "min_tokens",
    "use_beam_search",
    "length_penalty",
    "prompt_logprobs",
    "allowed_token_ids",
    "bad_words",
    "truncate_prompt_tokens",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "include_stop_str_in_output",
    "logits_processors",
    "add_generation_prompt",
    "continue_final_message",
    "add_special_tokens",
    "chat_template",
    "documents",
    "mm_processor_kwargs",
    "priority",
    "request_id",
    "reasoning_effort",
    "modalities",
    "audio",
    "prediction",
    "service_tier",
    "store",
    "metadata",
    "web_search_options",
];

/// Check a generation request: `own` are the endpoint's fields beyond the sampling ones.
pub fn check_gen(body: &[u8], endpoint: &str, own: &[&str]) -> ApiResult<()> {
    let supported: Vec<&str> = SAMPLING.iter().chain(own).chain(crate::guided::FIELDS).copied().collect();
    // Tool fields are the chat endpoint's; elsewhere they are unsupported, not unknown.
    let tools = ["tools", "tool_choice", "parallel_tool_calls"];
    let unsupported: Vec<&str> =
        GEN_UNSUPPORTED.iter().copied().chain(tools.into_iter().filter(|t| !own.contains(t))).collect();
    check(body, endpoint, &supported, &unsupported)
}

/// Check the top-level keys of `body` (a JSON object) against `supported` and `unsupported`.
pub fn check(body: &[u8], endpoint: &str, supported: &[&str], unsupported: &[&str]) -> ApiResult<()> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        // Not an object: the typed parse reports it with the usual message.
        return Ok(());
    };
    for key in map.keys() {
        if unsupported.contains(&key.as_str()) {
            return Err(ApiError::invalid(key.clone(), format!("`{key}` is not supported by {endpoint}")));
        }
        if !supported.contains(&key.as_str()) {
            tracing::warn!("{endpoint}: ignoring unknown request field `{key}`");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_field_is_a_400_naming_it() {
        let e = check(br#"{"a": 1, "b": 2}"#, "/x", &["a"], &["b"]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("b"));
        assert!(check(br#"{"a": 1, "zz": 2}"#, "/x", &["a"], &["b"]).is_ok());
        let e = check_gen(br#"{"prompt": "x", "tools": []}"#, "/v1/completions", COMPLETION).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools"));
        assert!(check_gen(br#"{"messages": [], "tools": []}"#, "/v1/chat/completions", CHAT).is_ok());
        assert!(
            check_gen(br#"{"prompt": "x", "top_k": 3, "user": "u"}"#, "/v1/completions", COMPLETION).is_ok()
        );
        let body = br#"{"prompt": "x", "guided_regex": "a", "response_format": {"type": "text"}}"#;
        assert!(check_gen(body, "/v1/completions", COMPLETION).is_ok());
    }
}
