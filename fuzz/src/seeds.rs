//! Seeds: the files of `fuzz/corpus/<target>/` and `tests/fixtures`, and for the binary formats
//! (safetensors, GGUF) small valid files built here.

use std::path::Path;

use serde_json::json;
use trtllm_core::gguf::{GgmlType, GgufWriter, Value, ValueType};

/// Every file of `dir` (sorted, so runs are reproducible).
pub fn files(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// `tests/fixtures/*/<name>`.
pub fn fixtures(name: &str) -> Vec<Vec<u8>> {
    let root = crate::repo_root().join("tests").join("fixtures");
    let mut dirs: Vec<_> =
        std::fs::read_dir(root).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    dirs.sort();
    dirs.iter().filter_map(|d| std::fs::read(d.join(name)).ok()).collect()
}

/// A safetensors file: the 8-byte header length, the JSON header, the data.
pub fn safetensors(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let h = header.to_string().into_bytes();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

pub fn safetensors_seeds(corpus: &Path) -> Vec<Vec<u8>> {
    let mut out = vec![
        safetensors(
            &json!({
                "__metadata__": {"format": "pt"},
                "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                "b": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32]},
                "c": {"dtype": "F16", "shape": [2, 2], "data_offsets": [32, 40]},
                "d": {"dtype": "I64", "shape": [1], "data_offsets": [40, 48]},
                "e": {"dtype": "U8", "shape": [0], "data_offsets": [48, 48]},
            }),
            &(0..48u8).collect::<Vec<_>>(),
        ),
        safetensors(
            &json!({"w": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}),
            &1f32.to_le_bytes(),
        ),
    ];
    // Headers kept as JSON text in the corpus, with zeroed data behind them.
    for h in files(corpus) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&h) {
            out.push(safetensors(&v, &[0u8; 64]));
        }
    }
    out
}

fn s(x: &str) -> Value {
    Value::String(x.into())
}

/// A byte-level BPE vocabulary (GPT-2 style) with `merges`.
fn gpt2_tokenizer(w: &mut GgufWriter, merges: &[&str]) -> usize {
    let mut tokens: Vec<String> = (0u8..=255).map(|b| (b as char).to_string()).collect();
    tokens.extend(["he", "ll", "hell", "hello", "<|endoftext|>"].map(String::from));
    let n = tokens.len();
    w.kv("tokenizer.ggml.model", s("gpt2"))
        .kv("tokenizer.ggml.tokens", Value::Array(ValueType::String, tokens.iter().map(|t| s(t)).collect()))
        .kv("tokenizer.ggml.merges", Value::Array(ValueType::String, merges.iter().map(|m| s(m)).collect()))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(n as u32 - 1))
        .kv("tokenizer.ggml.bos_token_id", Value::U32(n as u32 - 1));
    n
}

/// A SentencePiece vocabulary with byte fallback.
fn spm_tokenizer(w: &mut GgufWriter) -> usize {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
    tokens.extend((0..256).map(|b| format!("<0x{b:02X}>")));
    tokens.extend(["\u{2581}", "a", "b", "\u{2581}a", "ab"].map(String::from));
    let n = tokens.len();
    let types = (0..n)
        .map(|i| {
            Value::I32(if i < 3 {
                3
            } else if i < 259 {
                6
            } else {
                1
            })
        })
        .collect();
    w.kv("tokenizer.ggml.model", s("llama"))
        .kv("tokenizer.ggml.tokens", Value::Array(ValueType::String, tokens.iter().map(|t| s(t)).collect()))
        .kv(
            "tokenizer.ggml.scores",
            Value::Array(ValueType::F32, (0..n).map(|i| Value::F32(-(i as f32))).collect()),
        )
        .kv("tokenizer.ggml.token_type", Value::Array(ValueType::I32, types))
        .kv("tokenizer.ggml.bos_token_id", Value::U32(1))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(2))
        .kv("tokenizer.ggml.unknown_token_id", Value::U32(0));
    n
}

/// The merges of the byte-level seeds.
pub const MERGES: &[&str] = &["h e", "l l", "he ll", "hell o"];

