//! `MlaAttention`: DeepSeek's multi-head latent attention. q from `q_proj`, or from
//! `q_b_proj(RMSNorm(q_a_proj(x)))` when `q_lora_rank` is set; the latent `kv_a_proj_with_mqa(x)`
//! `[kv_lora_rank + qk_rope_head_dim]` is what the cache holds per token (normalized and RoPE'd
//! by `ops::mla_attention`); `kv_b_proj` is split at load into the absorbed per-head `W_UK^T`
//! and `W_UV`; output `o_proj`. Under tensor parallelism the heads split (q, `kv_b_proj`, o) and
//! every rank keeps the whole latent cache. Interleaved (GPT-J) RoPE pairs are reordered at load
//! (`Transform::rope_interleaved_tail`). Dims come from `cfg.arch.mla`.

use super::linear::Stored;
use super::{AttentionLayer, BuildCtx, ForwardCtx, Linear, Module, RmsNorm};
use crate::config::rope::RopeScaling;
use crate::config::MlaDims;
use crate::weights::{TpSplit, VarBuilder};
use crate::{ops, Error, Result, Tensor};

pub struct MlaAttention {
    q: Linear,
    /// `q_a_layernorm` then `q_b_proj`, when the query is low-rank.
    q_b: Option<(RmsNorm, Linear)>,
    kv_a: Linear,
    kv_norm: RmsNorm,
    /// `[heads, lora, nope]` and `[heads, v, lora]` of this rank, in the model dtype.
    w_uk: Tensor,
    w_uv: Tensor,
    o: Linear,
    dims: MlaDims,
    heads: usize,
    inv_freq: (Vec<f32>, f32),
    inv_freq_dev: std::sync::OnceLock<Tensor>,
    scale: f32,
    layer: usize,
}

impl Module for MlaAttention {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self> {
        let cfg = cx.cfg;
        let m = cfg
            .arch
            .mla
            .ok_or_else(|| Error::Msg("MlaAttention needs cfg.arch.mla (the MLA dims)".into()))?;
        let (h, nh, tp) = (cfg.hidden_size, cfg.num_attention_heads, vb.tp_size());
        if nh % tp != 0 {
            return Err(Error::Msg(format!("{nh} heads cannot be split over tp_size {tp}")));
        }
        let (qk, d) = (m.nope + m.rope, m.lora + m.rope);
        let bias = cfg.arch.qkv_bias;
        let tail = |heads, width| Stored {
            rope_interleaved_tail: m.interleaved.then_some((heads, width, m.rope)),
            ..Default::default()
        };
        let (q, q_b) = match m.q_lora {
            None => (Linear::heads(vb, "q_proj", &["q_proj"], h, &[(nh, qk)], tail(nh, qk))?, None),
            Some(r) => {
                let q_a = Linear::replicated(vb, "q_a_proj", h, r, Stored { bias, ..Default::default() })?;
                let norm = RmsNorm::new(&vb.pp("q_a_layernorm"), r, cfg.norm_eps)?;
                (
                    q_a,
                    Some((norm, Linear::heads(vb, "q_b_proj", &["q_b_proj"], r, &[(nh, qk)], tail(nh, qk))?)),
                )
            }
        };
        let kv_a = Linear::replicated(vb, "kv_a_proj_with_mqa", h, d, Stored { bias, ..tail(1, d) })?;
        let kv_norm = RmsNorm::new(&vb.pp("kv_a_layernorm"), m.lora, cfg.norm_eps)?;
        let (w_uk, w_uv) = absorbed(vb, nh, &m)?;
        let o =
            Linear::row(vb, "o_proj", nh * m.v, h, Stored { bias: cfg.arch.o_bias, ..Default::default() })?;
        let rope = cfg.rope_for_layer(cx.layer_idx);
        if matches!(rope.scaling, RopeScaling::Dynamic { .. } | RopeScaling::LongRope { .. }) {
            return Err(Error::Msg(
                "MLA with a length-dependent RoPE scaling (dynamic, longrope) is not supported".into(),
            ));
        }
        if rope.rotary_dim != m.rope {
            return Err(Error::Msg(format!(
                "MLA RoPE over {} dims, qk_rope_head_dim is {}",
                rope.rotary_dim, m.rope
            )));
        }
        Ok(MlaAttention {
            q,
            q_b,
            kv_a,
            kv_norm,
            w_uk,
            w_uv,
            o,
            dims: m,
            heads: nh / tp,
            inv_freq: rope.inv_freq(0),
            inv_freq_dev: std::sync::OnceLock::new(),
            scale: m.scale as f32,
            layer: cx.layer_idx,
        })
    }
}

