//! The weight map as data. Every engine tensor is one `WeightSpec`: its HF source tensor(s), the
//! transform that turns them into the engine layout, its full (unsharded) shape and the rule
//! that splits it over tensor-parallel ranks. Layers declare specs while they are built, so the
//! map and the loader can never disagree. The map runs both ways: `to_engine` (HF -> engine, for
//! loading and `convert`) and `to_hf` (engine -> HF, for export).

use crate::{DType, Error, Result, Tensor};

/// How several sources are combined.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Combine {
    /// One source, or sources concatenated along dim 0 (q/k/v -> qkv, gate/up -> gate_up).
    Concat0,
    /// Sources stacked along a new dim 0 (MoE experts).
    Stack,
}

/// Elementwise or layout change applied to each source before combining.
#[derive(Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Transform {
    /// The source is stored `[in, out]` (GPT-2 `Conv1D`); the engine wants `[out, in]`.
    pub transpose: bool,
    /// Store `1 + w` (Gemma's RMSNorm).
    pub add_one: bool,
    /// A quantized weight's scales, one per row of the source: stored `[rows]` or `[rows, 1]`,
    /// or `[]` / `[1]` (one scale for the whole tensor, repeated for each row).
    pub scale_rows: bool,
    /// `(kv_heads, q_per_kv, head_dim)`: a fused qkv projection stored interleaved by KV group
    /// (for each group its q heads, its k head, its v head; GPT-NeoX has one q head per group),
    /// reordered at load into the engine's `[q; k; v]` rows.
    pub qkv_grouped: Option<(usize, usize, usize)>,
    /// `(qk_heads, head_dim, rotary_dim)`: the rows of the first `qk_heads` heads (q, then k) are
    /// permuted within each head so that interleaved (GPT-J) RoPE pairs `(2i, 2i + 1)` become
    /// the rotate-half pairs `(i, i + rotary_dim / 2)` the engine applies: q . k is unchanged,
    /// and the RoPE kernels need no second layout. Later rows (v) stay.
    pub rope_interleaved: Option<(usize, usize, usize)>,
    /// `(heads, head_dim, rotary_dim)`: the same permutation on the last `rotary_dim` rows of
    /// each of the first `heads` heads (MLA's q heads `[nope; rope]` and its latent `[c; k_pe]`).
    pub rope_interleaved_tail: Option<(usize, usize, usize)>,
}

/// The row reorderings and scale rows only when set (the weight maps of other models read as
/// before).
impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Transform");
        d.field("transpose", &self.transpose).field("add_one", &self.add_one);
        if let Some(g) = self.qkv_grouped {
            d.field("qkv_grouped", &g);
        }
        if let Some(r) = self.rope_interleaved {
            d.field("rope_interleaved", &r);
        }
        if let Some(r) = self.rope_interleaved_tail {
            d.field("rope_interleaved_tail", &r);
        }
        if self.scale_rows {
            d.field("scale_rows", &true);
        }
        d.finish()
    }
}

impl Transform {
    /// For each engine row of a tensor with `rows` rows, the stored row it comes from; `None`
    /// when the rows keep their order.
    pub fn row_order(&self, rows: usize) -> Option<Vec<usize>> {
        if self.qkv_grouped.is_none()
            && self.rope_interleaved.is_none()
            && self.rope_interleaved_tail.is_none()
        {
            return None;
        }
        let mut order: Vec<usize> = (0..rows).collect();
        if let Some((kv, r, hd)) = self.qkv_grouped {
            let group = |g: usize, slot: usize, d: usize| (g * (r + 2) + slot) * hd + d;
            let mut o = Vec::with_capacity(rows);
            o.extend((0..kv * r).flat_map(|h| (0..hd).map(move |d| group(h / r, h % r, d))));
            o.extend((0..kv).flat_map(|g| (0..hd).map(move |d| group(g, r, d))));
            o.extend((0..kv).flat_map(|g| (0..hd).map(move |d| group(g, r + 1, d))));
            o.extend(o.len()..rows);
            order = o;
        }
        if let Some((heads, hd, rot)) = self.rope_interleaved {
            let inner = |d: usize| match d {
                d if d < rot / 2 => 2 * d,
                d if d < rot => 2 * (d - rot / 2) + 1,
                d => d,
            };
            let prev = order.clone();
            for (i, o) in order.iter_mut().enumerate().take(heads * hd) {
                *o = prev[i / hd * hd + inner(i % hd)];
            }
        }
        if let Some((heads, hd, rot)) = self.rope_interleaved_tail {
            let start = hd - rot;
            let inner = |d: usize| match d.checked_sub(start) {
                Some(e) if e < rot / 2 => start + 2 * e,
                Some(e) => start + 2 * (e - rot / 2) + 1,
                None => d,
            };
            let prev = order.clone();
            for (i, o) in order.iter_mut().enumerate().take(heads * hd) {
                *o = prev[i / hd * hd + inner(i % hd)];
            }
        }
        Some(order)
    }
}

