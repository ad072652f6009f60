//! `Linear`: `y = x @ w^T + b` with its tensor-parallel role. Column-parallel layers split the
//! output features (q/k/v by head, gate/up evenly); row-parallel layers split the input
//! features and all-reduce the partial sums (bias added once, after the reduce).

use super::ForwardCtx;
use crate::config::Activation;
use crate::config::WeightQuant;
use crate::ops::{GgmlLayout, Int4Layout};
use crate::weights::quant::{fp8_native_specs, repack_int4, ScaleLayout};
use crate::weights::{Combine, Source, TpSplit, VarBuilder, WeightSpec};
use crate::{ops, Result, Tensor};

/// How a linear kept quantized stores `Linear::weight`.
pub enum Packed {
    /// E4M3 codes `[out, in]` times f32 `scale` in `layout` (`ops::matmul_t_fp8`).
    Fp8 { scale: Tensor, layout: ScaleLayout },
    /// INT4 words, scales and zero points in one int32 tensor (`ops::matmul_t_int4`).
    Int4(Int4Layout),
    /// A GGUF's ggml blocks (Q8_0, Q4_K) in one int32 tensor (`ops::matmul_t_ggml`); `name`:
    /// the engine tensor, for errors.
    Ggml { layout: GgmlLayout, name: String },
}

pub struct Linear {
    /// `[out, in]` in the engine dtype, or the quantized storage `packed` describes.
    pub weight: Tensor,
    /// A checkpoint's quantized layer kept quantized for the GPU kernels.
    pub packed: Option<Packed>,
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
    pub rope_interleaved_tail: Option<(usize, usize, usize)>,
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
    spec.transform.rope_interleaved_tail = st.rope_interleaved_tail;
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
        let mut packed = None;
        let mut loaded = None;
        let q = quant_of(vb, hf)?;
        if q.is_none() && !st.transposed {
            if let Some((t, layout)) = vb.get_ggml(&spec)? {
                loaded = Some(t);
                packed = Some(Packed::Ggml { layout, name: spec.name.clone() });
            }
        }
        if let Some(q) = q {
            if st.transposed
                || st.qkv_grouped.is_some()
                || st.rope_interleaved.is_some()
                || st.rope_interleaved_tail.is_some()
            {
                return Err(crate::Error::tensor(
                    &spec.name,
                    "quantized Conv1D or row-reordered (fused-by-group qkv, interleaved RoPE) weights are not supported",
                ));
            }
            if let Some((w, s, layout)) = native_fp8(vb, &spec, q) {
                packed = Some(Packed::Fp8 { scale: vb.get_spec(s)?, layout });
                spec = w;
            } else if vb.keeps_quantized() && vb.tp_size() == 1 && !matches!(q, WeightQuant::Fp8(_)) {
                let (t, layout) = load_int4(vb, hf, &spec, q)?;
                loaded = Some(vb.place(&spec.name, t)?);
                packed = Some(Packed::Int4(layout));
            } else {
                spec = crate::weights::quant::quantize_spec(spec, q)?;
            }
        }
        // Packed storage already loaded (INT4 repacked, ggml blocks) or the spec's tensor.
        let weight = match loaded {
            Some(t) => t,
            None => vb.get_spec(spec)?,
        };
        let bias = if st.bias {
            let b_hf: Vec<String> = hf.iter().map(|h| format!("{h}.bias")).collect();
            let b_hf: Vec<&str> = b_hf.iter().map(|s| s.as_str()).collect();
            let bsplit = if reduce { TpSplit::Replicate } else { split };
            let mut spec = bias_spec(vb, &format!("{leaf}.bias"), &b_hf, shape[0], bsplit);
            spec.transform.qkv_grouped = st.qkv_grouped;
            spec.transform.rope_interleaved = st.rope_interleaved;
            spec.transform.rope_interleaved_tail = st.rope_interleaved_tail;
            Some(vb.get_spec(spec)?)
        } else {
            None
        };
        Ok(Linear { weight, packed, bias, reduce, tp_size: vb.tp_size(), out_scale: None })
    }

    /// A linear layer over stacked expert weights is built by `SparseMoe`; this builds one
    /// from tensors already in hand.
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, packed: None, bias, reduce: false, tp_size: 1, out_scale: None }
    }

    /// This layer with its output multiplied by `s` (no-op for `None`).
    pub fn with_output_scale(mut self, s: Option<f64>) -> Self {
        self.out_scale = s.map(|s| s as f32);
        self
    }

    pub fn out_features(&self) -> usize {
        match &self.packed {
            Some(Packed::Int4(l)) => l.n,
            Some(Packed::Ggml { layout, .. }) => layout.n,
            _ => self.weight.dim(0),
        }
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
            let y = self.matmul(x)?;
            return match &self.bias {
                Some(b) => ops::add_bias(&y, b),
                None => Ok(y),
            };
        }
        // Partial sums stay f32 through the all-reduce and round to the activation dtype once,
        // as the unsharded layer does (FP8 layers: rounded to the activation dtype per rank).
        let part = match &self.packed {
            Some(_) => self.matmul(x)?.to_dtype(crate::DType::F32)?,
            None => ops::matmul_t_f32(x, &self.weight)?,
        };
        let y = cx.comm.all_reduce_tensor(part)?;
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
            return match &self.packed {
                Some(Packed::Fp8 { scale, layout }) => {
                    ops::matmul_gated_fp8(x, &self.weight, scale, *layout, act)
                }
                Some(Packed::Int4(_) | Packed::Ggml { .. }) => ops::gated_activation(&self.matmul(x)?, act),
                None => ops::matmul_gated(x, &self.weight, act),
            };
        }
        ops::gated_activation(&self.forward(x, cx)?, act)
    }
}

