//! Norm layers: `RmsNorm`, `GemmaRmsNorm` (stores `1 + w`, declared once here instead of in a
//! per-model converter), `LayerNorm` (weight + bias), `LayerNormNoBias`, and the q/k norm types of `Attention<N>`
//! (`QkNormType`: per head, or `AllHeadsRmsNorm` over all heads). Weights are kept in f32.

use super::{BuildCtx, Module, NormLayer};
use crate::weights::{TpSplit, Transform, VarBuilder};
use crate::{ops, Result, Tensor};

pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    /// `{vb}.weight` of `dim` elements.
    pub fn new(vb: &VarBuilder<'_>, dim: usize, eps: f64) -> Result<Self> {
        Self::load(vb, dim, eps, Transform::default())
    }

    fn load(vb: &VarBuilder<'_>, dim: usize, eps: f64, transform: Transform) -> Result<Self> {
        Ok(RmsNorm { weight: vb.get_f32("weight", &[dim], transform)?, eps })
    }
}

impl Module for RmsNorm {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self> {
        RmsNorm::new(vb, cx.cfg.hidden_size, cx.cfg.norm_eps)
    }
}

impl NormLayer for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::rms_norm(x, &self.weight, self.eps)
    }
    fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<(Tensor, Tensor)> {
        ops::add_rms_norm(x, residual, &self.weight, self.eps)
    }
}

/// Gemma's RMSNorm: `x / rms(x) * (1 + w)`, stored as `1 + w` at load (`Transform::add_one`), so
/// its forward is `RmsNorm`'s.
pub struct GemmaRmsNorm(pub RmsNorm);

impl GemmaRmsNorm {
    /// `{vb}.weight` of `dim` elements, stored plus one.
    pub fn new(vb: &VarBuilder<'_>, dim: usize, eps: f64) -> Result<Self> {
        Ok(GemmaRmsNorm(RmsNorm::load(vb, dim, eps, Transform { add_one: true, ..Default::default() })?))
    }
}

impl Module for GemmaRmsNorm {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self> {
        GemmaRmsNorm::new(vb, cx.cfg.hidden_size, cx.cfg.norm_eps)
    }
}

impl NormLayer for GemmaRmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.0.forward(x)
    }
    fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<(Tensor, Tensor)> {
        self.0.forward_residual(x, residual)
    }
}

/// An RMSNorm of any width, applied from its stored weight: what `Attention<N>` builds its
/// per-head q/k norms with (`Attention<GemmaRmsNorm>` for Gemma's `1 + w`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an RMSNorm type (`trtllm_core::layers::RmsNormType`)",
    label = "q/k norms are RmsNorm or GemmaRmsNorm"
)]
pub trait RmsNormType: NormLayer {
    /// `{vb}.weight` of `dim` elements.
    fn with_dim(vb: &VarBuilder<'_>, dim: usize, eps: f64) -> Result<Self>;
    /// The weight as stored (`1 + w` for Gemma) and eps.
    fn rms(&self) -> &RmsNorm;
}

impl RmsNormType for RmsNorm {
    fn with_dim(vb: &VarBuilder<'_>, dim: usize, eps: f64) -> Result<Self> {
        RmsNorm::new(vb, dim, eps)
    }
    fn rms(&self) -> &RmsNorm {
        self
    }
}

impl RmsNormType for GemmaRmsNorm {
    fn with_dim(vb: &VarBuilder<'_>, dim: usize, eps: f64) -> Result<Self> {
        GemmaRmsNorm::new(vb, dim, eps)
    }
    fn rms(&self) -> &RmsNorm {
        &self.0
    }
}

/// The q/k norm type of `Attention<N>`: per head (every `RmsNormType`: `RmsNorm`, `GemmaRmsNorm`,
/// fused into the RoPE kernel) or over all heads of q (of k) at once (`AllHeadsRmsNorm`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a q/k norm type (`trtllm_core::layers::QkNormType`)",
    label = "q/k norms are RmsNorm, GemmaRmsNorm or AllHeadsRmsNorm"
)]
pub trait QkNormType: Sized + Send + Sync {
    /// One norm over all `heads * head_dim` values (an all-reduce of the sums under tensor
    /// parallelism), not one per head.
    const ALL_HEADS: bool;
    /// `{vb}.weight` for `heads` heads of `head_dim` (the checkpoint's full shape; this rank's
    /// heads are loaded).
    fn build_qk(vb: &VarBuilder<'_>, heads: usize, head_dim: usize, eps: f64) -> Result<Self>;
    /// The weight as stored (this rank's share) and eps.
    fn qk_rms(&self) -> &RmsNorm;
}

impl<N: RmsNormType + Send + Sync> QkNormType for N {
    const ALL_HEADS: bool = false;
    fn build_qk(vb: &VarBuilder<'_>, _heads: usize, head_dim: usize, eps: f64) -> Result<Self> {
        N::with_dim(vb, head_dim, eps)
    }
    fn qk_rms(&self) -> &RmsNorm {
        self.rms()
    }
}

/// RMSNorm over all heads of q (and, separately, of k) at once, weight `[heads * head_dim]`
/// (OLMo 2's q/k norm). Split by heads under tensor parallelism; the sums of squares are
/// all-reduced, so each rank normalizes by the full width.
pub struct AllHeadsRmsNorm(pub RmsNorm);

impl QkNormType for AllHeadsRmsNorm {
    const ALL_HEADS: bool = true;
    fn build_qk(vb: &VarBuilder<'_>, heads: usize, head_dim: usize, eps: f64) -> Result<Self> {
        let mut spec =
            vb.spec("weight", &["weight"], &[heads * head_dim], TpSplit::Heads(vec![(heads, head_dim)]));
        spec.dtype = crate::DType::F32;
        Ok(AllHeadsRmsNorm(RmsNorm { weight: vb.get_spec(spec)?, eps }))
    }
    fn qk_rms(&self) -> &RmsNorm {
        &self.0
    }
}

pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl Module for LayerNorm {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self> {
        let d = cx.cfg.hidden_size;
        Ok(LayerNorm {
            weight: vb.get_f32("weight", &[d], Transform::default())?,
            bias: vb.get_f32("bias", &[d], Transform::default())?,
            eps: cx.cfg.norm_eps,
        })
    }
}

impl NormLayer for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm(x, &self.weight, Some(&self.bias), self.eps)
    }
}

/// LayerNorm without a bias (Cohere): `(x - mean) / sqrt(var + eps) * w`.
pub struct LayerNormNoBias {
    pub weight: Tensor,
    pub eps: f64,
}

impl Module for LayerNormNoBias {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self> {
        let d = cx.cfg.hidden_size;
        Ok(LayerNormNoBias {
            weight: vb.get_f32("weight", &[d], Transform::default())?,
            eps: cx.cfg.norm_eps,
        })
    }
}

impl NormLayer for LayerNormNoBias {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm(x, &self.weight, None, self.eps)
    }
}
