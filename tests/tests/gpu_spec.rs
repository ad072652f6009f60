//! Speculative decoding on the GPU (skips without one): prompt lookup and a self-draft (K + 1
//! verification rows through the device argmax / sampler; the draft's decode steps as CUDA
//! graphs) against plain decoding with CUDA graphs, on several fixtures in f32: identical greedy
//! tokens, batched; seeded sampling (device sampler) and penalties (host fallback for drafted
//! rows) identical to plain; in bf16 a self-draft still accepts nearly everything.

#[path = "gpu_common/mod.rs"]
mod gpu_common;

use gpu_common::gpu_ok;
use trtllm_tests::fixture;

use trtllm_core::llm::Llm;
use trtllm_core::load::{LlmOptions, SpecOptions};
use trtllm_core::runner::SamplingParams;
use trtllm_core::serve::SpecStats;
use trtllm_core::{DType, Device};

fn prompts() -> Vec<Vec<u32>> {
    let rep = |p: &[u32], n: usize| p.iter().cycle().take(n).copied().collect::<Vec<u32>>();
    vec![
        rep(&[11, 45, 97, 23, 150, 7], 27),
        rep(&[301, 5, 77, 5, 12], 18),
        (0..21u32).map(|i| 3 + (i * 37) % 300).collect(),
    ]
}

fn generate(
    model: &str,
    dtype: DType,
    spec: Option<SpecOptions>,
    p: &SamplingParams,
) -> (Vec<Vec<u32>>, SpecStats, Vec<usize>) {
    let mut o = LlmOptions { kv_block_size: 4, max_batch_size: 4, max_seq_len: 128, ..Default::default() };
    o.load.dtype = Some(dtype);
    o.load.device = Device::Cuda(0);
    o.speculative = spec;
    let mut llm = Llm::with_options(fixture(model), o).expect("load");
    let g = llm.generate_ids(prompts(), p, &mut |_, _| {}).expect("generate");
    let captured = llm.cuda_graphs().map(|g| g.captured()).unwrap_or_default();
    (g.into_iter().map(|g| g.token_ids).collect(), llm.take_spec_stats(), captured)
}

#[test]
fn gpu_speculative_greedy_and_sampling_match_plain() {
    if !gpu_ok("gpu_speculative_greedy_and_sampling_match_plain") {
        return;
    }
    let greedy = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(32) };
    let seeded = SamplingParams { temperature: 0.8, top_p: 0.9, seed: Some(3), ..greedy.clone() };
    let penalized = SamplingParams { repetition_penalty: 1.2, presence_penalty: 0.3, ..seeded.clone() };
    for model in ["llama", "qwen2", "gemma2", "phi3"] {
        for p in [&greedy, &seeded, &penalized] {
            let (plain, _, captured) = generate(model, DType::F32, None, p);
            assert!(!captured.is_empty(), "{model}: plain decode ran without CUDA graphs");
            let own = SpecOptions::draft(fixture(model), 3);
            for spec in [SpecOptions::ngram(4), own] {
                let (out, st, _) = generate(model, DType::F32, Some(spec.clone()), p);
                assert_eq!(out, plain, "{model} {spec:?} {p:?}");
                assert!(st.draft_tokens > 0, "{model} {spec:?}: {st:?}");
            }
        }
    }
    let (_, st, _) = generate("llama", DType::BF16, Some(SpecOptions::draft(fixture("llama"), 4)), &greedy);
    assert!(st.acceptance_rate() > 0.8, "bf16 self-draft: {st:?}");
}
