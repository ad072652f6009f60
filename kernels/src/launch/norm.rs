//! Launchers of the norm kernels (`kernels/cuda/norm.cu`): RMSNorm (fused with the residual add),
//! the q/k norms in two passes, LayerNorm.

use super::*;

#[allow(clippy::too_many_arguments)]
pub fn rms_norm(
    gpu: &Gpu,
    dt: Dt,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    out: DevPtr<'_>,
    r: usize,
    d: usize,
    eps: f32,
) -> Result<(), GpuError> {
    x.check("rms_norm", "x", r * d * dt.size())?;
    out.check("rms_norm", "out", r * d * dt.size())?;
    w.check("rms_norm", "weight", d * 4)?;
    let args =
        [Arg::Ptr(x.addr()), Arg::Ptr(w.addr()), Arg::Ptr(out.addr()), Arg::I32(d as i32), Arg::F32(eps)];
    match rows_vec(dt, r, d, &[x, w, out]) {
        Some(cfg) => run(gpu, Kernel::Norm, &format!("rms_norm_vec_{}", dt.suffix()), cfg, &args),
        None => run(gpu, Kernel::Norm, &format!("rms_norm_{}", dt.suffix()), rows(r, d), &args),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn add_rms_norm(
    gpu: &Gpu,
    dt: Dt,
    x: DevPtr<'_>,
    res: DevPtr<'_>,
    w: DevPtr<'_>,
    sum: DevPtr<'_>,
    out: DevPtr<'_>,
    r: usize,
    d: usize,
    eps: f32,
) -> Result<(), GpuError> {
    for (n, p) in [("x", x), ("residual", res), ("sum", sum), ("out", out)] {
        p.check("add_rms_norm", n, r * d * dt.size())?;
    }
    w.check("add_rms_norm", "weight", d * 4)?;
    let args = [
        Arg::Ptr(x.addr()),
        Arg::Ptr(res.addr()),
        Arg::Ptr(w.addr()),
        Arg::Ptr(sum.addr()),
        Arg::Ptr(out.addr()),
        Arg::I32(d as i32),
        Arg::F32(eps),
    ];
    match rows_vec(dt, r, d, &[x, res, w, sum, out]) {
        Some(cfg) => run(gpu, Kernel::Norm, &format!("add_rms_norm_vec_{}", dt.suffix()), cfg, &args),
        None => run(gpu, Kernel::Norm, &format!("add_rms_norm_{}", dt.suffix()), rows(r, d), &args),
    }
}

/// Per row of `x` `[r, width]`: the sums of squares of columns `[0, a)` and `[a, a + b)` into
/// `sums` `[r, 2]` f32 (the first half of a full-width q/k RMSNorm).
#[allow(clippy::too_many_arguments)]
pub fn qk_sumsq(
    gpu: &Gpu,
    dt: Dt,
    x: DevPtr<'_>,
    sums: DevPtr<'_>,
    r: usize,
    width: usize,
    a: usize,
    b: usize,
) -> Result<(), GpuError> {
    if a + b > width {
        return Err(GpuError::Precondition {
            kernel: "qk_sumsq",
            msg: format!("{a} + {b} columns of {width}"),
        });
    }
    x.check("qk_sumsq", "x", r * width * dt.size())?;
    sums.check("qk_sumsq", "sums", r * 2 * 4)?;
    let args = [
        Arg::Ptr(x.addr()),
        Arg::Ptr(sums.addr()),
        Arg::I32(width as i32),
        Arg::I32(a as i32),
        Arg::I32(b as i32),
    ];
    run(gpu, Kernel::Norm, &format!("qk_sumsq_{}", dt.suffix()), rows(r, (a + b).min(1024)), &args)
}

/// `out` = `x` `[r, width]` with columns `[0, a)` times `wq * rsqrt(sums[.., 0] / count_q + eps)`
/// and `[a, a + b)` times `wk * rsqrt(sums[.., 1] / count_k + eps)` (the second half).
#[allow(clippy::too_many_arguments)]
pub fn qk_rms_apply(
    gpu: &Gpu,
    dt: Dt,
    x: DevPtr<'_>,
    sums: DevPtr<'_>,
    wq: DevPtr<'_>,
    wk: DevPtr<'_>,
    out: DevPtr<'_>,
    r: usize,
    width: usize,
    (a, b): (usize, usize),
    (count_q, count_k): (f32, f32),
    eps: f32,
) -> Result<(), GpuError> {
    if a + b > width {
        return Err(GpuError::Precondition {
            kernel: "qk_rms_apply",
            msg: format!("{a} + {b} columns of {width}"),
        });
    }
    x.check("qk_rms_apply", "x", r * width * dt.size())?;
    out.check("qk_rms_apply", "out", r * width * dt.size())?;
    sums.check("qk_rms_apply", "sums", r * 2 * 4)?;
    wq.check("qk_rms_apply", "q weight", a * 4)?;
    wk.check("qk_rms_apply", "k weight", b * 4)?;
    let args = [
        Arg::Ptr(x.addr()),
        Arg::Ptr(sums.addr()),
        Arg::Ptr(wq.addr()),
        Arg::Ptr(wk.addr()),
        Arg::Ptr(out.addr()),
        Arg::I32(width as i32),
        Arg::I32(a as i32),
        Arg::I32(b as i32),
        Arg::F32(count_q),
        Arg::F32(count_k),
        Arg::F32(eps),
    ];
    run(gpu, Kernel::Norm, &format!("qk_rms_apply_{}", dt.suffix()), rows(r, width.min(1024)), &args)
}

#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    gpu: &Gpu,
    dt: Dt,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    b: Option<DevPtr<'_>>,
    out: DevPtr<'_>,
    r: usize,
    d: usize,
    eps: f32,
) -> Result<(), GpuError> {
    x.check("layer_norm", "x", r * d * dt.size())?;
    out.check("layer_norm", "out", r * d * dt.size())?;
    w.check("layer_norm", "weight", d * 4)?;
    if let Some(b) = b {
        b.check("layer_norm", "bias", d * 4)?;
    }
    run(
        gpu,
        Kernel::Norm,
        &format!("layer_norm_{}", dt.suffix()),
        rows(r, d),
        &[
            Arg::Ptr(x.addr()),
            Arg::Ptr(w.addr()),
            opt(b),
            Arg::Ptr(out.addr()),
            Arg::I32(d as i32),
            Arg::F32(eps),
        ],
    )
}
