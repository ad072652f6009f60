//! Launchers of the multi-head latent attention kernels (`kernels/cuda/mla.cu`): the latent
//! cache write, the query absorption and the output projection around paged attention.

use cudarc::driver::LaunchConfig;

use super::{run, Arg, DevPtr};
use crate::module::Kernel;
use crate::{Dt, Gpu, GpuError};

/// The dims and step metadata every MLA kernel shares.
pub struct MlaArgs<'a> {
    pub tokens: usize,
    /// Query heads of this rank.
    pub heads: usize,
    pub nope: usize,
    pub rope: usize,
    pub lora: usize,
    pub v: usize,
    pub eps: f32,
    /// The RoPE cos/sin multiplier.
    pub scaling: f32,
    pub positions: DevPtr<'a>,
    pub slots: DevPtr<'a>,
    /// `rope / 2` f32 inverse frequencies.
    pub inv_freq: DevPtr<'a>,
    /// Latent rows the cache holds.
    pub cache_slots: usize,
}

impl MlaArgs<'_> {
    fn check(&self, k: &'static str) -> Result<(), GpuError> {
        if !self.rope.is_multiple_of(2) || self.lora == 0 || self.heads == 0 {
            return Err(GpuError::Precondition {
                kernel: k,
                msg: format!("lora {}, rope {} (even), {} heads", self.lora, self.rope, self.heads),
            });
        }
        self.positions.check(k, "positions", self.tokens * 4)?;
        self.inv_freq.check(k, "inv_freq", self.rope / 2 * 4)
    }
    fn grid(&self, smem_floats: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.tokens as u32, self.heads as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: (smem_floats * 4) as u32,
        }
    }
}

/// `kv_a` `[tokens, lora + rope]` -> normalized, RoPE'd latent rows in their cache slots.
pub fn mla_cache_write(
    gpu: &Gpu,
    dt: Dt,
    a: &MlaArgs<'_>,
    kv_a: DevPtr<'_>,
    norm_w: DevPtr<'_>,
    cache: DevPtr<'_>,
) -> Result<(), GpuError> {
    let k = "mla_cache_write";
    a.check(k)?;
    let d = a.lora + a.rope;
    kv_a.check(k, "kv_a", a.tokens * d * dt.size())?;
    norm_w.check(k, "kv_a_layernorm", a.lora * 4)?;
    cache.check(k, "cache", a.cache_slots * d * dt.size())?;
    a.slots.check(k, "slot_mapping", a.tokens * 4)?;
    let cfg = LaunchConfig { grid_dim: (a.tokens as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
    let args = [
        Arg::Ptr(kv_a.addr()),
        Arg::Ptr(norm_w.addr()),
        Arg::Ptr(cache.addr()),
        Arg::Ptr(a.positions.addr()),
        Arg::Ptr(a.slots.addr()),
        Arg::Ptr(a.inv_freq.addr()),
        Arg::F32(a.scaling),
        Arg::I32(a.lora as i32),
        Arg::I32(a.rope as i32),
        Arg::F32(a.eps),
    ];
    run(gpu, Kernel::Mla, &format!("mla_cache_write_{}", dt.suffix()), cfg, &args)
}

/// `q` `[tokens, heads * (nope + rope)]` -> absorbed queries `[tokens, heads * (lora + rope)]`.
pub fn mla_absorb_q(
    gpu: &Gpu,
    dt: Dt,
    a: &MlaArgs<'_>,
    q: DevPtr<'_>,
    w_uk: DevPtr<'_>,
    qa: DevPtr<'_>,
) -> Result<(), GpuError> {
    let k = "mla_absorb_q";
    a.check(k)?;
    q.check(k, "q", a.tokens * a.heads * (a.nope + a.rope) * dt.size())?;
    w_uk.check(k, "w_uk", a.heads * a.lora * a.nope * dt.size())?;
    qa.check(k, "q_absorbed", a.tokens * a.heads * (a.lora + a.rope) * dt.size())?;
    let args = [
        Arg::Ptr(q.addr()),
        Arg::Ptr(w_uk.addr()),
        Arg::Ptr(qa.addr()),
        Arg::Ptr(a.positions.addr()),
        Arg::Ptr(a.inv_freq.addr()),
        Arg::F32(a.scaling),
        Arg::I32(a.heads as i32),
        Arg::I32(a.nope as i32),
        Arg::I32(a.rope as i32),
        Arg::I32(a.lora as i32),
    ];
    run(gpu, Kernel::Mla, &format!("mla_absorb_q_{}", dt.suffix()), a.grid(a.nope), &args)
}

/// Attention output `[tokens, heads * (lora + rope)]` -> `[tokens, heads * v]` through `W_UV`.
pub fn mla_out(
    gpu: &Gpu,
    dt: Dt,
    a: &MlaArgs<'_>,
    o: DevPtr<'_>,
    w_uv: DevPtr<'_>,
    out: DevPtr<'_>,
) -> Result<(), GpuError> {
    let k = "mla_out";
    a.check(k)?;
    o.check(k, "attention output", a.tokens * a.heads * (a.lora + a.rope) * dt.size())?;
    w_uv.check(k, "w_uv", a.heads * a.v * a.lora * dt.size())?;
    out.check(k, "out", a.tokens * a.heads * a.v * dt.size())?;
    let args = [
        Arg::Ptr(o.addr()),
        Arg::Ptr(w_uv.addr()),
        Arg::Ptr(out.addr()),
        Arg::I32(a.heads as i32),
        Arg::I32(a.lora as i32),
        Arg::I32(a.rope as i32),
        Arg::I32(a.v as i32),
    ];
    run(gpu, Kernel::Mla, &format!("mla_out_{}", dt.suffix()), a.grid(a.lora), &args)
}
