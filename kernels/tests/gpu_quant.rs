//! The quantized kernels (FP8 / INT4 GEMVs, FP8 quantize / dequantize / epilogue, cuBLASLt FP8
//! GEMM) against their CPU twins in `trtllm_kernels::quant_ref`. Outputs are NaN-poisoned
//! (0xff bytes) before every launch, so an unwritten element fails. Skips without a GPU.
//!
//! Run on the device: `cargo test --release -p trtllm-kernels --test gpu_quant -- --nocapture
//! --test-threads=1` (one thread so the bandwidth print is not shared with other tests).
//!
//! Tolerances, per element, against an f64 reference over the exactly dequantized weights and
//! the bf16 inputs: GEMVs |got - want| <= 2^-8 |want| + 1e-5 sum|w x| (the bf16 output's half
//! ulp is 2^-9, f32 accumulation adds ~sqrt(k) 2^-24 sum|w x|); FP8 GEMM 2^-8 |want| + 1e-4
//! sum|a b| (tensor-core accumulation); quantize, dequantize, epilogue: bit-exact.

use std::sync::Arc;

use trtllm_kernels::launch::{self, DevPtr, Int4W};
use trtllm_kernels::quant_ref::int4::{Int4Weights, ScaleDt};
use trtllm_kernels::quant_ref::{self as qr, ScaleLayout};
use trtllm_kernels::{DevBuf, Gpu};

fn gpu() -> Option<Arc<Gpu>> {
    if !Gpu::available() {
        eprintln!("SKIPPED: no CUDA GPU on this machine (the quantized-kernel tests need one)");
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
    /// Uniform in [-1, 1), never 0.
    fn f(&mut self) -> f32 {
        loop {
            let v = (self.u() >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
            if v != 0.0 {
                return v;
            }
        }
    }
}

/// Random bf16 values (as f32) in [-amp, amp).
fn rand_bf16(rng: &mut Rng, n: usize, amp: f32) -> Vec<f32> {
    (0..n).map(|_| qr::bf16_round(rng.f() * amp)).collect()
}
fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| half::bf16::from_f32(*x).to_bits().to_le_bytes()).collect()
}
fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn u16_bytes(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn up(g: &Arc<Gpu>, bytes: &[u8]) -> DevBuf {
    DevBuf::upload(g, bytes).expect("upload")
}
/// An output buffer of `bytes` 0xff bytes: NaN as bf16, f32 and E4M3.
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
fn down_f32(b: &DevBuf, n: usize) -> Vec<f32> {
    let raw = b.download(0, n * 4).expect("download");
    raw.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Asserts |got - want| <= rel |want| + abs * mag elementwise; returns the worst ratio.
fn check(what: &str, got: &[f32], want: &[f64], mag: &[f64], rel: f64, abs: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0f64;
    for (i, ((g, w), a)) in got.iter().zip(want).zip(mag).enumerate() {
        assert!(g.is_finite(), "{what}: element {i} not finite ({g}): unwritten or NaN");
        let tol = rel * w.abs() + abs * a + 1e-30;
        let r = (*g as f64 - w).abs() / tol;
        assert!(r <= 1.0, "{what}: element {i}: got {g}, want {w} (tolerance {tol:e})");
        worst = worst.max(r);
    }
    worst
}

const GEMV_SHAPES: [(usize, usize); 6] =
    [(128, 128), (4096, 4096), (14336, 4096), (4096, 14336), (1037, 4096), (300, 1040)];

fn ms_for(n: usize, k: usize) -> &'static [usize] {
    if n * k <= 1 << 20 {
        &[1, 2, 3, 5, 8]
    } else {
        &[1, 2, 8]
    }
}

#[test]
fn fp8_gemv_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0x005e_edf8);
    for (n, k) in GEMV_SHAPES {
        let wf = rand_bf16(&mut rng, n * k, 0.05);
        for layout in [ScaleLayout::Tensor, ScaleLayout::Row, ScaleLayout::Block128] {
            let (q, s) = qr::fp8_quantize_weight(&wf, n, k, layout);
            let (wb, sb) = (up(&g, &q), up(&g, &f32_bytes(&s)));
            for &m in ms_for(n, k) {
                let x = rand_bf16(&mut rng, m * k, 2.0);
                let xb = up(&g, &bf16_bytes(&x));
                let out = poisoned(&g, m * n * 2);
                launch::gemv_fp8(&g, p(&xb), p(&wb), p(&sb), layout, p(&out), m, n, k).expect("gemv_fp8");
                let want = qr::gemv_fp8_ref(&x, &q, &s, layout, m, n, k);
                let xa: Vec<f32> = x.iter().map(|v| v.abs()).collect();
                let mag = qr::gemv_ref(&xa, m, n, k, |r, c| {
                    (qr::e4m3_decode(q[r * k + c]) * s[layout.index(r, c, k)]).abs() as f64
                });
                let got = down_bf16(&out, m * n);
                let w = check(
                    &format!("gemv_fp8 {layout:?} m={m} n={n} k={k}"),
                    &got,
                    &want,
                    &mag,
                    2f64.powi(-8),
                    1e-5,
                );
                eprintln!("gemv_fp8 {layout:?} m={m} n={n} k={k}: worst error / tolerance {w:.3}");
            }
        }
    }
}

