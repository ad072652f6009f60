//! How a model is spread over devices: tensor parallel (tp) and pipeline parallel (pp) ranks.
//! The same shape as TensorRT-LLM's `Mapping`.

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mapping {
    pub world_size: usize,
    pub tp_size: usize,
    pub pp_size: usize,
    pub rank: usize,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping { world_size: 1, tp_size: 1, pp_size: 1, rank: 0 }
    }
}

impl Mapping {
    pub fn new(tp_size: usize, pp_size: usize, rank: usize) -> Result<Self> {
        if tp_size == 0 || pp_size == 0 {
            return Err(Error::Msg("tp_size and pp_size must be at least 1".into()));
        }
        let world_size = tp_size * pp_size;
        if rank >= world_size {
            return Err(Error::Msg(format!("rank {rank} out of range for world size {world_size}")));
        }
        Ok(Mapping { world_size, tp_size, pp_size, rank })
    }
    /// This rank's position within its tensor-parallel group.
    pub fn tp_rank(&self) -> usize {
        self.rank % self.tp_size
    }
    /// This rank's pipeline stage.
    pub fn pp_rank(&self) -> usize {
        self.rank / self.tp_size
    }
    /// The half-open range of decoder layers this rank's pipeline stage owns.
    pub fn pp_layers(&self, num_layers: usize) -> std::ops::Range<usize> {
        let per = num_layers.div_ceil(self.pp_size);
        let start = (self.pp_rank() * per).min(num_layers);
        start..(start + per).min(num_layers)
    }
    pub fn with_rank(&self, rank: usize) -> Self {
        Mapping { rank, ..*self }
    }
}
