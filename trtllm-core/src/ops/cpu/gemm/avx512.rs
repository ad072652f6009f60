//! AVX-512 kernels (avx512f + avx512bw + avx512vl, FMA, F16C): 16 lanes along k, masked k
//! tails; the row-sequential kernel for m <= 4 and the register-tiled, cache-blocked one for
//! larger m (2-byte weights widened once per 4-row tile into an f32 panel when m >= 8).

// Register arrays are indexed by const loop counters on purpose (they unroll into registers).
#![allow(clippy::needless_range_loop)]

use super::super::simd::avx512::tail_mask;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn ld_f32(p: *const f32) -> __m512 {
    // SAFETY: the caller reads 16 valid elements.
    unsafe { _mm512_loadu_ps(p) }
}
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn ldm_f32(m: __mmask16, p: *const f32) -> __m512 {
    // SAFETY: masked-off lanes are not read.
    unsafe { _mm512_maskz_loadu_ps(m, p) }
}
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn ld_bf16(p: *const u16) -> __m512 {
    // SAFETY: the caller reads 16 valid elements. bf16 -> f32 is a 16-bit left shift.
    unsafe {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()))))
    }
}
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn ldm_bf16(m: __mmask16, p: *const u16) -> __m512 {
    // SAFETY: masked-off lanes are not read.
    unsafe {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(
            m,
            p.cast(),
        ))))
    }
}
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn ld_f16(p: *const u16) -> __m512 {
    // SAFETY: the caller reads 16 valid elements.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
}
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn ldm_f16(m: __mmask16, p: *const u16) -> __m512 {
    // SAFETY: masked-off lanes are not read.
    unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p.cast())) }
}

/// Four horizontal sums at once: `[sum(a), sum(b), sum(c), sum(d)]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn reduce4(a: __m512, b: __m512, c: __m512, d: __m512) -> __m128 {
    let half = |v: __m512| {
        _mm256_add_ps(
            _mm512_castps512_ps256(v),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
        )
    };
    let ab = _mm256_hadd_ps(half(a), half(b));
    let cd = _mm256_hadd_ps(half(c), half(d));
    let abcd = _mm256_hadd_ps(ab, cd);
    _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps::<1>(abcd))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn store_row<const NR: usize>(acc: &[__m512; NR], y: *mut f32) {
    let mut j = 0;
    while j + 4 <= NR {
        // SAFETY: the caller's row has NR writable outputs.
        unsafe { _mm_storeu_ps(y.add(j), reduce4(acc[j], acc[j + 1], acc[j + 2], acc[j + 3])) };
        j += 4;
    }
    while j < NR {
        // SAFETY: as above.
        unsafe { *y.add(j) = _mm512_reduce_add_ps(acc[j]) };
        j += 1;
    }
}

