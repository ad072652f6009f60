//! One attention step after the qkv projection: (q/k RMSNorm) -> RoPE -> write k, v into the
//! paged cache -> attention of every query over its sequence's cache. On the GPU the first three
//! are one fused kernel; the CPU twin composes the single ops (the oracle). An FP8 cache layer
//! (`KvLayer` with scales) stores e4m3(x / scale): the CPU twin rounds the f32 values it writes
//! through E4M3 the same way.

use trtllm_kernels::launch::{self, AttnArgs, DevPtr, Fp8Kv, QkvArgs};

use super::{cuda, AttnParams};
use crate::batch::{DeviceBatch, ForwardBatch, KvLayer};
use crate::{Error, Result, Tensor};

pub struct QkvParams<'a> {
    pub attn: AttnParams,
    /// Inverse frequencies (`rotary_dim / 2`) and the cos/sin multiplier; None = no RoPE.
    pub rope: Option<(&'a [f32], f32)>,
    /// The same inverse frequencies already on the GPU (saves an upload per layer and step).
    pub rope_on_device: Option<&'a Tensor>,
    /// Per-head RMSNorm weights (`[head_dim]`, f32) of q and k, and their eps.
    pub qk_norm: Option<(&'a Tensor, &'a Tensor, f64)>,
    /// Attention sinks: one f32 logit per head of this rank, on the tensor's device.
    pub sinks: Option<&'a Tensor>,
}

/// `qkv` `[t, (heads + 2 kv_heads) * head_dim]` -> attention output `[t, heads * head_dim]`.
pub fn qkv_attention(
    qkv: &Tensor,
    cache: &mut KvLayer,
    batch: &ForwardBatch,
    dev: Option<&DeviceBatch>,
    p: &QkvParams<'_>,
) -> Result<Tensor> {
    let a = &p.attn;
    let (hd, nh, nkv) = (a.head_dim, a.num_heads, a.num_kv_heads);
    let (t, w) = qkv.dims2("qkv_attention")?;
    if w != (nh + 2 * nkv) * hd || t != batch.num_tokens() {
        return Err(Error::shape(
            "qkv_attention",
            format!("qkv {:?} for {} tokens, {a:?}", qkv.shape(), batch.num_tokens()),
        ));
    }
    match cache {
        KvLayer::Cpu { k, v, fp8 } => cpu(qkv, k, v, *fp8, batch, p),
        KvLayer::Cuda { k, v, dtype, fp8 } => {
            let dev = dev.ok_or_else(|| {
                Error::Device("qkv_attention: GPU cache without device batch metadata".into())
            })?;
            if qkv.dtype() != *dtype {
                return Err(Error::Device(format!("qkv is {}, the KV cache is {dtype}", qkv.dtype())));
            }
            gpu(qkv, k, v, *fp8, batch, dev, p)
        }
    }
}

fn head_norm(x: Tensor, w: &Tensor, eps: f64, heads: usize, hd: usize) -> Result<Tensor> {
    let t = x.dim(0);
    super::rms_norm(&x.reshape(&[t * heads, hd])?, w, eps)?.reshape(&[t, heads * hd])
}

/// `x` as an FP8 cache holds it: e4m3(x * (1 / scale)) * scale (the kernel's rounding).
fn fp8_round(x: &Tensor, scale: f32) -> Result<Tensor> {
    use trtllm_kernels::quant_ref::{e4m3_decode, e4m3_encode};
    let inv = 1.0 / scale;
    let v = x.f32s()?.iter().map(|&v| e4m3_decode(e4m3_encode(v * inv)) * scale).collect();
    Tensor::from_f32(v, x.shape())
}

fn cpu(
    qkv: &Tensor,
    kc: &mut [f32],
    vc: &mut [f32],
    fp8: Option<Fp8Kv>,
    batch: &ForwardBatch,
    p: &QkvParams<'_>,
) -> Result<Tensor> {
    let a = &p.attn;
    let (hd, nh, nkv) = (a.head_dim, a.num_heads, a.num_kv_heads);
    let mut q = qkv.narrow1(0, nh * hd)?;
    let mut k = qkv.narrow1(nh * hd, nkv * hd)?;
    let v = qkv.narrow1((nh + nkv) * hd, nkv * hd)?;
    if let Some((qn, kn, eps)) = p.qk_norm {
        q = head_norm(q, qn, eps, nh, hd)?;
        k = head_norm(k, kn, eps, nkv, hd)?;
    }
    if let Some((inv, scaling)) = p.rope {
        let (cos, sin) = super::rope_tables(&batch.positions, inv, scaling);
        let (mut qv, mut kv) = (q.f32s()?.to_vec(), k.f32s()?.to_vec());
        super::apply_rope(&mut qv, nh, hd, &cos, &sin)?;
        super::apply_rope(&mut kv, nkv, hd, &cos, &sin)?;
        q = Tensor::from_f32(qv, q.shape())?;
        k = Tensor::from_f32(kv, k.shape())?;
    }
    match fp8 {
        Some(s) => super::write_kv(
            &fp8_round(&k, s.k_scale)?,
            &fp8_round(&v, s.v_scale)?,
            &batch.slot_mapping,
            kc,
            vc,
        )?,
        None => super::write_kv(&k, &v, &batch.slot_mapping, kc, vc)?,
    }
    let sinks = p.sinks.map(|s| s.f32s()).transpose()?;
    super::paged_attention_sinks(&q, kc, vc, batch, a, sinks)
}

