//! The MoE pair ops on the GPU (`ops/moe.rs`: routing, the per-pair expert GEMV with biases, the
//! weighted combine) against their CPU oracles on random inputs, outputs NaN-poisoned. Routing:
//! expert ids identical, weights f32 relative error <= 1e-5, for every scoring rule, with and
//! without group-limited choice, correction bias and scaling, spaced logits and rows of exact ties
//! (the lower index wins); GEMV and combine: f32 <= 1e-5, bf16 <= 1e-2. The GEMV also runs on ids
//! `moe_route` wrote just before it, as in a model (a read before the programmatic-launch wait
//! would show). Skips without a GPU.

mod gpu_common;

use gpu_common::{gpu, rand_t, rel, tol, up, DTS};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use trtllm_core::config::{MoeOptions, MoeScoring};
use trtllm_core::ops::{self, Router};
use trtllm_core::Tensor;

/// Router logits `[t, e]` whose values in a row are distinct and spaced (a shuffled ramp), so no
/// near tie makes the CPU and the GPU pick differently through rounding.
fn logits(rng: &mut SmallRng, t: usize, e: usize) -> Tensor {
    let mut v = Vec::with_capacity(t * e);
    for _ in 0..t {
        let mut row: Vec<f32> = (0..e).map(|i| (i as f32 - e as f32 / 2.0) * (12.0 / e as f32)).collect();
        row.shuffle(rng);
        v.extend(row);
    }
    Tensor::from_f32(v, &[t, e]).expect("logits")
}

#[test]
fn moe_route_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(31);
    let sm = |scoring, groups, group_top2, scale| MoeOptions {
        scoring,
        groups,
        group_top2,
        routed_scaling: scale,
        ..Default::default()
    };
    // (options, experts, top-k, renormalize, correction bias)
    let cases = [
        (sm(MoeScoring::Softmax, None, false, None), 8, 2, true, false), // Mixtral
        (sm(MoeScoring::Softmax, None, false, None), 60, 4, false, false), // Qwen2-MoE
        (sm(MoeScoring::TopKSoftmax, None, false, None), 32, 4, false, false), // GPT-OSS
        (sm(MoeScoring::Softmax, Some((8, 3)), false, Some(16.0)), 160, 6, false, false), // DeepSeek-V2
        (sm(MoeScoring::Sigmoid, Some((8, 4)), true, Some(2.5)), 256, 8, true, true), // DeepSeek-V3
        (sm(MoeScoring::Sigmoid, None, false, None), 512, 32, true, true),
    ];
    for (opts, e, k, renormalize, corr) in cases {
        let router = Router { opts: &opts, top_k: k, renormalize };
        assert!(ops::moe_route_fits(&router, e));
        let bias = corr.then(|| {
            let mut b: Vec<f32> = (0..e).map(|i| i as f32 * 0.0137).collect();
            b.shuffle(&mut rng);
            Tensor::from_f32(b, &[e]).expect("bias")
        });
        let bias_g = bias.as_ref().map(|b| b.to_gpu(&g).expect("up"));
        for t in [1, 7, 64, 300] {
            let mut l = logits(&mut rng, t, e);
            if t == 7 {
                l = with_ties(&l, e);
            }
            let (ids_c, w_c) = ops::moe_route(&l, &router, bias.as_ref()).expect("cpu");
            let (ids_g, w_g) =
                ops::moe_route(&l.to_gpu(&g).expect("up"), &router, bias_g.as_ref()).expect("gpu");
            let what = format!("{:?} e={e} k={k} t={t}", opts.scoring);
            assert_eq!(
                ids_g.to_cpu().expect("down").i32s().expect("i32"),
                ids_c.i32s().expect("i32"),
                "{what}: ids"
            );
            let err = rel(&w_g, &w_c);
            assert!(err <= 1e-5, "{what}: weights {err:e}");
        }
        println!("moe_route {:?} groups {:?} e={e} k={k}: ids equal, weights ok", opts.scoring, opts.groups);
    }
}

/// `l` with exact ties: values rounded to a 1.5-wide grid, so several experts of a row share a
/// value and the lower-index rule decides (exact ties stay ties on both sides).
fn with_ties(l: &Tensor, e: usize) -> Tensor {
    let v: Vec<f32> = l.f32s().expect("f32").iter().map(|x| (x / 1.5).round() * 1.5).collect();
    let t = v.len() / e;
    Tensor::from_f32(v, &[t, e]).expect("ties")
}

/// `t` tokens' random picks: `k` distinct experts each (as routing gives), flattened.
fn picks(rng: &mut SmallRng, t: usize, e: usize, k: usize) -> Tensor {
    let mut v = Vec::with_capacity(t * k);
    for _ in 0..t {
        let mut all: Vec<i32> = (0..e as i32).collect();
        all.shuffle(rng);
        v.extend(&all[..k]);
    }
    Tensor::from_i32(v, &[t * k]).expect("ids")
}

