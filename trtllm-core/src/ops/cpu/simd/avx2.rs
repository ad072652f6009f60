//! AVX2 + FMA (+ F16C) primitives: 8 lanes, scalar loops for the tails. Every function needs
//! those features present (`super::super::isa()` is `Avx2` or higher).

use super::{EXP_HI, LN2_HI, LN2_LO, LOG2E, P0, P1, P2, P3, P4, P5};
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
            _mm256_storeu_ps(out.add(i), _mm256_mul_ps(_mm256_div_ps(gv, den), _mm256_loadu_ps(u.add(i))));
            i += 8;
        }
        while i < n {
            let a = *g.add(i);
            *out.add(i) = a / (1.0 + (-a).exp()) * *u.add(i);
            i += 1;
        }
    }
}
