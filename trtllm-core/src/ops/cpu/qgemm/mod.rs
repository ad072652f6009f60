//! `y[m, n] = x[m, k] @ w[n, k]^T` with `w` in ggml blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
//! Q4_K, Q5_K, Q6_K), kept as stored in the GGUF file, as llama.cpp computes it: each row of x
//! is quantized to int8 in 32-element blocks (a scale per block; [`QAct`]), every weight block
//! is dotted with its activation block in integers (AVX2 `maddubs`, AVX-512 VNNI `vpdpbusd`,
//! or the scalar reference), and the block's integer sum is scaled in f32. K-quant
//! super-blocks apply their 6-bit sub-block scales and mins per 32 (Q4_K, Q5_K) or 16 (Q6_K)
//! elements; activations keep a scale per 32 elements for them too (finer than ggml's Q8_K
//! 256-element blocks, same integer path).
//!
//! Q8_0 weights may instead meet f32 activations ([`Q8Act::F32`], `q8f32.rs`): weights widened
//! in registers, f32 products in the f32 GEMM's order, bitwise the dequantize-then-f32 result.
//! `TRTLLM_Q8_0_ACT` picks the mode (`env.rs`).
//!
//! Work is split over weight rows between the pool's threads (each streams its own rows).
//! m = 1 (decode) is a GEMV; for m > 1 (prefill) each thread walks its rows in tiles of
//! `TILE` rows (a few KiB, L1-resident) and runs every activation row against the tile, so
//! the weights are read from memory once per GEMM.

use super::pool::{self, SendPtr};
use super::Isa;
use crate::gguf::GgmlType;

#[cfg(target_arch = "x86_64")]
mod avx2;
mod q8f32;
pub mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod vnni;

/// Elements per activation block.
pub const QK: usize = 32;
/// Weight rows per prefill tile.
const TILE: usize = 16;
/// Below this many multiply-adds a matmul runs on one thread.
const PARALLEL_MIN_MACS: usize = 32 * 1024;

/// Whether `ty` has a quantized kernel here.
pub fn supported(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q4K | Q5K | Q6K)
}

/// Elements per block of `ty` (32, or 256 for the K-quants): k must be a multiple.
pub fn block_len(ty: GgmlType) -> usize {
    ty.block().map_or(1, |(b, _)| b)
}

/// Activations quantized per 32-element block: `qs` int8 (`m * k`), and per block the scale
/// `d` (`x = d * q`) and `s = d * sum(q)`.
#[derive(Default)]
pub struct QAct {
    pub qs: Vec<i8>,
    pub d: Vec<f32>,
    pub s: Vec<f32>,
    /// `qs` with each pair of blocks `(i, i + 1)` (i even) reordered as
    /// `[x_i[..16], x_i+1[..16], x_i[16..], x_i+1[16..]]` (the VNNI tier's nibble order);
    /// empty unless asked for and the blocks per row are even.
    pub pairs: Vec<i8>,
    /// `[d, s]` per block, interleaved (with `pairs`).
    pub ds: Vec<f32>,
    k: usize,
}

/// One row of a [`QAct`].
#[derive(Clone, Copy)]
pub struct ActRow<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
}

impl QAct {
    /// Quantize `m` rows of `k` (a multiple of 32) values: `d = max|x| / 127`,
    /// `q = round(x / d)` (ggml's `quantize_row_q8_0`).
    pub fn quantize(&mut self, x: &[f32], m: usize, k: usize) {
        let nb = k / QK;
        self.k = k;
        self.qs.resize(m * k, 0);
        self.d.resize(m * nb, 0.0);
        self.s.resize(m * nb, 0.0);
        for (b, (xs, qs)) in x[..m * k].chunks_exact(QK).zip(self.qs.chunks_exact_mut(QK)).enumerate() {
            let amax = xs.iter().fold(0f32, |a, &v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (q, &v) in qs.iter_mut().zip(xs) {
                *q = (v * id).round() as i8;
                sum += *q as i32;
            }
            self.d[b] = d;
            self.s[b] = d * sum as f32;
        }
        self.pairs.clear();
    }

    /// Fill `pairs` (see the field).
    pub fn make_pairs(&mut self) {
        if !(self.k / QK).is_multiple_of(2) {
            return;
        }
        self.pairs.resize(self.qs.len(), 0);
        self.ds.clear();
        self.ds.extend(self.d.iter().zip(&self.s).flat_map(|(&d, &s)| [d, s]));
        for (src, dst) in self.qs.chunks_exact(2 * QK).zip(self.pairs.chunks_exact_mut(2 * QK)) {
            dst[..16].copy_from_slice(&src[..16]);
            dst[16..32].copy_from_slice(&src[32..48]);
            dst[32..48].copy_from_slice(&src[16..32]);
            dst[48..].copy_from_slice(&src[48..]);
        }
    }

    /// Row `i` of `pairs` and of `ds`.
    pub fn pair_row(&self, i: usize) -> (&[i8], &[f32]) {
        let nb = self.k / QK;
        match (self.pairs.get(i * self.k..(i + 1) * self.k), self.ds.get(2 * i * nb..2 * (i + 1) * nb)) {
            (Some(p), Some(ds)) => (p, ds),
            _ => (&[], &[]),
        }
    }

    pub fn row(&self, i: usize) -> ActRow<'_> {
        let nb = self.k / QK;
        ActRow {
            qs: &self.qs[i * self.k..(i + 1) * self.k],
            d: &self.d[i * nb..(i + 1) * nb],
            s: &self.s[i * nb..(i + 1) * nb],
        }
    }
}

