//! Quantized linears on the GPU. Ops: `matmul_t_fp8` / `matmul_gated_fp8` / `matmul_t_int4`
//! against the CPU oracle (weights decoded to f32) at decode (GEMV) and prefill (per-token FP8
//! GEMM, dequantize + GEMM) sizes, per-row and 128 x 128 block FP8 scales, INT4 groups 64 / 128,
//! random inputs, NaN-poisoned outputs. Models: the fixtures of tests/fixtures/quant in bf16
//! with the weights kept quantized on the device: logits against HF's dequantized model,
//! KL(bf16 source || quantized) <= 0.01 (FP8) / 0.05 (INT4), and greedy tokens identical to
//! the same checkpoint dequantized at load. Skips without a GPU.

#[path = "gpu_common/mod.rs"]
mod common;

use common::{gpu, rand_t, rel};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use trtllm_core::config::Activation;
use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::runner::SamplingParams;
use trtllm_core::weights::quant::ScaleLayout;
use trtllm_core::weights::SafetensorsFiles;
use trtllm_core::{ops, DType, Device, Tensor};
use trtllm_tests::{fixture, ids, kl, nmse};

/// Random E4M3 codes (no NaN codes) `[n, k]` and positive scales for `layout`.
fn fp8_weight(rng: &mut SmallRng, n: usize, k: usize, layout: ScaleLayout) -> (Tensor, Tensor) {
    use rand::Rng;
    let codes: Vec<u8> = (0..n * k)
        .map(|_| {
            let c: u8 = rng.random();
            if c & 0x7f == 0x7f {
                c ^ 1
            } else {
                c
            }
        })
        .collect();
    let s: Vec<f32> = (0..layout.len(n, k)).map(|_| 0.002 + rng.random::<f32>() * 0.01).collect();
    let len = s.len();
    (Tensor::from_f8(codes, &[n, k]).expect("w"), Tensor::from_f32(s, &[len]).expect("s"))
}

#[test]
fn fp8_matmul_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(7);
    for layout in [ScaleLayout::Row, ScaleLayout::Block128] {
        for (n, k) in [(256, 512), (384, 1024), (1024, 256)] {
            let (w, s) = fp8_weight(&mut rng, n, k, layout);
            let (wd, sd) = (w.to_gpu(&g).expect("w"), s.to_gpu(&g).expect("s"));
            for m in [1, 3, 8, 9, 64, 200] {
                let x = rand_t(&mut rng, &[m, k], 1.0);
                let xb = x.to_dtype(DType::BF16).expect("bf16");
                let want =
                    ops::matmul_t_fp8(&xb.to_dtype(DType::F32).expect("f32"), &w, &s, layout).expect("cpu");
                let got = ops::matmul_t_fp8(&xb.to_gpu(&g).expect("x"), &wd, &sd, layout).expect("gpu");
                let e = rel(&got, &want);
                // m > 8 with per-row scales quantizes x per token to E4M3 (3 mantissa bits).
                let bound = if m > 8 && layout == ScaleLayout::Row { 6e-2 } else { 1e-2 };
                println!("matmul_t_fp8 {layout:?} m={m} n={n} k={k}: rel {e:.2e}");
                assert!(e <= bound, "{layout:?} m={m} n={n} k={k}: rel {e} > {bound}");
                let want = ops::matmul_gated_fp8(
                    &xb.to_dtype(DType::F32).expect("f32"),
                    &w,
                    &s,
                    layout,
                    Activation::Silu,
                )
                .expect("cpu gated");
                let got =
                    ops::matmul_gated_fp8(&xb.to_gpu(&g).expect("x"), &wd, &sd, layout, Activation::Silu)
                        .expect("gpu gated");
                let e = rel(&got, &want);
                assert!(e <= 2.0 * bound, "gated {layout:?} m={m} n={n} k={k}: rel {e}");
            }
        }
    }
}

/// Random INT4 weights `[n, k]` in the engine layout, f16 scales.
fn int4_weight(rng: &mut SmallRng, n: usize, k: usize, group: usize) -> (Tensor, ops::Int4Layout) {
    use rand::Rng;
    use trtllm_kernels::quant_ref::int4::{Int4Weights, ScaleDt};
    let g = n * (k / group);
    let w = Int4Weights {
        n,
        k,
        group,
        qweight: (0..n * k / 8).map(|_| rng.random()).collect(),
        scales: (0..g).map(|_| half::f16::from_f32(0.002 + rng.random::<f32>() * 0.01).to_bits()).collect(),
        zeros: (0..g).map(|_| rng.random_range(0..16u8)).collect(),
    };
    ops::Int4Layout::pack(&w, ScaleDt::F16).expect("pack")
}

