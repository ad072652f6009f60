//! AVX2 dot products of a row of ggml blocks with an int8 activation row: weights unpacked to
//! 32 unsigned bytes per block, `_mm256_maddubs_epi16` (u8 x i8 -> pairs of i16) and
//! `_mm256_madd_epi16` (-> i32), or `_mm256_dpbusd_epi32` (AVX-512 VNNI on 256-bit vectors, one
//! instruction, no i16 saturation) where the CPU has it; each block's integer sum converted to
//! f32 and accumulated with its scales. Same arithmetic as `scalar.rs` (integer sums are exact;
//! the f32 order differs).

use std::arch::x86_64::*;

use super::ActRow;
use crate::gguf::GgmlType;

#[inline(always)]
unsafe fn f16(p: *const u8) -> f32 {
    // SAFETY: the caller's pointer covers 2 bytes; F16C is enabled by the caller's target features.
    unsafe {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(p.cast::<u16>()) as i32)))
    }
}

/// `sum(q[i] * a[i])` of 32 unsigned bytes `q` (< 128 after unpacking, except Q8_0's signs
/// handled by the caller) and 32 int8 `a`, as 8 i32 partial sums.
#[inline(always)]
unsafe fn dot_u8_i8(q: __m256i, a: __m256i) -> __m256i {
    // SAFETY: register-only intrinsics, enabled by the caller's target features.
    unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), _mm256_set1_epi16(1)) }
}

#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    // SAFETY: the caller's pointer covers 32 bytes.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// The 32 nibbles of 16 bytes: low nibbles (elements 0..16), then high nibbles (16..32).
#[inline(always)]
unsafe fn nibbles16(p: *const u8) -> __m256i {
    // SAFETY: the caller's pointer covers 16 bytes.
    unsafe {
        let v = _mm_loadu_si128(p.cast());
        let m = _mm_set1_epi8(0x0F);
        _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m))
    }
}

