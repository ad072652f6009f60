//! MLPs: `GatedMlp` (`down(act(gate(x)) * up(x))`, gate/up fused into one column-parallel
//! GEMM) and `Mlp` (`proj(act(fc(x)))`, GPT-2). The checkpoint's names come from
//! `GatedMlpNames` / `MlpNames`.

use super::linear::Stored;
use super::{BuildCtx, ForwardCtx, Linear, MlpLayer, Module, Named};
use crate::config::{Activation, ModelConfig};
use crate::weights::VarBuilder;
use crate::{ops, Error, Result, Tensor};

/// How a checkpoint names the tensors of a gated MLP (relative to the MLP).
#[derive(Clone, Copy, Debug)]
pub struct GatedMlpNames {
    /// The gate and up projections, fused at load into `gate_up_proj`; or one projection the
    /// checkpoint already stores fused (`[gate; up]` rows), which keeps its name.
    pub gate_up: &'static [&'static str],
    /// The down projection.
    pub down: &'static str,
}

impl GatedMlpNames {
    /// `gate_proj`, `up_proj`, `down_proj`.
    pub const LLAMA: GatedMlpNames = GatedMlpNames { gate_up: &["gate_proj", "up_proj"], down: "down_proj" };
}

pub struct GatedMlp {
    gate_up: Linear,
    down: Linear,
    act: Activation,
}

impl GatedMlp {
    pub fn new(
        cfg: &ModelConfig,
        vb: &VarBuilder<'_>,
        intermediate: usize,
        names: &GatedMlpNames,
    ) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, intermediate);
        let st = Stored { bias: cfg.arch.mlp_bias, ..Default::default() };
        let fused = match names.gate_up {
            [fused] => *fused,
            [_, _] => "gate_up_proj",
            other => {
                return Err(Error::Msg(format!(
                    "GatedMlpNames::gate_up names gate and up or one fused tensor, not {other:?}"
                )))
            }
        };
        let gate_up = Linear::column(vb, fused, names.gate_up, h, &[i, i], st)?;
        let down = Linear::row(vb, names.down, i, h, st)?.with_output_scale(cfg.arch.residual_multiplier);
        Ok(GatedMlp { gate_up, down, act: cfg.hidden_act })
    }
}

impl Module for GatedMlp {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self> {
        Self::build_named(cx, vb, &GatedMlpNames::LLAMA)
    }
}

impl Named for GatedMlp {
    type Names = GatedMlpNames;

    fn build_named(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>, names: &GatedMlpNames) -> Result<Self> {
        GatedMlp::new(cx.cfg, vb, cx.cfg.intermediate_size, names)
    }
}

impl MlpLayer for GatedMlp {
    fn forward(&self, x: &Tensor, cx: &mut ForwardCtx<'_>) -> Result<Tensor> {
        // [t, hidden] -> [t, 2 * inter / tp] -> [t, inter / tp] -> [t, hidden]
        let a = self.gate_up.forward_gated(x, self.act, cx)?;
        self.down.forward(&a, cx)
    }
}

/// How a checkpoint names the tensors of a plain MLP (relative to the MLP).
#[derive(Clone, Copy, Debug)]
pub struct MlpNames {
    /// The input projection (hidden -> intermediate).
    pub fc: &'static str,
    /// The output projection (intermediate -> hidden).
    pub proj: &'static str,
    /// The projections are HF `Conv1D`s: weights stored `[in, out]`, always with a bias (GPT-2).
    pub conv1d: bool,
}

impl MlpNames {
    /// `up_proj`, `down_proj`.
    pub const LLAMA: MlpNames = MlpNames { fc: "up_proj", proj: "down_proj", conv1d: false };
}

/// A plain MLP: `proj(act(fc(x)))`; biases when `conv1d` or `cfg.arch.mlp_bias`.
pub struct Mlp {
    fc: Linear,
    proj: Linear,
    act: Activation,
}

impl Module for Mlp {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self> {
        Self::build_named(cx, vb, &MlpNames::LLAMA)
    }
}

impl Named for Mlp {
    type Names = MlpNames;

    fn build_named(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>, names: &MlpNames) -> Result<Self> {
        let cfg = cx.cfg;
        let st = Stored {
            bias: names.conv1d || cfg.arch.mlp_bias,
            transposed: names.conv1d,
            ..Default::default()
        };
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Mlp {
            fc: Linear::column(vb, names.fc, &[names.fc], h, &[i], st)?,
            proj: Linear::row(vb, names.proj, i, h, st)?.with_output_scale(cfg.arch.residual_multiplier),
            act: cfg.hidden_act,
        })
    }
}

impl MlpLayer for Mlp {
    fn forward(&self, x: &Tensor, cx: &mut ForwardCtx<'_>) -> Result<Tensor> {
        let h = ops::activation(&self.fc.forward(x, cx)?, self.act)?;
        self.proj.forward(&h, cx)
    }
}
