//! AVX-512 kernels (avx512f + avx512bw + avx512vl, FMA, F16C): 16 lanes along k, masked k
//! tails. f32 weights with m <= 8 (decode, speculative verification): every x row against a
//! few weight rows at a time with software prefetch (`few`); 2-byte weights with m <= 4: the
//! row-sequential kernel (`seq`); larger m: the register-tiled, cache-blocked one (2-byte
//! weights widened once per 4-row tile into an f32 panel when m >= 8).
//!
//! Every f32 output is one accumulator over k in order, reduced by [`reduce4`], in all the f32
//! paths: a row of y is bitwise the same whatever m is and wherever the row sits in a tile
//! (speculative verification of K + 1 rows reproduces plain decoding's logits exactly).

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

/// `y[j] = sum(acc[j])` for the NR accumulators, 4 at a time through [`reduce4`].
///
/// # Safety
/// `y` valid for NR writes; AVX-512 present.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(in crate::ops::cpu) unsafe fn store_row<const NR: usize>(acc: &[__m512; NR], y: *mut f32) {
    let mut j = 0;
    while j + 4 <= NR {
        // SAFETY: the caller's row has NR writable outputs.
        unsafe { _mm_storeu_ps(y.add(j), reduce4(acc[j], acc[j + 1], acc[j + 2], acc[j + 3])) };
        j += 4;
    }
    if j < NR {
        // The last 1-3 outputs through the same reduction (zero accumulators in the free
        // slots: each slot's sum is computed alike whatever the others hold).
        let z = _mm512_setzero_ps();
        let at = |i: usize| if i < NR { acc[i] } else { z };
        // SAFETY: as above.
        let v = unsafe { reduce4(at(j), at(j + 1), at(j + 2), at(j + 3)) };
        let mut lanes = [0f32; 4];
        // SAFETY: `lanes` holds 4 f32.
        unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), v) };
        for (i, l) in lanes.iter().enumerate().take(NR - j) {
            // SAFETY: j + i < NR outputs of the caller's row.
            unsafe { *y.add(j + i) = *l };
        }
    }
}

/// Bytes ahead of the current k offset that `few` prefetches in each weight row (measured
/// best of 512 B - 2 KiB on the 2-core VM: docs/perf-notes.md).
const PREFETCH: usize = 1024;

macro_rules! kernels {
    ($block:ident, $tile:ident, $seq:ident, $few:ident, $T:ty, $ld:ident, $ldm:ident) => {
        /// One MR x NR tile of outputs over the whole of k; with `PF > 0`, each weight row's
        /// cache line `PF` bytes ahead is prefetched as the tile reaches a new line.
        ///
        /// # Safety
        /// x: MR rows of stride xs with k valid elements; w: NR rows of stride k; y: MR
        /// rows of stride ys with NR writable outputs; AVX-512 present.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
        unsafe fn $tile<const MR: usize, const NR: usize, const PF: usize>(
            x: *const f32,
            xs: usize,
            w: *const $T,
            k: usize,
            y: *mut f32,
            ys: usize,
        ) {
            // SAFETY: loads stay below k in each row (tail masked); stores
            // go to the MR x NR outputs of the contract; a prefetch never faults (its address
            // may lie past w: `wrapping_add`).
            unsafe {
                let (size, mut acc) = (std::mem::size_of::<$T>(), [[_mm512_setzero_ps(); NR]; MR]);
                let mut p = 0;
                while p + 16 <= k {
                    if PF > 0 && (p * size) % 64 == 0 {
                        for j in 0..NR {
                            _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(j * k + p + PF / size).cast());
                        }
                    }
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

        /// All `MR` x rows against `NR` weight rows at a time (MR * NR accumulators): each
        /// weight element is loaded once for all x rows, each x vector once for NR weight rows,
        /// and every weight row is prefetched `PREFETCH` bytes ahead. At m <= 8 the f32 kernel is
        /// bound by how many cache misses a core keeps in flight: without the prefetch the
        /// multiply-adds of the extra rows add to the stream's time instead of hiding in it.
        ///
        /// # Safety
        /// x: MR rows of stride k; w: `nrows` rows of k; y: MR rows of stride ys with `nrows`
        /// writable outputs; AVX-512 present.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
        pub(super) unsafe fn $few<const MR: usize, const NR: usize>(
            x: *const f32,
            k: usize,
            w: *const $T,
            nrows: usize,
            y: *mut f32,
            ys: usize,
        ) {
            // SAFETY: every tile stays inside MR x nrows.
            unsafe {
                let mut j = 0;
                while j + NR <= nrows {
                    $tile::<MR, NR, PREFETCH>(x, k, w.add(j * k), k, y.add(j), ys);
                    j += NR;
                }
                while j < nrows {
                    $tile::<MR, 1, PREFETCH>(x, k, w.add(j * k), k, y.add(j), ys);
                    j += 1;
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
                if m <= 8 && std::mem::size_of::<$T>() == 4 {
                    // f32 decode and verification: register tiles of m x rows by 3-8 weight
                    // rows (at most 25 accumulators of the 32 registers; more weight rows, more
                    // streams in flight, measured faster).
                    match m {
                        1 => $few::<1, 8>(x, k, w, nrows, y, ys),
                        2 => $few::<2, 8>(x, k, w, nrows, y, ys),
                        3 => $few::<3, 6>(x, k, w, nrows, y, ys),
                        4 => $few::<4, 6>(x, k, w, nrows, y, ys),
                        5 => $few::<5, 5>(x, k, w, nrows, y, ys),
                        6 => $few::<6, 4>(x, k, w, nrows, y, ys),
                        7 => $few::<7, 3>(x, k, w, nrows, y, ys),
                        _ => $few::<8, 3>(x, k, w, nrows, y, ys),
                    }
                    return;
                }
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
                            tile_f32::<4, 4, 0>(x.add(i * k), k, pp, k, yj.add(i * ys), ys);
                            i += 4;
                        }
                        while i < i1 {
                            tile_f32::<1, 4, 0>(x.add(i * k), k, pp, k, yj.add(i * ys), ys);
                            i += 1;
                        }
                        j += 4;
                    }
                    while j + 4 <= nrows {
                        let (wj, yj) = (w.add(j * k), y.add(j));
                        let mut i = i0;
                        while i + 4 <= i1 {
                            $tile::<4, 4, 0>(x.add(i * k), k, wj, k, yj.add(i * ys), ys);
                            i += 4;
                        }
                        while i < i1 {
                            $tile::<1, 4, 0>(x.add(i * k), k, wj, k, yj.add(i * ys), ys);
                            i += 1;
                        }
                        j += 4;
                    }
                    while j < nrows {
                        let (wj, yj) = (w.add(j * k), y.add(j));
                        let mut i = i0;
                        while i + 4 <= i1 {
                            $tile::<4, 1, 0>(x.add(i * k), k, wj, k, yj.add(i * ys), ys);
                            i += 4;
                        }
                        while i < i1 {
                            $tile::<1, 1, 0>(x.add(i * k), k, wj, k, yj.add(i * ys), ys);
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

kernels!(block_f32, tile_f32, seq_f32, few_f32, f32, ld_f32, ldm_f32);
kernels!(block_bf16, tile_bf16, seq_bf16, few_bf16, u16, ld_bf16, ldm_bf16);
kernels!(block_f16, tile_f16, seq_f16, few_f16, u16, ld_f16, ldm_f16);
