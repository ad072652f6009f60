//! GEMV tuning sweep on the GPU: the bf16 decode GEMV at the Llama-3-8B shapes, m = 1:
//! the default kernel at 4/8/16 warps per block, the kernel without its two measured changes
//! (`_base`: no L2 prefetch hint, x from global memory) and with one of them, two read-only
//! probes (the bandwidth ceiling of the same access pattern), cuBLASLt, and cuBLASLt at m = 2048
//! (prefill). Each GEMV variant's output is first checked bit-for-bit against the default's (same
//! arithmetic in the same order), then timed over weight copies rotated past the 50 MB L2.
//!
//! ```text
//! cargo build --release -p trtllm-kernels --example gemv_sweep   # here; copy to .device/bin
//! .device/bin/gemv_sweep                                          # on the GPU machine
//! ```
//! Prints one table: shape, variant, us per call, GB/s (weight bytes / time).

use std::sync::Arc;
use std::time::Instant;

use trtllm_kernels::launch::{gemm, gemv_bf16_variant, DevPtr};
use trtllm_kernels::{DevBuf, Dt, Gpu, GpuError};

/// (name, n rows, k) of the 8B decode GEMVs.
const SHAPES: [(&str, usize, usize); 5] = [
    ("qkv_proj 6144x4096", 6144, 4096),
    ("o_proj 4096x4096", 4096, 4096),
    ("gate_up 28672x4096", 28672, 4096),
    ("down 4096x14336", 4096, 14336),
    ("lm_head 128256x4096", 128256, 4096),
];

/// Random bf16 values in [-1, 1) (never zeros: zeros can run faster than real data).
fn random_bf16(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let v = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        out.extend_from_slice(&half::bf16::from_f32(if v == 0.0 { 0.5 } else { v }).to_le_bytes());
    }
    out
}

fn main() -> Result<(), GpuError> {
    let gpu: Arc<Gpu> = Gpu::new(0)?;
    println!("GEMV sweep on {} (sm_{}), bf16, m = 1", gpu.name, gpu.sm);
    println!("| shape | kernel | us / call | GB/s |");
    println!("|---|---|---|---|");
    for (si, &(name, n, k)) in SHAPES.iter().enumerate() {
        let wbytes = n * k * 2;
        // enough copies that one pass over them is >= 200 MB (L2 is 50 MB)
        let copies = (200usize << 20).div_ceil(wbytes).max(1);
        let ws: Vec<DevBuf> = (0..copies)
            .map(|c| DevBuf::upload(&gpu, &random_bf16(n * k, (si * 16 + c) as u64 + 1)))
            .collect::<Result<_, _>>()?;
        let x = DevBuf::upload(&gpu, &random_bf16(k, 999))?;
        let mut out = DevBuf::alloc(&gpu, n * 2)?;
        gemv_bf16_variant(
            &gpu,
            "",
            8,
            DevPtr::new(&x, 0),
            DevPtr::new(&ws[0], 0),
            DevPtr::new(&out, 0),
            1,
            n,
            k,
        )?;
        let want = out.download(0, n * 2)?;
        let variants: [(&str, usize); 9] = [
            ("", 4),
            ("", 8),
            ("", 16),
            ("_base", 8),
            ("_l2", 8),
            ("_xs", 8),
            ("_xs", 16),
            ("read_rows", 8),
            ("read_lin", 8),
        ];
        for &(v, warps) in &variants {
            let label = format!("gemv_bf16{v} w{warps}");
            if let Err(e) = gemv_bf16_variant(
                &gpu,
                v,
                warps,
                DevPtr::new(&x, 0),
                DevPtr::new(&ws[0], 0),
                DevPtr::new(&out, 0),
                1,
                n,
                k,
            ) {
                println!("| {name} | {label} | error: {e} | - |");
                continue;
            }
            // the GEMV variants do the same arithmetic in the same order: bit-identical output
            if !v.starts_with("read") && out.download(0, n * 2)? != want {
                println!("| {name} | {label} | WRONG OUTPUT | - |");
                continue;
            }
            let iters = 50 * copies.min(4);
            for i in 0..10 {
                let w = &ws[i % copies];
                gemv_bf16_variant(
                    &gpu,
                    v,
                    warps,
                    DevPtr::new(&x, 0),
                    DevPtr::new(w, 0),
                    DevPtr::new(&out, 0),
                    1,
                    n,
                    k,
                )?;
            }
            gpu.synchronize()?;
            let t = Instant::now();
            for i in 0..iters {
                let w = &ws[i % copies];
                gemv_bf16_variant(
                    &gpu,
                    v,
                    warps,
                    DevPtr::new(&x, 0),
                    DevPtr::new(w, 0),
                    DevPtr::new(&out, 0),
                    1,
                    n,
                    k,
                )?;
            }
            gpu.synchronize()?;
            let us = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
            println!("| {name} | {label} | {us:.1} | {:.0} |", wbytes as f64 / us / 1e3);
        }
        // cuBLASLt at m = 1 for reference
        let iters = 50 * copies.min(4);
        gemm(&gpu, Dt::BF16, DevPtr::new(&x, 0), DevPtr::new(&ws[0], 0), &mut out, 0, 1, n, k)?;
        gpu.synchronize()?;
        let t = Instant::now();
        for i in 0..iters {
            gemm(&gpu, Dt::BF16, DevPtr::new(&x, 0), DevPtr::new(&ws[i % copies], 0), &mut out, 0, 1, n, k)?;
        }
        gpu.synchronize()?;
        let us = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
        println!("| {name} | cuBLASLt | {us:.1} | {:.0} |", wbytes as f64 / us / 1e3);
    }
    prefill_gemms(&gpu)
}

/// The same weights at m = 2048 (a 2048-token prefill): cuBLASLt's TFLOP/s per shape, the
/// compute side of TTFT.
fn prefill_gemms(gpu: &Arc<Gpu>) -> Result<(), GpuError> {
    const M: usize = 2048;
    println!();
    println!("| prefill GEMM (m = {M}) | us / call | TFLOP/s |");
    println!("|---|---|---|");
    for (si, &(name, n, k)) in SHAPES.iter().enumerate() {
        let w = DevBuf::upload(gpu, &random_bf16(n * k, si as u64 + 77))?;
        let x = DevBuf::upload(gpu, &random_bf16(M * k, 5))?;
        let mut out = DevBuf::alloc(gpu, M * n * 2)?;
        for _ in 0..3 {
            gemm(gpu, Dt::BF16, DevPtr::new(&x, 0), DevPtr::new(&w, 0), &mut out, 0, M, n, k)?;
        }
        gpu.synchronize()?;
        let iters = 20;
        let t = Instant::now();
        for _ in 0..iters {
            gemm(gpu, Dt::BF16, DevPtr::new(&x, 0), DevPtr::new(&w, 0), &mut out, 0, M, n, k)?;
        }
        gpu.synchronize()?;
        let us = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
        println!("| {name} | {us:.1} | {:.0} |", 2.0 * (M * n * k) as f64 / us / 1e6);
    }
    Ok(())
}
