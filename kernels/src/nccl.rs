//! NCCL communicators over `DevBuf`s: the device side of tensor parallelism.
//!
//! One communicator per rank, each bound to its rank's `Gpu` and issuing its collectives on that
//! GPU's stream, so they are ordered with the kernels around them and no host sync is needed.
//! A group inside one process (one thread per GPU) is made by [`NcclComm::group`]
//! (`ncclCommInitAll`); ranks in separate processes share an [`NcclId`] (exchanged over TCP by
//! the caller) and call [`NcclComm::init_rank`].
//!
//! NCCL is loaded at run time like the other CUDA libraries: [`nccl_available`] says whether it
//! can be (cudarc looks for `libnccl.so`; a system that only has `libnccl.so.2` needs a
//! `libnccl.so` symlink on `LD_LIBRARY_PATH`).

use std::sync::{Arc, Mutex};

use cudarc::nccl::{result, sys};

use crate::{DevBuf, Dt, Gpu, GpuError};

/// True when the NCCL library can be loaded.
pub fn nccl_available() -> bool {
    // SAFETY: only tries to dlopen the library names cudarc would use; no NCCL call is made.
    std::panic::catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false)
}

fn nccl_err(what: &str, e: impl std::fmt::Debug) -> GpuError {
    GpuError::Driver(format!("NCCL {what}: {e:?}"))
}

fn require_nccl() -> Result<(), GpuError> {
    if nccl_available() {
        return Ok(());
    }
    Err(GpuError::Unavailable(
        "NCCL (libnccl.so) cannot be loaded; install NCCL or put a directory with a `libnccl.so` \
         (a symlink to libnccl.so.2 will do) on LD_LIBRARY_PATH"
            .into(),
    ))
}

/// The 128-byte id that names one NCCL group; rank 0 makes it, every rank needs it.
#[derive(Clone, Copy)]
pub struct NcclId(pub [u8; 128]);

impl std::fmt::Debug for NcclId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NcclId({:02x?}..)", &self.0[..8])
    }
}

impl NcclId {
    pub fn new() -> Result<Self, GpuError> {
        require_nccl()?;
        let id = result::get_uniqueid().map_err(|e| nccl_err("get unique id", e))?;
        let mut out = [0u8; 128];
        for (o, c) in out.iter_mut().zip(id.internal.iter()) {
            *o = *c as u8;
        }
        Ok(NcclId(out))
    }
    fn raw(&self) -> sys::ncclUniqueId {
        let mut internal = [0 as std::ffi::c_char; 128];
        for (i, b) in internal.iter_mut().zip(self.0.iter()) {
            *i = *b as std::ffi::c_char;
        }
        sys::ncclUniqueId { internal }
    }
}

struct RawComm(sys::ncclComm_t);

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it do not run
// concurrently; `NcclComm` serializes them with a mutex.
unsafe impl Send for RawComm {}

/// One rank's NCCL communicator.
pub struct NcclComm {
    comm: Mutex<RawComm>,
    gpu: Arc<Gpu>,
    rank: usize,
    world: usize,
}

fn nccl_dt(dt: Dt) -> sys::ncclDataType_t {
    match dt {
        Dt::F32 => sys::ncclDataType_t::ncclFloat32,
        Dt::BF16 => sys::ncclDataType_t::ncclBfloat16,
    }
}

impl NcclComm {
    /// Communicators for `gpus` (rank r on `gpus[r]`), all in this process.
    pub fn group(gpus: &[Arc<Gpu>]) -> Result<Vec<NcclComm>, GpuError> {
        require_nccl()?;
        let ordinals: Vec<i32> = gpus.iter().map(|g| g.ordinal as i32).collect();
        let mut raw: Vec<sys::ncclComm_t> = vec![std::ptr::null_mut(); gpus.len()];
        // SAFETY: `raw` has room for one communicator per listed device; NCCL fills every slot
        // or returns an error.
        unsafe { result::comm_init_all(raw.as_mut_ptr(), gpus.len() as i32, ordinals.as_ptr()) }
            .map_err(|e| nccl_err("init (in-process group)", e))?;
        let world = gpus.len();
        Ok(raw
            .into_iter()
            .zip(gpus)
            .enumerate()
            .map(|(rank, (c, g))| NcclComm { comm: Mutex::new(RawComm(c)), gpu: g.clone(), rank, world })
            .collect())
    }

