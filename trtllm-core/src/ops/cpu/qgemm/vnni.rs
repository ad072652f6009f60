//! AVX-512 VNNI dot products of rows of 32-element ggml blocks (Q8_0, Q4_0, Q4_1, Q5_0,
//! Q5_1) with an int8 activation row: two blocks per 512-bit vector, one `vpdpbusd`
//! (u8 x i8 -> i32, no saturation) per pair, four weight rows per pass (the activation pair is
//! loaded once for all four; each row is its own dependency chain).
//!
//! - Nibble types unpack a pair as `[lo_i, lo_i+1, hi_i, hi_i+1]` (16 bytes each); the
//!   activations come in the same order ([`super::QAct::pairs`]). Q5's fifth bits are the
//!   64-bit byte mask built from the two `qh` words.
//! - Q8_0 reads its bytes as unsigned `q ^ 0x80 = q + 128` and subtracts `128 * s` per block.
//! - Scales: a first pass per row turns the f16 `d` (and `m`) of eight blocks at a time (one
//!   gather, one conversion) into `d * dx` and the row's offset term, so the main loop only
//!   loads and spreads the pair's two scales.

use std::arch::x86_64::*;

use super::ActRow;
use crate::gguf::GgmlType;

/// Blocks whose scales the first pass prepares at a time.
const CHUNK: usize = 64;

#[inline(always)]
unsafe fn u32_at(p: *const u8) -> u32 {
    // SAFETY: the caller's pointer covers 4 bytes.
    unsafe { std::ptr::read_unaligned(p.cast::<u32>()) }
}

/// A pair of 32-element blocks as 64 unsigned bytes, in the activation order of its kind.
trait Pair {
    const BYTES: usize;
    /// `q - OFFSET` is the element (0 when a min is stored instead).
    const OFFSET: f32;
    const HAS_MIN: bool;
    /// Nibble order (`[lo_i, lo_i+1, hi_i, hi_i+1]`) rather than natural order.
    const NIBBLES: bool;
    unsafe fn unpack(b0: *const u8, b1: *const u8) -> __m512i;
}

#[inline(always)]
unsafe fn nibbles(q0: *const u8, q1: *const u8) -> __m512i {
    // SAFETY: 16 bytes at each pointer.
    unsafe {
        let y = _mm256_set_m128i(_mm_loadu_si128(q1.cast()), _mm_loadu_si128(q0.cast()));
        let z = _mm512_inserti64x4(_mm512_castsi256_si512(y), _mm256_srli_epi16(y, 4), 1);
        _mm512_and_si512(z, _mm512_set1_epi8(0x0F))
    }
}

/// Bit 4 of each element of a Q5 pair in nibble order, from the blocks' `qh` words.
#[inline(always)]
unsafe fn fifth(q: __m512i, h0: u32, h1: u32) -> __m512i {
    let m = (h0 & 0xFFFF) as u64
        | ((h1 & 0xFFFF) as u64) << 16
        | ((h0 >> 16) as u64) << 32
        | ((h1 >> 16) as u64) << 48;
    // SAFETY: register-only AVX-512BW intrinsics, enabled by the caller.
    unsafe { _mm512_or_si512(q, _mm512_maskz_mov_epi8(m, _mm512_set1_epi8(0x10))) }
}

