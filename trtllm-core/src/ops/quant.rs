//! `y = x @ W^T` with FP8 E4M3 weights: `W[r, c] = decode(w[r, c]) * scale` with f32 scales per
//! output row or per 128 x 128 block ([`ScaleLayout`]). On the GPU (x bf16):
//! - m <= 8: the FP8 GEMV, which decodes the weights in registers (`gemv_fp8`); the gated MLP
//!   half (`[gate; up]`) in one GEMV with the activation in its epilogue;
//! - per-row scales above that: x quantized per token to E4M3 and the cuBLASLt FP8 GEMM, the
//!   token x channel scales applied in its epilogue (`matmul_fp8_rowwise`);
//! - anything else (block scales at prefill sizes, unaligned shapes): W dequantized to bf16, then
//!   the bf16 GEMM.
//!
//! On the CPU, the oracle: W decoded to f32, then `matmul_t`.

use trtllm_kernels::launch::{self, DevPtr};
use trtllm_kernels::quant_ref::{e4m3_decode, ScaleLayout};

use super::activation::kind;
use super::cuda;
use crate::config::Activation;
use crate::{DType, Error, Result, Tensor};

/// Shapes and dtypes: x `[m, k]`, w E4M3 `[n, k]`, scale f32 with `layout.len(n, k)` values.
fn dims(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    scale: &Tensor,
    layout: ScaleLayout,
) -> Result<(usize, usize, usize)> {
    let (m, k) = x.dims2(op)?;
    let (n, k2) = w.dims2(op)?;
    if k != k2
        || w.dtype() != DType::F8E4M3
        || scale.dtype() != DType::F32
        || scale.numel() != layout.len(n, k)
    {
        return Err(Error::shape(
            op,
            format!(
                "x {:?} @ w^T {:?} {} with {:?} scales {:?} {}",
                x.shape(),
                w.shape(),
                w.dtype(),
                layout,
                scale.shape(),
                scale.dtype()
            ),
        ));
    }
    Ok((m, n, k))
}

/// `W` decoded to f32 on the host `[n, k]` (no bf16 rounding: the f32 dequantized model).
fn dequant_host(w: &Tensor, scale: &Tensor, layout: ScaleLayout) -> Result<Tensor> {
    let (n, k) = w.dims2("fp8 dequant")?;
    let (codes, s) = (w.to_cpu()?, scale.to_cpu()?);
    let (codes, s) = (codes.f8s()?, s.f32s()?);
    Tensor::from_f32(
        (0..n * k).map(|i| e4m3_decode(codes[i]) * s[layout.index(i / k, i % k, k)]).collect(),
        &[n, k],
    )
}

/// `x @ W^T` for FP8 `W` (see the module docs).
pub fn matmul_t_fp8(x: &Tensor, w: &Tensor, scale: &Tensor, layout: ScaleLayout) -> Result<Tensor> {
    const OP: &str = "matmul_t_fp8";
    let (m, n, k) = dims(OP, x, w, scale, layout)?;
    let Some(gpu) = cuda::gpu_of(x) else {
        return super::matmul_t(x, &dequant_host(w, scale, layout)?);
    };
    cuda::same_device(OP, x, w)?;
    cuda::same_device(OP, x, scale)?;
    if x.dtype() != DType::BF16 {
        return Err(Error::DType { op: OP, dtype: x.dtype() });
    }
    let (xp, wp, sp) = (cuda::ptr(x, OP)?, cuda::ptr(w, OP)?, cuda::ptr(scale, OP)?);
    let out = cuda::alloc(&gpu, &[m, n], DType::BF16)?;
    if launch::gemv_fp8_ok(xp, wp, m, k) {
        launch::gemv_fp8(&gpu, xp, wp, sp, layout, DevPtr::new(&out, 0), m, n, k).map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, &[m, n], DType::BF16);
    }
    if layout == ScaleLayout::Row && launch::fp8_rowwise_ok(xp, wp, n, k) {
        let q = cuda::alloc(&gpu, &[m, k], DType::F8E4M3)?;
        let rs = cuda::alloc(&gpu, &[m], DType::F32)?;
        let (qp, rp, op) = (DevPtr::new(&q, 0), DevPtr::new(&rs, 0), DevPtr::new(&out, 0));
        launch::fp8_quantize_rows(&gpu, xp, qp, rp, m, k).map_err(cuda::dev_err)?;
        if !launch::try_matmul_fp8_outer(&gpu, qp, rp, wp, sp, op, m, n, k) {
            // the f32 scratch only where the one-call GEMM did not run
            let acc = cuda::alloc(&gpu, &[m, n], DType::F32)?;
            launch::matmul_fp8_rowwise_f32acc(&gpu, qp, rp, wp, sp, DevPtr::new(&acc, 0), op, m, n, k)
                .map_err(cuda::dev_err)?;
        }
        return Tensor::from_devbuf(out, &[m, n], DType::BF16);
    }
    let wb = cuda::alloc(&gpu, &[n, k], DType::BF16)?;
    launch::fp8_dequant(&gpu, wp, sp, layout, DevPtr::new(&wb, 0), n, k).map_err(cuda::dev_err)?;
    super::matmul_t(x, &Tensor::from_devbuf(wb, &[n, k], DType::BF16)?)
}

/// `gated_activation(x @ W^T, act)` for FP8 `W = [gate; up]` `[2i, k]` -> `[m, i]`: one GEMV
/// with the activation in its epilogue at decode sizes on the GPU, else the two steps.
pub fn matmul_gated_fp8(
    x: &Tensor,
    w: &Tensor,
    scale: &Tensor,
    layout: ScaleLayout,
    act: Activation,
) -> Result<Tensor> {
    const OP: &str = "matmul_gated_fp8";
    let (m, two_i, k) = dims(OP, x, w, scale, layout)?;
    let i = two_i / 2;
    if let Some(gpu) = cuda::gpu_of(x) {
        let (xp, wp) = (cuda::ptr(x, OP)?, cuda::ptr(w, OP)?);
        let blocks_ok = layout != ScaleLayout::Block128 || i.is_multiple_of(128);
        if x.dtype() == DType::BF16 && two_i % 2 == 0 && blocks_ok && launch::gemv_fp8_ok(xp, wp, m, k) {
            cuda::same_device(OP, x, w)?;
            cuda::same_device(OP, x, scale)?;
            let out = cuda::alloc(&gpu, &[m, i], DType::BF16)?;
            let sp = cuda::ptr(scale, OP)?;
            launch::gemv_fp8_gated(&gpu, xp, wp, sp, layout, DevPtr::new(&out, 0), m, i, k, kind(act))
                .map_err(cuda::dev_err)?;
            return Tensor::from_devbuf(out, &[m, i], DType::BF16);
        }
    }
    super::gated_activation(&matmul_t_fp8(x, w, scale, layout)?, act)
}