/// 0x10 in byte j where bit j of the little-endian u32 at `p` is set (Q5's fifth bit).
#[inline(always)]
unsafe fn bit4_from_u32(p: *const u8) -> __m256i {
    // SAFETY: the caller's pointer covers 4 bytes.
    unsafe {
        let x = _mm256_set1_epi32(std::ptr::read_unaligned(p.cast::<i32>()));
        let shuf = _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303);
        let x = _mm256_shuffle_epi8(x, shuf);
        let x = _mm256_or_si256(x, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
        let set = _mm256_cmpeq_epi8(x, _mm256_set1_epi64x(-1));
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    // SAFETY: register-only intrinsics.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// A 32-element block type with one f16 scale (`d`) and an optional f16 min (`m`): the
/// integer part of its dot product with 32 int8 activations, and how its offset enters
/// (`sum(w * a) = d * dx * products + m * s` or `d * (dx * products - OFFSET * s)`).
trait Legacy {
    const BYTES: usize;
    /// Elements are `q - OFFSET` (Q4_0: 8, Q5_0: 16; 0 for the others).
    const OFFSET: f32;
    const HAS_MIN: bool;
    /// The 8 i32 partial sums of `q * a` for the block at `b`.
    unsafe fn products(b: *const u8, x: __m256i) -> __m256i;
}

struct Q8_0;
impl Legacy for Q8_0 {
    const BYTES: usize = 34;
    const OFFSET: f32 = 0.0;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn products(b: *const u8, x: __m256i) -> __m256i {
        // SAFETY: 34 bytes at b (the caller's block).
        unsafe {
            let q = load(b.add(2));
            // |w| * (a with w's sign): u8 x i8 without saturation (|w| <= 128, |a| <= 127).
            dot_u8_i8(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q))
        }
    }
}
struct Q4_0;
impl Legacy for Q4_0 {
    const BYTES: usize = 18;
    const OFFSET: f32 = 8.0;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn products(b: *const u8, x: __m256i) -> __m256i {
        // SAFETY: 18 bytes at b.
        unsafe { dot_u8_i8(nibbles16(b.add(2)), x) }
    }
}
struct Q4_1;
impl Legacy for Q4_1 {
    const BYTES: usize = 20;
    const OFFSET: f32 = 0.0;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn products(b: *const u8, x: __m256i) -> __m256i {
        // SAFETY: 20 bytes at b.
        unsafe { dot_u8_i8(nibbles16(b.add(4)), x) }
    }
}
struct Q5_0;
impl Legacy for Q5_0 {
    const BYTES: usize = 22;
    const OFFSET: f32 = 16.0;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn products(b: *const u8, x: __m256i) -> __m256i {
        // SAFETY: 22 bytes at b.
        unsafe { dot_u8_i8(_mm256_or_si256(nibbles16(b.add(6)), bit4_from_u32(b.add(2))), x) }
    }
}
struct Q5_1;
impl Legacy for Q5_1 {
    const BYTES: usize = 24;
    const OFFSET: f32 = 0.0;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn products(b: *const u8, x: __m256i) -> __m256i {
        // SAFETY: 24 bytes at b.
        unsafe { dot_u8_i8(_mm256_or_si256(nibbles16(b.add(8)), bit4_from_u32(b.add(4))), x) }
    }
}

/// `R` rows (each `nb` blocks of `T`, `rb` bytes apart, from `w`) against one activation row:
/// the activation block is loaded once for all rows, and the rows' accumulators are independent
/// dependency chains.
#[inline(always)]
unsafe fn legacy_rows<T: Legacy, const R: usize>(w: *const u8, rb: usize, a: ActRow<'_>, out: &mut [f32]) {
    let nb = a.d.len();
    let ap = a.qs.as_ptr().cast::<u8>();
    // SAFETY: AVX is enabled by the caller's target features.
    let mut acc = [unsafe { _mm256_setzero_ps() }; R];
    let mut off = [0f32; R];
    // SAFETY: rows r < R of w hold nb blocks each (the caller's contract); activation block i is
    // inside a.qs.
    unsafe {
        for i in 0..nb {
            let x = load(ap.add(32 * i));
            let (dx, sx) = (*a.d.get_unchecked(i), *a.s.get_unchecked(i));
            for r in 0..R {
                let b = w.add(r * rb + T::BYTES * i);
                let p = T::products(b, x);
                let d = f16(b);
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), _mm256_cvtepi32_ps(p), acc[r]);
                if T::HAS_MIN {
                    off[r] += f16(b.add(2)) * sx;
                } else if T::OFFSET != 0.0 {
                    off[r] -= T::OFFSET * d * sx;
                }
            }
        }
        for r in 0..R {
            out[r] = hsum(acc[r]) + off[r];
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn legacy<T: Legacy>(w: &[u8], rb: usize, a: ActRow<'_>, out: &mut [f32]) {
    let n = out.len();
    let mut r = 0;
    // SAFETY: w holds n rows of rb bytes (the caller's contract); each call reads rows r..r+R.
    unsafe {
        while r + 4 <= n {
            super::prefetch_ahead(w.as_ptr().add(r * rb), 4 * rb);
            legacy_rows::<T, 4>(w.as_ptr().add(r * rb), rb, a, &mut out[r..r + 4]);
            r += 4;
        }
        while r < n {
            legacy_rows::<T, 1>(w.as_ptr().add(r * rb), rb, a, &mut out[r..r + 1]);
            r += 1;
        }
    }
}

/// `out[j] = dot(row j of w, a)` for the `out.len()` rows of `rb` bytes in `w`.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `w` holds `out.len()` whole rows of `ty` of
/// `32 * a.d.len()` elements.
pub unsafe fn rows(ty: GgmlType, w: &[u8], rb: usize, a: ActRow<'_>, out: &mut [f32]) {
    // SAFETY: forwarded contract.
    unsafe {
        match ty {
            GgmlType::Q8_0 => legacy::<Q8_0>(w, rb, a, out),
            GgmlType::Q4_0 => legacy::<Q4_0>(w, rb, a, out),
            GgmlType::Q4_1 => legacy::<Q4_1>(w, rb, a, out),
            GgmlType::Q5_0 => legacy::<Q5_0>(w, rb, a, out),
            GgmlType::Q5_1 => legacy::<Q5_1>(w, rb, a, out),
            _ => {
                for (o, wr) in out.iter_mut().zip(w.chunks_exact(rb)) {
                    super::prefetch_ahead(wr.as_ptr(), rb);
                    *o = dot_row(ty, wr, a);
                }
            }
        }
    }
}

/// As `scalar::dot_row`.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `w` holds `a.d.len()` 32-element blocks (or
/// `a.d.len() / 8` super-blocks) of `ty`, `a.qs` `32 * a.d.len()` values.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_row(ty: GgmlType, w: &[u8], a: ActRow<'_>) -> f32 {
    let nb = a.d.len();
    let (wp, ap) = (w.as_ptr(), a.qs.as_ptr().cast::<u8>());
    let mut acc = _mm256_setzero_ps();
    let mut off = 0f32;
    // SAFETY: (every block below) block i of w starts at `wp + i * bytes` and block i of the
    // activations at `ap + 32 * i`, inside the slices by the contract above.
    unsafe {
        match ty {
            GgmlType::Q8_0 => {
                for i in 0..nb {
                    let b = wp.add(34 * i);
                    let q = load(b.add(2));
                    let x = load(ap.add(32 * i));
                    // |w| * (a with w's sign): u8 x i8 without saturation (|w| <= 127).
                    let p = dot_u8_i8(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(b) * a.d[i]), _mm256_cvtepi32_ps(p), acc);
                }
            }
            GgmlType::Q4_0 => {
                for i in 0..nb {
                    let b = wp.add(18 * i);
                    let p = dot_u8_i8(nibbles16(b.add(2)), load(ap.add(32 * i)));
                    let d = f16(b);
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d[i]), _mm256_cvtepi32_ps(p), acc);
                    off -= 8.0 * d * a.s[i];
                }
            }
            GgmlType::Q4_1 => {
                for i in 0..nb {
                    let b = wp.add(20 * i);
                    let p = dot_u8_i8(nibbles16(b.add(4)), load(ap.add(32 * i)));
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(b) * a.d[i]), _mm256_cvtepi32_ps(p), acc);
                    off += f16(b.add(2)) * a.s[i];
                }
            }
            GgmlType::Q5_0 | GgmlType::Q5_1 => {
                let (bytes, qh, qs) = if ty == GgmlType::Q5_0 { (22, 2, 6) } else { (24, 4, 8) };
                for i in 0..nb {
                    let b = wp.add(bytes * i);
                    let q = _mm256_or_si256(nibbles16(b.add(qs)), bit4_from_u32(b.add(qh)));
                    let p = dot_u8_i8(q, load(ap.add(32 * i)));
                    let d = f16(b);
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d[i]), _mm256_cvtepi32_ps(p), acc);
                    off += if ty == GgmlType::Q5_0 { -16.0 * d * a.s[i] } else { f16(b.add(2)) * a.s[i] };
                }
            }
            GgmlType::Q4K | GgmlType::Q5K => {
                let five = ty == GgmlType::Q5K;
                let bytes = if five { 176 } else { 144 };
                let m4 = _mm256_set1_epi8(0x0F);
                for sb in 0..nb / 8 {
                    let b = wp.add(bytes * sb);
                    let (d, dmin) = (f16(b), f16(b.add(2)));
                    let scales = std::slice::from_raw_parts(b.add(4), 12);
                    let qs = b.add(if five { 48 } else { 16 });
                    let qh = if five { load(b.add(16)) } else { _mm256_setzero_si256() };
                    for c in 0..4 {
                        let v = load(qs.add(32 * c));
                        for half in 0..2 {
                            let sub = 2 * c + half;
                            let mut q = if half == 0 {
                                _mm256_and_si256(v, m4)
                            } else {
                                _mm256_and_si256(_mm256_srli_epi16(v, 4), m4)
                            };
                            if five {
                                let bit = _mm256_set1_epi8((1u8 << sub) as i8);
                                let set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
                                q = _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
                            }
                            let i = 8 * sb + sub;
                            let p = dot_u8_i8(q, load(ap.add(32 * i)));
                            let (sc, m) = crate::gguf::scale_min_k4(sub, scales);
                            acc = _mm256_fmadd_ps(
                                _mm256_set1_ps(d * sc as f32 * a.d[i]),
                                _mm256_cvtepi32_ps(p),
                                acc,
                            );
                            off -= dmin * m as f32 * a.s[i];
                        }
                    }
                }
            }
            GgmlType::Q6K => {
                let (m4, m30, k32) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30), _mm256_set1_epi8(32));
                for sb in 0..nb / 8 {
                    let b = wp.add(210 * sb);
                    let d = f16(b.add(208));
                    let sc = b.add(192).cast::<i8>();
                    for h in 0..2 {
                        let qh = load(b.add(128 + 32 * h));
                        let ql0 = load(b.add(64 * h));
                        let ql1 = load(b.add(64 * h + 32));
                        let qs = [
                            _mm256_or_si256(
                                _mm256_and_si256(ql0, m4),
                                _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(ql1, m4),
                                _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                _mm256_and_si256(qh, m30),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30),
                            ),
                        ];
                        for (k, q) in qs.into_iter().enumerate() {
                            let j = 4 * h + k;
                            let i = 8 * sb + j;
                            let x = load(ap.add(32 * i));
                            // (q - 32) * a as pairs of i16 (|.| <= 2 * 63 * 127).
                            let p16 =
                                _mm256_sub_epi16(_mm256_maddubs_epi16(q, x), _mm256_maddubs_epi16(k32, x));
                            let s = _mm256_set_m128i(
                                _mm_set1_epi16(*sc.add(2 * j + 1) as i16),
                                _mm_set1_epi16(*sc.add(2 * j) as i16),
                            );
                            let p = _mm256_madd_epi16(p16, s);
                            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d[i]), _mm256_cvtepi32_ps(p), acc);
                        }
                    }
                }
            }
            _ => return super::scalar::dot_row(ty, w, a),
        }
        hsum(acc) + off
    }
}
