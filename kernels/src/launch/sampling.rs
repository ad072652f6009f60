//! Launchers of the batched sampler (`kernels/cuda/sampling_batched.cu`): every row of a step
//! sampled on the device in one launch (penalties, logit bias, temperature, top-k, top-p, min-p,
//! a Philox draw, raw logprobs), and the two kernels that keep the per-sequence token state the
//! penalties read. The function each row computes, and its CPU twin, are in
//! [`crate::sample_ref`].
//!
//! Per-row parameters are a device array of [`SampleParams`] (`#[repr(C)]`, 56 bytes, 8-byte
//! aligned; [`SampleParams::as_bytes`] makes the upload). The token state is two dense tables
//! over `slots` sequences: `counts[slot, vocab]` (i32, times each token was generated) and
//! `prompt_mask[slot, vocab]` (u8, token in the prompt); a row reads the slot named by its
//! `SampleParams::slot` (< 0: none).
//!
//! A step: [`sample`] (tokens, optionally logprobs), then [`sample_count_tokens`] (the sampled
//! tokens into their rows' counts). A new sequence (or one restored after preemption): its slot
//! through [`sample_slots_init`] before its first step.

use cudarc::driver::LaunchConfig;

use super::{opt, run, Arg, DevPtr};
use crate::module::Kernel;
pub use crate::sample_ref::{SampleParams, MAX_TOP};
use crate::{Dt, Gpu, GpuError};

/// Largest vocabulary: the kernel's sums of 2^40-scaled probabilities must fit in a u64.
pub const SAMPLE_MAX_VOCAB: usize = 1 << 23;
/// Threads per row (one block each).
const THREADS: u32 = 1024;

/// The device token state of the sequences (see the module docs).
#[derive(Clone, Copy)]
pub struct TokenState<'a> {
    /// `[slots, vocab]` i32.
    pub counts: DevPtr<'a>,
    /// `[slots, vocab]` u8.
    pub prompt_mask: DevPtr<'a>,
    pub slots: usize,
}

/// Per-row sparse lists (CSR): row `r` owns entries `offsets[r]..offsets[r + 1]` (i32) of `ids`
/// (i32) and, for a logit bias, `vals` (f32). Offsets are clamped to `[0, nnz]` on the device.
#[derive(Clone, Copy)]
pub struct SampleCsr<'a> {
    pub offsets: DevPtr<'a>,
    pub ids: DevPtr<'a>,
    pub vals: Option<DevPtr<'a>>,
    pub nnz: usize,
}

/// Where logprobs go: `chosen[rows]` (f32, the sampled token's raw logprob), and optionally the
/// `top_stride` (<= 20) best raw tokens per row, `top_ids[rows, top_stride]` (i32) and
/// `top_logprobs[rows, top_stride]` (f32). A row with `logprobs = k >= 0` fills `min(k,
/// top_stride, vocab)` of them, best first, and pads with id -1 / `-inf`; a row with `logprobs <
/// 0` writes none of them.
#[derive(Clone, Copy)]
pub struct SampleLogprobs<'a> {
    pub chosen: DevPtr<'a>,
    pub top: Option<(DevPtr<'a>, DevPtr<'a>)>,
    pub top_stride: usize,
}

/// Inputs and outputs of one [`sample`] launch.
#[derive(Clone, Copy)]
pub struct SampleArgs<'a> {
    /// `[rows, vocab]` of `dt` (f32 or bf16), row-major.
    pub logits: DevPtr<'a>,
    pub dt: Dt,
    pub rows: usize,
    pub vocab: usize,
    /// `[rows]` [`SampleParams`].
    pub params: DevPtr<'a>,
    /// The token state (None: no row is penalized).
    pub state: Option<TokenState<'a>>,
    /// Logit bias (CSR with `vals`; ids unique within a row). `min_tokens` is folded in by the
    /// caller: `-inf` on the EOS ids ([`crate::sample_ref::suppress`]).
    pub bias: Option<SampleCsr<'a>>,
    /// [`sample_workspace_bytes`]`(rows, vocab)` bytes of scratch, 4-byte aligned.
    pub workspace: DevPtr<'a>,
    /// `[rows]` i32 out: always in `[0, vocab)`.
    pub tokens: DevPtr<'a>,
    pub logprobs: Option<SampleLogprobs<'a>>,
}

/// Bytes of the workspace [`sample`] needs: one f32 row per row (the processed logits of rows
/// with penalties or a bias).
pub fn sample_workspace_bytes(rows: usize, vocab: usize) -> usize {
    rows * vocab * 4
}

fn bad(kernel: &'static str, msg: String) -> GpuError {
    GpuError::Precondition { kernel, msg }
}

fn aligned(kernel: &'static str, what: &str, p: DevPtr<'_>, a: u64) -> Result<(), GpuError> {
    if !p.addr().is_multiple_of(a) {
        return Err(bad(kernel, format!("{what} must be {a}-byte aligned")));
    }
    Ok(())
}