impl Linear {
    /// `x @ w^T` through the kernel the weight's storage needs.
    fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        match &self.packed {
            Some(Packed::Fp8 { scale, layout }) => ops::matmul_t_fp8(x, &self.weight, scale, *layout),
            Some(Packed::Int4(l)) => ops::matmul_t_int4(x, &self.weight, *l),
            Some(Packed::Ggml { layout, name }) => ops::matmul_t_ggml(x, &self.weight, *layout)
                .map_err(|e| crate::Error::tensor(name, format!("{} blocks: {e}", layout.ty.name()))),
            None => ops::matmul_t(x, &self.weight),
        }
    }
}

/// The E4M3 + scales specs of an FP8 linear when the builder keeps quantized layers for the
/// GPU kernels and the layout has one.
fn native_fp8(
    vb: &VarBuilder<'_>,
    plain: &WeightSpec,
    q: WeightQuant,
) -> Option<(WeightSpec, WeightSpec, ScaleLayout)> {
    let WeightQuant::Fp8(scales) = q else { return None };
    if !vb.keeps_quantized() {
        return None;
    }
    fp8_native_specs(plain, scales, vb.tp_size())
}

/// An AWQ / GPTQ linear repacked into the engine's INT4 layout on the host: each stored part
/// (`hf[i]`, rows of `plain`'s sources) repacked, the parts concatenated along the outputs.
fn load_int4(
    vb: &VarBuilder<'_>,
    hf: &[&str],
    plain: &WeightSpec,
    q: WeightQuant,
) -> Result<(Tensor, Int4Layout)> {
    let mut whole: Option<(trtllm_kernels::quant_ref::int4::Int4Weights, _)> = None;
    for (h, src) in hf.iter().zip(&plain.sources) {
        let [rows, inp] = src.shape[..] else {
            return Err(crate::Error::tensor(
                &src.name,
                format!("a quantized weight must be 2-D, not {:?}", src.shape),
            ));
        };
        q.fits(rows, inp).map_err(|e| crate::Error::tensor(&src.name, e))?;
        let (mut ts, mut ss) = (vec![], vec![]);
        for (leaf, shape) in q.leaves().iter().zip(q.shapes(rows, inp)) {
            let dt = if *leaf == "scales" { crate::DType::F16 } else { crate::DType::I32 };
            ts.push(vb.read_host(&format!("{h}.{leaf}"), &shape, dt)?);
            ss.push(Source { name: vb.path(&format!("{h}.{leaf}")), shape });
        }
        let (w, sdt) = repack_int4(q, &ts, &ss)?;
        whole = Some(match whole {
            None => (w, sdt),
            Some((mut a, sdt)) => {
                a.n += w.n;
                a.qweight.extend(w.qweight);
                a.scales.extend(w.scales);
                a.zeros.extend(w.zeros);
                (a, sdt)
            }
        });
    }
    let (w, sdt) = whole.ok_or_else(|| crate::Error::tensor(&plain.name, "no parts"))?;
    Int4Layout::pack(&w, sdt)
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
