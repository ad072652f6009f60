//! CUDA-graph decode against eager decode on the GPU. For several fixture architectures: 24
//! greedy steps at batch 1 and batch 3 (padded to the 4-row bucket), KV block size 4 (every
//! sequence crosses several block boundaries, at different steps): identical tokens and f32
//! logits NMSE <= 1e-6 at every step, with the graphs really captured and replayed; the same
//! through `Llm` (graphs on vs `LlmOptions::cuda_graphs = false`). Batch 10 (the 16-row
//! bucket: cuBLAS / cuBLASLt GEMMs inside the graph) in f32 (same bar) and bf16 (teacher-forced,
//! logits NMSE <= 1e-3). MoE models are captured too (their decode routes on the device,
//! `ops/moe.rs`). Models graphs do not apply to (sequence-length-dependent RoPE) decode eagerly.
//! Skips without a GPU.

#[path = "gpu_common/mod.rs"]
mod gpu_common;

use gpu_common::gpu_ok;
use trtllm_tests::{fixture, ids, nmse};

use trtllm_core::batch::{BlockAllocator, ForwardBatch, KvCache, SeqStep};
use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::{load_model, LlmOptions};
use trtllm_core::runner::{DecodeGraphs, SamplingParams};
use trtllm_core::weights::SafetensorsFiles;
use trtllm_core::{DType, Device};

const STEPS: usize = 24;
const BLOCK: usize = 4;
const MAX_BATCH: usize = 4;
const MAX_SEQ: usize = 64;

fn opts(graphs: bool) -> LlmOptions {
    let mut o = LlmOptions {
        kv_block_size: BLOCK,
        max_batch_size: MAX_BATCH,
        max_seq_len: MAX_SEQ,
        cuda_graphs: graphs,
        ..Default::default()
    };
    o.load.dtype = Some(DType::F32);
    o.load.device = Device::Cuda(0);
    o
}

/// The fixture's prompt, and `n` prompts of different lengths cut from it.
fn prompts(name: &str, n: usize) -> Vec<Vec<u32>> {
    let refs =
        SafetensorsFiles::open_files(&[fixture(name).join("reference.safetensors")]).expect("reference");
    let input = ids(&refs.read("input_ids").expect("ids"));
    [0, 1, 3, 2, 4, 5, 6, 7, 8, 9].iter().take(n).map(|&cut| input[..input.len() - cut].to_vec()).collect()
}

/// How a decode run is set up.
#[derive(Clone, Copy)]
struct Setup<'a> {
    graphs: bool,
    max_batch: usize,
    dtype: DType,
    /// Feed these tokens instead of the run's own greedy ones (teacher forcing).
    forced: Option<&'a [Vec<u32>]>,
    /// The longest context the graphs are captured for (`max_seq_len` of `DecodeGraphs`).
    graph_ctx: usize,
}

struct Decoded {
    tokens: Vec<Vec<u32>>,
    /// Per step, the `[n, vocab]` logits.
    logits: Vec<Vec<f32>>,
    captured: Vec<usize>,
    off: Option<String>,
}

