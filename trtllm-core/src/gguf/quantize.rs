//! f32 -> ggml blocks for the 32-element types Q8_0, Q4_0 and Q4_1, as ggml's reference
//! quantizers (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`, `quantize_row_q4_1_ref`) do
//! them: values are divided by the f32 scale (`id = 1 / d`), and `d` is stored as f16.

use half::f16;

use super::ggml_type::GgmlType;

/// Quantize `x` (a multiple of 32 values) to blocks of `ty` (Q8_0, Q4_0 or Q4_1).
pub fn quantize(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>, String> {
    if !x.len().is_multiple_of(32) {
        return Err(format!("{} values are not whole blocks of 32", x.len()));
    }
    let mut out = Vec::with_capacity(x.len() / 32 * ty.block().map_or(0, |b| b.1));
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
            other => return Err(format!("quantizing to {other} is not supported (Q8_0, Q4_0, Q4_1)")),
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
        assert!(quantize(GgmlType::Q8_0, &x[..31]).is_err());
    }
}
