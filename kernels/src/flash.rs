//! Launcher of the flash-attention prefill kernel (`cuda/flash_attention.cu`): bf16 on tensor
//! cores (sm_80+), head_dim 64, 96 or 128. Same operands as `launch::paged_attention` (q and out
//! `[tokens, heads, head_dim]`, the paged K/V cache `[slots, kv_heads, head_dim]`, concatenated
//! block tables), but the work is cut into tiles of <= 64 consecutive query tokens of one
//! sequence, built here on the host from per-sequence metadata and uploaded (32 B a tile).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::launch::{AttnArgs, P};
use crate::module::Kernel;
use crate::{DevBuf, Dt, Gpu, GpuError};

/// Query tokens per tile (one block per tile and head).
pub const TILE_Q: usize = 64;
const THREADS: u32 = 128;
const KERNEL: &str = "flash_prefill";

/// Dynamic shared memory of the kernel: K and V, two buffers each, of 64 rows of `head_dim + 8`
/// bf16, and two buffers of 64 int slots (`flash_impl` in flash_attention.cu).
fn smem_bytes(head_dim: usize) -> usize {
    4 * TILE_Q * (head_dim + 8) * 2 + 2 * TILE_Q * 4
}

static LAUNCHES: AtomicUsize = AtomicUsize::new(0);

/// How many times the flash kernel was launched in this process (tests check the dispatch).
pub fn launches() -> usize {
    LAUNCHES.load(Ordering::Relaxed)
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
        && [a.q, a.out, a.k_cache, a.v_cache].iter().all(|p| p.buf.ptr(p.off) % 16 == 0)
}

fn pre(msg: String) -> GpuError {
    GpuError::Precondition { kernel: KERNEL, msg }
}

fn fits(p: &P<'_>, what: &str, bytes: usize) -> Result<(), GpuError> {
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

/// The tile descriptors, 8 int32 each: `[q0, nq, p0, seq, kv_lo, kv_hi, 0, 0]` (first packed
/// token, rows, position of row 0, sequence index, first and last key position any row
/// of the tile sees). Longest key ranges first, so the heavy causal tiles start early.
pub fn tiles(seqs: &[FlashSeq], window: usize) -> Result<Vec<[i32; 8]>, GpuError> {
    let mut out = vec![];
    for s in seqs {
        for r0 in (0..s.q_len).step_by(TILE_Q) {
            let nq = TILE_Q.min(s.q_len - r0);
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
/// (within `window`, soft-capped, scaled). Rows of `a.attn.out` not in any sequence are not written.
pub fn flash_prefill(gpu: &Arc<Gpu>, dt: Dt, a: &FlashArgs<'_>) -> Result<(), GpuError> {
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
    let esz = dt.size();
    fits(&at.q, "q", at.tokens * nh * hd * esz)?;
    fits(&at.out, "out", at.tokens * nh * hd * esz)?;
    fits(&at.k_cache, "k_cache", a.cache_slots * nkv * hd * esz)?;
    fits(&at.v_cache, "v_cache", a.cache_slots * nkv * hd * esz)?;
    fits(&at.bt_offsets, "bt_offsets", a.num_seqs * 4)?;
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
    let tiles = tiles(a.seqs, at.window)?;
    if tiles.is_empty() {
        return Ok(());
    }
    if tiles.len() > 65535 {
        return Err(pre(format!("{} tiles (max 65535)", tiles.len())));
    }
    let bytes: Vec<u8> = tiles.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    // Freed (stream-ordered) when this function returns, after the launch on the same stream.
    let tiles_dev = DevBuf::upload(gpu, &bytes)?;
    let f = gpu.function(Kernel::Flash, &format!("flash_prefill_bf16_hd{hd}"))?;
    let smem = smem_bytes(hd);
    // Above 48 KiB (head_dim 96, 128) a kernel must opt in to dynamic shared memory (sm_80+ has
    // >= 163 KiB per block).
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
    let tiles_p = tiles_dev.ptr(0);
    let bt_p = at.block_tables.buf.ptr(at.block_tables.off);
    let bo_p = at.bt_offsets.buf.ptr(at.bt_offsets.off);
    let _gate = gpu.enter();
    let mut b = gpu.stream.launch_builder(&f);
    b.arg(&ptrs[0]).arg(&ptrs[1]).arg(&ptrs[2]).arg(&ptrs[3]);
    b.arg(&nh_i).arg(&nkv_i).arg(&at.scale).arg(&win).arg(&at.softcap);
    b.arg(&tiles_p).arg(&bt_p).arg(&bo_p).arg(&bs_i);
    // SAFETY: the arguments match `FA_ARGS` of flash_attention.cu in order and type (4 pointers,
    // int, int, float, int, float, 3 pointers, int). q/out hold `tokens` rows and every tile's
    // rows are < tokens (checked); K/V hold `cache_slots` rows; `bt_offsets` holds `num_seqs`
    // entries and every tile's sequence is < num_seqs. A tile reads block-table entries
    // 0..ceil((first_pos + q_len) / bs) <= bt_len of its sequence's table. The device tables and
    // offsets are trusted to mirror the host's, and the block ids in them to be < cache_slots /
    // bs, exactly as by the paged kernel, which reads the same buffers. All buffers are 16-byte
    // aligned (checked) and live until the stream reaches the kernel: `tiles_dev` is freed
    // stream-ordered after it. The dynamic smem is the kernel's layout (`smem_bytes`), allowed above.
    unsafe { b.launch(cfg) }
        .map_err(|e| GpuError::Launch { kernel: KERNEL.into(), msg: format!("{e:?}") })?;
    LAUNCHES.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
