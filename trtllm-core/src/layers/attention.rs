//! `Attention`: fused qkv projection -> (q/k norm) -> RoPE -> KV-cache write -> paged attention
//! -> output projection. MHA, GQA and MQA (KV heads shared by groups of query heads; duplicated
//! across tensor-parallel ranks when there are fewer KV heads than ranks), sliding windows,
//! logit soft-capping and `query_pre_attn_scalar` all come from the config.

use super::linear::Stored;
use super::{AttentionLayer, BuildCtx, ForwardCtx, Linear, Module, RmsNorm};
use crate::config::rope::{RopeConfig, RopeScaling};
use crate::weights::heads_per_rank;
use crate::{ops, Error, Result, Tensor};

pub struct Attention {
    qkv: Linear,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    rope: Option<RopeConfig>,
    /// inv_freq and cos/sin scaling when they do not depend on the sequence length.
    static_freq: Option<(Vec<f32>, f32)>,
    /// `static_freq` uploaded to the GPU on first use there.
    static_freq_dev: std::sync::OnceLock<Tensor>,
    layer: usize,
    params: ops::AttnParams,
}

impl Module for Attention {
    fn build(cx: &BuildCtx<'_>, vb: &crate::weights::VarBuilder<'_>) -> Result<Self> {
        let cfg = cx.cfg;
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let (nh, nkv, tp) = (cfg.num_attention_heads, cfg.num_key_value_heads, vb.tp_size());
        if nh % tp != 0 || (nkv >= tp && nkv % tp != 0) || (nkv < tp && tp % nkv != 0) {
            return Err(Error::Msg(format!("{nh} heads / {nkv} KV heads cannot be split over tp_size {tp}")));
        }
        let groups = [(nh, hd), (nkv, hd), (nkv, hd)];
        let a = &cfg.arch;
        let qkv = if a.conv1d {
            Linear::heads(vb, "c_attn", &["c_attn"], h, &groups, Stored { bias: true, transposed: true })?
        } else if a.fused_qkv {
            Linear::heads(
                vb,
                "qkv_proj",
                &["qkv_proj"],
                h,
                &groups,
                Stored { bias: a.qkv_bias, transposed: false },
            )?
        } else {
            let st = Stored { bias: a.qkv_bias, transposed: false };
            Linear::heads(vb, "qkv_proj", &["q_proj", "k_proj", "v_proj"], h, &groups, st)?
        };
        let o = if a.conv1d {
            Linear::row(vb, "c_proj", nh * hd, h, Stored { bias: true, transposed: true })?
        } else {
            Linear::row(vb, "o_proj", nh * hd, h, Stored { bias: a.o_bias, transposed: false })?
        };
        let (q_norm, k_norm) = if a.qk_norm {
            (
                Some(RmsNorm::new(&vb.pp("q_norm"), hd, cfg.norm_eps, a.norm_add_one)?),
                Some(RmsNorm::new(&vb.pp("k_norm"), hd, cfg.norm_eps, a.norm_add_one)?),
            )
        } else {
            (None, None)
        };
        let rope = if a.no_rope { None } else { Some(cfg.rope_for_layer(cx.layer_idx).clone()) };
        let static_freq = rope.as_ref().and_then(|r| match r.scaling {
            RopeScaling::Dynamic { .. } | RopeScaling::LongRope { .. } => None,
            _ => Some(r.inv_freq(0)),
        });
        let scale = (cfg.query_pre_attn_scalar.unwrap_or(hd as f64)).powf(-0.5) as f32;
        Ok(Attention {
            qkv,
            o,
            q_norm,
            k_norm,
            rope,
            static_freq,
            static_freq_dev: std::sync::OnceLock::new(),
            layer: cx.layer_idx,
            params: ops::AttnParams {
                num_heads: nh / tp,
                num_kv_heads: heads_per_rank(nkv, tp),
                head_dim: hd,
                scale,
                window: cfg.window_for_layer(cx.layer_idx),
                softcap: cfg.attn_logit_softcapping.map(|c| c as f32),
            },
        })
    }
}

impl AttentionLayer for Attention {
    fn forward(&self, x: &Tensor, cx: &mut ForwardCtx<'_>) -> Result<Tensor> {
        // [t, hidden] -> [t, (nh + 2 nkv) * hd] -> attention [t, nh * hd] -> [t, hidden]
        let qkv = self.qkv.forward(x, cx)?;
        let dynamic;
        let rope = match (&self.rope, &self.static_freq) {
            (None, _) => None,
            (Some(_), Some((inv, s))) => Some((inv.as_slice(), *s)),
            (Some(r), None) => {
                dynamic = r.inv_freq(cx.batch.max_context_len());
                Some((dynamic.0.as_slice(), dynamic.1))
            }
        };
        let qk_norm = match (&self.q_norm, &self.k_norm) {
            (Some(q), Some(k)) => Some((&q.weight, &k.weight, q.eps)),
            _ => None,
        };
        let rope_on_device = match (&self.static_freq, ops::cuda::gpu_of(&qkv)) {
            (Some((inv, _)), Some(gpu)) => {
                if self.static_freq_dev.get().is_none() {
                    let t = Tensor::from_f32(inv.clone(), &[inv.len()])?.to_gpu(&gpu)?;
                    let _ = self.static_freq_dev.set(t);
                }
                self.static_freq_dev.get()
            }
            _ => None,
        };
        let params = ops::QkvParams { attn: self.params, rope, rope_on_device, qk_norm };
        let (batch, dev) = (cx.batch, cx.dev);
        let attn = ops::qkv_attention(&qkv, cx.kv.layer(self.layer)?, batch, dev, &params)?;
        self.o.forward(&attn, cx)
    }
}
