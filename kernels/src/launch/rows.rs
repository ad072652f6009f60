//! Launchers of the row kernels: embedding-row gathers and the scatter-add of MoE expert outputs
//! (`kernels/cuda/embedding.cu`), argmax (`kernels/cuda/sampling.cu`).

use super::*;

/// `out[r] = table[ids[r]] * mult`; `ids` (int32 on the device) must be in range (checked by the caller on the host).
#[allow(clippy::too_many_arguments)]
pub fn gather_rows(
    gpu: &Gpu,
    dt: Dt,
    table: DevPtr<'_>,
    table_rows: usize,
    ids: DevPtr<'_>,
    out: DevPtr<'_>,
    r: usize,
    d: usize,
    mult: f32,
) -> Result<(), GpuError> {
    table.check("gather_rows", "table", table_rows * d * dt.size())?;
    ids.check("gather_rows", "ids", r * 4)?;
    out.check("gather_rows", "out", r * d * dt.size())?;
    run(
        gpu,
        Kernel::Embedding,
        &format!("gather_rows_{}", dt.suffix()),
        rows(r, d),
        &[
            Arg::Ptr(table.addr()),
            Arg::Ptr(ids.addr()),
            Arg::Ptr(out.addr()),
            Arg::I32(d as i32),
            Arg::F32(mult),
        ],
    )
}

/// `out[idx[r]] += w[r] * y[r]`; each index at most once per call.
#[allow(clippy::too_many_arguments)]
pub fn scatter_add_rows(
    gpu: &Gpu,
    dt: Dt,
    out: DevPtr<'_>,
    out_rows: usize,
    y: DevPtr<'_>,
    idx: DevPtr<'_>,
    w: DevPtr<'_>,
    r: usize,
    d: usize,
) -> Result<(), GpuError> {
    out.check("scatter_add_rows", "out", out_rows * d * dt.size())?;
    y.check("scatter_add_rows", "y", r * d * dt.size())?;
    idx.check("scatter_add_rows", "idx", r * 4)?;
    w.check("scatter_add_rows", "w", r * 4)?;
    run(
        gpu,
        Kernel::Embedding,
        &format!("scatter_add_rows_{}", dt.suffix()),
        rows(r, d),
        &[
            Arg::Ptr(out.addr()),
            Arg::Ptr(y.addr()),
            Arg::Ptr(idx.addr()),
            Arg::Ptr(w.addr()),
            Arg::I32(d as i32),
        ],
    )
}

pub fn argmax(gpu: &Gpu, dt: Dt, x: DevPtr<'_>, out: DevPtr<'_>, r: usize, n: usize) -> Result<(), GpuError> {
    x.check("argmax", "x", r * n * dt.size())?;
    out.check("argmax", "out", r * 4)?;
    let cfg = LaunchConfig { grid_dim: (r as u32, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 };
    // 16-byte loads when every row starts 16-byte aligned
    let vec = n.is_multiple_of(16 / dt.size()) && x.addr().is_multiple_of(16);
    run(
        gpu,
        Kernel::Sampling,
        &format!("argmax_{}{}", if vec { "vec_" } else { "" }, dt.suffix()),
        cfg,
        &[Arg::Ptr(x.addr()), Arg::I32(n as i32), Arg::Ptr(out.addr())],
    )
}
