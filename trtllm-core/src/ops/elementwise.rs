//! Elementwise ops: residual add, bias add, scaling, soft-capping.

use super::cuda;
use crate::{DType, Error, Result, Tensor};

/// `a + b` (same shape).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        return Err(Error::shape("add", format!("{:?} vs {:?}", a.shape(), b.shape())));
    }
    if let Some(gpu) = cuda::gpu_of(a) {
        cuda::same_device("add", a, b)?;
        let dt = cuda::kernel_dtype(a, "add")?;
        let out = cuda::alloc(&gpu, a.shape(), a.dtype())?;
        let o = trtllm_kernels::launch::DevPtr::new(&out, 0);
        trtllm_kernels::launch::add(&gpu, dt, cuda::ptr(a, "add")?, cuda::ptr(b, "add")?, o, a.numel())
            .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, a.shape(), a.dtype());
    }
    let v = a.f32s()?.iter().zip(b.f32s()?).map(|(x, y)| x + y).collect();
    Tensor::from_f32(v, a.shape())
}

/// `a * b` elementwise (same shape).
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        return Err(Error::shape("mul", format!("{:?} vs {:?}", a.shape(), b.shape())));
    }
    if let Some(gpu) = cuda::gpu_of(a) {
        cuda::same_device("mul", a, b)?;
        let out = cuda::alloc(&gpu, a.shape(), a.dtype())?;
        let o = trtllm_kernels::launch::DevPtr::new(&out, 0);
        trtllm_kernels::launch::mul(
            &gpu,
            cuda::kernel_dtype(a, "mul")?,
            cuda::ptr(a, "mul")?,
            cuda::ptr(b, "mul")?,
            o,
            a.numel(),
        )
        .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, a.shape(), a.dtype());
    }
    let v = a.f32s()?.iter().zip(b.f32s()?).map(|(x, y)| x * y).collect();
    Tensor::from_f32(v, a.shape())
}

/// Zeros shaped `shape` on the device (and in the dtype) of `like`.
pub fn zeros_like(like: &Tensor, shape: &[usize]) -> Result<Tensor> {
    match cuda::gpu_of(like) {
        Some(gpu) => {
            let n = shape.iter().product::<usize>() * like.dtype().size_in_bytes();
            Tensor::from_devbuf(
                trtllm_kernels::DevBuf::zeros(&gpu, n).map_err(cuda::dev_err)?,
                shape,
                like.dtype(),
            )
        }
        None => Ok(Tensor::zeros(shape)),
    }
}

/// `x + bias` broadcast over rows: x `[m, n]`, bias `[n]` (any float dtype).
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (_, n) = x.dims2("add_bias")?;
    if bias.shape() != [n] {
        return Err(Error::shape("add_bias", format!("x {:?}, bias {:?}", x.shape(), bias.shape())));
    }
    if let Some(gpu) = cuda::gpu_of(x) {
        cuda::same_device("add_bias", x, bias)?;
        let dt = cuda::kernel_dtype(x, "add_bias")?;
        let out = cuda::alloc(&gpu, x.shape(), x.dtype())?;
        let o = trtllm_kernels::launch::DevPtr::new(&out, 0);
        trtllm_kernels::launch::add_bias(
            &gpu,
            dt,
            cuda::ptr(x, "add_bias")?,
            cuda::ptr(bias, "add_bias")?,
            o,
            x.dim(0),
            n,
        )
        .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, x.shape(), x.dtype());
    }
    let b = bias.to_f32_vec()?;
    let mut v = x.f32s()?.to_vec();
    for row in v.chunks_exact_mut(n) {
        for (o, bb) in row.iter_mut().zip(&b) {
            *o += bb;
        }
    }
    Tensor::from_f32(v, x.shape())
}

/// `x * s`.
pub fn scale(x: &Tensor, s: f32) -> Result<Tensor> {
    if let Some(gpu) = cuda::gpu_of(x) {
        let dt = cuda::kernel_dtype(x, "scale")?;
        let out = cuda::alloc(&gpu, x.shape(), x.dtype())?;
        let o = trtllm_kernels::launch::DevPtr::new(&out, 0);
        trtllm_kernels::launch::scale(&gpu, dt, cuda::ptr(x, "scale")?, o, x.numel(), s)
            .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, x.shape(), x.dtype());
    }
    x.map_f32(|v| v * s)
}

/// `tanh(x / cap) * cap` (Gemma 2 final-logit soft-capping).
pub fn softcap(x: &Tensor, cap: f32) -> Result<Tensor> {
    if let Some(gpu) = cuda::gpu_of(x) {
        let dt = cuda::kernel_dtype(x, "softcap")?;
        let out = cuda::alloc(&gpu, x.shape(), x.dtype())?;
        let o = trtllm_kernels::launch::DevPtr::new(&out, 0);
        trtllm_kernels::launch::softcap(&gpu, dt, cuda::ptr(x, "softcap")?, o, x.numel(), cap)
            .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, x.shape(), x.dtype());
    }
    x.map_f32(|v| (v / cap).tanh() * cap)
}

/// Convert a float tensor to `dtype` (on the GPU: f32 <-> bf16).
pub fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    if x.dtype() == dtype {
        return Ok(x.clone());
    }
    x.to_dtype(dtype)
}
