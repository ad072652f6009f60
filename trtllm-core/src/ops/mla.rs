//! Multi-head latent attention (DeepSeek-V2/V3) over a latent cache, in the absorbed form.
//!
//! Each token caches one row `[c; k_pe]`: `c = RMSNorm(kv_a[:lora])` (`kv_lora_rank` values) and
//! `k_pe`, the RoPE'd last `rope` values of `kv_a`, shared by every head. A head's key is
//! `[W_UK c; k_pe]` and its value `W_UV c` (`W_UK`, `W_UV`: that head's rows of `kv_b_proj`).
//! Absorbed: the query `[W_UK^T q_nope; q_pe]` scores the cached rows directly, so attention is
//! multi-query attention over `[lora + rope]`-wide rows whose values are the rows themselves;
//! the first `lora` outputs of a head, times `W_UV`, are its output. No key or value is ever
//! expanded. On the GPU: `mla.cu` (cache write, query absorption, output projection) around
//! the paged attention kernels; the CPU twin below is the oracle.

use trtllm_kernels::launch::{self, DevPtr, MlaArgs};

use super::{cuda, AttnParams};
use crate::batch::{DeviceBatch, ForwardBatch, KvLayer};
use crate::{Error, Result, Tensor};

#[derive(Clone, Copy, Debug)]
pub struct MlaParams<'a> {
    /// Query heads of this rank.
    pub heads: usize,
    pub nope: usize,
    pub rope: usize,
    pub lora: usize,
    pub v: usize,
    /// Softmax scale (YaRN's `mscale_all_dim` folded in).
    pub scale: f32,
    /// The latent RMSNorm's eps.
    pub eps: f64,
    /// Inverse frequencies (`rope / 2`) and the cos/sin multiplier.
    pub freq: (&'a [f32], f32),
    /// The same inverse frequencies on the GPU.
    pub freq_on_device: Option<&'a Tensor>,
}

impl MlaParams<'_> {
    /// Width of a cached row and of an absorbed query head.
    pub fn row(&self) -> usize {
        self.lora + self.rope
    }
}

/// The weights of one MLA layer's attention core.
pub struct MlaWeights<'a> {
    /// `[lora]` f32.
    pub kv_norm: &'a Tensor,
    /// `[heads, lora, nope]`: `W_UK^T` per head.
    pub w_uk: &'a Tensor,
    /// `[heads, v, lora]`: `W_UV` per head.
    pub w_uv: &'a Tensor,
}

/// `q` `[t, heads * (nope + rope)]` and `kv_a` `[t, lora + rope]` (this step's tokens) ->
/// `[t, heads * v]`; this step's latent rows are written to the cache first.
pub fn mla_attention(
    q: &Tensor,
    kv_a: &Tensor,
    w: &MlaWeights<'_>,
    cache: &mut KvLayer,
    batch: &ForwardBatch,
    dev: Option<&DeviceBatch>,
    p: &MlaParams<'_>,
) -> Result<Tensor> {
    let t = batch.num_tokens();
    let (qt, qw) = q.dims2("mla_attention")?;
    let (kt, kw) = kv_a.dims2("mla_attention")?;
    let shapes_ok = qt == t
        && kt == t
        && qw == p.heads * (p.nope + p.rope)
        && kw == p.row()
        && p.rope.is_multiple_of(2)
        && p.freq.0.len() == p.rope / 2
        && w.kv_norm.shape() == [p.lora]
        && w.w_uk.shape() == [p.heads, p.lora, p.nope]
        && w.w_uv.shape() == [p.heads, p.v, p.lora];
    if !shapes_ok {
        return Err(Error::shape(
            "mla_attention",
            format!(
                "q {:?}, kv_a {:?} for {t} tokens, w_uk {:?}, w_uv {:?}, {p:?}",
                q.shape(),
                kv_a.shape(),
                w.w_uk.shape(),
                w.w_uv.shape()
            ),
        ));
    }
    match cache {
        KvLayer::Cpu { k, .. } => cpu(q, kv_a, w, k, batch, p),
        KvLayer::Cuda { k, dtype, .. } => {
            let dev =
                dev.ok_or_else(|| Error::Device("mla_attention: GPU cache without device batch".into()))?;
            if q.dtype() != *dtype || kv_a.dtype() != *dtype {
                return Err(Error::Device(format!("q is {}, the latent cache is {dtype}", q.dtype())));
            }
            gpu(q, kv_a, w, k, batch, dev, p)
        }
    }
}

