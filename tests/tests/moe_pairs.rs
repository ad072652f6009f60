//! The MoE pair path (`ops/moe.rs`: routing, per-pair expert GEMVs and the combine with nothing
//! read back to the host, what the GPU runs for CUDA-graph decode) forced on the CPU with
//! `TRTLLM_MOE_PAIRS=1`: every MoE fixture must still reproduce HF's logits (NMSE <= 1e-6) and
//! its greedy tokens, alone and batched. This binary's process runs only with the knob set.

use trtllm_tests::{fixture, ids, nmse};

use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::runner::SamplingParams;
use trtllm_core::weights::SafetensorsFiles;
use trtllm_core::DType;

fn check(name: &str) {
    static KNOB: std::sync::Once = std::sync::Once::new();
    KNOB.call_once(|| std::env::set_var("TRTLLM_MOE_PAIRS", "1"));
    trtllm::init();
    assert_eq!(trtllm_core::env::knobs().moe_pairs, Some(true), "the knob was read before it was set");
    let refs =
        SafetensorsFiles::open_files(&[fixture(name).join("reference.safetensors")]).expect("reference");
    let read = |n: &str| refs.read(n).unwrap_or_else(|e| panic!("{name}: {e}"));
    let input = ids(&read("input_ids"));
    let mut opts = LlmOptions { kv_block_size: 3, max_batch_size: 2, max_seq_len: 64, ..Default::default() };
    opts.load.dtype = Some(DType::F32);
    let mut llm = Llm::with_options(fixture(name), opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    let logits = llm.logits_all(&input, None, &SingleRank).expect("forward");
    let e = nmse(logits.f32s().expect("f32"), read("logits").f32s().expect("f32"));
    println!("{name}: pair path, {} prompt tokens, logits NMSE vs HF {e:.2e}", input.len());
    assert!(e <= 1e-6, "{name}: pair-path logits NMSE {e:e} > 1e-6");

    let want = ids(&read("greedy"));
    let params = SamplingParams { max_new_tokens: want.len(), ignore_eos: true, ..Default::default() };
    let got = llm.generate_ids(vec![input.clone(), input], &params, &mut |_, _| {}).expect("generate x2");
    assert_eq!(got[0].token_ids, want, "{name}: pair-path greedy differs from HF");
    assert_eq!(got[1].token_ids, want, "{name}: pair-path batched greedy differs");
}

macro_rules! moe_fixtures {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check(stringify!($name)); })*
    };
}

moe_fixtures!(mixtral, qwen2_moe, qwen3_moe, gpt_oss, deepseek_v2, deepseek_v3);
