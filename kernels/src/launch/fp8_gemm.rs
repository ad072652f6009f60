//! FP8 GEMM for prefill through cuBLASLt: E4M3 inputs, f32 compute, bf16 (or f32) output.
//! Row-major `out[m, n] = a[m, k] . b[n, k]^T` is column-major `out^T[n, m] = op(B)[n, k] .
//! a^T[k, m]` with cuBLASLt's A = our `b` (transposed) and B = our `a`: the TN layout, the only
//! one FP8 supports on Hopper. Per-tensor scales go in as device pointers
//! (`CUBLASLT_MATMUL_DESC_{A,B}_SCALE_POINTER`); per-token x per-channel scaling runs the GEMM
//! unit-scaled into f32 and applies both vectors in `fp8_scale_rowcol` (an outer-vector scale
//! mode exists only in newer cuBLASLt than the bindings this crate is built with).

use cudarc::cublaslt::sys::cudaDataType;

use super::lt::{self, LtShape};
use super::quant::fp8_scale_rowcol;
use super::DevPtr;
use crate::{Dt, Gpu, GpuError};

/// `out[m, n] = a_scale * b_scale * (a[m, k] . b[n, k]^T)` with E4M3 `a`, `b`, f32 compute,
/// `out_dt` output (bf16 or f32); a missing scale is 1. Needs k % 16 == 0, n % 16 == 0 and
/// 16-byte aligned pointers (cuBLASLt's FP8 requirements).
#[allow(clippy::too_many_arguments)]
fn fp8_lt(
    gpu: &Gpu,
    a: DevPtr<'_>,
    b: DevPtr<'_>,
    a_scale: Option<DevPtr<'_>>,
    b_scale: Option<DevPtr<'_>>,
    out: DevPtr<'_>,
    out_dt: Dt,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    const K: &str = "matmul_fp8";
    let aligned = [a, b, out].iter().all(|p| p.addr().is_multiple_of(16));
    if m == 0 || !k.is_multiple_of(16) || !n.is_multiple_of(16) || !aligned {
        return Err(GpuError::Precondition {
            kernel: K,
            msg: format!(
                "m={m} n={n} k={k} (need m > 0, k % 16 == 0, n % 16 == 0, 16-byte aligned a, b, out)"
            ),
        });
    }
    a.check(K, "a", m * k)?;
    b.check(K, "b", n * k)?;
    out.check(K, "out", m * n * out_dt.size())?;
    for s in [a_scale, b_scale].into_iter().flatten() {
        s.check(K, "scale", 4)?;
    }
    let d = match out_dt {
        Dt::BF16 => cudaDataType::CUDA_R_16BF,
        Dt::F32 => cudaDataType::CUDA_R_32F,
    };
    let shape = LtShape {
        ab: cudaDataType::CUDA_R_8F_E4M3,
        d,
        scaled: (a_scale.is_some(), b_scale.is_some()),
        m,
        n,
        k,
    };
    lt::matmul(gpu, K, shape, a, b, a_scale, b_scale, out)
}

/// Prefill FP8 GEMM with per-tensor scales: `out[m, n] = bf16(a_scale[0] * b_scale[0] *
/// (a[m, k] . b[n, k]^T))`, `a` (activations) and `b` (weights) E4M3 row-major, the scales f32
/// device values, f32 accumulation. k % 16 == 0, n % 16 == 0, 16-byte aligned a, b, out.
#[allow(clippy::too_many_arguments)]
pub fn matmul_fp8(
    gpu: &Gpu,
    a: DevPtr<'_>,
    b: DevPtr<'_>,
    a_scale: DevPtr<'_>,
    b_scale: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    fp8_lt(gpu, a, b, Some(a_scale), Some(b_scale), out, Dt::BF16, m, n, k)
}

/// As `matmul_fp8` with an f32 `out[m, n]`; a `None` scale is 1.
#[allow(clippy::too_many_arguments)]
pub fn matmul_fp8_f32out(
    gpu: &Gpu,
    a: DevPtr<'_>,
    b: DevPtr<'_>,
    a_scale: Option<DevPtr<'_>>,
    b_scale: Option<DevPtr<'_>>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    fp8_lt(gpu, a, b, a_scale, b_scale, out, Dt::F32, m, n, k)
}

/// Whether bf16 `x[m, k]` quantized per token (`fp8_quantize_rows`) and `w[n, k]` E4M3 meet the
/// FP8 GEMM's requirements: k % 16 == 0, n % 16 == 0, both 16-byte aligned.
pub fn fp8_rowwise_ok(x: DevPtr<'_>, w: DevPtr<'_>, n: usize, k: usize) -> bool {
    k.is_multiple_of(16) && n.is_multiple_of(16) && x.addr().is_multiple_of(16) && w.addr().is_multiple_of(16)
}

/// Per-token x per-channel FP8 GEMM: `out[m, n] = bf16((acc[r, c] * a_rows[r]) * b_cols[c])`
/// with `acc = a[m, k] . b[n, k]^T` (unit-scaled cuBLASLt GEMM into the f32 scratch `acc`, then
/// `fp8_scale_rowcol`); `a_rows` f32 `[m]` (e.g. from `fp8_quantize_rows`), `b_cols` f32 `[n]`
/// (per output channel weight scales).
#[allow(clippy::too_many_arguments)]
pub fn matmul_fp8_rowwise(
    gpu: &Gpu,
    a: DevPtr<'_>,
    a_rows: DevPtr<'_>,
    b: DevPtr<'_>,
    b_cols: DevPtr<'_>,
    acc: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    fp8_lt(gpu, a, b, None, None, acc, Dt::F32, m, n, k)?;
    fp8_scale_rowcol(gpu, acc, a_rows, b_cols, out, m, n)
}
