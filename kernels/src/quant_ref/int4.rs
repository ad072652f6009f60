//! INT4 group-quantized weights (W4A16): the engine's one layout, the host-side repackers from
//! AWQ and GPTQ checkpoints, and the CPU twins of `cuda/gemv_int4.cu`.
//!
//! Engine layout of `W[n, k]` with groups of `group` consecutive k-elements (see [`Int4Weights`]):
//! - `qweight: u32 [n, k / 8]`: word `j` of row `r` holds elements `(r, 8j .. 8j + 8)`, element
//!   `8j + i` in bits `4i .. 4i + 4` (natural order, lowest nibble first), unsigned 0..=15;
//! - `scales: 16-bit [n, k / group]` (f16 as AWQ and GPTQ store them, or bf16: [`ScaleDt`]);
//! - `zeros: u8 [n, k / group]`, the zero point 0..=15 of each group (unpacked);
//! - `W[r, c] = (q(r, c) - zeros[r, c / group]) * scales[r, c / group]`.
//!
//! Rows of W are output channels, so the GEMV reads one row per warp with 16-byte loads
//! (32 weights each), exactly as the bf16 GEMV does. Act-order GPTQ (`desc_act`, a non-trivial
//! `g_idx`) is not representable: a converter must reject it (or reorder k first).

/// The element type of the 16-bit scales.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleDt {
    F16,
    BF16,
}

impl ScaleDt {
    pub fn to_f32(self, bits: u16) -> f32 {
        match self {
            ScaleDt::F16 => half::f16::from_bits(bits).to_f32(),
            ScaleDt::BF16 => half::bf16::from_bits(bits).to_f32(),
        }
    }
}

/// INT4 weights `W[n, k]` in the engine layout (module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Int4Weights {
    pub n: usize,
    pub k: usize,
    pub group: usize,
    /// `[n, k / 8]`, natural nibble order along k.
    pub qweight: Vec<u32>,
    /// `[n, k / group]` raw f16 / bf16 bits.
    pub scales: Vec<u16>,
    /// `[n, k / group]`, each 0..=15.
    pub zeros: Vec<u8>,
}

impl Int4Weights {
    /// The 4-bit code of element (r, c).
    pub fn q(&self, r: usize, c: usize) -> u8 {
        ((self.qweight[r * (self.k / 8) + c / 8] >> (4 * (c % 8))) & 0xf) as u8
    }
    /// The dequantized value of element (r, c), in f64: `(q - z) * s`, exact.
    pub fn value(&self, r: usize, c: usize, sdt: ScaleDt) -> f64 {
        let g = r * (self.k / self.group) + c / self.group;
        (self.q(r, c) as f64 - self.zeros[g] as f64) * sdt.to_f32(self.scales[g]) as f64
    }
    /// All of W, `[n, k]` row-major.
    pub fn dequant(&self, sdt: ScaleDt) -> Vec<f32> {
        (0..self.n * self.k).map(|i| self.value(i / self.k, i % self.k, sdt) as f32).collect()
    }
}

/// Nibble position of column `j % 8` inside an AWQ word: AWQ packs column `8w + ORDER[p]` into
/// nibble `p` with `ORDER = [0, 2, 4, 6, 1, 3, 5, 7]`; this is the inverse permutation.
pub const AWQ_REVERSE_ORDER: [usize; 8] = [0, 4, 1, 5, 2, 6, 3, 7];

fn shape_err(what: &str, got: usize, want: usize) -> String {
    format!("{what}: {got} words/elements, expected {want}")
}

fn check_dims(k: usize, n: usize, group: usize) -> Result<(), String> {
    if n == 0 || k == 0 || group == 0 || !k.is_multiple_of(group) {
        return Err(format!("k={k} n={n} group={group}: need group > 0 dividing k"));
    }
    Ok(())
}

