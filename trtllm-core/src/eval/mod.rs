//! Evaluation tools over [`crate::Llm`], not part of the engine: `verify` (logits and hidden
//! states against HF references), `summarize` (the summarization set with ROUGE), `rouge`.

pub mod rouge;
pub mod summarize;
pub mod verify;