/// Prefill, then `STEPS` greedy decode steps, through `DecodeGraphs` when `su.graphs`.
fn decode(name: &str, prompts: &[Vec<u32>], su: Setup<'_>) -> Decoded {
    let mut o = opts(su.graphs);
    o.load.dtype = Some(su.dtype);
    let model = load_model(&fixture(name), &o).unwrap_or_else(|e| panic!("{name}: {e}"));
    let gpu = trtllm_core::device::gpu(0).expect("GPU 0");
    let blocks = su.max_batch * MAX_SEQ / BLOCK;
    let mut kv =
        KvCache::new_cuda(&gpu, su.dtype, model.kv_layout(), BLOCK, blocks, Default::default()).expect("kv");
    let mut alloc = BlockAllocator::new(blocks);
    let mut g = su.graphs.then(|| {
        DecodeGraphs::new(&*model, &kv, su.max_batch, su.graph_ctx, true).expect("graphs apply to this model")
    });
    let n = prompts.len();
    let mut seqs = prompts.to_vec();
    let mut cached = vec![0usize; n];
    let mut tables: Vec<Vec<u32>> = vec![vec![]; n];
    let mut out = Decoded { tokens: vec![vec![]; n], logits: vec![], captured: vec![], off: None };
    for step in 0..=STEPS {
        for i in 0..n {
            alloc.ensure(&mut tables[i], seqs[i].len(), BLOCK).expect("blocks");
        }
        let steps: Vec<SeqStep<'_>> = (0..n)
            .map(|i| SeqStep { tokens: &seqs[i][cached[i]..], start_pos: cached[i], block_table: &tables[i] })
            .collect();
        let batch = ForwardBatch::new(&steps, BLOCK, false).expect("batch");
        let graphed = match g.as_mut() {
            Some(g) => g.forward(&*model, &batch, &mut kv, &SingleRank).expect("graph step"),
            None => None,
        };
        let logits = match graphed {
            Some(l) => l,
            None => model.forward(&batch, &mut kv, &SingleRank, None).expect("forward"),
        };
        let host =
            logits.to_cpu().expect("download").to_dtype(DType::F32).expect("f32").to_f32_vec().expect("f32");
        let v = logits.dim(1);
        assert_eq!(host.len(), n * v, "{name}: step {step} logits shape {:?}", logits.shape());
        for i in 0..n {
            let row = &host[i * v..(i + 1) * v];
            let tok = match su.forced {
                Some(f) => f[i][step],
                None => trtllm_core::ops::argmax(row) as u32,
            };
            cached[i] = seqs[i].len();
            seqs[i].push(tok);
            out.tokens[i].push(tok);
        }
        if step > 0 {
            out.logits.push(host); // decode steps only (the prefill is eager either way)
        }
    }
    if let Some(g) = &g {
        out.captured = g.captured();
        out.off = g.off_reason().map(str::to_string);
    }
    out
}

fn check(name: &str) {
    if !gpu_ok(name) {
        return;
    }
    for n in [1, 3] {
        let p = prompts(name, n);
        let su = Setup {
            graphs: false,
            max_batch: MAX_BATCH,
            dtype: DType::F32,
            forced: None,
            graph_ctx: MAX_SEQ,
        };
        let eager = decode(name, &p, su);
        let graph = decode(name, &p, Setup { graphs: true, ..su });
        assert_eq!(graph.off, None, "{name} batch {n}: graphs were turned off");
        let bucket = if n == 1 { 1 } else { 4 };
        assert_eq!(graph.captured, vec![bucket], "{name} batch {n}: captured buckets");
        assert_eq!(graph.tokens, eager.tokens, "{name} batch {n}: graph tokens differ from eager");
        let worst = graph.logits.iter().zip(&eager.logits).map(|(g, e)| nmse(g, e)).fold(0.0f64, f64::max);
        println!("{name:18} batch {n}: {STEPS} steps, bucket {bucket}, worst logits NMSE {worst:.2e}");
        assert!(worst <= 1e-6, "{name} batch {n}: logits NMSE {worst:e} > 1e-6");
    }
    // The same through `Llm`: graphs on (default) vs off.
    for n in [1, 3] {
        let p = prompts(name, n);
        let params = SamplingParams { max_new_tokens: STEPS, ignore_eos: true, ..Default::default() };
        let mut runs = vec![];
        for graphs in [true, false] {
            let mut llm = Llm::with_options(fixture(name), opts(graphs)).expect("load");
            let got = llm.generate_ids(p.clone(), &params, &mut |_, _| {}).expect("generate");
            if graphs {
                let g = llm.cuda_graphs().expect("graphs apply");
                assert!(
                    !g.captured().is_empty(),
                    "{name} batch {n}: Llm captured nothing ({:?})",
                    g.off_reason()
                );
            } else {
                assert!(llm.cuda_graphs().is_none(), "LlmOptions::cuda_graphs = false must keep them off");
            }
            runs.push(got.into_iter().map(|g| g.token_ids).collect::<Vec<_>>());
        }
        assert_eq!(runs[0], runs[1], "{name} batch {n}: Llm tokens with graphs differ from eager");
    }
}

