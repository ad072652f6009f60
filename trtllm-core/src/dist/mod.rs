//! Tensor-parallel communication: the [`Communicator`] the layers call, the in-process CPU
//! group ([`LocalComm`], the reference), NCCL on GPUs ([`NcclComm`]), and the multi-process
//! launch environment ([`DistEnv`]: RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT).

mod env;
mod local;
mod nccl;

pub use env::DistEnv;
pub use local::LocalComm;
pub use nccl::NcclComm;

use crate::{Result, Tensor};

/// Collective ops across the tensor-parallel group, on tensors wherever they live: the
/// in-process CPU group ([`LocalComm`]) exchanges host `f32`, NCCL ([`NcclComm`]) stays on the
/// GPU.
pub trait Communicator: Sync {
    fn tp_size(&self) -> usize;
    /// `x` summed across ranks, same shape, dtype and device as `x`.
    fn all_reduce_tensor(&self, x: Tensor) -> Result<Tensor>;
    /// `[rows, cols]` on every rank -> `[rows, cols * tp]`: rank r's columns at `r * cols`
    /// (the vocab-parallel lm_head's logits).
    fn all_gather_cols(&self, x: &Tensor) -> Result<Tensor>;
}

/// A group of one: nothing to exchange.
pub struct SingleRank;

impl Communicator for SingleRank {
    fn tp_size(&self) -> usize {
        1
    }
    fn all_reduce_tensor(&self, x: Tensor) -> Result<Tensor> {
        Ok(x)
    }
    fn all_gather_cols(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }
}
