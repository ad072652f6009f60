//! Conversion of small GGUFs written here: a gemma3 file (norms stored as `1 + w`, a
//! SentencePiece vocabulary without merges) and inputs the importer must refuse by name.

use std::path::{Path, PathBuf};

use super::{convert_gguf, ConvertOptions, GgmlType, GgufWriter, Value, ValueType};
use crate::text::Tokenizer;

fn s(x: &str) -> Value {
    Value::String(x.into())
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")
}

fn convert(w: &GgufWriter) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("m.gguf");
    w.write(&src).expect("write gguf");
    let out = tmp.path().join("hf");
    convert_gguf(&src, &out, &ConvertOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    (tmp, out)
}

#[test]
fn gemma3_norms_and_sentencepiece_tokenizer() {
    let mut tokens: Vec<String> = ["<pad>", "<eos>", "<bos>", "<unk>"].map(String::from).to_vec();
    tokens.extend((0..256).map(|b| format!("<0x{b:02X}>")));
    tokens.extend(["\u{2581}", "a", "b", "\u{2581}a", "ab", "\u{2581}ab", "  "].map(String::from));
    let n = tokens.len();
    let mut types: Vec<Value> = (0..n)
        .map(|i| {
            Value::I32(if i < 4 {
                3
            } else if i < 260 {
                6
            } else {
                1
            })
        })
        .collect();
    types[n - 1] = Value::I32(4);
    let mut w = GgufWriter::new();
    w.kv("general.architecture", s("gemma3"))
        .kv("gemma3.context_length", Value::U32(64))
        .kv("gemma3.embedding_length", Value::U32(32))
        .kv("gemma3.block_count", Value::U32(1))
        .kv("gemma3.feed_forward_length", Value::U32(64))
        .kv("gemma3.attention.head_count", Value::U32(2))
        .kv("gemma3.attention.head_count_kv", Value::U32(1))
        .kv("gemma3.attention.key_length", Value::U32(16))
        .kv("gemma3.attention.sliding_window", Value::U32(8))
        .kv("gemma3.rope.freq_base", Value::F32(1e6))
        .kv("tokenizer.ggml.model", s("llama"))
        .kv("tokenizer.ggml.tokens", Value::Array(ValueType::String, tokens.iter().map(|t| s(t)).collect()))
        .kv(
            "tokenizer.ggml.scores",
            Value::Array(ValueType::F32, (0..n).map(|i| Value::F32(-(i as f32))).collect()),
        )
        .kv("tokenizer.ggml.token_type", Value::Array(ValueType::I32, types))
        .kv("tokenizer.ggml.bos_token_id", Value::U32(2))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(1))
        .kv("tokenizer.ggml.unknown_token_id", Value::U32(3))
        .kv("tokenizer.ggml.padding_token_id", Value::U32(0));
    w.tensor_f32("token_embd.weight", &[32, n as u64], &vec![0.25; 32 * n]);
    w.tensor_f32("output_norm.weight", &[32], &[1.5; 32]);
    w.tensor_f32("blk.0.attn_q_norm.weight", &[16], &[0.75; 16]);
    w.tensor_f32("blk.0.post_ffw_norm.weight", &[32], &[2.0; 32]);
    let (_tmp, out) = convert(&w);
    // Read with the safetensors crate: the importer sits below `weights` in the module order.
    let bytes = std::fs::read(out.join("model.safetensors")).expect("model.safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let read = |n: &str| -> Vec<f32> {
        let t = st.tensor(n).expect(n);
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{n}");
        t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    };
    assert_eq!(read("model.norm.weight"), [0.5; 32]);
    assert_eq!(read("model.layers.0.self_attn.q_norm.weight"), [-0.25; 16]);
    assert_eq!(read("model.layers.0.post_feedforward_layernorm.weight"), [1.0; 32]);
    assert_eq!(read("model.embed_tokens.weight")[..2], [0.25, 0.25]);
    let c = json(&out.join("config.json"));
    assert_eq!(c["model_type"], "gemma3_text");
    assert_eq!(c["query_pre_attn_scalar"], 16);
    assert_eq!(c["layer_types"], serde_json::json!(["sliding_attention"]));
    assert_eq!(c["tie_word_embeddings"], true);
    let tok = Tokenizer::from_dir(&out).expect("tokenizer");
    // Merges in file order: (▁,a), (a,b), (▁a,b), (▁,ab), (▁,▁); " " -> "▁"; BOS first.
    assert_eq!(tok.encode("ab ab").expect("encode"), [2, 264, 265]);
    // Byte fallback for characters outside the vocabulary.
    assert_eq!(tok.encode("é").expect("encode"), [2, 4 + 0xC3, 4 + 0xA9]);
    assert_eq!(tok.decode(&[265, 4 + 0xC3, 4 + 0xA9], false).expect("decode"), " abé");
    let tc = json(&out.join("tokenizer_config.json"));
    assert_eq!((tc["bos_token"].as_str(), tc["add_bos_token"].as_bool()), (Some("<bos>"), Some(true)));
}

