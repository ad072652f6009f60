//! An in-process `Communicator`: the ranks of a tensor-parallel group are threads of one
//! process. Each collective is two barrier phases: every rank publishes its buffer into its own
//! slot, then every rank reads all slots in rank order 0..N (so all ranks compute bit-identical
//! sums), then a second barrier keeps slots from being overwritten while others still read.
//! The barrier can be aborted: a rank whose forward fails wakes the others with an error
//! instead of leaving them waiting forever.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::dist::{interleave_cols, to_device_of, Communicator};
use crate::{Error, Result, Tensor};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct BarrierState {
    arrived: usize,
    generation: u64,
    aborted: bool,
}

/// `std::sync::Barrier` that can be aborted and reset.
struct Barrier {
    n: usize,
    state: Mutex<BarrierState>,
    cv: Condvar,
}

impl Barrier {
    fn wait(&self) -> Result<()> {
        let mut s = lock(&self.state);
        if s.aborted {
            return Err(aborted());
        }
        let gen = s.generation;
        s.arrived += 1;
        if s.arrived == self.n {
            s.arrived = 0;
            s.generation += 1;
            self.cv.notify_all();
            return Ok(());
        }
        while s.generation == gen && !s.aborted {
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.generation == gen {
            return Err(aborted());
        }
        Ok(())
    }
}

fn aborted() -> Error {
    Error::Parallel("tensor-parallel collective aborted: another rank failed".into())
}

struct Shared {
    barrier: Barrier,
    slots: Vec<Mutex<Vec<f32>>>,
}

/// One rank's handle on an in-process group.
#[derive(Clone)]
pub struct LocalComm {
    rank: usize,
    shared: Arc<Shared>,
}

impl LocalComm {
    /// The handles of a group of `n` ranks, in rank order.
    pub fn group(n: usize) -> Vec<LocalComm> {
        let shared = Arc::new(Shared {
            barrier: Barrier { n, state: Mutex::new(BarrierState::default()), cv: Condvar::new() },
            slots: (0..n).map(|_| Mutex::new(vec![])).collect(),
        });
        (0..n).map(|rank| LocalComm { rank, shared: shared.clone() }).collect()
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Wake every rank waiting in a collective with an error (this rank failed).
    pub fn abort(&self) {
        lock(&self.shared.barrier.state).aborted = true;
        self.shared.barrier.cv.notify_all();
    }

    /// Make the group usable again after an abort. Call only when no rank is inside a collective.
    pub fn reset(&self) {
        let mut s = lock(&self.shared.barrier.state);
        s.aborted = false;
        s.arrived = 0;
    }

    fn publish(&self, x: &[f32]) -> Result<()> {
        {
            let mut slot = lock(&self.shared.slots[self.rank]);
            slot.clear();
            slot.extend_from_slice(x);
        }
        self.shared.barrier.wait()
    }

    fn check_len(&self, r: usize, got: usize, want: usize) -> Result<()> {
        if got != want {
            return Err(Error::Parallel(format!(
                "tensor-parallel collective: rank {r} sent {got} values, rank {} sent {want}",
                self.rank
            )));
        }
        Ok(())
    }
}

/// The host primitives the tensor collectives are made of.
impl LocalComm {
    pub fn tp_size(&self) -> usize {
        self.shared.slots.len()
    }

    /// Sum `x` elementwise across ranks, in place (rank order 0..N on every rank).
    pub fn all_reduce_sum(&self, x: &mut [f32]) -> Result<()> {
        self.publish(x)?;
        let mut res = Ok(());
        for (r, slot) in self.shared.slots.iter().enumerate() {
            let s = lock(slot);
            if let Err(e) = self.check_len(r, s.len(), x.len()) {
                res = Err(e);
                break;
            }
            if r == 0 {
                x.copy_from_slice(&s);
            } else {
                for (a, b) in x.iter_mut().zip(s.iter()) {
                    *a += *b;
                }
            }
        }
        self.shared.barrier.wait()?;
        res
    }

    /// Every rank's `x`, in rank order.
    pub fn all_gather(&self, x: &[f32]) -> Result<Vec<Vec<f32>>> {
        self.publish(x)?;
        let mut out = Vec::with_capacity(self.tp_size());
        let mut res = Ok(());
        for (r, slot) in self.shared.slots.iter().enumerate() {
            let s = lock(slot);
            if let Err(e) = self.check_len(r, s.len(), x.len()) {
                res = Err(e);
                break;
            }
            out.push(s.clone());
        }
        self.shared.barrier.wait()?;
        res.map(|_| out)
    }
}

impl Communicator for LocalComm {
    fn tp_size(&self) -> usize {
        LocalComm::tp_size(self)
    }

    fn all_reduce_tensor(&self, x: Tensor) -> Result<Tensor> {
        let mut v = x.to_f32_vec()?;
        self.all_reduce_sum(&mut v)?;
        to_device_of(Tensor::from_f32(v, x.shape())?, &x)
    }

    fn all_gather_cols(&self, x: &Tensor) -> Result<Tensor> {
        let (r, local) = x.dims2("all_gather_cols")?;
        let parts = self.all_gather(&x.to_f32_vec()?)?;
        to_device_of(interleave_cols(&parts, r, local)?, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T: Send>(n: usize, f: impl Fn(&LocalComm) -> T + Sync) -> Vec<T> {
        let comms = LocalComm::group(n);
        std::thread::scope(|s| {
            let hs: Vec<_> = comms.iter().map(|c| s.spawn(|| f(c))).collect();
            hs.into_iter().map(|h| h.join().expect("rank thread")).collect()
        })
    }

    #[test]
    fn all_reduce_is_identical_on_every_rank() {
        let out = run(4, |c| {
            let mut total = vec![];
            for step in 0..50 {
                let mut x: Vec<f32> =
                    (0..33).map(|i| ((i * 7 + c.rank() * 13 + step) % 17) as f32 * 0.1 + 1e-3).collect();
                c.all_reduce_sum(&mut x).expect("all_reduce");
                total.extend(x);
            }
            total
        });
        for o in &out[1..] {
            assert_eq!(o, &out[0]);
        }
        let want: f32 = (0..4).map(|r| ((r * 13) % 17) as f32 * 0.1 + 1e-3).fold(0.0, |a, b| a + b);
        assert_eq!(out[0][0], want);
    }

    #[test]
    fn all_gather_in_rank_order() {
        let out = run(3, |c| c.all_gather(&[c.rank() as f32; 2]).expect("gather"));
        for o in out {
            assert_eq!(o, vec![vec![0.0; 2], vec![1.0; 2], vec![2.0; 2]]);
        }
    }

    #[test]
    fn abort_wakes_waiting_ranks() {
        let out = run(3, |c| {
            if c.rank() == 2 {
                c.abort();
                return true;
            }
            c.all_reduce_sum(&mut [1.0]).is_err()
        });
        assert!(out.iter().all(|&e| e));
    }

    #[test]
    fn length_mismatch_is_an_error_on_every_rank() {
        let out = run(2, |c| c.all_gather(&vec![0.0; 1 + c.rank()]).is_err());
        assert_eq!(out, vec![true, true]);
    }
}