/// Rotate `x` (`rope` values) in rotate-half pairs `(i, i + rope / 2)` by the tables' row.
fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    for i in 0..half {
        let (a, b) = (x[i], x[i + half]);
        x[i] = a * cos[i] - b * sin[i];
        x[i + half] = b * cos[i] + a * sin[i];
    }
}

/// The latent rows `[t, lora + rope]` this step caches: normalized `c`, rotated `k_pe`.
pub(crate) fn latent_rows(
    kv_a: &[f32],
    norm: &[f32],
    p: &MlaParams<'_>,
    cos: &[f32],
    sin: &[f32],
) -> Vec<f32> {
    let (d, half) = (p.row(), p.rope / 2);
    let mut rows = kv_a.to_vec();
    for (ti, r) in rows.chunks_exact_mut(d).enumerate() {
        let (c, pe) = r.split_at_mut(p.lora);
        let ms = c.iter().map(|x| x * x).sum::<f32>() / p.lora as f32;
        let inv = 1.0 / (ms + p.eps as f32).sqrt();
        c.iter_mut().zip(norm).for_each(|(x, w)| *x = w * (*x * inv));
        rotate(pe, &cos[ti * half..(ti + 1) * half], &sin[ti * half..(ti + 1) * half]);
    }
    rows
}

fn cpu(
    q: &Tensor,
    kv_a: &Tensor,
    w: &MlaWeights<'_>,
    kc: &mut [f32],
    batch: &ForwardBatch,
    p: &MlaParams<'_>,
) -> Result<Tensor> {
    let _t = super::cpu::prof::scope(|| "mla_attention".to_string());
    let (t, d, half, qh) = (batch.num_tokens(), p.row(), p.rope / 2, p.nope + p.rope);
    let (cos, sin) = super::rope_tables(&batch.positions, p.freq.0, p.freq.1);
    let rows = latent_rows(kv_a.f32s()?, w.kv_norm.f32s()?, p, &cos, &sin);
    for (ti, &slot) in batch.slot_mapping.iter().enumerate() {
        let dst = kc
            .get_mut(slot * d..(slot + 1) * d)
            .ok_or_else(|| Error::KvCache(format!("slot {slot} out of range")))?;
        dst.copy_from_slice(&rows[ti * d..(ti + 1) * d]);
    }
    // Absorbed queries [t, heads, lora + rope].
    let (qs, w_uk, w_uv) = (q.f32s()?, w.w_uk.to_f32_vec()?, w.w_uv.to_f32_vec()?);
    let mut qa = vec![0f32; t * p.heads * d];
    for ti in 0..t {
        for h in 0..p.heads {
            let src = &qs[(ti * p.heads + h) * qh..(ti * p.heads + h + 1) * qh];
            let dst = &mut qa[(ti * p.heads + h) * d..(ti * p.heads + h + 1) * d];
            let wk = &w_uk[h * p.lora * p.nope..(h + 1) * p.lora * p.nope];
            for (l, o) in dst[..p.lora].iter_mut().enumerate() {
                *o = wk[l * p.nope..(l + 1) * p.nope].iter().zip(&src[..p.nope]).map(|(a, b)| a * b).sum();
            }
            dst[p.lora..].copy_from_slice(&src[p.nope..]);
            rotate(&mut dst[p.lora..], &cos[ti * half..(ti + 1) * half], &sin[ti * half..(ti + 1) * half]);
        }
    }
    let a = AttnParams {
        num_heads: p.heads,
        num_kv_heads: 1,
        head_dim: d,
        scale: p.scale,
        window: None,
        softcap: None,
    };
    let o = super::paged_attention(&Tensor::from_f32(qa, &[t, p.heads * d])?, kc, kc, batch, &a)?;
    let o = o.f32s()?;
    let mut out = vec![0f32; t * p.heads * p.v];
    for ti in 0..t {
        for h in 0..p.heads {
            let lat = &o[(ti * p.heads + h) * d..(ti * p.heads + h) * d + p.lora];
            let wv = &w_uv[h * p.v * p.lora..(h + 1) * p.v * p.lora];
            for (vi, out) in
                out[(ti * p.heads + h) * p.v..(ti * p.heads + h + 1) * p.v].iter_mut().enumerate()
            {
                *out = wv[vi * p.lora..(vi + 1) * p.lora].iter().zip(lat).map(|(a, b)| a * b).sum();
            }
        }
    }
    Tensor::from_f32(out, &[t, p.heads * p.v])
}