#[test]
fn fp8_gemv_gated_matches_unfused() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0x9a7e);
    for (inter, k) in [(128, 128), (14336, 4096), (384, 1040)] {
        let wf = rand_bf16(&mut rng, 2 * inter * k, 0.05);
        for layout in [ScaleLayout::Row, ScaleLayout::Block128] {
            let (q, s) = qr::fp8_quantize_weight(&wf, 2 * inter, k, layout);
            let (wb, sb) = (up(&g, &q), up(&g, &f32_bytes(&s)));
            for m in [1, 3, 8] {
                let x = rand_bf16(&mut rng, m * k, 1.0);
                let xb = up(&g, &bf16_bytes(&x));
                let (gated, both) = (poisoned(&g, m * inter * 2), poisoned(&g, m * 2 * inter * 2));
                launch::gemv_fp8_gated(&g, p(&xb), p(&wb), p(&sb), layout, p(&gated), m, inter, k, 0)
                    .expect("gemv_fp8_gated");
                launch::gemv_fp8(&g, p(&xb), p(&wb), p(&sb), layout, p(&both), m, 2 * inter, k)
                    .expect("gemv_fp8");
                let (got, gu) = (down_bf16(&gated, m * inter), down_bf16(&both, m * 2 * inter));
                // silu(gate) * up from the unfused GEMV's bf16 outputs, rounded to bf16
                let want: Vec<f64> = (0..m * inter)
                    .map(|i| {
                        let (r, c) = (i / inter, i % inter);
                        let (gt, u) = (gu[r * 2 * inter + c], gu[r * 2 * inter + inter + c]);
                        qr::bf16_round(gt / (1.0 + (-gt).exp()) * u) as f64
                    })
                    .collect();
                let mag = vec![0.0; want.len()];
                // one bf16 ulp: the device's expf may differ from the host's in the last bit
                check(
                    &format!("gemv_fp8_gated {layout:?} m={m} inter={inter} k={k}"),
                    &got,
                    &want,
                    &mag,
                    2f64.powi(-7),
                    0.0,
                );
            }
        }
    }
}

fn rand_int4(rng: &mut Rng, n: usize, k: usize, group: usize, sdt: ScaleDt) -> Int4Weights {
    let ng = n * (k / group);
    let scale = |v: f32| match sdt {
        ScaleDt::F16 => half::f16::from_f32(v).to_bits(),
        ScaleDt::BF16 => half::bf16::from_f32(v).to_bits(),
    };
    Int4Weights {
        n,
        k,
        group,
        qweight: (0..n * k / 8).map(|_| rng.u() as u32).collect(),
        scales: (0..ng).map(|_| scale(0.002 + 0.01 * rng.f().abs())).collect(),
        zeros: (0..ng).map(|_| (rng.u() % 16) as u8).collect(),
    }
}

