//! Dequantization of ggml's K-quants (256-element super-blocks): Q4_K, Q5_K, Q6_K. Layouts of
//! `block_q4_K`, `block_q5_K`, `block_q6_K` in ggml's `ggml-common.h`; f32 arithmetic in the
//! reference order (`(d * sc) * q - dmin * m`, `(d * sc) * q`).

use super::dequant::f16_at;
use super::ggml_type::QK_K;

/// The 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes of Q4_K / Q5_K:
/// bytes 0..4 hold scales 0..4 (low 6 bits) and the top 2 bits of scales 4..8; bytes 4..8 the
/// mins likewise; bytes 8..12 the low 4 bits of scales 4..8 (low nibble) and mins 4..8 (high).
#[inline]
pub(crate) fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Q4_K: `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`. Eight sub-blocks of 32; each
/// 64-element chunk `c` reads 32 bytes of `qs`: low nibbles are sub-block `2c`, high nibbles
/// sub-block `2c + 1`. Value `(d * sc) * q - dmin * m`.
pub(crate) fn q4_k(b: &[u8], o: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for c in 0..QK_K / 64 {
        let q = &qs[32 * c..32 * c + 32];
        for (half, shift) in [(0usize, 0u8), (1, 4)] {
            let (sc, m) = scale_min_k4(2 * c + half, scales);
            let (dl, ml) = (d * sc as f32, dmin * m as f32);
            let out = &mut o[64 * c + 32 * half..64 * c + 32 * half + 32];
            for (o, &q) in out.iter_mut().zip(q) {
                *o = dl * ((q >> shift) & 0x0F) as f32 - ml;
            }
        }
    }
}

/// Q5_K: `d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]`. As Q4_K, plus a
/// fifth bit: bit `s` of `qh[l]` is bit 4 of element `l` of sub-block `s`.
pub(crate) fn q5_k(b: &[u8], o: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for c in 0..QK_K / 64 {
        let q = &qs[32 * c..32 * c + 32];
        for (half, shift) in [(0usize, 0u8), (1, 4)] {
            let sub = 2 * c + half;
            let (sc, m) = scale_min_k4(sub, scales);
            let (dl, ml) = (d * sc as f32, dmin * m as f32);
            let out = &mut o[32 * sub..32 * sub + 32];
            for l in 0..32 {
                let v = ((q[l] >> shift) & 0x0F) | (((qh[l] >> sub) & 1) << 4);
                out[l] = dl * v as f32 - ml;
            }
        }
    }
}

/// Q6_K: `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`. Two halves of 128; in half
/// `h`, element `l + 32 * k` (k = 0..4, l = 0..32) takes nibble `k / 2` of `ql[64h + l + 32 (k % 2)]`
/// and bits `2k..2k+2` of `qh[32h + l]` as its top two bits; value `(d * scales[i]) * (q - 32)`
/// with `i = (128h + 32k + l) / 16`.
pub(crate) fn q6_k(b: &[u8], o: &mut [f32]) {
    let ql = &b[0..128];
    let qh = &b[128..192];
    let scales = &b[192..208];
    let d = f16_at(b, 208);
    for h in 0..2 {
        for k in 0..4 {
            for l in 0..32 {
                let lo = (ql[64 * h + l + 32 * (k % 2)] >> (4 * (k / 2))) & 0x0F;
                let hi = (qh[32 * h + l] >> (2 * k)) & 3;
                let q = (lo | (hi << 4)) as i32 - 32;
                let i = 128 * h + 32 * k + l;
                let sc = scales[i / 16] as i8;
                o[i] = (d * sc as f32) * q as f32;
            }
        }
    }
}
