//! Launchers: one Rust function per kernel entry point. Each checks its preconditions (sizes,
//! alignment, buffer bounds) before it launches; pointers are `(buffer, byte offset)` pairs.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::module::Kernel;
use crate::{DevBuf, Dt, Gpu, GpuError};

mod attention;
mod fp8_gemm;
mod ggml;
mod lt;
mod matmul;
mod mixed;
mod mla;
mod pdl;
mod quant;
mod sampling;
pub use attention::{
    gqa_eligible, paged_attention, paged_attention_grouped, paged_attention_per_head, qkv_prepare, AttnArgs,
    Fp8Kv, QkvArgs, GQA_MIN_SPLIT_KEYS,
};
pub use fp8_gemm::{
    fp8_rowwise_ok, matmul_fp8, matmul_fp8_f32out, matmul_fp8_outer, matmul_fp8_rowwise,
    matmul_fp8_rowwise_f32acc,
};
pub use ggml::{gemv_ggml, gemv_ggml_ok, ggml_dequant, GGML_GEMV_MAX_M};
pub use lt::{AlgoCache, TUNE_MAX_M};
use matmul::gemv_launch;
pub use matmul::{gemm, gemv, gemv_bf16_variant, gemv_gated, gemv_ok, GEMV_MAX_M};
pub use mixed::{gemm_bf16_f32out, gemv_bf16_f32out};
pub use mla::{mla_absorb_q, mla_cache_write, mla_out, MlaArgs};
pub use quant::{
    fp8_dequant, fp8_quantize_rows, fp8_quantize_static, fp8_scale_rowcol, gemv_fp8, gemv_fp8_gated,
    gemv_fp8_ok, gemv_int4, int4_dequant, Int4W, QGEMV_MAX_M,
};
pub use sampling::{
    sample, sample_count_tokens, sample_slots_init, sample_workspace_bytes, token_mask, SampleArgs,
    SampleCsr, SampleLogprobs, SampleParams, TokenState, MAX_TOP, SAMPLE_MAX_VOCAB,
};

/// A device pointer: `buf` at byte `off`.
#[derive(Clone, Copy)]
pub struct DevPtr<'a> {
    pub buf: &'a DevBuf,
    pub off: usize,
}

impl<'a> DevPtr<'a> {
    pub fn new(buf: &'a DevBuf, off: usize) -> Self {
        DevPtr { buf, off }
    }
    fn addr(&self) -> u64 {
        self.buf.ptr(self.off)
    }
    /// Fails unless `bytes` bytes fit after `off`.
    fn check(&self, kernel: &'static str, what: &str, bytes: usize) -> Result<(), GpuError> {
        if self.off + bytes > self.buf.len() {
            return Err(GpuError::Precondition {
                kernel,
                msg: format!(
                    "{what}: {bytes} bytes at offset {} exceed a {}-byte buffer",
                    self.off,
                    self.buf.len()
                ),
            });
        }
        Ok(())
    }
}

enum Arg {
    Ptr(u64),
    I32(i32),
    I64(i64),
    F32(f32),
}

fn run(gpu: &Gpu, kernel: Kernel, name: &str, cfg: LaunchConfig, args: &[Arg]) -> Result<(), GpuError> {
    let _a = gpu.enter();
    let f = gpu.function(kernel, name)?;
    if pdl::enabled(gpu, name) {
        return pdl::launch(gpu, &f, name, cfg, args);
    }
    let mut b = gpu.stream.launch_builder(&f);
    for a in args {
        match a {
            Arg::Ptr(v) => b.arg(v),
            Arg::I32(v) => b.arg(v),
            Arg::I64(v) => b.arg(v),
            Arg::F32(v) => b.arg(v),
        };
    }
    // SAFETY: every launcher below checked that each pointer's extent fits its buffer and that
    // the scalar arguments match the kernel's signature, in order and type.
    unsafe { b.launch(cfg) }.map_err(|e| GpuError::Launch { kernel: name.into(), msg: format!("{e:?}") })?;
    Ok(())
}

fn grid1d(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65535 * 4) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

fn rows(rows: usize, d: usize) -> LaunchConfig {
    let threads = (d.div_ceil(32) * 32).clamp(32, 1024) as u32;
    LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

/// One row per block for the 16-byte norm kernels (`*_vec_*`, norm.cu), when they apply: `d` a
/// whole number of 16-byte chunks, at most 4 per thread of at most 512 (their launch bound: the
/// row lives in registers), every pointer 16-byte aligned.
fn rows_vec(dt: Dt, r: usize, d: usize, ptrs: &[DevPtr<'_>]) -> Option<LaunchConfig> {
    let v = 16 / dt.size();
    let nc = d / v;
    let ok = d.is_multiple_of(v)
        && (1..=4 * 512).contains(&nc)
        && ptrs.iter().all(|p| p.addr().is_multiple_of(16));
    let threads = (nc.div_ceil(32) * 32).min(512) as u32;
    ok.then_some(LaunchConfig { grid_dim: (r as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 })
}

fn opt(p: Option<DevPtr<'_>>) -> Arg {
    Arg::Ptr(p.map_or(0, |p| p.addr()))
}

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
