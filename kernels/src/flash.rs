//! Launcher of the flash-attention prefill kernels (`cuda/flash_attention.cu`,
//! `cuda/flash_attention_bq128.cu`): bf16 on tensor cores (sm_80+), head_dim 64, 96 or 128. Same
//! operands as `launch::paged_attention` (q and out `[tokens, heads, head_dim]`, the paged K/V
//! cache `[slots, kv_heads, head_dim]`, concatenated block tables), but the work is cut into tiles
//! of <= 64 or <= 128 (the [`Variant`]) consecutive query tokens of one sequence, built here on
//! the host from per-sequence metadata and uploaded (32 B a tile).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cudarc::driver::sys::CUdevice_attribute as Attr;
use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::launch::{AttnArgs, DevPtr};
use crate::module::Kernel;
use crate::{DevBuf, Dt, Gpu, GpuError};

const THREADS: u32 = 128;
/// Keys per K/V tile (both kernels).
const KEY_TILE: usize = 64;
const KERNEL: &str = "flash_prefill";

/// The two kernels; both take the same arguments and tiles (of their own size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// flash_attention.cu: 64-query tiles, 16 rows per warp, Q fragments in registers.
    Bq64,
    /// flash_attention_bq128.cu: 128-query tiles, 32 rows per warp (each K/V fragment feeds two
    /// mma's), Q re-read from shared memory. The default where two blocks fit an SM (sm_90).
    Bq128,
}

impl Variant {
    pub const ALL: [Variant; 2] = [Variant::Bq64, Variant::Bq128];

    /// Query tokens per tile (one block per tile and head).
    pub fn tile_q(self) -> usize {
        match self {
            Variant::Bq64 => 64,
            Variant::Bq128 => 128,
        }
    }

    /// Dynamic shared memory: K and V, two buffers each, of 64 rows of `head_dim + 8` bf16, two
    /// buffers of 64 int slots (`flash_impl`); the 128 kernel adds the Q tile (128 such rows) and
    /// two buffers of 64 int block ids (`flash128_impl`).
    pub fn smem_bytes(self, head_dim: usize) -> usize {
        let kv = 4 * KEY_TILE * (head_dim + 8) * 2 + 2 * KEY_TILE * 4;
        match self {
            Variant::Bq64 => kv,
            Variant::Bq128 => kv + 128 * (head_dim + 8) * 2 + 2 * KEY_TILE * 4,
        }
    }

    /// The kernel's entry point; `kv8`: the one over an FP8 cache (module `FlashKv8`).
    fn entry(self, head_dim: usize, kv8: bool) -> String {
        let kv = if kv8 { "_kv8" } else { "" };
        match self {
            Variant::Bq64 => format!("flash_prefill_bf16{kv}_hd{head_dim}"),
            Variant::Bq128 => format!("flash_prefill_bq128_bf16{kv}_hd{head_dim}"),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

static LAUNCHES: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// How many times a flash kernel was launched in this process (tests check the dispatch).
pub fn launches() -> usize {
    LAUNCHES.iter().map(|n| n.load(Ordering::Relaxed)).sum()
}

/// How many times the kernel `v` was launched in this process.
pub fn launches_of(v: Variant) -> usize {
    LAUNCHES[v.index()].load(Ordering::Relaxed)
}

thread_local! {
    static FORCED: Cell<Option<Variant>> = const { Cell::new(None) };
}

/// Runs `f` with every [`flash_prefill`] of this thread launching `v` (when it fits the device:
/// [`fits`]), whatever [`variant`] would pick: tests run both kernels through the same callers.
pub fn with_variant<R>(v: Variant, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Variant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(FORCED.with(|c| c.replace(Some(v))));
    f()
}

fn smem_attr(gpu: &Gpu, a: Attr) -> usize {
    gpu.ctx.attribute(a).ok().and_then(|v| usize::try_from(v).ok()).unwrap_or(0)
}

/// True when kernel `v`'s shared memory fits one block of this device (sm_86/89: 99 KB).
pub fn fits(gpu: &Gpu, v: Variant, head_dim: usize) -> bool {
    v.smem_bytes(head_dim) <= smem_attr(gpu, Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
}

/// The kernel [`flash_prefill`] launches for `head_dim`: the thread's [`with_variant`] if it
/// fits; else `Bq128` where two of its blocks fit an SM
/// (sm_90: 2 x 104 KB at head_dim 128; it is built for 8 warps per SM), `Bq64` elsewhere (sm_80
/// would run one 128 block per SM at head_dim 128).
pub fn variant(gpu: &Gpu, head_dim: usize) -> Variant {
    if let Some(v) = FORCED.with(|c| c.get()).filter(|&v| fits(gpu, v, head_dim)) {
        return v;
    }
    let per_sm = smem_attr(gpu, Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR);
    let reserved = smem_attr(gpu, Attr::CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK);
    let two = 2 * (Variant::Bq128.smem_bytes(head_dim) + reserved);
    if fits(gpu, Variant::Bq128, head_dim) && two <= per_sm {
        Variant::Bq128
    } else {
        Variant::Bq64
    }
}

/// One sequence of the batch: its query tokens are the packed rows `q_start..q_start + q_len`
/// at the consecutive positions `first_pos..first_pos + q_len`; it attends (causally) to its
/// keys `0..first_pos + q_len` through its block table: sequence `seq` of `attn.bt_offsets`
/// (read on the device, like the paged kernel does), which holds `bt_len` blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlashSeq {
    pub q_start: usize,
    pub q_len: usize,
    pub first_pos: usize,
    pub seq: usize,
    pub bt_len: usize,
}

/// Operands of [`flash_prefill`]: those of the paged kernel plus the per-sequence layout.
pub struct FlashArgs<'a> {
    pub attn: &'a AttnArgs<'a>,
    pub seqs: &'a [FlashSeq],
    /// Sequences (int32 entries) in `attn.bt_offsets`.
    pub num_seqs: usize,
    /// Rows (`kv_heads * head_dim` elements each) in each of the K and V caches.
    pub cache_slots: usize,
}

/// True when the kernel exists for this device, dtype and head size.
pub fn supported(gpu: &Gpu, dt: Dt, head_dim: usize) -> bool {
    gpu.sm >= 80 && dt == Dt::BF16 && matches!(head_dim, 64 | 96 | 128)
}

/// [`supported`], and q, out, K and V 16-byte aligned (16-byte loads and async copies).
pub fn eligible(gpu: &Gpu, dt: Dt, a: &AttnArgs<'_>) -> bool {
    supported(gpu, dt, a.head_dim)
        && a.sinks.is_none()
        && [a.q, a.out, a.k_cache, a.v_cache].iter().all(|p| p.buf.ptr(p.off) % 16 == 0)
}

fn pre(msg: String) -> GpuError {
    GpuError::Precondition { kernel: KERNEL, msg }
}

fn in_buf(p: &DevPtr<'_>, what: &str, bytes: usize) -> Result<(), GpuError> {
    if p.off.checked_add(bytes).is_none_or(|end| end > p.buf.len()) {
        return Err(pre(format!(
            "{what}: {bytes} bytes at offset {} exceed a {}-byte buffer",
            p.off,
            p.buf.len()
        )));
    }
    Ok(())
}

fn i32_of(v: usize, what: &str) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| pre(format!("{what} = {v} does not fit in int32")))
}

