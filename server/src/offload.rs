//! Tokenization and chat-template rendering run on tokio's blocking pool, never on the HTTP
//! worker threads, at most [`TextWork::slots`] at a time; a text longer than the model's
//! context could hold is refused before it is tokenized (`max_prompt_bytes`).
//!
//! The byte cap: no token of the vocabulary stands for more than `T` bytes of text (the
//! longest entry of the vocabulary, in UTF-8), so a text over `T x max-model-len` bytes has
//! more tokens than the context holds and would be refused after tokenizing anyway. The cap
//! allows twice that, for normalizers that shorten text before it is split.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The blocking-pool budget for text work and the prompt byte cap.
pub struct TextWork {
    /// Tokenizer calls at once: one per core.
    slots: Arc<Semaphore>,
    /// Longest text (bytes) a request may ask to tokenize.
    pub max_prompt_bytes: usize,
}

impl TextWork {
    pub fn new(max_total_tokens: usize, max_token_bytes: usize) -> Self {
        let parallel = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(2, 16);
        let max_prompt_bytes = max_total_tokens.saturating_mul(max_token_bytes.max(1)).saturating_mul(2);
        TextWork { slots: Arc::new(Semaphore::new(parallel)), max_prompt_bytes }
    }
}

/// Run `f` (tokenizing, rendering) on the blocking pool once a text slot is free.
pub async fn blocking<T, F>(st: &Arc<AppState>, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&AppState) -> ApiResult<T> + Send + 'static,
{
    let slot = st
        .text
        .slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::unavailable("the server is shutting down"))?;
    let st = st.clone();
    let r = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        f(&st)
    })
    .await;
    r.map_err(|e| ApiError::internal(format!("tokenizer task failed: {e}")))?
}

/// `text` within the byte cap, else a 400 naming `field`.
pub fn check_len(st: &AppState, text: &str, field: &str) -> ApiResult<()> {
    let cap = st.text.max_prompt_bytes;
    if text.len() > cap {
        return Err(ApiError::invalid(
            field,
            format!(
                "`{field}` is {} bytes: longer than this model's context of {} tokens can hold \
                 (at most {cap} bytes are tokenized)",
                text.len(),
                st.engine.limits().max_total_tokens
            ),
        ));
    }
    Ok(())
}

/// Token ids of `text` (`special`: with the tokenizer's added BOS), the byte cap checked first.
/// Call it inside [`blocking`].
pub fn encode(st: &AppState, text: &str, special: bool, field: &str) -> ApiResult<Vec<u32>> {
    check_len(st, text, field)?;
    let r = if special { st.tokenizer.encode(text) } else { st.tokenizer.encode_raw(text) };
    r.map_err(|e| ApiError::invalid(field, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_cap_is_twice_what_the_context_can_hold() {
        let t = TextWork::new(4096, 16);
        assert_eq!(t.max_prompt_bytes, 4096 * 16 * 2);
        assert!(t.slots.available_permits() >= 2);
        assert_eq!(TextWork::new(usize::MAX, 64).max_prompt_bytes, usize::MAX);
        assert_eq!(TextWork::new(10, 0).max_prompt_bytes, 20);
    }
}