fn i32_of(kernel: &'static str, what: &str, v: usize) -> Result<i32, GpuError> {
    i32::try_from(v).map_err(|_| bad(kernel, format!("{what} = {v} exceeds i32")))
}

fn check_state(k: &'static str, s: &TokenState<'_>, vocab: usize) -> Result<(), GpuError> {
    s.counts.check(k, "counts", s.slots * vocab * 4)?;
    s.prompt_mask.check(k, "prompt_mask", s.slots * vocab)?;
    aligned(k, "counts", s.counts, 4)?;
    i32_of(k, "slots", s.slots).map(|_| ())
}

fn check_csr(
    k: &'static str,
    what: &str,
    c: &SampleCsr<'_>,
    rows: usize,
    vals: bool,
) -> Result<(), GpuError> {
    c.offsets.check(k, what, (rows + 1) * 4)?;
    c.ids.check(k, what, c.nnz * 4)?;
    for p in [Some(c.offsets), Some(c.ids), c.vals].into_iter().flatten() {
        aligned(k, what, p, 4)?;
    }
    match (vals, c.vals) {
        (true, Some(v)) => v.check(k, what, c.nnz * 4)?,
        (true, None) => return Err(bad(k, format!("{what}: values missing"))),
        _ => {}
    }
    i32_of(k, what, c.nnz).map(|_| ())
}

