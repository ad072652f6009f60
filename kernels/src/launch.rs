//! Launchers: one Rust function per kernel entry point. Each checks its preconditions (sizes,
//! alignment, buffer bounds) before it launches; pointers are `(buffer, byte offset)` pairs.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::module::Kernel;
use crate::{DevBuf, Dt, Gpu, GpuError};

mod matmul;
mod mixed;
use matmul::gemv_launch;
pub use matmul::{gemm, gemv, gemv_bf16_variant, gemv_gated, gemv_ok, GEMV_MAX_M};
pub use mixed::{gemm_bf16_f32out, gemv_bf16_f32out};

/// A device pointer: `buf` at byte `off`.
#[derive(Clone, Copy)]
pub struct P<'a> {
    pub buf: &'a DevBuf,
    pub off: usize,
}

impl<'a> P<'a> {
    pub fn new(buf: &'a DevBuf, off: usize) -> Self {
        P { buf, off }
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

enum A {
    P(u64),
    I(i32),
    L(i64),
    F(f32),
}

/// Kernels that start with `pdl_start()` (common.cuh) and may therefore be launched with
/// programmatic dependent launch: they are scheduled while the previous kernel finishes and wait
/// for it on the device instead of in the launch queue. The decode step's chain.
const PDL_KERNELS: [&str; 8] = [
    "gemv_",
    "rms_norm_",
    "add_rms_norm_",
    "layer_norm_",
    "qkv_prepare_",
    "paged_attention_",
    "gather_rows_",
    "argmax_",
];

/// PDL on: Hopper or newer, and not turned off with `TRTLLM_NO_PDL=1`.
fn pdl(gpu: &Gpu, name: &str) -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    gpu.sm >= 90
        && !*OFF.get_or_init(|| std::env::var("TRTLLM_NO_PDL").is_ok_and(|v| v == "1"))
        && PDL_KERNELS.iter().any(|p| name.starts_with(p))
}

/// `cuLaunchKernelEx` with the programmatic-stream-serialization attribute.
fn launch_pdl(
    gpu: &Gpu,
    f: &cudarc::driver::CudaFunction,
    name: &str,
    cfg: LaunchConfig,
    args: &[A],
) -> Result<(), GpuError> {
    use cudarc::driver::sys;
    use std::ffi::c_void;
    let mut params: Vec<*mut c_void> = args
        .iter()
        .map(|a| match a {
            A::P(v) => v as *const u64 as *mut c_void,
            A::I(v) => v as *const i32 as *mut c_void,
            A::L(v) => v as *const i64 as *mut c_void,
            A::F(v) => v as *const f32 as *mut c_void,
        })
        .collect();
    let mut attr = sys::CUlaunchAttribute {
        id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
        pad: [0; 4],
        value: sys::CUlaunchAttributeValue { programmaticStreamSerializationAllowed: 1 },
    };
    let config = sys::CUlaunchConfig {
        gridDimX: cfg.grid_dim.0,
        gridDimY: cfg.grid_dim.1,
        gridDimZ: cfg.grid_dim.2,
        blockDimX: cfg.block_dim.0,
        blockDimY: cfg.block_dim.1,
        blockDimZ: cfg.block_dim.2,
        sharedMemBytes: cfg.shared_mem_bytes,
        hStream: gpu.stream.cu_stream(),
        attrs: &mut attr,
        numAttrs: 1,
    };
    gpu.ctx.bind_to_thread().map_err(GpuError::driver)?;
    // SAFETY: `params` holds one pointer per kernel parameter, in order, each to a value of the
    // parameter's type (checked by the launchers, as for `launch` below) that lives in `args`
    // until this call returns (the driver copies them at launch); `config` and `attr` outlive the
    // call; `f` is a function of this GPU's context, which is bound to the thread.
    let r =
        unsafe { sys::cuLaunchKernelEx(&config, f.cu_function(), params.as_mut_ptr(), std::ptr::null_mut()) };
    r.result().map_err(|e| GpuError::Launch { kernel: name.into(), msg: format!("{e:?}") })
}

fn run(gpu: &Gpu, kernel: Kernel, name: &str, cfg: LaunchConfig, args: &[A]) -> Result<(), GpuError> {
    let _a = gpu.enter();
    let f = gpu.function(kernel, name)?;
    if pdl(gpu, name) {
        return launch_pdl(gpu, &f, name, cfg, args);
    }
    let mut b = gpu.stream.launch_builder(&f);
    for a in args {
        match a {
            A::P(v) => b.arg(v),
            A::I(v) => b.arg(v),
            A::L(v) => b.arg(v),
            A::F(v) => b.arg(v),
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

fn opt(p: Option<P<'_>>) -> A {
    A::P(p.map_or(0, |p| p.addr()))
}

pub fn add(gpu: &Gpu, dt: Dt, a: P<'_>, b: P<'_>, out: P<'_>, n: usize) -> Result<(), GpuError> {
    for (w, p) in [("a", a), ("b", b), ("out", out)] {
        p.check("add", w, n * dt.size())?;
    }
    run(
        gpu,
        Kernel::Elementwise,
        &format!("add_{}", dt.suffix()),
        grid1d(n),
        &[A::P(a.addr()), A::P(b.addr()), A::P(out.addr()), A::L(n as i64)],
    )
}

pub fn mul(gpu: &Gpu, dt: Dt, a: P<'_>, b: P<'_>, out: P<'_>, n: usize) -> Result<(), GpuError> {
    for (w, p) in [("a", a), ("b", b), ("out", out)] {
        p.check("mul", w, n * dt.size())?;
    }
    run(
        gpu,
        Kernel::Elementwise,
        &format!("mul_{}", dt.suffix()),
        grid1d(n),
        &[A::P(a.addr()), A::P(b.addr()), A::P(out.addr()), A::L(n as i64)],
    )
}

pub fn add_bias(
    gpu: &Gpu,
    dt: Dt,
    x: P<'_>,
    bias: P<'_>,
    out: P<'_>,
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
        &[A::P(x.addr()), A::P(bias.addr()), A::P(out.addr()), A::L(n as i64), A::I(cols as i32)],
    )
}

pub fn act(gpu: &Gpu, dt: Dt, x: P<'_>, out: P<'_>, n: usize, kind: i32) -> Result<(), GpuError> {
    x.check("act", "x", n * dt.size())?;
    out.check("act", "out", n * dt.size())?;
    run(
        gpu,
        Kernel::Elementwise,
        &format!("act_{}", dt.suffix()),
        grid1d(n),
        &[A::P(x.addr()), A::P(out.addr()), A::L(n as i64), A::I(kind)],
    )
}

pub fn gated_act(
    gpu: &Gpu,
    dt: Dt,
    gu: P<'_>,
    out: P<'_>,
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
        &[A::P(gu.addr()), A::P(out.addr()), A::L(rows_ as i64), A::I(inter as i32), A::I(kind)],
    )
}

pub fn softcap(gpu: &Gpu, dt: Dt, x: P<'_>, out: P<'_>, n: usize, cap: f32) -> Result<(), GpuError> {
    x.check("softcap", "x", n * dt.size())?;
    out.check("softcap", "out", n * dt.size())?;
    run(
        gpu,
        Kernel::Elementwise,
        &format!("softcap_{}", dt.suffix()),
        grid1d(n),
        &[A::P(x.addr()), A::P(out.addr()), A::L(n as i64), A::F(cap)],
    )
}

pub fn cast(gpu: &Gpu, from: Dt, to: Dt, x: P<'_>, out: P<'_>, n: usize) -> Result<(), GpuError> {
    x.check("cast", "x", n * from.size())?;
    out.check("cast", "out", n * to.size())?;
    let name = match (from, to) {
        (Dt::F32, Dt::BF16) => "cast_f32_bf16",
        (Dt::BF16, Dt::F32) => "cast_bf16_f32",
        _ => return Err(GpuError::Precondition { kernel: "cast", msg: format!("{from:?} -> {to:?}") }),
    };
    run(gpu, Kernel::Elementwise, name, grid1d(n), &[A::P(x.addr()), A::P(out.addr()), A::L(n as i64)])
}

pub fn fill_f32(gpu: &Gpu, out: P<'_>, n: usize, v: f32) -> Result<(), GpuError> {
    out.check("fill", "out", n * 4)?;
    run(gpu, Kernel::Elementwise, "fill_f32", grid1d(n), &[A::P(out.addr()), A::L(n as i64), A::F(v)])
}

pub fn rms_norm(
    gpu: &Gpu,
    dt: Dt,
    x: P<'_>,
    w: P<'_>,
    out: P<'_>,
    r: usize,
    d: usize,
    eps: f32,
) -> Result<(), GpuError> {
    x.check("rms_norm", "x", r * d * dt.size())?;
    out.check("rms_norm", "out", r * d * dt.size())?;
    w.check("rms_norm", "weight", d * 4)?;
    run(
        gpu,
        Kernel::Norm,
        &format!("rms_norm_{}", dt.suffix()),
        rows(r, d),
        &[A::P(x.addr()), A::P(w.addr()), A::P(out.addr()), A::I(d as i32), A::F(eps)],
    )
}

#[allow(clippy::too_many_arguments)]
pub fn add_rms_norm(
    gpu: &Gpu,
    dt: Dt,
    x: P<'_>,
    res: P<'_>,
    w: P<'_>,
    sum: P<'_>,
    out: P<'_>,
    r: usize,
    d: usize,
    eps: f32,
) -> Result<(), GpuError> {
    for (n, p) in [("x", x), ("residual", res), ("sum", sum), ("out", out)] {
        p.check("add_rms_norm", n, r * d * dt.size())?;
    }
    w.check("add_rms_norm", "weight", d * 4)?;
    let args = [
        A::P(x.addr()),
        A::P(res.addr()),
        A::P(w.addr()),
        A::P(sum.addr()),
        A::P(out.addr()),
        A::I(d as i32),
        A::F(eps),
    ];
    run(gpu, Kernel::Norm, &format!("add_rms_norm_{}", dt.suffix()), rows(r, d), &args)
}

#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    gpu: &Gpu,
    dt: Dt,
    x: P<'_>,
    w: P<'_>,
    b: Option<P<'_>>,
    out: P<'_>,
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
        &[A::P(x.addr()), A::P(w.addr()), opt(b), A::P(out.addr()), A::I(d as i32), A::F(eps)],
    )
}

