//! Every block type and tier against dequantize-then-f32, on random blocks (random quants,
//! scales and mins; no zero blocks) at several shapes.

use super::*;
use crate::gguf::dequantize;
use rand::{Rng, SeedableRng};

const TYPES: [GgmlType; 8] = [
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
}

/// `n` rows of `k` elements of `ty`: random bytes, with every f16 scale / min field set to a
/// random non-zero value of a plausible size.
pub(crate) fn random_blocks(ty: GgmlType, n: usize, k: usize, rng: &mut rand::rngs::SmallRng) -> Vec<u8> {
    let (blk, bytes) = ty.block().expect("block type");
    let mut w: Vec<u8> = (0..n * k / blk * bytes).map(|_| rng.random()).collect();
    for b in w.chunks_exact_mut(bytes) {
        let mut sc = || {
            let v: f32 = rng.random_range(0.002..0.02);
            if rng.random::<bool>() {
                v
            } else {
                -v
            }
        };
        match ty {
            GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0 => put_f16(b, 0, sc()),
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => {
                let (d, m) = (sc(), sc());
                put_f16(b, 0, d.abs());
                put_f16(b, 2, m);
            }
            GgmlType::Q6K => put_f16(b, 208, sc()),
            _ => unreachable!(),
        }
    }
    w
}

fn dequant(ty: GgmlType, w: &[u8], n: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * k];
    dequantize(ty, w, &mut out).expect("dequantize");
    out
}

fn check(ty: GgmlType, m: usize, n: usize, k: usize, seed: u64) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let w = random_blocks(ty, n, k, &mut rng);
    let wf = dequant(ty, &w, n, k);
    assert!(wf.iter().all(|v| v.is_finite()) && wf.iter().any(|&v| v != 0.0));
    let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut act = QAct::default();
    act.quantize(&x, m, k);
    let rb = row_bytes(ty, k);
    for i in 0..m {
        let a = act.row(i);
        // The activations as the kernel sees them (int8 x scale), in f64.
        let xq: Vec<f64> = (0..k).map(|j| a.qs[j] as f64 * a.d[j / QK] as f64).collect();
        for r in 0..n {
            let wr = &wf[r * k..(r + 1) * k];
            let exact: f64 = wr.iter().zip(&xq).map(|(&w, &x)| w as f64 * x).sum();
            let f32ref: f64 = wr.iter().zip(&x[i * k..]).map(|(&w, &x)| w as f64 * x as f64).sum();
            let scale: f64 = wr.iter().map(|&w| (w as f64).abs()).sum::<f64>() / (k as f64).sqrt();
            let got_s = scalar::dot_row(ty, &w[r * rb..(r + 1) * rb], a) as f64;
            assert!(
                (got_s - exact).abs() <= 1e-4 * scale.max(1e-3),
                "{ty} scalar m{m} n{n} k{k}: {got_s} vs {exact}"
            );
            // int8 activations: within a few percent of the f32 product.
            assert!(
                (got_s - f32ref).abs() <= 0.03 * scale + 1e-4,
                "{ty} vs f32 {got_s} vs {f32ref} (scale {scale})"
            );
            #[cfg(target_arch = "x86_64")]
            if super::super::isa() >= Isa::Avx2 {
                // SAFETY: AVX2/FMA/F16C detected; the row and the activation row have k elements.
                let got = unsafe { avx2::dot_row(ty, &w[r * rb..(r + 1) * rb], a) } as f64;
                assert!(
                    (got - exact).abs() <= 1e-4 * scale.max(1e-3),
                    "{ty} avx2 m{m} n{n} k{k}: {got} vs {exact}"
                );
            }
        }
    }
    // The threaded entry point (tiles, parts; int8 activations for Q8_0 too) against the
    // per-row scalar reference.
    let mut y = vec![0f32; m * n];
    matmul_parts_act(&x, m, k, &[WeightPart { ty, w: &w, n }], &mut y, Q8Act::Int8);
    for i in 0..m {
        for r in 0..n {
            let want = scalar::dot_row(ty, &w[r * rb..(r + 1) * rb], act.row(i));
            assert!((y[i * n + r] - want).abs() <= 1e-4 * want.abs().max(1.0), "{ty} matmul [{i},{r}]");
        }
    }
}

