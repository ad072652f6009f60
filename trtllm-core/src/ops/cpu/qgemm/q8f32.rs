//! Q8_0 weights against f32 activations: each weight element is widened to `d * q` (exact in
//! f32: an 11-bit f16 scale times an 8-bit integer) and multiplied with the activation in f32,
//! with the accumulation order of the f32 GEMM of the same tier (`cpu::gemm`) over the
//! dequantized weights. The outputs are bitwise those of dequantize-then-f32: a Q8_0 file runs
//! exactly as its dequantized f32 checkpoint, with the weights still read as 34-byte blocks.
//!
//! - m = 1 (decode), AVX-512: 8 rows at a time, one 16-lane accumulator per row over k in
//!   order, reduced as the f32 kernel reduces (`gemm::store_row`); AVX2: two 8-lane
//!   accumulators per row (the f32 row-sequential kernel's order), 4 rows at a time.
//! - otherwise (prefill, small batches, the scalar tier): `PTILE` rows dequantized into a
//!   per-thread f32 panel, then the f32 GEMM's own kernel (`gemm::rows`) on the panel.

use super::super::gemm;
use super::super::Isa;
use crate::gguf::GgmlType;

/// Bytes of a Q8_0 block (f16 scale + 32 int8).
const BYTES: usize = 34;
/// Weight rows dequantized per panel (m > 1): 64 x k f32 (144 KiB at k = 576) stays in L2
/// while the activation rows stream past it.
const PTILE: usize = 64;

