//! Every CUDA op against the CPU oracle on random inputs at several shapes, odd sizes included:
//! f32 relative error <= 1e-5, bf16 <= 1e-2, NaN never passes, and outputs are poisoned with NaN
//! before each run (TRTLLM_POISON=1) so an unwritten element fails. Skips without a GPU. The flash
//! prefill kernels have their own file, gpu_flash.rs.

mod gpu_common;

use gpu_common::{gpu, rand_t, rel, tol, up, DTS};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use trtllm_core::batch::{ForwardBatch, KvLayer, SeqStep};
use trtllm_core::config::Activation;
use trtllm_core::ops::{self, AttnParams, QkvParams};
use trtllm_core::{DType, Tensor};
use trtllm_kernels::DevBuf;

#[test]
fn matmul() {
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(1);
    for dt in DTS {
        // (GEMV: m <= 8; k = 1040 and 4096 run the 4-deep load pipeline with a ragged tail; x is
        // staged in shared memory when m * k fits 48 KB, else read from global: both paths here)
        for (m, k, n) in [
            (1, 64, 33),
            (3, 200, 300),
            (17, 64, 1),
            (64, 128, 96),
            (5, 8, 7),
            (1, 1040, 70),
            (8, 4096, 40),
            (2, 4104, 9),
            (1, 14336, 50),
        ] {
            let (x, xr) = up(&g, &rand_t(&mut rng, &[m, k], 1.0), dt);
            let (w, wr) = up(&g, &rand_t(&mut rng, &[n, k], 1.0), dt);
            let (b, br) = up(&g, &rand_t(&mut rng, &[n], 1.0), dt);
            let got = ops::linear(&x, &w, Some(&b)).expect("gpu linear");
            let want = ops::linear(&xr, &wr, Some(&br)).expect("cpu linear");
            let e = rel(&got, &want);
            assert!(e <= tol(dt), "linear {dt} m={m} k={k} n={n}: rel err {e:e}");
        }
    }
}

#[test]
fn matmul_gated_is_the_two_op_path() {
    // The fused gate_up GEMV + activation: bit-identical to GEMV then gated_act on the GPU, and
    // within tolerance of the CPU oracle; m <= 8 fused (x staged or read from global), m > 8 not.
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(11);
    for dt in DTS {
        for (m, k, i) in [(1, 64, 33), (3, 1040, 70), (8, 4096, 40), (1, 14336, 24), (12, 64, 9)] {
            for act in [Activation::Silu, Activation::GeluTanh] {
                let (x, xr) = up(&g, &rand_t(&mut rng, &[m, k], 1.0), dt);
                let (w, wr) = up(&g, &rand_t(&mut rng, &[2 * i, k], 1.0), dt);
                let got = ops::matmul_gated(&x, &w, act).expect("gpu matmul_gated");
                let two = ops::gated_activation(&ops::matmul_t(&x, &w).expect("mm"), act).expect("act");
                let (a, b) = (
                    got.to_cpu().expect("dl").to_f32_vec().expect("v"),
                    two.to_cpu().expect("dl").to_f32_vec().expect("v"),
                );
                assert!(
                    a == b,
                    "matmul_gated {dt} {act:?} m={m} k={k} i={i}: differs from the two-op GPU path"
                );
                let want = ops::matmul_gated(&xr, &wr, act).expect("cpu matmul_gated");
                let e = rel(&got, &want);
                assert!(e <= tol(dt), "matmul_gated {dt} {act:?} m={m} k={k} i={i}: rel err {e:e}");
            }
        }
    }
}

