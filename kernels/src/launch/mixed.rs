//! bf16 operands with an f32 result: `out[m, n] = x[m, k] @ w[n, k]^T` accumulated in f32 and
//! stored in f32. Row-parallel layers under tensor parallelism keep their partial sums in f32 so
//! the all-reduce adds unrounded partials and rounds to bf16 once, as one GPU would.

use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};

use super::{gemv_launch, DevPtr};
use crate::{Dt, Gpu, GpuError};

/// `gemv` with bf16 `x`, `w` and an f32 `out` (m <= 8).
pub fn gemv_bf16_f32out(
    gpu: &Gpu,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    gemv_launch(gpu, "gemv_bf16_f32out", Dt::BF16, Dt::F32, x, w, out, m, n, k)
}

/// Any m: cuBLAS `GemmEx` with bf16 A/B, f32 C, f32 compute.
pub fn gemm_bf16_f32out(
    gpu: &Gpu,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    x.check("gemm_bf16_f32out", "x", m * k * 2)?;
    w.check("gemm_bf16_f32out", "w", n * k * 2)?;
    out.check("gemm_bf16_f32out", "out", m * n * 4)?;
    let (alpha, beta) = (1f32, 0f32);
    let _gate = gpu.enter();
    // Row-major y[m,n] = x w^T is column-major y^T[n,m] = op(W)[n,k] x^T[k,m] (as in `gemm`).
    // SAFETY: the three extents were checked above; the pointers are device addresses of live
    // buffers on this GPU, whose stream the cuBLAS handle is bound to; alpha/beta are f32 as the
    // f32 compute type requires.
    unsafe {
        cudarc::cublas::result::gemm_ex(
            *gpu.blas.handle(),
            cublasOperation_t::CUBLAS_OP_T,
            cublasOperation_t::CUBLAS_OP_N,
            n as i32,
            m as i32,
            k as i32,
            &alpha as *const f32 as *const _,
            w.addr() as *const _,
            cudaDataType::CUDA_R_16BF,
            k as i32,
            x.addr() as *const _,
            cudaDataType::CUDA_R_16BF,
            k as i32,
            &beta as *const f32 as *const _,
            out.addr() as *mut _,
            cudaDataType::CUDA_R_32F,
            n as i32,
            cublasComputeType_t::CUBLAS_COMPUTE_32F,
            cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .map_err(|e| GpuError::Launch { kernel: "cublasGemmEx (bf16 -> f32)".into(), msg: format!("{e:?}") })
}