#[test]
fn int4_gemv_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0x1a74);
    for (n, k) in GEMV_SHAPES {
        for (group, sdt) in [(128, ScaleDt::F16), (128, ScaleDt::BF16), (32, ScaleDt::F16)] {
            if !k.is_multiple_of(group) {
                continue;
            }
            let w = rand_int4(&mut rng, n, k, group, sdt);
            let (qb, sb, zb) =
                (up(&g, &u32_bytes(&w.qweight)), up(&g, &u16_bytes(&w.scales)), up(&g, &w.zeros));
            let dw = Int4W { q: p(&qb), scales: p(&sb), zeros: p(&zb), scale_dt: sdt, group };
            for &m in ms_for(n, k) {
                let x = rand_bf16(&mut rng, m * k, 2.0);
                let xb = up(&g, &bf16_bytes(&x));
                let out = poisoned(&g, m * n * 2);
                launch::gemv_int4(&g, p(&xb), dw, p(&out), m, n, k).expect("gemv_int4");
                let want = qr::int4::gemv_int4_ref(&x, &w, sdt, m);
                let xa: Vec<f32> = x.iter().map(|v| v.abs()).collect();
                let mag = qr::gemv_ref(&xa, m, n, k, |r, c| w.value(r, c, sdt).abs());
                let got = down_bf16(&out, m * n);
                let what = format!("gemv_int4 {sdt:?} g={group} m={m} n={n} k={k}");
                let r = check(&what, &got, &want, &mag, 2f64.powi(-8), 1e-5);
                eprintln!("{what}: worst error / tolerance {r:.3}");
            }
        }
    }
}

#[test]
fn fp8_quantize_and_dequantize_are_exact() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0x0a17);
    for (rows, d) in [(1, 128), (7, 4096), (64, 14336), (5, 1000)] {
        let mut x = rand_bf16(&mut rng, rows * d, 3.0);
        if rows > 1 {
            x[d..2 * d].iter_mut().for_each(|v| *v = 0.0); // an all-zero row: scale 1
        }
        x[0] = qr::bf16_round(1e4); // one large value: its row's scale, the rest small
        let xb = up(&g, &bf16_bytes(&x));
        let (q, s) = (poisoned(&g, rows * d), poisoned(&g, rows * 4));
        launch::fp8_quantize_rows(&g, p(&xb), p(&q), p(&s), rows, d).expect("quantize_rows");
        let (wq, ws) = qr::fp8_quantize_rows(&x, rows, d);
        assert_eq!(down_f32(&s, rows), ws, "per-token scales rows={rows} d={d}");
        assert!(q.download(0, rows * d).expect("download") == wq, "per-token codes rows={rows} d={d}");
        // static, saturating: x / 1e-3 reaches 3000
        let sc = up(&g, &f32_bytes(&[1e-3]));
        let qs = poisoned(&g, rows * d);
        launch::fp8_quantize_static(&g, p(&xb), p(&sc), p(&qs), rows * d).expect("quantize_static");
        assert!(
            qs.download(0, rows * d).expect("download") == qr::fp8_quantize_static(&x, 1e-3),
            "static codes"
        );
        // dequantize every layout, from random codes (NaN codes excluded)
        let codes: Vec<u8> = (0..rows * d)
            .map(|_| (rng.u() % 256) as u8)
            .map(|c| if c & 0x7f == 0x7f { 0 } else { c })
            .collect();
        let cb = up(&g, &codes);
        for layout in [ScaleLayout::Tensor, ScaleLayout::Row, ScaleLayout::Col, ScaleLayout::Block128] {
            let sv: Vec<f32> = (0..layout.len(rows, d)).map(|_| 0.01 + rng.f().abs()).collect();
            let svb = up(&g, &f32_bytes(&sv));
            let out = poisoned(&g, rows * d * 2);
            launch::fp8_dequant(&g, p(&cb), p(&svb), layout, p(&out), rows, d).expect("dequant");
            let want = qr::fp8_dequant(&codes, &sv, layout, rows, d);
            let got = down_bf16(&out, rows * d);
            let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "dequant {layout:?} rows={rows} d={d}");
        }
    }
}

