//! Launchers of the quantized-weight kernels: the FP8 (W8A16) and INT4 (W4A16) decode GEMVs
//! (`gemv_fp8.cu`, `gemv_int4.cu`) and FP8 activation quantization / dequantization
//! (`fp8_quant.cu`). Layouts: `crate::quant_ref` (FP8 scales) and `crate::quant_ref::int4`
//! (the engine's INT4 layout); each kernel's CPU twin lives there too.

use cudarc::driver::LaunchConfig;

use super::{grid1d, run, Arg, DevPtr};
use crate::module::Kernel;
use crate::quant_ref::int4::ScaleDt;
use crate::quant_ref::ScaleLayout;
use crate::{Gpu, GpuError};

/// Largest m the quantized GEMVs take.
pub const QGEMV_MAX_M: usize = 8;
/// Shared memory the GEMVs stage x in without opting in (as `gemv`).
const SMEM_MAX: usize = 48 << 10;
/// Rows (warps) per block.
const WARPS: usize = 8;

fn pre(kernel: &'static str, msg: String) -> GpuError {
    GpuError::Precondition { kernel, msg }
}

/// The staging entry point `name` when m x k bf16 fit in shared memory, else `{name}_gx`.
fn staged(name: &str, m: usize, k: usize) -> (String, usize) {
    let bytes = m * k * 2;
    if bytes <= SMEM_MAX {
        (name.to_string(), bytes)
    } else {
        (format!("{name}_gx"), 0)
    }
}

fn grid(rows: usize, smem: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.div_ceil(WARPS) as u32, 1, 1),
        block_dim: (32 * WARPS as u32, 1, 1),
        shared_mem_bytes: smem as u32,
    }
}

/// The FP8 GEMV takes `x @ w^T` when m <= 8, k % 16 == 0 and x, w start 16-byte aligned.
pub fn gemv_fp8_ok(x: DevPtr<'_>, w: DevPtr<'_>, m: usize, k: usize) -> bool {
    (1..=QGEMV_MAX_M).contains(&m)
        && k.is_multiple_of(16)
        && x.addr().is_multiple_of(16)
        && w.addr().is_multiple_of(16)
}

/// Checks shared by the FP8 GEMVs (`rows` rows of w); the entry point's suffix and scale stride.
#[allow(clippy::too_many_arguments)]
fn fp8_check(
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    scale: DevPtr<'_>,
    layout: ScaleLayout,
    out: DevPtr<'_>,
    m: usize,
    rows: usize,
    out_n: usize,
    k: usize,
) -> Result<(&'static str, i32), GpuError> {
    const K: &str = "gemv_fp8";
    if !gemv_fp8_ok(x, w, m, k) {
        return Err(pre(K, format!("m={m} k={k} (need 1<=m<=8, k % 16 == 0, 16-byte aligned x and w)")));
    }
    x.check(K, "x", m * k * 2)?;
    w.check(K, "w", rows * k)?;
    out.check(K, "out", m * out_n * 2)?;
    scale.check(K, "scale", layout.len(rows, k) * 4)?;
    match layout {
        ScaleLayout::Tensor => Ok(("row", 0)),
        ScaleLayout::Row => Ok(("row", 1)),
        ScaleLayout::Block128 => Ok(("blk", k.div_ceil(128) as i32)),
        ScaleLayout::Col => Err(pre(K, "per-input-channel (Col) weight scales are not supported".into())),
    }
}

