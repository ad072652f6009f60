//! Dequantization on hand-built blocks: each test packs known quants and scales by the ggml
//! block layout (an encoder written from the layout description, independent of the decoder)
//! and expects the reference formula's values exactly.

use half::{bf16, f16};

use super::dequant::dequantize;
use super::ggml_type::{GgmlType, QK_K};

/// Deterministic pseudo-random values in `0..n`, with the extremes first.
fn quants(len: usize, n: u32, seed: u32) -> Vec<u32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..len)
        .map(|i| match i {
            0 => 0,
            1 => n - 1,
            _ => {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) % n
            }
        })
        .collect()
}

fn h(x: f32) -> (f32, [u8; 2]) {
    let v = f16::from_f32(x);
    (v.to_f32(), v.to_le_bytes())
}

fn run(ty: GgmlType, block: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; n];
    dequantize(ty, block, &mut out).expect("dequantize");
    out
}

#[test]
fn floats() {
    let vals = [1.5f32, -0.25, 65504.0, 0.0];
    let f32b: Vec<u8> = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(run(GgmlType::F32, &f32b, 4), vals);
    let f16b: Vec<u8> = vals.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect();
    assert_eq!(run(GgmlType::F16, &f16b, 4), vals);
    let bf = [1.5f32, -0.25, 3.0e38, 0.0];
    let bfb: Vec<u8> = bf.iter().flat_map(|x| bf16::from_f32(*x).to_le_bytes()).collect();
    let want: Vec<f32> = bf.iter().map(|x| bf16::from_f32(*x).to_f32()).collect();
    assert_eq!(run(GgmlType::BF16, &bfb, 4), want);
}

/// Low nibbles = elements 0..16, high nibbles = elements 16..32.
fn pack_nibbles(q: &[u32]) -> Vec<u8> {
    (0..16).map(|j| (q[j] & 15) as u8 | (((q[j + 16] & 15) as u8) << 4)).collect()
}

/// Bit `i` = bit 4 of element `i`.
fn pack_qh32(q: &[u32]) -> [u8; 4] {
    let mut w = 0u32;
    for (i, v) in q.iter().enumerate() {
        w |= ((v >> 4) & 1) << i;
    }
    w.to_le_bytes()
}

#[test]
fn q4_0() {
    let (d, db) = h(0.0123);
    let q = quants(32, 16, 1);
    let block: Vec<u8> = db.iter().copied().chain(pack_nibbles(&q)).collect();
    let want: Vec<f32> = q.iter().map(|&q| d * (q as f32 - 8.0)).collect();
    assert_eq!(run(GgmlType::Q4_0, &block, 32), want);
}

#[test]
fn q4_1() {
    let ((d, db), (m, mb)) = (h(0.031), h(-0.27));
    let q = quants(32, 16, 2);
    let block: Vec<u8> = db.iter().chain(&mb).copied().chain(pack_nibbles(&q)).collect();
    let want: Vec<f32> = q.iter().map(|&q| d * q as f32 + m).collect();
    assert_eq!(run(GgmlType::Q4_1, &block, 32), want);
}

#[test]
fn q5_0() {
    let (d, db) = h(-0.0071);
    let q = quants(32, 32, 3);
    let block: Vec<u8> = db.iter().chain(&pack_qh32(&q)).copied().chain(pack_nibbles(&q)).collect();
    let want: Vec<f32> = q.iter().map(|&q| d * (q as f32 - 16.0)).collect();
    assert_eq!(run(GgmlType::Q5_0, &block, 32), want);
}

#[test]
fn q5_1() {
    let ((d, db), (m, mb)) = (h(0.0042), h(0.5));
    let q = quants(32, 32, 4);
    let block: Vec<u8> =
        db.iter().chain(&mb).chain(&pack_qh32(&q)).copied().chain(pack_nibbles(&q)).collect();
    let want: Vec<f32> = q.iter().map(|&q| d * q as f32 + m).collect();
    assert_eq!(run(GgmlType::Q5_1, &block, 32), want);
}

#[test]
fn q8_0() {
    let (d, db) = h(0.0009);
    let q: Vec<i8> = quants(32, 256, 5).iter().map(|&v| (v as i32 - 128) as i8).collect();
    let block: Vec<u8> = db.iter().copied().chain(q.iter().map(|&v| v as u8)).collect();
    let want: Vec<f32> = q.iter().map(|&q| q as f32 * d).collect();
    assert_eq!(run(GgmlType::Q8_0, &block, 32), want);
    // Two blocks in one call.
    let two: Vec<u8> = block.iter().chain(&block).copied().collect();
    assert_eq!(run(GgmlType::Q8_0, &two, 64)[32..], want[..]);
}