#[test]
fn int4_matmul_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(11);
    for (n, k, group) in [(256, 512, 128), (384, 1024, 128), (1024, 256, 64), (128, 576, 64)] {
        let (w, l) = int4_weight(&mut rng, n, k, group);
        let wd = w.to_gpu(&g).expect("w");
        for m in [1, 3, 8, 9, 64] {
            let x = rand_t(&mut rng, &[m, k], 1.0).to_dtype(DType::BF16).expect("bf16");
            let want = ops::matmul_t_int4(&x.to_dtype(DType::F32).expect("f32"), &w, l).expect("cpu");
            let got = ops::matmul_t_int4(&x.to_gpu(&g).expect("x"), &wd, l).expect("gpu");
            let e = rel(&got, &want);
            println!("matmul_t_int4 m={m} n={n} k={k} g={group}: rel {e:.2e}");
            assert!(e <= 1e-2, "m={m} n={n} k={k} g={group}: rel {e}");
        }
    }
}

fn engine(name: &str, keep: Option<bool>) -> Llm {
    trtllm::init();
    let mut opts = LlmOptions { kv_block_size: 4, max_batch_size: 2, max_seq_len: 64, ..Default::default() };
    opts.load.dtype = Some(DType::BF16);
    opts.load.device = Device::Cuda(0);
    opts.load.keep_quantized = keep;
    Llm::with_options(fixture(&format!("quant/{name}")), opts).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn check(name: &str) {
    check_bound(name, 0.01);
}

fn check_bound(name: &str, kl_bound: f64) {
    if gpu().is_none() {
        return;
    }
    let refs =
        SafetensorsFiles::open_files(&[fixture(&format!("quant/{name}")).join("reference.safetensors")])
            .expect("reference");
    let read = |n: &str| refs.read(n).unwrap_or_else(|e| panic!("{name}: {e}"));
    let input = ids(&read("input_ids"));
    let logits = |llm: &mut Llm, input: &[u32]| {
        let t = llm.logits_all(input, None, &SingleRank).expect("forward");
        t.to_cpu().expect("dl").to_f32_vec().expect("f32")
    };
    let mut fp8 = engine(name, None);
    let want = read("logits");
    let vocab = want.dim(1);
    // The whole prompt (prefill kernels) and its first 4 tokens (m <= 8: the GEMVs).
    for len in [input.len(), 4] {
        let got = logits(&mut fp8, &input[..len]);
        let e = nmse(&got, &want.f32s().expect("f32")[..len * vocab]);
        let k = kl(&read("source.logits").f32s().expect("f32")[..len * vocab], &got, vocab);
        println!("{name:12} bf16 quantized kernels, {len:2} tokens: NMSE vs dequantized HF {e:.2e}, KL(bf16 || quantized) {k:.5}");
        assert!(e <= 2e-2, "{name} ({len} tokens): NMSE {e} vs HF's dequantized model");
        assert!(k <= kl_bound, "{name} ({len} tokens): KL {k} > {kl_bound}");
    }
    // Greedy against the same checkpoint dequantized to bf16 at load: from the first 4 tokens
    // (every step on the weight-only GEMVs) and from the whole prompt (prefill on the quantized
    // GEMMs). Random tiny models have near-ties: a divergence passes only where the dequantized
    // model's own logits rank the two tokens within 2% of the row's logit range.
    let mut deq = engine(name, Some(false));
    let params = SamplingParams { max_new_tokens: 16, ignore_eos: true, ..Default::default() };
    for len in [4, input.len()] {
        let prompt = input[..len].to_vec();
        let got =
            fp8.generate_ids(vec![prompt.clone(), prompt.clone()], &params, &mut |_, _| {}).expect("gen");
        let want = deq.generate_ids(vec![prompt.clone()], &params, &mut |_, _| {}).expect("gen");
        let want = &want[0].token_ids;
        assert_eq!(got[0].token_ids, got[1].token_ids, "{name}: batched greedy differs");
        let Some(i) = got[0].token_ids.iter().zip(want).position(|(a, b)| a != b) else {
            println!("{name:12} greedy 16 from {len:2} tokens: identical to dequantized bf16");
            continue;
        };
        let mut ctx = prompt.clone();
        ctx.extend_from_slice(&want[..i]);
        let row = logits(&mut deq, &ctx);
        let row = &row[row.len() - vocab..];
        let spread =
            row.iter().fold(f32::MIN, |a, &b| a.max(b)) - row.iter().fold(f32::MAX, |a, &b| a.min(b));
        let gap = (row[want[i] as usize] - row[got[0].token_ids[i] as usize]) / spread;
        println!(
            "{name:12} greedy 16 from {len:2} tokens: first difference at token {i} ({} vs {}), a near-tie: gap {:.4} of the logit range",
            got[0].token_ids[i], want[i], gap
        );
        assert!(
            gap <= 0.02,
            "{name}: greedy differs at token {i} where the dequantized model's margin is {gap} of its range"
        );
    }
}

#[test]
fn fp8_tensor() {
    check("fp8_tensor");
}

#[test]
fn fp8_channel() {
    check("fp8_channel");
}

#[test]
fn fbgemm_fp8() {
    check("fbgemm_fp8");
}

#[test]
fn fp8_block() {
    check("fp8_block");
}

#[test]
fn awq() {
    check_bound("awq", 0.05);
}

#[test]
fn gptq() {
    check_bound("gptq", 0.05);
}
