//! The GQA-grouped, split-K decode attention (`kernels/cuda/attention_decode.cu`) against the CPU
//! oracle and against the per-(token, head) kernel: decode rows at short and long contexts plus a
//! chunk of several query tokens, over shuffled paged blocks, at several group sizes and head
//! dims, with a window and soft-capping; one split and many (empty splits included, as a
//! CUDA-graph step planned for a longer context runs them). Outputs NaN-poisoned. Skips without
//! a GPU.

mod gpu_common;

use gpu_common::{gpu, rand_t, rel, up};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use trtllm_core::batch::{ForwardBatch, SeqStep};
use trtllm_core::ops::{self, AttnParams};
use trtllm_core::{DType, Tensor};
use trtllm_kernels::launch::{self, AttnArgs, DevPtr};
use trtllm_kernels::{DevBuf, Dt};

/// `(heads, kv_heads, head_dim, window, softcap)`.
const CASES: [(usize, usize, usize, usize, f32); 6] = [
    (32, 8, 128, 0, 0.0),
    (9, 3, 64, 0, 0.0),
    (8, 4, 256, 0, 30.0),
    (16, 2, 128, 300, 0.0),
    (40, 5, 128, 0, 0.0),
    (6, 6, 64, 0, 0.0),
];

#[test]
fn grouped_decode_attention_matches_the_cpu_and_the_per_head_kernel() {
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(21);
    let bs = 16;
    // (start position, query tokens): decode rows at 37, 700 and 1500 keys, a 5-token chunk.
    let shape = [(36usize, 1usize), (699, 1), (1499, 1), (200, 5)];
    let need: Vec<usize> = shape.iter().map(|&(p, n)| (p + n).div_ceil(bs)).collect();
    let num_blocks: usize = need.iter().sum::<usize>() + 3;
    let mut ids: Vec<u32> = (0..num_blocks as u32).collect();
    ids.shuffle(&mut rng);
    let mut tables = vec![];
    let mut at = 0;
    for &n in &need {
        tables.push(ids[at..at + n].to_vec());
        at += n;
    }
    let toks = [1u32; 8];
    let steps: Vec<SeqStep<'_>> = shape
        .iter()
        .zip(&tables)
        .map(|(&(p, n), t)| SeqStep { tokens: &toks[..n], start_pos: p, block_table: t })
        .collect();
    let batch = ForwardBatch::new(&steps, bs, true).expect("batch");
    let dev = batch.to_device(&g).expect("batch to device");
    let t = batch.num_tokens();
    let max_ctx = batch.max_context_len();
    for (nh, nkv, hd, window, softcap) in CASES {
        let slots = num_blocks * bs;
        let (q, qr) = up(&g, &rand_t(&mut rng, &[t, nh * hd], 1.0), DType::BF16);
        let (kc, kr) = up(&g, &rand_t(&mut rng, &[slots, nkv * hd], 1.0), DType::BF16);
        let (vc, vr) = up(&g, &rand_t(&mut rng, &[slots, nkv * hd], 1.0), DType::BF16);
        let p = AttnParams {
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: hd,
            scale: (hd as f32).powf(-0.5),
            window: (window > 0).then_some(window),
            softcap: (softcap > 0.0).then_some(softcap),
        };
        let want = ops::paged_attention(&qr, kr.f32s().expect("k"), vr.f32s().expect("v"), &batch, &p)
            .expect("cpu attention");
        fn dp(x: &Tensor) -> DevPtr<'_> {
            DevPtr::new(x.devbuf().expect("on the GPU").0, 0)
        }
        let run = |max_context: usize, grouped: bool| {
            let out = DevBuf::upload(&g, &vec![0xffu8; t * nh * hd * 2]).expect("poisoned out");
            let a = AttnArgs {
                q: dp(&q),
                k_cache: dp(&kc),
                v_cache: dp(&vc),
                out: DevPtr::new(&out, 0),
                tokens: t,
                heads: nh,
                kv_heads: nkv,
                head_dim: hd,
                scale: p.scale,
                window,
                softcap,
                positions: DevPtr::new(&dev.positions, 0),
                token_seq: DevPtr::new(&dev.token_seq, 0),
                block_tables: DevPtr::new(&dev.block_tables, 0),
                bt_offsets: DevPtr::new(&dev.bt_offsets, 0),
                block_size: bs,
                max_context,
                sinks: None,
                fp8: None,
            };
            if grouped {
                launch::paged_attention_grouped(&g, Dt::BF16, &a).expect("grouped kernel");
            } else {
                launch::paged_attention_per_head(&g, Dt::BF16, &a).expect("per-head kernel");
            }
            Tensor::from_devbuf(out, &[t, nh * hd], DType::BF16).expect("tensor")
        };
        let per_head = run(0, false);
        let e_ref = rel(&per_head, &want);
        // 0: one split; max_ctx: split-K; 4096: more splits than keys (empty splits).
        for max_context in [0, max_ctx, 4096] {
            let got = run(max_context, true);
            let e = rel(&got, &want);
            let e_ph = rel(&got, &per_head.to_cpu().expect("down").to_dtype(DType::F32).expect("f32"));
            println!(
                "grouped nh={nh} nkv={nkv} hd={hd} win={window} cap={softcap} max_context={max_context}: \
                 vs cpu {e:.2e}, vs per-head {e_ph:.2e} (per-head vs cpu {e_ref:.2e})"
            );
            assert!(e <= 1e-2, "grouped nh={nh} nkv={nkv} hd={hd} max_context={max_context}: rel err {e:e}");
            assert!(e_ph <= 1e-2, "grouped vs per-head nh={nh} hd={hd}: {e_ph:e}");
        }
    }
}

#[test]
fn grouped_kernel_refuses_what_it_does_not_take() {
    let Some(g) = gpu() else { return };
    let buf = |bytes: usize| DevBuf::zeros(&g, bytes).expect("buffer");
    let (q, out, kv, ints) = (buf(4 * 16 * 128 * 4), buf(4 * 16 * 128 * 4), buf(1 << 20), buf(256));
    let a = AttnArgs {
        q: DevPtr::new(&q, 0),
        k_cache: DevPtr::new(&kv, 0),
        v_cache: DevPtr::new(&kv, 0),
        out: DevPtr::new(&out, 0),
        tokens: 4,
        heads: 16,
        kv_heads: 1,
        head_dim: 128,
        scale: 0.1,
        window: 0,
        softcap: 0.0,
        positions: DevPtr::new(&ints, 0),
        token_seq: DevPtr::new(&ints, 0),
        block_tables: DevPtr::new(&ints, 0),
        bt_offsets: DevPtr::new(&ints, 0),
        block_size: 16,
        max_context: 64,
        sinks: None,
        fp8: None,
    };
    assert!(launch::paged_attention_grouped(&g, Dt::BF16, &a).is_err(), "16 heads per KV head");
    let a2 = AttnArgs { kv_heads: 4, head_dim: 96, ..a };
    assert!(launch::paged_attention_grouped(&g, Dt::BF16, &a2).is_err(), "head_dim 96");
    let a3 = AttnArgs { kv_heads: 4, ..a };
    assert!(launch::paged_attention_grouped(&g, Dt::F32, &a3).is_err(), "f32");
}
