//! Launchers: one Rust function per kernel entry point. Each checks its preconditions (sizes,
//! alignment, buffer bounds) before it launches; pointers are `(buffer, byte offset)` pairs.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::module::Kernel;
use crate::{DevBuf, Dt, Gpu, GpuError};

mod attention;
mod elementwise;
mod fp8_gemm;
mod ggml;
mod lt;
mod matmul;
mod mixed;
mod mla;
mod moe;
mod norm;
mod pdl;
mod quant;
mod rows;
mod sampling;
pub use attention::{
    gqa_eligible, paged_attention, paged_attention_grouped, paged_attention_per_head, qkv_prepare, AttnArgs,
    Fp8Kv, QkvArgs, GQA_MIN_SPLIT_KEYS,
};
pub use elementwise::{act, add, add_bias, cast, clamped_swiglu, fill_f32, gated_act, mul, scale, softcap};
pub use fp8_gemm::{
    fp8_rowwise_ok, matmul_fp8, matmul_fp8_f32out, matmul_fp8_outer, matmul_fp8_rowwise,
    matmul_fp8_rowwise_f32acc, try_matmul_fp8_outer,
};
pub use ggml::{gemv_ggml, gemv_ggml_ok, ggml_dequant, GGML_GEMV_MAX_M};
pub use lt::{AlgoCache, TUNE_MAX_M};
use matmul::gemv_launch;
pub use matmul::{gemm, gemv, gemv_bf16_variant, gemv_gated, gemv_ok, GEMV_MAX_M};
pub use mixed::{gemm_bf16_f32out, gemv_bf16_f32out};
pub use mla::{mla_absorb_q, mla_cache_write, mla_out, MlaArgs};
pub use moe::{
    gemv_moe, moe_bias, moe_combine, moe_route, MoeRoute, MOE_GEMV_MAX_PAIRS, MOE_MAX_EXPERTS,
    MOE_MAX_GROUPS, MOE_MAX_TOPK,
};
pub use norm::{add_rms_norm, layer_norm, qk_rms_apply, qk_sumsq, rms_norm};
pub use quant::{
    fp8_dequant, fp8_quantize_rows, fp8_quantize_static, fp8_scale_rowcol, gemv_fp8, gemv_fp8_gated,
    gemv_fp8_ok, gemv_int4, int4_dequant, Int4W, QGEMV_MAX_M,
};
pub use rows::{argmax, gather_rows, scatter_add_rows};
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
