//! Launchers of the MoE kernels: routing, per-pair expert biases and the weighted combine
//! (`kernels/cuda/moe.cu`), and the expert GEMV (`gemv_moe_*`, `kernels/cuda/gemv.cu`).

use super::*;

/// Most experts, expert groups and picks per token `moe_route` takes (its per-warp shared
/// arrays; lane j holds pick j).
pub const MOE_MAX_EXPERTS: usize = 512;
pub const MOE_MAX_GROUPS: usize = 64;
pub const MOE_MAX_TOPK: usize = 32;
/// Most (token, expert) pairs one `gemv_moe` launch takes (its shared pair list).
pub const MOE_GEMV_MAX_PAIRS: usize = 256;

/// How `moe_route` scores and picks (see `kernels/cuda/moe.cu`).
#[derive(Clone, Copy, Debug)]
pub struct MoeRoute {
    /// 0 softmax, 1 sigmoid, 2 top-k logits then softmax.
    pub scoring: i32,
    /// `(n_group, topk_group, group_top2)` for group-limited routing.
    pub groups: Option<(usize, usize, bool)>,
    pub top_k: usize,
    pub renormalize: bool,
    /// Multiplies every weight (1.0 for none).
    pub scale: f32,
}

/// Router logits `[t, e]` (f32) -> `ids` (int32) and `wts` (f32), `[t, top_k]` each; `corr` an
/// optional `[e]` f32 choice bias.
#[allow(clippy::too_many_arguments)]
pub fn moe_route(
    gpu: &Gpu,
    logits: DevPtr<'_>,
    corr: Option<DevPtr<'_>>,
    ids: DevPtr<'_>,
    wts: DevPtr<'_>,
    t: usize,
    e: usize,
    r: MoeRoute,
) -> Result<(), GpuError> {
    let (ng, tg, top2) = r.groups.unwrap_or((0, 0, false));
    let bad = if t == 0 || !(0..=2).contains(&r.scoring) {
        Some(format!("{t} tokens, scoring {}", r.scoring))
    } else if e == 0 || e > MOE_MAX_EXPERTS {
        Some(format!("{e} experts (1..={MOE_MAX_EXPERTS})"))
    } else if r.top_k == 0 || r.top_k > MOE_MAX_TOPK.min(e) {
        Some(format!("top-k {} of {e} experts (at most {MOE_MAX_TOPK})", r.top_k))
    } else if r.groups.is_some()
        && (ng == 0
            || ng > MOE_MAX_GROUPS
            || !e.is_multiple_of(ng)
            || tg == 0
            || tg > ng
            || r.top_k > tg * (e / ng))
    {
        Some(format!("{e} experts in {ng} groups, {tg} kept, top-k {}", r.top_k))
    } else {
        None
    };
    if let Some(msg) = bad {
        return Err(GpuError::Precondition { kernel: "moe_route", msg });
    }
    logits.check("moe_route", "logits", t * e * 4)?;
    if let Some(c) = corr {
        c.check("moe_route", "corr", e * 4)?;
    }
    ids.check("moe_route", "ids", t * r.top_k * 4)?;
    wts.check("moe_route", "wts", t * r.top_k * 4)?;
    // One warp per token, 4 tokens per block (`MOE_WARPS` in moe.cu).
    let cfg =
        LaunchConfig { grid_dim: (t.div_ceil(4) as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
    run(
        gpu,
        Kernel::Moe,
        "moe_route",
        cfg,
        &[
            Arg::Ptr(logits.addr()),
            opt(corr),
            Arg::Ptr(ids.addr()),
            Arg::Ptr(wts.addr()),
            Arg::I32(t as i32),
            Arg::I32(e as i32),
            Arg::I32(r.top_k as i32),
            Arg::I32(r.scoring),
            Arg::I32(ng as i32),
            Arg::I32(tg as i32),
            Arg::I32(top2 as i32),
            Arg::I32(r.renormalize as i32),
            Arg::F32(r.scale),
        ],
    )
}

/// The expert GEMV: `y[p, n] = x[p / xdiv, k] @ w[ids[p]]^T` for `pairs` pairs, `w`
/// `[experts, n, k]`; each expert's rows are read once for all of its pairs (the grid is row
/// blocks x pairs; the first pair of each expert serves all of them).
#[allow(clippy::too_many_arguments)]
pub fn gemv_moe(
    gpu: &Gpu,
    dt: Dt,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    ids: DevPtr<'_>,
    y: DevPtr<'_>,
    experts: usize,
    pairs: usize,
    n: usize,
    k: usize,
    xdiv: usize,
) -> Result<(), GpuError> {
    let v = 16 / dt.size();
    if pairs == 0
        || pairs > MOE_GEMV_MAX_PAIRS
        || xdiv == 0
        || !pairs.is_multiple_of(xdiv)
        || k == 0
        || !k.is_multiple_of(v)
        || n == 0
        || experts == 0
    {
        return Err(GpuError::Precondition {
            kernel: "gemv_moe",
            msg: format!(
                "{pairs} pairs (1..={MOE_GEMV_MAX_PAIRS}, a multiple of {xdiv}), k {k} (a multiple of {v}), n {n}, {experts} experts"
            ),
        });
    }
    if !x.addr().is_multiple_of(16) || !w.addr().is_multiple_of(16) {
        return Err(GpuError::Precondition {
            kernel: "gemv_moe",
            msg: "x and w must be 16-byte aligned".into(),
        });
    }
    x.check("gemv_moe", "x", pairs / xdiv * k * dt.size())?;
    w.check("gemv_moe", "w", experts * n * k * dt.size())?;
    ids.check("gemv_moe", "ids", pairs * 4)?;
    y.check("gemv_moe", "y", pairs * n * dt.size())?;
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(8) as u32, pairs as u32, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    run(
        gpu,
        Kernel::Gemv,
        &format!("gemv_moe_{}", dt.suffix()),
        cfg,
        &[
            Arg::Ptr(x.addr()),
            Arg::Ptr(w.addr()),
            Arg::Ptr(ids.addr()),
            Arg::Ptr(y.addr()),
            Arg::I32(pairs as i32),
            Arg::I32(n as i32),
            Arg::I32(k as i32),
            Arg::I32(xdiv as i32),
        ],
    )
}

/// `y[p, :] += bias[ids[p], :]` in place; `y` `[pairs, n]`, `bias` `[experts, n]`.
#[allow(clippy::too_many_arguments)]
pub fn moe_bias(
    gpu: &Gpu,
    dt: Dt,
    y: DevPtr<'_>,
    bias: DevPtr<'_>,
    ids: DevPtr<'_>,
    experts: usize,
    pairs: usize,
    n: usize,
) -> Result<(), GpuError> {
    if pairs == 0 || n == 0 {
        return Err(GpuError::Precondition {
            kernel: "moe_bias",
            msg: format!("{pairs} pairs of width {n}"),
        });
    }
    y.check("moe_bias", "y", pairs * n * dt.size())?;
    bias.check("moe_bias", "bias", experts * n * dt.size())?;
    ids.check("moe_bias", "ids", pairs * 4)?;
    run(
        gpu,
        Kernel::Moe,
        &format!("moe_bias_{}", dt.suffix()),
        rows(pairs, n),
        &[Arg::Ptr(y.addr()), Arg::Ptr(bias.addr()), Arg::Ptr(ids.addr()), Arg::I32(n as i32)],
    )
}

/// `out[r, :] = sum_j w[r, j] * y[r * k + j, :]` (+ `g * shared[r, :]`, `g = sigmoid(z[r])` or 1),
/// for `t` tokens of width `d`; `y` `[t * k, d]`, `w` `[t, k]` f32, `z` `[t]` f32.
#[allow(clippy::too_many_arguments)]
pub fn moe_combine(
    gpu: &Gpu,
    dt: Dt,
    y: DevPtr<'_>,
    w: DevPtr<'_>,
    shared: Option<DevPtr<'_>>,
    z: Option<DevPtr<'_>>,
    out: DevPtr<'_>,
    t: usize,
    k: usize,
    d: usize,
) -> Result<(), GpuError> {
    if z.is_some() && shared.is_none() {
        return Err(GpuError::Precondition {
            kernel: "moe_combine",
            msg: "a shared gate without a shared expert".into(),
        });
    }
    if t == 0 || k == 0 || d == 0 {
        return Err(GpuError::Precondition {
            kernel: "moe_combine",
            msg: format!("{t} tokens, top-{k}, width {d}"),
        });
    }
    y.check("moe_combine", "y", t * k * d * dt.size())?;
    w.check("moe_combine", "w", t * k * 4)?;
    if let Some(s) = shared {
        s.check("moe_combine", "shared", t * d * dt.size())?;
    }
    if let Some(z) = z {
        z.check("moe_combine", "z", t * 4)?;
    }
    out.check("moe_combine", "out", t * d * dt.size())?;
    run(
        gpu,
        Kernel::Moe,
        &format!("moe_combine_{}", dt.suffix()),
        rows(t, d),
        &[
            Arg::Ptr(y.addr()),
            Arg::Ptr(w.addr()),
            opt(shared),
            opt(z),
            Arg::Ptr(out.addr()),
            Arg::I32(k as i32),
            Arg::I32(d as i32),
        ],
    )
}
