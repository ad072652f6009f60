//! CPU twins of the quantization kernels (`cuda/gemv_fp8.cu`, `cuda/fp8_quant.cu`,
//! `cuda/gemv_int4.cu`, `cuda/gemv_ggml.cu` in [`ggml`]): FP8 E4M3 encode / decode, FP8 quantization and dequantization, and
//! reference GEMVs. Pure Rust, no GPU: the GPU tests compare against these, and the INT4
//! repackers ([`int4`]) turn AWQ / GPTQ checkpoints into the engine's INT4 layout.
//!
//! E4M3 here is `torch.float8_e4m3fn`: 1 sign, 4 exponent (bias 7), 3 mantissa bits, no
//! infinities, NaN = `S.1111.111` (0x7f / 0xff), largest finite 448 (0x7e), smallest subnormal
//! 2^-9 (0x01).

pub mod ggml;
pub mod int4;

/// Largest finite E4M3 magnitude.
pub const E4M3_MAX: f32 = 448.0;

/// E4M3 code -> f32, exactly as `torch.float8_e4m3fn` widens (0x7f / 0xff are NaN).
pub fn e4m3_decode(c: u8) -> f32 {
    let sign = ((c & 0x80) as u32) << 24;
    let (e, m) = (((c >> 3) & 0xf) as u32, (c & 7) as u32);
    let mag = if e == 15 && m == 7 {
        f32::NAN
    } else if e == 0 {
        m as f32 * (1.0 / 512.0) // subnormal: m/8 * 2^-6
    } else {
        f32::from_bits(((e + 120) << 23) | (m << 20)) // 2^(e - 7) * (1 + m/8)
    };
    f32::from_bits(mag.to_bits() | sign)
}

/// f32 -> E4M3 code, round to nearest even, saturating: |x| >= 448 (and +-inf) -> +-448, NaN ->
/// 0x7f (0xff for a negative NaN). Equal to `x.clamp(-448, 448).to(torch.float8_e4m3fn)` (the
/// plain torch cast is not saturating: it turns |x| > 464 into NaN). The kernels' `e4m3_sat`
/// (fp8_quant.cu) does the same bit for bit.
pub fn e4m3_encode(x: f32) -> u8 {
    let u = x.to_bits();
    let sign = ((u >> 24) & 0x80) as u8;
    let a = u & 0x7fff_ffff;
    if a > 0x7f80_0000 {
        return sign | 0x7f;
    }
    if a >= 448f32.to_bits() {
        return sign | 0x7e;
    }
    if a < 0x3c80_0000 {
        // below 2^-6, the smallest normal: a multiple of 2^-9 (the result 8 is 2^-6 itself, code 0x08)
        let q = (f32::from_bits(a) * 512.0).round_ties_even();
        return sign | q as u8;
    }
    let e = (a >> 23) as i32 - 127 + 7; // 1..=8 here (a < 448 = 1.75 * 2^8)
    let mut code = ((e as u32) << 3) | ((a >> 20) & 7);
    let rem = a & 0xf_ffff;
    if rem > 0x8_0000 || (rem == 0x8_0000 && code & 1 == 1) {
        code += 1; // a carry out of the mantissa steps the exponent, as it should
    }
    sign | code as u8
}

/// bf16 rounding (nearest even) of an f32, as the kernels' `from_f<bf16>` stores outputs.
pub fn bf16_round(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// How an FP8 matrix `[rows, cols]` is scaled: the value of element (r, c) is
/// `decode(q[r, c]) * scale[..]` with the f32 scale picked as below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleLayout {
    /// One scale for the whole matrix (a length-1 array).
    Tensor,
    /// `scale[rows]`: per token for activations, per output channel for weights `W[n, k]`.
    Row,
    /// `scale[cols]`.
    Col,
    /// `scale[ceil(rows / 128), ceil(cols / 128)]` row-major, one per 128 x 128 block
    /// (DeepSeek-V3 / Qwen3-FP8 `weight_scale_inv` with `weight_block_size = [128, 128]`).
    Block128,
}

