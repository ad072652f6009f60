//! The flash-attention prefill kernels (`trtllm_kernels::flash`, both variants) against the CPU
//! oracle and the paged kernel, their launcher's preconditions and tile lists, and one timed
//! Llama-3-8B-shaped layer (`FLASH_TIMING` lines). Poisoned outputs and caches as in gpu_ops.
//! Skips without a GPU.

mod gpu_common;

use gpu_common::{gpu, rand_t, rel, tol, up, DTS};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use trtllm_core::batch::{ForwardBatch, KvLayer, SeqStep};
use trtllm_core::ops::{self, AttnParams, QkvParams};
use trtllm_core::{DType, Tensor};
use trtllm_kernels::{DevBuf, Gpu};

// ---- flash-attention prefill (bf16 tensor-core kernel, `trtllm_kernels::flash`) ----------------

use trtllm_kernels::flash::{self, FlashArgs, FlashSeq};
use trtllm_kernels::launch::{self, AttnArgs, DevPtr};
use trtllm_kernels::{Dt, GpuError};

/// A flash case: every step gives each sequence's query count (positions continue from the
/// previous steps, so later steps are chunked prefill over cached context, or decode rows).
struct FlashCase {
    nh: usize,
    nkv: usize,
    hd: usize,
    bs: usize,
    window: Option<usize>,
    softcap: Option<f32>,
    /// Multiplies head_dim^-0.5 (larger: peakier softmax).
    scale_mul: f32,
    steps: &'static [&'static [usize]],
}

const FLASH_CASES: [FlashCase; 6] = [
    // MHA, hd 64, one sequence: 300 (4 full tiles + 44), then a 45-token chunk over 300 cached,
    // then two decode steps (the paged decode kernel over 3 chunks of 128 keys).
    FlashCase {
        nh: 8,
        nkv: 8,
        hd: 64,
        bs: 16,
        window: None,
        softcap: None,
        scale_mul: 1.0,
        steps: &[&[300], &[45], &[1], &[1]],
    },
    // GQA 4, hd 128, three sequences: a 1-token prefill; then a mixed step with a decode row.
    FlashCase {
        nh: 8,
        nkv: 2,
        hd: 128,
        bs: 16,
        window: None,
        softcap: None,
        scale_mul: 2.0,
        steps: &[&[130, 1, 77], &[17, 200, 1], &[1, 1, 1]],
    },
    // GQA 8, hd 128, sliding window + soft-cap over block size 8, peaky scores.
    FlashCase {
        nh: 32,
        nkv: 4,
        hd: 128,
        bs: 8,
        window: Some(37),
        softcap: Some(30.0),
        scale_mul: 4.0,
        steps: &[&[129], &[64], &[1]],
    },
    // MHA, hd 128: exactly the threshold (16), one tile + 1, a decode row; then three chunks.
    FlashCase {
        nh: 4,
        nkv: 4,
        hd: 128,
        bs: 16,
        window: None,
        softcap: None,
        scale_mul: 8.0,
        steps: &[&[16, 65, 1], &[64, 16, 40]],
    },
    // GQA 4, hd 96 (Phi-3), window longer than a tile, block size 32.
    FlashCase {
        nh: 12,
        nkv: 3,
        hd: 96,
        bs: 32,
        window: Some(100),
        softcap: None,
        scale_mul: 1.0,
        steps: &[&[250], &[70]],
    },
    // GQA 8, hd 64, soft-cap, three sequences of 1, 300 and 33 tokens, then short chunks.
    FlashCase {
        nh: 16,
        nkv: 2,
        hd: 64,
        bs: 16,
        window: None,
        softcap: Some(5.0),
        scale_mul: 3.0,
        steps: &[&[1, 300, 33], &[20, 2, 15], &[1, 1, 1]],
    },
];

/// Largest relative error of one `row`-long row (one token and head).
fn row_rel_max(got: &Tensor, want: &Tensor, row: usize) -> f64 {
    let (g, w) =
        (got.to_cpu().expect("download").to_f32_vec().expect("f32"), want.to_f32_vec().expect("f32"));
    g.chunks(row)
        .zip(w.chunks(row))
        .map(|(a, b)| {
            let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
            let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
            (num / den.max(1e-30)).sqrt()
        })
        .fold(0.0, f64::max)
}

