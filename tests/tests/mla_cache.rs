//! The MLA latent cache against a GQA cache of the same model dims: DeepSeek-V3's fixture
//! caches one `kv_lora_rank + qk_rope_head_dim` row per token and layer (no values), where a
//! GQA cache of its heads would hold `num_key_value_heads` keys of `qk_nope + qk_rope` and
//! values of `v_head_dim`. Measured on the cache the engine allocates for the fixture.

use trtllm_core::batch::{KvCache, KvLayout};
use trtllm_core::load::LlmOptions;
use trtllm_core::DType;
use trtllm_tests::fixture;

/// Bytes per token of a GQA cache: K `[kv_heads, qk]` and V `[kv_heads, v]` per layer.
fn gqa_bytes(layers: usize, kv_heads: usize, qk: usize, v: usize, elem: usize) -> usize {
    layers * kv_heads * (qk + v) * elem
}

#[test]
fn latent_cache_is_smaller_than_gqa_of_the_same_dims() {
    trtllm::init();
    let mut opts = LlmOptions { kv_block_size: 4, max_batch_size: 1, max_seq_len: 32, ..Default::default() };
    opts.load.dtype = Some(DType::F32);
    let llm = trtllm_core::llm::Llm::with_options(fixture("deepseek_v3"), opts).expect("deepseek_v3");
    let layout = llm.model().kv_layout();
    let cfg = llm.model().config();
    let m = cfg.arch.mla.expect("MLA dims");
    assert_eq!(
        layout,
        KvLayout { num_layers: cfg.num_hidden_layers, kv_heads: 1, head_dim: m.lora + m.rope, values: false }
    );
    // What the engine allocates: one latent row per slot and layer, nothing for values.
    let (blocks, bs) = (5, 4);
    let mut kv = KvCache::new(layout, bs, blocks).expect("cache");
    let mut floats = 0;
    for l in 0..layout.num_layers {
        let (k, v) = kv.layer_mut(l).expect("layer");
        floats += k.len() + v.len();
    }
    let per_token = floats * 4 / (blocks * bs);
    assert_eq!(per_token, layout.bytes_per_token(4));
    let gqa = gqa_bytes(cfg.num_hidden_layers, cfg.num_key_value_heads, m.nope + m.rope, m.v, 4);
    println!(
        "deepseek_v3 fixture (f32): MLA {per_token} B/token vs GQA of the same dims {gqa} B/token ({:.1}x smaller)",
        gqa as f64 / per_token as f64
    );
    assert!(per_token * 3 < gqa, "MLA {per_token} B/token is not much smaller than GQA {gqa}");
    // DeepSeek-V3 671B's dims (61 layers, 128 KV heads, nope 128 + rope 64, v 128, lora 512), bf16.
    let v3 = KvLayout { num_layers: 61, kv_heads: 1, head_dim: 512 + 64, values: false };
    let (mla, gqa) = (v3.bytes_per_token(2), gqa_bytes(61, 128, 192, 128, 2));
    println!(
        "DeepSeek-V3 dims (bf16): MLA {mla} B/token vs GQA {gqa} B/token ({:.1}x smaller)",
        gqa as f64 / mla as f64
    );
    assert_eq!((mla, gqa), (70_272, 4_997_120));
}
