//! f32 -> ggml blocks as ggml's reference quantizers do them: the 32-element types Q8_0, Q4_0,
//! Q4_1 and Q5_0 (`quantize_row_q8_0_ref`, ...: values divided by the f32 scale `id = 1 / d`, `d`
//! stored as f16) and the 256-element Q4_K (`quantize_k`).

use half::f16;

use super::ggml_type::{GgmlType, QK_K};
use super::quantize_k::q4_k_block;

/// Quantize `x` (whole blocks: a multiple of 32 values, of 256 for Q4_K) to blocks of `ty`
/// (Q8_0, Q4_0, Q4_1, Q5_0 or Q4_K).
pub fn quantize(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>, String> {
    let per = if ty == GgmlType::Q4K { QK_K } else { 32 };
    if !x.len().is_multiple_of(per) {
        return Err(format!("{} values are not whole blocks of {per}", x.len()));
    }
    let mut out = Vec::with_capacity(x.len() / per * ty.block().map_or(0, |b| b.1));
    if ty == GgmlType::Q4K {
        x.chunks_exact(QK_K).for_each(|b| q4_k_block(b, &mut out));
        return Ok(out);
    }
    for b in x.chunks_exact(32) {
        match ty {
            GgmlType::Q8_0 => {
                let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                out.extend(b.iter().map(|&v| (v * id).round() as i8 as u8));
            }
            GgmlType::Q4_0 => {
                // The value of largest magnitude maps to -8.
                let max = b.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                let q = |v: f32| ((v * id + 8.5) as i32).min(15) as u8;
                out.extend((0..16).map(|j| q(b[j]) | (q(b[j + 16]) << 4)));
            }
            GgmlType::Q4_1 => {
                let (min, max) = b.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
                let q = |v: f32| (((v - min) * id + 0.5) as i32).min(15) as u8;
                out.extend((0..16).map(|j| q(b[j]) | (q(b[j + 16]) << 4)));
            }
            GgmlType::Q5_0 => {
                // The value of largest magnitude maps to -16; bit 4 of element j is bit j of qh.
                let max = b.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                let d = max / -16.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                let q = |v: f32| ((v * id + 16.5) as i32).min(31) as u32;
                let mut qh = 0u32;
                let mut qs = [0u8; 16];
                for j in 0..16 {
                    let (a, c) = (q(b[j]), q(b[j + 16]));
                    qs[j] = ((a & 0x0F) | ((c & 0x0F) << 4)) as u8;
                    qh |= ((a >> 4) & 1) << j | ((c >> 4) & 1) << (j + 16);
                }
                out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                out.extend_from_slice(&qh.to_le_bytes());
                out.extend_from_slice(&qs);
            }
            other => {
                return Err(format!("quantizing to {other} is not supported (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K)"))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_within_half_a_step() {
        let x: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013 + 0.002).collect();
        // Q4_0's range is [-8 d, 7 d]: the negation of the largest value clips by one step.
        for (ty, steps, tol) in
            [(GgmlType::Q8_0, 127.0, 0.6), (GgmlType::Q4_0, 8.0, 1.05), (GgmlType::Q4_1, 15.0, 0.6)]
        {
            let q = quantize(ty, &x).expect("quantize");
            let mut back = vec![0f32; x.len()];
            super::super::dequantize(ty, &q, &mut back).expect("dequantize");
            for (b, (xs, ys)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
                let range = xs.iter().fold(0f32, |m, v| m.max(v.abs()))
                    * if ty == GgmlType::Q4_1 { 2.0 } else { 1.0 };
                let step = range / steps;
                for (a, b2) in xs.iter().zip(ys) {
                    assert!((a - b2).abs() <= step * tol, "{ty} block {b}: {a} vs {b2} (step {step})");
                }
            }
        }
        assert!(quantize(GgmlType::Q6K, &x).is_err());
        assert!(quantize(GgmlType::Q4K, &x[..224]).is_err());
        assert!(quantize(GgmlType::Q8_0, &x[..31]).is_err());
    }

    /// Values of mixed magnitude: sub-blocks of very different ranges, some all positive.
    fn mixed(n: usize) -> Vec<f32> {
        let mut s = 0x9e37_79b9u32;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let u = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                let mag = [0.02, 0.3, 1.7, 0.005][(i / 32) % 4];
                let shift = if (i / 64) % 3 == 2 { 0.8 * mag } else { 0.0 };
                u * mag + shift
            })
            .collect()
    }

    #[test]
    fn q5_0_round_trips_within_half_a_step() {
        let x = mixed(512);
        let q = quantize(GgmlType::Q5_0, &x).expect("quantize");
        assert_eq!(q.len(), 512 / 32 * 22);
        let mut back = vec![f32::NAN; x.len()];
        super::super::dequantize(GgmlType::Q5_0, &q, &mut back).expect("dequantize");
        for (xs, ys) in x.chunks(32).zip(back.chunks(32)) {
            let step = xs.iter().fold(0f32, |m, v| m.max(v.abs())) / 16.0;
            for (a, b) in xs.iter().zip(ys) {
                // The negation of the largest value clips by one step, as Q4_0.
                assert!((a - b).abs() <= step * 1.05, "{a} vs {b} (step {step})");
            }
        }
    }

    /// Q4_K against dequantize: every value within 1.5 steps of its sub-block's 4-bit grid
    /// (`(max - min) / 15` of the sub-block, min taken with 0) plus the 6-bit quantization of
    /// the sub-block's scale and min against the super-block's largest (half a step of
    /// `max / 63` on each, times up to 15 levels: within `widest / 63`, `widest` the largest
    /// sub-block range of the super-block), and the root-mean-square error no worse than plain
    /// per-sub-block min/max rounding with exact f32 scales.
    #[test]
    fn q4_k_round_trips_against_dequantize() {
        for n in [256usize, 768, 2048] {
            let x = mixed(n);
            let q = quantize(GgmlType::Q4K, &x).expect("quantize");
            assert_eq!(q.len(), n / 256 * 144);
            let mut back = vec![f32::NAN; n];
            super::super::dequantize(GgmlType::Q4K, &q, &mut back).expect("dequantize");
            let (mut err2, mut naive2) = (0f64, 0f64);
            let range = |xs: &[f32]| {
                let lo = xs.iter().fold(0f32, |m, &v| m.min(v));
                (lo, xs.iter().fold(f32::MIN, |m, &v| m.max(v)) - lo)
            };
            for (i, (xs, ys)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
                let sb = &x[i / 8 * 256..i / 8 * 256 + 256];
                let widest = sb.chunks(32).map(|c| range(c).1).fold(0f32, f32::max);
                let (lo, r) = range(xs);
                let step = r / 15.0;
                let tol = 1.5 * step + widest / 63.0;
                for (a, b) in xs.iter().zip(ys) {
                    assert!(
                        b.is_finite() && (a - b).abs() <= tol,
                        "n {n}: {a} vs {b} (step {step}, tol {tol})"
                    );
                    err2 += ((a - b) as f64).powi(2);
                    let r = ((a - lo) / step).round() * step + lo;
                    naive2 += ((a - r) as f64).powi(2);
                }
            }
            assert!(
                err2 <= naive2 * 1.25,
                "n {n}: rms {} vs min/max rounding {}",
                err2.sqrt(),
                naive2.sqrt()
            );
        }
        // All zeros: scales 0, every value back to 0.
        let q = quantize(GgmlType::Q4K, &[0.0; 256]).expect("zeros");
        let mut back = vec![f32::NAN; 256];
        super::super::dequantize(GgmlType::Q4K, &q, &mut back).expect("dequantize");
        assert!(back.iter().all(|&v| v == 0.0));
    }
}
