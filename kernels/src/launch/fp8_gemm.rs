//! FP8 GEMM for prefill through cuBLASLt: E4M3 inputs, f32 compute, bf16 (or f32) output.
//! Row-major `out[m, n] = a[m, k] . b[n, k]^T` is column-major `out^T[n, m] = op(B)[n, k] .
//! a^T[k, m]` with cuBLASLt's A = our `b` (transposed) and B = our `a`: the TN layout, the only
//! one FP8 supports on Hopper. Per-tensor scales go in as device pointers
//! (`CUBLASLT_MATMUL_DESC_{A,B}_SCALE_POINTER`). Per-token x per-channel scaling runs as one
//! GEMM with cuBLASLt's outer-vector scale mode (cuBLASLt 12.9+ on sm_90) straight to bf16;
//! where the installed cuBLASLt has no algorithm for it (the first call finds out, once per
//! process) the GEMM runs unit-scaled into f32 and `fp8_scale_rowcol` applies both vectors.

use std::sync::atomic::{AtomicU8, Ordering};

use cudarc::cublaslt::sys::cudaDataType;

use super::lt::{self, LtShape};
use super::quant::fp8_scale_rowcol;
use super::DevPtr;
use crate::{Dt, Gpu, GpuError};

/// How `fp8_lt` scales the product: per tensor (a missing scale is 1), or by outer vectors
/// (`a_scale` one f32 per row of `a`, `b_scale` one per row of `b`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scales {
    Tensor,
    Outer,
}

/// `out[m, n] = a_scale * b_scale * (a[m, k] . b[n, k]^T)` with E4M3 `a`, `b`, f32 compute,
/// `out_dt` output (bf16 or f32), the scales as `scales` says. Needs k % 16 == 0, n % 16 == 0
/// and 16-byte aligned pointers (cuBLASLt's FP8 requirements).
#[allow(clippy::too_many_arguments)]
fn fp8_lt(
    gpu: &Gpu,
    kernel: &'static str,
    a: DevPtr<'_>,
    b: DevPtr<'_>,
    a_scale: Option<DevPtr<'_>>,
    b_scale: Option<DevPtr<'_>>,
    scales: Scales,
    out: DevPtr<'_>,
    out_dt: Dt,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    let aligned = [a, b, out].iter().all(|p| p.addr().is_multiple_of(16));
    if m == 0 || !k.is_multiple_of(16) || !n.is_multiple_of(16) || !aligned {
        return Err(GpuError::Precondition {
            kernel,
            msg: format!(
                "m={m} n={n} k={k} (need m > 0, k % 16 == 0, n % 16 == 0, 16-byte aligned a, b, out)"
            ),
        });
    }
    a.check(kernel, "a", m * k)?;
    b.check(kernel, "b", n * k)?;
    out.check(kernel, "out", m * n * out_dt.size())?;
    let (a_len, b_len) = match scales {
        Scales::Tensor => (1, 1),
        Scales::Outer => (m, n),
    };
    if let Some(s) = a_scale {
        s.check(kernel, "a_scale", a_len * 4)?;
    }
    if let Some(s) = b_scale {
        s.check(kernel, "b_scale", b_len * 4)?;
    }
    let d = match out_dt {
        Dt::BF16 => cudaDataType::CUDA_R_16BF,
        Dt::F32 => cudaDataType::CUDA_R_32F,
    };
    let shape = LtShape {
        ab: cudaDataType::CUDA_R_8F_E4M3,
        d,
        scaled: (a_scale.is_some(), b_scale.is_some()),
        outer: scales == Scales::Outer,
        m,
        n,
        k,
    };
    lt::matmul(gpu, kernel, shape, a, b, a_scale, b_scale, out)
}

/// Whether cuBLASLt runs outer-vector-scaled FP8 GEMMs here: 0 unknown, 1 yes, 2 no.
static OUTER_VEC: AtomicU8 = AtomicU8::new(0);

