//! The startup block `trtllm serve` logs once the engine is up: the resolved configuration
//! (what every default and flag came to), one `key: value` line each, at info level.

use crate::{ServeConfig, Served};

/// The lines of the block (without the log prefix).
pub fn lines(cfg: &ServeConfig, served: &Served) -> Vec<String> {
    let s = &served.scheduler;
    let tmpl = served.chat_template.as_ref().map_or("none (chat completions are a 400)".to_string(), |t| {
        format!("{} (tool calls: {:?})", t.origin.display(), crate::tools::ToolFormat::of_template(&t.source))
    });
    vec![
        format!("model: {}", cfg.model_dir.display()),
        format!("served model name: {}", served.model_name),
        format!(
            "device: {:?}, dtype: {}",
            cfg.device,
            cfg.dtype.map_or("auto (the checkpoint's)".into(), |d| format!("{d:?}"))
        ),
        format!(
            "max-num-seqs: {}, max-num-tokens: {}, max-model-len: {}",
            s.max_batch_size, s.max_num_tokens, s.max_seq_len
        ),
        format!(
            "KV cache: {} blocks, prefix caching: {}",
            served.kv_blocks,
            if s.prefix_caching { "on" } else { "off" }
        ),
        format!(
            "max queue: {}, drain timeout: {:?}, api key: {}",
            cfg.max_queue,
            cfg.drain_timeout,
            if cfg.api_key.is_some() { "set" } else { "none" }
        ),
        format!("chat template: {tmpl}"),
        format!(
            "vocabulary: {} tokens, EOS {:?}",
            served.tokenizer.vocab_size(),
            served.tokenizer.eos_token_ids
        ),
        "structured outputs: llguidance (json_schema, json_object, regex, choice, Lark)".to_string(),
    ]
}

/// Log the block at info level.
pub fn log(cfg: &ServeConfig, served: &Served) {
    for l in lines(cfg, served) {
        tracing::info!("config: {l}");
    }
}
