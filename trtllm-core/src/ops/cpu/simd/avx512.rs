//! AVX-512 (avx512f + avx512bw + avx512vl, with FMA and F16C) primitives: 16 lanes, masked
//! tails. Every function needs those features present (`super::super::isa()` is `Avx512`).

use super::{EXP_HI, EXP_LO, LN2_HI, LN2_LO, LOG2E, P0, P1, P2, P3, P4, P5};
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
            s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a.add(i)), _mm512_maskz_loadu_ps(m, b.add(i)), s1);
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
            let v =
                _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x.add(i)), _mm512_maskz_loadu_ps(m, y.add(i)));
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