/// Shuffled block tables: each sequence gets enough blocks for `ctx[s]` tokens plus one spare.
fn shuffled_tables(rng: &mut SmallRng, ctx: &[usize], bs: usize) -> (Vec<Vec<u32>>, usize) {
    let per: Vec<usize> = ctx.iter().map(|c| c.div_ceil(bs) + 1).collect();
    let n = per.iter().sum::<usize>() + 3;
    let mut ids: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        ids.swap(i, rng.random_range(0..=i));
    }
    let mut it = ids.into_iter();
    (per.iter().map(|&k| it.by_ref().take(k).collect()).collect(), n)
}

/// The flash prefill path of `qkv_attention` against the CPU oracle (see FLASH_CASES), once per
/// flash kernel (`flash::with_variant`; a kernel whose shared memory does not fit the device is
/// skipped): bf16 runs that kernel (asserted through its launch counter) unless
/// `TRTLLM_NO_FLASH=1`, f32 the paged kernel. The GPU caches start as NaN, so a read of any slot
/// the step did not write (beyond the context, or of another sequence) fails; outputs are
/// poisoned too. No RoPE: the GPU and the CPU see bit-identical q/k/v, so only the attention
/// arithmetic differs.
#[test]
fn flash_prefill_attention() {
    let Some(g) = gpu() else { return };
    for v in flash::Variant::ALL {
        flash::with_variant(v, || flash_cases(&g, v));
    }
}

fn flash_cases(g: &std::sync::Arc<Gpu>, v: flash::Variant) {
    let no_flash = std::env::var("TRTLLM_NO_FLASH").is_ok_and(|v| v == "1");
    let mut rng = SmallRng::seed_from_u64(5);
    for (ci, c) in FLASH_CASES.iter().enumerate() {
        if !flash::fits(g, v, c.hd) {
            eprintln!("SKIPPED: flash {v:?} at head_dim {}: its shared memory does not fit this GPU", c.hd);
            continue;
        }
        let nseq = c.steps[0].len();
        let ctx: Vec<usize> = (0..nseq).map(|s| c.steps.iter().map(|st| st[s]).sum()).collect();
        let (tables, nblocks) = shuffled_tables(&mut rng, &ctx, c.bs);
        let n = nblocks * c.bs * c.nkv * c.hd;
        let attn = AttnParams {
            num_heads: c.nh,
            num_kv_heads: c.nkv,
            head_dim: c.hd,
            scale: (c.hd as f32).powf(-0.5) * c.scale_mul,
            window: c.window,
            softcap: c.softcap,
        };
        let p = QkvParams { attn, rope: None, rope_on_device: None, qk_norm: None, sinks: None };
        for dt in DTS {
            let nan: Vec<u8> = match dt {
                DType::BF16 => [0xc0u8, 0x7f].repeat(n),
                _ => f32::NAN.to_le_bytes().repeat(n),
            };
            let mut gk = KvLayer::Cuda {
                k: DevBuf::upload(g, &nan).expect("kv"),
                v: DevBuf::upload(g, &nan).expect("kv"),
                dtype: dt,
                fp8: None,
            };
            let mut ck = KvLayer::Cpu { k: vec![0f32; n], v: vec![0f32; n], fp8: None };
            let mut start = vec![0usize; nseq];
            let toks = vec![1u32; 512];
            for (si, lens) in c.steps.iter().enumerate() {
                let steps: Vec<SeqStep<'_>> = (0..nseq)
                    .map(|s| SeqStep {
                        tokens: &toks[..lens[s]],
                        start_pos: start[s],
                        block_table: &tables[s],
                    })
                    .collect();
                let batch = ForwardBatch::new(&steps, c.bs, true).expect("batch");
                let t = batch.num_tokens();
                let (qkv, qkvr) = up(g, &rand_t(&mut rng, &[t, (c.nh + 2 * c.nkv) * c.hd], 1.0), dt);
                let dev = batch.to_device(g).expect("batch to device");
                let before = flash::launches_of(v);
                let got = ops::qkv_attention(&qkv, &mut gk, &batch, Some(&dev), &p).expect("gpu");
                let flashed = flash::launches_of(v) > before;
                let want = ops::qkv_attention(&qkvr, &mut ck, &batch, None, &p).expect("cpu");
                let what = format!("flash {v:?} case {ci} step {si} {dt} q_lens {lens:?} from {start:?}");
                let expect_flash = dt == DType::BF16
                    && !no_flash
                    && lens.iter().any(|&l| l >= 16)
                    && flash::supported(g, Dt::BF16, c.hd);
                assert!(!expect_flash || flashed, "{what}: the flash kernel did not run");
                let (e, r) = (rel(&got, &want), row_rel_max(&got, &want, c.hd));
                let row_tol = if dt == DType::F32 { 1e-4 } else { 3e-2 };
                assert!(e <= tol(dt), "{what}: rel err {e:e}");
                assert!(r <= row_tol, "{what}: worst row rel err {r:e}");
                eprintln!("{what}: flash={flashed} rel {e:.2e}, worst row {r:.2e}");
                for s in 0..nseq {
                    start[s] += lens[s];
                }
            }
        }
    }
}

