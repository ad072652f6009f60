//! Pipeline parallelism on the CPU reference (one thread per stage, micro-batches through
//! channels): pp 2, pp 3 and tp 2 x pp 2 against one rank on the fixtures — f32 logits NMSE
//! <= 1e-8 and identical greedy tokens for a batch of three prompts (split into micro-batches).
//! `TRTLLM_PP_TEST_DEVICE=cuda` runs the same on GPUs (pp x tp of them, one stage per GPU group).

use trtllm_tests::{fixture, ids, nmse};

use trtllm_core::batch::{ForwardBatch, SeqStep};
use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::runner::SamplingParams;
use trtllm_core::weights::SafetensorsFiles;
use trtllm_core::{DType, Device};

fn device() -> (Device, usize) {
    if std::env::var("TRTLLM_PP_TEST_DEVICE").is_ok_and(|v| v == "cuda") {
        return (Device::Cuda(0), trtllm_kernels::Gpu::device_count());
    }
    (Device::Cpu, 8)
}

fn load(name: &str, dev: Device, tp: usize, pp: usize) -> Llm {
    let mut opts = LlmOptions { kv_block_size: 4, max_batch_size: 4, max_seq_len: 64, ..Default::default() };
    opts.load.dtype = Some(DType::F32);
    opts.load.device = dev;
    opts.tp_size = Some(tp);
    opts.pp_size = pp;
    Llm::with_options(fixture(name), opts).unwrap_or_else(|e| panic!("{name} tp {tp} pp {pp}: {e}"))
}

fn logits(llm: &mut Llm, input: &[u32]) -> Vec<f32> {
    let t = llm.logits_all(input, None, &SingleRank).expect("forward");
    t.to_cpu().expect("download").to_f32_vec().expect("f32")
}

fn greedy(llm: &mut Llm, prompts: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let params = SamplingParams { max_new_tokens: 12, ignore_eos: true, ..Default::default() };
    let got = llm.generate_ids(prompts.to_vec(), &params, &mut |_, _| {}).expect("generate");
    got.into_iter().map(|g| g.token_ids).collect()
}

fn check(name: &str) {
    let (dev, gpus) = device();
    trtllm::init();
    let refs =
        SafetensorsFiles::open_files(&[fixture(name).join("reference.safetensors")]).expect("reference");
    let input = ids(&refs.read("input_ids").expect("ids"));
    let other: Vec<u32> = input.iter().rev().map(|&t| (t * 7 + 3) % 384).collect();
    let third: Vec<u32> = input.iter().take(3).map(|&t| (t * 5 + 1) % 384).collect();
    let prompts = vec![input.clone(), other, third];
    let mut one = load(name, dev, 1, 1);
    let (want_logits, want_tokens) = (logits(&mut one, &input), greedy(&mut one, &prompts));
    drop(one);
    for (tp, pp) in [(1, 2), (1, 3), (2, 2)].into_iter().filter(|(t, p)| t * p <= gpus) {
        let mut llm = load(name, dev, tp, pp);
        let e = nmse(&logits(&mut llm, &input), &want_logits);
        let toks = greedy(&mut llm, &prompts);
        println!(
            "PP {name:12} tp {tp} pp {pp}: logits NMSE vs one rank {e:.2e}, greedy identical {}",
            toks == want_tokens
        );
        assert!(e <= 1e-8, "{name} tp {tp} pp {pp}: logits NMSE {e:e} vs one rank");
        assert_eq!(toks, want_tokens, "{name} tp {tp} pp {pp}: greedy tokens differ from one rank");
    }
}

macro_rules! fixtures {
    ($($name:ident),* $(,)?) => { $(#[test] fn $name() { check(stringify!($name)); })* };
}

fixtures!(
    llama,
    llama_tied,
    gemma2,
    qwen3,
    mixtral,
    olmo2,
    gpt_neox,
    cohere,
    qwen2_moe,
    gpt_oss,
    falcon,
    deepseek_v2,
    deepseek_v3
);

/// Micro-batches keep every sequence once, in order, with batch-local indices.
#[test]
fn split_seqs_keeps_order() {
    let tables: Vec<Vec<u32>> = (0..5u32).map(|i| vec![i * 4, i * 4 + 1, i * 4 + 2]).collect();
    let toks: Vec<Vec<u32>> = [5usize, 1, 1, 7, 2].iter().map(|&n| (0..n as u32).collect()).collect();
    let steps: Vec<SeqStep<'_>> = toks
        .iter()
        .zip(&tables)
        .enumerate()
        .map(|(i, (t, b))| SeqStep { tokens: t, start_pos: i, block_table: b })
        .collect();
    let batch = ForwardBatch::new(&steps, 4, false).expect("batch");
    for n in 1..=6 {
        let parts = batch.split_seqs(n);
        assert_eq!(parts.len(), n.min(5), "{n} groups asked");
        let mut seqs = 0;
        let mut slots = vec![];
        for p in &parts {
            assert!(!p.seqs.is_empty(), "{n}: an empty micro-batch");
            for (i, s) in p.seqs.iter().enumerate() {
                assert_eq!(s.block_table, batch.seqs[seqs + i].block_table);
                assert!(p.token_seq[s.q_start..s.q_start + s.q_len].iter().all(|&t| t == i));
            }
            seqs += p.seqs.len();
            slots.extend_from_slice(&p.slot_mapping);
            assert_eq!(p.logit_rows().len(), p.seqs.len());
        }
        assert_eq!(seqs, 5);
        assert_eq!(slots, batch.slot_mapping, "{n} groups: tokens out of order");
    }
}
