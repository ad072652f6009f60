//! `y[m, n] = x[m, k] @ w[n, k]^T` with f32, bf16 or f16 weights and f32 accumulation.
//!
//! The weights stay in their checkpoint layout (`[out, in]`, rows contiguous along k), so one
//! kernel family serves decode (m = 1) and prefill without a packed copy: every output is a dot
//! product, computed on register tiles of `MR` x-rows by `NR` w-rows (`MR * NR` accumulators of
//! one vector each), streaming k; bf16 weights are widened in registers (`u16 -> u32 << 16` is
//! exactly bf16 -> f32), f16 through F16C. Tails along k use masked loads (AVX-512) or a scalar
//! loop (AVX2). The accumulators are reduced 4 at a time with `hadd`.
//!
//! - m <= 4 (decode, small batches): one weight row at a time against all m x rows, so each
//!   thread reads its weights as one sequential stream (memory bound; interleaving 8 rows was
//!   25% slower for bf16, see docs/perf-notes.md).
//! - m > 4 (prefill): x is cut into L2-sized blocks of rows (`m_block`); for each block, every
//!   4-row w tile is loaded once into L1 and used by all 4-row x tiles of the block (compute
//!   bound). bf16/f16 tiles are widened once into an f32 panel for the whole block.
//!
//! Work is split over n (weight rows) between the pool's threads, so each thread streams its
//! own part of the weights.

// Register arrays are indexed by const loop counters on purpose (they unroll into registers).
#![allow(clippy::needless_range_loop)]

use half::{bf16, f16};

use super::pool::{self, SendPtr};
#[cfg(target_arch = "x86_64")]
use super::Isa;

/// Weights `[n, k]`, row-major.
#[derive(Clone, Copy)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
    F16(&'a [f16]),
}

impl Weights<'_> {
    fn len(&self) -> usize {
        match self {
            Weights::F32(w) => w.len(),
            Weights::Bf16(w) => w.len(),
            Weights::F16(w) => w.len(),
        }
    }
}

/// Below this many multiply-adds a matmul runs on one thread (the pool's handshake is ~1 us).
const PARALLEL_MIN_FMAS: usize = 32 * 1024;
/// Parts per pool thread: claimed dynamically, so a descheduled thread's share is picked up by
/// the others; few enough that each part is one long sequential stream (2 measured best).
const PARTS_PER_THREAD: usize = 2;

/// `y = x @ w^T`: x `[m, k]`, w `[n, k]`, y `[m, n]` (overwritten).
pub fn matmul(x: &[f32], m: usize, k: usize, w: Weights<'_>, n: usize, y: &mut [f32]) {
    assert!(x.len() >= m * k && w.len() >= n * k && y.len() >= m * n, "matmul: buffer sizes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        y[..m * n].fill(0.0);
        return;
    }
    // A few parts per thread, claimed dynamically (a descheduled thread's share is picked up).
    let parts = if m * n * k < PARALLEL_MIN_FMAS {
        1
    } else {
        (PARTS_PER_THREAD * pool::num_threads()).min(n.div_ceil(16))
    };
    let yp = SendPtr(y.as_mut_ptr());
    pool::run_parts(parts, &|part, np| {
        let r = pool::split(n, part, np, 16);
        if r.is_empty() {
            return;
        }
        // SAFETY: x holds m*k, w holds n*k (asserted above); this part writes columns
        // r.start..r.end of each of the m rows of y (row stride n), disjoint from the other
        // parts' columns, and y outlives `run_parts`.
        unsafe { rows(x.as_ptr(), m, k, w, r.start, r.len(), yp.get().add(r.start), n) }
    });
}

