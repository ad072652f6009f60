//! Tensor-parallel communication: the [`Communicator`] the layers call, the in-process CPU
//! group ([`LocalComm`], the reference), NCCL on GPUs ([`NcclComm`]), the multi-process launch
//! environment ([`DistEnv`]: RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT) and the TCP mesh
//! between those processes ([`TcpGroup`]; [`TcpComm`]: the collectives of CPU ranks).

mod env;
mod local;
mod nccl;
mod tcp;

pub use env::DistEnv;
pub use local::LocalComm;
pub use nccl::NcclComm;
pub use tcp::{TcpComm, TcpGroup};

use crate::{Error, Result, Tensor};

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

/// `t` (host) converted to `like`'s dtype and moved to its device.
pub(crate) fn to_device_of(t: Tensor, like: &Tensor) -> Result<Tensor> {
    let t = t.to_dtype(like.dtype())?;
    match crate::ops::cuda::gpu_of(like) {
        Some(gpu) => t.to_gpu(&gpu),
        None => Ok(t),
    }
}

/// Every rank's `[rows, local]` block side by side: `[rows, local * ranks]`, rank r's columns
/// at `r * local`.
pub(crate) fn interleave_cols(parts: &[Vec<f32>], rows: usize, local: usize) -> Result<Tensor> {
    let n = parts.len();
    if let Some((r, p)) = parts.iter().enumerate().find(|(_, p)| p.len() != rows * local) {
        return Err(Error::Parallel(format!(
            "all_gather_cols: rank {r} sent {} values, not {rows} x {local}",
            p.len()
        )));
    }
    let mut full = vec![0f32; rows * local * n];
    for (rank, p) in parts.iter().enumerate() {
        for i in 0..rows {
            full[i * local * n + rank * local..][..local].copy_from_slice(&p[i * local..(i + 1) * local]);
        }
    }
    Tensor::from_f32(full, &[rows, local * n])
}
