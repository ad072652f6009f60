//! `Uploader`: host bytes (mapped checkpoint pages, a converted tensor's `Vec`) to device memory
//! through a pool of page-locked staging buffers, so the transfers are `cuMemcpyHtoDAsync` from
//! pinned memory (full PCIe/NVLink-C2C speed) instead of the driver's pageable path.
//!
//! A copy takes the oldest buffer of the pool (waiting on its event until the DMA that last read
//! it is done), fills it with one chunk by a host `memcpy`, enqueues the transfer on the GPU's
//! stream and gives the buffer back. Several threads upload at once (one per layer being built):
//! their host copies overlap each other and the DMA of the chunks already enqueued; the stream
//! keeps every transfer in order with the rest of the GPU's work (all enqueues go through the
//! capture gate, see `capture/`). Where pinned memory cannot be allocated at all, copies fall
//! back to the pageable path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::{DevBuf, Gpu, GpuError, Pinned};

/// What the uploads of one `Uploader` did (times are summed over the threads that uploaded).
#[derive(Clone, Copy, Debug, Default)]
pub struct UploadStats {
    pub tensors: u64,
    pub bytes: u64,
    /// Transfers enqueued (one per staging chunk).
    pub chunks: u64,
    /// Bytes that went through the pageable fallback.
    pub pageable_bytes: u64,
    /// Staging buffers allocated, and the size of each.
    pub staging_buffers: usize,
    pub chunk_bytes: usize,
    /// Host `memcpy` into staging buffers.
    pub copy_s: f64,
    /// Waiting for a staging buffer to come free (its previous DMA still running).
    pub wait_s: f64,
    /// Allocating the staging buffers (`cuMemHostAlloc`).
    pub pin_s: f64,
    /// Allocating device memory for the tensors.
    pub alloc_s: f64,
}

struct Pool {
    free: VecDeque<Pinned>,
    made: usize,
    /// The most buffers to allocate (lowered when an allocation fails).
    cap: usize,
}

#[derive(Default)]
struct Counters {
    tensors: AtomicU64,
    bytes: AtomicU64,
    chunks: AtomicU64,
    pageable: AtomicU64,
    copy_ns: AtomicU64,
    wait_ns: AtomicU64,
    pin_ns: AtomicU64,
    alloc_ns: AtomicU64,
}

fn ns(since: Instant) -> u64 {
    since.elapsed().as_nanos() as u64
}

pub struct Uploader {
    gpu: Arc<Gpu>,
    chunk: usize,
    pool: Mutex<Pool>,
    cv: Condvar,
    n: Counters,
}

impl Uploader {
    /// Up to `max_buffers` staging buffers of `chunk` bytes each, allocated on first use.
    pub fn new(gpu: &Arc<Gpu>, chunk: usize, max_buffers: usize) -> Self {
        let pool = Pool { free: VecDeque::new(), made: 0, cap: max_buffers.max(1) };
        Uploader {
            gpu: gpu.clone(),
            chunk: chunk.max(4096),
            pool: Mutex::new(pool),
            cv: Condvar::new(),
            n: Counters::default(),
        }
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// A new device buffer holding the concatenation of `parts`. The host bytes are copied out
    /// before this returns (the caller may drop or unmap them); the transfers may still be in
    /// flight, ordered on the stream before any later use of the buffer.
    pub fn upload(&self, parts: &[&[u8]]) -> Result<DevBuf, GpuError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let t = Instant::now();
        let mut buf = DevBuf::alloc(&self.gpu, total)?;
        self.n.alloc_ns.fetch_add(ns(t), Relaxed);
        let mut off = 0;
        for part in parts {
            for piece in part.chunks(self.chunk) {
                self.copy(&mut buf, off, piece)?;
                off += piece.len();
            }
        }
        self.n.tensors.fetch_add(1, Relaxed);
        self.n.bytes.fetch_add(total as u64, Relaxed);
        Ok(buf)
    }

    fn copy(&self, buf: &mut DevBuf, off: usize, bytes: &[u8]) -> Result<(), GpuError> {
        let Some(mut st) = self.take() else {
            self.n.pageable.fetch_add(bytes.len() as u64, Relaxed);
            return buf.write(off, bytes);
        };
        let result = (|| {
            let t = Instant::now();
            let host = st.host_mut()?; // waits for the DMA that last read this buffer
            self.n.wait_ns.fetch_add(ns(t), Relaxed);
            let t = Instant::now();
            host[..bytes.len()].copy_from_slice(bytes);
            self.n.copy_ns.fetch_add(ns(t), Relaxed);
            st.copy_to(buf, off, bytes.len())
        })();
        self.give_back(st);
        self.n.chunks.fetch_add(1, Relaxed);
        result
    }

    /// The oldest free staging buffer, a new one while under the cap, or `None` when pinned
    /// memory cannot be had at all (pageable copies then).
    fn take(&self) -> Option<Pinned> {
        let t = Instant::now();
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(p) = pool.free.pop_front() {
                self.n.wait_ns.fetch_add(ns(t), Relaxed);
                return Some(p);
            }
            if pool.made < pool.cap {
                pool.made += 1;
                drop(pool);
                let t = Instant::now();
                let made = Pinned::new(&self.gpu, self.chunk);
                self.n.pin_ns.fetch_add(ns(t), Relaxed);
                pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                match made {
                    Ok(p) => return Some(p),
                    Err(_) => {
                        pool.made -= 1;
                        pool.cap = pool.made;
                        if pool.made == 0 {
                            return None;
                        }
                    }
                }
                continue;
            }
            if pool.cap == 0 {
                return None;
            }
            pool = self.cv.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give_back(&self, p: Pinned) {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).free.push_back(p);
        self.cv.notify_one();
    }

    /// Wait until every transfer enqueued so far has finished (surfacing any asynchronous copy
    /// error now), then report.
    pub fn finish(&self) -> Result<UploadStats, GpuError> {
        self.gpu.synchronize()?;
        Ok(self.stats())
    }

    pub fn stats(&self) -> UploadStats {
        let s = |a: &AtomicU64| a.load(Relaxed) as f64 * 1e-9;
        let made = self.pool.lock().unwrap_or_else(|p| p.into_inner()).made;
        UploadStats {
            tensors: self.n.tensors.load(Relaxed),
            bytes: self.n.bytes.load(Relaxed),
            chunks: self.n.chunks.load(Relaxed),
            pageable_bytes: self.n.pageable.load(Relaxed),
            staging_buffers: made,
            chunk_bytes: self.chunk,
            copy_s: s(&self.n.copy_ns),
            wait_s: s(&self.n.wait_ns),
            pin_s: s(&self.n.pin_ns),
            alloc_s: s(&self.n.alloc_ns),
        }
    }
}
