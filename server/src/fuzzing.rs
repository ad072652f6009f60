//! Entry points for the fuzz harness (`fuzz/`): each generation endpoint's request parsing, the
//! steps its handler takes before tokenizing, down to the engine's [`SamplingParams`] — without
//! a model. Not an API.

use trtllm_core::runner::SamplingParams;
use trtllm_core::text::ChatMessage;

use crate::error::{parse_body, ApiError, ApiResult};
use crate::protocol::{
    chat_logprobs, completion_logprobs, max_tokens, messages, prompts, ChatRequest, CompletionRequest,
    Sampling,
};

/// A `/v1/completions` body: its prompt count and sampling parameters, or the 4xx it gets.
pub fn completion(body: &[u8]) -> ApiResult<(usize, SamplingParams)> {
    crate::fields::check_gen(body, "/v1/completions", crate::fields::COMPLETION)?;
    let req: CompletionRequest = parse_body(body)?;
    let sampling: Sampling = parse_body(body)?;
    let logprobs = completion_logprobs(req.logprobs)?;
    let params = sampling.params(max_tokens(req.max_tokens, "max_tokens", 16)?, logprobs)?;
    Ok((prompts(req.prompt.as_ref())?.len(), params))
}

/// A `/v1/chat/completions` body: its messages and sampling parameters, or the 4xx it gets.
pub fn chat(body: &[u8]) -> ApiResult<(Vec<ChatMessage>, SamplingParams)> {
    crate::fields::check_gen(body, "/v1/chat/completions", crate::fields::CHAT)?;
    let req: ChatRequest = parse_body(body)?;
    let sampling: Sampling = parse_body(body)?;
    let msgs = messages(req.messages.as_ref())?;
    let logprobs = chat_logprobs(req.logprobs, req.top_logprobs)?;
    let max_new = match (req.max_completion_tokens, req.max_tokens) {
        (Some(m), _) => max_tokens(Some(m), "max_completion_tokens", 16)?,
        (None, m) => max_tokens(m, "max_tokens", 16)?,
    };
    Ok((msgs, sampling.params(max_new, logprobs)?))
}

/// The status of an error: what the fuzz harness checks is 4xx (a request's fault), never 500.
pub fn status(e: &ApiError) -> u16 {
    e.status.as_u16()
}
