//! `y = x @ w^T (+ b)`: x `[m, k]` f32, w `[n, k]` (f32, bf16 or f16), y `[m, n]` f32.
//! On the CPU: `cpu::gemm` (SIMD register-tiled dot products on the persistent pool; m = 1 is a
//! GEMV that reads each weight once, larger m a cache-blocked GEMM), f32 accumulation whatever
//! the weight dtype.

use super::cpu::gemm::{self, Weights};
use super::cuda;
use crate::{DType, Error, Result, Tensor};

/// `x @ w^T`.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (m, k) = x.dims2("matmul_t")?;
    let (n, k2) = w.dims2("matmul_t")?;
    if k != k2 {
        return Err(Error::shape("matmul_t", format!("x {:?} @ w^T {:?}", x.shape(), w.shape())));
    }
    if let Some(gpu) = cuda::gpu_of(x) {
        cuda::same_device("matmul_t", x, w)?;
        if x.dtype() != w.dtype() {
            return Err(Error::shape(
                "matmul_t",
                format!("x is {}, w is {} (the GPU path needs one dtype)", x.dtype(), w.dtype()),
            ));
        }
        let dt = cuda::kernel_dtype(x, "matmul_t")?;
        let mut out = cuda::alloc(&gpu, &[m, n], x.dtype())?;
        let (xp, wp) = (cuda::ptr(x, "matmul_t")?, cuda::ptr(w, "matmul_t")?);
        if trtllm_kernels::launch::gemv_ok(dt, xp, wp, m, k) {
            // Decode: a bandwidth-bound GEMV of our own beats cuBLAS's heuristics + launch cost.
            trtllm_kernels::launch::gemv(
                &gpu,
                dt,
                xp,
                wp,
                trtllm_kernels::launch::DevPtr::new(&out, 0),
                m,
                n,
                k,
            )
            .map_err(cuda::dev_err)?;
            return Tensor::from_devbuf(out, &[m, n], x.dtype());
        }
        trtllm_kernels::launch::gemm(
            &gpu,
            dt,
            cuda::ptr(x, "matmul_t")?,
            cuda::ptr(w, "matmul_t")?,
            &mut out,
            0,
            m,
            n,
            k,
        )
        .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, &[m, n], x.dtype());
    }
    if let Some(parts) = w.ggml_parts() {
        return matmul_ggml(x.f32s()?, m, k, &parts, n);
    }
    let _t = super::cpu::prof::scope(|| match m {
        1 => format!("gemv {n}x{k} {}", w.dtype()),
        2..=8 => format!("gemm m={m} {n}x{k} {}", w.dtype()),
        _ => format!("gemm {n}x{k} {}", w.dtype()),
    });
    let xs = x.f32s()?;
    let w = match w.dtype() {
        DType::F32 => Weights::F32(w.f32s()?),
        DType::BF16 => Weights::Bf16(w.bf16s()?),
        DType::F16 => Weights::F16(w.f16s()?),
        d => return Err(Error::DType { op: "matmul_t", dtype: d }),
    };
    let mut y = vec![0f32; m * n];
    gemm::matmul(xs, m, k, w, n, &mut y);
    Tensor::from_f32(y, &[m, n])
}

/// `x @ w^T` for weights kept in ggml blocks (`cpu::qgemm`: int8 activations, integer dots),
/// each run of rows in its own block type (a fused weight whose parts differ).
fn matmul_ggml(
    xs: &[f32],
    m: usize,
    k: usize,
    parts: &[crate::tensor::GgmlPart<'_>],
    n: usize,
) -> Result<Tensor> {
    use super::cpu::qgemm;
    let mut wp = Vec::with_capacity(parts.len());
    for p in parts {
        if !qgemm::supported(p.ty) || !k.is_multiple_of(qgemm::block_len(p.ty)) {
            return Err(Error::shape(
                "matmul_t",
                format!("no CPU kernel for {} weights with rows of {k}", p.ty),
            ));
        }
        wp.push(qgemm::WeightPart { ty: p.ty, w: p.bytes, n: p.elems / k });
    }
    let _t = super::cpu::prof::scope(|| {
        let tys: Vec<String> = parts.iter().map(|p| p.ty.to_string()).collect();
        format!("{} {n}x{k} {}", if m == 1 { "gemv" } else { "gemm" }, tys.join("+"))
    });
    let mut y = vec![0f32; m * n];
    qgemm::matmul_parts(xs, m, k, &wp, &mut y);
    Tensor::from_f32(y, &[m, n])
}

/// `x @ w^T` with the result in f32 whatever the operands' dtype: bf16 operands on the GPU
/// accumulate in f32 and store f32 (no bf16 rounding of the result); elsewhere `matmul_t` (f32
/// already). Row-parallel layers use it for partial sums that are all-reduced before rounding.
pub fn matmul_t_f32(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (Some(gpu), DType::BF16) = (cuda::gpu_of(x), x.dtype()) else {
        return matmul_t(x, w)?.to_dtype(DType::F32);
    };
    let (m, k) = x.dims2("matmul_t_f32")?;
    let (n, k2) = w.dims2("matmul_t_f32")?;
    if k != k2 || w.dtype() != DType::BF16 {
        return Err(Error::shape(
            "matmul_t_f32",
            format!("x {:?} {} @ w^T {:?} {}", x.shape(), x.dtype(), w.shape(), w.dtype()),
        ));
    }
    cuda::same_device("matmul_t_f32", x, w)?;
    let out = cuda::alloc(&gpu, &[m, n], DType::F32)?;
    let (xp, wp, op) = (
        cuda::ptr(x, "matmul_t_f32")?,
        cuda::ptr(w, "matmul_t_f32")?,
        trtllm_kernels::launch::DevPtr::new(&out, 0),
    );
    if trtllm_kernels::launch::gemv_ok(trtllm_kernels::Dt::BF16, xp, wp, m, k) {
        trtllm_kernels::launch::gemv_bf16_f32out(&gpu, xp, wp, op, m, n, k).map_err(cuda::dev_err)?;
    } else {
        trtllm_kernels::launch::gemm_bf16_f32out(&gpu, xp, wp, op, m, n, k).map_err(cuda::dev_err)?;
    }
    Tensor::from_devbuf(out, &[m, n], DType::F32)
}

/// `x @ w^T + b`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = matmul_t(x, w)?;
    match b {
        Some(b) => super::add_bias(&y, b),
        None => Ok(y),
    }
}
