//! Every functional op of `trtllm_core::ops` against a naive f64 reference written here, on
//! seeded random ~N(0, 1) inputs at several shapes, odd sizes included.
//!
//! Tolerance: `||out - ref|| / ||ref|| <= 1e-5`. For bf16/f16 weights the reference is computed on
//! the *rounded* weights (the op must be exact up to f32 accumulation), and separately the
//! result must stay within 1e-2 (bf16) / 1e-3 (f16) of the reference on the unrounded weights
//! (checked where there are at least 32 outputs, so one cancelling dot product cannot dominate).

use half::{bf16, f16};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use trtllm_core::batch::{ForwardBatch, SeqStep};
use trtllm_core::config::Activation;
use trtllm_core::ops;
use trtllm_core::{DType, Tensor};

const TOL: f64 = 1e-5;

// ---------------------------------------------------------------------------------------------
// helpers

fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

/// ~N(0, 1) by Box-Muller; never exactly zero.
fn randn(r: &mut SmallRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| loop {
            let u1: f64 = r.random::<f64>().max(1e-12);
            let u2: f64 = r.random::<f64>();
            let v = ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32;
            if v != 0.0 {
                break v;
            }
        })
        .collect()
}

fn f32t(v: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_f32(v, shape).expect("tensor")
}

fn out_f32(t: &Tensor) -> Vec<f32> {
    t.f32s().expect("ops return f32").to_vec()
}

/// `||out - ref|| / ||ref||`, asserting the output is finite and has the reference's length.
fn rel_err(what: &str, out: &[f32], reference: &[f64]) -> f64 {
    assert_eq!(out.len(), reference.len(), "{what}: length");
    assert!(out.iter().all(|x| x.is_finite()), "{what}: non-finite output");
    assert!(reference.iter().all(|x| x.is_finite()), "{what}: non-finite reference");
    let num: f64 = out.iter().zip(reference).map(|(a, b)| (*a as f64 - b).powi(2)).sum();
    let den: f64 = reference.iter().map(|b| b * b).sum();
    assert!(den > 0.0, "{what}: all-zero reference (bad test input)");
    (num / den).sqrt()
}

fn check(what: &str, out: &[f32], reference: &[f64], tol: f64) {
    let e = rel_err(what, out, reference);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Naive `x @ w^T (+ b)` in f64: x `[m, k]`, w `[n, k]`.
fn ref_linear(x: &[f64], m: usize, k: usize, w: &[f64], n: usize, b: Option<&[f64]>) -> Vec<f64> {
    let mut y = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f64;
            for l in 0..k {
                s += x[i * k + l] * w[j * k + l];
            }
            y[i * n + j] = s + b.map_or(0.0, |b| b[j]);
        }
    }
    y
}

/// A weight tensor of `dtype` from f32 values, and the values it actually holds (rounded).
fn weight(v: &[f32], shape: &[usize], dtype: DType) -> (Tensor, Vec<f64>) {
    match dtype {
        DType::F32 => (f32t(v.to_vec(), shape), to64(v)),
        DType::BF16 => {
            let h: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
            let r = h.iter().map(|x| x.to_f32() as f64).collect();
            (Tensor::from_bf16(h, shape).expect("bf16"), r)
        }
        DType::F16 => {
            let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            let r = h.iter().map(|x| x.to_f32() as f64).collect();
            (Tensor::from_f16(h, shape).expect("f16"), r)
        }
        DType::I32 | DType::F8E4M3 | DType::Ggml => unreachable!(),
    }
}

// ---------------------------------------------------------------------------------------------
// matmul_t / linear / add_bias

const MS: [usize; 7] = [1, 2, 3, 4, 5, 9, 33]; // <= 4: GEMV path, > 4: GEMM path
const KS: [usize; 5] = [1, 7, 16, 33, 129];
const NS: [usize; 6] = [1, 5, 64, 65, 257, 300]; // across the 64-row and 256-column blocks

fn matmul_case(dtype: DType, seed: u64) {
    let mut r = rng(seed);
    for &m in &MS {
        for &k in &KS {
            for &n in &NS {
                let xv = randn(&mut r, m * k);
                let wv = randn(&mut r, n * k);
                let x = f32t(xv.clone(), &[m, k]);
                let (w, w_rounded) = weight(&wv, &[n, k], dtype);
                let what = format!("matmul_t {dtype:?} m={m} k={k} n={n}");
                let y = ops::matmul_t(&x, &w).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(y.shape(), [m, n], "{what}");
                assert_eq!(y.dtype(), DType::F32, "{what}");
                let y = out_f32(&y);
                check(&what, &y, &ref_linear(&to64(&xv), m, k, &w_rounded, n, None), TOL);
                if dtype != DType::F32 && m * n >= 32 {
                    // Against the unrounded weights: only the storage rounding remains (over
                    // enough outputs that one cancelling dot product cannot dominate the norm).
                    let tol = if dtype == DType::BF16 { 1e-2 } else { 1e-3 };
                    check(
                        &format!("{what} vs unrounded"),
                        &y,
                        &ref_linear(&to64(&xv), m, k, &to64(&wv), n, None),
                        tol,
                    );
                }
            }
        }
    }
}

