//! Vector helpers over f32 slices, one implementation per ISA tier (`super::isa()`), plus the
//! per-tier primitives (`avx512::*`, `avx2::*`) that the other kernels inline.
//!
//! `exp` is Cephes' `expf` range reduction + degree-6 polynomial (about 1 ulp on the ranges
//! softmax and SiLU use; `exp(x)` underflows to 0 below about -87 and saturates above 88.7).

// Register arrays are indexed by const loop counters on purpose (they unroll into registers).
#![allow(clippy::needless_range_loop)]

use super::{isa, Isa};

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
        _ => {
            for ((o, v), g) in out[..n].iter_mut().zip(&x[..n]).zip(&w[..n]) {
                *o = g * (v * r);
            }
        }
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
        _ => {
            let mut s = 0.0;
            for v in x.iter_mut() {
                *v = (*v - max).exp();
                s += *v;
            }
            s
        }
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
        _ => {
            for ((o, &a), &b) in out[..n].iter_mut().zip(&g[..n]).zip(&u[..n]) {
                *o = a / (1.0 + (-a).exp()) * b;
            }
        }
    }
}

pub mod scalar {
    /// Dot product with 8 partial sums (vectorizable without reassociation).
    #[inline]
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                acc[i] += x[i] * y[i];
            }
        }
        let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (x, y) in ra.iter().zip(rb) {
            s += x * y;
        }
        s
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

