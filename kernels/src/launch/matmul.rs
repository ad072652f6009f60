//! Matrix-product launchers: our GEMV for decode-sized m, cuBLAS / cuBLASLt otherwise.

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublaslt::sys::cudaDataType;
use cudarc::driver::LaunchConfig;

use super::lt::LtShape;
use super::{run, Arg, DevPtr};
use crate::module::Kernel;
use crate::{DevBuf, Dt, Gpu, GpuError};

/// Largest m the GEMV kernel takes.
pub const GEMV_MAX_M: usize = 8;

/// The GEMV takes `x @ w^T` when m <= 8, k is a whole number of 16-byte vectors and both
/// operands start 16-byte aligned (it reads both with 16-byte loads).
pub fn gemv_ok(dt: Dt, x: DevPtr<'_>, w: DevPtr<'_>, m: usize, k: usize) -> bool {
    let v = 16 / dt.size();
    (1..=GEMV_MAX_M).contains(&m)
        && k.is_multiple_of(v)
        && w.addr().is_multiple_of(16)
        && x.addr().is_multiple_of(16)
}

/// Decode-sized `out[m, n] = x[m, k] @ w[n, k]^T` (m <= 8): one warp per output row, 16-byte loads.
#[allow(clippy::too_many_arguments)]
pub fn gemv(
    gpu: &Gpu,
    dt: Dt,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    gemv_launch(gpu, &format!("gemv_{}", dt.suffix()), dt, dt, x, w, out, m, n, k)
}

/// The bf16 GEMV's tuning variants, for `kernels/examples/gemv_sweep.rs`: `variant` is "" (the
/// default: L2 prefetch hint, x in shared memory), "_base" (neither), "_l2" or "_xs" (one of the
/// two), or the read probes "read_rows" / "read_lin" (no arithmetic; their output is not a GEMV);
/// `warps` per block (rows per block).
#[allow(clippy::too_many_arguments)]
pub fn gemv_bf16_variant(
    gpu: &Gpu,
    variant: &str,
    warps: usize,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    let name = match variant {
        "" | "_base" | "_l2" | "_xs" => format!("gemv_bf16{variant}"),
        "read_rows" | "read_lin" => format!("{variant}_bf16"),
        _ => String::new(),
    };
    if name.is_empty() || !(1..=32).contains(&warps) {
        return Err(GpuError::Precondition {
            kernel: "gemv",
            msg: format!("no variant {variant:?} with {warps} warps per block"),
        });
    }
    let smem = if matches!(variant, "" | "_xs") { m * k * 2 } else { 0 };
    if smem > GEMV_SMEM_MAX {
        return Err(GpuError::Precondition { kernel: "gemv", msg: format!("x of {smem} bytes > 48 KB") });
    }
    gemv_launch_warps(gpu, &name, Dt::BF16, Dt::BF16, warps, smem, x, w, out, m, n, k)
}

/// Shared memory a kernel may use without opting in: the GEMV stages x there when it fits.
const GEMV_SMEM_MAX: usize = 48 << 10;

/// Which twin of GEMV entry point `name` runs, and its shared memory: `name` stages x (m * k
/// elements) in shared memory when that fits, `{name}_gx` reads x from global memory otherwise.
fn x_staging(name: &str, dt: Dt, m: usize, k: usize) -> (String, usize) {
    let bytes = m * k * dt.size();
    if bytes <= GEMV_SMEM_MAX {
        (name.to_string(), bytes)
    } else {
        (format!("{name}_gx"), 0)
    }
}

/// The GEMV entry point `name` (see `x_staging`): `dt` operands, `out_dt` result.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemv_launch(
    gpu: &Gpu,
    name: &str,
    dt: Dt,
    out_dt: Dt,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    let (name, smem) = x_staging(name, dt, m, k);
    gemv_launch_warps(gpu, &name, dt, out_dt, 8, smem, x, w, out, m, n, k)
}

