//! Launchers of the elementwise kernels (`kernels/cuda/elementwise.cu`): adds, products, biases,
//! activations (gated and clamped), scaling, soft-capping, casts, fills.

use super::*;

pub fn add(
    gpu: &Gpu,
    dt: Dt,
    a: DevPtr<'_>,
    b: DevPtr<'_>,
    out: DevPtr<'_>,
    n: usize,
) -> Result<(), GpuError> {
    for (w, p) in [("a", a), ("b", b), ("out", out)] {
        p.check("add", w, n * dt.size())?;
    }
    run(
        gpu,
        Kernel::Elementwise,
        &format!("add_{}", dt.suffix()),
        grid1d(n),
        &[Arg::Ptr(a.addr()), Arg::Ptr(b.addr()), Arg::Ptr(out.addr()), Arg::I64(n as i64)],
    )
}

pub fn mul(
    gpu: &Gpu,
    dt: Dt,
    a: DevPtr<'_>,
    b: DevPtr<'_>,
    out: DevPtr<'_>,
    n: usize,
) -> Result<(), GpuError> {
    for (w, p) in [("a", a), ("b", b), ("out", out)] {
        p.check("mul", w, n * dt.size())?;
    }
    run(
        gpu,
        Kernel::Elementwise,
        &format!("mul_{}", dt.suffix()),
        grid1d(n),
        &[Arg::Ptr(a.addr()), Arg::Ptr(b.addr()), Arg::Ptr(out.addr()), Arg::I64(n as i64)],
    )
}

pub fn add_bias(
    gpu: &Gpu,
    dt: Dt,
    x: DevPtr<'_>,
    bias: DevPtr<'_>,
    out: DevPtr<'_>,
    rows_: usize,
    cols: usize,
) -> Result<(), GpuError> {
    let n = rows_ * cols;
    x.check("add_bias", "x", n * dt.size())?;
    out.check("add_bias", "out", n * dt.size())?;
    bias.check("add_bias", "bias", cols * dt.size())?;
    run(
        gpu,
        Kernel::Elementwise,
        &format!("add_bias_{}", dt.suffix()),
        grid1d(n),
        &[
            Arg::Ptr(x.addr()),
            Arg::Ptr(bias.addr()),
            Arg::Ptr(out.addr()),
            Arg::I64(n as i64),
            Arg::I32(cols as i32),
        ],
    )
}

pub fn act(gpu: &Gpu, dt: Dt, x: DevPtr<'_>, out: DevPtr<'_>, n: usize, kind: i32) -> Result<(), GpuError> {
    x.check("act", "x", n * dt.size())?;
    out.check("act", "out", n * dt.size())?;
    run(
        gpu,
        Kernel::Elementwise,
        &format!("act_{}", dt.suffix()),
        grid1d(n),
        &[Arg::Ptr(x.addr()), Arg::Ptr(out.addr()), Arg::I64(n as i64), Arg::I32(kind)],
    )
}

pub fn gated_act(
    gpu: &Gpu,
    dt: Dt,
    gu: DevPtr<'_>,
    out: DevPtr<'_>,
    rows_: usize,
    inter: usize,
    kind: i32,
) -> Result<(), GpuError> {
    gu.check("gated_act", "gate_up", rows_ * 2 * inter * dt.size())?;
    out.check("gated_act", "out", rows_ * inter * dt.size())?;
    // 8 outputs per thread with 16-byte loads when the rows allow it (bf16, inter % 8 == 0)
    let vec = dt == Dt::BF16
        && inter.is_multiple_of(8)
        && gu.addr().is_multiple_of(16)
        && out.addr().is_multiple_of(16);
    run(
        gpu,
        Kernel::Elementwise,
        &format!("gated_act_{}{}", if vec { "v8_" } else { "" }, dt.suffix()),
        grid1d(if vec { rows_ * inter / 8 } else { rows_ * inter }),
        &[
            Arg::Ptr(gu.addr()),
            Arg::Ptr(out.addr()),
            Arg::I64(rows_ as i64),
            Arg::I32(inter as i32),
            Arg::I32(kind),
        ],
    )
}

/// `out [rows, inter]` = GPT-OSS's clamped SwiGLU of `x [rows, 2 * inter]` (gate/up interleaved).
#[allow(clippy::too_many_arguments)]
pub fn clamped_swiglu(
    gpu: &Gpu,
    dt: Dt,
    x: DevPtr<'_>,
    out: DevPtr<'_>,
    rows_: usize,
    inter: usize,
    alpha: f32,
    limit: f32,
) -> Result<(), GpuError> {
    x.check("clamped_swiglu", "x", rows_ * 2 * inter * dt.size())?;
    out.check("clamped_swiglu", "out", rows_ * inter * dt.size())?;
    run(
        gpu,
        Kernel::Elementwise,
        &format!("clamped_swiglu_{}", dt.suffix()),
        grid1d(rows_ * inter),
        &[
            Arg::Ptr(x.addr()),
            Arg::Ptr(out.addr()),
            Arg::I64(rows_ as i64),
            Arg::I32(inter as i32),
            Arg::F32(alpha),
            Arg::F32(limit),
        ],
    )
}

/// `out = x * s`.
pub fn scale(gpu: &Gpu, dt: Dt, x: DevPtr<'_>, out: DevPtr<'_>, n: usize, s: f32) -> Result<(), GpuError> {
    x.check("scale", "x", n * dt.size())?;
    out.check("scale", "out", n * dt.size())?;
    run(
        gpu,
        Kernel::Elementwise,
        &format!("scale_{}", dt.suffix()),
        grid1d(n),
        &[Arg::Ptr(x.addr()), Arg::Ptr(out.addr()), Arg::I64(n as i64), Arg::F32(s)],
    )
}

pub fn softcap(
    gpu: &Gpu,
    dt: Dt,
    x: DevPtr<'_>,
    out: DevPtr<'_>,
    n: usize,
    cap: f32,
) -> Result<(), GpuError> {
    x.check("softcap", "x", n * dt.size())?;
    out.check("softcap", "out", n * dt.size())?;
    run(
        gpu,
        Kernel::Elementwise,
        &format!("softcap_{}", dt.suffix()),
        grid1d(n),
        &[Arg::Ptr(x.addr()), Arg::Ptr(out.addr()), Arg::I64(n as i64), Arg::F32(cap)],
    )
}

pub fn cast(gpu: &Gpu, from: Dt, to: Dt, x: DevPtr<'_>, out: DevPtr<'_>, n: usize) -> Result<(), GpuError> {
    x.check("cast", "x", n * from.size())?;
    out.check("cast", "out", n * to.size())?;
    let name = match (from, to) {
        (Dt::F32, Dt::BF16) => "cast_f32_bf16",
        (Dt::BF16, Dt::F32) => "cast_bf16_f32",
        _ => return Err(GpuError::Precondition { kernel: "cast", msg: format!("{from:?} -> {to:?}") }),
    };
    run(
        gpu,
        Kernel::Elementwise,
        name,
        grid1d(n),
        &[Arg::Ptr(x.addr()), Arg::Ptr(out.addr()), Arg::I64(n as i64)],
    )
}

pub fn fill_f32(gpu: &Gpu, out: DevPtr<'_>, n: usize, v: f32) -> Result<(), GpuError> {
    out.check("fill", "out", n * 4)?;
    run(
        gpu,
        Kernel::Elementwise,
        "fill_f32",
        grid1d(n),
        &[Arg::Ptr(out.addr()), Arg::I64(n as i64), Arg::F32(v)],
    )
}