/// `out[m, n] = bf16(a_rows[r] * b_cols[c] * (a . b^T)[r, c])` in one cuBLASLt GEMM with
/// outer-vector scales; an error where the installed cuBLASLt has no algorithm for it.
#[allow(clippy::too_many_arguments)]
pub fn matmul_fp8_outer(
    gpu: &Gpu,
    a: DevPtr<'_>,
    a_rows: DevPtr<'_>,
    b: DevPtr<'_>,
    b_cols: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    let (ar, bc) = (Some(a_rows), Some(b_cols));
    fp8_lt(gpu, "matmul_fp8_outer", a, b, ar, bc, Scales::Outer, out, Dt::BF16, m, n, k)
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
    fp8_lt(gpu, "matmul_fp8", a, b, Some(a_scale), Some(b_scale), Scales::Tensor, out, Dt::BF16, m, n, k)
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
    fp8_lt(gpu, "matmul_fp8", a, b, a_scale, b_scale, Scales::Tensor, out, Dt::F32, m, n, k)
}

/// Whether bf16 `x[m, k]` quantized per token (`fp8_quantize_rows`) and `w[n, k]` E4M3 meet the
/// FP8 GEMM's requirements: k % 16 == 0, n % 16 == 0, both 16-byte aligned.
pub fn fp8_rowwise_ok(x: DevPtr<'_>, w: DevPtr<'_>, n: usize, k: usize) -> bool {
    k.is_multiple_of(16) && n.is_multiple_of(16) && x.addr().is_multiple_of(16) && w.addr().is_multiple_of(16)
}

/// [`matmul_fp8_outer`] where it runs: `true` when it did, `false` when the caller takes the
/// f32-scratch path ([`matmul_fp8_rowwise_f32acc`]) — the mode is off
/// (`KernelOptions::fp8_outer_vec`), this cuBLASLt refuses its attributes (then it stays off
/// for the process), or it has no algorithm for this shape (cuBLASLt's support of the mode
/// varies by shape, so every call tries).
#[allow(clippy::too_many_arguments)]
pub fn try_matmul_fp8_outer(
    gpu: &Gpu,
    a: DevPtr<'_>,
    a_rows: DevPtr<'_>,
    b: DevPtr<'_>,
    b_cols: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> bool {
    if OUTER_VEC.load(Ordering::Relaxed) == 2 || !crate::options().fp8_outer_vec {
        return false;
    }
    match matmul_fp8_outer(gpu, a, a_rows, b, b_cols, out, m, n, k) {
        Ok(()) => {
            OUTER_VEC.store(1, Ordering::Relaxed);
            true
        }
        Err(e) => {
            // The descriptor attributes themselves refused: a cuBLASLt without the mode.
            if matches!(&e, GpuError::Launch { kernel, .. } if kernel.ends_with("(set attribute)")) {
                OUTER_VEC.store(2, Ordering::Relaxed);
            }
            false
        }
    }
}

/// Per-token x per-channel FP8 GEMM: `out[m, n] = bf16((acc[r, c] * a_rows[r]) * b_cols[c])`
/// with `acc = a[m, k] . b[n, k]^T`: [`try_matmul_fp8_outer`], else a unit-scaled GEMM into the
/// f32 scratch `acc`, then `fp8_scale_rowcol`; `a_rows` f32 `[m]` (e.g. from
/// `fp8_quantize_rows`), `b_cols` f32 `[n]` (per output channel weight scales).
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
    if try_matmul_fp8_outer(gpu, a, a_rows, b, b_cols, out, m, n, k) {
        return Ok(());
    }
    matmul_fp8_rowwise_f32acc(gpu, a, a_rows, b, b_cols, acc, out, m, n, k)
}

/// [`matmul_fp8_rowwise`] without cuBLASLt's outer-vector mode: a unit-scaled GEMM into the
/// f32 scratch `acc`, then `fp8_scale_rowcol`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_fp8_rowwise_f32acc(
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
    fp8_lt(gpu, "matmul_fp8", a, b, None, None, Scales::Tensor, acc, Dt::F32, m, n, k)?;
    fp8_scale_rowcol(gpu, acc, a_rows, b_cols, out, m, n)
}