#[test]
fn matmul_t_f32_weights() {
    matmul_case(DType::F32, 1);
}

#[test]
fn matmul_t_bf16_weights() {
    matmul_case(DType::BF16, 2);
}

#[test]
fn matmul_t_f16_weights() {
    matmul_case(DType::F16, 3);
}

#[test]
fn matmul_t_gemv_and_gemm_paths_agree() {
    // The same rows through the GEMV path (one at a time) and the GEMM path (all at once).
    let mut r = rng(4);
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for &(m, k, n) in &[(5, 33, 300), (8, 129, 65), (17, 7, 257), (70, 129, 300)] {
            let xv = randn(&mut r, m * k);
            let (w, _) = weight(&randn(&mut r, n * k), &[n, k], dtype);
            let all = out_f32(&ops::matmul_t(&f32t(xv.clone(), &[m, k]), &w).expect("gemm"));
            for i in 0..m {
                let row = out_f32(
                    &ops::matmul_t(&f32t(xv[i * k..(i + 1) * k].to_vec(), &[1, k]), &w).expect("gemv"),
                );
                check(&format!("{dtype:?} row {i} gemv vs gemm"), &row, &to64(&all[i * n..(i + 1) * n]), TOL);
            }
        }
    }
}

#[test]
fn linear_with_bias_all_dtypes() {
    let mut r = rng(5);
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for &m in &[1, 4, 5, 12] {
            for &(k, n) in &[(1, 1), (7, 5), (33, 65), (129, 300)] {
                let xv = randn(&mut r, m * k);
                let wv = randn(&mut r, n * k);
                let bv = randn(&mut r, n);
                let (w, wr) = weight(&wv, &[n, k], dtype);
                let (b, br) = weight(&bv, &[n], dtype);
                let what = format!("linear {dtype:?} m={m} k={k} n={n}");
                let y = ops::linear(&f32t(xv.clone(), &[m, k]), &w, Some(&b))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                check(&what, &out_f32(&y), &ref_linear(&to64(&xv), m, k, &wr, n, Some(&br)), TOL);
                let y0 = ops::linear(&f32t(xv.clone(), &[m, k]), &w, None).expect("no bias");
                check(
                    &format!("{what} no bias"),
                    &out_f32(&y0),
                    &ref_linear(&to64(&xv), m, k, &wr, n, None),
                    TOL,
                );
            }
        }
    }
}

#[test]
fn matmul_t_shape_and_dtype_errors() {
    let x = f32t(vec![1.0; 6], &[2, 3]);
    assert!(ops::matmul_t(&x, &f32t(vec![1.0; 8], &[2, 4])).is_err(), "k mismatch");
    assert!(ops::matmul_t(&x, &f32t(vec![1.0; 3], &[3])).is_err(), "rank-1 weight");
    assert!(ops::matmul_t(&f32t(vec![1.0; 3], &[3]), &x).is_err(), "rank-1 input");
    let wi = Tensor::from_i32(vec![1; 6], &[2, 3]).expect("i32");
    assert!(ops::matmul_t(&x, &wi).is_err(), "i32 weight");
    let xb = Tensor::from_bf16(vec![bf16::ONE; 6], &[2, 3]).expect("bf16");
    assert!(ops::matmul_t(&xb, &x).is_err(), "bf16 activations are not accepted");
}

#[test]
fn add_bias_reference() {
    let mut r = rng(6);
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for &(m, n) in &[(1, 1), (3, 7), (5, 65), (2, 300)] {
            let xv = randn(&mut r, m * n);
            let (b, br) = weight(&randn(&mut r, n), &[n], dtype);
            let y = ops::add_bias(&f32t(xv.clone(), &[m, n]), &b).expect("add_bias");
            let reference: Vec<f64> = (0..m * n).map(|i| xv[i] as f64 + br[i % n]).collect();
            check(&format!("add_bias {dtype:?} {m}x{n}"), &out_f32(&y), &reference, TOL);
        }
    }
    let x = f32t(vec![1.0; 6], &[2, 3]);
    assert!(ops::add_bias(&x, &f32t(vec![1.0; 2], &[2])).is_err());
    assert!(ops::add_bias(&x, &f32t(vec![1.0; 6], &[2, 3])).is_err());
}

