//! `Tensor`s of ggml blocks (`DType::Ggml`), kept as stored in a GGUF file. The storage is a
//! list of runs of whole rows, each run in one block type: one run for an ordinary weight,
//! several for a fused weight whose parts the file stores in different types (llama.cpp's
//! Q4_K_M keeps q and k in Q5_0 and v in Q8_0; q/k/v load as one `qkv_proj`). A matmul runs
//! each run with its own kernel into its own output columns (`ops::cpu::qgemm::matmul_parts`).

use std::sync::Arc;

use super::{numel, Storage, Tensor};
use crate::gguf::GgmlType;
use crate::{DType, Error, Result};

/// One run of a ggml tensor's storage: `elems` elements (whole rows) of block type `ty`.
#[derive(Debug)]
pub(super) struct Run {
    ty: GgmlType,
    elems: usize,
    bytes: Vec<u8>,
}

/// The part of a ggml tensor (or view) that lies in one run: `elems` elements of `ty`.
#[derive(Clone, Copy, Debug)]
pub struct GgmlPart<'a> {
    pub ty: GgmlType,
    pub elems: usize,
    pub bytes: &'a [u8],
}

/// `(elements, bytes)` per block of a block type (at least 2 elements), or an error naming `op`.
fn block_of(op: &'static str, ty: GgmlType) -> Result<(usize, usize)> {
    ty.block().filter(|&(b, _)| b > 1).ok_or_else(|| Error::shape(op, format!("{ty} is not a block type")))
}

impl Tensor {
    /// ggml blocks of type `ty` (a block-quantized type), `shape` row-major with whole blocks
    /// per row (the last dim a multiple of the block size), `data` exactly their bytes.
    pub fn from_ggml(ty: GgmlType, data: Vec<u8>, shape: &[usize]) -> Result<Self> {
        let rows = *shape.first().ok_or_else(|| Error::shape("from_ggml", "rank-0 shape"))?;
        Tensor::from_ggml_parts(vec![(ty, rows, data)], shape)
    }

    /// ggml blocks in runs of rows along dim 0, each `(type, rows, bytes)` (a fused weight whose
    /// parts have different block types): the rows add up to `shape[0]`, each run's bytes are
    /// exactly its rows in whole blocks. Adjacent runs of one type are merged.
    pub fn from_ggml_parts(parts: Vec<(GgmlType, usize, Vec<u8>)>, shape: &[usize]) -> Result<Self> {
        let bad = |m: String| Error::shape("from_ggml", m);
        let row = numel(shape.get(1..).ok_or_else(|| bad("rank-0 shape".into()))?);
        let last = *shape.last().unwrap_or(&0);
        let mut runs: Vec<Run> = Vec::with_capacity(parts.len());
        let mut rows_total = 0usize;
        for (ty, rows, bytes) in parts {
            let (blk, bb) = block_of("from_ggml", ty)?;
            if !last.is_multiple_of(blk) {
                return Err(bad(format!("rows of {last} are not whole {ty} blocks of {blk}")));
            }
            let elems = rows.checked_mul(row).ok_or_else(|| bad(format!("{rows} rows of {row} overflow")))?;
            if elems / blk * bb != bytes.len() {
                return Err(bad(format!("{} bytes cannot hold {rows} rows of {row} {ty}", bytes.len())));
            }
            rows_total += rows;
            match runs.last_mut() {
                Some(r) if r.ty == ty => {
                    r.elems += elems;
                    r.bytes.extend_from_slice(&bytes);
                }
                _ => runs.push(Run { ty, elems, bytes }),
            }
        }
        if rows_total != shape[0] {
            return Err(bad(format!("runs of {rows_total} rows in all cannot have shape {shape:?}")));
        }
        Ok(Tensor { storage: Storage::Ggml(Arc::new(runs)), shape: shape.to_vec(), offset: 0 })
    }

