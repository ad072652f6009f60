//! `NcclComm`: a `Communicator` whose collectives run on the GPU through NCCL. The tensor
//! methods (what layers call) never leave the device: the row-parallel all-reduce sums the
//! matmul output in place on the rank's stream, the lm_head all-gather lands every rank's vocab
//! slice next to the others.

use std::sync::Arc;

use trtllm_kernels::nccl::{interleave_cols, NcclComm as RawNccl, NcclId};
use trtllm_kernels::{DevBuf, Dt, Gpu};

use crate::dist::{Communicator, TcpGroup};
use crate::ops::cuda::{dev_err, gpu_of};
use crate::{DType, Error, Result, Tensor};

pub struct NcclComm {
    inner: RawNccl,
}

fn dt_of(t: &Tensor) -> Result<Dt> {
    match t.dtype() {
        DType::F32 => Ok(Dt::F32),
        DType::BF16 => Ok(Dt::BF16),
        d => Err(Error::DType { op: "NCCL collective", dtype: d }),
    }
}

impl NcclComm {
    /// One communicator per GPU of `gpus` (rank r on `gpus[r]`), all in this process.
    pub fn group(gpus: &[Arc<Gpu>]) -> Result<Vec<NcclComm>> {
        Ok(RawNccl::group(gpus).map_err(dev_err)?.into_iter().map(|inner| NcclComm { inner }).collect())
    }

    /// This process's place in an NCCL group of the processes `members` (ranks of `group`, in
    /// NCCL rank order): the first member makes the unique id and sends it to the others over
    /// the TCP mesh; blocks until all have joined.
    pub fn init_over(gpu: &Arc<Gpu>, group: &TcpGroup, members: &[usize]) -> Result<NcclComm> {
        let me = members.iter().position(|&m| m == group.rank()).ok_or_else(|| {
            Error::Parallel(format!("NCCL members {members:?} do not include rank {}", group.rank()))
        })?;
        let id = if me == 0 {
            let id = NcclId::new().map_err(dev_err)?;
            members[1..].iter().try_for_each(|&m| group.send(m, &id.0))?;
            id
        } else {
            let bytes = group.recv(members[0], &[128])?;
            NcclId(bytes.try_into().map_err(|_| Error::Parallel("NCCL id: not 128 bytes".into()))?)
        };
        Ok(NcclComm { inner: RawNccl::init_rank(gpu, &id, me, members.len()).map_err(dev_err)? })
    }

    pub fn rank(&self) -> usize {
        self.inner.rank()
    }

    /// Give up on the group (a rank failed): pending and later collectives fail.
    pub fn abort(&self) {
        self.inner.abort()
    }

    fn gpu(&self) -> &Arc<Gpu> {
        self.inner.gpu()
    }

    /// `x`'s buffer and offset, checked to be on this rank's GPU.
    fn on_gpu<'a>(&self, x: &'a Tensor, op: &str) -> Result<(&'a Arc<DevBuf>, usize)> {
        match (x.devbuf(), gpu_of(x)) {
            (Some(b), Some(g)) if Arc::ptr_eq(&g, self.gpu()) => Ok(b),
            _ => Err(Error::Device(format!(
                "{op}: NCCL rank {} (cuda:{}) got a tensor on {:?}",
                self.rank(),
                self.gpu().ordinal,
                x.device()
            ))),
        }
    }
}

impl Communicator for NcclComm {
    fn tp_size(&self) -> usize {
        self.inner.world_size()
    }

    fn all_reduce_tensor(&self, x: Tensor) -> Result<Tensor> {
        if self.tp_size() == 1 {
            return Ok(x);
        }
        let dt = dt_of(&x)?;
        // In place when this tensor is the only holder of its buffer (a fresh matmul output),
        // else on a copy so no other tensor sees the sum.
        let x = match x.devbuf() {
            Some((b, _)) if Arc::strong_count(b) == 1 => x,
            Some((b, off)) => {
                let copy = b.copy_range(off, x.size_in_bytes()).map_err(dev_err)?;
                Tensor::from_devbuf(copy, x.shape(), x.dtype())?
            }
            None => return Err(Error::Device("all_reduce: NCCL needs a GPU tensor".into())),
        };
        let (buf, off) = self.on_gpu(&x, "all_reduce")?;
        self.inner.all_reduce_sum(buf, off, x.numel(), dt).map_err(dev_err)?;
        Ok(x)
    }

    fn all_gather_cols(&self, x: &Tensor) -> Result<Tensor> {
        let n = self.tp_size();
        if n == 1 {
            return Ok(x.clone());
        }
        let (rows, cols) = x.dims2("all_gather_cols")?;
        let dt = dt_of(x)?;
        let (send, off) = self.on_gpu(x, "all_gather")?;
        let bytes = n * rows * cols * dt.size();
        // [n, rows, cols]: rank r's block at r * rows * cols
        let gathered = DevBuf::alloc(self.gpu(), bytes).map_err(dev_err)?;
        self.inner.all_gather(send, off, &gathered, rows * cols, dt).map_err(dev_err)?;
        if rows == 1 {
            return Tensor::from_devbuf(gathered, &[1, n * cols], x.dtype());
        }
        // [n, rows, cols] -> [rows, n * cols]
        let out = DevBuf::alloc(self.gpu(), bytes).map_err(dev_err)?;
        interleave_cols(&gathered, &out, n, rows, cols, dt).map_err(dev_err)?;
        Tensor::from_devbuf(out, &[rows, n * cols], x.dtype())
    }
}