thread_local! {
    /// This thread's panel of dequantized rows (kept between calls).
    static PANEL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `y[i * ys + j] = dot(x row i, w row j)` for `m` rows of x (`[m, k]`, k a multiple of 32) and
/// the `nrows` Q8_0 rows of `w`.
///
/// # Safety
/// `y` valid for writes of `nrows` columns in each of `m` rows of stride `ys`; `isa` is at most
/// the tier this CPU has.
#[allow(clippy::too_many_arguments)]
pub unsafe fn rows(isa: Isa, x: &[f32], m: usize, k: usize, w: &[u8], nrows: usize, y: *mut f32, ys: usize) {
    let rb = k / 32 * BYTES;
    assert!(k.is_multiple_of(32) && x.len() >= m * k && w.len() >= nrows * rb, "q8f32::rows: arguments");
    #[cfg(target_arch = "x86_64")]
    if m == 1 && isa >= Isa::Avx2 {
        // SAFETY: the tier was detected (`isa`); w holds nrows rows of rb bytes, x holds k; y's
        // nrows outputs are the caller's.
        unsafe {
            if isa == Isa::Avx512 {
                x86::gemv_avx512(x.as_ptr(), k, w.as_ptr(), nrows, y);
            } else {
                x86::gemv_avx2(x.as_ptr(), k, w.as_ptr(), nrows, y);
            }
        }
        return;
    }
    let _ = isa;
    PANEL.with(|panel| {
        let mut panel = panel.borrow_mut();
        if panel.len() < PTILE * k {
            panel.resize(PTILE * k, 0.0);
        }
        let mut j = 0;
        while j < nrows {
            let t = PTILE.min(nrows - j);
            dequant(&w[j * rb..(j + t) * rb], &mut panel[..t * k]);
            // SAFETY: x holds m * k, the panel t rows of k; y's columns j..j + t of the m rows
            // are inside the caller's range.
            unsafe { gemm::rows(x.as_ptr(), m, k, gemm::Weights::F32(&panel[..t * k]), 0, t, y.add(j), ys) };
            j += t;
        }
    });
}

/// Q8_0 blocks -> f32 (`d * q`), block by block as `gguf::dequantize` does.
fn dequant(w: &[u8], out: &mut [f32]) {
    for (b, o) in w.chunks_exact(BYTES).zip(out.chunks_exact_mut(32)) {
        crate::gguf::dequant::q8_0(b, o);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    // Register arrays are indexed by const loop counters on purpose (they unroll into registers).
    #![allow(clippy::needless_range_loop)]

    use super::BYTES;
    use std::arch::x86_64::*;

    /// How far ahead of the block being read each row is prefetched (bytes).
    const PREFETCH: usize = 4096;

    #[inline(always)]
    unsafe fn scale(b: *const u8) -> f32 {
        // SAFETY: b covers a block's 2-byte f16 scale; F16C is enabled by the callers.
        unsafe {
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(b.cast::<u16>()) as i32)))
        }
    }

    /// `NR` rows against one x row, one 16-lane accumulator per row (the f32 tile's order).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    unsafe fn tile16<const NR: usize>(x: *const f32, k: usize, w: *const u8, y: *mut f32) {
        let rb = k / 32 * BYTES;
        // SAFETY: every block read lies in the NR rows of rb bytes at w; x holds k; a prefetch
        // never faults (`wrapping_add`); NR outputs at y.
        unsafe {
            let mut acc = [_mm512_setzero_ps(); NR];
            let (mut o, mut p) = (0, 0);
            while p < k {
                if o % 64 < BYTES {
                    for j in 0..NR {
                        _mm_prefetch::<_MM_HINT_T1>(w.wrapping_add(j * rb + o + PREFETCH).cast());
                    }
                }
                let x0 = _mm512_loadu_ps(x.add(p));
                let x1 = _mm512_loadu_ps(x.add(p + 16));
                for j in 0..NR {
                    let b = w.add(j * rb + o);
                    let d = _mm512_set1_ps(scale(b));
                    let q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(b.add(2).cast())));
                    let q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(b.add(18).cast())));
                    acc[j] = _mm512_fmadd_ps(x0, _mm512_mul_ps(q0, d), acc[j]);
                    acc[j] = _mm512_fmadd_ps(x1, _mm512_mul_ps(q1, d), acc[j]);
                }
                o += BYTES;
                p += 32;
            }
            super::gemm::store_row::<NR>(&acc, y);
        }
    }

    /// # Safety
    /// AVX-512 (F, BW, VL) + FMA + F16C present; x holds k (a multiple of 32) f32, w `nrows`
    /// Q8_0 rows of k; y `nrows` writable outputs.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    pub unsafe fn gemv_avx512(x: *const f32, k: usize, w: *const u8, nrows: usize, y: *mut f32) {
        let rb = k / 32 * BYTES;
        let mut j = 0;
        // SAFETY: each tile covers rows j.. of the caller's nrows.
        unsafe {
            while j + 8 <= nrows {
                tile16::<8>(x, k, w.add(j * rb), y.add(j));
                j += 8;
            }
            while j < nrows {
                tile16::<1>(x, k, w.add(j * rb), y.add(j));
                j += 1;
            }
        }
    }

    #[inline(always)]
    unsafe fn widen8(p: *const u8, d: __m256) -> __m256 {
        // SAFETY: p covers 8 bytes; AVX2 is enabled by the caller.
        unsafe { _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))), d) }
    }

    /// `NR` rows against one x row, two 8-lane accumulators per row, elements `16i..16i + 8`
    /// into the first and `16i + 8..16i + 16` into the second (the f32 row kernel's order).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile8<const NR: usize>(x: *const f32, k: usize, w: *const u8, y: *mut f32) {
        let rb = k / 32 * BYTES;
        // SAFETY: as `tile16`.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 2]; NR];
            let (mut o, mut p) = (0, 0);
            while p < k {
                for j in 0..NR {
                    let b = w.add(j * rb + o);
                    let d = _mm256_set1_ps(scale(b));
                    for h in 0..4 {
                        let xv = _mm256_loadu_ps(x.add(p + 8 * h));
                        acc[j][h % 2] = _mm256_fmadd_ps(xv, widen8(b.add(2 + 8 * h), d), acc[j][h % 2]);
                    }
                }
                o += BYTES;
                p += 32;
            }
            for j in 0..NR {
                *y.add(j) = super::super::super::simd::avx2::hsum(_mm256_add_ps(acc[j][0], acc[j][1]));
            }
        }
    }

    /// # Safety
    /// AVX2 + FMA + F16C present; otherwise as [`gemv_avx512`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn gemv_avx2(x: *const f32, k: usize, w: *const u8, nrows: usize, y: *mut f32) {
        let rb = k / 32 * BYTES;
        let mut j = 0;
        // SAFETY: each tile covers rows j.. of the caller's nrows.
        unsafe {
            while j + 4 <= nrows {
                tile8::<4>(x, k, w.add(j * rb), y.add(j));
                j += 4;
            }
            while j < nrows {
                tile8::<1>(x, k, w.add(j * rb), y.add(j));
                j += 1;
            }
        }
    }
}

/// Whether `ty` runs here when activations stay f32.
pub fn handles(ty: GgmlType) -> bool {
    ty == GgmlType::Q8_0
}

#[cfg(test)]
#[path = "q8f32_tests.rs"]
mod tests;
