//! `Linear`: `y = x @ w^T + b` with its tensor-parallel role. Column-parallel layers split the
//! output features (q/k/v by head, gate/up evenly); row-parallel layers split the input
//! features and all-reduce the partial sums (bias added once, after the reduce).

use super::ForwardCtx;
use crate::config::Activation;
use crate::weights::{Combine, Source, TpSplit, VarBuilder, WeightSpec};
use crate::{ops, Result, Tensor};

pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// Row-parallel: all-reduce the output.
    reduce: bool,
    /// Tensor-parallel size the weights were sharded for.
    tp_size: usize,
    /// The output is multiplied by this (`ArchOptions::residual_multiplier`).
    out_scale: Option<f32>,
}

/// How the checkpoint stores a linear layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stored {
    /// GPT-2 `Conv1D`: `[in, out]`.
    pub transposed: bool,
    pub bias: bool,
    /// Rows reordered at load (weight and bias): `Transform::qkv_grouped`, `rope_interleaved`.
    pub qkv_grouped: Option<(usize, usize, usize)>,
    pub rope_interleaved: Option<(usize, usize, usize)>,
}

fn spec_for(
    vb: &VarBuilder<'_>,
    leaf: &str,
    hf: &[&str],
    shape: &[usize],
    split: TpSplit,
    st: Stored,
) -> WeightSpec {
    let mut spec = vb.spec(leaf, hf, shape, split);
    spec.transform.qkv_grouped = st.qkv_grouped;
    spec.transform.rope_interleaved = st.rope_interleaved;
    if st.transposed {
        spec.transform.transpose = true;
        for s in &mut spec.sources {
            s.shape.reverse();
        }
    }
    spec
}

/// How the checkpoint stores the weights of modules `hf` (all alike, or an error: a fused
/// engine weight is quantized as a whole).
fn quant_of(vb: &VarBuilder<'_>, hf: &[&str]) -> Result<Option<crate::config::WeightQuant>> {
    let qs: Vec<_> = hf.iter().map(|h| vb.quant_of(h)).collect();
    if qs.windows(2).any(|w| w[0] != w[1]) {
        return Err(crate::Error::tensor(
            vb.path(hf[0]),
            format!("modules {hf:?} are fused but quantized differently (check the ignore list)"),
        ));
    }
    Ok(qs.first().copied().flatten())
}

fn bias_spec(vb: &VarBuilder<'_>, leaf: &str, hf: &[&str], rows: usize, split: TpSplit) -> WeightSpec {
    vb.spec(leaf, hf, &[rows], split)
}

impl Linear {
    /// Column-parallel: engine tensor `{leaf}.weight` `[sum(out_parts), in]` from HF sources
    /// `{hf[i]}.weight` (fused when several), each part split evenly over ranks.
    pub fn column(
        vb: &VarBuilder<'_>,
        leaf: &str,
        hf: &[&str],
        in_dim: usize,
        out_parts: &[usize],
        st: Stored,
    ) -> Result<Self> {
        let out: usize = out_parts.iter().sum();
        Self::load(vb, leaf, hf, &[out, in_dim], TpSplit::Column(out_parts.to_vec()), st, false)
    }

    /// Column-parallel by heads: parts are `(heads, head_dim)` groups (q, k, v); KV heads are
    /// duplicated when there are fewer of them than ranks.
    pub fn heads(
        vb: &VarBuilder<'_>,
        leaf: &str,
        hf: &[&str],
        in_dim: usize,
        groups: &[(usize, usize)],
        st: Stored,
    ) -> Result<Self> {
        let out: usize = groups.iter().map(|(h, d)| h * d).sum();
        Self::load(vb, leaf, hf, &[out, in_dim], TpSplit::Heads(groups.to_vec()), st, false)
    }

    /// Row-parallel: `[out, in]` split along `in`; the output is all-reduced.
    pub fn row(vb: &VarBuilder<'_>, leaf: &str, in_dim: usize, out_dim: usize, st: Stored) -> Result<Self> {
        Self::load(vb, leaf, &[leaf], &[out_dim, in_dim], TpSplit::Row, st, true)
    }

    /// Every rank holds the whole layer (small layers: MoE routers).
    pub fn replicated(
        vb: &VarBuilder<'_>,
        leaf: &str,
        in_dim: usize,
        out_dim: usize,
        st: Stored,
    ) -> Result<Self> {
        Self::load(vb, leaf, &[leaf], &[out_dim, in_dim], TpSplit::Replicate, st, false)
    }