/// The 12 scale bytes of Q4_K / Q5_K for 6-bit scales `sc` and mins `m` of the 8 sub-blocks.
fn pack_scales_k4(sc: &[u32], m: &[u32]) -> Vec<u8> {
    let mut s = vec![0u8; 12];
    for j in 0..4 {
        s[j] = (sc[j] | ((sc[j + 4] >> 4) << 6)) as u8;
        s[j + 4] = (m[j] | ((m[j + 4] >> 4) << 6)) as u8;
        s[j + 8] = ((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4)) as u8;
    }
    s
}

/// 64-element chunk `c`: low nibbles of `qs[32c..32c+32]` are elements `64c..64c+32`, high
/// nibbles elements `64c+32..64c+64`.
fn pack_qs_k(q: &[u32]) -> Vec<u8> {
    (0..QK_K / 2)
        .map(|i| {
            let (c, l) = (i / 32, i % 32);
            ((q[64 * c + l] & 15) | ((q[64 * c + 32 + l] & 15) << 4)) as u8
        })
        .collect()
}

#[test]
fn q4_k() {
    let ((d, db), (dmin, mb)) = (h(0.0021), h(0.0107));
    let sc = quants(8, 64, 6);
    let m = quants(8, 64, 7);
    let q = quants(QK_K, 16, 8);
    let block: Vec<u8> =
        db.iter().chain(&mb).copied().chain(pack_scales_k4(&sc, &m)).chain(pack_qs_k(&q)).collect();
    assert_eq!(block.len(), 144);
    let want: Vec<f32> =
        (0..QK_K).map(|i| (d * sc[i / 32] as f32) * q[i] as f32 - dmin * m[i / 32] as f32).collect();
    assert_eq!(run(GgmlType::Q4K, &block, QK_K), want);
}

#[test]
fn q5_k() {
    let ((d, db), (dmin, mb)) = (h(0.0013), h(-0.004));
    let sc = quants(8, 64, 9);
    let m = quants(8, 64, 10);
    let q = quants(QK_K, 32, 11);
    // Bit s of qh[l] is bit 4 of element 32 s + l.
    let qh: Vec<u8> =
        (0..32).map(|l| (0..8).map(|s| (((q[32 * s + l] >> 4) & 1) << s) as u8).sum()).collect();
    let block: Vec<u8> =
        db.iter().chain(&mb).copied().chain(pack_scales_k4(&sc, &m)).chain(qh).chain(pack_qs_k(&q)).collect();
    assert_eq!(block.len(), 176);
    let want: Vec<f32> =
        (0..QK_K).map(|i| (d * sc[i / 32] as f32) * q[i] as f32 - dmin * m[i / 32] as f32).collect();
    assert_eq!(run(GgmlType::Q5K, &block, QK_K), want);
}

#[test]
fn q6_k() {
    let (d, db) = h(0.0007);
    let sc: Vec<i8> = quants(16, 256, 12).iter().map(|&v| (v as i32 - 128) as i8).collect();
    let q = quants(QK_K, 64, 13);
    let (mut ql, mut qh) = (vec![0u8; 128], vec![0u8; 64]);
    // Element 128 h + 32 k + l: low nibble in ql[64 h + l + 32 (k % 2)] (nibble k / 2), top two
    // bits in qh[32 h + l] at bits 2 k.
    for (i, &v) in q.iter().enumerate() {
        let (hh, k, l) = (i / 128, (i % 128) / 32, i % 32);
        ql[64 * hh + l + 32 * (k % 2)] |= ((v & 15) as u8) << (4 * (k / 2));
        qh[32 * hh + l] |= ((v >> 4) as u8) << (2 * k);
    }
    let block: Vec<u8> = ql.into_iter().chain(qh).chain(sc.iter().map(|&s| s as u8)).chain(db).collect();
    assert_eq!(block.len(), 210);
    let want: Vec<f32> = (0..QK_K).map(|i| (d * sc[i / 16] as f32) * (q[i] as f32 - 32.0)).collect();
    assert_eq!(run(GgmlType::Q6K, &block, QK_K), want);
}

#[test]
fn size_errors() {
    let mut out = vec![0f32; 32];
    let e = dequantize(GgmlType::Q4_0, &[0u8; 17], &mut out).expect_err("short");
    assert!(e.contains("need 18 bytes"), "{e}");
    let mut odd = vec![0f32; 31];
    assert!(dequantize(GgmlType::Q4_0, &[0u8; 18], &mut odd).is_err());
    assert!(dequantize(GgmlType::Q2K, &[0u8; 84], &mut vec![0f32; 256]).is_err());
    assert!(dequantize(GgmlType::Other(99), &[], &mut []).is_err());
}