    /// This process's rank of a group of `world` processes that share `id`. Blocks until every
    /// rank has joined.
    pub fn init_rank(gpu: &Arc<Gpu>, id: &NcclId, rank: usize, world: usize) -> Result<NcclComm, GpuError> {
        require_nccl()?;
        gpu.ctx.bind_to_thread().map_err(GpuError::driver)?;
        let mut c: sys::ncclComm_t = std::ptr::null_mut();
        // SAFETY: `c` is a valid out pointer; NCCL initializes it on success.
        unsafe { result::comm_init_rank(&mut c, world as i32, id.raw(), rank as i32) }
            .map_err(|e| nccl_err(&format!("init rank {rank} of {world}"), e))?;
        Ok(NcclComm { comm: Mutex::new(RawComm(c)), gpu: gpu.clone(), rank, world })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn world_size(&self) -> usize {
        self.world
    }
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Abort the communicator: NCCL kernels of this rank waiting for peers give up, and every
    /// later collective on it fails. Used when a rank's forward failed mid-step.
    pub fn abort(&self) {
        let mut comm = self.comm.lock().unwrap_or_else(|p| p.into_inner());
        if comm.0.is_null() {
            return;
        }
        let _ = self.gpu.ctx.bind_to_thread();
        // SAFETY: the communicator is live; ncclCommAbort may be called while its operations are
        // pending (that is its purpose) and frees it; the pointer is cleared so it is not reused.
        let _ = unsafe { result::comm_abort(comm.0) };
        comm.0 = std::ptr::null_mut();
    }

    fn live(comm: &RawComm) -> Result<sys::ncclComm_t, GpuError> {
        if comm.0.is_null() {
            return Err(GpuError::Driver("NCCL communicator was aborted after a rank failed".into()));
        }
        Ok(comm.0)
    }

    fn check(&self, what: &'static str, buf: &DevBuf, off: usize, bytes: usize) -> Result<(), GpuError> {
        if !Arc::ptr_eq(buf.gpu(), &self.gpu) {
            return Err(GpuError::Precondition {
                kernel: what,
                msg: format!(
                    "buffer on cuda:{}, communicator on cuda:{}",
                    buf.gpu().ordinal,
                    self.gpu.ordinal
                ),
            });
        }
        if off + bytes > buf.len() {
            return Err(GpuError::Precondition {
                kernel: what,
                msg: format!("{bytes} bytes at offset {off} exceed a {}-byte buffer", buf.len()),
            });
        }
        Ok(())
    }

    /// Sum `count` elements at `buf[off..]` across ranks, in place, on this GPU's stream.
    pub fn all_reduce_sum(&self, buf: &DevBuf, off: usize, count: usize, dt: Dt) -> Result<(), GpuError> {
        self.check("nccl all_reduce", buf, off, count * dt.size())?;
        let comm = self.comm.lock().unwrap_or_else(|p| p.into_inner());
        let raw = Self::live(&comm)?;
        let _gate = self.gpu.enter();
        self.gpu.ctx.bind_to_thread().map_err(GpuError::driver)?;
        let p = buf.ptr(off);
        // SAFETY: `p` addresses `count` elements of `dt` inside `buf` (checked above), on this
        // communicator's GPU; in-place all-reduce is allowed by NCCL; the stream is this GPU's.
        unsafe {
            result::all_reduce(
                p as *const _,
                p as *mut _,
                count,
                nccl_dt(dt),
                sys::ncclRedOp_t::ncclSum,
                raw,
                self.gpu.stream.cu_stream() as _,
            )
        }
        .map_err(|e| nccl_err("all_reduce", e))?;
        Ok(())
    }

    /// Rank r's `count` elements of `send` land at `recv[off + r * count ..]`.
    pub fn all_gather(
        &self,
        send: &DevBuf,
        send_off: usize,
        recv: &DevBuf,
        count: usize,
        dt: Dt,
    ) -> Result<(), GpuError> {
        self.check("nccl all_gather (send)", send, send_off, count * dt.size())?;
        self.check("nccl all_gather (recv)", recv, 0, count * dt.size() * self.world)?;
        let comm = self.comm.lock().unwrap_or_else(|p| p.into_inner());
        let raw = Self::live(&comm)?;
        let _gate = self.gpu.enter();
        self.gpu.ctx.bind_to_thread().map_err(GpuError::driver)?;
        // SAFETY: both extents were checked on this communicator's GPU; send and recv do not
        // overlap (recv is a fresh buffer the caller owns).
        unsafe {
            result::all_gather(
                send.ptr(send_off) as *const _,
                recv.ptr(0) as *mut _,
                count,
                nccl_dt(dt),
                raw,
                self.gpu.stream.cu_stream() as _,
            )
        }
        .map_err(|e| nccl_err("all_gather", e))?;
        Ok(())
    }
}

/// `src` holds `parts` blocks of `[rows, cols]` elements back to back (an all-gather's output);
/// write them side by side into `dst` `[rows, parts * cols]` (block p at column `p * cols`).
pub fn interleave_cols(
    src: &DevBuf,
    dst: &DevBuf,
    parts: usize,
    rows: usize,
    cols: usize,
    dt: Dt,
) -> Result<(), GpuError> {
    let (w, total) = (cols * dt.size(), parts * rows * cols * dt.size());
    if src.len() < total || dst.len() < total || !Arc::ptr_eq(src.gpu(), dst.gpu()) {
        return Err(GpuError::Precondition {
            kernel: "interleave_cols",
            msg: format!("{parts} x [{rows}, {cols}] does not fit the buffers or they are on different GPUs"),
        });
    }
    let gpu = src.gpu();
    let _gate = gpu.enter();
    gpu.ctx.bind_to_thread().map_err(GpuError::driver)?;
    for p in 0..parts {
        use cudarc::driver::sys as d;
        let copy = d::CUDA_MEMCPY2D {
            srcXInBytes: 0,
            srcY: 0,
            srcMemoryType: d::CUmemorytype::CU_MEMORYTYPE_DEVICE,
            srcHost: std::ptr::null(),
            srcDevice: src.ptr(p * rows * w),
            srcArray: std::ptr::null_mut(),
            srcPitch: w,
            dstXInBytes: 0,
            dstY: 0,
            dstMemoryType: d::CUmemorytype::CU_MEMORYTYPE_DEVICE,
            dstHost: std::ptr::null_mut(),
            dstDevice: dst.ptr(p * w),
            dstArray: std::ptr::null_mut(),
            dstPitch: parts * w,
            WidthInBytes: w,
            Height: rows,
        };
        // SAFETY: source rows `[p, 0..rows, ..]` and destination columns `p * w .. (p + 1) * w`
        // of `rows` rows lie inside the two buffers (checked above); both are on `gpu`.
        unsafe { d::cuMemcpy2DAsync_v2(&copy, gpu.stream.cu_stream()) }.result().map_err(GpuError::driver)?;
    }
    Ok(())
}

impl Drop for NcclComm {
    fn drop(&mut self) {
        let comm = self.comm.get_mut().unwrap_or_else(|p| p.into_inner());
        if comm.0.is_null() {
            return;
        }
        let _ = self.gpu.ctx.bind_to_thread();
        // SAFETY: the communicator is live and no call on it is in flight (we hold `&mut self`);
        // destroy waits for its pending work.
        let _ = unsafe { result::comm_destroy(comm.0) };
        comm.0 = std::ptr::null_mut();
    }
}
