//! AVX2 + FMA (+ F16C) kernels: 8 lanes along k, scalar k tails; the row-sequential kernel for
//! m <= 4 and the register-tiled, cache-blocked one (2 x 4 tiles, no panel) for larger m.

// Register arrays are indexed by const loop counters on purpose (they unroll into registers).
#![allow(clippy::needless_range_loop)]

use super::{Bf16Bits, Elem, F16Bits};
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn ld_f32(p: *const f32) -> __m256 {
    // SAFETY: the caller reads 8 valid elements.
    unsafe { _mm256_loadu_ps(p) }
}
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn ld_bf16(p: *const u16) -> __m256 {
    // SAFETY: the caller reads 8 valid elements.
    unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())))) }
}
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn ld_f16(p: *const u16) -> __m256 {
    // SAFETY: the caller reads 8 valid elements.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
}
#[inline(always)]
fn sc_f32(v: f32) -> f32 {
    v
}
#[inline(always)]
fn sc_bf16(v: u16) -> f32 {
    Bf16Bits(v).widen()
}
#[inline(always)]
fn sc_f16(v: u16) -> f32 {
    F16Bits(v).widen()
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn reduce4(a: __m256, b: __m256, c: __m256, d: __m256) -> __m128 {
    let abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps::<1>(abcd))
}

macro_rules! kernels {
    ($block:ident, $tile:ident, $seq:ident, $T:ty, $ld:ident, $sc:ident) => {
        /// # Safety
        /// As the AVX-512 tile; AVX2+FMA present.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $tile<const MR: usize, const NR: usize>(
            x: *const f32,
            xs: usize,
            w: *const $T,
            k: usize,
            y: *mut f32,
            ys: usize,
        ) {
            // SAFETY: loads stay below k in each row; stores go to the
            // MR x NR outputs of the contract.
            unsafe {
                let mut acc = [[_mm256_setzero_ps(); NR]; MR];
                let mut p = 0;
                while p + 8 <= k {
                    let mut wv = [_mm256_setzero_ps(); NR];
                    for j in 0..NR {
                        wv[j] = $ld(w.add(j * k + p));
                    }
                    for i in 0..MR {
                        let xv = _mm256_loadu_ps(x.add(i * xs + p));
                        for j in 0..NR {
                            acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
                        }
                    }
                    p += 8;
                }
                for i in 0..MR {
                    let mut out = [0f32; NR];
                    let mut j = 0;
                    while j + 4 <= NR {
                        _mm_storeu_ps(
                            out.as_mut_ptr().add(j),
                            reduce4(acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]),
                        );
                        j += 4;
                    }
                    while j < NR {
                        out[j] = super::super::simd::avx2::hsum(acc[i][j]);
                        j += 1;
                    }
                    for j in 0..NR {
                        let mut s = out[j];
                        for q in p..k {
                            s += *x.add(i * xs + q) * $sc(*w.add(j * k + q));
                        }
                        *y.add(i * ys + j) = s;
                    }
                }
            }
        }

        /// One weight row against `MR` (1..=4) x rows, weights in memory order (as the
        /// AVX-512 kernel).
        ///
        /// # Safety
        /// As the AVX-512 `seq` kernel; AVX2+FMA present.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $seq<const MR: usize>(
            x: *const f32,
            xs: usize,
            w: *const $T,
            k: usize,
            y: *mut f32,
            ys: usize,
        ) {
            // SAFETY: loads stay below k; MR outputs written.
            unsafe {
                let mut acc = [[_mm256_setzero_ps(); 2]; MR];
                let mut p = 0;
                while p + 16 <= k {
                    let w0 = $ld(w.add(p));
                    let w1 = $ld(w.add(p + 8));
                    for i in 0..MR {
                        acc[i][0] = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(i * xs + p)), w0, acc[i][0]);
                        acc[i][1] = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(i * xs + p + 8)), w1, acc[i][1]);
                    }
                    p += 16;
                }
                for i in 0..MR {
                    let mut s = super::super::simd::avx2::hsum(_mm256_add_ps(acc[i][0], acc[i][1]));
                    for q in p..k {
                        s += *x.add(i * xs + q) * $sc(*w.add(q));
                    }
                    *y.add(i * ys) = s;
                }
            }
        }

        /// # Safety
        /// As `super::rows`, with `w` pointing at the first of `nrows` rows.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $block(
            x: *const f32,
            m: usize,
            k: usize,
            w: *const $T,
            nrows: usize,
            y: *mut f32,
            ys: usize,
        ) {
            // SAFETY: every tile call stays inside m x nrows.
            unsafe {
                if m <= 4 {
                    for j in 0..nrows {
                        let (wj, yj) = (w.add(j * k), y.add(j));
                        match m {
                            1 => $seq::<1>(x, k, wj, k, yj, ys),
                            2 => $seq::<2>(x, k, wj, k, yj, ys),
                            3 => $seq::<3>(x, k, wj, k, yj, ys),
                            _ => $seq::<4>(x, k, wj, k, yj, ys),
                        }
                    }
                    return;
                }
                let mb = super::m_block(k);
                let mut i0 = 0;
                while i0 < m {
                    let i1 = (i0 + mb).min(m);
                    let mut j = 0;
                    while j + 4 <= nrows {
                        let (wj, yj) = (w.add(j * k), y.add(j));
                        let mut i = i0;
                        while i + 2 <= i1 {
                            $tile::<2, 4>(x.add(i * k), k, wj, k, yj.add(i * ys), ys);
                            i += 2;
                        }
                        while i < i1 {
                            $tile::<1, 4>(x.add(i * k), k, wj, k, yj.add(i * ys), ys);
                            i += 1;
                        }
                        j += 4;
                    }
                    while j < nrows {
                        let (wj, yj) = (w.add(j * k), y.add(j));
                        for i in i0..i1 {
                            $tile::<1, 1>(x.add(i * k), k, wj, k, yj.add(i * ys), ys);
                        }
                        j += 1;
                    }
                    i0 = i1;
                }
            }
        }
    };
}

kernels!(block_f32, tile_f32, seq_f32, f32, ld_f32, sc_f32);
kernels!(block_bf16, tile_bf16, seq_bf16, u16, ld_bf16, sc_bf16);
kernels!(block_f16, tile_f16, seq_f16, u16, ld_f16, sc_f16);
