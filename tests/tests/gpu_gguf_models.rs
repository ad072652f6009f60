//! GGUF files on the GPU with their linears kept in ggml blocks (`GgufBlocks::Packed`,
//! `ops::matmul_t_ggml`): a Q8_0 export of the llama fixture and a Q4_K export of a synthetic
//! llama with 256 / 512-wide rows (`convert --quantize`'s code path, `quantize_to_gguf`).
//!
//! - CPU (always runs): the plan keeps every decoder linear of both files in its blocks, and
//!   the packed CPU twin (`keep_quantized: Some(true)`, weights dequantized per call) gives the
//!   logits of the same file dequantized at load (`Some(false)`).
//! - GPU (skips without one): bf16 with the blocks on the device, the whole prompt (m > 8:
//!   `ggml_dequant` + bf16 GEMM) and its first 4 tokens (m <= 8: `gemv_ggml`), logits against
//!   the CPU run of the same file with the exact f32 weights (NMSE <= 1e-3; the CPU's default
//!   int8-activation run printed beside it); greedy 16 tokens against that CPU run, a divergence
//!   passing only at a near-tie (the CPU run's own logits within 2% of the row's range).
//!
//! Run on the device: `cargo test --release -p trtllm-tests --test gpu_gguf_models --
//! --test-threads=1 --nocapture`.

#[path = "gpu_common/mod.rs"]
mod common;
#[path = "gguf_common/mod.rs"]
mod gguf_common;

use std::path::{Path, PathBuf};

use common::gpu;
use gguf_common::wide_llama;
use trtllm_core::checkpoint::{quantize_to_gguf, GgufQuant};
use trtllm_core::dist::SingleRank;
use trtllm_core::gguf::GgmlType;
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::runner::SamplingParams;
use trtllm_core::weights::{GgufBlocks, GgufWeights, WeightSource};
use trtllm_core::{DType, Device, Mapping};
use trtllm_tests::{fixture, nmse};

/// The two exports in `tmp`: (name, GGUF file, block type of its linears, vocab).
fn exports(tmp: &Path) -> Vec<(&'static str, PathBuf, GgmlType, usize)> {
    let q8 = tmp.join("llama-q8_0.gguf");
    quantize_to_gguf(&fixture("llama"), &q8, GgufQuant::Q8_0, false).expect("q8_0 export");
    let hf = tmp.join("wide");
    wide_llama(&hf);
    let q4 = tmp.join("wide-q4_k.gguf");
    quantize_to_gguf(&hf, &q4, GgufQuant::Q4K, false).expect("q4_k export");
    let vocab = |d: &Path| {
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).expect("config"))
                .expect("json");
        cfg["vocab_size"].as_u64().expect("vocab") as usize
    };
    vec![
        ("llama Q8_0", q8, GgmlType::Q8_0, vocab(&fixture("llama"))),
        ("wide llama Q4_K", q4, GgmlType::Q4K, vocab(&hf)),
    ]
}

fn engine(gguf: &Path, device: Device, keep: Option<bool>) -> Llm {
    trtllm::init();
    let dir = trtllm_core::gguf::model_dir(gguf).expect("model dir");
    let mut opts = LlmOptions { kv_block_size: 4, max_batch_size: 2, max_seq_len: 128, ..Default::default() };
    opts.load.device = device;
    if device != Device::Cpu {
        opts.load.dtype = Some(DType::BF16);
    }
    opts.load.keep_quantized = keep;
    Llm::with_options(&dir, opts).unwrap_or_else(|e| panic!("{}: {e}", gguf.display()))
}

fn ids(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| 3 + ((i * 37 + 11) % (vocab - 3)) as u32).collect()
}

fn logits(llm: &mut Llm, input: &[u32]) -> Vec<f32> {
    let t = llm.logits_all(input, None, &SingleRank).expect("forward");
    t.to_cpu().expect("download").to_f32_vec().expect("f32")
}

