//! Evaluation tools over [`crate::Llm`], not part of the engine: `verify` (logits and hidden
//! states against HF references), `summarize` (the summarization set with ROUGE), `rouge`,
//! `perplexity` (teacher-forced NLL over texts).

pub mod perplexity;
pub mod rouge;
pub mod summarize;
pub mod verify;