/// The tile descriptors of tiles of <= `tile_q` rows (the kernel's [`Variant::tile_q`]), 8
/// int32 each: `[q0, nq, p0, seq, kv_lo, kv_hi, 0, 0]` (first packed token, rows, position of
/// row 0, sequence index, first and last key position any row of the tile sees). Longest key
/// ranges first, so the heavy causal tiles start early.
pub fn tiles(seqs: &[FlashSeq], window: usize, tile_q: usize) -> Result<Vec<[i32; 8]>, GpuError> {
    if tile_q == 0 {
        return Err(pre("tile size 0".into()));
    }
    let mut out = vec![];
    for s in seqs {
        for r0 in (0..s.q_len).step_by(tile_q) {
            let nq = tile_q.min(s.q_len - r0);
            let p0 = s.first_pos + r0;
            let kv_hi = p0 + nq - 1;
            let kv_lo = if window > 0 { (p0 + 1).saturating_sub(window) } else { 0 };
            out.push([
                i32_of(s.q_start + r0, "token")?,
                nq as i32,
                i32_of(p0, "position")?,
                i32_of(s.seq, "sequence")?,
                i32_of(kv_lo, "key position")?,
                i32_of(kv_hi, "key position")?,
                0,
                0,
            ]);
        }
    }
    out.sort_by_key(|t| std::cmp::Reverse(t[5] - t[4]));
    Ok(out)
}

/// Attention of every query row of `a.seqs` over its sequence's cached keys 0..=position
/// (within `window`, soft-capped, scaled). Rows of `a.attn.out` not in any sequence are not
/// written. Runs the kernel [`variant`] picks.
pub fn flash_prefill(gpu: &Arc<Gpu>, dt: Dt, a: &FlashArgs<'_>) -> Result<(), GpuError> {
    flash_prefill_with(gpu, dt, a, variant(gpu, a.attn.head_dim))
}