    /// The runs of this ggml tensor (or view) in order, each cut to the view; `None` for other
    /// dtypes.
    pub fn ggml_parts(&self) -> Option<Vec<GgmlPart<'_>>> {
        let Storage::Ggml(runs) = &self.storage else { return None };
        let (lo, hi) = (self.offset, self.offset + self.numel());
        let mut out = Vec::with_capacity(runs.len());
        let mut e0 = 0;
        for r in runs.iter() {
            let e1 = e0 + r.elems;
            let (a, b) = (lo.max(e0), hi.min(e1));
            if a < b {
                let (blk, bb) = r.ty.block()?;
                let bytes = &r.bytes[(a - e0) / blk * bb..(b - e0) / blk * bb];
                out.push(GgmlPart { ty: r.ty, elems: b - a, bytes });
            }
            e0 = e1;
        }
        Some(out)
    }

    /// The block type and bytes of a ggml tensor (`DType::Ggml`) that is all one block type
    /// (`None` for a view across runs of different types: see [`Tensor::ggml_parts`]).
    pub fn ggml(&self) -> Option<(GgmlType, &[u8])> {
        match self.ggml_parts()?.as_slice() {
            [p] => Some((p.ty, p.bytes)),
            _ => None,
        }
    }

    /// The values of a ggml tensor, dequantized run by run.
    pub(super) fn ggml_to_f32(&self) -> Result<Vec<f32>> {
        let parts = self.ggml_parts().ok_or(Error::DType { op: "to_f32_vec", dtype: self.dtype() })?;
        let mut out = vec![0f32; self.numel()];
        let mut at = 0;
        for p in parts {
            crate::gguf::dequantize(p.ty, p.bytes, &mut out[at..at + p.elems])
                .map_err(|e| Error::shape("to_f32_vec", e))?;
            at += p.elems;
        }
        Ok(out)
    }

    /// `cat0` of ggml tensors: their runs one after another (one run where all share a type).
    pub(super) fn ggml_cat0(parts: &[Tensor], shape: &[usize]) -> Result<Tensor> {
        let row = numel(&shape[1..]).max(1);
        let mut runs = Vec::new();
        for t in parts {
            let ps = t.ggml_parts().ok_or(Error::DType { op: "cat0", dtype: t.dtype() })?;
            for p in ps {
                runs.push((p.ty, p.elems / row, p.bytes.to_vec()));
            }
        }
        if runs.is_empty() {
            return Err(Error::DType { op: "cat0", dtype: DType::Ggml });
        }
        Tensor::from_ggml_parts(runs, shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::quantize;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// Two runs (Q8_0 rows, then Q4_0 rows) read back as the dequantized rows of each, across
    /// views that start and end inside either run.
    #[test]
    fn mixed_runs_dequantize_and_view() {
        let k = 64;
        let (a, b) = (values(3 * k, 1), values(2 * k, 7));
        let (qa, qb) = (quantize(GgmlType::Q8_0, &a).expect("ok"), quantize(GgmlType::Q4_0, &b).expect("ok"));
        let ta = Tensor::from_ggml(GgmlType::Q8_0, qa.clone(), &[3, k]).expect("ok");
        let tb = Tensor::from_ggml(GgmlType::Q4_0, qb.clone(), &[2, k]).expect("ok");
        let t = Tensor::cat0(&[ta.clone(), tb.clone()]).expect("ok");
        assert_eq!(t.dtype(), DType::Ggml);
        assert_eq!(t.shape(), &[5, k]);
        assert!(t.ggml().is_none(), "a mixed tensor has no single block type");
        assert_eq!(t.size_in_bytes(), qa.len() + qb.len());
        let mut want = ta.to_f32_vec().expect("ok");
        want.extend(tb.to_f32_vec().expect("ok"));
        assert_eq!(t.to_f32_vec().expect("ok"), want);
        for (start, len) in [(0, 5), (1, 3), (2, 2), (3, 2), (4, 1), (0, 1)] {
            let v = t.narrow0(start, len).expect("ok");
            assert_eq!(v.to_f32_vec().expect("ok"), want[start * k..(start + len) * k], "rows {start}+{len}");
            let rows: Vec<usize> = v.ggml_parts().expect("ok").iter().map(|p| p.elems / k).collect();
            assert_eq!(rows.iter().sum::<usize>(), len);
        }
        // Same-type parts merge into one run.
        let one = Tensor::cat0(&[ta.clone(), ta]).expect("ok");
        assert_eq!(one.ggml().map(|(ty, b)| (ty, b.len())), Some((GgmlType::Q8_0, 2 * qa.len())));
    }

    #[test]
    fn bad_runs_are_errors() {
        let q = quantize(GgmlType::Q8_0, &values(64, 3)).expect("ok");
        let e =
            Tensor::from_ggml_parts(vec![(GgmlType::Q8_0, 2, q.clone())], &[3, 32]).expect_err("an error");
        assert!(e.to_string().contains("runs of 2 rows"), "{e}");
        let e = Tensor::from_ggml_parts(vec![(GgmlType::Q8_0, 1, q)], &[1, 32]).expect_err("an error");
        assert!(e.to_string().contains("cannot hold"), "{e}");
    }
}