/// Graphs captured for 1024-key contexts plan the bf16 grouped decode kernel's split-K for
/// them; steps whose contexts fit 256 keys replay the short-context graph instead, which runs
/// the same unsplit kernel as the eager step: the same logits.
#[test]
fn short_context_graphs() {
    let name = "llama";
    if !gpu_ok(name) {
        return;
    }
    for n in [1, 3] {
        let p = prompts(name, n);
        let su =
            Setup { graphs: false, max_batch: MAX_BATCH, dtype: DType::BF16, forced: None, graph_ctx: 1024 };
        let eager = decode(name, &p, su);
        let graph = decode(name, &p, Setup { graphs: true, ..su });
        assert_eq!(graph.off, None, "batch {n}: graphs were turned off");
        assert_eq!(graph.tokens, eager.tokens, "batch {n}: short-context graph tokens differ from eager");
        let worst = graph.logits.iter().zip(&eager.logits).map(|(g, e)| nmse(g, e)).fold(0.0f64, f64::max);
        println!("short-context graphs, bf16, batch {n}: worst logits NMSE vs eager {worst:.2e}");
        assert!(worst <= 1e-6, "batch {n}: logits NMSE {worst:e} > 1e-6");
    }
}

/// Batch 10 runs in the 16-row bucket, whose GEMMs are cuBLAS (f32) / cuBLASLt (bf16) calls
/// captured into the graph (m = 16 there, 10 eagerly: other kernels, not bit-identical).
#[test]
fn cublas_bucket() {
    let name = "llama";
    if !gpu_ok(name) {
        return;
    }
    let p = prompts(name, 10);
    for (dtype, limit) in [(DType::F32, 1e-6), (DType::BF16, 1e-3)] {
        let su = Setup { graphs: false, max_batch: 16, dtype, forced: None, graph_ctx: MAX_SEQ };
        let eager = decode(name, &p, su);
        // bf16: the graph run follows the eager tokens, so every step compares the same inputs.
        let forced = (dtype == DType::BF16).then_some(&eager.tokens[..]);
        let graph = decode(name, &p, Setup { graphs: true, forced, ..su });
        assert_eq!(graph.off, None, "{name} {dtype}: graphs were turned off");
        assert_eq!(graph.captured, vec![16], "{name} {dtype}: captured buckets");
        if dtype == DType::F32 {
            assert_eq!(graph.tokens, eager.tokens, "{name}: graph tokens differ from eager");
        }
        let worst = graph.logits.iter().zip(&eager.logits).map(|(g, e)| nmse(g, e)).fold(0.0f64, f64::max);
        println!("{name:18} {dtype} batch 10: bucket 16, worst logits NMSE {worst:.2e}");
        assert!(worst <= limit, "{name} {dtype} batch 10: logits NMSE {worst:e} > {limit:e}");
    }
}

/// Models graphs do not apply to decode eagerly, with the same tokens as before.
fn check_not_applicable(name: &str) {
    if !gpu_ok(name) {
        return;
    }
    let llm = Llm::with_options(fixture(name), opts(true)).expect("load");
    assert!(llm.cuda_graphs().is_none(), "{name}: graphs must not apply");
    let p = prompts(name, 3);
    let params = SamplingParams { max_new_tokens: 8, ignore_eos: true, ..Default::default() };
    let mut a = Llm::with_options(fixture(name), opts(true)).expect("load");
    let mut b = Llm::with_options(fixture(name), opts(false)).expect("load");
    let ta: Vec<_> = a
        .generate_ids(p.clone(), &params, &mut |_, _| {})
        .expect("gen")
        .into_iter()
        .map(|g| g.token_ids)
        .collect();
    let tb: Vec<_> =
        b.generate_ids(p, &params, &mut |_, _| {}).expect("gen").into_iter().map(|g| g.token_ids).collect();
    assert_eq!(ta, tb, "{name}: eager fallback tokens differ");
}

macro_rules! graph_fixtures {
    ($($name:ident),* $(,)?) => { $(#[test] fn $name() { check(stringify!($name)); })* };
}

graph_fixtures!(
    llama,
    llama_tied,
    llama_rope_llama3,
    mistral_swa,
    qwen2,
    qwen3,
    gemma2,
    gemma3,
    phi3,
    gpt2,
    mixtral,
    qwen2_moe,
    qwen3_moe,
    gpt_oss,
    deepseek_v2,
    deepseek_v3,
);

#[test]
fn not_applicable_dynamic_rope() {
    check_not_applicable("llama_rope_dynamic");
    check_not_applicable("phi3_longrope");
}
