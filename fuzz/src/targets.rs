//! The fuzz targets: each reads one kind of untrusted input the way trtllm does.

use std::path::{Path, PathBuf};

use trtllm_core::config::ModelConfig;
use trtllm_core::gguf::{convert_gguf, ConvertOptions, GgufFile};
use trtllm_core::text::{ChatMessage, ChatTemplate, Tokenizer};
use trtllm_core::weights::SafetensorsFiles;

use crate::{seeds, shape, Outcome, Target};

/// A scratch directory the file-based readers read from.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    pub fn new() -> Self {
        let base = Path::new("/dev/shm");
        let dir = if base.is_dir() { tempfile::tempdir_in(base) } else { tempfile::tempdir() };
        Scratch { dir: dir.unwrap_or_else(|e| panic!("scratch directory: {e}")) }
    }
    /// `name` in a fresh sub-directory `sub`, holding `bytes`.
    fn file(&self, sub: &str, name: &str, bytes: &[u8]) -> PathBuf {
        let d = self.dir.path().join(sub);
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::create_dir_all(&d);
        let p = d.join(name);
        if let Err(e) = std::fs::write(&p, bytes) {
            panic!("writing the scratch file {}: {e}", p.display());
        }
        p
    }
}

fn fine<T>(r: trtllm_core::Result<T>) -> Outcome {
    Outcome::Fine(match r {
        Ok(_) => "ok".into(),
        Err(e) => shape(&e.to_string()),
    })
}

/// Every target, in run order.
pub const ALL: &[Target] = &[
    Target { name: "safetensors", run: safetensors, seeds: seeds::safetensors_seeds, json: false },
    Target { name: "config", run: config, seeds: seeds::config_seeds, json: true },
    Target { name: "gguf", run: gguf, seeds: seeds::gguf_seeds, json: false },
    Target { name: "tokenizer", run: tokenizer, seeds: seeds::tokenizer_seeds, json: true },
    Target { name: "chat_template", run: chat_template, seeds: seeds::chat_template_seeds, json: false },
    Target { name: "request", run: request, seeds: seeds::files, json: true },
    Target { name: "step", run: step, seeds: seeds::step_seeds, json: false },
];

pub fn by_name(name: &str) -> Option<&'static Target> {
    ALL.iter().find(|t| t.name == name)
}

/// The safetensors header reader; what it accepts must read back.
fn safetensors(s: &Scratch, input: &[u8]) -> Outcome {
    let p = s.file("st", "model.safetensors", input);
    let dir = p.parent().unwrap_or(Path::new("."));
    let st = match SafetensorsFiles::open_dir(dir) {
        Ok(st) => st,
        Err(e) => return Outcome::Fine(shape(&e.to_string())),
    };
    let names: Vec<String> = st.names().take(16).cloned().collect();
    for n in &names {
        if let Err(e) = st.read(n) {
            return Outcome::Fine(shape(&e.to_string()));
        }
    }
    Outcome::Fine(format!("ok {}", names.len().min(3)))
}

/// config.json → ModelConfig (with rope); a config that parses must give finite RoPE
/// frequencies and a positive context.
fn config(_: &Scratch, input: &[u8]) -> Outcome {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(input) else {
        return Outcome::Fine("not json".into());
    };
    let cfg = match ModelConfig::from_hf_value(&v, Path::new("config.json")) {
        Ok(c) => c,
        Err(e) => return Outcome::Fine(shape(&e.to_string())),
    };
    let len = cfg.max_position_embeddings.clamp(1, 1 << 16);
    for rope in std::iter::once(&cfg.rope).chain(cfg.rope_local.as_ref()) {
        let (inv, scale) = rope.inv_freq(len);
        if !scale.is_finite() || inv.iter().any(|f| !f.is_finite()) {
            return Outcome::Violation(format!(
                "accepted config gives non-finite RoPE frequencies: {rope:?}"
            ));
        }
    }
    Outcome::Fine("ok".into())
}

