//! Launchers of `gemv_ggml.cu`: the decode GEMV over ggml block weights (Q8_0, Q4_K) and their
//! dequantization to bf16 (prefill, before the bf16 GEMM). Layouts and the CPU twin:
//! `crate::quant_ref::ggml`.

use cudarc::driver::LaunchConfig;

use super::{grid1d, run, Arg, DevPtr};
use crate::module::Kernel;
use crate::quant_ref::ggml::GgmlBlock;
use crate::{Gpu, GpuError};

/// Largest m the GEMV takes.
pub const GGML_GEMV_MAX_M: usize = 8;
/// Shared memory the GEMV stages x in without opting in.
const SMEM_MAX: usize = 48 << 10;
/// Rows (warps) per block.
const WARPS: usize = 8;

fn pre(kernel: &'static str, msg: String) -> GpuError {
    GpuError::Precondition { kernel, msg }
}

/// Shape and alignment rules shared by both launchers: k whole blocks, W 16-byte aligned for
/// Q4_K (its qs chunks are read as uint4) and 2-byte aligned for Q8_0 (read as u16).
fn check_w(kernel: &'static str, ty: GgmlBlock, w: DevPtr<'_>, n: usize, k: usize) -> Result<(), GpuError> {
    let (per, _) = ty.block();
    let align = if ty == GgmlBlock::Q4K { 16 } else { 2 };
    if k == 0
        || !k.is_multiple_of(per)
        || !w.addr().is_multiple_of(align)
        || k > i32::MAX as usize
        || n > i32::MAX as usize
    {
        return Err(pre(
            kernel,
            format!(
                "{} n={n} k={k} (need k a positive multiple of {per}, W {align}-byte aligned)",
                ty.name()
            ),
        ));
    }
    w.check(kernel, "w", n * ty.row_bytes(k))
}

/// Whether the GEMV takes `x @ W^T` for these operands (m <= 8, k whole blocks, x 16-byte
/// aligned, W aligned for its type).
pub fn gemv_ggml_ok(ty: GgmlBlock, x: DevPtr<'_>, w: DevPtr<'_>, m: usize, k: usize) -> bool {
    let (per, _) = ty.block();
    let align = if ty == GgmlBlock::Q4K { 16 } else { 2 };
    (1..=GGML_GEMV_MAX_M).contains(&m)
        && k > 0
        && k.is_multiple_of(per)
        && x.addr().is_multiple_of(16)
        && w.addr().is_multiple_of(align)
}

/// Decode GEMV with ggml block weights: `out[m, n] = bf16(x[m, k] @ W[n, k]^T)`, x bf16
/// `[m, k]`, W `n` rows of `k / QK` blocks of `ty`. m <= 8.
#[allow(clippy::too_many_arguments)]
pub fn gemv_ggml(
    gpu: &Gpu,
    ty: GgmlBlock,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    const K: &str = "gemv_ggml";
    if !gemv_ggml_ok(ty, x, w, m, k) {
        return Err(pre(
            K,
            format!("{} m={m} k={k} (need 1<=m<=8, whole blocks, 16-byte aligned x)", ty.name()),
        ));
    }
    check_w(K, ty, w, n, k)?;
    x.check(K, "x", m * k * 2)?;
    out.check(K, "out", m * n * 2)?;
    let bytes = m * k * 2;
    let (name, smem) = if bytes <= SMEM_MAX {
        (format!("gemv_{}", ty.name()), bytes)
    } else {
        (format!("gemv_{}_gx", ty.name()), 0)
    };
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(WARPS) as u32, 1, 1),
        block_dim: (32 * WARPS as u32, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    let args = [
        Arg::Ptr(x.addr()),
        Arg::Ptr(w.addr()),
        Arg::Ptr(out.addr()),
        Arg::I32(m as i32),
        Arg::I32(n as i32),
        Arg::I32(k as i32),
    ];
    run(gpu, Kernel::GemvGgml, &name, cfg, &args)
}

/// ggml blocks -> bf16: `out[n, k]` (row-major) the values of W's `n` rows.
pub fn ggml_dequant(
    gpu: &Gpu,
    ty: GgmlBlock,
    w: DevPtr<'_>,
    out: DevPtr<'_>,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    const K: &str = "ggml_dequant";
    check_w(K, ty, w, n, k)?;
    out.check(K, "out", n * k * 2)?;
    let args = [Arg::Ptr(w.addr()), Arg::Ptr(out.addr()), Arg::I32(n as i32), Arg::I32(k as i32)];
    run(gpu, Kernel::GemvGgml, &format!("ggml_dequant_{}", ty.name()), grid1d(n * k / 32), &args)
}
