//! `SparseMoe`: a router picks the top-k experts of each token (`ops::Router`, by the rules of
//! `cfg.arch.moe`); each expert is a gated MLP; outputs are summed with the router weights. On the
//! GPU, a step of at most `ops::MOE_PAIRS_MAX` (token, expert) pairs routes on the device and runs
//! the experts per pair (`ops/moe.rs`: nothing read back, so CUDA graphs capture MoE decode);
//! larger steps and the CPU read the routing back and run each expert on its tokens. An
//! always-on shared expert (a `GatedMlp`, optionally behind a sigmoid gate) is added when the
//! names give one. Expert weights are stacked per layer: `[experts, inter, hidden]` for gate and
//! up (or `[experts, 2 * inter, hidden]` gate/up interleaved, GPT-OSS), `[experts, hidden, inter]`
//! for down. `MoeOrDense` is a `SparseMoe` or, on `cfg.arch.moe.dense_layers`, a `GatedMlp`.

use super::linear::{stacked_spec, Stored};
use super::mlp::{GatedMlp, GatedMlpNames};
use super::{BuildCtx, ForwardCtx, Linear, MlpLayer, Module, Named};
use crate::config::Activation;
use crate::ops::Router;
use crate::weights::{TpSplit, Transform, VarBuilder};
use crate::{ops, DType, Error, Result, Tensor};

/// How a checkpoint names the tensors of a sparse MoE block (relative to the block): the router
/// and, for each expert `e`, `experts.{e}.{gate,up,down}.weight`.
#[derive(Clone, Copy, Debug)]
pub struct MoeNames {
    pub router: &'static str,
    pub gate: &'static str,
    pub up: &'static str,
    pub down: &'static str,
    /// Experts stored as 3-D tensors: `experts.{this}` `[experts, hidden, 2 * inter]` (gate and
    /// up interleaved by column) and `experts.{down}` `[experts, inter, hidden]` (GPT-OSS).
    pub fused_gate_up: Option<&'static str>,
    /// The shared expert's block (its `gate_proj`, `up_proj`, `down_proj`).
    pub shared: Option<&'static str>,
    /// `[1, hidden]`: the shared expert's output is multiplied by `sigmoid(x . w)` (Qwen2-MoE).
    pub shared_gate: Option<&'static str>,
}

impl MoeNames {
    /// Router `gate`; experts `gate_proj`, `up_proj`, `down_proj` (Qwen-MoE).
    pub const LLAMA: MoeNames = MoeNames {
        router: "gate",
        gate: "gate_proj",
        up: "up_proj",
        down: "down_proj",
        fused_gate_up: None,
        shared: None,
        shared_gate: None,
    };
}

enum Experts {
    /// `[experts, inter, hidden]` each.
    Split { gate: Tensor, up: Tensor },
    /// `[experts, 2 * inter, hidden]`, gate/up interleaved; with its `[experts, 2 * inter]` bias.
    Interleaved { gate_up: Tensor, bias: Option<Tensor> },
}

