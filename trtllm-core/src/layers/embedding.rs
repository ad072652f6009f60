//! Token / position embedding table `[num, hidden]` (replicated over tensor-parallel ranks).

use crate::weights::{TpSplit, VarBuilder};
use crate::{ops, Result, Tensor};

pub struct Embedding {
    pub weight: Tensor,
    pub multiplier: Option<f32>,
}

impl Embedding {
    pub fn new(vb: &VarBuilder<'_>, num: usize, dim: usize, multiplier: Option<f32>) -> Result<Self> {
        Ok(Embedding { weight: vb.get("weight", &[num, dim], TpSplit::Replicate)?, multiplier })
    }
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        ops::embedding(ids, &self.weight, self.multiplier)
    }
    /// Position embeddings for `positions`.
    pub fn forward_positions(&self, positions: &[usize]) -> Result<Tensor> {
        let ids: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        ops::embedding(&ids, &self.weight, None)
    }
}
