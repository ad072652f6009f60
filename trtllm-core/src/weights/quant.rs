//! Quantized linear weights in the weight map. A quantized layer's `WeightSpec` keeps its engine
//! name, shape and split (`qkv_proj.weight [out, in]`), but its sources are the stored tensors of
//! each fused part, in the order of [`WeightQuant::leaves`] (`q_proj.weight`, `q_proj.weight_scale`,
//! `k_proj.weight`, ...), with their stored shapes: validation checks them like any tensor, and
//! `trtllm weights` lists them. On load each part is dequantized to f32 exactly as its format
//! defines ([`dequant_part`], through the CPU twins in `trtllm_kernels::quant_ref`), then the
//! spec's ordinary transform, cast, concatenation and split apply.

use trtllm_kernels::quant_ref::{e4m3_decode, int4};

use super::spec::{Combine, Source, TpSplit, Transform, WeightSpec};
use crate::config::{Fp8Scales, WeightQuant};
use crate::{DType, Error, Result, Tensor};

/// Turn a plain spec (sources `{module}.weight [rows_i, in]`) into the quantized one.
pub fn quantize_spec(mut spec: WeightSpec, q: WeightQuant) -> Result<WeightSpec> {
    let mut sources = vec![];
    for src in &spec.sources {
        let module = src.name.strip_suffix(".weight").unwrap_or(&src.name).to_string();
        let [rows, inp] = src.shape[..] else {
            return Err(Error::tensor(
                &src.name,
                format!("a quantized weight must be 2-D, not {:?}", src.shape),
            ));
        };
        q.fits(rows, inp).map_err(|e| Error::tensor(&module, e))?;
        for (leaf, shape) in q.leaves().iter().zip(q.shapes(rows, inp)) {
            sources.push(Source { name: format!("{module}.{leaf}"), shape });
        }
    }
    spec.sources = sources;
    spec.quant = Some(q);
    Ok(spec)
}

/// `[] == [1]`, `[n] == [n, 1]`: the spellings of the same scale tensor checkpoints use.
pub fn same_scale_shape(want: &[usize], got: &[usize]) -> bool {
    let squeeze = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    want == got
        || (want.iter().product::<usize>() == got.iter().product::<usize>() && squeeze(want) == squeeze(got))
}

impl WeightSpec {
    /// `to_engine` of a quantized spec: dequantize each part, then the plain path.
    pub(crate) fn quant_to_engine(&self, q: WeightQuant, sources: Vec<Tensor>) -> Result<Tensor> {
        let n = q.leaves().len();
        if sources.len() != self.sources.len() || !sources.len().is_multiple_of(n) {
            return Err(Error::tensor(
                &self.name,
                format!("{} sources, expected {}", sources.len(), self.sources.len()),
            ));
        }
        let mut parts = vec![];
        let mut plain = vec![];
        for (ts, ss) in sources.chunks(n).zip(self.sources.chunks(n)) {
            for (t, s) in ts.iter().zip(ss) {
                if !same_scale_shape(&s.shape, t.shape()) {
                    return Err(Error::tensor(
                        &s.name,
                        format!("shape {:?}, expected {:?}", t.shape(), s.shape),
                    ));
                }
            }
            let w = dequant_part(q, ts, ss)?;
            let module = ss[0].name.rsplit_once('.').map_or(ss[0].name.as_str(), |(m, _)| m);
            plain.push(Source { name: format!("{module}.weight"), shape: w.shape().to_vec() });
            parts.push(w);
        }
        WeightSpec { sources: plain, quant: None, ..self.clone() }.to_engine(parts)
    }

    /// Which slice of stored source `i` a tensor-parallel rank uses (`trtllm weights`): the
    /// output dim splits like the weight's rows, the input dim like its columns, in whole
    /// scale blocks / INT4 groups.
    pub fn source_split(&self, i: usize) -> &'static str {
        let Some(q) = self.quant else { return "" };
        let leaf = q.leaves()[i % q.leaves().len()];
        let column = matches!(self.split, TpSplit::Column(_) | TpSplit::Heads(_));
        let row = matches!(self.split, TpSplit::Row);
        match (q, leaf) {
            (_, "g_idx") if row => "dim 0 (input rows)",
            (_, "g_idx") => "replicate",
            (WeightQuant::Fp8(_), "weight") if column => "dim 0 (output rows)",
            (WeightQuant::Fp8(_), "weight") if row => "dim 1 (input columns)",
            (WeightQuant::Fp8(Fp8Scales::Tensor), _) => "replicate",
            (WeightQuant::Fp8(Fp8Scales::Channel), _) if column => "dim 0 (output rows)",
            (WeightQuant::Fp8(Fp8Scales::Channel), _) => "replicate",
            (WeightQuant::Fp8(Fp8Scales::Block { .. }), _) if column => "dim 0 (block rows)",
            (WeightQuant::Fp8(Fp8Scales::Block { .. }), _) if row => "dim 1 (block columns)",
            // AWQ / GPTQ store [in-ish, out-ish]: outputs are dim 1, input rows / groups dim 0.
            (_, "qweight" | "qzeros" | "scales") if column => "dim 1 (output columns)",
            (_, "qweight") if row => "dim 0 (input rows)",
            (_, "qzeros" | "scales") if row => "dim 0 (input groups)",
            _ => "replicate",
        }
    }
}

