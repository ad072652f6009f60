//! `SparseMoe`: a softmax router picks the top-k experts of each token; each expert is a gated
//! MLP; outputs are summed with the router weights, renormalized over the top k when
//! `cfg.norm_topk_prob`. Expert weights are stacked per layer: `[experts, inter, hidden]` for
//! gate and up, `[experts, hidden, inter]` for down. The checkpoint's names come from `MoeNames`.

use super::linear::{stacked_spec, Stored};
use super::{BuildCtx, ForwardCtx, Linear, MlpLayer, Module, Named};
use crate::config::Activation;
use crate::weights::{TpSplit, VarBuilder};
use crate::{ops, Error, Result, Tensor};

/// How a checkpoint names the tensors of a sparse MoE block (relative to the block): the router
/// and, for each expert `e`, `experts.{e}.{gate,up,down}.weight`.
#[derive(Clone, Copy, Debug)]
pub struct MoeNames {
    pub router: &'static str,
    pub gate: &'static str,
    pub up: &'static str,
    pub down: &'static str,
}

impl MoeNames {
    /// Router `gate`; experts `gate_proj`, `up_proj`, `down_proj` (Qwen-MoE).
    pub const LLAMA: MoeNames =
        MoeNames { router: "gate", gate: "gate_proj", up: "up_proj", down: "down_proj" };
}

pub struct SparseMoe {
    router: Linear,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
    top_k: usize,
    renormalize: bool,
    act: Activation,
}

impl Module for SparseMoe {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self> {
        Self::build_named(cx, vb, &MoeNames::LLAMA)
    }
}

impl Named for SparseMoe {
    type Names = MoeNames;

    fn build_named(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>, names: &MoeNames) -> Result<Self> {
        let cfg = cx.cfg;
        let (e, h) = (cfg.num_experts, cfg.hidden_size);
        let i = cfg.moe_intermediate_size.unwrap_or(cfg.intermediate_size);
        if e == 0 || cfg.num_experts_per_tok == 0 || cfg.num_experts_per_tok > e {
            return Err(Error::Msg(format!("MoE needs num_experts > 0 and 0 < num_experts_per_tok <= {e}")));
        }
        // The router runs in f32 whatever the model dtype: a bf16 router flips close expert choices.
        let mut vb32 = vb.clone();
        vb32.dtype = crate::DType::F32;
        let router = Linear::replicated(&vb32, names.router, h, e, Stored::default())?;
        let hf = |n: &str| (0..e).map(|x| format!("experts.{x}.{n}.weight")).collect::<Vec<_>>();
        let stacked = |engine: &str, n: &str, inner: &[usize]| {
            vb.get_spec(stacked_spec(vb, engine, hf(n), inner, TpSplit::Replicate))
        };
        Ok(SparseMoe {
            router,
            gate: stacked("experts.gate_proj", names.gate, &[i, h])?,
            up: stacked("experts.up_proj", names.up, &[i, h])?,
            down: stacked("experts.down_proj", names.down, &[h, i])?,
            top_k: cfg.num_experts_per_tok,
            renormalize: cfg.norm_topk_prob,
            act: cfg.hidden_act,
        })
    }
}

impl MlpLayer for SparseMoe {
    fn forward(&self, x: &Tensor, cx: &mut ForwardCtx<'_>) -> Result<Tensor> {
        let (t, h) = x.dims2("moe")?;
        // Routing is decided on the host (a [t, experts] transfer); expert GEMMs stay on the device.
        let logits = self.router.forward(&ops::cast(x, crate::DType::F32)?, cx)?.to_cpu()?;
        let e = logits.dim(1);
        // Per expert: (token, weight) pairs routed to it.
        let mut routed: Vec<Vec<(usize, f32)>> = vec![vec![]; e];
        for (ti, row) in logits.f32s()?.chunks_exact(e).enumerate() {
            let mut p = row.to_vec();
            ops::softmax_inplace(&mut p);
            let mut idx: Vec<usize> = (0..e).collect();
            idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            let top = &idx[..self.top_k];
            let sum: f32 = if self.renormalize { top.iter().map(|&j| p[j]).sum() } else { 1.0 };
            for &j in top {
                routed[j].push((ti, p[j] / sum));
            }
        }
        let mut out = ops::zeros_like(x, &[t, h])?;
        for (j, toks) in routed.iter().enumerate() {
            if toks.is_empty() {
                continue;
            }
            // [n, h] tokens of expert j -> gate/up [n, i] -> down [n, h]
            let (rows, weights): (Vec<usize>, Vec<f32>) = toks.iter().copied().unzip();
            let xe = ops::select_rows(x, &rows)?;
            let expert = |w: &Tensor| -> Result<Tensor> {
                let w = w.narrow0(j, 1)?;
                w.reshape(&w.shape()[1..])
            };
            let g = ops::activation(&ops::matmul_t(&xe, &expert(&self.gate)?)?, self.act)?;
            let a = ops::mul(&g, &ops::matmul_t(&xe, &expert(&self.up)?)?)?;
            let y = ops::matmul_t(&a, &expert(&self.down)?)?;
            out = ops::scatter_add_rows(&out, &y, &rows, &weights)?;
        }
        Ok(out)
    }
}
