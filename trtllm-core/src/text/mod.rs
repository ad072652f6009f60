//! Text in and out: the tokenizer (`tokenizer.json`), incremental detokenization with stop
//! strings, chat templates, and grammars for structured outputs (`grammar.rs`, llguidance). Depends only on the base (`error`).

mod chat;
mod detok;
mod grammar;
mod tokenizer;

pub use chat::{ChatMessage, ChatTemplate};
pub use detok::{IncrementalDetokenizer, StopMatcher};
pub(crate) use grammar::regex_escape;
pub use grammar::{mask_allows, mask_words, Grammar, GrammarCompiler, GrammarSpec, TokenMatcher, MASK_BITS};
pub use tokenizer::{check_tokenizer_json, StreamDecoder, Tokenizer};