fn f32s(t: &Tensor, name: &str) -> Result<Vec<f32>> {
    if !t.dtype().is_float() || t.dtype() == DType::F8E4M3 {
        return Err(Error::tensor(name, format!("scale stored as {}, expected a float dtype", t.dtype())));
    }
    t.to_f32_vec()
}

fn words(t: &Tensor, name: &str) -> Result<Vec<u32>> {
    match t.dtype() {
        DType::I32 => Ok(t.i32s()?.iter().map(|&x| x as u32).collect()),
        d => Err(Error::tensor(name, format!("packed INT4 stored as {d}, expected int32"))),
    }
}

fn scale_bits(t: &Tensor, name: &str) -> Result<(Vec<u16>, int4::ScaleDt)> {
    match t.dtype() {
        DType::F16 => Ok((t.f16s()?.iter().map(|x| x.to_bits()).collect(), int4::ScaleDt::F16)),
        DType::BF16 => Ok((t.bf16s()?.iter().map(|x| x.to_bits()).collect(), int4::ScaleDt::BF16)),
        d => Err(Error::tensor(name, format!("INT4 scales stored as {d}, expected float16 or bfloat16"))),
    }
}

/// How a linear kept quantized on the device scales its E4M3 codes (`trtllm_kernels`' layouts).
pub use trtllm_kernels::quant_ref::ScaleLayout;

/// The two specs that load an FP8 linear as stored, for the FP8 kernels: its E4M3 codes
/// (`{leaf}.weight [out, in]`, fused and split like the plain weight) and its f32 scales
/// (`{leaf}.weight_scale`: per output row, a per-tensor scale repeated per row; or the
/// 128 x 128 blocks). `plain` is the unquantized spec (sources `{module}.weight [rows_i, in]`).
/// `None` when the layout has no kernel here (other block sizes; blocks of fused parts not
/// a multiple of 128 rows, or blocks under tensor parallelism): the layer is dequantized.
pub fn fp8_native_specs(
    plain: &WeightSpec,
    scales: Fp8Scales,
    tp_size: usize,
) -> Option<(WeightSpec, WeightSpec, ScaleLayout)> {
    let q = WeightQuant::Fp8(scales);
    let leaf = q.leaves()[1];
    let module = |s: &Source| s.name.strip_suffix(".weight").unwrap_or(&s.name).to_string();
    let inp = *plain.shape.get(1)?;
    let (layout, sources, shape, split, transform) = match scales {
        Fp8Scales::Tensor | Fp8Scales::Channel => {
            let sources = plain
                .sources
                .iter()
                .map(|s| Source { name: format!("{}.{leaf}", module(s)), shape: vec![s.shape[0]] });
            let split = match &plain.split {
                TpSplit::Row | TpSplit::Replicate => TpSplit::Replicate,
                other => other.clone(),
            };
            let t = Transform { scale_rows: true, ..Default::default() };
            (ScaleLayout::Row, sources.collect::<Vec<_>>(), vec![plain.shape[0]], split, t)
        }
        Fp8Scales::Block { rows: 128, cols: 128, .. } => {
            if tp_size != 1 || plain.sources.iter().any(|s| !s.shape[0].is_multiple_of(128)) {
                return None;
            }
            let sources = plain.sources.iter().map(|s| Source {
                name: format!("{}.{leaf}", module(s)),
                shape: vec![s.shape[0] / 128, inp.div_ceil(128)],
            });
            let shape = vec![plain.shape[0] / 128, inp.div_ceil(128)];
            (ScaleLayout::Block128, sources.collect(), shape, TpSplit::Replicate, Transform::default())
        }
        Fp8Scales::Block { .. } => return None,
    };
    let weight = WeightSpec { dtype: DType::F8E4M3, quant: None, ..plain.clone() };
    let scale = WeightSpec {
        name: format!("{}_scale", plain.name),
        sources,
        combine: Combine::Concat0,
        transform,
        shape,
        split,
        dtype: DType::F32,
        quant: None,
    };
    Some((weight, scale, layout))
}