#[test]
fn elementwise_and_norms() {
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(2);
    for dt in DTS {
        // 16-byte norm kernels (d % 8 == 0 for bf16 / 4 for f32, up to 4 chunks per thread), scalar otherwise
        for (m, d) in [(1, 64), (7, 33), (20, 576), (3, 1000), (2, 4096), (1, 16384), (1, 20000)] {
            let (a, ar) = up(&g, &rand_t(&mut rng, &[m, d], 2.0), dt);
            let (b, br) = up(&g, &rand_t(&mut rng, &[m, d], 2.0), dt);
            let w = rand_t(&mut rng, &[d], 1.0);
            let bias = rand_t(&mut rng, &[d], 1.0);
            let (wg, biasg) = (w.to_gpu(&g).expect("up"), bias.to_gpu(&g).expect("up"));
            let (bb, bbr) = up(&g, &bias, dt);
            let t = tol(dt);
            let check = |name: &str, got: Tensor, want: Tensor| {
                let e = rel(&got, &want);
                assert!(e <= t, "{name} {dt} [{m},{d}]: rel err {e:e}");
            };
            check("add", ops::add(&a, &b).expect("gpu"), ops::add(&ar, &br).expect("cpu"));
            check("mul", ops::mul(&a, &b).expect("gpu"), ops::mul(&ar, &br).expect("cpu"));
            check("add_bias", ops::add_bias(&a, &bb).expect("gpu"), ops::add_bias(&ar, &bbr).expect("cpu"));
            check("softcap", ops::softcap(&a, 1.5).expect("gpu"), ops::softcap(&ar, 1.5).expect("cpu"));
            check("scale", ops::scale(&a, 0.37).expect("gpu"), ops::scale(&ar, 0.37).expect("cpu"));
            check(
                "rms_norm",
                ops::rms_norm(&a, &wg, 1e-6).expect("gpu"),
                ops::rms_norm(&ar, &w, 1e-6).expect("cpu"),
            );
            let (s, n) = ops::add_rms_norm(&a, &b, &wg, 1e-6).expect("gpu");
            let (sr, nr) = ops::add_rms_norm(&ar, &br, &w, 1e-6).expect("cpu");
            check("add_rms_norm.sum", s, sr);
            check("add_rms_norm.norm", n, nr);
            check(
                "layer_norm",
                ops::layer_norm(&a, &wg, Some(&biasg), 1e-5).expect("gpu"),
                ops::layer_norm(&ar, &w, Some(&bias), 1e-5).expect("cpu"),
            );
            for act in [Activation::Silu, Activation::Gelu, Activation::GeluTanh, Activation::Relu] {
                check(
                    "activation",
                    ops::activation(&a, act).expect("gpu"),
                    ops::activation(&ar, act).expect("cpu"),
                );
            }
            if d % 2 == 0 {
                check(
                    "gated",
                    ops::gated_activation(&a, Activation::Silu).expect("gpu"),
                    ops::gated_activation(&ar, Activation::Silu).expect("cpu"),
                );
            }
            if dt == DType::F32 {
                let c = ops::cast(&a, DType::BF16).expect("cast");
                check(
                    "cast",
                    ops::cast(&c, DType::F32).expect("cast"),
                    ar.to_dtype(DType::BF16).expect("r").to_dtype(DType::F32).expect("r"),
                );
            }
        }
    }
}

#[test]
fn all_heads_qk_norm() {
    // OLMo 2's full-width q/k RMSNorm: the sums of squares, then the scaling (v copied), with
    // counts larger than the widths (a tensor-parallel rank's share).
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(21);
    for dt in DTS {
        for (t, a, b, v, tp) in
            [(1, 64, 32, 32, 1), (5, 2048, 512, 512, 1), (3, 96, 24, 24, 2), (7, 33, 7, 5, 1)]
        {
            let (x, xr) = up(&g, &rand_t(&mut rng, &[t, a + b + v], 2.0), dt);
            let (wq, wk) = (rand_t(&mut rng, &[a], 1.0), rand_t(&mut rng, &[b], 1.0));
            let (wqg, wkg) = (wq.to_gpu(&g).expect("up"), wk.to_gpu(&g).expect("up"));
            let s = ops::qk_sum_sq(&x, a, b).expect("gpu");
            let sr = ops::qk_sum_sq(&xr, a, b).expect("cpu");
            let e = rel(&s, &sr);
            assert!(e <= 1e-5, "qk_sum_sq {dt} t={t} a={a} b={b}: rel err {e:e}");
            let counts = (a * tp, b * tp);
            let got = ops::qk_rms_apply(&x, &s, (&wqg, &wkg), counts, 1e-6).expect("gpu");
            let want = ops::qk_rms_apply(&xr, &sr, (&wq, &wk), counts, 1e-6).expect("cpu");
            let e = rel(&got, &want);
            assert!(e <= tol(dt), "qk_rms_apply {dt} t={t} a={a} b={b}: rel err {e:e}");
        }
    }
}

#[test]
fn gather_scatter_argmax() {
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(3);
    for dt in DTS {
        let (table, tr) = up(&g, &rand_t(&mut rng, &[50, 37], 1.0), dt);
        let ids = [3u32, 0, 49, 3, 17];
        let e = rel(
            &ops::embedding(&ids, &table, Some(2.5)).expect("gpu"),
            &ops::embedding(&ids, &tr, Some(2.5)).expect("cpu"),
        );
        assert!(e <= tol(dt), "embedding {dt}: {e:e}");
        assert!(ops::embedding(&[50], &table, None).is_err(), "out-of-range id must be an error");
        let rows = [4usize, 1, 1, 30];
        let e =
            rel(&ops::select_rows(&table, &rows).expect("gpu"), &ops::select_rows(&tr, &rows).expect("cpu"));
        assert!(e <= tol(dt), "select_rows {dt}: {e:e}");
        let (y, yr) = up(&g, &rand_t(&mut rng, &[3, 37], 1.0), dt);
        let (idx, w) = ([7usize, 0, 49], [0.25f32, 1.0, -0.5]);
        let e = rel(
            &ops::scatter_add_rows(&table, &y, &idx, &w).expect("gpu"),
            &ops::scatter_add_rows(&tr, &yr, &idx, &w).expect("cpu"),
        );
        assert!(e <= tol(dt), "scatter_add_rows {dt}: {e:e}");
        for (r, v) in [(1, 49152), (4, 1000), (3, 7), (2, 128256)] {
            let (l, lr) = up(&g, &rand_t(&mut rng, &[r, v], 5.0), dt);
            assert_eq!(
                ops::argmax_rows(&l).expect("gpu"),
                ops::argmax_rows(&lr).expect("cpu"),
                "argmax {dt} [{r},{v}]"
            );
        }
    }
}