thread_local! {
    /// The caller's quantized activations (kept between calls: no allocation per op once grown).
    static ACT: std::cell::RefCell<QAct> = std::cell::RefCell::new(QAct::default());
}

/// Bytes of one weight row of `k` elements of `ty`.
pub fn row_bytes(ty: GgmlType, k: usize) -> usize {
    ty.block().map_or(0, |(b, bytes)| k / b * bytes)
}

/// `y = x @ w^T`: x `[m, k]` f32, w `n` rows of `k` elements of `ty` (whole blocks), y `[m, n]`.
/// The caller checks `supported(ty)`, `k % block_len(ty) == 0` and the buffer sizes.
pub fn matmul(x: &[f32], m: usize, k: usize, ty: GgmlType, w: &[u8], n: usize, y: &mut [f32]) {
    matmul_parts(x, m, k, &[WeightPart { ty, w, n }], y);
}

/// Rows of a weight in one block type: `n` rows of `k` elements of `ty` in `w`.
#[derive(Clone, Copy)]
pub struct WeightPart<'a> {
    pub ty: GgmlType,
    pub w: &'a [u8],
    pub n: usize,
}

/// `y = x @ w^T` for a weight stored as parts of rows in different block types (a fused q/k/v
/// of Q5_0 and Q8_0): the activations are quantized once, each part runs its own type's kernel
/// into its columns of y (`[m, sum of n]`), and every thread takes a share of every part. The
/// caller checks what [`matmul`] says for each part.
pub fn matmul_parts(x: &[f32], m: usize, k: usize, parts: &[WeightPart<'_>], y: &mut [f32]) {
    let q8 = if crate::env::knobs().q8_0_int8_act { Q8Act::Int8 } else { Q8Act::F32 };
    matmul_parts_act(x, m, k, parts, y, q8)
}

/// What Q8_0 weights are multiplied with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Q8Act {
    /// The f32 activations as they are (`q8f32.rs`: the dequantize-then-f32 result, bitwise).
    F32,
    /// Activations quantized to int8 per 32 elements, integer dots (llama.cpp's `q8_0 x q8_0`).
    Int8,
}