#[test]
fn every_block_type_matches_dequantized_f32() {
    for (s, &ty) in TYPES.iter().enumerate() {
        let legacy = block_len(ty) == 32;
        let mut shapes = vec![(1, 7, 256), (1, 67, 512), (3, 17, 768), (20, 45, 256)];
        if legacy {
            shapes.push((2, 5, 96));
            shapes.push((1, 300, 576));
        }
        for (j, &(m, n, k)) in shapes.iter().enumerate() {
            check(ty, m, n, k, 100 * s as u64 + j as u64);
        }
    }
}

/// A weight in runs of different block types (a fused q/k/v of Q5_0 and Q8_0, gate/up of
/// Q4_K and Q6_K): each part's columns of the threaded `matmul_parts` against dequantize-then-
/// f32 of that part, at decode and prefill row counts.
#[test]
fn mixed_parts_match_dequantized_f32() {
    use GgmlType::*;
    let cases: [(&[(GgmlType, usize)], usize); 4] = [
        (&[(Q5_0, 64), (Q5_0, 16), (Q8_0, 16)], 576),
        (&[(Q4K, 40), (Q6K, 40)], 512),
        (&[(Q8_0, 3), (Q4_1, 70), (Q5_1, 5)], 96),
        (&[(Q6K, 7), (Q4K, 33), (Q5K, 9)], 256),
    ];
    for (c, &(parts, k)) in cases.iter().enumerate() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(900 + c as u64);
        let blocks: Vec<Vec<u8>> = parts.iter().map(|&(ty, n)| random_blocks(ty, n, k, &mut rng)).collect();
        let wp: Vec<WeightPart<'_>> =
            parts.iter().zip(&blocks).map(|(&(ty, n), w)| WeightPart { ty, w, n }).collect();
        let n: usize = parts.iter().map(|p| p.1).sum();
        for m in [1usize, 5, 19] {
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let mut y = vec![f32::NAN; m * n];
            matmul_parts(&x, m, k, &wp, &mut y);
            let mut col = 0;
            for (&(ty, np), w) in parts.iter().zip(&blocks) {
                let wf = dequant(ty, w, np, k);
                for i in 0..m {
                    for r in 0..np {
                        let wr = &wf[r * k..(r + 1) * k];
                        let f: f64 = wr.iter().zip(&x[i * k..]).map(|(&w, &x)| w as f64 * x as f64).sum();
                        let scale: f64 =
                            wr.iter().map(|&w| (w as f64).abs()).sum::<f64>() / (k as f64).sqrt();
                        let got = y[i * n + col + r] as f64;
                        assert!(
                            (got - f).abs() <= 0.03 * scale + 1e-4,
                            "{ty} part m{m} [{i},{r}]: {got} vs {f}"
                        );
                    }
                }
                col += np;
            }
        }
    }
}

#[test]
fn activation_quantization_is_q8_0() {
    let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
    let mut a = QAct::default();
    a.quantize(&x, 1, 64);
    for b in 0..2 {
        let amax = x[32 * b..32 * b + 32].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_eq!(a.d[b], amax / 127.0);
        let sum: i32 = a.qs[32 * b..32 * b + 32].iter().map(|&q| q as i32).sum();
        assert_eq!(a.s[b], a.d[b] * sum as f32);
        for j in 0..32 {
            assert!((a.qs[32 * b + j] as f32 * a.d[b] - x[32 * b + j]).abs() <= a.d[b] * 0.5 + 1e-6);
        }
    }
}

