//! The ggml block kernels (`cuda/gemv_ggml.cu`: Q8_0 / Q4_K decode GEMV and bf16
//! dequantization) against their CPU twin `trtllm_kernels::quant_ref::ggml`, on random blocks
//! (random f16 scales, every code) at several shapes. Outputs are NaN-poisoned (0xff bytes)
//! before every launch, so an unwritten element fails. Skips without a GPU.
//!
//! Run on the device: `cargo test --release -p trtllm-kernels --test gpu_gguf -- --nocapture
//! --test-threads=1`.
//!
//! Tolerances, per element, against an f64 reference over the exactly dequantized weights and
//! the bf16 inputs: GEMV |got - want| <= 2^-8 |want| + 1e-5 sum|w x| (the bf16 output's half ulp
//! is 2^-9, f32 accumulation adds ~sqrt(k) 2^-24 sum|w x|); dequantization: the bf16 rounding
//! of the f32 value the twin computes (|got - want| <= 2^-8 |want|; Q4_K's `d * sc * q - dmin * m`
//! is f32 on both sides, in the same order).

use std::sync::Arc;

use trtllm_kernels::launch::{self, DevPtr};
use trtllm_kernels::quant_ref::ggml::{self as gq, GgmlBlock};
use trtllm_kernels::{DevBuf, Gpu};

fn gpu() -> Option<Arc<Gpu>> {
    if !Gpu::available() {
        eprintln!("SKIPPED: no CUDA GPU on this machine (the ggml kernel tests need one)");
        return None;
    }
    Some(Gpu::new(0).expect("open GPU 0"))
}

/// xorshift64*: reproducible inputs without a dependency.
struct Rng(u64);
impl Rng {
    fn u(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A bf16 value in [-amp, amp), never 0.
    fn bf16(&mut self, amp: f32) -> f32 {
        loop {
            let v = ((self.u() >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * amp;
            let v = half::bf16::from_f32(v).to_f32();
            if v != 0.0 {
                return v;
            }
        }
    }
}

fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| half::bf16::from_f32(*x).to_bits().to_le_bytes()).collect()
}
fn up(g: &Arc<Gpu>, bytes: &[u8]) -> DevBuf {
    DevBuf::upload(g, bytes).expect("upload")
}
fn poisoned(g: &Arc<Gpu>, bytes: usize) -> DevBuf {
    let mut b = DevBuf::alloc(g, bytes).expect("alloc");
    b.write(0, &vec![0xff; bytes]).expect("poison");
    b
}
fn p(b: &DevBuf) -> DevPtr<'_> {
    DevPtr::new(b, 0)
}
fn down_bf16(b: &DevBuf, n: usize) -> Vec<f32> {
    let raw = b.download(0, n * 2).expect("download");
    raw.chunks(2).map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()).collect()
}

/// `(n, k)`: k whole Q4_K super-blocks (and so whole Q8_0 blocks); a row count that is not a
/// multiple of the 8 rows per block; one super-block per row; x larger than shared memory.
const SHAPES: [(usize, usize); 6] =
    [(128, 256), (576, 1536), (1037, 4096), (300, 768), (64, 256), (2048, 8192)];
/// Q8_0 only: k an odd number of 32-element blocks, not whole super-blocks.
const Q8_SHAPES: [(usize, usize); 2] = [(96, 1056), (33, 96)];

fn shapes(ty: GgmlBlock) -> Vec<(usize, usize)> {
    let extra: &[(usize, usize)] = if ty == GgmlBlock::Q8_0 { &Q8_SHAPES } else { &[] };
    SHAPES.iter().chain(extra).copied().collect()
}

#[test]
fn ggml_gemv_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0x0099_1f3a);
    for ty in [GgmlBlock::Q8_0, GgmlBlock::Q4K] {
        for (n, k) in shapes(ty) {
            let w = gq::random_blocks(ty, n, k, &mut || rng.u());
            let wf = gq::dequant(ty, &w, n, k);
            assert!(wf.iter().all(|v| v.is_finite()));
            let wb = up(&g, &w);
            for m in [1usize, 2, 3, 5, 8] {
                let x: Vec<f32> = (0..m * k).map(|_| rng.bf16(2.0)).collect();
                let xb = up(&g, &bf16_bytes(&x));
                let out = poisoned(&g, m * n * 2);
                launch::gemv_ggml(&g, ty, p(&xb), p(&wb), p(&out), m, n, k).expect("gemv_ggml");
                let (want, mag) = gq::gemv_ref(ty, &x, &w, m, n, k);
                let got = down_bf16(&out, m * n);
                let mut worst = 0f64;
                for (i, ((gv, wv), a)) in got.iter().zip(&want).zip(&mag).enumerate() {
                    assert!(
                        gv.is_finite(),
                        "{ty:?} m={m} n={n} k={k}: element {i} not finite ({gv}): unwritten"
                    );
                    let tol = 2f64.powi(-8) * wv.abs() + 1e-5 * a + 1e-30;
                    let r = (*gv as f64 - wv).abs() / tol;
                    assert!(
                        r <= 1.0,
                        "{ty:?} m={m} n={n} k={k}: element {i}: got {gv}, want {wv} (tolerance {tol:e})"
                    );
                    worst = worst.max(r);
                }
                eprintln!("gemv_ggml {ty:?} m={m} n={n} k={k}: worst error / tolerance {worst:.3}");
            }
        }
    }
}

#[test]
fn ggml_dequant_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0x00de_9a17);
    for ty in [GgmlBlock::Q8_0, GgmlBlock::Q4K] {
        for (n, k) in shapes(ty) {
            let w = gq::random_blocks(ty, n, k, &mut || rng.u());
            let want = gq::dequant(ty, &w, n, k);
            let wb = up(&g, &w);
            let out = poisoned(&g, n * k * 2);
            launch::ggml_dequant(&g, ty, p(&wb), p(&out), n, k).expect("ggml_dequant");
            let got = down_bf16(&out, n * k);
            for (i, (gv, wv)) in got.iter().zip(&want).enumerate() {
                assert!(gv.is_finite(), "{ty:?} n={n} k={k}: element {i} not finite ({gv}): unwritten");
                assert!(
                    (gv - wv).abs() <= 2f32.powi(-8) * wv.abs(),
                    "{ty:?} n={n} k={k}: element {i} (row {}, col {}): got {gv}, want {wv}",
                    i / k,
                    i % k
                );
            }
        }
    }
}

#[test]
fn ggml_launchers_refuse_bad_shapes() {
    let Some(g) = gpu() else { return };
    let w = up(&g, &vec![0u8; 144 * 4]);
    let x = up(&g, &vec![0u8; 2 * 1024]);
    let out = poisoned(&g, 2 * 1024);
    // k not whole super-blocks, m past 8, a W too small for n rows.
    assert!(launch::gemv_ggml(&g, GgmlBlock::Q4K, p(&x), p(&w), p(&out), 1, 4, 128).is_err());
    assert!(launch::gemv_ggml(&g, GgmlBlock::Q4K, p(&x), p(&w), p(&out), 9, 1, 256).is_err());
    assert!(launch::gemv_ggml(&g, GgmlBlock::Q4K, p(&x), p(&w), p(&out), 1, 5, 256).is_err());
    assert!(launch::ggml_dequant(&g, GgmlBlock::Q8_0, DevPtr::new(&w, 1), p(&out), 1, 32).is_err());
}