/// AWQ (AutoAWQ GEMM format) -> engine layout. `qweight: i32 [k, n / 8]` and `qzeros:
/// i32 [k / group, n / 8]`, both with AWQ's interleaved nibble order (`AWQ_REVERSE_ORDER`);
/// `scales: f16 [k / group, n]`; `W = (q - z) * s`, no zero offset.
pub fn repack_awq(
    qweight: &[u32],
    qzeros: &[u32],
    scales: &[u16],
    k: usize,
    n: usize,
    group: usize,
) -> Result<Int4Weights, String> {
    check_dims(k, n, group)?;
    if !n.is_multiple_of(8) || !k.is_multiple_of(8) {
        return Err(format!("AWQ: n={n} and k={k} must be multiples of 8"));
    }
    let (nw, ng) = (n / 8, k / group);
    for (what, got, want) in [
        ("qweight", qweight.len(), k * nw),
        ("qzeros", qzeros.len(), ng * nw),
        ("scales", scales.len(), ng * n),
    ] {
        if got != want {
            return Err(shape_err(what, got, want));
        }
    }
    let nib = |w: u32, col: usize| ((w >> (4 * AWQ_REVERSE_ORDER[col % 8])) & 0xf) as u8;
    let mut out = Int4Weights {
        n,
        k,
        group,
        qweight: vec![0; n * k / 8],
        scales: vec![0; n * ng],
        zeros: vec![0; n * ng],
    };
    for c in 0..k {
        for r in 0..n {
            let q = nib(qweight[c * nw + r / 8], r) as u32;
            out.qweight[r * (k / 8) + c / 8] |= q << (4 * (c % 8));
        }
    }
    for g in 0..ng {
        for r in 0..n {
            out.zeros[r * ng + g] = nib(qzeros[g * nw + r / 8], r);
            out.scales[r * ng + g] = scales[g * n + r];
        }
    }
    Ok(out)
}

/// GPTQ (AutoGPTQ / exllama format, `desc_act = false`) -> engine layout. `qweight:
/// i32 [k / 8, n]` (nibble `i` of word (w, col) is element (col, 8w + i): already our order
/// along k, so this is a transpose), `qzeros: i32 [k / group, n / 8]` (nibble `i` is column
/// `8w + i`), `scales: f16 [k / group, n]`. `v1_zero_offset`: the checkpoint stores `z - 1`
/// (the original GPTQ / AutoGPTQ `checkpoint_format = "gptq"`, dequantized as
/// `(stored + 1) & 15`); false for `gptq_v2`, which stores z.
pub fn repack_gptq(
    qweight: &[u32],
    qzeros: &[u32],
    scales: &[u16],
    k: usize,
    n: usize,
    group: usize,
    v1_zero_offset: bool,
) -> Result<Int4Weights, String> {
    check_dims(k, n, group)?;
    if !n.is_multiple_of(8) || !k.is_multiple_of(8) {
        return Err(format!("GPTQ: n={n} and k={k} must be multiples of 8"));
    }
    let ng = k / group;
    for (what, got, want) in [
        ("qweight", qweight.len(), k / 8 * n),
        ("qzeros", qzeros.len(), ng * n / 8),
        ("scales", scales.len(), ng * n),
    ] {
        if got != want {
            return Err(shape_err(what, got, want));
        }
    }
    let kw = k / 8;
    let mut out = Int4Weights {
        n,
        k,
        group,
        qweight: vec![0; n * kw],
        scales: vec![0; n * ng],
        zeros: vec![0; n * ng],
    };
    for w in 0..kw {
        for r in 0..n {
            out.qweight[r * kw + w] = qweight[w * n + r];
        }
    }
    for g in 0..ng {
        for r in 0..n {
            let z = ((qzeros[g * (n / 8) + r / 8] >> (4 * (r % 8))) & 0xf) as u8;
            out.zeros[r * ng + g] = if v1_zero_offset { (z + 1) & 0xf } else { z };
            out.scales[r * ng + g] = scales[g * n + r];
        }
    }
    Ok(out)
}

