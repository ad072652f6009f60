//! `Attention`: fused qkv projection -> (q/k norm) -> RoPE -> KV-cache write -> paged attention
//! -> output projection. MHA, GQA and MQA (KV heads shared by groups of query heads; duplicated
//! across tensor-parallel ranks when there are fewer KV heads than ranks), sliding windows,
//! logit soft-capping, attention sinks and `query_pre_attn_scalar` all come from the config; the checkpoint's
//! names from `AttnNames`, the q/k norm type from the type parameter.

use super::linear::Stored;
use super::{AttentionLayer, BuildCtx, ForwardCtx, Linear, Module, Named, QkNormType, RmsNorm};
use crate::config::rope::{RopeConfig, RopeScaling};
use crate::weights::{heads_per_rank, TpSplit, VarBuilder};
use crate::{ops, Error, Result, Tensor};

/// How a checkpoint names the tensors of an attention block (relative to the block).
#[derive(Clone, Copy, Debug)]
pub struct AttnNames {
    /// The q, k and v projections, fused at load into `qkv_proj`; or one projection the
    /// checkpoint already stores fused (`[q; k; v]` rows), which keeps its name.
    pub qkv: &'static [&'static str],
    /// The output projection.
    pub o: &'static str,
    /// The per-head q and k norms (when `cfg.arch.qk_norm`).
    pub q_norm: &'static str,
    pub k_norm: &'static str,
    /// The projections are HF `Conv1D`s: weights stored `[in, out]`, always with a bias (GPT-2).
    pub conv1d: bool,
    /// The one fused qkv tensor is stored interleaved by KV group (each group's q heads, k, v:
    /// GPT-NeoX, Falcon's new decoder), not as `[q; k; v]`.
    pub qkv_grouped: bool,
}

impl AttnNames {
    /// `q_proj`, `k_proj`, `v_proj`, `o_proj`, `q_norm`, `k_norm`.
    pub const LLAMA: AttnNames = AttnNames {
        qkv: &["q_proj", "k_proj", "v_proj"],
        o: "o_proj",
        q_norm: "q_norm",
        k_norm: "k_norm",
        conv1d: false,
        qkv_grouped: false,
    };
}

/// Attention whose q/k norms (when the config asks for them) are `N`: `RmsNorm` per head,
/// `GemmaRmsNorm` for Gemma's `1 + w`, `AllHeadsRmsNorm` for one norm over all heads (OLMo 2).
pub struct Attention<N = RmsNorm> {
    qkv: Linear,
    o: Linear,
    qk_norm: Option<(N, N)>,
    /// Attention sinks `[heads]` of this rank (f32; `cfg.arch.attn_sinks`, GPT-OSS).
    sinks: Option<Tensor>,
    rope: Option<RopeConfig>,
    /// inv_freq and cos/sin scaling when they do not depend on the sequence length.
    static_freq: Option<(Vec<f32>, f32)>,
    /// `static_freq` uploaded to the GPU on first use there.
    static_freq_dev: std::sync::OnceLock<Tensor>,
    layer: usize,
    params: ops::AttnParams,
    tp_size: usize,
}

impl<N: QkNormType> Module for Attention<N> {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self> {
        Self::build_named(cx, vb, &AttnNames::LLAMA)
    }
}

impl<N: QkNormType> Named for Attention<N> {
    type Names = AttnNames;

