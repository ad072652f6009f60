//! Launchers of the attention kernels (`kernels/cuda/attention.cu`): the fused per-token q/k-norm +
//! RoPE + KV-cache write, and paged attention over the cache. The cache is in the activation
//! dtype, or FP8 E4M3 with per-layer scales ([`Fp8Kv`]; bf16 activations only): the `_kv8`
//! kernels of [`Kernel::AttentionKv8`] / [`Kernel::AttentionDecodeKv8`].

use cudarc::driver::LaunchConfig;

use std::sync::Arc;

use super::{opt, run, Arg, DevPtr};
use crate::module::Kernel;
use crate::{DevBuf, Dt, Gpu, GpuError};

/// The scales of an FP8 E4M3 KV cache layer: a cached key is `e4m3 * k_scale`, a value
/// `e4m3 * v_scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fp8Kv {
    pub k_scale: f32,
    pub v_scale: f32,
}

impl Fp8Kv {
    /// Bytes of one cache element: 1 for FP8, else the activation dtype's.
    pub fn elem_size(fp8: Option<Fp8Kv>, dt: Dt) -> usize {
        fp8.map_or(dt.size(), |_| 1)
    }
}

fn kv8_dt(kernel: &'static str, dt: Dt) -> Result<(), GpuError> {
    if dt != Dt::BF16 {
        return Err(GpuError::Precondition {
            kernel,
            msg: format!("an FP8 KV cache needs bf16 activations, not {dt:?}"),
        });
    }
    Ok(())
}

/// Inputs of `qkv_prepare`: q/k norm, RoPE and the KV-cache write of one step.
pub struct QkvArgs<'a> {
    pub qkv: DevPtr<'a>,
    pub tokens: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Rotated dims / 2 (0 when `inv_freq` is None).
    pub rot_half: usize,
    pub positions: DevPtr<'a>,
    pub inv_freq: Option<DevPtr<'a>>,
    pub scaling: f32,
    pub q_norm: Option<DevPtr<'a>>,
    pub k_norm: Option<DevPtr<'a>>,
    pub eps: f32,
    pub slots: DevPtr<'a>,
    pub q_out: DevPtr<'a>,
    pub k_cache: DevPtr<'a>,
    pub v_cache: DevPtr<'a>,
    pub cache_slots: usize,
    /// An FP8 cache: keys and values are stored as e4m3(x / scale).
    pub fp8: Option<Fp8Kv>,
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
    let esz = Fp8Kv::elem_size(a.fp8, dt);
    a.k_cache.check(k, "k_cache", a.cache_slots * a.kv_heads * hd * esz)?;
    a.v_cache.check(k, "v_cache", a.cache_slots * a.kv_heads * hd * esz)?;
    a.positions.check(k, "positions", t * 4)?;
    a.slots.check(k, "slot_mapping", t * 4)?;
    let cfg = LaunchConfig {
        // one warp per (token, q or k head), 8 per block
        grid_dim: (t as u32, (a.heads + a.kv_heads).div_ceil(8) as u32, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut args = vec![
        Arg::Ptr(a.qkv.addr()),
        Arg::I32(a.heads as i32),
        Arg::I32(a.kv_heads as i32),
        Arg::I32(hd as i32),
        Arg::I32(a.rot_half as i32),
        Arg::Ptr(a.positions.addr()),
        opt(a.inv_freq),
        Arg::F32(a.scaling),
        opt(a.q_norm),
        opt(a.k_norm),
        Arg::F32(a.eps),
        Arg::Ptr(a.slots.addr()),
        Arg::Ptr(a.q_out.addr()),
        Arg::Ptr(a.k_cache.addr()),
        Arg::Ptr(a.v_cache.addr()),
    ];
    if let Some(s) = a.fp8 {
        kv8_dt(k, dt)?;
        args.extend([Arg::F32(1.0 / s.k_scale), Arg::F32(1.0 / s.v_scale)]);
        return run(gpu, Kernel::AttentionKv8, "qkv_prepare_bf16_kv8", cfg, &args);
    }
    run(gpu, Kernel::Attention, &format!("qkv_prepare_{}", dt.suffix()), cfg, &args)
}

/// Inputs of `paged_attention`.
pub struct AttnArgs<'a> {
    pub q: DevPtr<'a>,
    pub k_cache: DevPtr<'a>,
    pub v_cache: DevPtr<'a>,
    pub out: DevPtr<'a>,
    pub tokens: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// 0 = no window.
    pub window: usize,
    /// 0 = no soft-capping.
    pub softcap: f32,
    pub positions: DevPtr<'a>,
    pub token_seq: DevPtr<'a>,
    /// All sequences' block tables, concatenated; `bt_offsets[s]` is sequence s's start.
    pub block_tables: DevPtr<'a>,
    pub bt_offsets: DevPtr<'a>,
    pub block_size: usize,
    /// An upper bound on the positions any query token of this launch sees (its position + 1;
    /// a CUDA-graph step passes the longest sequence it can replay). Sets how many blocks split
    /// one token's keys; 0 = unknown: one block per token and head group.
    pub max_context: usize,
    /// Attention sinks: `heads` f32 logits that join each softmax's denominator (GPT-OSS); only
    /// the per-head scalar kernel takes them.
    pub sinks: Option<DevPtr<'a>>,
    /// An FP8 E4M3 cache with these scales (bf16 q / out); None: the cache is in `dt`.
    pub fp8: Option<Fp8Kv>,
}

