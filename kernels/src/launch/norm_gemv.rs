//! Decode GEMVs with the RMSNorm in front of them fused in (`gemv_rms_*`, `gemv_gated_rms_*` in
//! gemv.cu): every block normalizes the (L2-resident) input rows while staging them in shared
//! memory, so a decoder layer's input norm and post-attention add + norm need no kernel of their own.

use super::matmul::{gemv_check, gemv_grid, gemv_ok, GEMV_SMEM_MAX};
use super::{opt, run, A, P};
use crate::module::Kernel;
use crate::{Dt, Gpu, GpuError};

/// Blocks of the fused GEMVs: at most `TRTLLM_GEMV_BLOCKS_PER_SM` (default 4) per SM, each
/// looping over several rows, so the norm in each block's prologue is computed once per block
/// rather than once per 8 rows (0: one block per 8 rows, like the plain GEMV).
fn grid(gpu: &Gpu, rows: usize, smem: usize) -> cudarc::driver::LaunchConfig {
    static PER_SM: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let per_sm = *PER_SM.get_or_init(|| {
        std::env::var("TRTLLM_GEMV_BLOCKS_PER_SM").ok().and_then(|v| v.parse().ok()).unwrap_or(4)
    });
    let mut cfg = gemv_grid(rows, 8, smem);
    if per_sm > 0 {
        cfg.grid_dim.0 = cfg.grid_dim.0.min(gpu.sms * per_sm as u32);
    }
    cfg
}

/// The normalized input of a fused GEMV: `rms_norm(x + res) * norm_w` (`res` None: `x` alone);
/// when `sum` is given, `x + res` is written there (the new residual stream).
#[derive(Clone, Copy)]
pub struct RmsIn<'a> {
    pub x: P<'a>,
    pub res: Option<P<'a>>,
    /// f32 `[k]`.
    pub norm_w: P<'a>,
    pub eps: f32,
    pub sum: Option<P<'a>>,
}

/// The fused GEMV takes it: a GEMV shape (`gemv_ok`), x staged in shared memory (m * k elements
/// <= 48 KB), every operand 16-byte aligned.
pub fn gemv_rms_ok(dt: Dt, a: &RmsIn<'_>, w: P<'_>, m: usize, k: usize) -> bool {
    let aligned = |p: Option<P<'_>>| p.is_none_or(|p| p.addr().is_multiple_of(16));
    gemv_ok(dt, a.x, w, m, k)
        && m * k * dt.size() <= GEMV_SMEM_MAX
        && aligned(a.res)
        && aligned(a.sum)
        && aligned(Some(a.norm_w))
}

fn check(dt: Dt, a: &RmsIn<'_>, w: P<'_>, m: usize, k: usize) -> Result<(), GpuError> {
    if !gemv_rms_ok(dt, a, w, m, k) {
        return Err(GpuError::Precondition {
            kernel: "gemv_rms",
            msg: format!("m={m} k={k} (need m<=8, m*k*{} <= 48 KB, aligned operands)", dt.size()),
        });
    }
    for (what, p) in [("residual", a.res), ("sum", a.sum)] {
        if let Some(p) = p {
            p.check("gemv_rms", what, m * k * dt.size())?;
        }
    }
    a.norm_w.check("gemv_rms", "norm weight", k * 4)
}

fn head(a: &RmsIn<'_>) -> [A; 5] {
    [A::P(a.x.addr()), opt(a.res), A::P(a.norm_w.addr()), A::F(a.eps), opt(a.sum)]
}

/// `out[m, n] = rms_norm(x + res)[m, k] @ w[n, k]^T` (m <= 8), `sum = x + res`.
#[allow(clippy::too_many_arguments)]
pub fn gemv_rms(
    gpu: &Gpu,
    dt: Dt,
    a: &RmsIn<'_>,
    w: P<'_>,
    out: P<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    check(dt, a, w, m, k)?;
    gemv_check(dt, dt, a.x, w, out, m, n, n, k)?;
    let mut args = Vec::from(head(a));
    args.extend([A::P(w.addr()), A::P(out.addr()), A::I(m as i32), A::I(n as i32), A::I(k as i32)]);
    run(gpu, Kernel::Gemv, &format!("gemv_rms_{}", dt.suffix()), grid(gpu, n, m * k * dt.size()), &args)
}

/// `gemv_gated` on the normalized input: `out[m, inter] = act(h @ gate^T) * (h @ up^T)` with
/// `h = rms_norm(x + res)`, `sum = x + res`.
#[allow(clippy::too_many_arguments)]
pub fn gemv_gated_rms(
    gpu: &Gpu,
    dt: Dt,
    a: &RmsIn<'_>,
    w: P<'_>,
    out: P<'_>,
    m: usize,
    inter: usize,
    k: usize,
    act: i32,
) -> Result<(), GpuError> {
    check(dt, a, w, m, k)?;
    gemv_check(dt, dt, a.x, w, out, m, 2 * inter, inter, k)?;
    let mut args = Vec::from(head(a));
    args.extend([
        A::P(w.addr()),
        A::P(out.addr()),
        A::I(m as i32),
        A::I(inter as i32),
        A::I(k as i32),
        A::I(act),
    ]);
    let name = format!("gemv_gated_rms_{}", dt.suffix());
    run(gpu, Kernel::Gemv, &name, grid(gpu, inter, m * k * dt.size()), &args)
}