impl ScaleLayout {
    /// Number of f32 scales a `[rows, cols]` matrix needs.
    pub fn len(self, rows: usize, cols: usize) -> usize {
        match self {
            ScaleLayout::Tensor => 1,
            ScaleLayout::Row => rows,
            ScaleLayout::Col => cols,
            ScaleLayout::Block128 => rows.div_ceil(128) * cols.div_ceil(128),
        }
    }
    /// Index into the scale array of element (r, c) of a matrix with `cols` columns.
    pub fn index(self, r: usize, c: usize, cols: usize) -> usize {
        match self {
            ScaleLayout::Tensor => 0,
            ScaleLayout::Row => r,
            ScaleLayout::Col => c,
            ScaleLayout::Block128 => (r / 128) * cols.div_ceil(128) + c / 128,
        }
    }
}

/// `out[r, c] = bf16(decode(q[r, c]) * scale)` (one f32 product, then bf16 rounding): the twin
/// of `fp8_dequant_bf16`. Returned as f32 holding bf16 values.
pub fn fp8_dequant(q: &[u8], scale: &[f32], layout: ScaleLayout, rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            bf16_round(e4m3_decode(q[i]) * scale[layout.index(r, c, cols)])
        })
        .collect()
}

/// Per-token dynamic quantization of `x[rows, d]` (the twin of `fp8_quantize_rows_bf16`):
/// `scale[r] = amax(|x[r]|) / 448` (1 for an all-zero row), `q = e4m3_encode(x / scale)`.
pub fn fp8_quantize_rows(x: &[f32], rows: usize, d: usize) -> (Vec<u8>, Vec<f32>) {
    let mut q = vec![0u8; rows * d];
    let mut s = vec![0f32; rows];
    for r in 0..rows {
        let row = &x[r * d..(r + 1) * d];
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let sc = if amax > 0.0 { amax / E4M3_MAX } else { 1.0 };
        s[r] = sc;
        for (o, v) in q[r * d..(r + 1) * d].iter_mut().zip(row) {
            *o = e4m3_encode(v / sc);
        }
    }
    (q, s)
}

/// Static quantization with a given scale (the twin of `fp8_quantize_static_bf16`).
pub fn fp8_quantize_static(x: &[f32], scale: f32) -> Vec<u8> {
    x.iter().map(|v| e4m3_encode(v / scale)).collect()
}

/// Weight quantization for tests and converters: `w[rows, cols]` to E4M3 with scales of
/// `layout`, each scale the amax of the elements it covers / 448 (1 where they are all zero).
pub fn fp8_quantize_weight(w: &[f32], rows: usize, cols: usize, layout: ScaleLayout) -> (Vec<u8>, Vec<f32>) {
    let mut amax = vec![0f32; layout.len(rows, cols)];
    for (i, v) in w.iter().enumerate() {
        let j = layout.index(i / cols, i % cols, cols);
        amax[j] = amax[j].max(v.abs());
    }
    let s: Vec<f32> = amax.iter().map(|&a| if a > 0.0 { a / E4M3_MAX } else { 1.0 }).collect();
    let q = w.iter().enumerate().map(|(i, v)| e4m3_encode(v / s[layout.index(i / cols, i % cols, cols)]));
    (q.collect(), s)
}

/// Reference `y[m, n] = x[m, k] . W[n, k]^T` with f64 accumulation, W given by `w(r, c)`
/// (its exactly dequantized value). Unrounded: the GPU rounds once to bf16.
pub fn gemv_ref(x: &[f32], m: usize, n: usize, k: usize, w: impl Fn(usize, usize) -> f64) -> Vec<f64> {
    let mut y = vec![0f64; m * n];
    let mut acc = vec![0f64; m];
    for r in 0..n {
        acc.iter_mut().for_each(|a| *a = 0.0);
        for c in 0..k {
            let wv = w(r, c);
            for (i, a) in acc.iter_mut().enumerate() {
                *a += x[i * k + c] as f64 * wv;
            }
        }
        for (i, a) in acc.iter().enumerate() {
            y[i * n + r] = *a;
        }
    }
    y
}