/// Sample one token per row (see [`crate::sample_ref`] for the function): one block per row.
pub fn sample(gpu: &Gpu, a: &SampleArgs<'_>) -> Result<(), GpuError> {
    let k = "sample";
    let (r, v) = (a.rows, a.vocab);
    if r == 0 {
        return Ok(());
    }
    if v == 0 || v > SAMPLE_MAX_VOCAB {
        return Err(bad(k, format!("vocab {v} not in [1, {SAMPLE_MAX_VOCAB}]")));
    }
    i32_of(k, "rows", r)?;
    a.logits.check(k, "logits", r * v * a.dt.size())?;
    aligned(k, "logits", a.logits, a.dt.size() as u64)?;
    a.params.check(k, "params", r * std::mem::size_of::<SampleParams>())?;
    aligned(k, "params", a.params, 8)?;
    a.workspace.check(k, "workspace", sample_workspace_bytes(r, v))?;
    a.tokens.check(k, "tokens", r * 4)?;
    for (w, p) in [("workspace", a.workspace), ("tokens", a.tokens)] {
        aligned(k, w, p, 4)?;
    }
    if let Some(s) = &a.state {
        check_state(k, s, v)?;
    }
    if let Some(b) = &a.bias {
        check_csr(k, "bias", b, r, true)?;
    }
    let (mut chosen, mut top_ids, mut top_lps, mut stride) = (None, None, None, 0usize);
    if let Some(l) = &a.logprobs {
        l.chosen.check(k, "logprobs", r * 4)?;
        aligned(k, "logprobs", l.chosen, 4)?;
        chosen = Some(l.chosen);
        if let Some((ids, lps)) = l.top {
            if l.top_stride == 0 || l.top_stride > MAX_TOP {
                return Err(bad(k, format!("top_stride {} not in [1, {MAX_TOP}]", l.top_stride)));
            }
            for (w, p) in [("top_ids", ids), ("top_logprobs", lps)] {
                p.check(k, w, r * l.top_stride * 4)?;
                aligned(k, w, p, 4)?;
            }
            (top_ids, top_lps, stride) = (Some(ids), Some(lps), l.top_stride);
        }
    }
    let cfg = LaunchConfig { grid_dim: (r as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
    let st = a.state.as_ref();
    let bi = a.bias.as_ref();
    run(
        gpu,
        Kernel::Sampling,
        &format!("sample_{}", a.dt.suffix()),
        cfg,
        &[
            Arg::Ptr(a.logits.addr()),
            Arg::I32(v as i32),
            Arg::Ptr(a.params.addr()),
            opt(st.map(|s| s.counts)),
            opt(st.map(|s| s.prompt_mask)),
            Arg::I32(st.map_or(0, |s| s.slots as i32)),
            opt(bi.map(|b| b.offsets)),
            opt(bi.map(|b| b.ids)),
            opt(bi.and_then(|b| b.vals)),
            Arg::I32(bi.map_or(0, |b| b.nnz as i32)),
            Arg::Ptr(a.workspace.addr()),
            Arg::Ptr(a.tokens.addr()),
            opt(chosen),
            opt(top_ids),
            opt(top_lps),
            Arg::I32(stride as i32),
        ],
    )
}

/// Reset `n` slots (their ids in `slots[n]`, i32, distinct): prompt mask from `prompt` (CSR over
/// the n slots, no values), counts from `output` (the tokens a restored sequence had generated;
/// None: zero).
pub fn sample_slots_init(
    gpu: &Gpu,
    state: &TokenState<'_>,
    vocab: usize,
    slots: DevPtr<'_>,
    n: usize,
    prompt: &SampleCsr<'_>,
    output: Option<&SampleCsr<'_>>,
) -> Result<(), GpuError> {
    let k = "sample_slots_init";
    if n == 0 {
        return Ok(());
    }
    i32_of(k, "vocab", vocab)?;
    i32_of(k, "n", n)?;
    check_state(k, state, vocab)?;
    slots.check(k, "slots", n * 4)?;
    aligned(k, "slots", slots, 4)?;
    check_csr(k, "prompt", prompt, n, false)?;
    if let Some(o) = output {
        check_csr(k, "output", o, n, false)?;
    }
    let cfg = LaunchConfig { grid_dim: (n as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
    run(
        gpu,
        Kernel::Sampling,
        k,
        cfg,
        &[
            Arg::Ptr(state.counts.addr()),
            Arg::Ptr(state.prompt_mask.addr()),
            Arg::I32(vocab as i32),
            Arg::I32(state.slots as i32),
            Arg::Ptr(slots.addr()),
            Arg::Ptr(prompt.offsets.addr()),
            Arg::Ptr(prompt.ids.addr()),
            Arg::I32(prompt.nnz as i32),
            opt(output.map(|o| o.offsets)),
            opt(output.map(|o| o.ids)),
            Arg::I32(output.map_or(0, |o| o.nnz as i32)),
        ],
    )
}

/// `counts[params[r].slot][tokens[r]] += 1` for every row with a slot: once per step, after
/// [`sample`].
pub fn sample_count_tokens(
    gpu: &Gpu,
    state: &TokenState<'_>,
    vocab: usize,
    params: DevPtr<'_>,
    tokens: DevPtr<'_>,
    rows: usize,
) -> Result<(), GpuError> {
    let k = "sample_count_tokens";
    if rows == 0 {
        return Ok(());
    }
    i32_of(k, "vocab", vocab)?;
    i32_of(k, "rows", rows)?;
    check_state(k, state, vocab)?;
    params.check(k, "params", rows * std::mem::size_of::<SampleParams>())?;
    aligned(k, "params", params, 8)?;
    tokens.check(k, "tokens", rows * 4)?;
    aligned(k, "tokens", tokens, 4)?;
    run(
        gpu,
        Kernel::Sampling,
        k,
        super::grid1d(rows),
        &[
            Arg::Ptr(state.counts.addr()),
            Arg::I32(vocab as i32),
            Arg::I32(state.slots as i32),
            Arg::Ptr(params.addr()),
            Arg::Ptr(tokens.addr()),
            Arg::I32(rows as i32),
        ],
    )
}

/// Structured outputs: every logit of `logits [rows, vocab]` (f32 or bf16, in place) whose
/// token the row's packed mask does not allow becomes `-inf`. `mask [rows, words]` u32: bit
/// `t % 32` of word `t / 32` set allows token `t`; tokens past `32 * words` are not allowed.
/// [`crate::sample_ref::token_mask`] is the CPU twin. Run it before [`sample`] or the argmax.
#[allow(clippy::too_many_arguments)]
pub fn token_mask(
    gpu: &Gpu,
    logits: DevPtr<'_>,
    dt: Dt,
    rows: usize,
    vocab: usize,
    mask: DevPtr<'_>,
    words: usize,
) -> Result<(), GpuError> {
    let k = "token_mask";
    if rows == 0 || vocab == 0 {
        return Ok(());
    }
    if rows > 65535 {
        return Err(bad(k, format!("{rows} rows exceed the grid's 65535")));
    }
    let (name, es) = match dt {
        Dt::F32 => ("token_mask_f32", 4),
        Dt::BF16 => ("token_mask_bf16", 2),
    };
    i32_of(k, "vocab", vocab)?;
    i32_of(k, "words", words)?;
    logits.check(k, "logits", rows * vocab * es)?;
    aligned(k, "logits", logits, es as u64)?;
    mask.check(k, "mask", rows * words * 4)?;
    aligned(k, "mask", mask, 4)?;
    let cols = vocab.div_ceil(256).clamp(1, 1024) as u32;
    let cfg = LaunchConfig { grid_dim: (cols, rows as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    run(
        gpu,
        Kernel::Sampling,
        name,
        cfg,
        &[Arg::Ptr(logits.addr()), Arg::Ptr(mask.addr()), Arg::I32(vocab as i32), Arg::I32(words as i32)],
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn params_layout_matches_the_kernel() {
        use super::SampleParams;
        assert_eq!(std::mem::size_of::<SampleParams>(), 56);
        assert_eq!(std::mem::align_of::<SampleParams>(), 8);
        let p = SampleParams { seed: 1, counter: 2, top_k: 3, slot: 4, logprobs: 5, ..Default::default() };
        let b = SampleParams::as_bytes(&[p, p]);
        assert_eq!(b.len(), 112);
        assert_eq!((b[0], b[8], b[40], b[44], b[48]), (1, 2, 3, 4, 5));
        assert_eq!(&b[20..24], &1.0f32.to_le_bytes()); // top_p
    }
}