/// Decode GEMV with FP8 E4M3 weights: `out[m, n] = bf16(x[m, k] @ W[n, k]^T)`, x bf16, w one
/// byte per weight (`torch.float8_e4m3fn`, row-major `[n, k]`), `scale` f32 in `layout`:
/// `Tensor` (`scale[0]`), `Row` (per output channel, `scale[n]`) or `Block128`
/// (`scale[ceil(n / 128), ceil(k / 128)]`). W's value is `decode(w) * scale`. m <= 8.
#[allow(clippy::too_many_arguments)]
pub fn gemv_fp8(
    gpu: &Gpu,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    scale: DevPtr<'_>,
    layout: ScaleLayout,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    let (suffix, ss) = fp8_check(x, w, scale, layout, out, m, n, n, k)?;
    let (name, smem) = staged(&format!("gemv_fp8_{suffix}"), m, k);
    let args = [
        Arg::Ptr(x.addr()),
        Arg::Ptr(w.addr()),
        Arg::Ptr(scale.addr()),
        Arg::Ptr(out.addr()),
        Arg::I32(m as i32),
        Arg::I32(n as i32),
        Arg::I32(k as i32),
        Arg::I32(ss),
    ];
    run(gpu, Kernel::GemvFp8, &name, grid(n, smem), &args)
}

/// The gated MLP's first half with FP8 weights: `out[m, inter] = act(x @ gate^T) * (x @ up^T)`
/// for `w = [gate; up]` (`[2 * inter, k]` E4M3) with the scales of that `[2 * inter, k]` matrix
/// (`Block128` needs inter % 128 == 0); `act` is `gated_act`'s kind. Gate and up are rounded to
/// bf16 before the activation, like `gemv_fp8` followed by `gated_act`.
#[allow(clippy::too_many_arguments)]
pub fn gemv_fp8_gated(
    gpu: &Gpu,
    x: DevPtr<'_>,
    w: DevPtr<'_>,
    scale: DevPtr<'_>,
    layout: ScaleLayout,
    out: DevPtr<'_>,
    m: usize,
    inter: usize,
    k: usize,
    act: i32,
) -> Result<(), GpuError> {
    let (suffix, ss) = fp8_check(x, w, scale, layout, out, m, 2 * inter, inter, k)?;
    if layout == ScaleLayout::Block128 && !inter.is_multiple_of(128) {
        return Err(pre("gemv_fp8_gated", format!("block scales need inter % 128 == 0, got {inter}")));
    }
    let (name, smem) = staged(&format!("gemv_fp8_gated_{suffix}"), m, k);
    let args = [
        Arg::Ptr(x.addr()),
        Arg::Ptr(w.addr()),
        Arg::Ptr(scale.addr()),
        Arg::Ptr(out.addr()),
        Arg::I32(m as i32),
        Arg::I32(inter as i32),
        Arg::I32(k as i32),
        Arg::I32(ss),
        Arg::I32(act),
    ];
    run(gpu, Kernel::GemvFp8, &name, grid(inter, smem), &args)
}

/// INT4 weights on the device, in the engine layout of `crate::quant_ref::int4`.
#[derive(Clone, Copy)]
pub struct Int4W<'a> {
    /// `u32 [n, k / 8]`, natural nibble order along k.
    pub q: DevPtr<'a>,
    /// `[n, k / group]` f16 or bf16 (`scale_dt`).
    pub scales: DevPtr<'a>,
    /// `u8 [n, k / group]`.
    pub zeros: DevPtr<'a>,
    pub scale_dt: ScaleDt,
    /// A power of two >= 32 dividing k (128 for the usual AWQ / GPTQ checkpoints).
    pub group: usize,
}

impl Int4W<'_> {
    /// The three arrays of an `[n, k]` matrix fit their buffers (`group` divides k).
    fn check(&self, kernel: &'static str, n: usize, k: usize) -> Result<(), GpuError> {
        let groups = n * (k / self.group);
        self.q.check(kernel, "q", n * k / 2)?;
        self.scales.check(kernel, "scales", groups * 2)?;
        self.zeros.check(kernel, "zeros", groups)
    }
}