macro_rules! kernels {
    ($block:ident, $tile:ident, $seq:ident, $T:ty, $ld:ident, $ldm:ident) => {
        /// One MR x NR tile of outputs over the whole of k.
        ///
        /// # Safety
        /// x: MR rows of stride xs with k valid elements; w: NR rows of stride k; y: MR
        /// rows of stride ys with NR writable outputs; AVX-512 present.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
        unsafe fn $tile<const MR: usize, const NR: usize>(
            x: *const f32,
            xs: usize,
            w: *const $T,
            k: usize,
            y: *mut f32,
            ys: usize,
        ) {
            // SAFETY: loads stay below k in each row (tail masked); stores
            // go to the MR x NR outputs of the contract.
            unsafe {
                let mut acc = [[_mm512_setzero_ps(); NR]; MR];
                let mut p = 0;
                while p + 16 <= k {
                    let mut wv = [_mm512_setzero_ps(); NR];
                    for j in 0..NR {
                        wv[j] = $ld(w.add(j * k + p));
                    }
                    for i in 0..MR {
                        let xv = _mm512_loadu_ps(x.add(i * xs + p));
                        for j in 0..NR {
                            acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
                        }
                    }
                    p += 16;
                }
                if p < k {
                    let m = tail_mask(k - p);
                    let mut wv = [_mm512_setzero_ps(); NR];
                    for j in 0..NR {
                        wv[j] = $ldm(m, w.add(j * k + p));
                    }
                    for i in 0..MR {
                        let xv = _mm512_maskz_loadu_ps(m, x.add(i * xs + p));
                        for j in 0..NR {
                            acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
                        }
                    }
                }
                for i in 0..MR {
                    store_row::<NR>(&acc[i], y.add(i * ys));
                }
            }
        }

        /// One weight row against `MR` (1..=4) x rows: the weights are read once, in
        /// memory order (one sequential stream per thread for the hardware prefetchers;
        /// measured faster than interleaving 2, 4 or 8 rows, see docs/perf-notes.md), with
        /// two accumulators per x row.
        ///
        /// # Safety
        /// x: MR rows of stride xs with k valid elements; w: one row of k; y: MR writable
        /// outputs of stride ys; AVX-512 present.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
        unsafe fn $seq<const MR: usize>(
            x: *const f32,
            xs: usize,
            w: *const $T,
            k: usize,
            y: *mut f32,
            ys: usize,
        ) {
            // SAFETY: loads stay below k (tail masked); MR outputs written.
            unsafe {
                let mut acc = [[_mm512_setzero_ps(); 2]; MR];
                let mut p = 0;
                while p + 32 <= k {
                    let w0 = $ld(w.add(p));
                    let w1 = $ld(w.add(p + 16));
                    for i in 0..MR {
                        acc[i][0] = _mm512_fmadd_ps(_mm512_loadu_ps(x.add(i * xs + p)), w0, acc[i][0]);
                        acc[i][1] = _mm512_fmadd_ps(_mm512_loadu_ps(x.add(i * xs + p + 16)), w1, acc[i][1]);
                    }
                    p += 32;
                }
                while p < k {
                    let m = if p + 16 <= k { 0xffff } else { tail_mask(k - p) };
                    let w0 = $ldm(m, w.add(p));
                    for i in 0..MR {
                        acc[i][0] =
                            _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x.add(i * xs + p)), w0, acc[i][0]);
                    }
                    p += 16;
                }
                for i in 0..MR {
                    *y.add(i * ys) = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]));
                }
            }
        }

        /// # Safety
        /// As `super::rows`, with `w` pointing at the first of `nrows` rows.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
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
                    // Decode (and small batches): weight rows in memory order.
                    for j in 0..nrows {
                        let (wj, yj) = (w.add(j * k), y.add(j));
                        let mut i = 0;
                        while i < m {
                            let (xi, yi) = (x.add(i * k), yj.add(i * ys));
                            match m - i {
                                1 => $seq::<1>(xi, k, wj, k, yi, ys),
                                2 => $seq::<2>(xi, k, wj, k, yi, ys),
                                3 => $seq::<3>(xi, k, wj, k, yi, ys),
                                _ => $seq::<4>(xi, k, wj, k, yi, ys),
                            }
                            i += 4;
                        }
                    }
                    return;
                }
                let mb = super::m_block(k);
                // 2-byte weights: widen each 4-row w tile once into an f32 panel and run
                // the f32 tiles on it, instead of widening it again for every x tile.
                let widen = std::mem::size_of::<$T>() == 2 && m >= 8;
                let mut panel = if widen { super::take_panel(4 * k) } else { Vec::new() };
                let mut i0 = 0;
                while i0 < m {
                    let i1 = (i0 + mb).min(m);
                    let mut j = 0;
                    while widen && j + 4 <= nrows {
                        let (wj, yj) = (w.add(j * k), y.add(j));
                        let pp = panel.as_mut_ptr();
                        for r in 0..4 {
                            let (src, dst) = (wj.add(r * k), pp.add(r * k));
                            let mut q = 0;
                            while q < k {
                                let msk = if q + 16 <= k { 0xffff } else { tail_mask(k - q) };
                                _mm512_mask_storeu_ps(dst.add(q), msk, $ldm(msk, src.add(q)));
                                q += 16;
                            }
                        }
                        let mut i = i0;
                        while i + 4 <= i1 {
                            tile_f32::<4, 4>(x.add(i * k), k, pp, k, yj.add(i * ys), ys);
                            i += 4;
                        }
                        while i < i1 {
                            tile_f32::<1, 4>(x.add(i * k), k, pp, k, yj.add(i * ys), ys);
                            i += 1;
                        }
                        j += 4;
                    }
                    while j + 4 <= nrows {
                        let (wj, yj) = (w.add(j * k), y.add(j));
                        let mut i = i0;
                        while i + 4 <= i1 {
                            $tile::<4, 4>(x.add(i * k), k, wj, k, yj.add(i * ys), ys);
                            i += 4;
                        }
                        while i < i1 {
                            $tile::<1, 4>(x.add(i * k), k, wj, k, yj.add(i * ys), ys);
                            i += 1;
                        }
                        j += 4;
                    }
                    while j < nrows {
                        let (wj, yj) = (w.add(j * k), y.add(j));
                        let mut i = i0;
                        while i + 4 <= i1 {
                            $tile::<4, 1>(x.add(i * k), k, wj, k, yj.add(i * ys), ys);
                            i += 4;
                        }
                        while i < i1 {
                            $tile::<1, 1>(x.add(i * k), k, wj, k, yj.add(i * ys), ys);
                            i += 1;
                        }
                        j += 1;
                    }
                    i0 = i1;
                }
                if widen {
                    super::put_panel(panel);
                }
            }
        }
    };
}

kernels!(block_f32, tile_f32, seq_f32, f32, ld_f32, ldm_f32);
kernels!(block_bf16, tile_bf16, seq_bf16, u16, ld_bf16, ldm_bf16);
kernels!(block_f16, tile_f16, seq_f16, u16, ld_f16, ldm_f16);
