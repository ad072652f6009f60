//! Shared by the GPU op test files (gpu_ops, gpu_flash): the device (or a skip message), random
//! tensors, the relative error against the CPU oracle and the per-dtype tolerance.
#![allow(dead_code)]

use rand::rngs::SmallRng;
use rand::Rng;
use trtllm_core::{DType, Tensor};
use trtllm_kernels::Gpu;

pub fn gpu() -> Option<std::sync::Arc<Gpu>> {
    if !Gpu::available() {
        eprintln!(
            "SKIPPED: no CUDA GPU on this machine (GPU tests run through scripts/gpu-check.sh on the device)"
        );
        return None;
    }
    // Read once, at the first allocation: every output of this process starts as NaN.
    std::env::set_var("TRTLLM_POISON", "1");
    Some(trtllm_core::device::gpu(0).expect("open GPU 0"))
}

/// For the whole-model GPU tests: a GPU is usable (else a skip message naming the test), with
/// fresh outputs NaN-poisoned and the models registered.
pub fn gpu_ok(name: &str) -> bool {
    if !Gpu::available() {
        eprintln!("SKIPPED {name}: no CUDA GPU on this machine (run scripts/gpu-check.sh on the device)");
        return false;
    }
    // Read at the first allocation: unwritten outputs (eager or captured) show up as NaN.
    std::env::set_var("TRTLLM_POISON", "1");
    trtllm::init();
    true
}

pub fn rand_t(rng: &mut SmallRng, shape: &[usize], scale: f32) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale).collect();
    Tensor::from_f32(v, shape).expect("tensor")
}

pub fn rel(got: &Tensor, want: &Tensor) -> f64 {
    let (g, w) =
        (got.to_cpu().expect("download").to_f32_vec().expect("f32"), want.to_f32_vec().expect("f32"));
    assert_eq!(g.len(), w.len());
    assert!(g.iter().all(|x| x.is_finite()), "non-finite (unwritten or NaN) output");
    let num: f64 = g.iter().zip(&w).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let den: f64 = w.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Upload in `dt` (bf16: the CPU reference sees the same rounded values).
pub fn up(g: &std::sync::Arc<Gpu>, t: &Tensor, dt: DType) -> (Tensor, Tensor) {
    let rounded = t.to_dtype(dt).expect("cast").to_dtype(DType::F32).expect("cast");
    (t.to_dtype(dt).expect("cast").to_gpu(g).expect("upload"), rounded)
}

pub fn tol(dt: DType) -> f64 {
    if dt == DType::F32 {
        1e-5
    } else {
        1e-2
    }
}

pub const DTS: [DType; 2] = [DType::F32, DType::BF16];