pub struct SparseMoe {
    router: Linear,
    /// `e_score_correction_bias` as loaded (the device path) and on the host.
    correction: Option<(Tensor, Tensor)>,
    /// `moe_pairs_fit` of the config, and the dtype every stacked expert tensor shares (if one):
    /// the parts of `routes_on_device` that do not change from step to step.
    pairs_fit: bool,
    experts_dtype: Option<DType>,
    experts: Experts,
    down: Tensor,
    down_bias: Option<Tensor>,
    shared: Option<(GatedMlp, Option<Linear>)>,
    top_k: usize,
    renormalize: bool,
    act: Activation,
    opts: crate::config::MoeOptions,
    out_scale: Option<f32>,
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
        let (e, h, o) = (cfg.num_experts, cfg.hidden_size, &cfg.arch.moe);
        let i = cfg.moe_intermediate_size.unwrap_or(cfg.intermediate_size);
        if e == 0 || cfg.num_experts_per_tok == 0 || cfg.num_experts_per_tok > e {
            return Err(Error::Msg(format!("MoE needs num_experts > 0 and 0 < num_experts_per_tok <= {e}")));
        }
        // The router runs in f32 whatever the model dtype: a bf16 router flips close expert choices.
        let mut vb32 = vb.clone();
        vb32.dtype = DType::F32;
        let st = Stored { bias: o.router_bias, ..Default::default() };
        let router = Linear::replicated(&vb32, names.router, h, e, st)?;
        let correction = match o.score_correction {
            true => {
                Some(vb.pp(names.router).get_f32("e_score_correction_bias", &[e], Transform::default())?)
            }
            false => None,
        };
        // The planner's meta tensor has no values (nothing runs a planned model).
        let host = |t: &Tensor| if t.is_meta() { Ok(t.clone()) } else { t.to_cpu() };
        let correction = correction.map(|t| Ok::<_, Error>((t.clone(), host(&t)?))).transpose()?;
        let hf = |n: &str| (0..e).map(|x| format!("experts.{x}.{n}.weight")).collect::<Vec<_>>();
        let stacked = |engine: &str, n: &str, inner: &[usize]| {
            vb.get_spec(stacked_spec(vb, engine, hf(n), inner, TpSplit::Replicate))
        };
        // A 3-D `[experts, in, out]` tensor stored transposed: the engine's `[experts, out, in]`.
        let fused = |n: &str, out: usize, inp: usize| {
            let mut spec = vb.spec(
                &format!("experts.{n}"),
                &[&format!("experts.{n}")],
                &[e, out, inp],
                TpSplit::Replicate,
            );
            spec.sources[0].shape = vec![e, inp, out];
            spec.transform.transpose = true;
            vb.get_spec(spec)
        };
        let bias = |n: &str, d: usize| -> Result<Option<Tensor>> {
            match o.expert_bias {
                true => Ok(Some(vb.get(&format!("experts.{n}_bias"), &[e, d], TpSplit::Replicate)?)),
                false => Ok(None),
            }
        };
        let (experts, down, down_bias) = match names.fused_gate_up {
            Some(gu) => {
                let experts = Experts::Interleaved { gate_up: fused(gu, 2 * i, h)?, bias: bias(gu, 2 * i)? };
                (experts, fused(names.down, h, i)?, bias(names.down, h)?)
            }
            None => {
                if o.expert_bias || o.clamped_swiglu.is_some() {
                    return Err(Error::Msg(
                        "expert biases and the clamped SwiGLU need fused_gate_up experts".into(),
                    ));
                }
                let (gate, up) = (
                    stacked("experts.gate_proj", names.gate, &[i, h])?,
                    stacked("experts.up_proj", names.up, &[i, h])?,
                );
                (Experts::Split { gate, up }, stacked("experts.down_proj", names.down, &[h, i])?, None)
            }
        };
        let shared = match (names.shared, o.shared_intermediate) {
            (Some(n), Some(si)) => {
                let mlp = GatedMlp::new(&unscaled(cfg), &vb.pp(n), si, &GatedMlpNames::LLAMA)?;
                let gate = names
                    .shared_gate
                    .map(|g| Linear::replicated(&vb32, g, h, 1, Stored::default()))
                    .transpose()?;
                Some((mlp, gate))
            }
            (None, None) => None,
            _ => {
                return Err(Error::Msg(
                    "a shared expert needs both its names and its intermediate size".into(),
                ))
            }
        };
        Router { opts: o, top_k: cfg.num_experts_per_tok, renormalize: false }.check(e)?;
        let expert_tensors: Vec<&Tensor> = [Some(&down), down_bias.as_ref()]
            .into_iter()
            .chain(match &experts {
                Experts::Split { gate, up } => [Some(gate), Some(up)],
                Experts::Interleaved { gate_up, bias } => [Some(gate_up), bias.as_ref()],
            })
            .flatten()
            .collect();
        let experts_dtype = Some(down.dtype()).filter(|d| expert_tensors.iter().all(|w| w.dtype() == *d));
        Ok(SparseMoe {
            router,
            correction,
            pairs_fit: moe_pairs_fit(cfg),
            experts_dtype,
            experts,
            down,
            down_bias,
            shared,
            top_k: cfg.num_experts_per_tok,
            renormalize: cfg.norm_topk_prob,
            act: cfg.hidden_act,
            opts: o.clone(),
            out_scale: cfg.arch.residual_multiplier.map(|m| m as f32),
        })
    }
}