/// Decode GEMV with INT4 group-quantized weights: `out[m, n] = bf16(x[m, k] @ W[n, k]^T)` with
/// `W[r, c] = (q(r, c) - zeros[r, c / g]) * scales[r, c / g]`. m <= 8, x and `w.q` 16-byte
/// aligned.
pub fn gemv_int4(
    gpu: &Gpu,
    x: DevPtr<'_>,
    w: Int4W<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    const K: &str = "gemv_int4";
    let g = w.group;
    if !(1..=QGEMV_MAX_M).contains(&m)
        || !g.is_power_of_two()
        || g < 32
        || !k.is_multiple_of(g)
        || !x.addr().is_multiple_of(16)
        || !w.q.addr().is_multiple_of(16)
    {
        return Err(pre(
            K,
            format!("m={m} k={k} group={g} (need 1<=m<=8, group a power of two >= 32 dividing k, 16-byte aligned x and q)"),
        ));
    }
    x.check(K, "x", m * k * 2)?;
    w.check(K, n, k)?;
    out.check(K, "out", m * n * 2)?;
    let sdt = match w.scale_dt {
        ScaleDt::F16 => "f16s",
        ScaleDt::BF16 => "bf16s",
    };
    let (name, smem) = staged(&format!("gemv_int4_{sdt}"), m, k);
    let args = [
        Arg::Ptr(x.addr()),
        Arg::Ptr(w.q.addr()),
        Arg::Ptr(w.scales.addr()),
        Arg::Ptr(w.zeros.addr()),
        Arg::Ptr(out.addr()),
        Arg::I32(m as i32),
        Arg::I32(n as i32),
        Arg::I32(k as i32),
        Arg::I32(g.trailing_zeros() as i32),
    ];
    run(gpu, Kernel::GemvInt4, &name, grid(n, smem), &args)
}

/// INT4 -> bf16: `out[n, k] = bf16((q - z) * s)` (prefill: dequantize, then the bf16 GEMM).
/// Any group that is a multiple of 8 dividing k.
pub fn int4_dequant(gpu: &Gpu, w: Int4W<'_>, out: DevPtr<'_>, n: usize, k: usize) -> Result<(), GpuError> {
    const K: &str = "int4_dequant";
    let g = w.group;
    if g == 0 || !g.is_multiple_of(8) || !k.is_multiple_of(g) || n * k > i32::MAX as usize * 8 {
        return Err(pre(K, format!("n={n} k={k} group={g} (need a multiple of 8 dividing k)")));
    }
    w.check(K, n, k)?;
    out.check(K, "out", n * k * 2)?;
    let name = match w.scale_dt {
        ScaleDt::F16 => "int4_dequant_f16s",
        ScaleDt::BF16 => "int4_dequant_bf16s",
    };
    let args = [
        Arg::Ptr(w.q.addr()),
        Arg::Ptr(w.scales.addr()),
        Arg::Ptr(w.zeros.addr()),
        Arg::Ptr(out.addr()),
        Arg::I32(n as i32),
        Arg::I32(k as i32),
        Arg::I32(g as i32),
    ];
    run(gpu, Kernel::GemvInt4, name, grid1d(n * k / 8), &args)
}

/// Per-token dynamic FP8 quantization of bf16 `x[rows, d]`: `scale[r] = amax(|x[r]|) / 448`
/// (1 for an all-zero row, f32 `[rows]`), `q[r, c] = e4m3(x[r, c] / scale[r])` (saturating,
/// `[rows, d]` bytes). d % 8 == 0; x and q 16-byte aligned.
pub fn fp8_quantize_rows(
    gpu: &Gpu,
    x: DevPtr<'_>,
    q: DevPtr<'_>,
    scale: DevPtr<'_>,
    rows: usize,
    d: usize,
) -> Result<(), GpuError> {
    const K: &str = "fp8_quantize_rows";
    if !d.is_multiple_of(8) || !x.addr().is_multiple_of(16) || !q.addr().is_multiple_of(16) {
        return Err(pre(K, format!("d={d} (need d % 8 == 0, 16-byte aligned x and q)")));
    }
    x.check(K, "x", rows * d * 2)?;
    q.check(K, "q", rows * d)?;
    scale.check(K, "scale", rows * 4)?;
    let threads = (d / 8).div_ceil(32).clamp(1, 32) as u32 * 32;
    let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
    let args = [Arg::Ptr(x.addr()), Arg::Ptr(q.addr()), Arg::Ptr(scale.addr()), Arg::I32(d as i32)];
    run(gpu, Kernel::Fp8Quant, "fp8_quantize_rows_bf16", cfg, &args)
}