#[allow(clippy::too_many_arguments)]
fn gpu(
    q: &Tensor,
    kv_a: &Tensor,
    w: &MlaWeights<'_>,
    kc: &mut trtllm_kernels::DevBuf,
    batch: &ForwardBatch,
    dev: &DeviceBatch,
    p: &MlaParams<'_>,
) -> Result<Tensor> {
    let (t, d) = (batch.num_tokens(), p.row());
    let gpu = cuda::gpu_of(q).ok_or_else(|| Error::Device("mla_attention: q is not on the GPU".into()))?;
    let dt = cuda::kernel_dtype(q, "mla_attention")?;
    let uploaded = match p.freq_on_device {
        None => Some(cuda::upload_f32(&gpu, p.freq.0)?),
        Some(_) => None,
    };
    let freq = match (&uploaded, p.freq_on_device) {
        (Some(b), _) => DevPtr::new(b, 0),
        (None, Some(f)) => cuda::ptr(f, "inv_freq")?,
        (None, None) => return Err(Error::Device("mla_attention: no inverse frequencies".into())),
    };
    let qa = cuda::alloc(&gpu, &[t, p.heads * d], q.dtype())?;
    let o = cuda::alloc(&gpu, &[t, p.heads * d], q.dtype())?;
    let out = cuda::alloc(&gpu, &[t, p.heads * p.v], q.dtype())?;
    let args = MlaArgs {
        tokens: t,
        heads: p.heads,
        nope: p.nope,
        rope: p.rope,
        lora: p.lora,
        v: p.v,
        eps: p.eps as f32,
        scaling: p.freq.1,
        positions: DevPtr::new(&dev.positions, 0),
        slots: DevPtr::new(&dev.slots, 0),
        inv_freq: freq,
        cache_slots: kc.len() / (d * dt.size()),
    };
    launch::mla_cache_write(
        &gpu,
        dt,
        &args,
        cuda::ptr(kv_a, "kv_a")?,
        cuda::ptr(w.kv_norm, "kv_a_layernorm")?,
        DevPtr::new(kc, 0),
    )
    .map_err(cuda::dev_err)?;
    launch::mla_absorb_q(
        &gpu,
        dt,
        &args,
        cuda::ptr(q, "q")?,
        cuda::ptr(w.w_uk, "w_uk")?,
        DevPtr::new(&qa, 0),
    )
    .map_err(cuda::dev_err)?;
    let cache = DevPtr::new(kc, 0);
    super::attention::cuda_attention(
        batch,
        &gpu,
        dt,
        &launch::AttnArgs {
            q: DevPtr::new(&qa, 0),
            k_cache: cache,
            v_cache: cache,
            out: DevPtr::new(&o, 0),
            tokens: t,
            heads: p.heads,
            kv_heads: 1,
            head_dim: d,
            scale: p.scale,
            window: 0,
            softcap: 0.0,
            positions: DevPtr::new(&dev.positions, 0),
            token_seq: DevPtr::new(&dev.token_seq, 0),
            block_tables: DevPtr::new(&dev.block_tables, 0),
            bt_offsets: DevPtr::new(&dev.bt_offsets, 0),
            block_size: batch.block_size,
            max_context: batch.max_context_len(),
            sinks: None,
            fp8: None,
        },
    )
    .map_err(cuda::dev_err)?;
    launch::mla_out(&gpu, dt, &args, DevPtr::new(&o, 0), cuda::ptr(w.w_uv, "w_uv")?, DevPtr::new(&out, 0))
        .map_err(cuda::dev_err)?;
    Tensor::from_devbuf(out, &[t, p.heads * p.v], q.dtype())
}

#[cfg(test)]
#[path = "mla_tests.rs"]
mod tests;