/// A per-row scale source as `want` (`[rows]`): `[rows, 1]` reshaped, one scale repeated.
pub(crate) fn per_row_scales(t: Tensor, want: &[usize], name: &str) -> Result<Tensor> {
    if !t.dtype().is_float() || t.dtype() == DType::F8E4M3 {
        return Err(Error::tensor(name, format!("scale stored as {}, expected a float dtype", t.dtype())));
    }
    let rows: usize = want.iter().product();
    if t.numel() == 1 && rows != 1 {
        return Tensor::from_f32(vec![t.to_f32_vec()?[0]; rows], want);
    }
    if same_scale_shape(want, t.shape()) {
        return t.reshape(want);
    }
    Err(Error::tensor(name, format!("scale shape {:?}, expected {want:?} or a single scale", t.shape())))
}

/// One stored part (its tensors `ts` in leaf order, described by `ss`) -> f32 `W[out, in]`.
pub fn dequant_part(q: WeightQuant, ts: &[Tensor], ss: &[Source]) -> Result<Tensor> {
    let name = |i: usize| ss[i].name.as_str();
    match q {
        WeightQuant::Fp8(scales) => {
            let (w, s) = (&ts[0], &ts[1]);
            if w.dtype() != DType::F8E4M3 {
                return Err(Error::tensor(
                    name(0),
                    format!("stored as {}, expected float8_e4m3fn", w.dtype()),
                ));
            }
            let (out, inp) = w.dims2("fp8 weight")?;
            let sc = f32s(s, name(1))?;
            let codes = w.f8s()?;
            let idx = |r: usize, c: usize| match scales {
                Fp8Scales::Tensor => 0,
                Fp8Scales::Channel => r,
                Fp8Scales::Block { rows, cols, .. } => (r / rows) * inp.div_ceil(cols) + c / cols,
            };
            let v = (0..out * inp).map(|i| e4m3_decode(codes[i]) * sc[idx(i / inp, i % inp)]).collect();
            if let Some(i) = codes.iter().position(|&c| c & 0x7f == 0x7f) {
                return Err(Error::tensor(name(0), format!("NaN code {:#04x} at element {i}", codes[i])));
            }
            Tensor::from_f32(v, &[out, inp])
        }
        WeightQuant::Awq { .. } | WeightQuant::Gptq { .. } => {
            let (w, sdt) = repack_int4(q, ts, ss)?;
            Tensor::from_f32(w.dequant(sdt), &[w.n, w.k])
        }
    }
}

/// One stored AWQ / GPTQ part (its tensors `ts` in leaf order, described by `ss`) -> the
/// engine's INT4 layout `W[out, in]` and the dtype of its scales.
pub fn repack_int4(
    q: WeightQuant,
    ts: &[Tensor],
    ss: &[Source],
) -> Result<(int4::Int4Weights, int4::ScaleDt)> {
    let name = |i: usize| ss[i].name.as_str();
    match q {
        WeightQuant::Awq { group } => {
            let (k, n8) = ts[0].dims2("awq qweight")?;
            let (sb, sdt) = scale_bits(&ts[2], name(2))?;
            let w =
                int4::repack_awq(&words(&ts[0], name(0))?, &words(&ts[1], name(1))?, &sb, k, n8 * 8, group)
                    .map_err(|e| Error::tensor(name(0), e))?;
            Ok((w, sdt))
        }
        WeightQuant::Gptq { group, v1_zero_offset } => {
            let (k8, n) = ts[0].dims2("gptq qweight")?;
            let k = k8 * 8;
            let g_idx = match ts[3].dtype() {
                DType::I32 => ts[3].i32s()?,
                d => return Err(Error::tensor(name(3), format!("stored as {d}, expected int32"))),
            };
            if let Some(c) = (0..k).find(|&c| g_idx[c] as i64 != (c / group) as i64) {
                return Err(Error::tensor(
                    name(3),
                    format!(
                        "g_idx[{c}] = {} is not {c} / {group}: act-order (desc_act) GPTQ is not supported",
                        g_idx[c]
                    ),
                ));
            }
            let (sb, sdt) = scale_bits(&ts[2], name(2))?;
            let w = int4::repack_gptq(
                &words(&ts[0], name(0))?,
                &words(&ts[1], name(1))?,
                &sb,
                k,
                n,
                group,
                v1_zero_offset,
            )
            .map_err(|e| Error::tensor(name(0), e))?;
            Ok((w, sdt))
        }
        WeightQuant::Fp8(_) => Err(Error::tensor(name(0), "FP8 is not an INT4 format")),
    }
}

#[cfg(test)]
#[path = "quant_tests.rs"]
mod tests;
