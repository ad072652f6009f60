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

/// Full-width q/k RMSNorm, first half: per row of `qkv` `[t, width]`, the sums of squares of the
/// q columns `[0, a)` and the k columns `[a, a + b)`, as `[t, 2]` f32. Under tensor parallelism
/// these are all-reduced before [`qk_rms_apply`].
pub fn qk_sum_sq(qkv: &Tensor, a: usize, b: usize) -> Result<Tensor> {
    let (t, width) = qkv.dims2("qk_sum_sq")?;
    if a + b > width {
        return Err(Error::shape("qk_sum_sq", format!("{a} + {b} columns of {:?}", qkv.shape())));
    }
    if let Some(gpu) = cuda::gpu_of(qkv) {
        let out = cuda::alloc(&gpu, &[t, 2], crate::DType::F32)?;
        let dt = cuda::kernel_dtype(qkv, "qk_sum_sq")?;
        launch::qk_sumsq(&gpu, dt, cuda::ptr(qkv, "qk_sum_sq")?, DevPtr::new(&out, 0), t, width, a, b)
            .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, &[t, 2], crate::DType::F32);
    }
    let xs = qkv.f32s()?;
    let mut out = Vec::with_capacity(2 * t);
    for row in xs.chunks_exact(width) {
        out.push(super::cpu::simd::sum_sq(&row[..a]));
        out.push(super::cpu::simd::sum_sq(&row[a..a + b]));
    }
    Tensor::from_f32(out, &[t, 2])
}

/// Full-width q/k RMSNorm, second half: `qkv` with its q columns `[0, a)` scaled by
/// `wq * rsqrt(sums[.., 0] / counts.0 + eps)` and its k columns `[a, a + b)` by
/// `wk * rsqrt(sums[.., 1] / counts.1 + eps)`; the other columns (v) unchanged. `counts` are the
/// widths the sums cover (all ranks' heads under tensor parallelism).
pub fn qk_rms_apply(
    qkv: &Tensor,
    sums: &Tensor,
    (wq, wk): (&Tensor, &Tensor),
    (counts_q, counts_k): (usize, usize),
    eps: f64,
) -> Result<Tensor> {
    let (t, width) = qkv.dims2("qk_rms_apply")?;
    let (a, b) = (wq.numel(), wk.numel());
    if a + b > width || sums.shape() != [t, 2] {
        return Err(Error::shape(
            "qk_rms_apply",
            format!("qkv {:?}, sums {:?}, weights {a} + {b}", qkv.shape(), sums.shape()),
        ));
    }
    if let Some(gpu) = cuda::gpu_of(qkv) {
        let out = cuda::alloc(&gpu, qkv.shape(), qkv.dtype())?;
        launch::qk_rms_apply(
            &gpu,
            cuda::kernel_dtype(qkv, "qk_rms_apply")?,
            cuda::ptr(qkv, "qk_rms_apply")?,
            cuda::ptr(sums, "qk_rms_apply")?,
            cuda::ptr(wq, "qk_rms_apply")?,
            cuda::ptr(wk, "qk_rms_apply")?,
            DevPtr::new(&out, 0),
            t,
            width,
            (a, b),
            (counts_q as f32, counts_k as f32),
            eps as f32,
        )
        .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, qkv.shape(), qkv.dtype());
    }
    let (xs, ss, wq, wk) = (qkv.f32s()?, sums.f32s()?, wq.f32s()?, wk.f32s()?);
    let mut out = xs.to_vec();
    for (row, s) in out.chunks_exact_mut(width).zip(ss.chunks_exact(2)) {
        let rq = 1.0 / (s[0] / counts_q as f32 + eps as f32).sqrt();
        let rk = 1.0 / (s[1] / counts_k as f32 + eps as f32).sqrt();
        for (x, w) in row[..a].iter_mut().zip(wq) {
            *x = w * (*x * rq);
        }
        for (x, w) in row[a..a + b].iter_mut().zip(wk) {
            *x = w * (*x * rk);
        }
    }
    Tensor::from_f32(out, qkv.shape())
}