/// Misuse of the flash launcher is a precondition error, never a launch; the tile lists (64- and
/// 128-query tiles); and per kernel one valid launch on zeros into a NaN-poisoned output (output
/// all zero, so every row written; launch counted).
#[test]
fn flash_prefill_preconditions() {
    let Some(g) = gpu() else { return };
    let (nh, nkv, hd, bs, t, slots) = (4, 2, 64, 16, 40, 64);
    let buf = |bytes: usize| DevBuf::zeros(&g, bytes).expect("buffer");
    let (q, q_short, out) = (buf(t * nh * hd * 2), buf(t * nh * hd * 2 - 2), buf(t * nh * hd * 2));
    let (kc, vc, ints) = (buf(slots * nkv * hd * 2), buf(slots * nkv * hd * 2), buf(256));
    let a = AttnArgs {
        q: DevPtr::new(&q, 0),
        k_cache: DevPtr::new(&kc, 0),
        v_cache: DevPtr::new(&vc, 0),
        out: DevPtr::new(&out, 0),
        tokens: t,
        heads: nh,
        kv_heads: nkv,
        head_dim: hd,
        scale: 0.125,
        window: 0,
        softcap: 0.0,
        positions: DevPtr::new(&ints, 0),
        token_seq: DevPtr::new(&ints, 0),
        block_tables: DevPtr::new(&ints, 0),
        bt_offsets: DevPtr::new(&ints, 0),
        block_size: bs,
        max_context: 0,
        sinks: None,
        fp8: None,
    };
    let seq = |q_start, q_len, first_pos, seq| FlashSeq { q_start, q_len, first_pos, seq, bt_len: 4 };
    let call_with = |v: flash::Variant, a: &AttnArgs<'_>, dt: Dt, seqs: &[FlashSeq]| {
        flash::flash_prefill_with(&g, dt, &FlashArgs { attn: a, seqs, num_seqs: 1, cache_slots: slots }, v)
    };
    let call = |a: &AttnArgs<'_>, dt: Dt, seqs: &[FlashSeq], num_seqs: usize, cache_slots: usize| {
        flash::flash_prefill(&g, dt, &FlashArgs { attn: a, seqs, num_seqs, cache_slots })
    };
    let pre = |r: Result<(), GpuError>, what: &str| {
        assert!(
            matches!(r, Err(GpuError::Precondition { .. })),
            "{what}: expected a precondition error, got {r:?}"
        );
    };
    let whole = [seq(0, t, 0, 0)];
    pre(call(&a, Dt::F32, &whole, 1, slots), "f32");
    pre(call(&AttnArgs { head_dim: 80, ..a }, Dt::BF16, &whole, 1, slots), "head_dim 80");
    pre(call(&AttnArgs { q: DevPtr::new(&q_short, 0), ..a }, Dt::BF16, &whole, 1, slots), "q too small");
    pre(call(&AttnArgs { q: DevPtr::new(&q, 2), ..a }, Dt::BF16, &whole, 1, slots), "misaligned q");
    pre(call(&a, Dt::BF16, &whole, 1, slots + 1), "cache smaller than cache_slots");
    pre(call(&a, Dt::BF16, &[seq(1, t, 0, 0)], 1, slots), "rows beyond the tokens");
    pre(call(&a, Dt::BF16, &[seq(0, t, 30, 0)], 1, slots), "context beyond the block table");
    pre(call(&a, Dt::BF16, &[seq(0, 30, 0, 0), seq(20, 20, 0, 1)], 2, slots), "overlapping sequences");
    pre(call(&a, Dt::BF16, &[seq(0, t, 0, 1)], 1, slots), "sequence index beyond bt_offsets");
    pre(call(&a, Dt::BF16, &[seq(0, 0, 0, 0)], 1, slots), "empty sequence");
    for v in flash::Variant::ALL {
        pre(call_with(v, &a, Dt::BF16, &[seq(1, t, 0, 0)]), "rows beyond the tokens");
        pre(call_with(v, &a, Dt::F32, &whole), "f32");
    }
    // Tiles: 8 ints each, longest key range first; a window moves kv_lo.
    let s = [seq(5, 130, 10, 2)];
    let want =
        vec![[133, 2, 138, 2, 0, 139, 0, 0], [69, 64, 74, 2, 0, 137, 0, 0], [5, 64, 10, 2, 0, 73, 0, 0]];
    assert_eq!(flash::tiles(&s, 0, 64).expect("tiles"), want);
    let w = flash::tiles(&s, 20, 64).expect("tiles"); // key ranges 82, 73 and 20 long
    assert_eq!(
        w.iter().map(|t| (t[0], t[4], t[5])).collect::<Vec<_>>(),
        vec![(69, 55, 137), (5, 0, 73), (133, 119, 139)]
    );
    let want128 = vec![[133, 2, 138, 2, 0, 139, 0, 0], [5, 128, 10, 2, 0, 137, 0, 0]];
    assert_eq!(flash::tiles(&s, 0, flash::Variant::Bq128.tile_q()).expect("tiles"), want128);
    let w = flash::tiles(&s, 20, 128).expect("tiles"); // key ranges 137 and 20 long
    assert_eq!(w.iter().map(|t| (t[0], t[4], t[5])).collect::<Vec<_>>(), vec![(5, 0, 137), (133, 119, 139)]);
    assert!(flash::tiles(&s, 0, 0).is_err(), "tile size 0");
    if !flash::supported(&g, Dt::BF16, hd) {
        eprintln!("SKIPPED: the flash kernel needs sm_80+ (this GPU is sm_{})", g.sm);
        return;
    }
    eprintln!("flash kernel picked at head_dim 128 on {}: {:?}", g.name, flash::variant(&g, 128));
    // Valid: zero tables (block 0), zero K/V -> zero output, every row written (the output
    // starts as NaN).
    for v in flash::Variant::ALL {
        if !flash::fits(&g, v, hd) {
            eprintln!("SKIPPED: flash {v:?} at head_dim {hd}: its shared memory does not fit this GPU");
            continue;
        }
        let poisoned = DevBuf::upload(&g, &[0xc0u8, 0x7f].repeat(t * nh * hd)).expect("out");
        let av = AttnArgs { out: DevPtr::new(&poisoned, 0), ..a };
        let before = flash::launches_of(v);
        call_with(v, &av, Dt::BF16, &[seq(0, 17, 3, 0), seq(17, 23, 0, 0)]).expect("valid launch");
        assert_eq!(flash::launches_of(v), before + 1, "{v:?}");
        let o = Tensor::from_devbuf(
            poisoned.copy_range(0, t * nh * hd * 2).expect("copy"),
            &[t, nh * hd],
            DType::BF16,
        )
        .expect("tensor");
        let x = o.to_cpu().expect("download").to_f32_vec().expect("f32");
        assert!(x.iter().all(|x| *x == 0.0), "{v:?}: zero K/V must give a zero output in every row");
    }
}

