//! The FP8 KV cache on the CPU (`--kv-cache-dtype fp8`: f32 values rounded through E4M3 on
//! write, the GPU cache's oracle): fixtures stay close to the f32 cache (KL), the rounding really
//! happens, scales change it, and what the FP8 cache does not support is a clear error.

use trtllm_core::batch::{Fp8Kv, KvCache, KvCacheDtype, KvLayout};
use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::Device;
use trtllm_tests::fixture;

fn opts(kv: KvCacheDtype) -> LlmOptions {
    let mut o = LlmOptions { kv_block_size: 4, max_batch_size: 2, max_seq_len: 64, ..Default::default() };
    o.load.device = Device::Cpu;
    o.kv_cache_dtype = kv;
    o
}

fn logits(llm: &mut Llm, input: &[u32]) -> Vec<f32> {
    llm.logits_all(input, None, &SingleRank).expect("forward").to_f32_vec().expect("f32")
}

#[test]
fn fp8_cache_stays_close_to_the_f32_cache() {
    trtllm::init();
    let input: Vec<u32> = (0..24).map(|i| (i * 37 + 11) % 250 + 3).collect();
    for name in ["llama", "qwen3", "gemma2", "mistral_swa", "gpt_oss", "mixtral", "phi3", "gpt2"] {
        let f32_kv =
            logits(&mut Llm::with_options(fixture(name), opts(KvCacheDtype::Auto)).expect("load"), &input);
        let mut llm = Llm::with_options(fixture(name), opts(KvCacheDtype::Fp8)).expect("load fp8");
        let fp8 = logits(&mut llm, &input);
        let vocab = fp8.len() / input.len();
        let (e, kl) = (trtllm_tests::nmse(&fp8, &f32_kv), trtllm_tests::kl(&f32_kv, &fp8, vocab));
        println!("{name:12} fp8 KV vs f32 KV: NMSE {e:.2e}, KL {kl:.2e}");
        assert!(e > 0.0, "{name}: the FP8 cache changed nothing (no rounding?)");
        assert!(kl <= 0.05, "{name}: KL(f32 KV || fp8 KV) {kl:e}");
    }
}

#[test]
fn unsupported_fp8_caches_are_errors_naming_the_reason() {
    trtllm::init();
    let e = Llm::with_options(fixture("deepseek_v2"), opts(KvCacheDtype::Fp8))
        .err()
        .expect("MLA + fp8 must fail");
    assert!(e.to_string().contains("multi-head latent attention"), "{e}");
    let e = "fp9".parse::<KvCacheDtype>().expect_err("unknown dtype");
    assert!(e.to_string().contains("--kv-cache-dtype"), "{e}");
    assert_eq!("fp8_e4m3".parse::<KvCacheDtype>().expect("alias"), KvCacheDtype::Fp8);
    let layout = KvLayout { num_layers: 2, kv_heads: 1, head_dim: 8, values: true };
    let mut auto = KvCache::new(layout, 4, 2).expect("cache");
    let s = Fp8Kv { k_scale: 1.0, v_scale: 1.0 };
    assert!(auto.set_fp8_scales(&[s, s]).is_err(), "scales on a non-FP8 cache");
    let mut fp8 = KvCache::new_stage(layout, 4, 2, 0..2, KvCacheDtype::Fp8).expect("cache");
    assert!(fp8.set_fp8_scales(&[s]).is_err(), "one scale for two layers");
    let bad = Fp8Kv { k_scale: 0.0, v_scale: 1.0 };
    let e = fp8.set_fp8_scales(&[s, bad]).expect_err("zero scale");
    assert!(e.to_string().contains("layer 1"), "{e}");
    fp8.set_fp8_scales(&[s, Fp8Kv { k_scale: 0.5, v_scale: 2.0 }]).expect("valid scales");
    assert_eq!(fp8.layer(1).expect("layer").fp8(), Some(Fp8Kv { k_scale: 0.5, v_scale: 2.0 }));
    assert_eq!(fp8.elem_bytes(), 4, "the host cache holds f32");
}