struct Q8_0;
impl Pair for Q8_0 {
    const BYTES: usize = 34;
    const OFFSET: f32 = 128.0;
    const HAS_MIN: bool = false;
    const NIBBLES: bool = false;
    #[inline(always)]
    unsafe fn unpack(b0: *const u8, b1: *const u8) -> __m512i {
        // SAFETY: 34 bytes at each block.
        unsafe {
            let y0 = _mm256_loadu_si256(b0.add(2).cast());
            let y1 = _mm256_loadu_si256(b1.add(2).cast());
            let z = _mm512_inserti64x4(_mm512_castsi256_si512(y0), y1, 1);
            _mm512_xor_si512(z, _mm512_set1_epi8(-128))
        }
    }
}
struct Q4_0;
impl Pair for Q4_0 {
    const BYTES: usize = 18;
    const OFFSET: f32 = 8.0;
    const HAS_MIN: bool = false;
    const NIBBLES: bool = true;
    #[inline(always)]
    unsafe fn unpack(b0: *const u8, b1: *const u8) -> __m512i {
        // SAFETY: 18 bytes at each block.
        unsafe { nibbles(b0.add(2), b1.add(2)) }
    }
}
struct Q4_1;
impl Pair for Q4_1 {
    const BYTES: usize = 20;
    const OFFSET: f32 = 0.0;
    const HAS_MIN: bool = true;
    const NIBBLES: bool = true;
    #[inline(always)]
    unsafe fn unpack(b0: *const u8, b1: *const u8) -> __m512i {
        // SAFETY: 20 bytes at each block.
        unsafe { nibbles(b0.add(4), b1.add(4)) }
    }
}
struct Q5_0;
impl Pair for Q5_0 {
    const BYTES: usize = 22;
    const OFFSET: f32 = 16.0;
    const HAS_MIN: bool = false;
    const NIBBLES: bool = true;
    #[inline(always)]
    unsafe fn unpack(b0: *const u8, b1: *const u8) -> __m512i {
        // SAFETY: 22 bytes at each block.
        unsafe { fifth(nibbles(b0.add(6), b1.add(6)), u32_at(b0.add(2)), u32_at(b1.add(2))) }
    }
}
struct Q5_1;
impl Pair for Q5_1 {
    const BYTES: usize = 24;
    const OFFSET: f32 = 0.0;
    const HAS_MIN: bool = true;
    const NIBBLES: bool = true;
    #[inline(always)]
    unsafe fn unpack(b0: *const u8, b1: *const u8) -> __m512i {
        // SAFETY: 24 bytes at each block.
        unsafe { fifth(nibbles(b0.add(8), b1.add(8)), u32_at(b0.add(4)), u32_at(b1.add(4))) }
    }
}

/// The scale pass of one row for blocks `c0..c1` (`c1 - c0` even, at most `CHUNK`): `sc[2 j]
/// = d_j * dx_j` for block `c0 + j`, and the row's offset term added to `off` (`m_j * sx_j`, or
/// `-OFFSET * d_j * sx_j`). Eight blocks at a time: one gather of the blocks' first 4 bytes
/// (`d` and `m`, or `d` and two quant bytes), one f16 conversion, one multiply by the
/// activations' interleaved `[dx, sx]`.
#[inline(always)]
unsafe fn scales<T: Pair>(
    row: *const u8,
    c0: usize,
    c1: usize,
    ds: *const f32,
    sc: &mut [f32; 2 * CHUNK],
    off: &mut f32,
) {
    // SAFETY: blocks c0..c1 of the row and entries 2 c0 .. 2 c1 of ds exist (the caller's
    // contract); sc holds 2 * CHUNK; the features are enabled by the caller.
    unsafe {
        let b = T::BYTES as i32;
        let idx = _mm256_setr_epi32(0, b, 2 * b, 3 * b, 4 * b, 5 * b, 6 * b, 7 * b);
        let mut offv = _mm512_setzero_ps();
        let mut i = c0;
        while i < c1 {
            let n = (c1 - i).min(8);
            let lanes: u16 = if n == 8 { 0xFFFF } else { (1u16 << (2 * n)) - 1 };
            let words = if n == 8 {
                _mm256_i32gather_epi32::<1>(row.add(T::BYTES * i).cast(), idx)
            } else {
                _mm256_mmask_i32gather_epi32::<1>(
                    _mm256_setzero_si256(),
                    ((1u16 << n) - 1) as u8,
                    idx,
                    row.add(T::BYTES * i).cast(),
                )
            };
            // [d0, m0, d1, m1, ...] (m: the next two bytes for types without a min).
            let dm = _mm512_cvtph_ps(words);
            let x = _mm512_maskz_loadu_ps(lanes, ds.add(2 * i));
            if T::HAS_MIN {
                let p = _mm512_mul_ps(dm, x); // [d dx, m sx, ...]
                _mm512_storeu_ps(sc.as_mut_ptr().add(2 * (i - c0)), p);
                offv = _mm512_mask_add_ps(offv, 0xAAAA & lanes, offv, p);
            } else {
                let p = _mm512_mul_ps(_mm512_moveldup_ps(dm), x); // [d dx, d sx, ...]
                _mm512_storeu_ps(sc.as_mut_ptr().add(2 * (i - c0)), p);
                offv = _mm512_mask_add_ps(offv, 0xAAAA & lanes, offv, p);
            }
            i += n;
        }
        let o = _mm512_reduce_add_ps(offv);
        *off += if T::HAS_MIN { o } else { -T::OFFSET * o };
    }
}