#[cfg(target_arch = "x86_64")]
pub mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    /// Horizontal sum.
    /// # Safety
    /// AVX-512 present.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    pub unsafe fn hsum(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }

    /// Mask of the first `r` (< 16) lanes.
    #[inline]
    pub fn tail_mask(r: usize) -> __mmask16 {
        ((1u32 << r) - 1) as __mmask16
    }

    /// `exp(x)` per lane.
    /// # Safety
    /// AVX-512 present.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    pub unsafe fn exp(x: __m512) -> __m512 {
        let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(EXP_LO)), _mm512_set1_ps(EXP_HI));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
            x,
            _mm512_set1_ps(LOG2E),
        ));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut y = _mm512_set1_ps(P0);
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P1));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P2));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P3));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P4));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P5));
        let r2 = _mm512_mul_ps(r, r);
        y = _mm512_fmadd_ps(y, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
        _mm512_scalef_ps(y, n)
    }

    /// # Safety
    /// `a`, `b` valid for `n` reads; AVX-512 present.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    pub unsafe fn dot(a: *const f32, b: *const f32, n: usize) -> f32 {
        // SAFETY: every access is below `n`; tails use masked loads.
        unsafe {
            let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            let mut i = 0;
            while i + 32 <= n {
                s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a.add(i)), _mm512_loadu_ps(b.add(i)), s0);
                s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a.add(i + 16)), _mm512_loadu_ps(b.add(i + 16)), s1);
                i += 32;
            }
            while i + 16 <= n {
                s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a.add(i)), _mm512_loadu_ps(b.add(i)), s0);
                i += 16;
            }
            if i < n {
                let m = tail_mask(n - i);
                s1 = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(m, a.add(i)),
                    _mm512_maskz_loadu_ps(m, b.add(i)),
                    s1,
                );
            }
            hsum(_mm512_add_ps(s0, s1))
        }
    }

    /// `y[i] += a * x[i]`.
    /// # Safety
    /// `y`, `x` valid for `n` elements; AVX-512 present.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    pub unsafe fn axpy(y: *mut f32, a: f32, x: *const f32, n: usize) {
        // SAFETY: accesses below `n`; masked tail.
        unsafe {
            let av = _mm512_set1_ps(a);
            let mut i = 0;
            while i + 16 <= n {
                _mm512_storeu_ps(
                    y.add(i),
                    _mm512_fmadd_ps(av, _mm512_loadu_ps(x.add(i)), _mm512_loadu_ps(y.add(i))),
                );
                i += 16;
            }
            if i < n {
                let m = tail_mask(n - i);
                let v = _mm512_fmadd_ps(
                    av,
                    _mm512_maskz_loadu_ps(m, x.add(i)),
                    _mm512_maskz_loadu_ps(m, y.add(i)),
                );
                _mm512_mask_storeu_ps(y.add(i), m, v);
            }
        }
    }

    /// # Safety
    /// Pointers valid for `n` elements; AVX-512 present.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    pub unsafe fn scale_mul(out: *mut f32, x: *const f32, w: *const f32, r: f32, n: usize) {
        // SAFETY: accesses below `n`; masked tail.
        unsafe {
            let rv = _mm512_set1_ps(r);
            let mut i = 0;
            while i < n {
                let m = if i + 16 <= n { 0xffff } else { tail_mask(n - i) };
                let v = _mm512_mul_ps(
                    _mm512_maskz_loadu_ps(m, w.add(i)),
                    _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x.add(i)), rv),
                );
                _mm512_mask_storeu_ps(out.add(i), m, v);
                i += 16;
            }
        }
    }

    /// # Safety
    /// `x` valid for `n` elements; AVX-512 present.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    pub unsafe fn exp_shift_sum(x: *mut f32, n: usize, max: f32) -> f32 {
        // SAFETY: accesses below `n`; masked tail (masked-off lanes add 0).
        unsafe {
            let mv = _mm512_set1_ps(max);
            let mut s = _mm512_setzero_ps();
            let mut i = 0;
            while i < n {
                let m = if i + 16 <= n { 0xffff } else { tail_mask(n - i) };
                let e = exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x.add(i)), mv));
                _mm512_mask_storeu_ps(x.add(i), m, e);
                s = _mm512_mask_add_ps(s, m, s, e);
                i += 16;
            }
            hsum(s)
        }
    }

    /// # Safety
    /// Pointers valid for `n` elements; AVX-512 present.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    pub unsafe fn silu_mul(out: *mut f32, g: *const f32, u: *const f32, n: usize) {
        // SAFETY: accesses below `n`; masked tail.
        unsafe {
            let one = _mm512_set1_ps(1.0);
            let zero = _mm512_setzero_ps();
            let mut i = 0;
            while i < n {
                let m = if i + 16 <= n { 0xffff } else { tail_mask(n - i) };
                let gv = _mm512_maskz_loadu_ps(m, g.add(i));
                let den = _mm512_add_ps(one, exp(_mm512_sub_ps(zero, gv)));
                let v = _mm512_mul_ps(_mm512_div_ps(gv, den), _mm512_maskz_loadu_ps(m, u.add(i)));
                _mm512_mask_storeu_ps(out.add(i), m, v);
                i += 16;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// Horizontal sum.
    /// # Safety
    /// AVX2 present.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0x55>(s, s));
        _mm_cvtss_f32(s)
    }

    /// `exp(x)` per lane (0 below about -87.3).
    /// # Safety
    /// AVX2+FMA present.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn exp(x: __m256) -> __m256 {
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.3));
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3)), _mm256_set1_ps(EXP_HI));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
            x,
            _mm256_set1_ps(LOG2E),
        ));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut y = _mm256_set1_ps(P0);
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P1));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P2));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P3));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P4));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P5));
        let r2 = _mm256_mul_ps(r, r);
        y = _mm256_fmadd_ps(y, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
        // 2^n through the exponent bits; n is in [-126, 128) after the clamp.
        let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
        let v = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
        _mm256_andnot_ps(under, v)
    }

    /// # Safety
    /// `a`, `b` valid for `n` reads; AVX2+FMA present.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot(a: *const f32, b: *const f32, n: usize) -> f32 {
        // SAFETY: accesses below `n`.
        unsafe {
            let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i + 16 <= n {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(i)), _mm256_loadu_ps(b.add(i)), s0);
                s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(i + 8)), _mm256_loadu_ps(b.add(i + 8)), s1);
                i += 16;
            }
            while i + 8 <= n {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(i)), _mm256_loadu_ps(b.add(i)), s0);
                i += 8;
            }
            let mut s = hsum(_mm256_add_ps(s0, s1));
            while i < n {
                s += *a.add(i) * *b.add(i);
                i += 1;
            }
            s
        }
    }

    /// `y[i] += a * x[i]`.
    /// # Safety
    /// `y`, `x` valid for `n` elements; AVX2+FMA present.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy(y: *mut f32, a: f32, x: *const f32, n: usize) {
        // SAFETY: accesses below `n`.
        unsafe {
            let av = _mm256_set1_ps(a);
            let mut i = 0;
            while i + 8 <= n {
                _mm256_storeu_ps(
                    y.add(i),
                    _mm256_fmadd_ps(av, _mm256_loadu_ps(x.add(i)), _mm256_loadu_ps(y.add(i))),
                );
                i += 8;
            }
            while i < n {
                *y.add(i) += a * *x.add(i);
                i += 1;
            }
        }
    }

    /// # Safety
    /// `x` valid for `n` elements; AVX2+FMA present.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn exp_shift_sum(x: *mut f32, n: usize, max: f32) -> f32 {
        // SAFETY: accesses below `n`.
        unsafe {
            let mv = _mm256_set1_ps(max);
            let mut s = _mm256_setzero_ps();
            let mut i = 0;
            while i + 8 <= n {
                let e = exp(_mm256_sub_ps(_mm256_loadu_ps(x.add(i)), mv));
                _mm256_storeu_ps(x.add(i), e);
                s = _mm256_add_ps(s, e);
                i += 8;
            }
            let mut t = hsum(s);
            while i < n {
                let e = (*x.add(i) - max).exp();
                *x.add(i) = e;
                t += e;
                i += 1;
            }
            t
        }
    }

    /// # Safety
    /// Pointers valid for `n` elements; AVX2+FMA present.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn silu_mul(out: *mut f32, g: *const f32, u: *const f32, n: usize) {
        // SAFETY: accesses below `n`.
        unsafe {
            let one = _mm256_set1_ps(1.0);
            let zero = _mm256_setzero_ps();
            let mut i = 0;
            while i + 8 <= n {
                let gv = _mm256_loadu_ps(g.add(i));
                let den = _mm256_add_ps(one, exp(_mm256_sub_ps(zero, gv)));
                _mm256_storeu_ps(
                    out.add(i),
                    _mm256_mul_ps(_mm256_div_ps(gv, den), _mm256_loadu_ps(u.add(i))),
                );
                i += 8;
            }
            while i < n {
                let a = *g.add(i);
                *out.add(i) = a / (1.0 + (-a).exp()) * *u.add(i);
                i += 1;
            }
        }
    }
}

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