impl AttnArgs<'_> {
    /// The score multiplier the kernels get: `scale`, times k_scale for an FP8 cache.
    pub fn score_scale(&self) -> f32 {
        self.scale * self.fp8.map_or(1.0, |s| s.k_scale)
    }
    /// The output multiplier: v_scale for an FP8 cache, else 1.
    pub fn out_scale(&self) -> f32 {
        self.fp8.map_or(1.0, |s| s.v_scale)
    }
}

/// Query heads one GQA-grouped decode block serves at most (`attention_decode.cu`).
const GQA_MAX_GROUP: usize = 8;
/// Fewest keys a split-K block takes: the grouped decode kernel never splits contexts this short.
pub const GQA_MIN_SPLIT_KEYS: usize = 256;
const MIN_SPLIT_KEYS: usize = GQA_MIN_SPLIT_KEYS;

/// `(splits, keys per split)` of the grouped kernel: one split when `tokens x kv_heads` blocks
/// already fill the GPU twice, else enough splits of at least `MIN_SPLIT_KEYS` visible keys to.
fn gqa_splits(gpu: &Gpu, a: &AttnArgs<'_>) -> (usize, usize) {
    let base = a.tokens * a.kv_heads;
    let target = 2 * gpu.num_sms as usize;
    let ctx = if a.window > 0 { a.max_context.min(a.window) } else { a.max_context };
    if base >= target || ctx <= MIN_SPLIT_KEYS {
        return (1, 0);
    }
    let want = target.div_ceil(base).min(ctx.div_ceil(MIN_SPLIT_KEYS)).max(1);
    let keys = ctx.div_ceil(want).next_multiple_of(16);
    (ctx.div_ceil(keys), keys)
}