/// The GGUF reader and import: what converts must load back (config and tokenizer).
fn gguf(s: &Scratch, input: &[u8]) -> Outcome {
    let p = s.file("gguf", "m.gguf", input);
    if let Err(e) = GgufFile::open(&p) {
        return Outcome::Fine(shape(&e.to_string()));
    }
    let out = p.with_file_name("hf");
    // As `trtllm convert --gguf` runs it: the written config is checked by the loader's parse.
    let check: fn(&serde_json::Value) -> trtllm_core::Result<()> =
        |v| ModelConfig::from_hf_value(v, Path::new("config.json")).map(|_| ());
    let opts = ConvertOptions { check_config: Some(check), ..Default::default() };
    if let Err(e) = convert_gguf(&p, &out, &opts) {
        return Outcome::Fine(format!("convert: {}", shape(&e.to_string())));
    }
    if let Err(e) = ModelConfig::from_hf_dir(&out) {
        return Outcome::Violation(format!("convert --gguf wrote a config.json the loader refuses: {e}"));
    }
    if let Err(e) = Tokenizer::from_dir(&out) {
        return Outcome::Violation(format!("convert --gguf wrote a tokenizer the loader refuses: {e}"));
    }
    Outcome::Fine("converted".into())
}

/// tokenizer.json loading, then a round of encode / decode.
fn tokenizer(s: &Scratch, input: &[u8]) -> Outcome {
    let p = s.file("tok", "tokenizer.json", input);
    let dir = p.parent().unwrap_or(Path::new("."));
    let t = match Tokenizer::from_dir(dir) {
        Ok(t) => t,
        Err(e) => return Outcome::Fine(shape(&e.to_string())),
    };
    let ids = match t.encode("Hello wörld 123 \u{1F600} <s>\n\t") {
        Ok(ids) => ids,
        Err(e) => return Outcome::Fine(format!("encode: {}", shape(&e.to_string()))),
    };
    fine(t.decode(&ids, false))
}

fn sample_messages() -> Vec<ChatMessage> {
    let body = br#"{"messages": [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi {{ 7*7 }} {% raw %}"}, {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Again"}]}"#;
    trtllm_server::fuzzing::chat(body).map(|(m, _)| m).unwrap_or_default()
}

/// A chat template compiled and rendered.
fn chat_template(s: &Scratch, input: &[u8]) -> Outcome {
    let p = s.file("tmpl", "t.jinja", input);
    let t = match ChatTemplate::from_file(&p, None) {
        Ok(t) => t,
        Err(e) => return Outcome::Fine(shape(&e.to_string())),
    };
    fine(t.render(&sample_messages(), true))
}

/// Request JSON → SamplingParams, as the completions and chat handlers parse it; a bad request
/// must be a 4xx. Chat messages that parse are rendered with a fixture's template.
fn request(s: &Scratch, input: &[u8]) -> Outcome {
    use trtllm_server::fuzzing;
    let mut shapes = vec![];
    match fuzzing::completion(input) {
        Ok(_) => shapes.push("ok".to_string()),
        Err(e) if (400..500).contains(&fuzzing::status(&e)) => shapes.push(shape(&e.message)),
        Err(e) => {
            return Outcome::Violation(format!(
                "completions: status {} for {}",
                fuzzing::status(&e),
                e.message
            ))
        }
    }
    match fuzzing::chat(input) {
        Ok((msgs, _)) => {
            let tmpl = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
            let p = s.file("req", "t.jinja", tmpl.as_bytes());
            if let Ok(t) = ChatTemplate::from_file(&p, None) {
                let _ = t.render(&msgs, true);
            }
            shapes.push("ok".into());
        }
        Err(e) if (400..500).contains(&fuzzing::status(&e)) => shapes.push(shape(&e.message)),
        Err(e) => {
            return Outcome::Violation(format!("chat: status {} for {}", fuzzing::status(&e), e.message))
        }
    }
    Outcome::Fine(shapes.join(" | "))
}

/// A step as a multi-process worker receives it from the leader (`ForwardBatch::decode`): an
/// error or a batch, and a batch survives its own round trip.
fn step(_: &Scratch, input: &[u8]) -> Outcome {
    use trtllm_core::batch::ForwardBatch;
    let b = match ForwardBatch::decode(input) {
        Ok(b) => b,
        Err(e) => return Outcome::Fine(shape(&e.to_string())),
    };
    let again = b.encode().and_then(|bytes| ForwardBatch::decode(&bytes));
    match again {
        Ok(c) if format!("{c:?}") == format!("{b:?}") => Outcome::Fine("ok".into()),
        Ok(_) => Outcome::Violation("a decoded step changed in its round trip".into()),
        Err(e) => Outcome::Violation(format!("a decoded step does not encode back: {e}")),
    }
}