/// Two sequences (one prefilling 11 tokens, one decoding at position 9) over shuffled blocks.
#[test]
fn qkv_attention() {
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(4);
    for dt in DTS {
        for (nh, nkv, hd, window, softcap, qk_norm, rot) in [
            (4, 2, 16, None, None, false, 8),
            (8, 1, 64, Some(5), Some(3.0), true, 32),
            (6, 6, 128, None, None, false, 32),
            (2, 1, 256, None, None, true, 64),
        ] {
            let bs = 4;
            let slots = 40 * bs;
            let tables: [Vec<u32>; 2] = [vec![7, 2, 30, 11], vec![5, 19, 3]];
            let mut steps_hist = vec![];
            let (mut kc, mut vc) = (vec![0f32; slots * nkv * hd], vec![0f32; slots * nkv * hd]);
            let kv_bytes = slots * nkv * hd * dt.size_in_bytes();
            let mut gk = KvLayer::Cuda {
                k: DevBuf::zeros(&g, kv_bytes).expect("kv"),
                v: DevBuf::zeros(&g, kv_bytes).expect("kv"),
                dtype: dt,
                fp8: None,
            };
            let mut ck = KvLayer::Cpu { k: std::mem::take(&mut kc), v: std::mem::take(&mut vc), fp8: None };
            let qn = rand_t(&mut rng, &[hd], 1.0).map_f32(|x| 1.0 + 0.3 * x).expect("w");
            let kn = rand_t(&mut rng, &[hd], 1.0).map_f32(|x| 1.0 + 0.3 * x).expect("w");
            let (qng, kng) = (qn.to_gpu(&g).expect("up"), kn.to_gpu(&g).expect("up"));
            let inv: Vec<f32> =
                (0..rot / 2).map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / rot as f32)).collect();
            let attn = AttnParams {
                num_heads: nh,
                num_kv_heads: nkv,
                head_dim: hd,
                scale: (hd as f32).powf(-0.5),
                window,
                softcap,
            };
            // Step 1: seq 0 prefills 11, seq 1 prefills 9. Step 2: seq 0 decodes 1, seq 1 prefills 3 more.
            for (s0, s1) in [((0usize, 11usize), (0usize, 9usize)), ((11, 1), (9, 3))] {
                let toks = [1u32; 16];
                let steps = [
                    SeqStep { tokens: &toks[..s0.1], start_pos: s0.0, block_table: &tables[0] },
                    SeqStep { tokens: &toks[..s1.1], start_pos: s1.0, block_table: &tables[1] },
                ];
                let batch = ForwardBatch::new(&steps, bs, true).expect("batch");
                let t = batch.num_tokens();
                let (qkv, qkvr) = up(&g, &rand_t(&mut rng, &[t, (nh + 2 * nkv) * hd], 1.0), dt);
                let (qkn_g, qkn_c) =
                    if qk_norm { (Some((&qng, &kng, 1e-6)), Some((&qn, &kn, 1e-6))) } else { (None, None) };
                let inv_dev = Tensor::from_f32(inv.clone(), &[inv.len()]).expect("t").to_gpu(&g).expect("up");
                let pg = QkvParams {
                    attn,
                    rope: Some((&inv, 1.0)),
                    rope_on_device: Some(&inv_dev),
                    qk_norm: qkn_g,
                    sinks: None,
                };
                let pc = QkvParams {
                    attn,
                    rope: Some((&inv, 1.0)),
                    rope_on_device: None,
                    qk_norm: qkn_c,
                    sinks: None,
                };
                let dev = batch.to_device(&g).expect("batch to device");
                let got = ops::qkv_attention(&qkv, &mut gk, &batch, Some(&dev), &pg).expect("gpu");
                let want = ops::qkv_attention(&qkvr, &mut ck, &batch, None, &pc).expect("cpu");
                let e = rel(&got, &want);
                assert!(
                    e <= tol(dt) * if dt == DType::BF16 { 2.0 } else { 1.0 },
                    "qkv_attention {dt} nh={nh} nkv={nkv} hd={hd}: {e:e}"
                );
                steps_hist.push(t);
            }
            assert_eq!(steps_hist, vec![20, 4]);
        }
    }
}