/// `out[r] = table[ids[r]] * mult`; `ids` (int32 on the device) must be in range (checked by the caller on the host).
#[allow(clippy::too_many_arguments)]
pub fn gather_rows(
    gpu: &Gpu,
    dt: Dt,
    table: P<'_>,
    table_rows: usize,
    ids: P<'_>,
    out: P<'_>,
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
        &[A::P(table.addr()), A::P(ids.addr()), A::P(out.addr()), A::I(d as i32), A::F(mult)],
    )
}

/// `out[idx[r]] += w[r] * y[r]`; each index at most once per call.
#[allow(clippy::too_many_arguments)]
pub fn scatter_add_rows(
    gpu: &Gpu,
    dt: Dt,
    out: P<'_>,
    out_rows: usize,
    y: P<'_>,
    idx: P<'_>,
    w: P<'_>,
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
        &[A::P(out.addr()), A::P(y.addr()), A::P(idx.addr()), A::P(w.addr()), A::I(d as i32)],
    )
}

pub fn argmax(gpu: &Gpu, dt: Dt, x: P<'_>, out: P<'_>, r: usize, n: usize) -> Result<(), GpuError> {
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
        &[A::P(x.addr()), A::I(n as i32), A::P(out.addr())],
    )
}

/// Inputs of `qkv_prepare`: q/k norm, RoPE and the KV-cache write of one step.
pub struct QkvArgs<'a> {
    pub qkv: P<'a>,
    pub tokens: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Rotated dims / 2 (0 when `inv_freq` is None).
    pub rot_half: usize,
    pub positions: P<'a>,
    pub inv_freq: Option<P<'a>>,
    pub scaling: f32,
    pub q_norm: Option<P<'a>>,
    pub k_norm: Option<P<'a>>,
    pub eps: f32,
    pub slots: P<'a>,
    pub q_out: P<'a>,
    pub k_cache: P<'a>,
    pub v_cache: P<'a>,
    pub cache_slots: usize,
}

