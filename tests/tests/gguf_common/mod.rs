//! Shared by the GGUF test files (gguf_export, gpu_gguf_models): a synthetic llama HF
//! directory whose rows are whole Q4_K super-blocks.
#![allow(dead_code)]

use std::path::Path;

use trtllm_core::Tensor;
use trtllm_tests::fixture;

/// A llama HF directory with rows of 256 and 512 values (the llama fixture's tokenizer).
pub fn wide_llama(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let src = fixture("llama");
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy");
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).expect("config"))
            .expect("json");
    let (h, ff, heads, kv, hd, vocab, layers) =
        (256usize, 512usize, 4usize, 2usize, 64usize, 384usize, 2usize);
    for (k, v) in [
        ("hidden_size", h),
        ("intermediate_size", ff),
        ("num_attention_heads", heads),
        ("num_key_value_heads", kv),
        ("head_dim", hd),
        ("vocab_size", vocab),
        ("num_hidden_layers", layers),
    ] {
        cfg[k] = serde_json::json!(v);
    }
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg).expect("json"))
        .expect("write");
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = |n: usize, amp: f32, base: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                base + ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * amp
            })
            .collect()
    };
    let mut ts: Vec<(String, Tensor)> = vec![];
    let mut put = |name: String, shape: &[usize], v: Vec<f32>| {
        ts.push((name, Tensor::from_f32(v, shape).expect("tensor")))
    };
    put("model.embed_tokens.weight".into(), &[vocab, h], rnd(vocab * h, 2.0, 0.0));
    put("lm_head.weight".into(), &[vocab, h], rnd(vocab * h, 0.3, 0.0));
    put("model.norm.weight".into(), &[h], rnd(h, 0.2, 1.0));
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        for (n, rows, cols) in [
            ("self_attn.q_proj", heads * hd, h),
            ("self_attn.k_proj", kv * hd, h),
            ("self_attn.v_proj", kv * hd, h),
            ("self_attn.o_proj", h, heads * hd),
            ("mlp.gate_proj", ff, h),
            ("mlp.up_proj", ff, h),
            ("mlp.down_proj", h, ff),
        ] {
            put(format!("{p}.{n}.weight"), &[rows, cols], rnd(rows * cols, 0.25, 0.0));
        }
        put(format!("{p}.input_layernorm.weight"), &[h], rnd(h, 0.2, 1.0));
        put(format!("{p}.post_attention_layernorm.weight"), &[h], rnd(h, 0.2, 1.0));
    }
    trtllm_core::weights::write_safetensors(&dir.join("model.safetensors"), &ts, None).expect("safetensors");
}