#[test]
fn every_decoder_linear_is_planned_packed_and_the_cpu_twin_matches() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (name, file, ty, vocab) in exports(tmp.path()) {
        let dir = trtllm_core::gguf::model_dir(&file).expect("model dir");
        let (_, _, specs, report) = trtllm_core::model::inspect(&dir, Mapping::default()).expect("plan");
        assert!(report.is_ok(), "{name}: {}", report.render());
        let w = GgufWeights::open(&file, GgufBlocks::Packed).expect("open");
        let mut packed = vec![];
        // The embedding and the head are not `Linear`s: they never ask for blocks.
        for s in specs.iter().filter(|s| s.name.starts_with("model.layers.")) {
            if let Some((t, _)) = w.ggml_blocks(s, &Mapping::default()).expect("blocks") {
                assert_eq!(t, ty, "{name}: {}", s.name);
                packed.push(s.name.clone());
            }
        }
        // Per layer: qkv, o, gate_up, down (2 layers).
        println!("{name}: {} linears packed: {packed:?}", packed.len());
        assert_eq!(packed.len(), 8, "{name}: {packed:?}");

        let input = ids(12, vocab);
        let twin = logits(&mut engine(&file, Device::Cpu, Some(true)), &input);
        let deq = logits(&mut engine(&file, Device::Cpu, Some(false)), &input);
        let e = nmse(&twin, &deq);
        println!("{name}: CPU packed twin vs dequantized at load: NMSE {e:.2e}");
        assert!(e <= 1e-10, "{name}: NMSE {e}");
    }
}

#[test]
fn gguf_blocks_on_the_gpu_match_the_cpu_run_of_the_same_file() {
    if gpu().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    for (name, file, _, vocab) in exports(tmp.path()) {
        let input = ids(20, vocab);
        let mut g = engine(&file, Device::Cuda(0), None);
        let mut cpu = engine(&file, Device::Cpu, Some(false));
        let mut cpu_q = engine(&file, Device::Cpu, None);
        for len in [input.len(), 4] {
            let got = logits(&mut g, &input[..len]);
            let want = logits(&mut cpu, &input[..len]);
            let e = nmse(&got, &want);
            let eq = nmse(&got, &logits(&mut cpu_q, &input[..len]));
            println!(
                "{name:16} {len:2} tokens: GPU blocks vs CPU f32 weights NMSE {e:.2e}; vs the CPU's int8-activation kernels {eq:.2e}"
            );
            assert!(e <= 1e-3, "{name} ({len} tokens): NMSE {e} vs the CPU run of the same file");
        }
        let params = SamplingParams { max_new_tokens: 16, ignore_eos: true, ..Default::default() };
        for len in [4, input.len()] {
            let prompt = input[..len].to_vec();
            let got =
                g.generate_ids(vec![prompt.clone(), prompt.clone()], &params, &mut |_, _| {}).expect("gen");
            let want = cpu.generate_ids(vec![prompt.clone()], &params, &mut |_, _| {}).expect("gen");
            let want = &want[0].token_ids;
            assert_eq!(got[0].token_ids, got[1].token_ids, "{name}: batched greedy differs");
            let Some(i) = got[0].token_ids.iter().zip(want).position(|(a, b)| a != b) else {
                println!("{name:16} greedy 16 from {len:2} tokens: identical to the CPU run");
                continue;
            };
            let mut ctx = prompt.clone();
            ctx.extend_from_slice(&want[..i]);
            let row = logits(&mut cpu, &ctx);
            let row = &row[row.len() - vocab..];
            let spread =
                row.iter().fold(f32::MIN, |a, &b| a.max(b)) - row.iter().fold(f32::MAX, |a, &b| a.min(b));
            let gap = (row[want[i] as usize] - row[got[0].token_ids[i] as usize]) / spread;
            println!(
                "{name:16} greedy 16 from {len:2} tokens: first difference at token {i} ({} vs {}), gap {gap:.4} of the logit range",
                got[0].token_ids[i], want[i]
            );
            assert!(
                gap <= 0.02,
                "{name}: greedy differs at token {i} where the CPU run's margin is {gap} of its range"
            );
        }
    }
}
