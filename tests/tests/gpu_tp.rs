//! Tensor parallelism over NCCL on the fixtures: tp 2 (and tp 4 where four GPUs exist) against
//! tp 1 on one GPU — bf16 logits NMSE <= 1e-3, f32 logits NMSE <= 1e-8, identical greedy
//! tokens in both dtypes (batched, two different prompts).
//! `llama_tied` and `gemma` have one KV head: tp > num_kv_heads duplicates it per rank.
//! Skips (and says so) with fewer than two GPUs. `TRTLLM_TP_TEST_DEVICE=cpu` runs the same
//! checks on the CPU reference group (to check the test itself without GPUs).

use trtllm_tests::{fixture, ids, nmse};

use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::runner::SamplingParams;
use trtllm_core::weights::SafetensorsFiles;
use trtllm_core::{DType, Device};

fn device() -> Option<(Device, usize)> {
    if std::env::var("TRTLLM_TP_TEST_DEVICE").is_ok_and(|v| v == "cpu") {
        return Some((Device::Cpu, 4));
    }
    let n = trtllm_kernels::Gpu::device_count();
    (n >= 2).then_some((Device::Cuda(0), n))
}

fn load(name: &str, dev: Device, dt: DType, tp: usize) -> Llm {
    let mut opts = LlmOptions { kv_block_size: 4, max_batch_size: 2, max_seq_len: 64, ..Default::default() };
    opts.load.dtype = Some(dt);
    opts.load.device = dev;
    opts.tp_size = Some(tp);
    Llm::with_options(fixture(name), opts).unwrap_or_else(|e| panic!("{name} {dt} tp {tp}: {e}"))
}

fn logits(llm: &mut Llm, input: &[u32]) -> Vec<f32> {
    let t = llm.logits_all(input, None, &SingleRank).expect("forward");
    t.to_cpu().expect("download").to_f32_vec().expect("f32")
}

fn greedy(llm: &mut Llm, prompts: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let params = SamplingParams { max_new_tokens: 16, ignore_eos: true, ..Default::default() };
    let got = llm.generate_ids(prompts.to_vec(), &params, &mut |_, _| {}).expect("generate");
    got.into_iter().map(|g| g.token_ids).collect()
}

fn check(name: &str) {
    let Some((dev, n)) = device() else {
        eprintln!("SKIPPED {name}: tensor parallelism needs at least 2 CUDA GPUs (run scripts/tp-check.sh on a multi-GPU device)");
        return;
    };
    trtllm::init();
    let refs =
        SafetensorsFiles::open_files(&[fixture(name).join("reference.safetensors")]).expect("reference");
    let input = ids(&refs.read("input_ids").expect("ids"));
    let other: Vec<u32> = input.iter().rev().map(|&t| (t * 7 + 3) % 384).collect();
    let prompts = vec![input.clone(), other];
    for dt in [DType::F32, DType::BF16] {
        let mut one = load(name, dev, dt, 1);
        let (want_logits, want_tokens) = (logits(&mut one, &input), greedy(&mut one, &prompts));
        drop(one);
        for tp in [2, 4].into_iter().filter(|&t| t <= n) {
            let mut llm = load(name, dev, dt, tp);
            let e = nmse(&logits(&mut llm, &input), &want_logits);
            let toks = greedy(&mut llm, &prompts);
            let same = toks.iter().zip(&want_tokens).filter(|(a, b)| a == b).count();
            println!("TP {name:14} {dt:5} tp {tp}: logits NMSE vs tp 1 {e:.2e}, greedy sequences identical {same}/2");
            let limit = if dt == DType::F32 { 1e-8 } else { 1e-3 };
            assert!(e <= limit, "{name} {dt} tp {tp}: logits NMSE {e:e} > {limit:e} vs tp 1");
            assert_eq!(toks, want_tokens, "{name} {dt} tp {tp}: greedy tokens differ from tp 1");
        }
    }
}

macro_rules! fixtures {
    ($($name:ident),* $(,)?) => { $(#[test] fn $name() { check(stringify!($name)); })* };
}

fixtures!(
    llama,
    llama_tied,
    gemma,
    gemma2,
    gemma3,
    mistral_swa,
    qwen2,
    qwen3,
    phi3,
    gpt2,
    mixtral,
    qwen3_moe,
    olmo2,
    granite,
    starcoder2,
    gpt_neox,
    cohere,
    qwen2_moe,
    gpt_oss,
    falcon,
    falcon_mqa,
    deepseek_v2,
    deepseek_v3
);

/// The row-parallel partial-sum op: bf16 operands, f32 result, against the CPU (f32 arithmetic on
/// the same bf16 values) at decode (GEMV) and prefill (cuBLAS GemmEx) sizes. Needs one GPU.
#[test]
fn matmul_t_f32_matches_cpu() {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use trtllm_core::{ops, Tensor};
    if !trtllm_kernels::Gpu::available() {
        eprintln!("SKIPPED matmul_t_f32_matches_cpu: no CUDA GPU");
        return;
    }
    let gpu = trtllm_core::device::gpu(0).expect("gpu");
    let mut rng = SmallRng::seed_from_u64(7);
    for (m, n, k) in [(1, 96, 64), (3, 200, 136), (8, 64, 512), (17, 130, 264), (64, 256, 1024)] {
        let mut rand = |len: usize| -> Tensor {
            let v: Vec<f32> = (0..len).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
            Tensor::from_f32(v, &[len]).expect("t").to_dtype(DType::BF16).expect("bf16")
        };
        let (x, w) = (rand(m * k).reshape(&[m, k]).expect("x"), rand(n * k).reshape(&[n, k]).expect("w"));
        let want =
            ops::matmul_t(&x.to_dtype(DType::F32).expect("x32"), &w.to_dtype(DType::F32).expect("w32"))
                .expect("cpu");
        let got = ops::matmul_t_f32(&x.to_gpu(&gpu).expect("up"), &w.to_gpu(&gpu).expect("up")).expect("gpu");
        assert_eq!(got.dtype(), DType::F32);
        let e = nmse(&got.to_cpu().expect("dl").to_f32_vec().expect("f32"), want.f32s().expect("f32"));
        println!("matmul_t_f32 m={m} n={n} k={k}: NMSE vs CPU {e:.2e}");
        assert!(e <= 1e-10, "matmul_t_f32 m={m} n={n} k={k}: NMSE {e:e}");
    }
}