/// Four rows (`rb` bytes apart from `w`) against one activation row (`xs`: its values in the
/// order `T` unpacks to, `nb` even; `ds`: its `[d, s]` per block, interleaved).
#[inline(always)]
unsafe fn four_rows<T: Pair>(
    w: *const u8,
    rb: usize,
    a: ActRow<'_>,
    ds: *const f32,
    xs: *const u8,
    out: &mut [f32],
) {
    let nb = a.d.len();
    let mut off = [0f32; 4];
    let mut sc = [[0f32; 2 * CHUNK]; 4];
    // SAFETY: AVX-512 F/BW/DQ/VL/VNNI + F16C are enabled by the caller; rows r < 4 of w hold nb
    // blocks; xs holds 32 * nb bytes, ds 2 * nb floats.
    unsafe {
        super::prefetch_ahead(w, 4 * rb);
        // Lanes of block i (4 or 8 per half) read [S_i, M_i, S_i+1, M_i+1] entry 0 or 2.
        let idx = if T::NIBBLES {
            _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2)
        } else {
            _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2)
        };
        let mut acc = [_mm512_setzero_ps(); 4];
        for c0 in (0..nb).step_by(CHUNK) {
            let c1 = (c0 + CHUNK).min(nb);
            for (r, sc) in sc.iter_mut().enumerate() {
                scales::<T>(w.add(r * rb), c0, c1, ds, sc, &mut off[r]);
            }
            for i in (c0..c1).step_by(2) {
                let x = _mm512_loadu_si512(xs.add(32 * i).cast());
                for r in 0..4 {
                    let b = w.add(r * rb + T::BYTES * i);
                    let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), T::unpack(b, b.add(T::BYTES)), x);
                    let pair = _mm_loadu_ps(sc[r].as_ptr().add(2 * (i - c0)));
                    let s = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(pair));
                    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc[r]);
                }
            }
        }
        for r in 0..4 {
            out[r] = _mm512_reduce_add_ps(acc[r]) + off[r];
        }
    }
}

/// Whether this tier handles `ty` at `nb` blocks per row.
pub fn handles(ty: GgmlType, nb: usize) -> bool {
    use GgmlType::*;
    nb.is_multiple_of(2) && matches!(ty, Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1)
}

/// `out[j] = dot(row j of w, a)` for the rows of `w` in groups of four (the caller does the
/// rest), returning how many rows were done.
///
/// # Safety
/// AVX-512 F/BW/DQ/VL/VNNI, FMA and F16C must be available; `handles(ty, a.d.len())`; `w`
/// holds `out.len()` rows of `rb` bytes; `ds` is `a`'s `[d, s]` per block, interleaved;
/// `pairs` is `a`'s values in nibble pair order.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn rows(
    ty: GgmlType,
    w: &[u8],
    rb: usize,
    a: ActRow<'_>,
    ds: &[f32],
    pairs: &[i8],
    out: &mut [f32],
) -> usize {
    let n = out.len() / 4 * 4;
    let ds = ds.as_ptr();
    let natural = a.qs.as_ptr().cast::<u8>();
    let pairs = pairs.as_ptr().cast::<u8>();
    for r in (0..n).step_by(4) {
        // SAFETY: rows r..r+4 are inside w (n <= out.len() rows); the activation orders match
        // each kind; the features are enabled above.
        unsafe {
            let wp = w.as_ptr().add(r * rb);
            let o = &mut out[r..r + 4];
            match ty {
                GgmlType::Q8_0 => four_rows::<Q8_0>(wp, rb, a, ds, natural, o),
                GgmlType::Q4_0 => four_rows::<Q4_0>(wp, rb, a, ds, pairs, o),
                GgmlType::Q4_1 => four_rows::<Q4_1>(wp, rb, a, ds, pairs, o),
                GgmlType::Q5_0 => four_rows::<Q5_0>(wp, rb, a, ds, pairs, o),
                GgmlType::Q5_1 => four_rows::<Q5_1>(wp, rb, a, ds, pairs, o),
                _ => return 0,
            }
        }
    }
    n
}
