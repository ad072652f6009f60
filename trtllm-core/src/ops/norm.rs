//! RMSNorm (optionally fused with the residual add) and LayerNorm, computed in f32 as HF does.

use trtllm_kernels::launch::{self, DevPtr};

use super::cuda;
use crate::{Error, Result, Tensor};

fn check(op: &'static str, x: &Tensor, w: &Tensor) -> Result<(usize, usize)> {
    let (m, d) = x.dims2(op)?;
    if w.shape() != [d] {
        return Err(Error::shape(op, format!("x {:?}, weight {:?}", x.shape(), w.shape())));
    }
    Ok((m, d))
}

fn rms_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let ms = super::cpu::simd::sum_sq(x) / x.len() as f32;
    let r = 1.0 / (ms + eps).sqrt();
    super::cpu::simd::scale_mul(out, x, w, r);
}

/// `w * x / sqrt(mean(x^2) + eps)` per row. x `[m, d]`, w `[d]` f32 (Gemma's `1 + w` is baked in
/// at load time).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let (m, d) = check("rms_norm", x, w)?;
    if let Some(gpu) = cuda::gpu_of(x) {
        let out = cuda::alloc(&gpu, x.shape(), x.dtype())?;
        let (xp, wp) = (cuda::ptr(x, "rms_norm")?, cuda::ptr(w, "rms_norm")?);
        launch::rms_norm(
            &gpu,
            cuda::kernel_dtype(x, "rms_norm")?,
            xp,
            wp,
            DevPtr::new(&out, 0),
            m,
            d,
            eps as f32,
        )
        .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, x.shape(), x.dtype());
    }
    let _t = super::cpu::prof::scope(|| "rms_norm".to_string());
    let (xs, ws) = (x.f32s()?, w.f32s()?);
    let mut out = vec![0f32; xs.len()];
    for (xr, or) in xs.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        rms_row(xr, ws, eps as f32, or);
    }
    Tensor::from_f32(out, x.shape())
}

/// `s = x + residual; (s, rms_norm(s))`: the residual add fused with the next norm.
pub fn add_rms_norm(x: &Tensor, residual: &Tensor, w: &Tensor, eps: f64) -> Result<(Tensor, Tensor)> {
    let (m, d) = check("add_rms_norm", x, w)?;
    if let Some(gpu) = cuda::gpu_of(x) {
        cuda::same_device("add_rms_norm", x, residual)?;
        let (sum, out) = (cuda::alloc(&gpu, x.shape(), x.dtype())?, cuda::alloc(&gpu, x.shape(), x.dtype())?);
        let (xp, rp, wp) = (
            cuda::ptr(x, "add_rms_norm")?,
            cuda::ptr(residual, "add_rms_norm")?,
            cuda::ptr(w, "add_rms_norm")?,
        );
        let dt = cuda::kernel_dtype(x, "add_rms_norm")?;
        launch::add_rms_norm(
            &gpu,
            dt,
            xp,
            rp,
            wp,
            DevPtr::new(&sum, 0),
            DevPtr::new(&out, 0),
            m,
            d,
            eps as f32,
        )
        .map_err(cuda::dev_err)?;
        return Ok((
            Tensor::from_devbuf(sum, x.shape(), x.dtype())?,
            Tensor::from_devbuf(out, x.shape(), x.dtype())?,
        ));
    }
    if residual.shape() != x.shape() {
        return Err(Error::shape(
            "add_rms_norm",
            format!("x {:?}, residual {:?}", x.shape(), residual.shape()),
        ));
    }
    let _t = super::cpu::prof::scope(|| "add_rms_norm".to_string());
    // One pass per row: the sum, then its norm while the row is in L1.
    let (xs, rs, ws) = (x.f32s()?, residual.f32s()?, w.f32s()?);
    let mut sum = vec![0f32; xs.len()];
    let mut out = vec![0f32; xs.len()];
    for (((xr, rr), sr), or) in
        xs.chunks_exact(d).zip(rs.chunks_exact(d)).zip(sum.chunks_exact_mut(d)).zip(out.chunks_exact_mut(d))
    {
        super::cpu::simd::add(sr, xr, rr);
        rms_row(sr, ws, eps as f32, or);
    }
    Ok((Tensor::from_f32(sum, x.shape())?, Tensor::from_f32(out, x.shape())?))
}

/// `(x - mean) / sqrt(var + eps) * w + b` per row (biased variance, as torch).
pub fn layer_norm(x: &Tensor, w: &Tensor, b: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    let (m, d) = check("layer_norm", x, w)?;
    if let Some(gpu) = cuda::gpu_of(x) {
        let out = cuda::alloc(&gpu, x.shape(), x.dtype())?;
        let bp = match b {
            Some(b) => Some(cuda::ptr(b, "layer_norm")?),
            None => None,
        };
        let (xp, wp) = (cuda::ptr(x, "layer_norm")?, cuda::ptr(w, "layer_norm")?);
        launch::layer_norm(
            &gpu,
            cuda::kernel_dtype(x, "layer_norm")?,
            xp,
            wp,
            bp,
            DevPtr::new(&out, 0),
            m,
            d,
            eps as f32,
        )
        .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, x.shape(), x.dtype());
    }
    let (xs, ws) = (x.f32s()?, w.f32s()?);
    let bs = match b {
        Some(b) => Some(b.f32s()?),
        None => None,
    };
    let mut out = vec![0f32; xs.len()];
    for (xr, or) in xs.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = xr.iter().sum::<f32>() / d as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let r = 1.0 / (var + eps as f32).sqrt();
        for i in 0..d {
            or[i] = (xr[i] - mean) * r * ws[i] + bs.map_or(0.0, |b| b[i]);
        }
    }
    Tensor::from_f32(out, x.shape())
}
