//! CPU twin of `cuda/gemv_ggml.cu`: ggml's Q8_0 and Q4_K blocks (the layouts of ggml's
//! `ggml-common.h`, as the GGUF files store them) dequantized and multiplied the way the kernels
//! do, for the GPU tests. `trtllm_core::gguf` reads and writes the same blocks; this crate does
//! not depend on it, so the layouts are restated here.

use half::f16;

/// A block format the GPU kernels take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlBlock {
    /// 32 values in 34 bytes: `d: f16, qs: [i8; 32]`, value `d * q`.
    Q8_0,
    /// 256 values in 144 bytes: `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`.
    Q4K,
}

impl GgmlBlock {
    /// `(values per block, bytes per block)`.
    pub fn block(self) -> (usize, usize) {
        match self {
            GgmlBlock::Q8_0 => (32, 34),
            GgmlBlock::Q4K => (256, 144),
        }
    }

    /// Bytes of one row of `k` values (k a multiple of the block length).
    pub fn row_bytes(self, k: usize) -> usize {
        let (per, bytes) = self.block();
        k / per * bytes
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlBlock::Q8_0 => "q8_0",
            GgmlBlock::Q4K => "q4_k",
        }
    }
}

/// Scale and min of Q4_K sub-block `j` from the 12 packed bytes (ggml's `get_scale_min_k4`).
pub fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// One block's values into `out` (its block length).
pub fn dequant_block(ty: GgmlBlock, b: &[u8], out: &mut [f32]) {
    match ty {
        GgmlBlock::Q8_0 => {
            let d = f16_at(b, 0);
            for (o, &q) in out.iter_mut().zip(&b[2..34]) {
                *o = d * (q as i8) as f32;
            }
        }
        GgmlBlock::Q4K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            for j in 0..8 {
                let (sc, m) = scale_min_k4(j, &b[4..16]);
                let (dl, ml) = (d * sc as f32, dmin * m as f32);
                let qs = &b[16 + 32 * (j / 2)..16 + 32 * (j / 2) + 32];
                let shift = 4 * (j % 2);
                for (l, &q) in qs.iter().enumerate() {
                    out[32 * j + l] = dl * ((q >> shift) & 0x0F) as f32 - ml;
                }
            }
        }
    }
}

/// `[n, k]` f32 values of `n` rows of blocks.
pub fn dequant(ty: GgmlBlock, w: &[u8], n: usize, k: usize) -> Vec<f32> {
    let (per, bytes) = ty.block();
    let mut out = vec![0f32; n * k];
    for (o, b) in out.chunks_mut(per).zip(w.chunks(bytes)) {
        dequant_block(ty, b, o);
    }
    out
}

/// `y[m, n] = x[m, k] @ W[n, k]^T` in f64 over the exactly dequantized weights (the tests'
/// reference), and `sum |w x|` per output (the tests' error scale).
pub fn gemv_ref(ty: GgmlBlock, x: &[f32], w: &[u8], m: usize, n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let wf = dequant(ty, w, n, k);
    let (mut y, mut mag) = (vec![0f64; m * n], vec![0f64; m * n]);
    for i in 0..m {
        for r in 0..n {
            let (xs, ws) = (&x[i * k..(i + 1) * k], &wf[r * k..(r + 1) * k]);
            y[i * n + r] = xs.iter().zip(ws).map(|(&a, &b)| a as f64 * b as f64).sum();
            mag[i * n + r] = xs.iter().zip(ws).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
        }
    }
    (y, mag)
}

/// Random blocks for `n` rows of `k`: finite f16 scales of either sign for Q8_0 (positive for
/// Q4_K's `d` / `dmin`, as the quantizer writes them), every code and 6-bit scale exercised.
/// `next` yields random u64s.
pub fn random_blocks(ty: GgmlBlock, n: usize, k: usize, next: &mut dyn FnMut() -> u64) -> Vec<u8> {
    let (per, bytes) = ty.block();
    let mut out = Vec::with_capacity(n * k / per * bytes);
    let scale = |next: &mut dyn FnMut() -> u64, signed: bool| {
        // 2^-10 .. 2^-4 times 1..2, sign random when asked.
        let u = next();
        let mag = (1.0 + (u & 0xffff) as f32 / 65536.0) * 2f32.powi(-10 + ((u >> 16) % 7) as i32);
        let v = if signed && (u >> 24) & 1 == 1 { -mag } else { mag };
        f16::from_f32(v).to_le_bytes()
    };
    for _ in 0..n * k / per {
        match ty {
            GgmlBlock::Q8_0 => {
                out.extend_from_slice(&scale(next, true));
                out.extend((0..32).map(|_| next() as u8));
            }
            GgmlBlock::Q4K => {
                out.extend_from_slice(&scale(next, false));
                out.extend_from_slice(&scale(next, false));
                out.extend((0..140).map(|_| next() as u8));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Q4_K: sub-block j's scale and min as ggml packs them, and its nibbles' placement.
    #[test]
    fn q4_k_layout() {
        let mut b = vec![0u8; 144];
        b[0..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        b[2..4].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
        // Sub-block 5: scale 0b10_0011 = 35, min 0b01_0110 = 22.
        b[4 + 9] = 0x3 | (0x6 << 4);
        b[4 + 1] = 0b10 << 6;
        b[4 + 5] = 0b01 << 6;
        assert_eq!(scale_min_k4(5, &b[4..16]), (35, 22));
        // Sub-block 5 is the high nibbles of chunk 2; element 3 of it = 9.
        b[16 + 64 + 3] = 0x9 << 4 | 0x2;
        let v = dequant(GgmlBlock::Q4K, &b, 1, 256);
        assert_eq!(v[5 * 32 + 3], 0.5 * 35.0 * 9.0 - 0.25 * 22.0);
        // Sub-block 4 (low nibbles of chunk 2): scale 3, min 6 from the nibbles of scales[8].
        b[4 + 8] = 0x3 | (0x6 << 4);
        let v = dequant(GgmlBlock::Q4K, &b, 1, 256);
        assert_eq!(v[4 * 32 + 3], 0.5 * 3.0 * 2.0 - 0.25 * 6.0);
        let q8 = [&f16::from_f32(-2.0).to_le_bytes()[..], &[0xffu8; 32]].concat();
        assert!(dequant(GgmlBlock::Q8_0, &q8, 1, 32).iter().all(|&v| v == 2.0));
    }
}
