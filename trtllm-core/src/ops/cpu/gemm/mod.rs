//! `y[m, n] = x[m, k] @ w[n, k]^T` with f32, bf16 or f16 weights and f32 accumulation.
//!
//! The weights stay in their checkpoint layout (`[out, in]`, rows contiguous along k), so one
//! kernel family serves decode (m = 1) and prefill without a packed copy: every output is a dot
//! product, computed on register tiles of `MR` x-rows by `NR` w-rows (`MR * NR` accumulators of
//! one vector each), streaming k; bf16 weights are widened in registers (`u16 -> u32 << 16` is
//! exactly bf16 -> f32), f16 through F16C. Tails along k use masked loads (AVX-512) or a scalar
//! loop (AVX2). The accumulators are reduced 4 at a time with `hadd`.
//!
//! - m <= 8 with f32 weights (AVX-512; decode, speculative verification, small batches): all m
//!   x rows against 3-8 weight rows at a time, each weight row prefetched ahead (the step is
//!   bound by the cache misses a core keeps in flight, see docs/perf-notes.md).
//! - m <= 4 otherwise: one weight row at a time against all m x rows, so each thread reads its
//!   weights as one sequential stream (memory bound; interleaving 8 rows was 25% slower for
//!   bf16, see docs/perf-notes.md).
//! - m > 4 (prefill): x is cut into L2-sized blocks of rows (`m_block`); for each block, every
//!   4-row w tile is loaded once into L1 and used by all 4-row x tiles of the block (compute
//!   bound). bf16/f16 tiles are widened once into an f32 panel for the whole block.
//!
//! - m >= 32 with 2-byte weights on AVX-512 ([`outer`]): x packed once into transposed
//!   32-row strips, outer-product micro-kernel (32 x 12 outputs in registers, no reductions).
//!
//! Work is split over n (weight rows) between the pool's threads, so each thread streams its
//! own part of the weights.
//!
//! One file per ISA tier (`scalar`, `avx2`, `avx512`); this one holds the dispatch over the
//! tiers (`rows`), the cache blocking (`m_block`), the per-thread panel for widened weight tiles
//! and the element widening of the scalar paths and tails ([`Elem`]).

use half::{bf16, f16};

use super::pool::{self, SendPtr};
#[cfg(target_arch = "x86_64")]
use super::Isa;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod outer;
mod scalar;

#[cfg(target_arch = "x86_64")]
pub(in crate::ops::cpu) use avx512::store_row;

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
    #[cfg(target_arch = "x86_64")]
    if m >= outer::MIN_ROWS && super::isa() == Isa::Avx512 {
        let w2 = match w {
            Weights::Bf16(w) => Some((w.as_ptr().cast::<u16>(), false)),
            Weights::F16(w) => Some((w.as_ptr().cast::<u16>(), true)),
            Weights::F32(_) => None,
        };
        if let Some((wp, f16)) = w2 {
            // SAFETY: the AVX-512 tier was detected; the buffer sizes were asserted above.
            unsafe { outer::matmul(x, m, k, wp, f16, n, y) };
            return;
        }
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
pub(in crate::ops::cpu) unsafe fn rows(
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
    /// The element as f32 (exact for every implementor).
    fn widen(self) -> f32;
}
impl Elem for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
}
impl Elem for bf16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}
impl Elem for f16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
}
/// Raw bf16 bits.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Bf16Bits(pub u16);
impl Elem for Bf16Bits {
    #[inline(always)]
    fn widen(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}
/// Raw f16 bits.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct F16Bits(pub u16);
impl Elem for F16Bits {
    #[inline(always)]
    fn widen(self) -> f32 {
        f16::from_bits(self.0).to_f32()
    }
}

#[cfg(test)]
#[path = "small_tests.rs"]
mod small_tests;

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