pub fn qkv_prepare(gpu: &Gpu, dt: Dt, a: &QkvArgs<'_>) -> Result<(), GpuError> {
    let k = "qkv_prepare";
    let (t, hd) = (a.tokens, a.head_dim);
    if hd > 256 || 2 * a.rot_half > hd {
        return Err(GpuError::Precondition {
            kernel: k,
            msg: format!("head_dim {hd} (max 256), rotary half {}", a.rot_half),
        });
    }
    a.qkv.check(k, "qkv", t * (a.heads + 2 * a.kv_heads) * hd * dt.size())?;
    a.q_out.check(k, "q_out", t * a.heads * hd * dt.size())?;
    a.k_cache.check(k, "k_cache", a.cache_slots * a.kv_heads * hd * dt.size())?;
    a.v_cache.check(k, "v_cache", a.cache_slots * a.kv_heads * hd * dt.size())?;
    a.positions.check(k, "positions", t * 4)?;
    a.slots.check(k, "slot_mapping", t * 4)?;
    let cfg = LaunchConfig {
        grid_dim: (t as u32, (a.heads + a.kv_heads) as u32, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = [
        A::P(a.qkv.addr()),
        A::I(a.heads as i32),
        A::I(a.kv_heads as i32),
        A::I(hd as i32),
        A::I(a.rot_half as i32),
        A::P(a.positions.addr()),
        opt(a.inv_freq),
        A::F(a.scaling),
        opt(a.q_norm),
        opt(a.k_norm),
        A::F(a.eps),
        A::P(a.slots.addr()),
        A::P(a.q_out.addr()),
        A::P(a.k_cache.addr()),
        A::P(a.v_cache.addr()),
    ];
    run(gpu, Kernel::Attention, &format!("qkv_prepare_{}", dt.suffix()), cfg, &args)
}

/// Inputs of `paged_attention`.
pub struct AttnArgs<'a> {
    pub q: P<'a>,
    pub k_cache: P<'a>,
    pub v_cache: P<'a>,
    pub out: P<'a>,
    pub tokens: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// 0 = no window.
    pub window: usize,
    /// 0 = no soft-capping.
    pub softcap: f32,
    pub positions: P<'a>,
    pub token_seq: P<'a>,
    /// All sequences' block tables, concatenated; `bt_offsets[s]` is sequence s's start.
    pub block_tables: P<'a>,
    pub bt_offsets: P<'a>,
    pub block_size: usize,
}

pub fn paged_attention(gpu: &Gpu, dt: Dt, a: &AttnArgs<'_>) -> Result<(), GpuError> {
    let k = "paged_attention";
    if a.heads % a.kv_heads != 0 || a.head_dim == 0 || a.block_size == 0 {
        return Err(GpuError::Precondition {
            kernel: k,
            msg: format!("{} heads / {} kv heads, block size {}", a.heads, a.kv_heads, a.block_size),
        });
    }
    a.q.check(k, "q", a.tokens * a.heads * a.head_dim * dt.size())?;
    a.out.check(k, "out", a.tokens * a.heads * a.head_dim * dt.size())?;
    a.positions.check(k, "positions", a.tokens * 4)?;
    a.token_seq.check(k, "token_seq", a.tokens * 4)?;
    let threads = 128u32;
    // bf16 at head_dim 64 / 128 / 256: the 16-byte-load kernel (+ 8 floats per thread of PV
    // partials in shared memory); the K/V caches are 16-byte aligned rows of head_dim elements.
    let vec = dt == Dt::BF16
        && matches!(a.head_dim, 64 | 128 | 256)
        && a.k_cache.addr().is_multiple_of(16)
        && a.v_cache.addr().is_multiple_of(16)
        && std::env::var("TRTLLM_NO_VEC_ATTN").map_or(true, |v| v != "1");
    let name = if vec {
        format!("paged_attention_vec_bf16_hd{}", a.head_dim)
    } else {
        format!("paged_attention_{}", dt.suffix())
    };
    let smem =
        (2 * a.head_dim * 4 + threads as usize * 8 + if vec { threads as usize * 32 } else { 0 }) as u32;
    let cfg = LaunchConfig {
        grid_dim: (a.tokens as u32, a.heads as u32, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem,
    };
    let args = [
        A::P(a.q.addr()),
        A::P(a.k_cache.addr()),
        A::P(a.v_cache.addr()),
        A::P(a.out.addr()),
        A::I(a.heads as i32),
        A::I(a.kv_heads as i32),
        A::I(a.head_dim as i32),
        A::F(a.scale),
        A::I(a.window as i32),
        A::F(a.softcap),
        A::P(a.positions.addr()),
        A::P(a.token_seq.addr()),
        A::P(a.block_tables.addr()),
        A::P(a.bt_offsets.addr()),
        A::I(a.block_size as i32),
    ];
    run(gpu, Kernel::Attention, &name, cfg, &args)
}
