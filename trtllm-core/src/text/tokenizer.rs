//! The tokenizer of an HF directory (`tokenizer.json`), its EOS ids
//! (`generation_config.json`, then `config.json`) and chat template (`tokenizer_config.json`).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    pub eos_token_ids: Vec<u32>,
    pub bos_token_id: Option<u32>,
    pub chat_template: Option<String>,
    pub add_bos: bool,
}

fn ids(v: Option<&serde_json::Value>) -> Vec<u32> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect(),
        _ => vec![],
    }
}

impl Tokenizer {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = load(&path)?;
        let read = |name: &str| -> Result<Option<serde_json::Value>> {
            let p = dir.join(name);
            if p.exists() {
                crate::error::read_json(&p).map(Some)
            } else {
                Ok(None)
            }
        };
        let gen = read("generation_config.json")?;
        let cfg = read("config.json")?;
        let tc = read("tokenizer_config.json")?;
        let mut eos = ids(gen.as_ref().and_then(|g| g.get("eos_token_id")));
        if eos.is_empty() {
            eos = ids(cfg.as_ref().and_then(|c| c.get("eos_token_id")));
        }
        let bos = ids(gen.as_ref().and_then(|g| g.get("bos_token_id")))
            .first()
            .copied()
            .or_else(|| ids(cfg.as_ref().and_then(|c| c.get("bos_token_id"))).first().copied());
        let mut chat_template =
            tc.as_ref().and_then(|t| t.get("chat_template")).and_then(|t| t.as_str()).map(String::from);
        let jinja = dir.join("chat_template.jinja");
        if chat_template.is_none() && jinja.exists() {
            chat_template = Some(crate::error::read_to_string(&jinja)?);
        }
        let add_bos =
            tc.as_ref().and_then(|t| t.get("add_bos_token")).and_then(|b| b.as_bool()).unwrap_or(false);
        Ok(Tokenizer { inner, path, eos_token_ids: eos, bos_token_id: bos, chat_template, add_bos })
    }

    /// Token ids of `text`, with the special tokens the tokenizer's post-processor adds (BOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Tokenizer { path: self.path.clone(), msg: e.to_string() })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` as written, nothing added (a rendered chat template carries its own
    /// special tokens; transformers encodes it with `add_special_tokens=False`).
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer { path: self.path.clone(), msg: e.to_string() })?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| Error::Tokenizer { path: self.path.clone(), msg: e.to_string() })
    }

    /// The `tokenizers` tokenizer (the grammar compiler builds its token trie from it).
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The longest vocabulary entry in UTF-8 bytes: an upper bound on the bytes of text one
    /// token stands for (byte-level and byte-fallback entries spell a byte with more than one).
    pub fn max_token_bytes(&self) -> usize {
        self.inner.get_vocab(true).keys().map(String::len).max().unwrap_or(1)
    }
}

/// Parse `tokenizer.json`. The `tokenizers` crate panics on some malformed files (an
/// `expect` in its decoder and normalizer deserializers); a file that is not JSON is refused
/// before it gets there, and a panic on one that is becomes an error naming the file.
fn load(path: &Path) -> Result<tokenizers::Tokenizer> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes).map_err(|msg| Error::Tokenizer { path: path.to_path_buf(), msg })
}

fn parse(bytes: &[u8]) -> std::result::Result<tokenizers::Tokenizer, String> {
    // Validated without building a value tree (a 49k-token BPE file makes a tree of ~20 MB).
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(format!("not valid JSON: {e}"));
    }
    match std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(bytes)) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(p) => {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("the tokenizers library cannot read this file ({why})"))
        }
    }
}

/// Whether the text of a tokenizer.json loads (an importer checks what it is about to write).
pub fn check_tokenizer_json(text: &str) -> std::result::Result<(), String> {
    parse(text.as_bytes()).map(|_| ())
}

/// Turns a growing list of ids into text pieces, emitting only complete UTF-8.
pub struct StreamDecoder {
    ids: Vec<u32>,
    emitted: usize,
}

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder { ids: vec![], emitted: 0 }
    }
    /// Add one id; returns the new text, if any became complete.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let text = tok.decode(&self.ids, true)?;
        if text.ends_with('\u{FFFD}') || text.len() <= self.emitted {
            return Ok(None);
        }
        let Some(piece) = text.get(self.emitted..).map(String::from) else {
            return Ok(None);
        };
        self.emitted = text.len();
        Ok(Some(piece))
    }
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}