fn gpu(
    qkv: &Tensor,
    kc: &mut trtllm_kernels::DevBuf,
    vc: &mut trtllm_kernels::DevBuf,
    fp8: Option<Fp8Kv>,
    batch: &ForwardBatch,
    dev: &DeviceBatch,
    p: &QkvParams<'_>,
) -> Result<Tensor> {
    let a = &p.attn;
    let (hd, nh, nkv, t) = (a.head_dim, a.num_heads, a.num_kv_heads, batch.num_tokens());
    let gpu =
        cuda::gpu_of(qkv).ok_or_else(|| Error::Device("qkv_attention: qkv is not on the GPU".into()))?;
    let dt = cuda::kernel_dtype(qkv, "qkv_attention")?;
    let cache_slots = kc.len() / (nkv * hd * Fp8Kv::elem_size(fp8, dt));
    let uploaded = match (p.rope, p.rope_on_device) {
        (Some((inv, _)), None) => Some(cuda::upload_f32(&gpu, inv)?),
        _ => None,
    };
    let freq: Option<DevPtr<'_>> = match (&uploaded, p.rope_on_device) {
        (Some(b), _) => Some(DevPtr::new(b, 0)),
        (None, Some(t)) => Some(cuda::ptr(t, "inv_freq")?),
        (None, None) => None,
    };
    let q_out = cuda::alloc(&gpu, &[t, nh * hd], qkv.dtype())?;
    let (qn, kn, eps) = match p.qk_norm {
        Some((qn, kn, eps)) => (Some(cuda::ptr(qn, "q_norm")?), Some(cuda::ptr(kn, "k_norm")?), eps as f32),
        None => (None, None, 0.0),
    };
    launch::qkv_prepare(
        &gpu,
        dt,
        &QkvArgs {
            qkv: cuda::ptr(qkv, "qkv_attention")?,
            tokens: t,
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
            rot_half: p.rope.map_or(0, |(inv, _)| inv.len()),
            positions: DevPtr::new(&dev.positions, 0),
            inv_freq: freq,
            scaling: p.rope.map_or(1.0, |(_, s)| s),
            q_norm: qn,
            k_norm: kn,
            eps,
            slots: DevPtr::new(&dev.slots, 0),
            q_out: DevPtr::new(&q_out, 0),
            k_cache: DevPtr::new(kc, 0),
            v_cache: DevPtr::new(vc, 0),
            cache_slots,
            fp8,
        },
    )
    .map_err(cuda::dev_err)?;
    let out = cuda::alloc(&gpu, &[t, nh * hd], qkv.dtype())?;
    super::attention::cuda_attention(
        batch,
        &gpu,
        dt,
        &AttnArgs {
            q: DevPtr::new(&q_out, 0),
            k_cache: DevPtr::new(kc, 0),
            v_cache: DevPtr::new(vc, 0),
            out: DevPtr::new(&out, 0),
            tokens: t,
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
            scale: a.scale,
            window: a.window.unwrap_or(0),
            softcap: a.softcap.unwrap_or(0.0),
            positions: DevPtr::new(&dev.positions, 0),
            token_seq: DevPtr::new(&dev.token_seq, 0),
            block_tables: DevPtr::new(&dev.block_tables, 0),
            bt_offsets: DevPtr::new(&dev.bt_offsets, 0),
            block_size: batch.block_size,
            max_context: batch.max_context_len(),
            sinks: p.sinks.map(|s| cuda::ptr(s, "sinks")).transpose()?,
            fp8,
        },
    )
    .map_err(cuda::dev_err)?;
    Tensor::from_devbuf(out, &[t, nh * hd], qkv.dtype())
}