/// Weight rows `r0 .. r0 + nrows` into `y` (already offset to column r0; row stride `ys`).
///
/// # Safety
/// `x` valid for `m * k` reads; `w` holds rows `r0 .. r0 + nrows` of length k; `y` valid for
/// writes of `nrows` columns in each of `m` rows of stride `ys`.
#[allow(clippy::too_many_arguments)]
unsafe fn rows(
    x: *const f32,
    m: usize,
    k: usize,
    w: Weights<'_>,
    r0: usize,
    nrows: usize,
    y: *mut f32,
    ys: usize,
) {
    let off = r0 * k;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the tier was detected on this CPU; `off` is inside w (the caller's rows), and the
    // pointer contracts are forwarded unchanged.
    unsafe {
        match (super::isa(), w) {
            (Isa::Avx512, Weights::F32(w)) => {
                return avx512::block_f32(x, m, k, w.as_ptr().add(off), nrows, y, ys)
            }
            (Isa::Avx512, Weights::Bf16(w)) => {
                return avx512::block_bf16(x, m, k, w.as_ptr().add(off).cast(), nrows, y, ys)
            }
            (Isa::Avx512, Weights::F16(w)) => {
                return avx512::block_f16(x, m, k, w.as_ptr().add(off).cast(), nrows, y, ys)
            }
            (Isa::Avx2, Weights::F32(w)) => {
                return avx2::block_f32(x, m, k, w.as_ptr().add(off), nrows, y, ys)
            }
            (Isa::Avx2, Weights::Bf16(w)) => {
                return avx2::block_bf16(x, m, k, w.as_ptr().add(off).cast(), nrows, y, ys)
            }
            (Isa::Avx2, Weights::F16(w)) => {
                return avx2::block_f16(x, m, k, w.as_ptr().add(off).cast(), nrows, y, ys)
            }
            _ => {}
        }
    }
    let end = off + nrows * k;
    // SAFETY: contracts forwarded.
    unsafe {
        match w {
            Weights::F32(w) => scalar::block(x, m, k, &w[off..end], nrows, y, ys),
            Weights::Bf16(w) => scalar::block(x, m, k, &w[off..end], nrows, y, ys),
            Weights::F16(w) => scalar::block(x, m, k, &w[off..end], nrows, y, ys),
        }
    }
}

/// Rows of x per cache block of the prefill GEMM: the block (~512 KiB of f32) stays in L2
/// while the thread's weight rows stream past it once, so the weights are read
/// `m / m_block` times in all (64-row blocks read them 8 times for a 512-token prompt).
fn m_block(k: usize) -> usize {
    ((512 * 1024 / (4 * k.max(1))).clamp(16, 256)) / 4 * 4
}

thread_local! {
    /// Per-thread f32 panel for widened weight tiles (kept between calls: no allocation per op
    /// once grown).
    static PANEL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// This thread's panel, at least `n` long (returned with [`put_panel`]).
#[cfg(target_arch = "x86_64")]
fn take_panel(n: usize) -> Vec<f32> {
    let mut v = PANEL.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if v.len() < n {
        v.resize(n, 0.0);
    }
    v
}

#[cfg(target_arch = "x86_64")]
fn put_panel(v: Vec<f32>) {
    PANEL.with(|p| *p.borrow_mut() = v);
}

/// A weight element, widened to f32 (scalar paths and tails).
pub trait Elem: Copy {
    fn f(self) -> f32;
}
impl Elem for f32 {
    #[inline(always)]
    fn f(self) -> f32 {
        self
    }
}
impl Elem for bf16 {
    #[inline(always)]
    fn f(self) -> f32 {
        self.to_f32()
    }
}
impl Elem for f16 {
    #[inline(always)]
    fn f(self) -> f32 {
        self.to_f32()
    }
}
/// Raw bf16 bits.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Bf16Bits(pub u16);
impl Elem for Bf16Bits {
    #[inline(always)]
    fn f(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}
/// Raw f16 bits.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct F16Bits(pub u16);
impl Elem for F16Bits {
    #[inline(always)]
    fn f(self) -> f32 {
        f16::from_bits(self.0).to_f32()
    }
}

mod scalar {
    use super::Elem;

    /// # Safety
    /// `x` valid for `m * k` reads; `y` for writes of `w.len() / k` columns in `m` rows of
    /// stride `ys`.
    pub unsafe fn block<T: Elem>(
        x: *const f32,
        m: usize,
        k: usize,
        w: &[T],
        nrows: usize,
        y: *mut f32,
        ys: usize,
    ) {
        // SAFETY: see the contract.
        let x = unsafe { std::slice::from_raw_parts(x, m * k) };
        for j in 0..nrows {
            let wr = &w[j * k..(j + 1) * k];
            for i in 0..m {
                let xr = &x[i * k..(i + 1) * k];
                let mut acc = [0f32; 8];
                let (cx, cw) = (xr.chunks_exact(8), wr.chunks_exact(8));
                let (rx, rw) = (cx.remainder(), cw.remainder());
                for (a, b) in cx.zip(cw) {
                    for l in 0..8 {
                        acc[l] += a[l] * b[l].f();
                    }
                }
                let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
                for (a, b) in rx.iter().zip(rw) {
                    s += a * b.f();
                }
                // SAFETY: (i, j) is inside the output block.
                unsafe { *y.add(i * ys + j) = s };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
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
                            acc[i][1] =
                                _mm512_fmadd_ps(_mm512_loadu_ps(x.add(i * xs + p + 16)), w1, acc[i][1]);
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
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
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
        unsafe {
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()))))
        }
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
        Bf16Bits(v).f()
    }
    #[inline(always)]
    fn sc_f16(v: u16) -> f32 {
        F16Bits(v).f()
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
                            acc[i][1] =
                                _mm256_fmadd_ps(_mm256_loadu_ps(x.add(i * xs + p + 8)), w1, acc[i][1]);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GEMV bandwidth over 4 KiB pages vs transparent huge pages (Linux, `MADV_HUGEPAGE`).
    /// `cargo test --release -p trtllm-core --lib gemv_hugepages -- --ignored --nocapture`
    #[test]
    #[ignore]
    #[cfg(target_os = "linux")]
    fn gemv_hugepages() {
        extern "C" {
            fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
        }
        const MADV_HUGEPAGE: i32 = 14;
        let (k, n) = (576usize, 98304usize); // 226 MB of f32
        let bytes = n * k * 4;
        let layout = std::alloc::Layout::from_size_align(bytes, 2 << 20).expect("layout");
        for huge in [false, true, false, true] {
            // SAFETY: a fresh allocation of `bytes`, freed below; filled before it is read.
            let p = unsafe { std::alloc::alloc(layout) }.cast::<f32>();
            assert!(!p.is_null());
            if huge {
                // SAFETY: the range is our allocation.
                let r = unsafe { madvise(p.cast(), bytes, MADV_HUGEPAGE) };
                assert_eq!(r, 0);
            }
            // SAFETY: p holds n*k f32s.
            let w = unsafe { std::slice::from_raw_parts_mut(p, n * k) };
            for (i, v) in w.iter_mut().enumerate() {
                *v = (i % 7) as f32 * 0.1;
            }
            let x: Vec<f32> = (0..k).map(|i| i as f32 * 0.01).collect();
            let mut y = vec![0f32; n];
            matmul(&x, 1, k, Weights::F32(w), n, &mut y);
            let mut best = f64::INFINITY;
            for _ in 0..5 {
                let t = std::time::Instant::now();
                matmul(&x, 1, k, Weights::F32(w), n, &mut y);
                best = best.min(t.elapsed().as_secs_f64());
            }
            let thp = std::fs::read_to_string("/proc/self/smaps_rollup")
                .ok()
                .and_then(|s| s.lines().find(|l| l.starts_with("AnonHugePages")).map(|l| l.to_string()));
            println!("huge={huge}: {:.1} GB/s ({thp:?})", bytes as f64 / best / 1e9);
            // SAFETY: allocated above with this layout.
            unsafe { std::alloc::dealloc(p.cast(), layout) };
        }
    }
}