/// [`flash_prefill`] with the kernel `v` (a precondition error where it does not [`fits`]).
pub fn flash_prefill_with(gpu: &Arc<Gpu>, dt: Dt, a: &FlashArgs<'_>, v: Variant) -> Result<(), GpuError> {
    let at = a.attn;
    let (hd, nh, nkv, bs) = (at.head_dim, at.heads, at.kv_heads, at.block_size);
    if !supported(gpu, dt, hd) {
        return Err(pre(format!("{dt:?} head_dim {hd} on sm_{} (needs bf16, 64/96/128, sm_80+)", gpu.sm)));
    }
    if nkv == 0 || nh % nkv != 0 || bs == 0 || nh > 65535 {
        return Err(pre(format!("{nh} heads / {nkv} kv heads, block size {bs}")));
    }
    if !eligible(gpu, dt, at) {
        return Err(pre("q, out, k_cache and v_cache must be 16-byte aligned".into()));
    }
    let (esz, kv_esz) = (dt.size(), crate::launch::Fp8Kv::elem_size(at.fp8, dt));
    in_buf(&at.q, "q", at.tokens * nh * hd * esz)?;
    in_buf(&at.out, "out", at.tokens * nh * hd * esz)?;
    in_buf(&at.k_cache, "k_cache", a.cache_slots * nkv * hd * kv_esz)?;
    in_buf(&at.v_cache, "v_cache", a.cache_slots * nkv * hd * kv_esz)?;
    in_buf(&at.bt_offsets, "bt_offsets", a.num_seqs * 4)?;
    i32_of(a.cache_slots, "cache slots")?;
    i32_of(at.window, "window")?;
    // Every row in range and written by one tile; every key a row sees has a block-table entry.
    let mut rows: Vec<(usize, usize)> = a.seqs.iter().map(|s| (s.q_start, s.q_len)).collect();
    rows.sort_unstable();
    for w in rows.windows(2) {
        if w[0].0 + w[0].1 > w[1].0 {
            return Err(pre(format!("sequences overlap at token {}", w[1].0)));
        }
    }
    for s in a.seqs {
        let ctx = s.first_pos + s.q_len;
        if s.q_len == 0 || s.q_start + s.q_len > at.tokens || s.seq >= a.num_seqs || ctx > s.bt_len * bs {
            return Err(pre(format!(
                "{s:?}: {} tokens, {} sequences, block size {bs}",
                at.tokens, a.num_seqs
            )));
        }
    }
    if !fits(gpu, v, hd) {
        return Err(pre(format!(
            "{v:?} at head_dim {hd}: {} B of shared memory per block",
            v.smem_bytes(hd)
        )));
    }
    let tiles = tiles(a.seqs, at.window, v.tile_q())?;
    if tiles.is_empty() {
        return Ok(());
    }
    if tiles.len() > 65535 {
        return Err(pre(format!("{} tiles (max 65535)", tiles.len())));
    }
    let bytes: Vec<u8> = tiles.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    // Freed (stream-ordered) when this function returns, after the launch on the same stream.
    let tiles_dev = DevBuf::upload(gpu, &bytes)?;
    let module = if at.fp8.is_some() { Kernel::FlashKv8 } else { Kernel::Flash };
    let f = gpu.function(module, &v.entry(hd, at.fp8.is_some()))?;
    let smem = v.smem_bytes(hd);
    // Above 48 KiB a kernel must opt in to dynamic shared memory (checked against the device's
    // opt-in limit above).
    f.set_attribute(
        cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
        smem as i32,
    )
    .map_err(GpuError::driver)?;
    let cfg = LaunchConfig {
        grid_dim: (nh as u32, tiles.len() as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    let ptrs = [
        at.q.buf.ptr(at.q.off),
        at.k_cache.buf.ptr(at.k_cache.off),
        at.v_cache.buf.ptr(at.v_cache.off),
        at.out.buf.ptr(at.out.off),
    ];
    let (nh_i, nkv_i, win, bs_i) = (nh as i32, nkv as i32, at.window as i32, i32_of(bs, "block size")?);
    let (score_scale, out_scale) = (at.score_scale(), at.out_scale());
    let tiles_p = tiles_dev.ptr(0);
    let bt_p = at.block_tables.buf.ptr(at.block_tables.off);
    let bo_p = at.bt_offsets.buf.ptr(at.bt_offsets.off);
    let _gate = gpu.enter();
    let mut b = gpu.stream.launch_builder(&f);
    b.arg(&ptrs[0]).arg(&ptrs[1]).arg(&ptrs[2]).arg(&ptrs[3]);
    b.arg(&nh_i).arg(&nkv_i).arg(&score_scale).arg(&win).arg(&at.softcap);
    b.arg(&tiles_p).arg(&bt_p).arg(&bo_p).arg(&bs_i).arg(&out_scale);
    // SAFETY: the arguments match `FA_ARGS` of flash_attention.cu (both kernels' parameter list)
    // in order and type (4 pointers, int, int, float, int, float, 3 pointers, int, float). q/out hold
    // `tokens` rows and every tile's rows are < tokens (checked); K/V hold `cache_slots` rows;
    // `bt_offsets` holds `num_seqs` entries and every tile's sequence is < num_seqs. A tile reads block-table entries
    // 0..ceil((first_pos + q_len) / bs) <= bt_len of its sequence's table. The device tables and
    // offsets are trusted to mirror the host's, and the block ids in them to be < cache_slots /
    // bs, exactly as by the paged kernel, which reads the same buffers. All buffers are 16-byte
    // aligned (checked) and live until the stream reaches the kernel: `tiles_dev` is freed
    // stream-ordered after it. The dynamic smem is the kernel's layout (`Variant::smem_bytes`),
    // allowed above; tiles have <= `v.tile_q()` rows, the kernel's tile size.
    unsafe { b.launch(cfg) }
        .map_err(|e| GpuError::Launch { kernel: KERNEL.into(), msg: format!("{e:?}") })?;
    LAUNCHES[v.index()].fetch_add(1, Ordering::Relaxed);
    Ok(())
}