/// The real GGUF's tensors (when models/ has it) with outlier-heavy activations.
#[test]
fn real_blocks_scalar_vs_simd() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.exists() {
        return;
    }
    let g = crate::gguf::GgufFile::open(&path).expect("open");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    for name in ["blk.0.attn_q.weight", "token_embd.weight", "blk.3.ffn_down.weight"] {
        let t = g.tensor(name).expect("tensor");
        let (k, n) = (t.dims[0] as usize, (t.dims[1] as usize).min(4000));
        let rb = row_bytes(t.ty, k);
        let w = &g.tensor_data(t).expect("data")[..n * rb];
        let x: Vec<f32> =
            (0..k).map(|i| if i % 97 == 5 { 30.0 } else { rng.random_range(-1.0f32..1.0) }).collect();
        let mut act = QAct::default();
        act.quantize(&x, 1, k);
        let wf = dequant(t.ty, w, n, k);
        let mut worst = 0f64;
        #[allow(unused_mut)]
        let mut simd = vec![f32::NAN; n];
        #[cfg(target_arch = "x86_64")]
        if super::super::isa() >= Isa::Avx2 {
            // SAFETY: AVX2/FMA/F16C detected; n whole rows of k elements.
            unsafe { avx2::rows(t.ty, w, rb, act.row(0), &mut simd) };
        }
        for r in 0..n {
            let s = scalar::dot_row(t.ty, &w[r * rb..(r + 1) * rb], act.row(0)) as f64;
            if !simd[r].is_nan() {
                let v = simd[r] as f64;
                let mag: f64 =
                    wf[r * k..(r + 1) * k].iter().zip(&x).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                worst = worst.max((v - s).abs() / mag);
            }
            // Against the dequantized weights times the int8 activations, in f64.
            let a = act.row(0);
            let f: f64 = wf[r * k..(r + 1) * k]
                .iter()
                .enumerate()
                .map(|(j, &w)| w as f64 * a.qs[j] as f64 * a.d[j / QK] as f64)
                .sum();
            assert!((s - f).abs() <= 1e-4 * f.abs().max(1.0), "{name} row {r}: {s} vs f64 {f}");
        }
        // Relative to sum |w * x| (the f32 rounding scale of a dot product).
        assert!(worst < 1e-5, "{name}: scalar vs simd {worst}");
    }
}

/// GEMV / GEMM throughput at SmolLM2-135M's shapes: "hot" reuses one weight buffer (cache
/// resident when it fits: the kernel's compute rate), "cold" cycles through copies totalling
/// at least 256 MB (the weights stream from memory, as in a decode step). `QGEMM_SPEED_M` picks the
/// row counts (default "1,12,128").
/// `cargo test --release -p trtllm-core --lib qgemm_speed -- --ignored --nocapture`
#[test]
#[ignore]
fn qgemm_speed() {
    let ms: Vec<usize> = std::env::var("QGEMM_SPEED_M")
        .unwrap_or_else(|_| "1,12,128".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    for (ty, n, k) in [
        (GgmlType::Q4_1, 3072, 576),
        (GgmlType::Q4_1, 576, 1536),
        (GgmlType::Q8_0, 3072, 576),
        (GgmlType::Q8_0, 49152, 576),
        (GgmlType::Q5_0, 3072, 576),
        (GgmlType::Q4K, 576, 1536),
        (GgmlType::Q6K, 576, 1536),
    ] {
        let w = random_blocks(ty, n, k, &mut rng);
        let copies = (256_000_000 / w.len()).max(2);
        let cold: Vec<Vec<u8>> = (0..copies).map(|_| w.clone()).collect();
        for &m in &ms {
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let mut y = vec![0f32; m * n];
            matmul(&x, m, k, ty, &w, n, &mut y);
            let reps = (200_000_000 / (m * n * k)).clamp(3, 4 * copies);
            let mut us = [0f64; 2];
            for (j, u) in us.iter_mut().enumerate() {
                let t = std::time::Instant::now();
                for r in 0..reps {
                    let wr = if j == 0 { &w } else { &cold[r % copies] };
                    matmul(&x, m, k, ty, wr, n, &mut y);
                }
                *u = t.elapsed().as_secs_f64() / reps as f64 * 1e6;
            }
            println!(
                "{ty} {n}x{k} m={m}: hot {:.1} us ({:.1} GB/s), cold {:.1} us ({:.1} GB/s), {:.1} GMAC/s hot",
                us[0],
                w.len() as f64 / us[0] / 1e3,
                us[1],
                w.len() as f64 / us[1] / 1e3,
                (m * n * k) as f64 / us[0] / 1e3
            );
        }
    }
}