/// Whether `cfg`'s MoE blocks can run the pair path (`ops/moe.rs`) at all: `TRTLLM_MOE_PAIRS`
/// is not `0`, the routing kernel takes the router, hidden and expert widths are whole 16-byte
/// vectors. The CUDA-graph setup asks this of a model; a step also needs `routes_on_device`.
pub fn moe_pairs_fit(cfg: &crate::config::ModelConfig) -> bool {
    let router =
        Router { opts: &cfg.arch.moe, top_k: cfg.num_experts_per_tok, renormalize: cfg.norm_topk_prob };
    let inter = cfg.moe_intermediate_size.unwrap_or(cfg.intermediate_size);
    crate::env::knobs().moe_pairs != Some(false)
        && ops::moe_route_fits(&router, cfg.num_experts)
        && cfg.hidden_size.is_multiple_of(8)
        && inter.is_multiple_of(8)
}

/// The config without `residual_multiplier`: the block scales its summed output once.
fn unscaled(cfg: &crate::config::ModelConfig) -> crate::config::ModelConfig {
    let mut c = cfg.clone();
    c.arch.residual_multiplier = None;
    c
}

/// Expert `j`'s slice of a stacked tensor, without the expert dim.
fn expert(w: &Tensor, j: usize) -> Result<Tensor> {
    let w = w.narrow0(j, 1)?;
    w.reshape(&w.shape()[1..])
}

impl SparseMoe {
    fn router(&self) -> Router<'_> {
        Router { opts: &self.opts, top_k: self.top_k, renormalize: self.renormalize }
    }

    /// The experts' gated MLP through `lin(w, bias, input)`, which applies a stacked weight (and
    /// its stacked bias) to the expert(s) in question: to the block's tokens when `input` is
    /// `None` (gate / up), to the activated rows otherwise (down).
    fn expert_mlp(
        &self,
        lin: impl Fn(&Tensor, Option<&Tensor>, Option<&Tensor>) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let a = match &self.experts {
            Experts::Split { gate, up } => {
                let g = ops::activation(&lin(gate, None, None)?, self.act)?;
                ops::mul(&g, &lin(up, None, None)?)?
            }
            Experts::Interleaved { gate_up, bias } => match self.opts.clamped_swiglu {
                Some((alpha, limit)) => {
                    ops::clamped_swiglu(&lin(gate_up, bias.as_ref(), None)?, alpha as f32, limit as f32)?
                }
                None => return Err(Error::Msg("interleaved experts need clamped_swiglu".into())),
            },
        };
        lin(&self.down, self.down_bias.as_ref(), Some(&a))
    }

    /// Expert `j` on its tokens `xe` `[n, h]` -> `[n, h]`.
    fn expert_forward(&self, xe: &Tensor, j: usize) -> Result<Tensor> {
        self.expert_mlp(|w, b, input| {
            let y = ops::matmul_t(input.unwrap_or(xe), &expert(w, j)?)?;
            match b {
                Some(b) => ops::add_bias(&y, &expert(b, j)?),
                None => Ok(y),
            }
        })
    }

    /// Whether a step of `t` tokens on `x`'s device routes on the device: the GPU (or the CPU
    /// with `TRTLLM_MOE_PAIRS=1`, for tests), a config that fits (`moe_pairs_fit`), at most
    /// `MOE_PAIRS_MAX` pairs, experts in x's dtype, x 16-byte aligned (the pair GEMV's loads;
    /// weights and the ops' outputs are own buffers).
    fn routes_on_device(&self, x: &Tensor, t: usize) -> bool {
        let on_gpu = x.devbuf().is_some();
        self.pairs_fit
            && crate::env::knobs().moe_pairs.unwrap_or(on_gpu)
            && t * self.top_k <= ops::MOE_PAIRS_MAX
            && (!on_gpu || self.experts_dtype == Some(x.dtype()))
            && x.devbuf().is_none_or(|(_, off)| off % 16 == 0)
    }

    /// The block on the device, nothing read back: route, run every (token, expert) pair, sum.
    fn forward_pairs(
        &self,
        x: &Tensor,
        x32: &Tensor,
        logits: &Tensor,
        cx: &mut ForwardCtx<'_>,
    ) -> Result<Tensor> {
        let (t, k) = (x.dim(0), self.top_k);
        let (ids, w) = ops::moe_route(logits, &self.router(), self.correction.as_ref().map(|c| &c.0))?;
        let ids = ids.reshape(&[t * k])?;
        let y = self.expert_mlp(|wt, b, input| match input {
            None => ops::moe_gemv(x, wt, b, &ids, k),
            Some(a) => ops::moe_gemv(a, wt, b, &ids, 1),
        })?;
        let (shared, gate) = match &self.shared {
            Some((mlp, g)) => {
                (Some(mlp.forward(x, cx)?), g.as_ref().map(|g| g.forward(x32, cx)).transpose()?)
            }
            None => (None, None),
        };
        ops::moe_combine(&y, &w, shared.as_ref(), gate.as_ref())
    }

    /// The block with the routing read back to the host: each expert runs once on its tokens.
    fn forward_host_routed(
        &self,
        x: &Tensor,
        x32: &Tensor,
        logits: &Tensor,
        cx: &mut ForwardCtx<'_>,
    ) -> Result<Tensor> {
        let (t, h) = x.dims2("moe")?;
        let (ids, w) = ops::moe_route(logits, &self.router(), self.correction.as_ref().map(|c| &c.1))?;
        // Per expert: (token, weight) pairs routed to it.
        let mut routed: Vec<Vec<(usize, f32)>> = vec![vec![]; logits.dim(1)];
        for (p, (&j, &wj)) in ids.i32s()?.iter().zip(w.f32s()?).enumerate() {
            routed[j as usize].push((p / self.top_k, wj));
        }
        let mut out = ops::zeros_like(x, &[t, h])?;
        for (j, toks) in routed.iter().enumerate() {
            if toks.is_empty() {
                continue;
            }
            let (rows, weights): (Vec<usize>, Vec<f32>) = toks.iter().copied().unzip();
            let y = self.expert_forward(&ops::select_rows(x, &rows)?, j)?;
            out = ops::scatter_add_rows(&out, &y, &rows, &weights)?;
        }
        if let Some((mlp, gate)) = &self.shared {
            let y = mlp.forward(x, cx)?;
            let all: Vec<usize> = (0..t).collect();
            let w = match gate {
                Some(g) => {
                    g.forward(x32, cx)?.to_cpu()?.f32s()?.iter().map(|&z| 1.0 / (1.0 + (-z).exp())).collect()
                }
                None => vec![1.0; t],
            };
            out = ops::scatter_add_rows(&out, &y, &all, &w)?;
        }
        Ok(out)
    }
}