#[test]
fn moe_gemv_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(32);
    // (experts, n, k, tokens, top-k, bias): one token; 13 pairs per expert (a chunk of 8, then
    // 5); the 256-pair limit with 64 pairs per expert; experts without any pair.
    let cases = [
        (8, 64, 128, 1, 2, false),
        (2, 48, 256, 13, 2, true),
        (4, 40, 64, 64, 4, true),
        (16, 96, 256, 7, 4, true),
        (32, 24, 512, 5, 8, false),
        (8, 200, 1024, 3, 2, true),
    ];
    for dt in DTS {
        for (e, n, k, t, topk, with_bias) in cases {
            let pairs = t * topk;
            let ids = picks(&mut rng, t, e, topk);
            let ids_g = ids.to_gpu(&g).expect("up");
            let (w, wr) = up(&g, &rand_t(&mut rng, &[e, n, k], 0.5), dt);
            let b = with_bias.then(|| up(&g, &rand_t(&mut rng, &[e, n], 1.0), dt));
            // The first GEMV (every pick of a token reads its row), then one row per pair.
            for (rows, xdiv) in [(t, topk), (pairs, 1)] {
                let (x, xr) = up(&g, &rand_t(&mut rng, &[rows, k], 1.0), dt);
                let got = ops::moe_gemv(&x, &w, b.as_ref().map(|b| &b.0), &ids_g, xdiv).expect("gpu");
                let want = ops::moe_gemv(&xr, &wr, b.as_ref().map(|b| &b.1), &ids, xdiv).expect("cpu");
                let err = rel(&got, &want);
                assert!(err <= tol(dt), "moe_gemv {dt} e={e} n={n} k={k} pairs={pairs} xdiv={xdiv}: {err:e}");
            }
        }
        // The chain a model runs: ids from `moe_route` on the device straight into the GEMV.
        let opts = MoeOptions::default();
        for (e, n, k, t, topk) in [(8, 64, 128, 5, 2), (64, 96, 256, 16, 8)] {
            let router = Router { opts: &opts, top_k: topk, renormalize: true };
            let l = logits(&mut rng, t, e);
            let (ids, _) = ops::moe_route(&l, &router, None).expect("cpu route");
            let (ids_g, _) = ops::moe_route(&l.to_gpu(&g).expect("up"), &router, None).expect("gpu route");
            let (ids, ids_g) =
                (ids.reshape(&[t * topk]).expect("ids"), ids_g.reshape(&[t * topk]).expect("ids"));
            let (w, wr) = up(&g, &rand_t(&mut rng, &[e, n, k], 0.5), dt);
            let (x, xr) = up(&g, &rand_t(&mut rng, &[t, k], 1.0), dt);
            let got = ops::moe_gemv(&x, &w, None, &ids_g, topk).expect("gpu");
            let want = ops::moe_gemv(&xr, &wr, None, &ids, topk).expect("cpu");
            let err = rel(&got, &want);
            assert!(err <= tol(dt), "route -> moe_gemv {dt} e={e} t={t} top-{topk}: {err:e}");
        }
        println!("moe_gemv {dt}: {} shapes + 2 routed chains ok", cases.len());
    }
}

#[test]
fn moe_combine_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(33);
    for dt in DTS {
        for (t, k, d) in [(1, 1, 64), (9, 4, 1000), (33, 8, 2048)] {
            let (y, yr) = up(&g, &rand_t(&mut rng, &[t * k, d], 1.0), dt);
            let w = rand_t(&mut rng, &[t, k], 1.0);
            let wg = w.to_gpu(&g).expect("up");
            let (sh, shr) = up(&g, &rand_t(&mut rng, &[t, d], 1.0), dt);
            let z: Vec<f32> = (0..t).map(|_| rng.random::<f32>() * 6.0 - 3.0).collect();
            let z = Tensor::from_f32(z, &[t, 1]).expect("z");
            let zg = z.to_gpu(&g).expect("up");
            for (shared, gate) in [(false, false), (true, false), (true, true)] {
                let got = ops::moe_combine(&y, &wg, shared.then_some(&sh), gate.then_some(&zg)).expect("gpu");
                let want =
                    ops::moe_combine(&yr, &w, shared.then_some(&shr), gate.then_some(&z)).expect("cpu");
                let err = rel(&got, &want);
                assert!(
                    err <= tol(dt),
                    "moe_combine {dt} t={t} k={k} d={d} shared={shared} gate={gate}: {err:e}"
                );
            }
        }
        println!("moe_combine {dt}: ok");
    }
}