#[test]
fn elementwise_add_scale_softcap() {
    let mut r = rng(7);
    for &(m, n) in &[(1, 1), (3, 7), (5, 65)] {
        let (av, bv) = (randn(&mut r, m * n), randn(&mut r, m * n));
        let (a, b) = (f32t(av.clone(), &[m, n]), f32t(bv.clone(), &[m, n]));
        let s = ops::add(&a, &b).expect("add");
        check(
            "add",
            &out_f32(&s),
            &av.iter().zip(&bv).map(|(x, y)| *x as f64 + *y as f64).collect::<Vec<_>>(),
            TOL,
        );
        let sc = ops::scale(&a, 0.37).expect("scale");
        check(
            "scale",
            &out_f32(&sc),
            &av.iter().map(|x| *x as f64 * 0.37f32 as f64).collect::<Vec<_>>(),
            TOL,
        );
        let big: Vec<f32> = av.iter().map(|x| x * 40.0).collect();
        let cap = ops::softcap(&f32t(big.clone(), &[m, n]), 30.0).expect("softcap");
        let reference: Vec<f64> = big.iter().map(|&x| (x as f64 / 30.0).tanh() * 30.0).collect();
        check("softcap", &out_f32(&cap), &reference, TOL);
        assert!(out_f32(&cap).iter().all(|v| v.abs() <= 30.0));
    }
    assert!(ops::add(&f32t(vec![1.0; 6], &[2, 3]), &f32t(vec![1.0; 6], &[3, 2])).is_err());
}

// ---------------------------------------------------------------------------------------------
// norms

const DS: [usize; 6] = [1, 2, 7, 33, 129, 300];

fn ref_rms(x: &[f64], w: &[f64], d: usize, eps: f64) -> Vec<f64> {
    let mut out = vec![0f64; x.len()];
    for (xr, or) in x.chunks(d).zip(out.chunks_mut(d)) {
        let ms = xr.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let r = 1.0 / (ms + eps).sqrt();
        for i in 0..d {
            or[i] = w[i] * xr[i] * r;
        }
    }
    out
}

#[test]
fn rms_norm_reference() {
    let mut r = rng(8);
    for &d in &DS {
        for &m in &[1, 3, 8] {
            for &eps in &[1e-6, 1e-5] {
                let xv = randn(&mut r, m * d);
                let wv = randn(&mut r, d);
                let y = ops::rms_norm(&f32t(xv.clone(), &[m, d]), &f32t(wv.clone(), &[d]), eps)
                    .expect("rms_norm");
                assert_eq!(y.shape(), [m, d]);
                check(
                    &format!("rms_norm m={m} d={d}"),
                    &out_f32(&y),
                    &ref_rms(&to64(&xv), &to64(&wv), d, eps),
                    TOL,
                );
            }
        }
    }
    assert!(ops::rms_norm(&f32t(vec![1.0; 6], &[2, 3]), &f32t(vec![1.0; 2], &[2]), 1e-6).is_err());
}

#[test]
fn add_rms_norm_reference() {
    let mut r = rng(9);
    for &d in &DS {
        for &m in &[1, 5] {
            let (xv, rv, wv) = (randn(&mut r, m * d), randn(&mut r, m * d), randn(&mut r, d));
            let (sum, normed) = ops::add_rms_norm(
                &f32t(xv.clone(), &[m, d]),
                &f32t(rv.clone(), &[m, d]),
                &f32t(wv.clone(), &[d]),
                1e-6,
            )
            .expect("add_rms_norm");
            let s64: Vec<f64> = xv.iter().zip(&rv).map(|(a, b)| *a as f64 + *b as f64).collect();
            check(&format!("add_rms_norm sum d={d}"), &out_f32(&sum), &s64, TOL);
            check(
                &format!("add_rms_norm normed d={d}"),
                &out_f32(&normed),
                &ref_rms(&s64, &to64(&wv), d, 1e-6),
                TOL,
            );
        }
    }
    let w = f32t(vec![1.0; 3], &[3]);
    assert!(ops::add_rms_norm(&f32t(vec![1.0; 6], &[2, 3]), &f32t(vec![1.0; 6], &[3, 2]), &w, 1e-6).is_err());
}