    fn build_named(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>, names: &AttnNames) -> Result<Self> {
        let cfg = cx.cfg;
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let (nh, nkv, tp) = (cfg.num_attention_heads, cfg.num_key_value_heads, vb.tp_size());
        if nh % tp != 0 || (nkv >= tp && nkv % tp != 0) || (nkv < tp && tp % nkv != 0) {
            return Err(Error::Msg(format!("{nh} heads / {nkv} KV heads cannot be split over tp_size {tp}")));
        }
        let groups = [(nh, hd), (nkv, hd), (nkv, hd)];
        let a = &cfg.arch;
        let qkv_name = match names.qkv {
            [fused] => *fused,
            [_, _, _] => "qkv_proj",
            other => {
                return Err(Error::Msg(format!(
                    "AttnNames::qkv names q, k and v or one fused tensor, not {other:?}"
                )))
            }
        };
        let st = |bias| Stored { bias: bias || names.conv1d, transposed: names.conv1d, ..Default::default() };
        let rope = if a.no_rope { None } else { Some(cfg.rope_for_layer(cx.layer_idx).clone()) };
        let mut qkv_st = st(a.qkv_bias);
        qkv_st.qkv_grouped = names.qkv_grouped.then_some((nkv, nh / nkv, hd));
        if let (true, Some(r)) = (a.rope_interleaved, &rope) {
            if a.qk_norm {
                return Err(Error::Msg("q/k norms with interleaved RoPE are not supported".into()));
            }
            qkv_st.rope_interleaved = Some((nh + nkv, hd, r.rotary_dim));
        }
        let qkv = Linear::heads(vb, qkv_name, names.qkv, h, &groups, qkv_st)?;
        let o = Linear::row(vb, names.o, nh * hd, h, st(a.o_bias))?.with_output_scale(a.residual_multiplier);
        let qk_norm = if a.qk_norm {
            let norm = |n: &str, heads| N::build_qk(&vb.pp(n), heads, hd, cfg.norm_eps);
            Some((norm(names.q_norm, nh)?, norm(names.k_norm, nkv)?))
        } else {
            None
        };
        let sinks = match a.attn_sinks {
            true => {
                let mut spec = vb.spec("sinks", &["sinks"], &[nh], TpSplit::Heads(vec![(nh, 1)]));
                spec.dtype = crate::DType::F32;
                Some(vb.get_spec(spec)?)
            }
            false => None,
        };
        let static_freq = rope.as_ref().and_then(|r| match r.scaling {
            RopeScaling::Dynamic { .. } | RopeScaling::LongRope { .. } => None,
            _ => Some(r.inv_freq(0)),
        });
        let scale = match a.attention_multiplier {
            Some(m) => m as f32,
            None => (cfg.query_pre_attn_scalar.unwrap_or(hd as f64)).powf(-0.5) as f32,
        };
        Ok(Attention {
            qkv,
            o,
            qk_norm,
            sinks,
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
            tp_size: tp,
        })
    }
}

impl<N: QkNormType> AttentionLayer for Attention<N> {
    fn forward(&self, x: &Tensor, cx: &mut ForwardCtx<'_>) -> Result<Tensor> {
        // [t, hidden] -> [t, (nh + 2 nkv) * hd] -> attention [t, nh * hd] -> [t, hidden]
        let mut qkv = self.qkv.forward(x, cx)?;
        if let (Some((q, k)), true) = (&self.qk_norm, N::ALL_HEADS) {
            qkv = self.all_heads_norm(&qkv, q.qk_rms(), k.qk_rms(), cx)?;
        }
        let dynamic;
        let rope = match (&self.rope, &self.static_freq) {
            (None, _) => None,
            (Some(_), Some((inv, s))) => Some((inv.as_slice(), *s)),
            (Some(r), None) => {
                dynamic = r.inv_freq(cx.batch.max_context_len());
                Some((dynamic.0.as_slice(), dynamic.1))
            }
        };
        let qk_norm = match &self.qk_norm {
            Some((q, k)) if !N::ALL_HEADS => Some((&q.qk_rms().weight, &k.qk_rms().weight, q.qk_rms().eps)),
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
        let params =
            ops::QkvParams { attn: self.params, rope, rope_on_device, qk_norm, sinks: self.sinks.as_ref() };
        let (batch, dev) = (cx.batch, cx.dev);
        let attn = ops::qkv_attention(&qkv, cx.kv.layer(self.layer)?, batch, dev, &params)?;
        self.o.forward(&attn, cx)
    }
}

impl<N: QkNormType> Attention<N> {
    /// q and k of `qkv` each RMS-normalized over all their heads (this rank's heads, with the
    /// sums of squares all-reduced over the ranks).
    fn all_heads_norm(&self, qkv: &Tensor, q: &RmsNorm, k: &RmsNorm, cx: &ForwardCtx<'_>) -> Result<Tensor> {
        let p = &self.params;
        let (a, b) = (p.num_heads * p.head_dim, p.num_kv_heads * p.head_dim);
        let mut sums = ops::qk_sum_sq(qkv, a, b)?;
        if self.tp_size > 1 {
            sums = cx.comm.all_reduce_tensor(sums)?;
        }
        // Duplicated KV heads (tp > kv heads) are counted once per copy, in the sum and the count.
        let counts = (a * self.tp_size, b * self.tp_size);
        ops::qk_rms_apply(qkv, &sums, (&q.weight, &k.weight), counts, q.eps)
    }
}
