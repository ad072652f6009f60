//! Q8_0 x f32 activations against dequantize-then-f32 (`gguf::dequantize`, then the f32 GEMM)
//! on random blocks (random quants, non-zero scales) at several shapes, odd row counts
//! included: bitwise equal on the CPU's own tier, within f32 rounding on the lower tiers.

use super::super::{matmul_parts_act, Q8Act, WeightPart};
use super::*;
use crate::gguf::dequantize;
use rand::{Rng, SeedableRng};

const SHAPES: [(usize, usize, usize); 11] = [
    (1, 1, 32),
    (1, 7, 64),
    (1, 13, 576),
    (1, 33, 96),
    (1, 130, 1536),
    (2, 5, 64),
    (3, 17, 128),
    (5, 9, 576),
    (9, 67, 160),
    (17, 130, 64),
    (40, 71, 576),
];

struct Case {
    x: Vec<f32>,
    w: Vec<u8>,
    wf: Vec<f32>,
}

fn case(m: usize, n: usize, k: usize, seed: u64) -> Case {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let w = super::super::tests::random_blocks(GgmlType::Q8_0, n, k, &mut rng);
    let mut wf = vec![0f32; n * k];
    dequantize(GgmlType::Q8_0, &w, &mut wf).expect("dequantize");
    assert!(wf.iter().all(|v| v.is_finite()) && wf.iter().any(|&v| v != 0.0));
    let x = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Case { x, w, wf }
}

fn f32_ref(c: &Case, m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    gemm::matmul(&c.x, m, k, gemm::Weights::F32(&c.wf), n, &mut y);
    y
}

fn run(isa: Isa, c: &Case, m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![f32::NAN; m * n];
    // SAFETY: y holds m rows of n outputs; `isa` is at most the detected tier.
    unsafe { rows(isa, &c.x, m, k, &c.w, n, y.as_mut_ptr(), n) };
    y
}

#[test]
fn q8_0_f32_act_is_dequantized_f32_bitwise() {
    for (s, &(m, n, k)) in SHAPES.iter().enumerate() {
        let c = case(m, n, k, 100 + s as u64);
        let want = f32_ref(&c, m, n, k);
        let got = run(super::super::super::isa(), &c, m, n, k);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "m{m} n{n} k{k} output {i}: {g} vs {w}");
        }
        // Every tier up to the CPU's: within f32 rounding of the f64 dot product.
        for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
            if isa > super::super::super::isa() {
                continue;
            }
            let got = run(isa, &c, m, n, k);
            for i in 0..m {
                for r in 0..n {
                    let (xr, wr) = (&c.x[i * k..(i + 1) * k], &c.wf[r * k..(r + 1) * k]);
                    let exact: f64 = xr.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum();
                    let mag: f64 = xr.iter().zip(wr).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                    let g = got[i * n + r] as f64;
                    assert!(
                        (g - exact).abs() <= 1e-6 * mag + 1e-12,
                        "{isa:?} m{m} n{n} k{k}: {g} vs {exact}"
                    );
                }
            }
        }
    }
}

/// Through `matmul_parts`: a fused weight of Q8_0 rows (f32 activations) and Q4_0 rows (int8
/// activations); the Q8_0 columns are the dequantized f32 result, bitwise.
#[test]
fn q8_0_f32_act_in_mixed_parts() {
    let (m, k, n8, n4) = (3, 128, 19, 13);
    let c = case(m, n8, k, 7);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(8);
    let w4 = super::super::tests::random_blocks(GgmlType::Q4_0, n4, k, &mut rng);
    let parts =
        [WeightPart { ty: GgmlType::Q8_0, w: &c.w, n: n8 }, WeightPart { ty: GgmlType::Q4_0, w: &w4, n: n4 }];
    let mut y = vec![f32::NAN; m * (n8 + n4)];
    matmul_parts_act(&c.x, m, k, &parts, &mut y, Q8Act::F32);
    let want = f32_ref(&c, m, n8, k);
    let mut y4 = vec![0f32; m * n4];
    matmul_parts_act(&c.x, m, k, &parts[1..], &mut y4, Q8Act::F32);
    for i in 0..m {
        for r in 0..n8 {
            assert_eq!(y[i * (n8 + n4) + r].to_bits(), want[i * n8 + r].to_bits(), "row {i} col {r}");
        }
        for r in 0..n4 {
            assert_eq!(y[i * (n8 + n4) + n8 + r].to_bits(), y4[i * n4 + r].to_bits(), "row {i} Q4_0 col {r}");
        }
    }
    // The int8 mode of the same weight differs (quantized activations) but stays close.
    let mut yi = vec![0f32; m * (n8 + n4)];
    matmul_parts_act(&c.x, m, k, &parts, &mut yi, Q8Act::Int8);
    assert!(yi.iter().zip(&y).all(|(a, b)| (a - b).abs() <= 0.05 * (1.0 + b.abs())));
}
