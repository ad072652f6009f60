//! The AVX-512 prefill GEMM for 2-byte weights (bf16, f16) at m >= [`MIN_ROWS`]: outer
//! products instead of dot products, so no horizontal reductions and 24 accumulators.
//!
//! - x is packed once per call into strips of 32 rows, transposed: `xt[strip][p][0..32]` (the
//!   last strip zero-padded), on the pool.
//! - Each thread takes its weight rows [`NR`] at a time, widens them into an f32 panel (rows of
//!   k, in L1/L2) and, for every strip of its L2-sized block of strips, runs the micro-kernel:
//!   per k step two 16-row x vectors times NR broadcast weights, 2 x NR FMAs into
//!   `acc[v][j] = y[32 s + 16 v .. + 16, j]`, then the 32 x NR tile is transposed into y.
//!
//! Every output is one f32 FMA chain over k in order (a naive dot product's rounding). Measured
//! on the 2-core Xeon VM, one thread, 512 x 576 x 1536: 133-143 GFLOP/s (NR 12-14; the core's
//! FMA peak ~140) against 88-109 for the 4 x 4 .. 4 x 6 dot-product tiles (docs/perf-notes.md).

// Register arrays are indexed by const loop counters on purpose (they unroll into registers).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::super::pool::{self, SendPtr};
use super::super::simd::avx512::tail_mask;

/// From this many x rows up, 2-byte weights take this kernel (one full strip).
pub const MIN_ROWS: usize = 32;
/// Weight rows per micro-kernel call (2 x 12 accumulators + 2 x vectors + the broadcast).
const NR: usize = 12;
/// Rows per strip of packed x (two vectors).
const STRIP: usize = 32;

thread_local! {
    /// The calling thread's packed x (kept between calls: no allocation per op once grown).
    static XT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `y = x @ w^T` for 2-byte weights `w` (`bf16` when `f16` is false): x `[m, k]`, w `[n, k]`,
/// y `[m, n]`; m >= 1, k >= 1, n >= 1.
///
/// # Safety
/// AVX-512 (F, BW, VL, FMA, F16C) present; x holds m * k, w n * k, y m * n elements.
pub unsafe fn matmul(x: &[f32], m: usize, k: usize, w: *const u16, f16: bool, n: usize, y: &mut [f32]) {
    let strips = m.div_ceil(STRIP);
    let mut xt = XT.with(|b| std::mem::take(&mut *b.borrow_mut()));
    xt.clear();
    xt.resize(strips * STRIP * k, 0.0);
    let xp = SendPtr(xt.as_mut_ptr());
    pool::run_parts(pool::num_threads().min(strips), &|part, np| {
        for s in pool::split(strips, part, np, 1) {
            let rows = (m - s * STRIP).min(STRIP);
            // SAFETY: strip s of xt (STRIP * k values) is written by this part only; the rows
            // read are inside x.
            unsafe { pack_strip(x.as_ptr().add(s * STRIP * k), rows, k, xp.get().add(s * STRIP * k)) };
        }
    });
    let parts = (2 * pool::num_threads()).min(n.div_ceil(4 * NR));
    let (yp, wp) = (SendPtr(y.as_mut_ptr()), SendPtr(w.cast_mut()));
    let xt_ptr = SendPtr(xt.as_mut_ptr());
    pool::run_parts(parts, &|part, np| {
        let r = pool::split(n, part, np, NR);
        if r.is_empty() {
            return;
        }
        // SAFETY: this part writes columns r of y's m rows (disjoint from the other parts');
        // w holds rows r; xt holds `strips` packed strips; AVX-512 checked by the caller.
        unsafe {
            let w = wp.get().cast_const().add(r.start * k);
            part_rows(xt_ptr.get(), m, k, w, f16, r.len(), yp.get().add(r.start), n)
        }
    });
    XT.with(|b| *b.borrow_mut() = xt);
}

/// Rows `rows` (<= 32) of x, each of k, into one strip `[k][32]` (rows past `rows` stay 0).
///
/// # Safety
/// x valid for rows * k reads, out for 32 * k writes.
unsafe fn pack_strip(x: *const f32, rows: usize, k: usize, out: *mut f32) {
    for i in 0..rows {
        for p in 0..k {
            // SAFETY: i < rows, p < k: inside both buffers.
            unsafe { *out.add(p * STRIP + i) = *x.add(i * k + p) };
        }
    }
}

/// One thread's `nrows` weight rows against every strip, blocked over strips for L2.
///
/// # Safety
/// As [`matmul`], for the part's rows: w `nrows` rows of k, y offset to the first column.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn part_rows(
    xt: *const f32,
    m: usize,
    k: usize,
    w: *const u16,
    f16: bool,
    nrows: usize,
    y: *mut f32,
    ys: usize,
) {
    let strips = m.div_ceil(STRIP);
    // ~1 MiB of packed x per block: it stays in L2 while the part's panels pass over it.
    let block = (1024 * 1024 / (STRIP * k * 4)).max(1);
    let mut panel = super::take_panel(NR * k);
    let pp = panel.as_mut_ptr();
    // SAFETY: panel rows and strips stay inside their buffers; tiles inside m x nrows.
    unsafe {
        let mut s0 = 0;
        while s0 < strips {
            let s1 = (s0 + block).min(strips);
            let mut j = 0;
            while j < nrows {
                let nr = (nrows - j).min(NR);
                widen(w.add(j * k), nr, k, f16, pp);
                for s in s0..s1 {
                    let rows = (m - s * STRIP).min(STRIP);
                    let (xs, yt) = (xt.add(s * STRIP * k), y.add(s * STRIP * ys + j));
                    match nr {
                        NR => kernel::<NR>(xs, pp, k, yt, ys, rows),
                        4..=11 => {
                            kernel::<4>(xs, pp, k, yt, ys, rows);
                            for q in 4..nr {
                                kernel::<1>(xs, pp.add(q * k), k, yt.add(q), ys, rows);
                            }
                        }
                        _ => {
                            for q in 0..nr {
                                kernel::<1>(xs, pp.add(q * k), k, yt.add(q), ys, rows);
                            }
                        }
                    }
                }
                j += nr;
            }
            s0 = s1;
        }
    }
    super::put_panel(panel);
}

