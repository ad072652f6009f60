//! Norm layers: `RmsNorm`, `GemmaRmsNorm` (stores `1 + w`, declared once here instead of in a
//! per-model converter) and `LayerNorm` (weight + bias). Weights are kept in f32.

use super::{BuildCtx, Module, NormLayer};
use crate::weights::{Transform, VarBuilder};
use crate::{ops, Result, Tensor};

pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn new(vb: &VarBuilder<'_>, dim: usize, eps: f64, add_one: bool) -> Result<Self> {
        let weight = vb.get_f32("weight", &[dim], Transform { add_one, ..Default::default() })?;
        Ok(RmsNorm { weight, eps })
    }
}

impl Module for RmsNorm {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self> {
        RmsNorm::new(vb, cx.cfg.hidden_size, cx.cfg.norm_eps, false)
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

/// Gemma's RMSNorm: `x / rms(x) * (1 + w)`.
pub struct GemmaRmsNorm(pub RmsNorm);

impl Module for GemmaRmsNorm {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self> {
        Ok(GemmaRmsNorm(RmsNorm::new(vb, cx.cfg.hidden_size, cx.cfg.norm_eps, true)?))
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