    fn load(
        vb: &VarBuilder<'_>,
        leaf: &str,
        hf: &[&str],
        shape: &[usize],
        split: TpSplit,
        st: Stored,
        reduce: bool,
    ) -> Result<Self> {
        let w_hf: Vec<String> = hf.iter().map(|h| format!("{h}.weight")).collect();
        let w_hf: Vec<&str> = w_hf.iter().map(|s| s.as_str()).collect();
        let mut spec = spec_for(vb, &format!("{leaf}.weight"), &w_hf, shape, split.clone(), st);
        if let Some(q) = quant_of(vb, hf)? {
            if st.transposed || st.qkv_grouped.is_some() || st.rope_interleaved.is_some() {
                return Err(crate::Error::tensor(
                    &spec.name,
                    "quantized Conv1D or row-reordered (fused-by-group qkv, interleaved RoPE) weights are not supported",
                ));
            }
            spec = crate::weights::quant::quantize_spec(spec, q)?;
        }
        let weight = vb.get_spec(spec)?;
        let bias = if st.bias {
            let b_hf: Vec<String> = hf.iter().map(|h| format!("{h}.bias")).collect();
            let b_hf: Vec<&str> = b_hf.iter().map(|s| s.as_str()).collect();
            let bsplit = if reduce { TpSplit::Replicate } else { split };
            let mut spec = bias_spec(vb, &format!("{leaf}.bias"), &b_hf, shape[0], bsplit);
            spec.transform.qkv_grouped = st.qkv_grouped;
            spec.transform.rope_interleaved = st.rope_interleaved;
            Some(vb.get_spec(spec)?)
        } else {
            None
        };
        Ok(Linear { weight, bias, reduce, tp_size: vb.tp_size(), out_scale: None })
    }

    /// A linear layer over stacked expert weights is built by `SparseMoe`; this builds one
    /// from tensors already in hand.
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias, reduce: false, tp_size: 1, out_scale: None }
    }

    /// This layer with its output multiplied by `s` (no-op for `None`).
    pub fn with_output_scale(mut self, s: Option<f64>) -> Self {
        self.out_scale = s.map(|s| s as f32);
        self
    }

    pub fn out_features(&self) -> usize {
        self.weight.dim(0)
    }

    pub fn forward(&self, x: &Tensor, cx: &ForwardCtx<'_>) -> Result<Tensor> {
        let y = self.forward_unscaled(x, cx)?;
        match self.out_scale {
            Some(s) => ops::scale(&y, s),
            None => Ok(y),
        }
    }

    fn forward_unscaled(&self, x: &Tensor, cx: &ForwardCtx<'_>) -> Result<Tensor> {
        if self.reduce && cx.comm.tp_size() != self.tp_size {
            // Partial sums of a shard would otherwise come out as if they were the result.
            return Err(crate::Error::Msg(format!(
                "row-parallel linear sharded for tp_size {} run with a communicator of {} rank(s)",
                self.tp_size,
                cx.comm.tp_size()
            )));
        }
        if !self.reduce || self.tp_size == 1 {
            return ops::linear(x, &self.weight, self.bias.as_ref());
        }
        // Partial sums stay f32 through the all-reduce and round to the activation dtype once,
        // as the unsharded layer does.
        let y = cx.comm.all_reduce_tensor(ops::matmul_t_f32(x, &self.weight)?)?;
        let y = y.to_dtype(x.dtype())?;
        match &self.bias {
            Some(b) => ops::add_bias(&y, b),
            None => Ok(y),
        }
    }
}

impl Linear {
    /// `gated_activation(self.forward(x), act)` for a `[gate; up]` weight: one GEMV with the
    /// activation in its epilogue on the GPU at decode sizes (`ops::matmul_gated`) when there is
    /// no bias and no reduce (column-parallel), else the two steps.
    pub fn forward_gated(&self, x: &Tensor, act: Activation, cx: &ForwardCtx<'_>) -> Result<Tensor> {
        if self.bias.is_none() && !self.reduce && self.out_scale.is_none() {
            return ops::matmul_gated(x, &self.weight, act);
        }
        ops::gated_activation(&self.forward(x, cx)?, act)
    }
}

/// A spec whose sources are stacked along a new dim 0 (MoE experts).
pub(crate) fn stacked_spec(
    vb: &VarBuilder<'_>,
    leaf: &str,
    hf: Vec<String>,
    inner: &[usize],
    split: TpSplit,
) -> WeightSpec {
    let mut shape = vec![hf.len()];
    shape.extend_from_slice(inner);
    WeightSpec {
        name: vb.path(leaf),
        sources: hf.into_iter().map(|n| Source { name: vb.path(&n), shape: inner.to_vec() }).collect(),
        combine: Combine::Stack,
        transform: Default::default(),
        shape,
        split,
        dtype: vb.dtype,
        quant: None,
    }
}
