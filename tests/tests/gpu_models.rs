//! Every fixture architecture on the GPU against its HF reference: f32 logits NMSE <= 1e-5 and
//! identical greedy tokens; bf16 logits NMSE <= 1e-3. Skips without a GPU.

use trtllm_tests::{fixture, ids, nmse};

use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::runner::SamplingParams;
use trtllm_core::weights::SafetensorsFiles;
use trtllm_core::{DType, Device};

fn check(name: &str) {
    if !trtllm_kernels::Gpu::available() {
        eprintln!("SKIPPED {name}: no CUDA GPU on this machine (run scripts/gpu-check.sh on the device)");
        return;
    }
    trtllm::init();
    let refs =
        SafetensorsFiles::open_files(&[fixture(name).join("reference.safetensors")]).expect("reference");
    let input = ids(&refs.read("input_ids").expect("ids"));
    let want_logits = refs.read("logits").expect("logits");
    for (dt, limit) in [(DType::F32, 1e-5), (DType::BF16, 1e-3)] {
        let mut opts =
            LlmOptions { kv_block_size: 4, max_batch_size: 2, max_seq_len: 64, ..Default::default() };
        opts.load.dtype = Some(dt);
        opts.load.device = Device::Cuda(0);
        let mut llm = Llm::with_options(fixture(name), opts).unwrap_or_else(|e| panic!("{name} {dt}: {e}"));
        let logits = llm
            .logits_all(&input, None, &SingleRank)
            .expect("forward")
            .to_cpu()
            .expect("dl")
            .to_f32_vec()
            .expect("f32");
        let want_v = want_logits.f32s().expect("f32");
        let e = nmse(&logits, want_v);
        println!("{name:20} {dt:9} logits NMSE {e:.2e}");
        if e > limit {
            // Where the error sits: one position far off (a discrete choice flipped there, e.g.
            // MoE routing at a near tie) or spread over all (a numeric path).
            let vocab = logits.len() / input.len();
            let per: Vec<String> = logits
                .chunks(vocab)
                .zip(want_v.chunks(vocab))
                .map(|(a, b)| format!("{:.1e}", nmse(a, b)))
                .collect();
            println!("{name} {dt}: NMSE per position {}", per.join(" "));
        }
        assert!(e <= limit, "{name} {dt}: logits NMSE {e:e} > {limit:e}");
        if dt == DType::F32 {
            let want = ids(&refs.read("greedy").expect("greedy"));
            let params =
                SamplingParams { max_new_tokens: want.len(), ignore_eos: true, ..Default::default() };
            let got = llm
                .generate_ids(vec![input.clone(), input.clone()], &params, &mut |_, _| {})
                .expect("generate");
            assert_eq!(got[0].token_ids, want, "{name}: GPU greedy differs from HF");
            assert_eq!(got[1].token_ids, want, "{name}: GPU batched greedy differs from HF");
        }
    }
}

macro_rules! fixtures {
    ($($name:ident),* $(,)?) => { $(#[test] fn $name() { check(stringify!($name)); })* };
}

trtllm_tests::for_each_fixture!(fixtures);