/// `(a, scales, b, scales)` for a GEMM test: per-token a, per-channel b.
fn fp8_gemm_inputs(rng: &mut Rng, m: usize, n: usize, k: usize) -> (Vec<u8>, Vec<f32>, Vec<u8>, Vec<f32>) {
    let a = rand_bf16(rng, m * k, 2.0);
    let b = rand_bf16(rng, n * k, 0.05);
    let (qa, sa) = qr::fp8_quantize_rows(&a, m, k);
    let (qb, sb) = qr::fp8_quantize_weight(&b, n, k, ScaleLayout::Row);
    (qa, sa, qb, sb)
}

#[test]
fn fp8_gemm_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0x6e33);
    for (m, n, k) in [(16, 128, 128), (33, 4096, 4096), (128, 1024, 4096), (256, 256, 14336)] {
        let (qa, sa, qb, sb) = fp8_gemm_inputs(&mut rng, m, n, k);
        let (ab, bb) = (up(&g, &qa), up(&g, &qb));
        let dec_a: Vec<f64> = qa.iter().map(|c| qr::e4m3_decode(*c) as f64).collect();
        let dec_b: Vec<f64> = qb.iter().map(|c| qr::e4m3_decode(*c) as f64).collect();
        let mut dot = vec![0f64; m * n];
        let mut mag = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let (ra, rb) = (&dec_a[i * k..(i + 1) * k], &dec_b[j * k..(j + 1) * k]);
                dot[i * n + j] = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
                mag[i * n + j] = ra.iter().zip(rb).map(|(x, y)| (x * y).abs()).sum();
            }
        }
        // per-tensor: the first token's and the first channel's scales for all
        let (ts_a, ts_b) = (up(&g, &f32_bytes(&sa[..1])), up(&g, &f32_bytes(&sb[..1])));
        let out = poisoned(&g, m * n * 2);
        launch::matmul_fp8(&g, p(&ab), p(&bb), p(&ts_a), p(&ts_b), p(&out), m, n, k).expect("matmul_fp8");
        let s = sa[0] as f64 * sb[0] as f64;
        let want: Vec<f64> = dot.iter().map(|v| v * s).collect();
        let mag_t: Vec<f64> = mag.iter().map(|v| v * s).collect();
        let what = format!("matmul_fp8 m={m} n={n} k={k}");
        let r = check(&what, &down_bf16(&out, m * n), &want, &mag_t, 2f64.powi(-8), 1e-4);
        eprintln!("{what}: worst error / tolerance {r:.3}");
        // per-token x per-channel: unit-scaled f32 GEMM + epilogue
        let (rs, cs) = (up(&g, &f32_bytes(&sa)), up(&g, &f32_bytes(&sb)));
        let (acc, out2) = (poisoned(&g, m * n * 4), poisoned(&g, m * n * 2));
        launch::matmul_fp8_rowwise_f32acc(&g, p(&ab), p(&rs), p(&bb), p(&cs), p(&acc), p(&out2), m, n, k)
            .expect("matmul_fp8_rowwise_f32acc");
        let accv = down_f32(&acc, m * n);
        let want2: Vec<f64> = (0..m * n).map(|i| dot[i] * sa[i / n] as f64 * sb[i % n] as f64).collect();
        let mag2: Vec<f64> = (0..m * n).map(|i| mag[i] * sa[i / n] as f64 * sb[i % n] as f64).collect();
        let what = format!("matmul_fp8_rowwise m={m} n={n} k={k}");
        let r = check(&what, &down_bf16(&out2, m * n), &want2, &mag2, 2f64.powi(-8), 1e-4);
        eprintln!("{what}: worst error / tolerance {r:.3}");
        // the epilogue itself is exact on the GEMM's own f32 result
        let epi = qr::scale_rowcol(&accv, &sa, &sb, m, n);
        let got2 = down_bf16(&out2, m * n);
        assert!(got2.iter().zip(&epi).all(|(a, b)| a.to_bits() == b.to_bits()), "{what}: epilogue not exact");
        // the same in one GEMM with cuBLASLt's outer-vector scales, where it has an algorithm
        let out3 = poisoned(&g, m * n * 2);
        let what = format!("matmul_fp8_outer m={m} n={n} k={k}");
        match launch::matmul_fp8_outer(&g, p(&ab), p(&rs), p(&bb), p(&cs), p(&out3), m, n, k) {
            Ok(()) => {
                let r = check(&what, &down_bf16(&out3, m * n), &want2, &mag2, 2f64.powi(-8), 1e-4);
                eprintln!("{what}: worst error / tolerance {r:.3}");
            }
            Err(e) if e.to_string().contains("no algorithm") => {
                eprintln!("{what}: not supported by this cuBLASLt ({e}); the f32 path runs instead")
            }
            Err(e) => panic!("{what}: {e}"),
        }
        // the dispatcher the engine calls: one path or the other, never an error, every shape
        let (acc4, out4) = (poisoned(&g, m * n * 4), poisoned(&g, m * n * 2));
        let what = format!("matmul_fp8_rowwise (dispatch) m={m} n={n} k={k}");
        launch::matmul_fp8_rowwise(&g, p(&ab), p(&rs), p(&bb), p(&cs), p(&acc4), p(&out4), m, n, k)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        check(&what, &down_bf16(&out4, m * n), &want2, &mag2, 2f64.powi(-8), 1e-4);
    }
}