#[test]
fn unsupported_inputs_are_named_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = |w: &GgufWriter| {
        let src = tmp.path().join("bad.gguf");
        w.write(&src).expect("write");
        let out = tmp.path().join("out");
        convert_gguf(&src, &out, &ConvertOptions::default()).err().map(|e| e.to_string()).unwrap_or_default()
    };
    let llama = || {
        let mut w = GgufWriter::new();
        w.kv("general.architecture", s("llama")).kv("llama.attention.head_count", Value::U32(2));
        w.tensor_f32("token_embd.weight", &[2, 2], &[0.0; 4]);
        w
    };
    let mut w = llama();
    w.tensor("blk.0.extra.weight", &[256], GgmlType::Q2K, vec![0; 84]);
    let e = err(&w);
    assert!(e.contains("bad.gguf") && e.contains("blk.0.extra.weight"), "{e}");
    let mut w = llama();
    w.tensor("blk.9.attn_q.weight", &[256], GgmlType::Q2K, vec![0; 84]);
    let e = err(&w);
    assert!(e.contains("blk.9.attn_q.weight") && e.contains("Q2_K"), "{e}");
    let mut w = llama();
    w.tensor_f32("rope_freqs.weight", &[4], &[1.0; 4]);
    assert!(err(&w).contains("rope_freqs.weight"));
    let mut w = GgufWriter::new();
    w.kv("general.architecture", s("phi3"));
    let e = err(&w);
    assert!(e.contains("`phi3` is not supported"), "{e}");
    let e = err(&llama());
    assert!(e.contains("llama.embedding_length") && e.contains("missing"), "{e}");
    let mut w = llama();
    w.kv("llama.embedding_length", Value::U32(2))
        .kv("llama.block_count", Value::U32(0))
        .kv("llama.feed_forward_length", Value::U32(2))
        .kv("llama.context_length", Value::U32(2))
        .kv("tokenizer.ggml.model", s("bert"));
    w.kv("tokenizer.ggml.tokens", Value::Array(ValueType::String, vec![s("a"), s("b")]));
    let e = err(&w);
    assert!(e.contains("tokenizer.ggml.model") && e.contains("`bert`"), "{e}");
    assert!(!tmp.path().join("out").exists(), "a failed conversion leaves no output directory");
    assert_eq!(std::fs::read_dir(tmp.path()).map(|d| d.count()).unwrap_or(0), 1, "no temporary left behind");
}

#[test]
fn absurd_block_count_and_context_are_refused_before_anything_is_built() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("huge.gguf");
    for (key, value, needle) in [
        ("llama.block_count", 1_000_000_000u64, "at most 1 blocks"),
        ("llama.context_length", 1 << 40, "1..=16777216"),
    ] {
        let mut w = GgufWriter::new();
        w.kv("general.architecture", s("llama"));
        for k in [
            "attention.head_count",
            "embedding_length",
            "block_count",
            "feed_forward_length",
            "context_length",
        ] {
            let k = format!("llama.{k}");
            let v = if k == key {
                Value::U64(value)
            } else {
                Value::U32(if k.ends_with("block_count") { 1 } else { 2 })
            };
            w.kv(&k, v);
        }
        w.tensor_f32("token_embd.weight", &[2, 2], &[0.0; 4]);
        w.tensor_f32("blk.0.attn_norm.weight", &[2], &[1.0; 2]);
        w.tensor_f32("blk.0.ffn_norm.weight", &[2], &[1.0; 2]);
        w.write(&src).expect("write");
        let out = tmp.path().join("out");
        let t = std::time::Instant::now();
        let e = convert_gguf(&src, &out, &ConvertOptions::default()).expect_err("refused").to_string();
        assert!(t.elapsed() < std::time::Duration::from_secs(1), "{key}: took {:?}", t.elapsed());
        assert!(e.contains("huge.gguf") && e.contains(key) && e.contains(needle), "{e}");
        assert!(!out.exists(), "{key}: nothing written");
    }
}
