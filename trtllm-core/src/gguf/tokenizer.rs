//! tokenizer.json rebuilt from `tokenizer.ggml.*`, as HF transformers' GGUF loader builds it:
//! `gpt2` -> byte-level BPE with the file's merges and the pre-tokenizer `tokenizer.ggml.pre`
//! names; `llama` (SentencePiece) -> BPE with byte fallback and merges recovered from the
//! vocabulary (Gemma: its spelling and order fixes). Control tokens (type 3) become special
//! added tokens, user-defined ones (type 4) plain added tokens.

use serde_json::{json, Value};

use super::merges::{bytes_to_unicode, dedup_vocab, generate_merges, py_isspace};
use super::names::Arch;
use super::reader::GgufFile;
use crate::Result;

const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// Split regexes of llama.cpp's `tokenizer.ggml.pre` names (GPT-2's own regex is ByteLevel's).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn split_regex(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "megrez" => QWEN2_SPLIT,
        _ => return None,
    })
}

/// A rebuilt tokenizer: the pieces of tokenizer.json and the special-token strings.
pub struct BuiltTokenizer {
    /// `(token, id)` in file order.
    pub vocab: Vec<(String, u32)>,
    pub merges: Vec<(String, String)>,
    /// The BPE model's fields other than vocab and merges.
    pub model: Value,
    pub added_tokens: Vec<Value>,
    pub normalizer: Value,
    pub pre_tokenizer: Value,
    pub post_processor: Value,
    pub decoder: Value,
    pub special: Specials,
}

/// Special-token strings and flags for tokenizer_config.json.
#[derive(Default)]
pub struct Specials {
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub unk: Option<String>,
    pub pad: Option<String>,
    pub mask: Option<String>,
    pub add_bos: bool,
    pub add_eos: bool,
}

fn byte_level(add_prefix_space: bool, use_regex: bool) -> Value {
    json!({ "type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": true, "use_regex": use_regex })
}

fn sp_decoder(strip: bool) -> Value {
    let mut d = vec![
        json!({ "type": "Replace", "pattern": { "String": "\u{2581}" }, "content": " " }),
        json!({ "type": "ByteFallback" }),
        json!({ "type": "Fuse" }),
    ];
    if strip {
        d.push(json!({ "type": "Strip", "content": " ", "start": 1, "stop": 0 }));
    }
    json!({ "type": "Sequence", "decoders": d })
}

/// `TemplateProcessing` adding BOS / EOS as transformers' `update_post_processor` does.
fn post_processor(s: &Specials, vocab: &[(String, u32)]) -> Value {
    let id = |t: &str| vocab.iter().find(|(v, _)| v == t).map(|(_, i)| *i);
    let bos = s.bos.as_deref().filter(|_| s.add_bos).and_then(|b| id(b).map(|i| (b, i)));
    let eos = s.eos.as_deref().filter(|_| s.add_eos).and_then(|e| id(e).map(|i| (e, i)));
    let special = |t: &str, ty: u32| json!({ "SpecialToken": { "id": t, "type_id": ty } });
    let seq = |t: &str, ty: u32| json!({ "Sequence": { "id": t, "type_id": ty } });
    let (mut single, mut pair) = (vec![], vec![]);
    let mut tokens = serde_json::Map::new();
    for (part, ty) in [("A", 0), ("B", 1)] {
        let out = if part == "A" { &mut single } else { &mut pair };
        if let Some((b, _)) = bos {
            out.push(special(b, ty));
        }
        out.push(seq(part, ty));
        if let Some((e, _)) = eos {
            out.push(special(e, ty));
        }
    }
    let pair = single.iter().cloned().chain(pair).collect::<Vec<_>>();
    for (t, i) in bos.into_iter().chain(eos) {
        tokens.insert(t.into(), json!({ "id": t, "ids": [i], "tokens": [t] }));
    }
    json!({ "type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": tokens })
}

fn added(content: &str, id: u32, special: bool) -> Value {
    json!({ "id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": special })
}

