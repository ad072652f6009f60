//! Token / position embedding table `[num, hidden]`. Position tables are replicated over
//! tensor-parallel ranks; the token table is vocab-parallel (`vocab_parallel`): rank r holds rows
//! `r * num / tp ..`, looks up the tokens that fall in its range, leaves the others zero, and the
//! ranks' rows are summed (each row has exactly one non-zero contributor, so the sum is exact).

use super::Communicator;
use crate::batch::{DeviceBatch, ForwardBatch};
use crate::weights::{TpSplit, VarBuilder};
use crate::{ops, Result, Tensor};

pub struct Embedding {
    pub weight: Tensor,
    pub multiplier: Option<f32>,
    /// Vocab-parallel shard: the first token id this rank holds (`None`: the whole table).
    pub vocab_start: Option<usize>,
    /// Tensor-parallel size a vocab-parallel table was sharded for.
    tp_size: usize,
}

impl Embedding {
    pub fn new(vb: &VarBuilder<'_>, num: usize, dim: usize, multiplier: Option<f32>) -> Result<Self> {
        Ok(Embedding {
            weight: vb.get("weight", &[num, dim], TpSplit::Replicate)?,
            multiplier,
            vocab_start: None,
            tp_size: 1,
        })
    }

    /// The token table, split by rows over the tensor-parallel ranks (the whole table at tp 1).
    pub fn vocab_parallel(
        vb: &VarBuilder<'_>,
        num: usize,
        dim: usize,
        multiplier: Option<f32>,
    ) -> Result<Self> {
        let tp = vb.tp_size();
        let weight = vb.get("weight", &[num, dim], TpSplit::Column(vec![num]))?;
        let start = (tp > 1).then(|| vb.mapping.tp_rank() * weight.dim(0));
        Ok(Embedding { weight, multiplier, vocab_start: start, tp_size: tp })
    }

    /// `[t, d]` rows for the batch's tokens across the tensor-parallel group: a vocab-parallel
    /// table looks up its own range and all-reduces; a whole table is [`Self::forward_batch`].
    pub fn forward_tp(
        &self,
        batch: &ForwardBatch,
        dev: Option<&DeviceBatch>,
        comm: &dyn Communicator,
    ) -> Result<Tensor> {
        let Some(start) = self.vocab_start else { return self.forward_batch(batch, dev) };
        if comm.tp_size() != self.tp_size {
            return Err(crate::Error::Msg(format!(
                "vocab-parallel embedding sharded for tp_size {} run with a communicator of {} rank(s)",
                self.tp_size,
                comm.tp_size()
            )));
        }
        let n = self.weight.dim(0);
        let vocab = n * self.tp_size;
        if let Some(&bad) = batch.tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(crate::Error::Msg(format!("token id {bad} is out of the vocabulary ({vocab})")));
        }
        let (mut rows, mut local) = (vec![], vec![]);
        for (i, &t) in batch.tokens.iter().enumerate() {
            if (t as usize) >= start && (t as usize) < start + n {
                rows.push(i);
                local.push(t - start as u32);
            }
        }
        let zeros = ops::zeros_like(&self.weight, &[batch.tokens.len(), self.weight.dim(1)])?;
        let mine = if rows.is_empty() {
            zeros
        } else {
            let e = ops::embedding(&local, &self.weight, self.multiplier)?;
            ops::scatter_add_rows(&zeros, &e, &rows, &vec![1.0; rows.len()])?
        };
        comm.all_reduce_tensor(mine)
    }
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        ops::embedding(ids, &self.weight, self.multiplier)
    }
    /// Position embeddings for `positions`.
    pub fn forward_positions(&self, positions: &[usize]) -> Result<Tensor> {
        let ids: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        ops::embedding(&ids, &self.weight, None)
    }
    /// `[t, d]` rows for the batch's tokens: read on the device when `dev` carries the ids (a
    /// CUDA-graph step: nothing from the host), else from `batch.tokens`.
    pub fn forward_batch(&self, batch: &ForwardBatch, dev: Option<&DeviceBatch>) -> Result<Tensor> {
        match dev.and_then(|d| d.tokens.as_ref()) {
            Some(ids) => ops::embedding_device_ids(ids, batch.num_tokens(), &self.weight, self.multiplier),
            None => self.forward(&batch.tokens),
        }
    }
    /// Position embeddings for the batch's positions, read like [`Self::forward_batch`]'s ids.
    pub fn forward_positions_batch(&self, batch: &ForwardBatch, dev: Option<&DeviceBatch>) -> Result<Tensor> {
        match dev.filter(|d| d.tokens.is_some()) {
            Some(d) => ops::embedding_device_ids(&d.positions, batch.num_tokens(), &self.weight, None),
            None => self.forward_positions(&batch.positions),
        }
    }
}