/// `t` with its last two dims swapped: a matrix transposed, or each matrix of a 3-D stack
/// (GPT-OSS experts stored `[experts, in, out]`).
fn transpose_last2(t: &Tensor) -> Result<Tensor> {
    match *t.shape() {
        [_, _] => t.t(),
        [n, r, c] => {
            let parts: Vec<Tensor> = (0..n)
                .map(|i| t.narrow0(i, 1)?.reshape(&[r, c])?.t()?.reshape(&[1, r * c]))
                .collect::<Result<_>>()?;
            Tensor::cat0(&parts)?.reshape(&[n, c, r])
        }
        _ => Err(Error::shape("transpose", format!("{:?} is not 2-D or 3-D", t.shape()))),
    }
}

/// The rows of `t` (dim 0) in `order`.
fn gather_rows(t: &Tensor, order: &[usize]) -> Result<Tensor> {
    let parts: Vec<Tensor> = order.iter().map(|&r| t.narrow0(r, 1)).collect::<Result<_>>()?;
    Tensor::cat0(&parts)
}

/// How a tensor is split over `tp_size` ranks.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum TpSplit {
    /// Every rank holds the whole tensor.
    Replicate,
    /// Dim 0 is a concatenation of `parts` (row counts); each part is split evenly by rank
    /// (ColumnLinear, vocab-parallel embedding, gate_up).
    Column(Vec<usize>),
    /// Dim 1 split evenly (RowLinear).
    Row,
    /// Dim 0 is a concatenation of head groups `(heads, head_dim)`; each group is split by
    /// head, duplicating heads when `tp_size > heads` (q/k/v with few KV heads).
    Heads(Vec<(usize, usize)>),
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Source {
    pub name: String,
    /// The shape stored in the HF checkpoint.
    pub shape: Vec<usize>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct WeightSpec {
    /// Engine (and our checkpoint's) tensor name.
    pub name: String,
    pub sources: Vec<Source>,
    pub combine: Combine,
    pub transform: Transform,
    /// Full engine shape, before the tensor-parallel split.
    pub shape: Vec<usize>,
    pub split: TpSplit,
    /// Storage dtype in the engine.
    pub dtype: DType,
    /// The sources are a quantized linear's stored tensors (`weights/quant.rs`), dequantized
    /// on load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quant: Option<crate::config::WeightQuant>,
}

fn split_even(n: usize, tp: usize, what: &str, name: &str) -> Result<usize> {
    if !n.is_multiple_of(tp) {
        return Err(Error::tensor(name, format!("{what} {n} is not divisible by tp_size {tp}")));
    }
    Ok(n / tp)
}

/// Heads must split evenly, or (fewer heads than ranks) each head must go to a whole number
/// of ranks; anything else would silently drop or misalign heads.
fn check_heads(heads: usize, tp: usize, name: &str) -> Result<()> {
    if heads == 0 || (heads >= tp && !heads.is_multiple_of(tp)) || (heads < tp && !tp.is_multiple_of(heads)) {
        return Err(Error::tensor(name, format!("{heads} heads cannot be split over tp_size {tp}")));
    }
    Ok(())
}

fn dim(shape: &[usize], i: usize, name: &str) -> Result<usize> {
    shape
        .get(i)
        .copied()
        .ok_or_else(|| Error::tensor(name, format!("shape {shape:?} has no dim {i} to split")))
}

impl WeightSpec {
    /// Shape of rank `tp_rank`'s shard.
    pub fn shard_shape(&self, tp_size: usize) -> Result<Vec<usize>> {
        let mut s = self.shape.clone();
        match &self.split {
            TpSplit::Replicate => {}
            TpSplit::Column(parts) => {
                let mut rows = 0;
                for &p in parts {
                    rows += split_even(p, tp_size, "rows", &self.name)?;
                }
                s[0] = rows;
            }
            TpSplit::Row => s[1] = split_even(dim(&s, 1, &self.name)?, tp_size, "columns", &self.name)?,
            TpSplit::Heads(groups) => {
                dim(&s, 0, &self.name)?;
                for &(h, _) in groups {
                    check_heads(h, tp_size, &self.name)?;
                }
                s[0] = groups.iter().map(|&(h, d)| heads_per_rank(h, tp_size) * d).sum();
            }
        }
        Ok(s)
    }

    /// HF sources -> the full engine tensor (before sharding), in `self.dtype`.
    pub fn to_engine(&self, sources: Vec<Tensor>) -> Result<Tensor> {
        if let Some(q) = self.quant {
            return self.quant_to_engine(q, sources);
        }
        let mut parts = Vec::with_capacity(sources.len());
        for (t, src) in sources.into_iter().zip(&self.sources) {
            if t.dtype() == DType::F8E4M3 && self.dtype != DType::F8E4M3 {
                return Err(Error::tensor(
                    &src.name,
                    "is stored as float8_e4m3fn, but this layer is not a quantized linear of the checkpoint's quantization_config (quantized embeddings, lm_head and MoE experts are not supported)",
                ));
            }
            let t = if self.transform.scale_rows {
                super::quant::per_row_scales(t, &src.shape, &src.name)?
            } else {
                t
            };
            if t.shape() != src.shape.as_slice() {
                return Err(Error::tensor(
                    &src.name,
                    format!("shape {:?}, expected {:?}", t.shape(), src.shape),
                ));
            }
            let mut t = if self.transform.transpose { transpose_last2(&t)? } else { t };
            if self.transform.add_one {
                t = t.map_f32(|x| x + 1.0)?;
            }
            parts.push(t.to_dtype(self.dtype)?);
        }
        let out = match self.combine {
            Combine::Concat0 if parts.len() == 1 => {
                parts.pop().ok_or_else(|| Error::tensor(&self.name, "no source"))?
            }
            Combine::Concat0 => Tensor::cat0(&parts)?,
            Combine::Stack => {
                let inner = parts[0].shape().to_vec();
                let flat: Vec<Tensor> =
                    parts.iter().map(|p| p.reshape(&[1, p.numel()])).collect::<Result<_>>()?;
                let mut shape = vec![parts.len()];
                shape.extend(inner);
                Tensor::cat0(&flat)?.reshape(&shape)?
            }
        };
        if out.shape() != self.shape.as_slice() {
            return Err(Error::tensor(
                &self.name,
                format!("built shape {:?}, expected {:?}", out.shape(), self.shape),
            ));
        }
        match self.transform.row_order(self.shape[0]) {
            Some(order) if order.len() == self.shape[0] => gather_rows(&out, &order),
            Some(_) => Err(Error::tensor(&self.name, "row reordering does not cover the tensor's rows")),
            None => Ok(out),
        }
    }

    /// The engine tensor -> its HF sources (the inverse of `to_engine`).
    pub fn to_hf(&self, t: &Tensor) -> Result<Vec<(String, Tensor)>> {
        if self.quant.is_some() {
            return Err(Error::tensor(
                &self.name,
                "exporting a quantized layer to HF names is not supported",
            ));
        }
        let reordered;
        let t = match self.transform.row_order(t.dim(0)) {
            Some(order) => {
                let mut inverse = vec![0; order.len()];
                for (engine, &stored) in order.iter().enumerate() {
                    inverse[stored] = engine;
                }
                reordered = gather_rows(t, &inverse)?;
                &reordered
            }
            None => t,
        };
        let mut out = Vec::with_capacity(self.sources.len());
        let mut row = 0;
        for (i, src) in self.sources.iter().enumerate() {
            let mut stored = src.shape.clone();
            if self.transform.transpose {
                let n = stored.len();
                stored.swap(n.saturating_sub(2), n - 1);
            }
            let mut part = match self.combine {
                Combine::Stack => t.narrow0(i, 1)?.reshape(&stored)?,
                Combine::Concat0 => {
                    let p = t.narrow0(row, stored[0])?;
                    row += stored[0];
                    p
                }
            };
            if self.transform.add_one {
                part = part.map_f32(|x| x - 1.0)?;
            }
            if self.transform.transpose {
                part = transpose_last2(&part)?;
            }
            out.push((src.name.clone(), part));
        }
        Ok(out)
    }

    /// Rank `tp_rank`'s shard as `(first row, rows)` ranges along dim 0 of the full engine
    /// tensor, in order (what `shard` concatenates); `None` where the shard is not made of whole
    /// rows (a `Row` split over several ranks, a rank-0 tensor).
    pub fn shard_rows(&self, tp_rank: usize, tp_size: usize) -> Result<Option<Vec<(usize, usize)>>> {
        let Some(&rows) = self.shape.first() else { return Ok(None) };
        let mut out = vec![];
        match &self.split {
            _ if tp_size == 1 => out.push((0, rows)),
            TpSplit::Replicate => out.push((0, rows)),
            TpSplit::Row => return Ok(None),
            TpSplit::Column(parts) => {
                let mut off = 0;
                for &p in parts {
                    let n = split_even(p, tp_size, "rows", &self.name)?;
                    out.push((off + tp_rank * n, n));
                    off += p;
                }
            }
            TpSplit::Heads(groups) => {
                let mut off = 0;
                for &(heads, d) in groups {
                    check_heads(heads, tp_size, &self.name)?;
                    let per = heads_per_rank(heads, tp_size);
                    let first = if heads >= tp_size { tp_rank * per } else { tp_rank * heads / tp_size };
                    out.push((off + first * d, per * d));
                    off += heads * d;
                }
            }
        }
        if out.iter().any(|&(s, n)| s + n > rows) {
            return Err(Error::tensor(&self.name, format!("split rows {out:?} exceed {rows} rows")));
        }
        Ok(Some(out))
    }

    /// Rank `tp_rank`'s shard of the full engine tensor.
    pub fn shard(&self, t: &Tensor, tp_rank: usize, tp_size: usize) -> Result<Tensor> {
        if tp_size == 1 {
            return Ok(t.clone());
        }
        match &self.split {
            TpSplit::Replicate => Ok(t.clone()),
            TpSplit::Column(parts) => {
                let (mut off, mut pieces) = (0, vec![]);
                for &p in parts {
                    let n = split_even(p, tp_size, "rows", &self.name)?;
                    pieces.push(t.narrow0(off + tp_rank * n, n)?);
                    off += p;
                }
                Tensor::cat0(&pieces)
            }
            TpSplit::Row => {
                let cols = split_even(t.dim(1), tp_size, "columns", &self.name)?;
                t.narrow1(tp_rank * cols, cols)
            }
            TpSplit::Heads(groups) => {
                let (mut off, mut pieces) = (0, vec![]);
                for &(heads, d) in groups {
                    check_heads(heads, tp_size, &self.name)?;
                    let per = heads_per_rank(heads, tp_size);
                    let first = if heads >= tp_size { tp_rank * per } else { tp_rank * heads / tp_size };
                    pieces.push(t.narrow0(off + first * d, per * d)?);
                    off += heads * d;
                }
                Tensor::cat0(&pieces)
            }
        }
    }
}

/// Heads a rank holds: an even share, or one (duplicated) when there are fewer heads than ranks.
pub fn heads_per_rank(heads: usize, tp_size: usize) -> usize {
    if heads >= tp_size {
        heads / tp_size
    } else {
        1
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
