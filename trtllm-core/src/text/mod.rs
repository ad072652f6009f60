//! Text in and out: the tokenizer (`tokenizer.json`), incremental detokenization with stop
//! strings, and chat templates. Depends only on the base (`error`).

mod chat;
mod detok;
mod tokenizer;

pub use chat::{ChatMessage, ChatTemplate};
pub use detok::{IncrementalDetokenizer, StopMatcher};
pub use tokenizer::{check_tokenizer_json, StreamDecoder, Tokenizer};