/// Reference FP8 GEMV (`gemv_fp8`'s twin): W = E4M3 `q[n, k]` times scales of `layout`
/// (Tensor, Row = per output channel, or Block128).
pub fn gemv_fp8_ref(
    x: &[f32],
    q: &[u8],
    scale: &[f32],
    layout: ScaleLayout,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f64> {
    gemv_ref(x, m, n, k, |r, c| e4m3_decode(q[r * k + c]) as f64 * scale[layout.index(r, c, k)] as f64)
}

/// `out[r, c] = bf16((acc[r, c] * row[r]) * col[c])`: the twin of `fp8_scale_rowcol_bf16`, the
/// epilogue of the per-token x per-channel FP8 GEMM.
pub fn scale_rowcol(acc: &[f32], row: &[f32], col: &[f32], m: usize, n: usize) -> Vec<f32> {
    (0..m * n).map(|i| bf16_round(acc[i] * row[i / n] * col[i % n])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known values of all 256 codes, written out independently of `e4m3_decode`.
    fn known(c: u8) -> f32 {
        let mag = match c & 0x7f {
            0x7f => return f32::NAN,
            m @ 0..=7 => m as f32 / 512.0,
            m => {
                let (e, f) = ((m >> 3) as i32, (m & 7) as f32);
                (8.0 + f) / 8.0 * (2.0f32).powi(e - 7)
            }
        };
        if c & 0x80 != 0 {
            -mag
        } else {
            mag
        }
    }

    #[test]
    fn decode_all_codes() {
        for c in 0..=255u8 {
            let (d, k) = (e4m3_decode(c), known(c));
            assert!(d.to_bits() == k.to_bits() || (d.is_nan() && k.is_nan()), "code {c:#04x}: {d} vs {k}");
        }
        // a few landmarks
        assert_eq!(e4m3_decode(0x7e), 448.0);
        assert_eq!(e4m3_decode(0xfe), -448.0);
        assert_eq!(e4m3_decode(0x01), 2f32.powi(-9));
        assert_eq!(e4m3_decode(0x08), 2f32.powi(-6));
        assert_eq!(e4m3_decode(0x38), 1.0);
        assert_eq!(e4m3_decode(0x40), 2.0);
        assert_eq!(e4m3_decode(0x3c), 1.5);
        assert!(e4m3_decode(0x80) == 0.0 && e4m3_decode(0x80).is_sign_negative());
        assert!(e4m3_decode(0x7f).is_nan() && e4m3_decode(0xff).is_nan());
    }

    #[test]
    fn encode_decode_roundtrip() {
        for c in 0..=255u8 {
            if c & 0x7f == 0x7f {
                assert_eq!(e4m3_encode(e4m3_decode(c)), c, "NaN keeps its sign");
                continue;
            }
            assert_eq!(e4m3_encode(e4m3_decode(c)), c, "code {c:#04x}");
        }
    }

    #[test]
    fn encode_rounds_to_nearest_even() {
        // between 1.0 (0x38) and 1.125 (0x39): the midpoint goes to the even code 0x38
        assert_eq!(e4m3_encode(1.0625), 0x38);
        assert_eq!(e4m3_encode(1.0625f32.next_up()), 0x39);
        // between 1.125 (0x39) and 1.25 (0x3a): the midpoint goes to the even code 0x3a
        assert_eq!(e4m3_encode(1.1875), 0x3a);
        assert_eq!(e4m3_encode(1.1875f32.next_down()), 0x39);
        // mantissa carry into the exponent: 1.9375 is between 1.875 (0x3f) and 2.0 (0x40)
        assert_eq!(e4m3_encode(1.9375), 0x40);
        // subnormals: 1.5 * 2^-9 is a tie between 0x01 and 0x02 -> 0x02; 0.5 * 2^-9 -> 0
        assert_eq!(e4m3_encode(1.5 / 512.0), 0x02);
        assert_eq!(e4m3_encode(2.5 / 512.0), 0x02);
        assert_eq!(e4m3_encode(0.5 / 512.0), 0x00);
        assert_eq!(e4m3_encode((0.5f32 / 512.0).next_up()), 0x01);
        // subnormal to normal: 7.5 * 2^-9 ties between 0x07 and 0x08 (2^-6) -> 0x08
        assert_eq!(e4m3_encode(7.5 / 512.0), 0x08);
        assert_eq!(e4m3_encode(-1.0625), 0xb8);
        // every midpoint of consecutive finite positive codes rounds to the even one
        for c in 0..0x7eu8 {
            let mid = (e4m3_decode(c) as f64 + e4m3_decode(c + 1) as f64) / 2.0;
            let want = if c & 1 == 0 { c } else { c + 1 };
            assert_eq!(e4m3_encode(mid as f32), want, "midpoint above {c:#04x}");
        }
    }

    #[test]
    fn encode_saturates_and_keeps_nan() {
        assert_eq!(e4m3_encode(448.0), 0x7e);
        assert_eq!(e4m3_encode(460.0), 0x7e);
        assert_eq!(e4m3_encode(1e9), 0x7e);
        assert_eq!(e4m3_encode(f32::INFINITY), 0x7e);
        assert_eq!(e4m3_encode(f32::NEG_INFINITY), 0xfe);
        assert_eq!(e4m3_encode(-500.0), 0xfe);
        assert_eq!(e4m3_encode(f32::NAN) & 0x7f, 0x7f);
        assert_eq!(e4m3_encode(1e-30), 0x00);
        assert_eq!(e4m3_encode(-1e-30), 0x80);
    }

    #[test]
    fn scale_layouts() {
        assert_eq!(ScaleLayout::Block128.len(300, 129), 3 * 2);
        assert_eq!(ScaleLayout::Block128.index(257, 128, 129), 2 * 2 + 1);
        assert_eq!(ScaleLayout::Row.index(5, 7, 9), 5);
        assert_eq!(ScaleLayout::Col.index(5, 7, 9), 7);
        assert_eq!(ScaleLayout::Tensor.len(5, 9), 1);
    }

    #[test]
    fn quantize_rows_and_dequant() {
        let x = [1.0, -2.0, 0.5, 448.0 * 2.0, 0.0, 0.0, 0.0, 0.0];
        let (q, s) = fp8_quantize_rows(&x, 2, 4);
        assert_eq!(s, vec![2.0, 1.0]);
        assert_eq!(q[..4], [e4m3_encode(0.5), e4m3_encode(-1.0), e4m3_encode(0.25), 0x7e]);
        assert_eq!(q[4..], [0, 0, 0, 0]);
        let d = fp8_dequant(&q, &s, ScaleLayout::Row, 2, 4);
        assert_eq!(d, vec![1.0, -2.0, 0.5, 896.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn weight_quant_block_and_gemv() {
        // 2 x 3 weights, per row scales; x = [1, 2, 3]
        let w = [1.0, 2.0, 4.0, -8.0, 0.5, 0.25];
        let (q, s) = fp8_quantize_weight(&w, 2, 3, ScaleLayout::Row);
        assert_eq!(s, vec![4.0 / 448.0, 8.0 / 448.0]);
        let y = gemv_fp8_ref(&[1.0, 2.0, 3.0], &q, &s, ScaleLayout::Row, 1, 2, 3);
        // exact: every weight is a power of two times an E4M3 value
        assert!((y[0] - 17.0).abs() < 1e-5 && (y[1] - (-8.0 + 1.0 + 0.75)).abs() < 1e-5, "{y:?}");
        let (qb, sb) = fp8_quantize_weight(&w, 2, 3, ScaleLayout::Block128);
        assert_eq!(sb, vec![8.0 / 448.0]);
        let yb = gemv_fp8_ref(&[1.0, 2.0, 3.0], &qb, &sb, ScaleLayout::Block128, 1, 2, 3);
        assert!((yb[0] - 17.0).abs() < 0.05 && (yb[1] + 6.25).abs() < 0.05, "{yb:?}");
    }

    #[test]
    fn rowcol_epilogue() {
        let out = scale_rowcol(&[1.0, 2.0, 3.0, 4.0], &[2.0, 0.5], &[1.0, 3.0], 2, 2);
        assert_eq!(out, vec![2.0, 12.0, 1.5, 6.0]);
    }
}
