//! Structured outputs: a grammar (JSON schema, regex, a choice of strings, Lark) compiled by
//! llguidance against the tokenizer's token trie, and one [`TokenMatcher`] per sequence that
//! gives the tokens allowed next as a packed bitmask (bit `t % 32` of word `t / 32` set: token
//! `t` allowed) and advances on each sampled token.
//!
//! JSON is generated compact (`", "` and `": "` separators, no other whitespace): a model
//! cannot pad a document with whitespace until it runs out of tokens.

use std::sync::{Arc, Mutex};

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};

use super::Tokenizer;
use crate::{Error, Result};

/// What the output must match.
#[derive(Clone, Debug, PartialEq)]
pub enum GrammarSpec {
    /// A JSON document valid against this JSON schema.
    JsonSchema(Value),
    /// Any JSON object.
    JsonObject,
    /// The whole output matches this regular expression (Rust `regex` syntax).
    Regex(String),
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// A grammar in llguidance's Lark syntax (`start: ...`).
    Lark(String),
}

/// Tokens per word of a packed mask.
pub const MASK_BITS: usize = 32;

/// Words of a packed mask over `vocab` tokens.
pub fn mask_words(vocab: usize) -> usize {
    vocab.div_ceil(MASK_BITS)
}

/// Whether token `t` is allowed by the packed mask `words`.
pub fn mask_allows(words: &[u32], t: usize) -> bool {
    words.get(t / MASK_BITS).is_some_and(|w| (w >> (t % MASK_BITS)) & 1 == 1)
}

/// Compiles grammars for one tokenizer and model vocabulary; made once per served model.
pub struct GrammarCompiler {
    factory: Arc<ParserFactory>,
    vocab: usize,
}

impl std::fmt::Debug for GrammarCompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarCompiler").field("vocab", &self.vocab).finish()
    }
}

/// `s` as a literal in a regex: the metacharacters of the `regex` crate's syntax escaped (also
/// a literal for Python's `re`, which compressed-tensors ignore patterns use).
pub(crate) fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn compact(mut schema: Value) -> Value {
    if let Value::Object(m) = &mut schema {
        m.entry("x-guidance").or_insert_with(
            || json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

impl GrammarCompiler {
    /// A compiler over `tok`'s tokens, for logits of `vocab` columns (>= the tokenizer's
    /// vocabulary; the padding columns are never allowed). EOS is `tok.eos_token_ids`.
    pub fn new(tok: &Tokenizer, vocab: usize) -> Result<Self> {
        fn err(e: impl std::fmt::Display) -> Error {
            Error::Msg(format!("structured outputs: token trie: {e}"))
        }
        let mut bt = toktrie_hf_tokenizers::ByteTokenizer::from_tokenizer(tok.hf().clone()).map_err(err)?;
        let n = bt.tokrx_info().vocab_size;
        let eos: Vec<u32> = tok.eos_token_ids.iter().copied().filter(|&e| e < n).collect();
        if !eos.is_empty() {
            bt.set_eos_tokens(&eos);
        }
        let env = bt.into_tok_env(Some(vocab.max(n as usize))).map_err(err)?;
        let mut factory = ParserFactory::new_simple(&env).map_err(err)?;
        factory.quiet();
        Ok(GrammarCompiler { factory: Arc::new(factory), vocab })
    }

    /// The columns of the logits the masks cover.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Compile `spec`; a grammar llguidance rejects is an `Error::Request` naming the problem.
    pub fn compile(&self, spec: &GrammarSpec) -> Result<Grammar> {
        let top = match spec {
            GrammarSpec::JsonSchema(s) => TopLevelGrammar::from_json_schema(compact(s.clone())),
            GrammarSpec::JsonObject => TopLevelGrammar::from_json_schema(compact(json!({"type": "object"}))),
            GrammarSpec::Regex(r) => TopLevelGrammar::from_regex(r),
            GrammarSpec::Choice(c) => {
                if c.is_empty() {
                    return Err(Error::Request("guided_choice must list at least one string".into()));
                }
                let alts: Vec<String> = c.iter().map(|s| format!("(?:{})", regex_escape(s))).collect();
                TopLevelGrammar::from_regex(&alts.join("|"))
            }
            GrammarSpec::Lark(g) => TopLevelGrammar::from_lark(g.clone()),
        };
        let parser =
            self.factory.create_parser(top).map_err(|e| Error::Request(format!("invalid grammar: {e}")))?;
        let m = Matcher::new(Ok(parser));
        if let Some(e) = m.get_error() {
            return Err(Error::Request(format!("invalid grammar: {e}")));
        }
        Ok(Grammar { proto: Mutex::new(m), vocab: self.vocab })
    }
}

/// A compiled grammar: the start state each sequence copies.
pub struct Grammar {
    proto: Mutex<Matcher>,
    vocab: usize,
}

impl std::fmt::Debug for Grammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammar").field("vocab", &self.vocab).finish()
    }
}

impl Grammar {
    /// A matcher at the start of the grammar.
    pub fn matcher(&self) -> TokenMatcher {
        let m = match self.proto.lock() {
            Ok(m) => m.deep_clone(),
            Err(p) => p.into_inner().deep_clone(),
        };
        TokenMatcher { m, vocab: self.vocab }
    }
}

/// One sequence's position in its grammar.
pub struct TokenMatcher {
    m: Matcher,
    vocab: usize,
}

impl std::fmt::Debug for TokenMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenMatcher").field("stopped", &self.m.is_stopped()).finish()
    }
}

impl TokenMatcher {
    /// The tokens allowed next, as [`mask_words`]`(vocab)` packed words. When the grammar is
    /// complete only EOS is allowed.
    pub fn mask(&mut self) -> Result<Vec<u32>> {
        let v = self.m.compute_mask_or_eos().map_err(|e| Error::Msg(format!("structured outputs: {e}")))?;
        let mut words = vec![0u32; mask_words(self.vocab)];
        let src = v.as_slice();
        let n = words.len().min(src.len());
        words[..n].copy_from_slice(&src[..n]);
        let tail = self.vocab % MASK_BITS;
        if tail != 0 {
            if let Some(last) = words.last_mut() {
                *last &= (1u32 << tail) - 1;
            }
        }
        if words.iter().all(|&w| w == 0) {
            return Err(Error::Msg("structured outputs: the grammar allows no token here".into()));
        }
        Ok(words)
    }

    /// Advance past the sampled `token` (one the last mask allowed).
    pub fn accept(&mut self, token: u32) -> Result<()> {
        self.m.consume_token(token).map_err(|e| Error::Msg(format!("structured outputs: {e}")))
    }

    /// The columns of the masks.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The grammar is complete: nothing but EOS may follow.
    pub fn is_finished(&self) -> bool {
        self.m.is_stopped()
    }
}

#[cfg(test)]
#[path = "grammar_tests.rs"]
mod tests;
