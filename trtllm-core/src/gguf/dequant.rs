//! Dequantization to f32 of the float types and ggml's 32-element block quants (Q4_0, Q4_1,
//! Q5_0, Q5_1, Q8_0). The K-quants are in [`super::kquants`]. Block layouts follow ggml
//! (`ggml-common.h`); the arithmetic is f32 in the order ggml's reference dequantizers use
//! (`d * q`, `d * q + m`), so results equal llama.cpp's and gguf-py's bit for bit.

use half::{bf16, f16};

use super::ggml_type::GgmlType;
use super::kquants;

/// Elements in a legacy quant block.
pub const QK: usize = 32;

#[inline]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Dequantize `data` (whole blocks of type `ty`) into `out`. `out.len()` must be a multiple of the
/// block size and `data.len()` exactly the bytes of that many blocks; the error says what is off.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), String> {
    let (blk, bytes) = ty.block().ok_or_else(|| format!("unknown ggml type {ty}"))?;
    if !out.len().is_multiple_of(blk) {
        return Err(format!("{} elements is not a whole number of {ty} blocks of {blk}", out.len()));
    }
    let need = out.len() / blk * bytes;
    if data.len() != need {
        return Err(format!("{} elements of {ty} need {need} bytes, got {}", out.len(), data.len()));
    }
    let blocks = data.chunks_exact(bytes).zip(out.chunks_exact_mut(blk));
    match ty {
        GgmlType::F32 => blocks.for_each(|(b, o)| o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => blocks.for_each(|(b, o)| o[0] = f16_at(b, 0)),
        GgmlType::BF16 => {
            blocks.for_each(|(b, o)| o[0] = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
        }
        GgmlType::Q4_0 => blocks.for_each(|(b, o)| q4_0(b, o)),
        GgmlType::Q4_1 => blocks.for_each(|(b, o)| q4_1(b, o)),
        GgmlType::Q5_0 => blocks.for_each(|(b, o)| q5_0(b, o)),
        GgmlType::Q5_1 => blocks.for_each(|(b, o)| q5_1(b, o)),
        GgmlType::Q8_0 => blocks.for_each(|(b, o)| q8_0(b, o)),
        GgmlType::Q4K => blocks.for_each(|(b, o)| kquants::q4_k(b, o)),
        GgmlType::Q5K => blocks.for_each(|(b, o)| kquants::q5_k(b, o)),
        GgmlType::Q6K => blocks.for_each(|(b, o)| kquants::q6_k(b, o)),
        other => return Err(format!("dequantizing {other} is not supported")),
    }
    Ok(())
}

/// Q4_0: `d: f16, qs: [u8; 16]`; element `j` is the low nibble of `qs[j]`, element `j + 16` the
/// high nibble; value `d * (q - 8)`.
fn q4_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..QK / 2 {
        o[j] = d * ((qs[j] & 0x0F) as i32 - 8) as f32;
        o[j + QK / 2] = d * ((qs[j] >> 4) as i32 - 8) as f32;
    }
}

/// Q4_1: `d: f16, m: f16, qs: [u8; 16]`; nibbles as Q4_0; value `d * q + m`.
fn q4_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..20];
    for j in 0..QK / 2 {
        o[j] = d * (qs[j] & 0x0F) as f32 + m;
        o[j + QK / 2] = d * (qs[j] >> 4) as f32 + m;
    }
}

/// The 5-bit quants of a Q5 block: low nibbles as Q4_0, bit `i` of the little-endian `qh`
/// word is bit 4 of element `i`.
fn q5_values(qh: &[u8], qs: &[u8]) -> [u8; QK] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = [0u8; QK];
    for j in 0..QK / 2 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + QK / 2)) & 1) as u8;
        q[j] = (qs[j] & 0x0F) | (h0 << 4);
        q[j + QK / 2] = (qs[j] >> 4) | (h1 << 4);
    }
    q
}

/// Q5_0: `d: f16, qh: [u8; 4], qs: [u8; 16]`; value `d * (q - 16)`.
fn q5_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let q = q5_values(&b[2..6], &b[6..22]);
    for (o, q) in o.iter_mut().zip(q) {
        *o = d * (q as i32 - 16) as f32;
    }
}

/// Q5_1: `d: f16, m: f16, qh: [u8; 4], qs: [u8; 16]`; value `d * q + m`.
fn q5_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let q = q5_values(&b[4..8], &b[8..24]);
    for (o, q) in o.iter_mut().zip(q) {
        *o = d * q as f32 + m;
    }
}

/// Q8_0: `d: f16, qs: [i8; 32]`; value `q * d`.
pub(crate) fn q8_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    for (o, &q) in o.iter_mut().zip(&b[2..34]) {
        *o = (q as i8) as f32 * d;
    }
}