/// The gated MLP's first half in one GEMV (m <= 8): `out[m, inter] = act(x @ gate^T) * (x @ up^T)`
/// for `w = [gate; up]` `[2 * inter, k]`; `act` is the activation kind of `gated_act`.
/// Bit-identical to `gemv` followed by `gated_act`.
#[allow(clippy::too_many_arguments)]
pub fn gemv_gated(
    gpu: &Gpu,
    dt: Dt,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    inter: usize,
    k: usize,
    act: i32,
) -> Result<(), GpuError> {
    gemv_check(dt, dt, x, w, out, m, 2 * inter, inter, k)?;
    let (name, smem) = x_staging(&format!("gemv_gated_{}", dt.suffix()), dt, m, k);
    let args = [
        Arg::Ptr(x.addr()),
        Arg::Ptr(w.addr()),
        Arg::Ptr(out.addr()),
        Arg::I32(m as i32),
        Arg::I32(inter as i32),
        Arg::I32(k as i32),
        Arg::I32(act),
    ];
    run(gpu, Kernel::Gemv, &name, gemv_grid(inter, 8, smem), &args)
}

/// Preconditions of every GEMV entry point (`n` rows of w, `out_n` columns of out).
#[allow(clippy::too_many_arguments)]
fn gemv_check(
    dt: Dt,
    out_dt: Dt,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    out_n: usize,
    k: usize,
) -> Result<(), GpuError> {
    if !gemv_ok(dt, x, w, m, k) {
        return Err(GpuError::Precondition {
            kernel: "gemv",
            msg: format!("m={m} k={k} (need m<=8, k % {} == 0, aligned x and w)", 16 / dt.size()),
        });
    }
    x.check("gemv", "x", m * k * dt.size())?;
    w.check("gemv", "w", n * k * dt.size())?;
    out.check("gemv", "out", m * out_n * out_dt.size())
}

/// One warp per output row, `warps` rows per block, `smem` bytes of staged x.
fn gemv_grid(rows: usize, warps: usize, smem: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.div_ceil(warps) as u32, 1, 1),
        block_dim: (32 * warps as u32, 1, 1),
        shared_mem_bytes: smem as u32,
    }
}

#[allow(clippy::too_many_arguments)]
fn gemv_launch_warps(
    gpu: &Gpu,
    name: &str,
    dt: Dt,
    out_dt: Dt,
    warps: usize,
    smem: usize,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    gemv_check(dt, out_dt, x, w, out, m, n, n, k)?;
    let args = [
        Arg::Ptr(x.addr()),
        Arg::Ptr(w.addr()),
        Arg::Ptr(out.addr()),
        Arg::I32(m as i32),
        Arg::I32(n as i32),
        Arg::I32(k as i32),
    ];
    run(gpu, Kernel::Gemv, name, gemv_grid(n, warps, smem), &args)
}

/// `out[m, n] = x[m, k] @ w[n, k]^T`: cuBLAS SGEMM (exact f32, no TF32) or cuBLASLt bf16 with f32 accumulation.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    gpu: &Gpu,
    dt: Dt,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    out: &mut DevBuf,
    out_off: usize,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    x.check("gemm", "x", m * k * dt.size())?;
    w.check("gemm", "w", n * k * dt.size())?;
    DevPtr::new(out, out_off).check("gemm", "out", m * n * dt.size())?;
    let _a = gpu.enter();
    // Row-major y[m,n] = x w^T is column-major y^T[n,m] = op(W)[n,k] x^T[k,m], W^T stored col-major [k,n].
    match dt {
        Dt::F32 => {
            let (alpha, beta) = (1f32, 0f32);
            let o = out.ptr(out_off);
            // SAFETY: extents checked above; pointers are device addresses of live buffers on this
            // GPU's stream, which the handle is bound to.
            unsafe {
                cudarc::cublas::result::sgemm(
                    *gpu.blas.handle(),
                    cublasOperation_t::CUBLAS_OP_T,
                    cublasOperation_t::CUBLAS_OP_N,
                    n as i32,
                    m as i32,
                    k as i32,
                    &alpha,
                    w.addr() as *const f32,
                    k as i32,
                    x.addr() as *const f32,
                    k as i32,
                    &beta,
                    o as *mut f32,
                    n as i32,
                )
            }
            .map_err(|e| GpuError::Launch { kernel: "cublasSgemm".into(), msg: format!("{e:?}") })
        }
        Dt::BF16 => {
            let shape = LtShape {
                ab: cudaDataType::CUDA_R_16BF,
                d: cudaDataType::CUDA_R_16BF,
                scaled: (false, false),
                outer: false,
                m,
                n,
                k,
            };
            super::lt::matmul(gpu, "gemm", shape, x, w, None, None, DevPtr::new(out, out_off))
        }
    }
}