impl MlpLayer for SparseMoe {
    fn forward(&self, x: &Tensor, cx: &mut ForwardCtx<'_>) -> Result<Tensor> {
        let t = x.dims2("moe")?.0;
        let x32 = ops::cast(x, DType::F32)?;
        let logits = self.router.forward(&x32, cx)?;
        let out = if self.routes_on_device(x, t) {
            self.forward_pairs(x, &x32, &logits, cx)?
        } else {
            self.forward_host_routed(x, &x32, &logits.to_cpu()?, cx)?
        };
        match self.out_scale {
            Some(s) => ops::scale(&out, s),
            None => Ok(out),
        }
    }
}

/// The MLP of a MoE model's layer: a `SparseMoe`, or a dense `GatedMlp` of `intermediate_size`
/// on the layers `cfg.arch.moe.dense_layers` lists (Qwen2-MoE `mlp_only_layers`, DeepSeek's
/// first `first_k_dense_replace` layers). One per layer, built once: the variants' sizes differ
/// and do not matter.
#[allow(clippy::large_enum_variant)]
pub enum MoeOrDense {
    Sparse(SparseMoe),
    Dense(GatedMlp),
}

impl Module for MoeOrDense {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self> {
        Self::build_named(cx, vb, &MoeNames::LLAMA)
    }
}

impl Named for MoeOrDense {
    type Names = MoeNames;

    fn build_named(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>, names: &MoeNames) -> Result<Self> {
        if cx.cfg.arch.moe.dense_layers.contains(&cx.layer_idx) {
            Ok(MoeOrDense::Dense(GatedMlp::build(cx, vb)?))
        } else {
            Ok(MoeOrDense::Sparse(SparseMoe::build_named(cx, vb, names)?))
        }
    }
}

impl MlpLayer for MoeOrDense {
    fn forward(&self, x: &Tensor, cx: &mut ForwardCtx<'_>) -> Result<Tensor> {
        match self {
            MoeOrDense::Sparse(m) => m.forward(x, cx),
            MoeOrDense::Dense(m) => m.forward(x, cx),
        }
    }
}
