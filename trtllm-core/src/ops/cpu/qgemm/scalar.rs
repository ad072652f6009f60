//! Portable dot products of one row of ggml blocks with one quantized activation row: integer
//! products per 32-element block (exact), scaled in f32. The reference the SIMD tiers are
//! tested against, and the fallback on CPUs without AVX2.
//!
//! Every block type reads the activation row as 32-element blocks (`ActRow`): int8 values, a
//! scale `d` and `s = d * sum(values)`, so a block with an offset (`q - 8`, `d * q + m`) needs no
//! extra pass over the activations: `sum(w * a) = dw * (d * sum(q * a) - 8 * s)` and so on.

use super::ActRow;
use crate::gguf::GgmlType;

#[inline(always)]
pub(crate) fn f16(b: &[u8], i: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// `sum(q[i] * a[i])` over 32 elements.
#[inline(always)]
fn idot(q: &[u8; 32], a: &[i8]) -> i32 {
    q.iter().zip(a).map(|(&q, &a)| q as i32 * a as i32).sum()
}

/// The 32 unsigned 4-bit values of a Q4_0 / Q4_1 / Q5 block: low nibbles, then high nibbles.
#[inline(always)]
fn nibbles(qs: &[u8]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = qs[j] & 0x0F;
        q[j + 16] = qs[j] >> 4;
    }
    q
}

/// Adds bit 4 from the 32-bit little-endian word at `qh` (bit j -> element j).
#[inline(always)]
fn fifth_bits(q: &mut [u8; 32], qh: &[u8]) {
    let h = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    for (j, q) in q.iter_mut().enumerate() {
        *q |= (((h >> j) & 1) as u8) << 4;
    }
}

/// One row of `nb` 32-element blocks (legacy types) or `nb / 8` super-blocks (K-quants) of
/// type `ty` against `a`.
pub fn dot_row(ty: GgmlType, w: &[u8], a: ActRow<'_>) -> f32 {
    let nb = a.d.len();
    let mut acc = 0f32;
    match ty {
        GgmlType::Q8_0 => {
            for (i, b) in w.chunks_exact(34).take(nb).enumerate() {
                let s: i32 =
                    b[2..34].iter().zip(&a.qs[32 * i..]).map(|(&q, &x)| q as i8 as i32 * x as i32).sum();
                acc += f16(b, 0) * (a.d[i] * s as f32);
            }
        }
        GgmlType::Q4_0 => {
            for (i, b) in w.chunks_exact(18).take(nb).enumerate() {
                let s = idot(&nibbles(&b[2..18]), &a.qs[32 * i..]);
                acc += f16(b, 0) * (a.d[i] * s as f32 - 8.0 * a.s[i]);
            }
        }
        GgmlType::Q4_1 => {
            for (i, b) in w.chunks_exact(20).take(nb).enumerate() {
                let s = idot(&nibbles(&b[4..20]), &a.qs[32 * i..]);
                acc += f16(b, 0) * a.d[i] * s as f32 + f16(b, 2) * a.s[i];
            }
        }
        GgmlType::Q5_0 => {
            for (i, b) in w.chunks_exact(22).take(nb).enumerate() {
                let mut q = nibbles(&b[6..22]);
                fifth_bits(&mut q, &b[2..6]);
                acc += f16(b, 0) * (a.d[i] * idot(&q, &a.qs[32 * i..]) as f32 - 16.0 * a.s[i]);
            }
        }
        GgmlType::Q5_1 => {
            for (i, b) in w.chunks_exact(24).take(nb).enumerate() {
                let mut q = nibbles(&b[8..24]);
                fifth_bits(&mut q, &b[4..8]);
                acc += f16(b, 0) * a.d[i] * idot(&q, &a.qs[32 * i..]) as f32 + f16(b, 2) * a.s[i];
            }
        }
        GgmlType::Q4K | GgmlType::Q5K => {
            let (bytes, five) = if ty == GgmlType::Q4K { (144, false) } else { (176, true) };
            for (sb, b) in w.chunks_exact(bytes).take(nb / 8).enumerate() {
                let (d, dmin) = (f16(b, 0), f16(b, 2));
                let scales = &b[4..16];
                let (qh, qs) = if five { (&b[16..48], &b[48..176]) } else { (&b[0..0], &b[16..144]) };
                for sub in 0..8 {
                    let chunk = &qs[32 * (sub / 2)..32 * (sub / 2) + 32];
                    let shift = 4 * (sub % 2);
                    let mut q = [0u8; 32];
                    for l in 0..32 {
                        q[l] = (chunk[l] >> shift) & 0x0F;
                        if five {
                            q[l] |= ((qh[l] >> sub) & 1) << 4;
                        }
                    }
                    let (sc, m) = crate::gguf::scale_min_k4(sub, scales);
                    let i = 8 * sb + sub;
                    acc += d * sc as f32 * (a.d[i] * idot(&q, &a.qs[32 * i..]) as f32)
                        - dmin * m as f32 * a.s[i];
                }
            }
        }
        GgmlType::Q6K => {
            for (sb, b) in w.chunks_exact(210).take(nb / 8).enumerate() {
                let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
                let d = f16(b, 208);
                for h in 0..2 {
                    for k in 0..4 {
                        let i = 8 * sb + 4 * h + k;
                        let x = &a.qs[32 * i..32 * i + 32];
                        let mut sums = [0i32; 2];
                        for l in 0..32 {
                            let lo = (ql[64 * h + l + 32 * (k % 2)] >> (4 * (k / 2))) & 0x0F;
                            let hi = (qh[32 * h + l] >> (2 * k)) & 3;
                            sums[l / 16] += ((lo | (hi << 4)) as i32 - 32) * x[l] as i32;
                        }
                        let s = sc[2 * (4 * h + k)] as i8 as i32 * sums[0]
                            + sc[2 * (4 * h + k) + 1] as i8 as i32 * sums[1];
                        acc += d * (a.d[i] * s as f32);
                    }
                }
            }
        }
        _ => unreachable!("qgemm::supported() gates the block types"),
    }
    acc
}