/// `nr` weight rows of k (bf16 or f16) into f32 panel rows of k.
///
/// # Safety
/// w valid for nr * k reads, panel for nr * k writes; AVX-512 present.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn widen(w: *const u16, nr: usize, k: usize, f16: bool, panel: *mut f32) {
    // SAFETY: masked loads and stores below nr * k.
    unsafe {
        let total = nr * k;
        let mut q = 0;
        while q < total {
            let msk = if q + 16 <= total { 0xffff } else { tail_mask(total - q) };
            let h = _mm256_maskz_loadu_epi16(msk, w.add(q).cast());
            let v = if f16 {
                _mm512_cvtph_ps(h)
            } else {
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
            };
            _mm512_mask_storeu_ps(panel.add(q), msk, v);
            q += 16;
        }
    }
}

/// One strip (32 rows, `rows` of them real) against `R` panel rows: `y[i][j]` for i < rows,
/// j < R.
///
/// # Safety
/// xs: a packed strip of k; panel: R rows of k; y: `rows` rows of stride ys with R writable
/// outputs; AVX-512 present.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn kernel<const R: usize>(
    xs: *const f32,
    panel: *const f32,
    k: usize,
    y: *mut f32,
    ys: usize,
    rows: usize,
) {
    // SAFETY: loads inside the strip and the panel rows; stores inside the caller's tile.
    unsafe {
        let mut a0 = [_mm512_setzero_ps(); R];
        let mut a1 = [_mm512_setzero_ps(); R];
        for p in 0..k {
            let x0 = _mm512_loadu_ps(xs.add(p * STRIP));
            let x1 = _mm512_loadu_ps(xs.add(p * STRIP + 16));
            for j in 0..R {
                let b = _mm512_set1_ps(*panel.add(j * k + p));
                a0[j] = _mm512_fmadd_ps(x0, b, a0[j]);
                a1[j] = _mm512_fmadd_ps(x1, b, a1[j]);
            }
        }
        // The tile, column-major (t[j][i]), then transposed into y's rows.
        let mut t = [[0f32; STRIP]; R];
        for j in 0..R {
            _mm512_storeu_ps(t[j].as_mut_ptr(), a0[j]);
            _mm512_storeu_ps(t[j].as_mut_ptr().add(16), a1[j]);
        }
        for i in 0..rows {
            let yi = y.add(i * ys);
            for j in 0..R {
                *yi.add(j) = t[j][i];
            }
        }
    }
}