/// [`matmul_parts`] with the Q8_0 mode given.
pub fn matmul_parts_act(x: &[f32], m: usize, k: usize, parts: &[WeightPart<'_>], y: &mut [f32], q8: Q8Act) {
    let n: usize = parts.iter().map(|p| p.n).sum();
    assert!(
        parts.iter().all(|p| supported(p.ty)
            && k.is_multiple_of(block_len(p.ty))
            && p.w.len() >= p.n * row_bytes(p.ty, k))
            && x.len() >= m * k
            && y.len() >= m * n,
        "qgemm::matmul: arguments"
    );
    if m == 0 || n == 0 {
        return;
    }
    let isa = super::isa();
    let f32_act: Vec<bool> = parts.iter().map(|p| q8 == Q8Act::F32 && q8f32::handles(p.ty)).collect();
    ACT.with(|act| {
        let mut act = act.borrow_mut();
        if f32_act.contains(&false) {
            act.quantize(x, m, k);
        }
        let vnni: Vec<bool> = parts.iter().zip(&f32_act).map(|(p, &f)| !f && vnni_ok(isa, p.ty, k)).collect();
        if vnni.contains(&true) {
            act.make_pairs();
        }
        let act = &*act;
        let np =
            if m * n * k < PARALLEL_MIN_MACS { 1 } else { (2 * pool::num_threads()).min(n.div_ceil(TILE)) };
        let yp = SendPtr(y.as_mut_ptr());
        pool::run_parts(np, &|part, np| {
            let mut col = 0;
            for ((p, &vn), &fa) in parts.iter().zip(&vnni).zip(&f32_act) {
                let rb = row_bytes(p.ty, k);
                let r = pool::split(p.n, part, np, TILE);
                if fa {
                    // SAFETY: columns col + r of y's m rows (stride n) are this part's (as below);
                    // `isa` is the detected tier.
                    unsafe {
                        q8f32::rows(
                            isa,
                            x,
                            m,
                            k,
                            &p.w[r.start * rb..r.end * rb],
                            r.len(),
                            yp.get().add(col + r.start),
                            n,
                        )
                    };
                    col += p.n;
                    continue;
                }
                for t0 in r.clone().step_by(TILE) {
                    let t1 = (t0 + TILE).min(r.end);
                    for i in 0..m {
                        let a = act.row(i);
                        let mut out = [0f32; TILE];
                        let (pairs, ds) = if vn { act.pair_row(i) } else { (&[][..], &[][..]) };
                        rows(isa, p.ty, &p.w[t0 * rb..t1 * rb], rb, a, (pairs, ds), &mut out[..t1 - t0]);
                        // SAFETY: row i of y has n columns; this part writes columns col + t0..
                        // col + t1 of its own range r of weight part p (disjoint between parts
                        // and between weight parts), and y outlives `run_parts`.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                out.as_ptr(),
                                yp.get().add(i * n + col + t0),
                                t1 - t0,
                            );
                        }
                    }
                }
                col += p.n;
            }
        });
    });
}

/// How far ahead of the rows being read the weight stream is prefetched, in bytes
/// (`QGEMM_SPEED`: 2.06 -> 1.47 ms for the 49152 x 576 Q8_0 head streamed from memory at
/// 4 KiB, 1.73 ms at 1 KiB, 1.50 ms at 16 KiB).
#[cfg(target_arch = "x86_64")]
const PREFETCH: usize = 4096;

/// Prefetch (into L2) the `len` bytes that lie `PREFETCH` bytes after `w`: each group of rows
/// asks for the lines of the group as far ahead, so the stream is in flight before the scale
/// gathers and loads wait on it. A prefetch never faults: lines past the end of the weights
/// cost only the request.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_ahead(w: *const u8, len: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
    let p = w.wrapping_add(PREFETCH);
    let mut o = 0;
    while o < len {
        // SAFETY: a prefetch of any address is allowed (it reads nothing and never faults).
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(o).cast()) };
        o += 64;
    }
}

/// Whether the AVX-512 VNNI tier runs `ty` with rows of `k` (the ISA tier is AVX-512 and the
/// CPU has VNNI).
fn vnni_ok(isa: Isa, ty: GgmlType, k: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let has = *HAS.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512dq")
        });
        has && isa == Isa::Avx512 && vnni::handles(ty, k / QK)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, ty, k);
        false
    }
}

/// `out[j] = dot(w row j, a)` for the `out.len()` rows of `w` (each `rb` bytes); `pairs` is
/// `a`'s values in pair order and its interleaved `[d, s]` when the VNNI tier runs (else empty).
fn rows(isa: Isa, ty: GgmlType, w: &[u8], rb: usize, a: ActRow<'_>, vn: (&[i8], &[f32]), out: &mut [f32]) {
    let (pairs, ds) = vn;
    #[cfg(target_arch = "x86_64")]
    let (w, out) = if pairs.is_empty() {
        (w, out)
    } else {
        // SAFETY: `pairs` is non-empty only when `vnni_ok` found AVX-512 F/BW/DQ/VL + VNNI (the
        // AVX-512 tier also means FMA and F16C) and an even block count; `w` holds `out.len()`
        // rows of `rb` bytes; `pairs` is `a` in pair order.
        let done = unsafe { vnni::rows(ty, w, rb, a, ds, pairs, out) };
        (&w[done * rb..], &mut out[done..])
    };
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx2 {
        // SAFETY: AVX2 + FMA + F16C were detected (`Isa::Avx2` or above); `w` is `out.len()`
        // whole rows of `ty` of `32 * a.d.len()` elements, `a` one activation row of that k.
        unsafe { avx2::rows(ty, w, rb, a, out) };
        return;
    }
    let _ = (isa, pairs, ds);
    for (o, wr) in out.iter_mut().zip(w.chunks_exact(rb)) {
        *o = scalar::dot_row(ty, wr, a);
    }
}