fn dev_p(t: &Tensor) -> DevPtr<'_> {
    let (b, off) = t.devbuf().expect("on the GPU");
    DevPtr::new(b.as_ref(), off)
}

/// The Llama-3-8B prefill shape (32 q / 8 kv heads, head_dim 128, bf16, block size 16): a
/// 2048-token prompt, and a 2048-token chunk over 2048 cached tokens. Each flash kernel (that fits
/// the device) and the paged kernel must agree; their times are printed (`FLASH_TIMING`, per
/// layer call, one line per flash kernel) for the A/B.
#[test]
fn flash_prefill_llama8b_shape() {
    let Some(g) = gpu() else { return };
    if !flash::supported(&g, Dt::BF16, 128) {
        eprintln!("SKIPPED: the flash kernel needs sm_80+ (this GPU is sm_{})", g.sm);
        return;
    }
    let mut rng = SmallRng::seed_from_u64(6);
    let (nh, nkv, hd, bs) = (32, 8, 128, 16);
    let bf = |t: Tensor| t.to_dtype(DType::BF16).expect("cast").to_gpu(&g).expect("upload");
    for (start, len) in [(0usize, 2048usize), (2048, 2048)] {
        let (tables, nblocks) = shuffled_tables(&mut rng, &[start + len], bs);
        let slots = nblocks * bs;
        let (kc, vc) =
            (bf(rand_t(&mut rng, &[slots, nkv * hd], 1.0)), bf(rand_t(&mut rng, &[slots, nkv * hd], 1.0)));
        let q = bf(rand_t(&mut rng, &[len, nh * hd], 2.0));
        let toks = vec![1u32; len];
        let steps = [SeqStep { tokens: &toks, start_pos: start, block_table: &tables[0] }];
        let batch = ForwardBatch::new(&steps, bs, true).expect("batch");
        let dev = batch.to_device(&g).expect("batch to device");
        let o_paged = DevBuf::alloc(&g, len * nh * hd * 2).expect("out");
        let fa = AttnArgs {
            q: dev_p(&q),
            k_cache: dev_p(&kc),
            v_cache: dev_p(&vc),
            out: DevPtr::new(&o_paged, 0),
            tokens: len,
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
            scale: (hd as f32).powf(-0.5),
            window: 0,
            softcap: 0.0,
            positions: DevPtr::new(&dev.positions, 0),
            token_seq: DevPtr::new(&dev.token_seq, 0),
            block_tables: DevPtr::new(&dev.block_tables, 0),
            bt_offsets: DevPtr::new(&dev.bt_offsets, 0),
            block_size: bs,
            max_context: 0,
            sinks: None,
            fp8: None,
        };
        let seqs = [FlashSeq { q_start: 0, q_len: len, first_pos: start, seq: 0, bt_len: tables[0].len() }];
        let time = |f: &dyn Fn(), iters: u32| {
            f();
            g.synchronize().expect("sync");
            let t0 = std::time::Instant::now();
            for _ in 0..iters {
                f();
            }
            g.synchronize().expect("sync");
            t0.elapsed().as_secs_f64() * 1e3 / iters as f64
        };
        let tp = time(&|| launch::paged_attention(&g, Dt::BF16, &fa).expect("paged"), 3);
        let paged = o_paged.copy_range(0, len * nh * hd * 2).expect("copy");
        let want =
            Tensor::from_devbuf(paged, &[len, nh * hd], DType::BF16).expect("tensor").to_cpu().expect("down");
        let flops = 4.0 * nh as f64 * hd as f64 * (len as f64) * (start as f64 + (len as f64 + 1.0) / 2.0);
        for v in flash::Variant::ALL.into_iter().filter(|&v| flash::fits(&g, v, hd)) {
            let o_flash = DevBuf::alloc(&g, len * nh * hd * 2).expect("out");
            let fv = AttnArgs { out: DevPtr::new(&o_flash, 0), ..fa };
            let args = FlashArgs { attn: &fv, seqs: &seqs, num_seqs: 1, cache_slots: slots };
            let tf = time(&|| flash::flash_prefill_with(&g, Dt::BF16, &args, v).expect("flash"), 20);
            let got = Tensor::from_devbuf(o_flash, &[len, nh * hd], DType::BF16).expect("tensor");
            let (e, r) = (rel(&got, &want), row_rel_max(&got, &want, hd));
            eprintln!(
                "FLASH_TIMING {} {v:?} ctx {start}+{len}: flash {tf:.3} ms ({:.0} TFLOP/s), paged {tp:.3} ms, x{:.1}; rel {e:.2e}, worst row {r:.2e}",
                g.name,
                flops / tf * 1e-9,
                tp / tf
            );
            assert!(
                e <= 1e-2 && r <= 3e-2,
                "flash {v:?} vs paged at ctx {start}+{len}: rel {e:e}, worst row {r:e}"
            );
        }
    }
}
