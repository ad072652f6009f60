//! Inputs the fuzzer found that crashed trtllm, each now a clean error.

use trtllm_fuzz::{execute, targets};

fn clean(target: &str, input: &[u8]) {
    let t = targets::by_name(target).expect("target");
    let scratch = targets::Scratch::new();
    if let Err(why) = execute(t, &scratch, input) {
        panic!("{target}: {why}");
    }
}

/// A tokenizer.json whose decoder is cut mid-object: `tokenizers` panicked in its decoder
/// deserializer (`expect("Helper")`) instead of reporting the syntax error.
#[test]
fn tokenizer_json_with_a_broken_decoder_is_an_error() {
    let bad = br#"{"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null,
        "post_processor": null, "decoder": {"type": "ByteLevel", "add_prefix_space": true "model": {}},
        "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}"#;
    clean("tokenizer", bad);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tokenizer.json"), bad).expect("write");
    let Err(e) = trtllm_core::text::Tokenizer::from_dir(dir.path()) else { panic!("expected an error") };
    assert!(e.to_string().contains("tokenizer.json") && e.to_string().contains("not valid JSON"), "{e}");
}

/// A linear RoPE factor of 1e-320 is positive, so it passed the factor check, but 1 / factor
/// is infinite: the config loaded and gave infinite frequencies.
#[test]
fn a_subnormal_rope_factor_is_an_error() {
    let text = std::fs::read(trtllm_fuzz::corpus_dir().join("config/regress_linear_factor_subnormal.json"))
        .expect("seed");
    clean("config", &text);
    let v: serde_json::Value = serde_json::from_slice(&text).expect("json");
    let Err(e) = trtllm_core::config::ModelConfig::from_hf_value(&v, std::path::Path::new("config.json"))
    else {
        panic!("expected an error")
    };
    assert!(e.to_string().contains("rope_scaling") && e.to_string().contains("non-finite"), "{e}");
}

/// A byte-level GGUF vocabulary whose merge names a token that is not in it (`h l` -> `hl`):
/// the import wrote a tokenizer.json that the loader then refused.
#[test]
fn a_gguf_merge_outside_the_vocabulary_is_refused_at_import() {
    let bytes = trtllm_fuzz::seeds::gguf_model("qwen2", false, &["h e", "h l"]);
    clean("gguf", &bytes);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("m.gguf");
    std::fs::write(&src, &bytes).expect("write");
    let out = dir.path().join("hf");
    let Err(e) = trtllm_core::gguf::convert_gguf(&src, &out, &Default::default()) else {
        panic!("expected an error")
    };
    assert!(e.to_string().contains("tokenizer.json") && e.to_string().contains("would not load"), "{e}");
    assert!(!out.exists(), "nothing written");
}

/// `{% for in messages %}`: minijinja overflowed an integer (a panic with overflow checks on)
/// reporting the syntax error.
#[test]
fn a_for_loop_without_a_target_is_a_template_error() {
    let text =
        std::fs::read(trtllm_fuzz::corpus_dir().join("chat_template/regress_for_without_target.jinja"))
            .expect("seed");
    clean("chat_template", &text);
}

/// A quantized tensor whose element count fits u64 but whose byte size does not: the byte
/// count overflowed (a panic with overflow checks, a wrong size without).
#[test]
fn a_quantized_tensor_too_large_in_bytes_is_an_error() {
    use trtllm_core::gguf::{GgmlType, GgufWriter, Value};
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::String("llama".into()));
    // Q8_0: 32 elements in 34 bytes; 2^32 x (2^32 - 1) elements fit u64, their bytes do not.
    w.tensor("t", &[1 << 32, (1 << 32) - 1], GgmlType::Q8_0, vec![0u8; 34]);
    let bytes = w.to_bytes();
    clean("gguf", &bytes);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, &bytes).expect("write");
    let Err(e) = trtllm_core::gguf::GgufFile::open(&p) else { panic!("expected an error") };
    assert!(e.to_string().contains("overflow"), "{e}");
}
