//! f32 -> Q4_K super-blocks as ggml's `quantize_row_q4_K_ref` does them: per 32-value sub-block
//! a weighted least-squares search over scale and min (`make_qkx2_quants`: 21 candidate grids
//! around `15 / (max - min)`, weights `rms + |x|`), then the eight scales and mins quantized to
//! 6 bits against the super-block's largest (`d`, `dmin` stored as f16), then every value
//! re-quantized against the stored scale and min.

use half::f16;

use super::ggml_type::QK_K;
use super::kquants::scale_min_k4;

/// ggml's `nearest_int`: round half to even.
#[inline]
fn nearest(x: f32) -> i32 {
    x.round_ties_even() as i32
}

/// `make_qkx2_quants(32, 15, x, w, L, &min, Laux, -1, 0.1, 20, false)`: the sub-block's scale and
/// the negated min (`x ≈ scale * l - min`), levels into `l`.
fn qkx2(x: &[f32; 32], w: &[f32; 32], l: &mut [u8; 32]) -> (f32, f32) {
    const NMAX: f32 = 15.0;
    let (mut min, mut max) = (x[0], x[0]);
    let (mut sum_w, mut sum_x) = (0f32, 0f32);
    for (&xi, &wi) in x.iter().zip(w) {
        min = min.min(xi);
        max = max.max(xi);
        sum_w += wi;
        sum_x += wi * xi;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let level = |iscale: f32, xi: f32, min: f32| nearest(iscale * (xi - min)).clamp(0, 15) as u8;
    let mut iscale = NMAX / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best = 0f32;
    for i in 0..32 {
        l[i] = level(iscale, x[i], min);
        let diff = scale * l[i] as f32 + min - x[i];
        best += w[i] * diff * diff;
    }
    let mut aux = [0u8; 32];
    for step in 0..=20 {
        iscale = (-1.0 + 0.1 * step as f32 + NMAX) / (max - min);
        let (mut sl, mut sl2, mut sxl) = (0f32, 0f32, 0f32);
        for i in 0..32 {
            let q = level(iscale, x[i], min);
            aux[i] = q;
            let (q, wi) = (q as f32, w[i]);
            sl += wi * q;
            sl2 += wi * q * q;
            sxl += wi * q * x[i];
        }
        let det = sum_w * sl2 - sl * sl;
        if det > 0.0 {
            let mut this_scale = (sum_w * sxl - sum_x * sl) / det;
            let mut this_min = (sl2 * sum_x - sl * sxl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sxl / sl2;
            }
            let mut err = 0f32;
            for i in 0..32 {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                err += w[i] * diff * diff;
            }
            if err < best {
                *l = aux;
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// One super-block of 256 values -> 144 bytes appended to `out` (`d: f16, dmin: f16,
/// scales: [u8; 12], qs: [u8; 128]`).
pub(crate) fn q4_k_block(x: &[f32], out: &mut Vec<u8>) {
    debug_assert_eq!(x.len(), QK_K);
    let mut levels = [[0u8; 32]; 8];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    for j in 0..8 {
        let sub: &[f32; 32] = x[32 * j..32 * j + 32].try_into().unwrap_or(&[0.0; 32]);
        let av = (sub.iter().map(|v| v * v).sum::<f32>() / 32.0).sqrt();
        let w: [f32; 32] = std::array::from_fn(|i| av + sub[i].abs());
        (scales[j], mins[j]) = qkx2(sub, &w, &mut levels[j]);
    }
    let max_scale = scales.iter().fold(0f32, |m, &s| m.max(s));
    let max_min = mins.iter().fold(0f32, |m, &s| m.max(s));
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        let ls = nearest(inv_scale * scales[j]).clamp(0, 63) as u8;
        let lm = nearest(inv_min * mins[j]).clamp(0, 63) as u8;
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    for (j, lv) in levels.iter_mut().enumerate() {
        let (sc, m) = scale_min_k4(j, &packed);
        let dl = d.to_f32() * sc as f32;
        if dl == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for (i, q) in lv.iter_mut().enumerate() {
            *q = nearest((x[32 * j + i] + dm) / dl).clamp(0, 15) as u8;
        }
    }
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&dmin.to_le_bytes());
    out.extend_from_slice(&packed);
    // Each 64-value chunk: low nibbles sub-block 2c, high nibbles sub-block 2c + 1.
    for c in 0..4 {
        out.extend((0..32).map(|i| levels[2 * c][i] | (levels[2 * c + 1][i] << 4)));
    }
}
