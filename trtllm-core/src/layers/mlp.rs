//! MLPs: `GatedMlp` (`down(act(gate(x)) * up(x))`, gate/up fused into one column-parallel
//! GEMM) and `Mlp` (`proj(act(fc(x)))`, GPT-2).

use super::linear::Stored;
use super::{BuildCtx, ForwardCtx, Linear, MlpLayer, Module};
use crate::config::{Activation, ModelConfig};
use crate::weights::VarBuilder;
use crate::{ops, Result, Tensor};

pub struct GatedMlp {
    gate_up: Linear,
    down: Linear,
    act: Activation,
}

impl GatedMlp {
    pub fn new(cfg: &ModelConfig, vb: &VarBuilder<'_>, intermediate: usize) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, intermediate);
        let st = Stored { bias: cfg.arch.mlp_bias, transposed: false };
        let gate_up = if cfg.arch.fused_gate_up {
            Linear::column(vb, "gate_up_proj", &["gate_up_proj"], h, &[i, i], st)?
        } else {
            Linear::column(vb, "gate_up_proj", &["gate_proj", "up_proj"], h, &[i, i], st)?
        };
        let down = Linear::row(vb, "down_proj", i, h, st)?;
        Ok(GatedMlp { gate_up, down, act: cfg.hidden_act })
    }
}

impl Module for GatedMlp {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self> {
        GatedMlp::new(cx.cfg, vb, cx.cfg.intermediate_size)
    }
}

impl MlpLayer for GatedMlp {
    fn forward(&self, x: &Tensor, cx: &mut ForwardCtx<'_>) -> Result<Tensor> {
        // [t, hidden] -> [t, 2 * inter / tp] -> [t, inter / tp] -> [t, hidden]
        let a = self.gate_up.forward_gated(x, self.act, cx)?;
        self.down.forward(&a, cx)
    }
}

/// GPT-2's MLP: `c_proj(act(c_fc(x)))`, Conv1D weights.
pub struct Mlp {
    fc: Linear,
    proj: Linear,
    act: Activation,
}

impl Module for Mlp {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self> {
        let cfg = cx.cfg;
        let st = Stored { bias: true, transposed: cfg.arch.conv1d };
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Mlp {
            fc: Linear::column(vb, "c_fc", &["c_fc"], h, &[i], st)?,
            proj: Linear::row(vb, "c_proj", i, h, st)?,
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