/// Not an assertion: achieved weight-read bandwidth of the decode GEMVs at m = 1.
#[test]
fn quant_gemv_bandwidth() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(0xbead);
    for (n, k) in [(4096, 4096), (14336, 4096), (4096, 14336)] {
        let x = rand_bf16(&mut rng, k, 1.0);
        let xb = up(&g, &bf16_bytes(&x));
        let out = poisoned(&g, n * 2);
        let q: Vec<u8> = (0..n * k).map(|_| (rng.u() % 0x7e) as u8).collect();
        let (wb, sb) =
            (up(&g, &q), up(&g, &f32_bytes(&vec![0.01; n.max(n.div_ceil(128) * k.div_ceil(128))])));
        let w4 = rand_int4(&mut rng, n, k, 128, ScaleDt::F16);
        let (qb, s4, zb) =
            (up(&g, &u32_bytes(&w4.qweight)), up(&g, &u16_bytes(&w4.scales)), up(&g, &w4.zeros));
        let wbf = up(&g, &vec![0x3cu8; n * k * 2]);
        let time = |f: &dyn Fn()| {
            for _ in 0..20 {
                f();
            }
            g.synchronize().expect("sync");
            let (iters, t) = (200, std::time::Instant::now());
            for _ in 0..iters {
                f();
            }
            g.synchronize().expect("sync");
            t.elapsed().as_secs_f64() / iters as f64
        };
        let row = time(&|| {
            launch::gemv_fp8(&g, p(&xb), p(&wb), p(&sb), ScaleLayout::Row, p(&out), 1, n, k).expect("fp8")
        });
        let blk = time(&|| {
            launch::gemv_fp8(&g, p(&xb), p(&wb), p(&sb), ScaleLayout::Block128, p(&out), 1, n, k)
                .expect("fp8")
        });
        let dw = Int4W { q: p(&qb), scales: p(&s4), zeros: p(&zb), scale_dt: ScaleDt::F16, group: 128 };
        let i4 = time(&|| launch::gemv_int4(&g, p(&xb), dw, p(&out), 1, n, k).expect("int4"));
        let bf = time(&|| {
            launch::gemv(&g, trtllm_kernels::Dt::BF16, p(&xb), p(&wbf), p(&out), 1, n, k).expect("bf16")
        });
        let gbs = |bytes: usize, t: f64| bytes as f64 / t / 1e9;
        eprintln!(
            "n={n} k={k} m=1: fp8 row {:.1} us {:.0} GB/s | fp8 block {:.1} us {:.0} GB/s | int4 g128 {:.1} us {:.0} GB/s | bf16 {:.1} us {:.0} GB/s",
            row * 1e6,
            gbs(n * k, row),
            blk * 1e6,
            gbs(n * k, blk),
            i4 * 1e6,
            gbs(n * k / 2 + n * k / 128 * 3, i4),
            bf * 1e6,
            gbs(n * k * 2, bf),
        );
    }
}