/// Reference INT4 GEMV (`gemv_int4`'s twin): `y[m, n] = x[m, k] . W^T` in f64, unrounded.
pub fn gemv_int4_ref(x: &[f32], w: &Int4Weights, sdt: ScaleDt, m: usize) -> Vec<f64> {
    super::gemv_ref(x, m, w.n, w.k, |r, c| w.value(r, c, sdt))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AutoAWQ's packing loop (WQLinear_GEMM.from_linear), for int codes `q[k][n]` (k-major).
    fn awq_pack(q: &[Vec<u8>]) -> Vec<u32> {
        const ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
        let (k, n) = (q.len(), q[0].len());
        let mut out = vec![0u32; k * n / 8];
        for c in 0..k {
            for col in 0..n / 8 {
                for (i, o) in ORDER.iter().enumerate() {
                    out[c * (n / 8) + col] |= (q[c][col * 8 + o] as u32) << (4 * i);
                }
            }
        }
        out
    }

    #[test]
    fn awq_hand_made() {
        // k = 8, n = 8, group 4. Column (output channel) r of k-row c holds (r + 2c) % 16; the
        // first k-row is 0..7 across the columns, which AWQ packs as nibbles 0,2,4,6,1,3,5,7.
        let q: Vec<Vec<u8>> = (0..8).map(|c| (0..8).map(|r| ((r + 2 * c) % 16) as u8).collect()).collect();
        let qw = awq_pack(&q);
        assert_eq!(qw[0], 0x7531_6420);
        // zeros: group 0 -> column r has zero r; group 1 -> 15 - r
        let qz = awq_pack(&[(0..8).collect(), (0..8).map(|r| 15 - r).collect()]);
        assert_eq!(qz[0], 0x7531_6420);
        let scales: Vec<u16> = (0..16).map(|i| half::f16::from_f32(0.5 + i as f32).to_bits()).collect();
        let w = repack_awq(&qw, &qz, &scales, 8, 8, 4).expect("repack");
        // row r of the engine layout: k-elements c = 0..7 hold (r + 2c) % 16, lowest nibble first
        assert_eq!(w.qweight[0], 0xeca8_6420);
        assert_eq!(w.qweight[1], 0xfdb9_7531);
        for r in 0..8 {
            for c in 0..8 {
                assert_eq!(w.q(r, c) as usize, (r + 2 * c) % 16);
            }
            assert_eq!(w.zeros[r * 2..r * 2 + 2], [r as u8, 15 - r as u8]);
            // scales [k / g, n] -> [n, k / g]
            assert_eq!(w.scales[r * 2], scales[r]);
            assert_eq!(w.scales[r * 2 + 1], scales[8 + r]);
        }
        // element (3, 5) = (q - z) * s = (13 - 12) * 11.5 (group 1 of row 3)
        assert_eq!(w.value(3, 5, ScaleDt::F16), 11.5);
        assert_eq!(w.value(3, 1, ScaleDt::F16), (5.0 - 3.0) * 3.5);
    }

    #[test]
    fn gptq_hand_made() {
        // k = 16, n = 8, group 8: qweight [2, 8], qzeros [2, 1], scales [2, 8]
        // word (w, col) nibble i = element (col, 8w + i): column r holds k-codes (r + c) % 16
        let qw: Vec<u32> = (0..2)
            .flat_map(|w| {
                (0..8)
                    .map(move |r| (0..8).fold(0u32, |a, i| a | ((((r + 8 * w + i) % 16) as u32) << (4 * i))))
            })
            .collect();
        assert_eq!(qw[1], 0x8765_4321); // column 1, k 0..7
        assert_eq!(qw[8 + 1], 0x0fed_cba9); // column 1, k 8..15
                                            // stored zeros (v1: z - 1): group 0 all 7 (symmetric z = 8), group 1 column i = i
        let qz = vec![0x7777_7777, 0x7654_3210];
        let scales: Vec<u16> = (0..16).map(|i| half::f16::from_f32(i as f32 * 0.25).to_bits()).collect();
        let w = repack_gptq(&qw, &qz, &scales, 16, 8, 8, true).expect("repack");
        assert_eq!(w.qweight[2], 0x8765_4321); // row 1, word 0: a transpose
        assert_eq!(w.qweight[3], 0x0fed_cba9);
        for r in 0..8 {
            for c in 0..16 {
                assert_eq!(w.q(r, c) as usize, (r + c) % 16);
            }
            assert_eq!(w.zeros[r * 2], 8);
            assert_eq!(w.zeros[r * 2 + 1], (r as u8 + 1) & 15);
        }
        // v1 offset wraps: stored 15 -> zero 0
        let w15 = repack_gptq(&qw, &[0xffff_ffff, 0], &scales, 16, 8, 8, true).expect("repack");
        assert_eq!(w15.zeros[0], 0);
        let v2 = repack_gptq(&qw, &qz, &scales, 16, 8, 8, false).expect("repack");
        assert_eq!(v2.zeros[0], 7);
        assert_eq!(v2.zeros[2 * 3 + 1], 3);
        // element (2, 9): q = 11, group 1 of row 2: z = 3, s = scales[8 + 2] = 2.5
        assert_eq!(w.value(2, 9, ScaleDt::F16), (11.0 - 3.0) * 2.5);
    }

    #[test]
    fn awq_and_gptq_agree() {
        // the same integer weights packed both ways give the same engine weights
        let (k, n, g) = (32, 16, 16);
        let code = |r: usize, c: usize| ((r * 7 + c * 3 + r * c) % 16) as u8;
        let zero = |r: usize, gi: usize| ((r * 5 + gi * 11) % 16) as u8;
        let q: Vec<Vec<u8>> = (0..k).map(|c| (0..n).map(|r| code(r, c)).collect()).collect();
        let zs: Vec<Vec<u8>> = (0..k / g).map(|gi| (0..n).map(|r| zero(r, gi)).collect()).collect();
        let scales: Vec<u16> =
            (0..k / g * n).map(|i| half::f16::from_f32(0.01 * (i + 1) as f32).to_bits()).collect();
        let awq = repack_awq(&awq_pack(&q), &awq_pack(&zs), &scales, k, n, g).expect("awq");
        let gq: Vec<u32> = (0..k / 8)
            .flat_map(|w| {
                let q = &q;
                (0..n).map(move |r| (0..8).fold(0, |a, i| a | (q[8 * w + i][r] as u32) << (4 * i)))
            })
            .collect();
        let gz: Vec<u32> = (0..k / g)
            .flat_map(|gi| {
                let zs = &zs;
                (0..n / 8).map(move |w| {
                    (0..8).fold(0, |a, i| a | ((zs[gi][8 * w + i] as u32 + 15) & 15) << (4 * i))
                })
            })
            .collect();
        let gptq = repack_gptq(&gq, &gz, &scales, k, n, g, true).expect("gptq");
        assert_eq!(awq, gptq);
        let x: Vec<f32> = (0..k).map(|c| c as f32 - 10.0).collect();
        let y = gemv_int4_ref(&x, &awq, ScaleDt::F16, 1);
        let d = awq.dequant(ScaleDt::F16);
        let want: f64 = (0..k).map(|c| x[c] as f64 * d[5 * k + c] as f64).sum();
        assert!((y[5] - want).abs() < 1e-4 * want.abs().max(1.0), "{} vs {want}", y[5]);
    }

    #[test]
    fn repack_rejects_bad_shapes() {
        assert!(repack_awq(&[0; 8], &[0; 2], &[0; 16], 8, 8, 3).is_err());
        assert!(repack_awq(&[0; 7], &[0; 2], &[0; 16], 8, 8, 4).is_err());
        assert!(repack_gptq(&[0; 16], &[0; 2], &[0; 15], 16, 8, 8, true).is_err());
    }
}