/// A complete one-layer model of `arch` (`llama` or `qwen2`), hidden 16, in f32, with a
/// SentencePiece vocabulary (`spm`) or a byte-level one with `merges`.
pub fn gguf_model(arch: &str, spm: bool, merges: &[&str]) -> Vec<u8> {
    let (h, ff, heads, kv, hd) = (16u64, 32u64, 2u64, 1u64, 8u64);
    let mut w = GgufWriter::new();
    let key = |k: &str| format!("{arch}.{k}");
    w.kv("general.architecture", s(arch))
        .kv(&key("context_length"), Value::U32(64))
        .kv(&key("embedding_length"), Value::U32(h as u32))
        .kv(&key("block_count"), Value::U32(1))
        .kv(&key("feed_forward_length"), Value::U32(ff as u32))
        .kv(&key("attention.head_count"), Value::U32(heads as u32))
        .kv(&key("attention.head_count_kv"), Value::U32(kv as u32))
        .kv(&key("attention.layer_norm_rms_epsilon"), Value::F32(1e-6))
        .kv(&key("rope.freq_base"), Value::F32(10000.0));
    let n = if spm { spm_tokenizer(&mut w) } else { gpt2_tokenizer(&mut w, merges) } as u64;
    let f = |k: u64| vec![0.01f32; k as usize];
    w.tensor_f32("token_embd.weight", &[h, n], &f(h * n));
    w.tensor_f32("output_norm.weight", &[h], &f(h));
    w.tensor_f32("output.weight", &[h, n], &f(h * n));
    w.tensor_f32("blk.0.attn_norm.weight", &[h], &f(h));
    w.tensor_f32("blk.0.ffn_norm.weight", &[h], &f(h));
    w.tensor_f32("blk.0.attn_q.weight", &[h, heads * hd], &f(h * heads * hd));
    w.tensor_f32("blk.0.attn_k.weight", &[h, kv * hd], &f(h * kv * hd));
    w.tensor_f32("blk.0.attn_v.weight", &[h, kv * hd], &f(h * kv * hd));
    w.tensor_f32("blk.0.attn_output.weight", &[heads * hd, h], &f(h * heads * hd));
    w.tensor_f32("blk.0.ffn_gate.weight", &[h, ff], &f(h * ff));
    w.tensor_f32("blk.0.ffn_up.weight", &[h, ff], &f(h * ff));
    w.tensor_f32("blk.0.ffn_down.weight", &[ff, h], &f(h * ff));
    if arch == "qwen2" {
        w.tensor_f32("blk.0.attn_q.bias", &[heads * hd], &f(heads * hd));
        w.tensor_f32("blk.0.attn_k.bias", &[kv * hd], &f(kv * hd));
        w.tensor_f32("blk.0.attn_v.bias", &[kv * hd], &f(kv * hd));
    }
    w.to_bytes()
}

pub fn gguf_seeds(_corpus: &Path) -> Vec<Vec<u8>> {
    let mut q = GgufWriter::new();
    q.kv("general.architecture", s("llama")).kv("x", Value::Array(ValueType::U8, vec![Value::U8(1); 8]));
    q.tensor("t", &[32], GgmlType::Q8_0, vec![0u8; 34]);
    vec![gguf_model("llama", true, &[]), gguf_model("qwen2", false, MERGES), q.to_bytes()]
}

/// tokenizer.json files: the fixtures' (distinct ones).
pub fn tokenizer_seeds(corpus: &Path) -> Vec<Vec<u8>> {
    let mut out = fixtures("tokenizer.json");
    out.extend(files(corpus));
    out.sort();
    out.dedup();
    out
}

/// Chat templates: the corpus's and those of the fixtures' tokenizer_config.json.
pub fn chat_template_seeds(corpus: &Path) -> Vec<Vec<u8>> {
    let mut out = files(corpus);
    for c in fixtures("tokenizer_config.json") {
        if let Some(t) = serde_json::from_slice::<serde_json::Value>(&c)
            .ok()
            .and_then(|v| v["chat_template"].as_str().map(String::from))
        {
            out.push(t.into_bytes());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// config.json: the fixtures' and the corpus's.
pub fn config_seeds(corpus: &Path) -> Vec<Vec<u8>> {
    let mut out = fixtures("config.json");
    out.extend(files(corpus));
    out.sort();
    out.dedup();
    out
}

/// Steps in their wire form: a prefill, a decode batch, speculative verification rows.
pub fn step_seeds(_corpus: &Path) -> Vec<Vec<u8>> {
    use trtllm_core::batch::{ForwardBatch, SeqStep};
    let toks: [&[u32]; 3] = [&[5, 6, 7, 8, 9], &[3], &[1, 2]];
    let tables: [&[u32]; 3] = [&[0, 4], &[2, 7, 1], &[3]];
    let steps: Vec<SeqStep<'_>> = (0..3)
        .map(|i| SeqStep { tokens: toks[i], start_pos: [0, 8, 1][i], block_table: tables[i] })
        .collect();
    let mut out = vec![];
    for (n, all, lps) in [(1, true, vec![]), (3, false, vec![]), (3, false, vec![3, 1, 2])] {
        let mut b = ForwardBatch::new(&steps[..n], 4, all).expect("seed batch");
        b.logits_per_seq = lps;
        out.push(b.encode().expect("seed encode"));
    }
    out
}