/// Static FP8 quantization of `n` bf16 values with the per-tensor scale `scale[0]` (f32 on the
/// device): `q[i] = e4m3(x[i] / scale[0])`.
pub fn fp8_quantize_static(
    gpu: &Gpu,
    x: DevPtr<'_>,
    scale: DevPtr<'_>,
    q: DevPtr<'_>,
    n: usize,
) -> Result<(), GpuError> {
    const K: &str = "fp8_quantize_static";
    x.check(K, "x", n * 2)?;
    scale.check(K, "scale", 4)?;
    q.check(K, "q", n)?;
    let args = [Arg::Ptr(x.addr()), Arg::Ptr(scale.addr()), Arg::Ptr(q.addr()), Arg::I64(n as i64)];
    run(gpu, Kernel::Fp8Quant, "fp8_quantize_static_bf16", grid1d(n), &args)
}

/// FP8 -> bf16: `out[r, c] = bf16(decode(q[r, c]) * scale)` for a `[rows, cols]` E4M3 matrix
/// with f32 scales in `layout`.
pub fn fp8_dequant(
    gpu: &Gpu,
    q: DevPtr<'_>,
    scale: DevPtr<'_>,
    layout: ScaleLayout,
    out: DevPtr<'_>,
    rows: usize,
    cols: usize,
) -> Result<(), GpuError> {
    const K: &str = "fp8_dequant";
    q.check(K, "q", rows * cols)?;
    out.check(K, "out", rows * cols * 2)?;
    scale.check(K, "scale", layout.len(rows, cols) * 4)?;
    if rows > i32::MAX as usize || cols > i32::MAX as usize {
        return Err(pre(K, format!("{rows} x {cols} too large")));
    }
    let big = i32::MAX;
    let (rdiv, rstride, cdiv) = match layout {
        ScaleLayout::Tensor => (big, 0, big),
        ScaleLayout::Row => (1, 1, big),
        ScaleLayout::Col => (big, 0, 1),
        ScaleLayout::Block128 => (128, cols.div_ceil(128) as i32, 128),
    };
    let args = [
        Arg::Ptr(q.addr()),
        Arg::Ptr(scale.addr()),
        Arg::Ptr(out.addr()),
        Arg::I32(rows as i32),
        Arg::I32(cols as i32),
        Arg::I32(rdiv),
        Arg::I32(rstride),
        Arg::I32(cdiv),
    ];
    run(gpu, Kernel::Fp8Quant, "fp8_dequant_bf16", grid1d(rows * cols), &args)
}

/// The per-token x per-channel FP8 GEMM's epilogue: `out[r, c] = bf16((acc[r, c] * rs[r]) *
/// cs[c])` for f32 `acc[m, n]`, `rs[m]`, `cs[n]`.
pub fn fp8_scale_rowcol(
    gpu: &Gpu,
    acc: DevPtr<'_>,
    rs: DevPtr<'_>,
    cs: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
) -> Result<(), GpuError> {
    const K: &str = "fp8_scale_rowcol";
    acc.check(K, "acc", m * n * 4)?;
    rs.check(K, "row scales", m * 4)?;
    cs.check(K, "col scales", n * 4)?;
    out.check(K, "out", m * n * 2)?;
    let args = [
        Arg::Ptr(acc.addr()),
        Arg::Ptr(rs.addr()),
        Arg::Ptr(cs.addr()),
        Arg::Ptr(out.addr()),
        Arg::I32(m as i32),
        Arg::I32(n as i32),
    ];
    run(gpu, Kernel::Fp8Quant, "fp8_scale_rowcol_bf16", grid1d(m * n), &args)
}