/// `kv_b_proj` `[heads * (nope + v), lora]` (this rank's heads) -> `W_UK^T` `[heads, lora, nope]`
/// and `W_UV` `[heads, v, lora]`, on the model's device and in its dtype.
fn absorbed(vb: &VarBuilder<'_>, nh: usize, m: &MlaDims) -> Result<(Tensor, Tensor)> {
    let mut spec = vb.spec(
        "kv_b_proj.weight",
        &["kv_b_proj.weight"],
        &[nh * (m.nope + m.v), m.lora],
        TpSplit::Heads(vec![(nh, m.nope + m.v)]),
    );
    spec.dtype = vb.dtype;
    let w = vb.get_host(spec)?;
    let heads = w.dim(0) / (m.nope + m.v);
    let (uk_shape, uv_shape) = ([heads, m.lora, m.nope], [heads, m.v, m.lora]);
    if w.is_meta() {
        return Ok((Tensor::meta(&uk_shape, vb.dtype), Tensor::meta(&uv_shape, vb.dtype)));
    }
    let w = w.to_f32_vec()?;
    let (mut uk, mut uv) = (vec![0f32; heads * m.lora * m.nope], Vec::with_capacity(heads * m.v * m.lora));
    for hh in 0..heads {
        let rows = &w[hh * (m.nope + m.v) * m.lora..(hh + 1) * (m.nope + m.v) * m.lora];
        for i in 0..m.nope {
            for l in 0..m.lora {
                uk[(hh * m.lora + l) * m.nope + i] = rows[i * m.lora + l];
            }
        }
        uv.extend_from_slice(&rows[m.nope * m.lora..]);
    }
    let place = |name: &str, v: Vec<f32>, shape: &[usize]| {
        vb.place(&vb.path(name), Tensor::from_f32(v, shape)?.to_dtype(vb.dtype)?)
    };
    Ok((place("w_uk", uk, &uk_shape)?, place("w_uv", uv, &uv_shape)?))
}

impl AttentionLayer for MlaAttention {
    fn forward(&self, x: &Tensor, cx: &mut ForwardCtx<'_>) -> Result<Tensor> {
        let mut q = self.q.forward(x, cx)?;
        if let Some((norm, q_b)) = &self.q_b {
            q = q_b.forward(&ops::rms_norm(&q, &norm.weight, norm.eps)?, cx)?;
        }
        let kv_a = self.kv_a.forward(x, cx)?;
        let m = &self.dims;
        let freq_on_device = match ops::cuda::gpu_of(&q) {
            Some(gpu) => {
                if self.inv_freq_dev.get().is_none() {
                    let f = &self.inv_freq.0;
                    let _ = self.inv_freq_dev.set(Tensor::from_f32(f.clone(), &[f.len()])?.to_gpu(&gpu)?);
                }
                self.inv_freq_dev.get()
            }
            None => None,
        };
        let p = ops::MlaParams {
            heads: self.heads,
            nope: m.nope,
            rope: m.rope,
            lora: m.lora,
            v: m.v,
            scale: self.scale,
            eps: self.kv_norm.eps,
            freq: (&self.inv_freq.0, self.inv_freq.1),
            freq_on_device,
        };
        let w = ops::MlaWeights { kv_norm: &self.kv_norm.weight, w_uk: &self.w_uk, w_uv: &self.w_uv };
        let (batch, dev) = (cx.batch, cx.dev);
        let attn = ops::mla_attention(&q, &kv_a, &w, cx.kv.layer(self.layer)?, batch, dev, &p)?;
        self.o.forward(&attn, cx)
    }
}
