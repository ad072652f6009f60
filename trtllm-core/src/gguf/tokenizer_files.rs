//! Writing the rebuilt tokenizer: tokenizer.json (vocabulary in id order, one entry a line) and
//! tokenizer_config.json (special-token strings, BOS/EOS flags, the chat template).

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use super::reader::GgufFile;
use super::tokenizer::BuiltTokenizer;
use crate::{Error, Result};

fn js(v: &impl serde::Serialize) -> String {
    // Serializing a `Value` or a string cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

/// tokenizer.json text.
pub fn tokenizer_json(t: &BuiltTokenizer) -> String {
    let mut s = String::with_capacity(64 * (t.vocab.len() + t.merges.len()) + 4096);
    s.push_str(
        "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [",
    );
    for (i, a) in t.added_tokens.iter().enumerate() {
        s.push_str(if i == 0 { "\n    " } else { ",\n    " });
        s.push_str(&js(a));
    }
    s.push_str("\n  ],\n");
    for (k, v) in [
        ("normalizer", &t.normalizer),
        ("pre_tokenizer", &t.pre_tokenizer),
        ("post_processor", &t.post_processor),
        ("decoder", &t.decoder),
    ] {
        s.push_str(&format!("  \"{k}\": {},\n", js(v)));
    }
    s.push_str("  \"model\": {");
    if let Value::Object(m) = &t.model {
        // The BPE's options in the order tokenizers writes them.
        for k in [
            "type",
            "dropout",
            "unk_token",
            "continuing_subword_prefix",
            "end_of_word_suffix",
            "fuse_unk",
            "byte_fallback",
            "ignore_merges",
        ] {
            if let Some(v) = m.get(k) {
                s.push_str(&format!("\n    \"{k}\": {},", js(v)));
            }
        }
    }
    s.push_str("\n    \"vocab\": {");
    for (i, (tok, id)) in t.vocab.iter().enumerate() {
        s.push_str(if i == 0 { "\n      " } else { ",\n      " });
        s.push_str(&js(tok));
        s.push_str(": ");
        s.push_str(&id.to_string());
    }
    s.push_str("\n    },\n    \"merges\": [");
    for (i, (l, r)) in t.merges.iter().enumerate() {
        s.push_str(if i == 0 { "\n      [" } else { ",\n      [" });
        s.push_str(&js(l));
        s.push_str(", ");
        s.push_str(&js(r));
        s.push(']');
    }
    s.push_str("\n    ]\n  }\n}\n");
    s
}

/// tokenizer_config.json.
pub fn tokenizer_config(g: &GgufFile, t: &BuiltTokenizer, max_len: Option<usize>) -> Result<Value> {
    let sp = &t.special;
    let mut c = serde_json::Map::new();
    c.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    c.insert("add_bos_token".into(), json!(sp.add_bos));
    c.insert("add_eos_token".into(), json!(sp.add_eos));
    c.insert("clean_up_tokenization_spaces".into(), json!(false));
    for (k, v) in
        [("bos_token", &sp.bos), ("eos_token", &sp.eos), ("unk_token", &sp.unk), ("pad_token", &sp.pad)]
    {
        c.insert(k.into(), json!(v));
    }
    if let Some(m) = &sp.mask {
        c.insert("mask_token".into(), json!(m));
    }
    if let Some(n) = max_len {
        c.insert("model_max_length".into(), json!(n));
    }
    if let Some(tpl) = g.opt_str("tokenizer.chat_template")? {
        c.insert("chat_template".into(), json!(tpl));
    }
    Ok(Value::Object(c))
}

/// Write `text` to `path`, naming the file in an error.
pub fn write_file(path: &Path, text: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(text).map_err(|e| Error::io(path, e))
}

/// Pretty JSON text of a value.
pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}