/// The grouped (and, for few long rows, split-K) decode kernel: bf16, head_dim 64/128/256, at
/// most `GQA_MAX_GROUP` query heads per KV head. Its split workspaces come from the stream's pool.
fn paged_attention_gqa(gpu: &Arc<Gpu>, a: &AttnArgs<'_>) -> Result<(), GpuError> {
    let (hd, g) = (a.head_dim, a.heads / a.kv_heads);
    let (nsplit, split_keys) = gqa_splits(gpu, a);
    let rows = a.tokens * a.heads * nsplit;
    let (part, ml) = if nsplit > 1 {
        (Some(DevBuf::alloc(gpu, rows * hd * 4)?), Some(DevBuf::alloc(gpu, rows * 2 * 4)?))
    } else {
        (None, None)
    };
    let kl = hd / 8;
    let cfg = LaunchConfig {
        grid_dim: (a.tokens as u32, a.kv_heads as u32, nsplit as u32),
        block_dim: (128, 1, 1),
        shared_mem_bytes: ((128 / kl) * g * hd * 4) as u32,
    };
    let null = 0u64;
    let args = [
        Arg::Ptr(a.q.addr()),
        Arg::Ptr(a.k_cache.addr()),
        Arg::Ptr(a.v_cache.addr()),
        Arg::Ptr(a.out.addr()),
        Arg::Ptr(part.as_ref().map_or(null, |b| b.ptr(0))),
        Arg::Ptr(ml.as_ref().map_or(null, |b| b.ptr(0))),
        Arg::I32(a.heads as i32),
        Arg::I32(a.kv_heads as i32),
        Arg::F32(a.score_scale()),
        Arg::I32(a.window as i32),
        Arg::F32(a.softcap),
        Arg::Ptr(a.positions.addr()),
        Arg::Ptr(a.token_seq.addr()),
        Arg::Ptr(a.block_tables.addr()),
        Arg::Ptr(a.bt_offsets.addr()),
        Arg::I32(a.block_size as i32),
        Arg::I32(split_keys as i32),
        Arg::F32(a.out_scale()),
    ];
    let (module, kv) = match a.fp8 {
        Some(_) => (Kernel::AttentionDecodeKv8, "_kv8"),
        None => (Kernel::AttentionDecode, ""),
    };
    run(gpu, module, &format!("paged_attention_gqa_bf16{kv}_hd{hd}_g{g}"), cfg, &args)?;
    if let (Some(part), Some(ml)) = (part, ml) {
        let cfg = LaunchConfig {
            grid_dim: (a.tokens as u32, a.heads as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let args = [
            Arg::Ptr(part.ptr(0)),
            Arg::Ptr(ml.ptr(0)),
            Arg::Ptr(a.out.addr()),
            Arg::I32(a.heads as i32),
            Arg::I32(hd as i32),
            Arg::I32(nsplit as i32),
        ];
        run(gpu, module, "attn_combine_bf16", cfg, &args)?;
    }
    Ok(())
}

/// Attention of every query token over its sequence's cached K/V (`tokens` rows of q and out):
/// the GQA-grouped kernel where it applies (bf16, head_dim 64/128/256, <= 8 query heads per KV
/// head), else one block per (token, query head).
pub fn paged_attention(gpu: &Arc<Gpu>, dt: Dt, a: &AttnArgs<'_>) -> Result<(), GpuError> {
    if a.sinks.is_none() && gqa_eligible(dt, a) && crate::options().gqa_decode {
        return paged_attention_grouped(gpu, dt, a);
    }
    paged_attention_per_head(gpu, dt, a)
}

/// The grouped kernel takes `a`: bf16, head_dim 64/128/256, <= 8 query heads per KV head,
/// 16-byte aligned caches.
pub fn gqa_eligible(dt: Dt, a: &AttnArgs<'_>) -> bool {
    dt == Dt::BF16
        && a.sinks.is_none()
        && matches!(a.head_dim, 64 | 128 | 256)
        && a.kv_heads > 0
        && a.heads / a.kv_heads <= GQA_MAX_GROUP
        && a.k_cache.addr().is_multiple_of(16)
        && a.v_cache.addr().is_multiple_of(16)
}

/// [`paged_attention`] on the grouped kernel; a precondition error where it does not apply.
pub fn paged_attention_grouped(gpu: &Arc<Gpu>, dt: Dt, a: &AttnArgs<'_>) -> Result<(), GpuError> {
    check_attn(a, dt)?;
    if !gqa_eligible(dt, a) {
        return Err(GpuError::Precondition {
            kernel: "paged_attention_gqa",
            msg: format!("{dt:?}, head_dim {}, {} heads / {} kv heads", a.head_dim, a.heads, a.kv_heads),
        });
    }
    paged_attention_gqa(gpu, a)
}

fn check_attn(a: &AttnArgs<'_>, dt: Dt) -> Result<(), GpuError> {
    let k = "paged_attention";
    if a.kv_heads == 0 || !a.heads.is_multiple_of(a.kv_heads) || a.head_dim == 0 || a.block_size == 0 {
        return Err(GpuError::Precondition {
            kernel: k,
            msg: format!("{} heads / {} kv heads, block size {}", a.heads, a.kv_heads, a.block_size),
        });
    }
    if a.fp8.is_some() {
        kv8_dt(k, dt)?;
    }
    a.q.check(k, "q", a.tokens * a.heads * a.head_dim * dt.size())?;
    a.out.check(k, "out", a.tokens * a.heads * a.head_dim * dt.size())?;
    a.positions.check(k, "positions", a.tokens * 4)?;
    a.token_seq.check(k, "token_seq", a.tokens * 4)
}

/// [`paged_attention`] with one block per (token, query head).
pub fn paged_attention_per_head(gpu: &Gpu, dt: Dt, a: &AttnArgs<'_>) -> Result<(), GpuError> {
    check_attn(a, dt)?;
    let threads = 128u32;
    // bf16 at head_dim 64 / 128 / 256: the 16-byte-load kernel (+ 8 floats per thread of PV
    // partials in shared memory); the K/V caches are 16-byte aligned rows of head_dim elements.
    let vec = dt == Dt::BF16
        && a.fp8.is_none()
        && a.sinks.is_none()
        && matches!(a.head_dim, 64 | 128 | 256)
        && a.k_cache.addr().is_multiple_of(16)
        && a.v_cache.addr().is_multiple_of(16);
    if let Some(s) = a.sinks {
        s.check("paged_attention", "sinks", a.heads * 4)?;
    }
    let kv = if a.fp8.is_some() { "_kv8" } else { "" };
    let name = if vec {
        format!("paged_attention_vec_bf16_hd{}", a.head_dim)
    } else if a.sinks.is_some() {
        format!("paged_attention_sinks_{}{kv}", dt.suffix())
    } else {
        format!("paged_attention_{}{kv}", dt.suffix())
    };
    let smem =
        (2 * a.head_dim * 4 + threads as usize * 8 + if vec { threads as usize * 32 } else { 0 }) as u32;
    let cfg = LaunchConfig {
        grid_dim: (a.tokens as u32, a.heads as u32, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem,
    };
    let mut args = vec![
        Arg::Ptr(a.q.addr()),
        Arg::Ptr(a.k_cache.addr()),
        Arg::Ptr(a.v_cache.addr()),
        Arg::Ptr(a.out.addr()),
        Arg::I32(a.heads as i32),
        Arg::I32(a.kv_heads as i32),
        Arg::I32(a.head_dim as i32),
        Arg::F32(a.score_scale()),
        Arg::I32(a.window as i32),
        Arg::F32(a.softcap),
        Arg::Ptr(a.positions.addr()),
        Arg::Ptr(a.token_seq.addr()),
        Arg::Ptr(a.block_tables.addr()),
        Arg::Ptr(a.bt_offsets.addr()),
        Arg::I32(a.block_size as i32),
    ];
    if a.sinks.is_some() {
        args.push(opt(a.sinks));
    }
    if a.fp8.is_some() {
        args.push(Arg::F32(a.out_scale()));
        return run(gpu, Kernel::AttentionKv8, &name, cfg, &args);
    }
    run(gpu, Kernel::Attention, &name, cfg, &args)
}