/// Rebuild the tokenizer of `g` (`arch` picks Gemma's SentencePiece variant).
pub fn build(g: &GgufFile, arch: Arch) -> Result<BuiltTokenizer> {
    let kind = g.req_str("tokenizer.ggml.model")?;
    let raw: Vec<String> = g
        .opt_str_array("tokenizer.ggml.tokens")?
        .ok_or_else(|| g.error("metadata `tokenizer.ggml.tokens` is missing"))?
        .into_iter()
        .map(String::from)
        .collect();
    let types = g.opt_int_array("tokenizer.ggml.token_type")?.unwrap_or_default();
    if !types.is_empty() && types.len() != raw.len() {
        return Err(g.error(format!(
            "metadata `tokenizer.ggml.token_type` has {} entries for {} tokens",
            types.len(),
            raw.len()
        )));
    }
    let token_of = |key: &str| -> Result<Option<String>> {
        match g.opt_token_id(&format!("tokenizer.ggml.{key}"))? {
            None => Ok(None),
            Some(i) => raw.get(i as usize).cloned().map(Some).ok_or_else(|| {
                g.error(format!("metadata `tokenizer.ggml.{key}`: id {i} is past the {} tokens", raw.len()))
            }),
        }
    };
    let mut special = Specials {
        bos: token_of("bos_token_id")?,
        eos: token_of("eos_token_id")?,
        unk: token_of("unknown_token_id")?,
        pad: token_of("padding_token_id")?,
        mask: None,
        add_bos: g.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(kind == "llama"),
        add_eos: g.opt_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false),
    };
    let file_merges = match g.opt_str_array("tokenizer.ggml.merges")? {
        None => None,
        Some(m) => Some(
            m.iter()
                .enumerate()
                .map(|(i, s)| match s.split(' ').collect::<Vec<_>>()[..] {
                    [l, r] => Ok((l.to_string(), r.to_string())),
                    _ => Err(g.error(format!(
                        "metadata `tokenizer.ggml.merges` element {i}: `{s}` is not two tokens"
                    ))),
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };

    let (vocab, merges, model, normalizer, pre_tokenizer, decoder, byte_alphabet) = match kind {
        "gpt2" => {
            let spell = bytes_to_unicode();
            let alphabet: std::collections::HashSet<char> = spell.iter().copied().collect();
            let tokens: Vec<String> = raw
                .iter()
                .map(|t| {
                    if t.chars().all(|c| alphabet.contains(&c)) {
                        t.clone()
                    } else {
                        t.bytes().map(|b| spell[b as usize]).collect()
                    }
                })
                .collect();
            let vocab = dedup_vocab(&tokens);
            let merges = file_merges.unwrap_or_else(|| generate_merges(&vocab, None));
            let pre = g.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
            let pre_tokenizer = match (pre, split_regex(pre)) {
                ("smollm", _) => json!({ "type": "Sequence", "pretokenizers": [
                    { "type": "Digits", "individual_digits": true }, byte_level(false, true) ] }),
                (_, Some(re)) => json!({ "type": "Sequence", "pretokenizers": [
                    { "type": "Split", "pattern": { "Regex": re }, "behavior": "Isolated", "invert": false },
                    byte_level(false, false) ] }),
                (_, None) => byte_level(false, true),
            };
            let model = json!({ "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false });
            (vocab, merges, model, Value::Null, pre_tokenizer, byte_level(true, true), Some(alphabet))
        }
        "llama" => {
            let gemma = arch == Arch::Gemma3;
            // Gemma stores a token of several spaces as real spaces; HF looks it up as "▁▁...".
            let tokens: Vec<String> = if gemma {
                raw.iter()
                    .map(|t| {
                        if t.contains(' ') && t.chars().all(py_isspace) {
                            "\u{2581}".repeat(t.chars().count())
                        } else {
                            t.clone()
                        }
                    })
                    .collect()
            } else {
                raw.clone()
            };
            let vocab = dedup_vocab(&tokens);
            let merges = match file_merges {
                Some(m) => m,
                // Gemma's scores do not follow its merge order; the file order does.
                None if gemma => generate_merges(
                    &vocab,
                    Some(&vocab.iter().map(|(_, i)| -(*i as f64)).collect::<Vec<_>>()),
                ),
                None => {
                    let scores = g
                        .opt_f64_array("tokenizer.ggml.scores")?
                        .filter(|s| s.len() == raw.len())
                        .ok_or_else(|| {
                        g.error("metadata `tokenizer.ggml.scores` is missing or not one per token")
                    })?;
                    let per_entry: Vec<f64> = vocab.iter().map(|(_, i)| scores[*i as usize]).collect();
                    generate_merges(&vocab, Some(&per_entry))
                }
            };
            // Only GemmaTokenizer gives its BPE an unknown token.
            let unk = if gemma { special.unk.clone() } else { None };
            let model = json!({ "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false });
            if gemma {
                special.mask = Some("<mask>".to_string()).filter(|m| tokens.contains(m));
                let normalizer =
                    json!({ "type": "Replace", "pattern": { "String": " " }, "content": "\u{2581}" });
                let pre = json!({ "type": "Split", "pattern": { "String": " " }, "behavior": "MergedWithPrevious", "invert": false });
                (vocab, merges, model, normalizer, pre, sp_decoder(false), None)
            } else {
                let pre = json!({ "type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "first", "split": false });
                (vocab, merges, model, Value::Null, pre, sp_decoder(true), None)
            }
        }
        other => {
            return Err(g.error(format!(
                "metadata `tokenizer.ggml.model`: tokenizer `{other}` is not supported (gpt2, llama)"
            )))
        }
    };

    // Added tokens: the special-token strings, then control tokens, then user-defined ones.
    let ids: std::collections::HashMap<&str, u32> = vocab.iter().map(|(t, i)| (t.as_str(), *i)).collect();
    let mut added_ids = std::collections::BTreeMap::new();
    let specials = [&special.bos, &special.eos, &special.unk, &special.pad, &special.mask];
    for t in specials.into_iter().flatten() {
        if let Some(&i) = ids.get(t.as_str()) {
            added_ids.entry(i).or_insert((t.clone(), true));
        }
    }
    for (t, ty) in raw.iter().zip(&types) {
        let in_alphabet = byte_alphabet.as_ref().is_none_or(|a| t.chars().all(|c| a.contains(&c)));
        if *ty == CONTROL && in_alphabet {
            if let Some(&i) = ids.get(t.as_str()) {
                added_ids.entry(i).or_insert((t.clone(), true));
            }
        }
    }
    for (t, ty) in raw.iter().zip(&types) {
        if *ty == USER_DEFINED {
            if let Some(&i) = ids.get(t.as_str()) {
                added_ids.entry(i).or_insert((t.clone(), false));
            }
        }
    }
    let added_tokens = added_ids.iter().map(|(i, (t, s))| added(t, *i, *s)).collect();
    let post_processor = post_processor(&special, &vocab);
    Ok(BuiltTokenizer {
        vocab,
        merges,
        model,
        added_tokens,
        normalizer,
        pre_tokenizer,
        post_processor,
        decoder,
        special,
    })
}