#[test]
fn layer_norm_reference() {
    let mut r = rng(10);
    for &d in &DS {
        for &m in &[1, 4] {
            for with_bias in [true, false] {
                if d == 1 && !with_bias {
                    continue; // the output is exactly 0: nothing to compare relatively
                }
                // An offset mean, so the centring matters.
                let xv: Vec<f32> = randn(&mut r, m * d).iter().map(|v| v * 2.0 + 3.0).collect();
                let (wv, bv) = (randn(&mut r, d), randn(&mut r, d));
                let b = f32t(bv.clone(), &[d]);
                let y = ops::layer_norm(
                    &f32t(xv.clone(), &[m, d]),
                    &f32t(wv.clone(), &[d]),
                    with_bias.then_some(&b),
                    1e-5,
                )
                .expect("layer_norm");
                let mut reference = vec![0f64; m * d];
                for (xr, or) in xv.chunks(d).zip(reference.chunks_mut(d)) {
                    let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                    let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
                    for i in 0..d {
                        or[i] = (xr[i] as f64 - mean) / (var + 1e-5).sqrt() * wv[i] as f64
                            + if with_bias { bv[i] as f64 } else { 0.0 };
                    }
                }
                check(&format!("layer_norm m={m} d={d} bias={with_bias}"), &out_f32(&y), &reference, TOL);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// activations

/// erf in f64: Taylor series (|z| <= 4, ample precision in f64), +-1 beyond (erfc(4) ~ 1.5e-8).
fn erf(z: f64) -> f64 {
    if z.abs() > 4.0 {
        return z.signum();
    }
    let (mut term, mut sum) = (z, z);
    for n in 1..200 {
        term *= -z * z / n as f64;
        let t = term / (2 * n + 1) as f64;
        sum += t;
        if t.abs() < 1e-17 * sum.abs() {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

fn ref_act(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        Activation::GeluTanh => {
            0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        }
        Activation::Relu => x.max(0.0),
    }
}

const ACTS: [Activation; 4] = [Activation::Silu, Activation::Gelu, Activation::GeluTanh, Activation::Relu];

#[test]
fn erf_helper_is_right() {
    // Known values (Abramowitz & Stegun), so the GELU reference itself is trustworthy.
    for (z, want) in [
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (-3.0, -0.999_977_909_503_001_4),
    ] {
        assert!((erf(z) - want).abs() < 1e-12, "erf({z}) = {} != {want}", erf(z));
    }
}

#[test]
fn activation_reference() {
    let mut r = rng(11);
    for act in ACTS {
        for &(m, n) in &[(1, 1), (3, 7), (4, 129), (2, 300)] {
            // ~N(0, 3): reaches the saturated tails of silu/gelu too.
            let xv: Vec<f32> = randn(&mut r, m * n).iter().map(|v| v * 3.0).collect();
            let xv = if act == Activation::Relu && xv.iter().all(|&v| v < 0.0) {
                xv.iter().map(|v| -v).collect()
            } else {
                xv
            };
            let y = ops::activation(&f32t(xv.clone(), &[m, n]), act).expect("activation");
            assert_eq!(y.shape(), [m, n]);
            let reference: Vec<f64> = xv.iter().map(|&v| ref_act(act, v as f64)).collect();
            check(&format!("activation {act:?} {m}x{n}"), &out_f32(&y), &reference, TOL);
        }
    }
}

#[test]
fn gated_activation_reference() {
    let mut r = rng(12);
    for act in ACTS {
        for &(m, i) in &[(1, 1), (3, 7), (5, 33), (2, 300)] {
            let xv: Vec<f32> = randn(&mut r, m * 2 * i).iter().map(|v| v * 2.0).collect();
            let y = ops::gated_activation(&f32t(xv.clone(), &[m, 2 * i]), act).expect("gated_activation");
            assert_eq!(y.shape(), [m, i]);
            let mut reference = vec![];
            for row in xv.chunks(2 * i) {
                for j in 0..i {
                    reference.push(ref_act(act, row[j] as f64) * row[i + j] as f64);
                }
            }
            if reference.iter().all(|&v| v == 0.0) {
                continue; // relu of an all-negative gate (tiny shapes)
            }
            check(&format!("gated_activation {act:?} m={m} i={i}"), &out_f32(&y), &reference, TOL);
        }
    }
    assert!(ops::gated_activation(&f32t(vec![1.0; 6], &[2, 3]), Activation::Silu).is_err(), "odd width");
}

// ---------------------------------------------------------------------------------------------
// RoPE

/// HF's inv_freq: `1 / theta^(2i / rotary_dim)`, kept in f32.
fn inv_freq(theta: f64, rotary_dim: usize) -> Vec<f32> {
    (0..rotary_dim / 2).map(|i| (1.0 / theta.powf((2 * i) as f64 / rotary_dim as f64)) as f32).collect()
}

/// HF's `apply_rotary_pos_emb` literally: `emb = cat(freqs, freqs)`, `q_rot * cos + rotate_half(q_rot) * sin`
/// on the first `rotary_dim` dims, the rest passed through. The angle is `pos * inv_freq` in
/// f32 (HF's f32 matmul); everything after it in f64.
fn ref_rope(
    x: &[f32],
    heads: usize,
    head_dim: usize,
    rotary_dim: usize,
    positions: &[usize],
    inv: &[f32],
    scaling: f64,
) -> Vec<f64> {
    let half = rotary_dim / 2;
    let mut out = Vec::with_capacity(x.len());
    for (ti, &p) in positions.iter().enumerate() {
        let freqs: Vec<f64> = inv.iter().map(|&f| (p as f32 * f) as f64).collect();
        let emb: Vec<f64> = freqs.iter().chain(freqs.iter()).copied().collect();
        for h in 0..heads {
            let head = &x[(ti * heads + h) * head_dim..(ti * heads + h + 1) * head_dim];
            let rot: Vec<f64> = head[..rotary_dim].iter().map(|&v| v as f64).collect();
            let rotate_half: Vec<f64> =
                rot[half..].iter().map(|v| -v).chain(rot[..half].iter().copied()).collect();
            for i in 0..rotary_dim {
                out.push(rot[i] * emb[i].cos() * scaling + rotate_half[i] * emb[i].sin() * scaling);
            }
            out.extend(head[rotary_dim..].iter().map(|&v| v as f64));
        }
    }
    out
}

#[test]
fn rope_tables_reference() {
    let inv = inv_freq(10000.0, 64);
    let positions = [0, 1, 2, 17, 255, 4095, 100_000];
    for scaling in [1.0f32, 1.2] {
        let (cos, sin) = ops::rope_tables(&positions, &inv, scaling);
        assert_eq!(cos.len(), positions.len() * 32);
        let mut rc = vec![];
        let mut rs = vec![];
        for &p in &positions {
            for &f in &inv {
                let a = (p as f32 * f) as f64;
                rc.push(a.cos() * scaling as f64);
                rs.push(a.sin() * scaling as f64);
            }
        }
        check("rope cos table", &cos, &rc, 1e-6);
        check("rope sin table", &sin, &rs, 1e-6);
    }
}

#[test]
fn apply_rope_reference_full_and_partial() {
    let mut r = rng(13);
    // (heads, head_dim, rotary_dim): full rotary, partial (Phi-2 style 0.4, GPT-NeoX 0.25, 0.5), tiny.
    let cases =
        [(1, 2, 2), (2, 8, 8), (3, 64, 64), (2, 80, 32), (4, 32, 8), (1, 16, 8), (3, 6, 2), (2, 128, 64)];
    for (ci, &(heads, head_dim, rotary_dim)) in cases.iter().enumerate() {
        for &(theta, scaling) in &[(10000.0, 1.0f32), (500_000.0, 1.2)] {
            for positions in [vec![0usize], vec![3, 4, 5, 6, 7], vec![9, 1, 1000, 2, 33, 4097, 17]] {
                let t = positions.len();
                let xv = randn(&mut r, t * heads * head_dim);
                let inv = inv_freq(theta, rotary_dim);
                let (cos, sin) = ops::rope_tables(&positions, &inv, scaling);
                let mut x = xv.clone();
                ops::apply_rope(&mut x, heads, head_dim, &cos, &sin).expect("apply_rope");
                let reference = ref_rope(&xv, heads, head_dim, rotary_dim, &positions, &inv, scaling as f64);
                let what =
                    format!("rope case {ci} h={heads} hd={head_dim} rd={rotary_dim} theta={theta} t={t}");
                check(&what, &x, &reference, TOL);
                // Pass-through dims are untouched bit for bit.
                for row in 0..t * heads {
                    let (a, b) = (
                        &x[row * head_dim + rotary_dim..(row + 1) * head_dim],
                        &xv[row * head_dim + rotary_dim..(row + 1) * head_dim],
                    );
                    assert_eq!(a, b, "{what}: pass-through dims changed");
                }
            }
        }
    }
}

#[test]
fn apply_rope_rejects_bad_shapes() {
    let inv = inv_freq(10000.0, 8);
    let (cos, sin) = ops::rope_tables(&[0, 1], &inv, 1.0);
    let mut x = vec![0.5f32; 2 * 8];
    assert!(ops::apply_rope(&mut x, 1, 8, &cos, &sin).is_ok());
    let mut x = vec![0.5f32; 3 * 8];
    assert!(ops::apply_rope(&mut x, 1, 8, &cos, &sin).is_err(), "tables for 2 rows, 3 rows of x");
    let mut x = vec![0.5f32; 2 * 4];
    assert!(ops::apply_rope(&mut x, 1, 4, &cos, &sin).is_err(), "rotary dim 8 > head_dim 4");
    let mut x = vec![0.5f32; 7];
    assert!(ops::apply_rope(&mut x, 1, 8, &cos, &sin).is_err(), "not a whole number of rows");
}

// ---------------------------------------------------------------------------------------------
// embedding

#[test]
fn embedding_reference() {
    let mut r = rng(14);
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for &(vocab, d) in &[(1, 1), (5, 7), (33, 16), (300, 65)] {
            let (table, tr) = weight(&randn(&mut r, vocab * d), &[vocab, d], dtype);
            let ids: Vec<u32> =
                (0..9).map(|_| r.random_range(0..vocab as u32)).chain([0, vocab as u32 - 1]).collect();
            for mult in [None, Some((d as f32).sqrt())] {
                let y = ops::embedding(&ids, &table, mult).expect("embedding");
                assert_eq!(y.shape(), [ids.len(), d]);
                let mut reference = vec![];
                for &id in &ids {
                    reference.extend(
                        tr[id as usize * d..(id as usize + 1) * d]
                            .iter()
                            .map(|v| v * mult.map_or(1.0, |m| m as f64)),
                    );
                }
                check(
                    &format!("embedding {dtype:?} vocab={vocab} d={d} mult={mult:?}"),
                    &out_f32(&y),
                    &reference,
                    TOL,
                );
            }
        }
    }
}

#[test]
fn embedding_out_of_range_is_an_error() {
    let table = f32t(randn(&mut rng(15), 10 * 4), &[10, 4]);
    for bad in [10u32, 11, u32::MAX] {
        let e = ops::embedding(&[0, bad, 1], &table, None).expect_err("out-of-range id");
        let msg = e.to_string();
        assert!(
            msg.contains(&bad.to_string()) && msg.contains("10"),
            "message names the id and the vocabulary: {msg}"
        );
    }
    assert_eq!(ops::embedding(&[], &table, None).expect("no ids").shape(), [0, 4]);
    assert!(ops::embedding(&[0], &f32t(vec![1.0; 4], &[4]), None).is_err(), "rank-1 table");
}

// ---------------------------------------------------------------------------------------------
// softmax / log_softmax / argmax

#[test]
fn softmax_log_softmax_argmax_reference() {
    let mut r = rng(16);
    for &n in &[1, 2, 7, 33, 300, 4096] {
        for &spread in &[1.0f32, 30.0, 1000.0] {
            let xv: Vec<f32> = randn(&mut r, n).iter().map(|v| v * spread + 5.0).collect();
            let max = xv.iter().map(|&v| v as f64).fold(f64::NEG_INFINITY, f64::max);
            let lse = xv.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
            let what = format!("n={n} spread={spread}");

            let mut s = xv.clone();
            ops::softmax_inplace(&mut s);
            let sref: Vec<f64> = xv.iter().map(|&v| (v as f64 - lse).exp()).collect();
            check(&format!("softmax {what}"), &s, &sref, TOL);
            assert!(
                (s.iter().map(|&v| v as f64).sum::<f64>() - 1.0).abs() < 1e-5,
                "softmax {what}: sums to 1"
            );

            let ls = ops::log_softmax(&xv);
            let lref: Vec<f64> = xv.iter().map(|&v| v as f64 - lse).collect();
            if n > 1 {
                check(&format!("log_softmax {what}"), &ls, &lref, TOL);
            } else {
                assert_eq!(ls, [0.0], "log_softmax of one element");
            }

            let am = ops::argmax(&xv);
            let want = (0..n).fold(0, |b, i| if xv[i] > xv[b] { i } else { b });
            assert_eq!(am, want, "argmax {what}");
        }
    }
    // Ties: the first index, as torch.argmax.
    assert_eq!(ops::argmax(&[1.0, 3.0, -2.0, 3.0, 3.0]), 1);
    assert_eq!(ops::argmax(&[-1.0, -1.0]), 0);
    assert_eq!(ops::argmax(&[f32::NEG_INFINITY, -1e30]), 1);
}

// ---------------------------------------------------------------------------------------------
// paged attention + write_kv

#[derive(Clone, Copy, Debug)]
struct AttnCase {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    window: Option<usize>,
    softcap: Option<f32>,
}

/// Per-sequence history of k and v rows (f32 as written, widened to f64 on use).
struct Seq {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    blocks: Vec<u32>,
}

/// Naive causal attention of one query row of sequence `s` at position `pos`.
fn ref_attention_row(q: &[f32], s: &Seq, pos: usize, c: &AttnCase, scale: f64) -> Vec<f64> {
    let hd = c.head_dim;
    let group = c.heads / c.kv_heads;
    let lo = c.window.map_or(0, |w| (pos + 1).saturating_sub(w));
    let mut out = vec![0f64; c.heads * hd];
    for h in 0..c.heads {
        let kh = h / group;
        let qh = &q[h * hd..(h + 1) * hd];
        let scores: Vec<f64> = (lo..=pos)
            .map(|j| {
                let k = &s.k[j][kh * hd..(kh + 1) * hd];
                let d: f64 = qh.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * scale;
                match c.softcap {
                    Some(cap) => (d / cap as f64).tanh() * cap as f64,
                    None => d,
                }
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
        let z: f64 = e.iter().sum();
        for (idx, j) in (lo..=pos).enumerate() {
            let v = &s.v[j][kh * hd..(kh + 1) * hd];
            for i in 0..hd {
                out[h * hd + i] += e[idx] / z * v[i] as f64;
            }
        }
    }
    out
}

/// Two sequences with shuffled, non-contiguous block tables (block size 4), run over three
/// steps: a prefill of both, a mixed step (sequence 0 decodes one token while sequence 1
/// prefills a chunk), then both decode. Every step writes K/V, runs paged attention, and is
/// checked against the naive reference over each sequence's whole history.
fn paged_attention_case(c: AttnCase, seed: u64) {
    const BS: usize = 4;
    const NUM_BLOCKS: usize = 16;
    let mut r = rng(seed);
    let kvw = c.kv_heads * c.head_dim;
    let qw = c.heads * c.head_dim;
    let scale = (c.head_dim as f32).powf(-0.5);

    // Shuffle the block ids and deal them out, interleaved, so neither table is contiguous.
    let mut ids: Vec<u32> = (0..NUM_BLOCKS as u32).collect();
    for i in (1..ids.len()).rev() {
        ids.swap(i, r.random_range(0..=i));
    }
    let mut seqs = [
        Seq { k: vec![], v: vec![], blocks: vec![ids[3], ids[0], ids[7], ids[5]] },
        Seq { k: vec![], v: vec![], blocks: vec![ids[6], ids[1], ids[4], ids[2], ids[9]] },
    ];
    assert!(
        seqs[0].blocks.windows(2).any(|w| w[1] != w[0] + 1)
            || seqs[1].blocks.windows(2).any(|w| w[1] != w[0] + 1)
    );

    // Unused slots hold NaN: reading any slot that was not written poisons the output.
    let mut k_cache = vec![f32::NAN; NUM_BLOCKS * BS * kvw];
    let mut v_cache = vec![f32::NAN; NUM_BLOCKS * BS * kvw];

    // (new tokens of seq 0, of seq 1) per step; 0 = not in this step.
    let steps: [(usize, usize); 4] = [(9, 6), (1, 5), (1, 1), (0, 3)];
    for (si, &(n0, n1)) in steps.iter().enumerate() {
        let counts = [n0, n1];
        let toks: Vec<Vec<u32>> = counts.iter().map(|&n| (0..n as u32).collect()).collect();
        let mut step_seqs = vec![];
        let mut order = vec![];
        for (q, &n) in counts.iter().enumerate() {
            if n > 0 {
                step_seqs.push(SeqStep {
                    tokens: &toks[q],
                    start_pos: seqs[q].k.len(),
                    block_table: &seqs[q].blocks,
                });
                order.push(q);
            }
        }
        let batch = ForwardBatch::new(&step_seqs, BS, true).expect("batch");
        let t = batch.num_tokens();
        assert_eq!(t, n0 + n1);

        let qv = randn(&mut r, t * qw);
        let kv = randn(&mut r, t * kvw);
        let vv = randn(&mut r, t * kvw);
        // Append this step's K/V to each sequence's history (packed in batch order).
        for ti in 0..t {
            let s = &mut seqs[order[batch.token_seq[ti]]];
            assert_eq!(batch.positions[ti], s.k.len(), "positions are consecutive");
            s.k.push(kv[ti * kvw..(ti + 1) * kvw].to_vec());
            s.v.push(vv[ti * kvw..(ti + 1) * kvw].to_vec());
        }

        ops::write_kv(
            &f32t(kv.clone(), &[t, kvw]),
            &f32t(vv.clone(), &[t, kvw]),
            &batch.slot_mapping,
            &mut k_cache,
            &mut v_cache,
        )
        .expect("write_kv");
        // write_kv put each row in the slot its block table names.
        for ti in 0..t {
            let s = &seqs[order[batch.token_seq[ti]]];
            let p = batch.positions[ti];
            let slot = s.blocks[p / BS] as usize * BS + p % BS;
            assert_eq!(batch.slot_mapping[ti], slot);
            assert_eq!(&k_cache[slot * kvw..(slot + 1) * kvw], &kv[ti * kvw..(ti + 1) * kvw]);
            assert_eq!(&v_cache[slot * kvw..(slot + 1) * kvw], &vv[ti * kvw..(ti + 1) * kvw]);
        }

        let params = ops::AttnParams {
            num_heads: c.heads,
            num_kv_heads: c.kv_heads,
            head_dim: c.head_dim,
            scale,
            window: c.window,
            softcap: c.softcap,
        };
        let out = ops::paged_attention(&f32t(qv.clone(), &[t, qw]), &k_cache, &v_cache, &batch, &params)
            .unwrap_or_else(|e| panic!("{c:?} step {si}: {e}"));
        assert_eq!(out.shape(), [t, qw]);
        let mut reference = Vec::with_capacity(t * qw);
        for ti in 0..t {
            let s = &seqs[order[batch.token_seq[ti]]];
            reference.extend(ref_attention_row(
                &qv[ti * qw..(ti + 1) * qw],
                s,
                batch.positions[ti],
                &c,
                scale as f64,
            ));
        }
        check(
            &format!("paged_attention {c:?} step {si} ({n0}+{n1} tokens)"),
            &out_f32(&out),
            &reference,
            TOL,
        );
    }
}

#[test]
fn paged_attention_mha() {
    paged_attention_case(AttnCase { heads: 2, kv_heads: 2, head_dim: 8, window: None, softcap: None }, 20);
}

#[test]
fn paged_attention_gqa() {
    paged_attention_case(AttnCase { heads: 4, kv_heads: 2, head_dim: 16, window: None, softcap: None }, 21);
    paged_attention_case(AttnCase { heads: 6, kv_heads: 3, head_dim: 5, window: None, softcap: None }, 22);
}

#[test]
fn paged_attention_mqa() {
    paged_attention_case(AttnCase { heads: 3, kv_heads: 1, head_dim: 7, window: None, softcap: None }, 23);
}

#[test]
fn paged_attention_sliding_window() {
    for w in [1, 3, 4, 5, 100] {
        paged_attention_case(
            AttnCase { heads: 4, kv_heads: 2, head_dim: 8, window: Some(w), softcap: None },
            24 + w as u64,
        );
    }
}

#[test]
fn paged_attention_softcap() {
    paged_attention_case(
        AttnCase { heads: 4, kv_heads: 1, head_dim: 16, window: None, softcap: Some(1.5) },
        30,
    );
    paged_attention_case(
        AttnCase { heads: 2, kv_heads: 2, head_dim: 8, window: None, softcap: Some(50.0) },
        31,
    );
}

#[test]
fn paged_attention_window_gqa_and_softcap_together() {
    paged_attention_case(
        AttnCase { heads: 8, kv_heads: 2, head_dim: 4, window: Some(5), softcap: Some(2.0) },
        32,
    );
}

#[test]
fn paged_attention_and_write_kv_errors() {
    let blocks = [2u32, 0];
    let step = [SeqStep { tokens: &[1, 2, 3], start_pos: 0, block_table: &blocks }];
    let batch = ForwardBatch::new(&step, 4, true).expect("batch");
    let (nh, hd) = (2, 4);
    let mut kc = vec![0.5f32; 3 * 4 * hd];
    let mut vc = kc.clone();
    let k = f32t(vec![0.25; 3 * hd], &[3, hd]);
    ops::write_kv(&k, &k, &batch.slot_mapping, &mut kc, &mut vc).expect("write_kv");
    // Slot beyond the cache: an error, not a panic.
    assert!(ops::write_kv(&k, &k, &[0, 1, 1000], &mut kc, &mut vc).is_err());
    // Slot count differs from rows.
    assert!(ops::write_kv(&k, &k, &[0, 1], &mut kc, &mut vc).is_err());
    let p = ops::AttnParams {
        num_heads: nh,
        num_kv_heads: 1,
        head_dim: hd,
        scale: 0.5,
        window: None,
        softcap: None,
    };
    let q = f32t(vec![0.1; 3 * nh * hd], &[3, nh * hd]);
    assert!(ops::paged_attention(&q, &kc, &vc, &batch, &p).is_ok());
    let q_bad = f32t(vec![0.1; 2 * nh * hd], &[2, nh * hd]);
    assert!(ops::paged_attention(&q_bad, &kc, &vc, &batch, &p).is_err(), "q rows != batch tokens");
    let p_bad = ops::AttnParams { num_kv_heads: 3, ..p };
    assert!(ops::paged_attention(&q, &kc, &vc, &batch, &p_bad).is_err(), "kv heads not dividing heads");
    // A batch whose block table is too short (built by hand, bypassing ForwardBatch::new).
    let mut short = batch.clone();
    short.positions[2] = 9;
    assert!(ops::paged_attention(&q, &kc, &vc, &short, &p).is_err(), "position without a block");
    // ForwardBatch::new itself refuses a table too short for the context.
    assert!(ForwardBatch::new(&[SeqStep { tokens: &[1; 9], start_pos: 0, block_table: &blocks }], 4, true)
        .is_err());
}

#[test]
fn paged_attention_block_beyond_cache_is_an_error() {
    // A block table naming a block past the end of the cache (a corrupted table, or a cache
    // sized for fewer blocks): write_kv reports it, and so must paged_attention, without panicking.
    let blocks = [100u32];
    let step = [SeqStep { tokens: &[1, 2], start_pos: 0, block_table: &blocks }];
    let batch = ForwardBatch::new(&step, 4, true).expect("batch");
    let hd = 4;
    let (kc, vc) = (vec![0.5f32; 2 * 4 * hd], vec![0.5f32; 2 * 4 * hd]);
    let q = f32t(vec![0.1; 2 * hd], &[2, hd]);
    let p = ops::AttnParams {
        num_heads: 1,
        num_kv_heads: 1,
        head_dim: hd,
        scale: 0.5,
        window: None,
        softcap: None,
    };
    let res = std::panic::catch_unwind(|| ops::paged_attention(&q, &kc, &vc, &batch, &p).is_err());
    assert!(
        matches!(res, Ok(true)),
        "paged_attention must return Err for a slot outside the cache (panicked: {})",
        res.is_err()
    );
}

#[test]
fn matmul_t_empty_inputs() {
    // Zero rows (an empty batch) and zero-width reductions give well-formed results, not panics.
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        let (w, _) = weight(&randn(&mut rng(40), 5 * 3), &[5, 3], dtype);
        let res = std::panic::catch_unwind(|| {
            ops::matmul_t(&f32t(vec![], &[0, 3]), &w).map(|y| y.shape().to_vec())
        });
        assert!(
            matches!(res, Ok(Ok(ref s)) if s == &[0, 5]),
            "{dtype:?}: [0, 3] @ [5, 3]^T: {:?}",
            res.as_ref().map(|r| r.as_ref().map_err(|e| e.to_string()))
        );
        let (w0, _) = weight(&[], &[5, 0], dtype);
        for m in [1usize, 6] {
            let res =
                std::panic::catch_unwind(|| ops::matmul_t(&f32t(vec![], &[m, 0]), &w0).map(|y| out_f32(&y)));
            assert!(
                matches!(res, Ok(Ok(ref v)) if v.len() == m * 5 && v.iter().all(|&x| x == 0.0)),
                "{dtype:?}: k = 0, m = {m}"
            );
        }
    }
}
