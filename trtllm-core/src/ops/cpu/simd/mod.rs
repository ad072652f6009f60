//! Vector helpers over f32 slices, one implementation per ISA tier (`super::isa()`), plus the
//! per-tier primitives (`avx512::*`, `avx2::*`) that the other kernels inline.
//!
//! `exp` is Cephes' `expf` range reduction + degree-6 polynomial (about 1 ulp on the ranges
//! softmax and SiLU use; `exp(x)` underflows to 0 below about -87 and saturates above 88.7).
//!
//! - `scalar`: portable Rust (any architecture), also the fallback of every dispatcher here.
//! - `avx2`: 8-lane kernels (AVX2 + FMA), scalar loops for the tails.
//! - `avx512`: 16-lane kernels, masked tails.

use super::{isa, Isa};

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
pub mod scalar;

/// `sum(a[i] * b[i])`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    match isa() {
        // SAFETY: the tier was detected on this CPU; both slices hold `n` elements.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::dot(a.as_ptr(), b.as_ptr(), n) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::dot(a.as_ptr(), b.as_ptr(), n) },
        _ => scalar::dot(&a[..n], &b[..n]),
    }
}

/// `sum(x[i]^2)`.
pub fn sum_sq(x: &[f32]) -> f32 {
    dot(x, x)
}

/// `out[i] = w[i] * (x[i] * r)` (the RMSNorm scaling, in HF's order of operations).
pub fn scale_mul(out: &mut [f32], x: &[f32], w: &[f32], r: f32) {
    let n = out.len().min(x.len()).min(w.len());
    match isa() {
        // SAFETY: detected tier; all three slices hold `n` elements.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::scale_mul(out.as_mut_ptr(), x.as_ptr(), w.as_ptr(), r, n) },
        _ => scalar::scale_mul(&mut out[..n], &x[..n], &w[..n], r),
    }
}

/// `out[i] = a[i] + b[i]`.
pub fn add(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

/// `x[i] = exp(x[i] - max)`, returning the sum of the results (softmax's numerator).
pub fn exp_shift_sum(x: &mut [f32], max: f32) -> f32 {
    match isa() {
        // SAFETY: detected tier; the pointer covers `x.len()` elements.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::exp_shift_sum(x.as_mut_ptr(), x.len(), max) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::exp_shift_sum(x.as_mut_ptr(), x.len(), max) },
        _ => scalar::exp_shift_sum(x, max),
    }
}

/// Largest element (`-inf` for an empty slice).
pub fn max(x: &[f32]) -> f32 {
    x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// `out[i] = silu(g[i]) * u[i]`, `silu(x) = x / (1 + exp(-x))`.
pub fn silu_mul(out: &mut [f32], g: &[f32], u: &[f32]) {
    let n = out.len().min(g.len()).min(u.len());
    match isa() {
        // SAFETY: detected tier; all three slices hold `n` elements.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::silu_mul(out.as_mut_ptr(), g.as_ptr(), u.as_ptr(), n) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::silu_mul(out.as_mut_ptr(), g.as_ptr(), u.as_ptr(), n) },
        _ => scalar::silu_mul(&mut out[..n], &g[..n], &u[..n]),
    }
}

// Cephes expf constants.
/// Upper clamp (AVX2 builds 2^n from exponent bits, so n <= 127).
const EXP_HI: f32 = 88.376_26;
const EXP_LO: f32 = -110.0;
const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const P0: f32 = 1.987_569_1e-4;
const P1: f32 = 1.398_199_9e-3;
const P2: f32 = 8.333_452e-3;
const P3: f32 = 4.166_579_6e-2;
const P4: f32 = 1.666_666_5e-1;
const P5: f32 = 0.5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_silu_match_libm() {
        let xs: Vec<f32> = (-2000..=1760).map(|i| i as f32 * 0.05).collect(); // up to 88.0
        let mut e = xs.clone();
        let s = exp_shift_sum(&mut e, 0.0);
        let mut want_sum = 0f64;
        for (&x, &got) in xs.iter().zip(&e) {
            let want = (x as f64).exp();
            want_sum += want;
            let rel = ((got as f64 - want) / want.max(1e-30)).abs();
            assert!(rel < 4e-7 || (x < -87.0 && got < 1e-37), "exp({x}) = {got}, want {want}");
        }
        assert!(s.is_infinite() || ((s as f64 - want_sum) / want_sum).abs() < 1e-5);
        let mut small: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.05).collect();
        let want: f64 = small.iter().map(|&x| (x as f64 - 3.0).exp()).sum();
        let s = exp_shift_sum(&mut small, 3.0);
        assert!(((s as f64 - want) / want).abs() < 1e-5, "sum {s} vs {want}");
        let mut o = vec![0f32; xs.len()];
        let u = vec![1.5f32; xs.len()];
        silu_mul(&mut o, &xs, &u);
        for (&x, &got) in xs.iter().zip(&o) {
            let want = x as f64 / (1.0 + (-x as f64).exp()) * 1.5;
            assert!(
                (got as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "silu({x}) = {got}, want {want}"
            );
        }
        let mut neg = vec![f32::NEG_INFINITY, 0.0];
        let s = exp_shift_sum(&mut neg, 0.0);
        assert_eq!(neg[0], 0.0);
        assert_eq!(s, 1.0);
    }

    #[test]
    fn dot_matches() {
        for n in [0, 1, 7, 16, 17, 33, 64, 100] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - want).abs() < 1e-4, "n={n}");
        }
    }
}
