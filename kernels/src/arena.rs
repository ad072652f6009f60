//! `Arena`: device memory a CUDA-graph capture carves the step's buffers from, so the graph
//! holds plain pointers instead of allocation nodes (see `capture/`).

use std::sync::{Arc, Mutex};

use crate::{DevBuf, Gpu, GpuError};

/// Device memory a capture carves its buffers from: first fit over a free list. Reusing a range
/// freed earlier in the step is safe: everything runs in stream order, replays included.
pub struct Arena {
    buf: DevBuf,
    free: Mutex<FreeList>,
}

/// Free `(offset, len)` ranges, sorted and coalesced, and the bytes handed out.
#[derive(Debug)]
struct FreeList {
    ranges: Vec<(usize, usize)>,
    used: usize,
}

impl FreeList {
    fn new(len: usize) -> Self {
        FreeList { ranges: vec![(0, len)], used: 0 }
    }

    fn take(&mut self, len: usize) -> Option<usize> {
        let i = self.ranges.iter().position(|&(_, l)| l >= len)?;
        let (off, l) = self.ranges[i];
        if l == len {
            self.ranges.remove(i);
        } else {
            self.ranges[i] = (off + len, l - len);
        }
        self.used += len;
        Some(off)
    }

    fn give_back(&mut self, off: usize, len: usize) {
        self.used -= len;
        let r = &mut self.ranges;
        let i = r.partition_point(|&(o, _)| o < off);
        r.insert(i, (off, len));
        if i + 1 < r.len() && r[i].0 + r[i].1 == r[i + 1].0 {
            r[i].1 += r[i + 1].1;
            r.remove(i + 1);
        }
        if i > 0 && r[i - 1].0 + r[i - 1].1 == r[i].0 {
            r[i - 1].1 += r[i].1;
            r.remove(i);
        }
    }
}

impl Arena {
    const ALIGN: usize = 256;

    pub(crate) fn round(bytes: usize) -> usize {
        bytes.max(1).div_ceil(Self::ALIGN) * Self::ALIGN
    }

    pub fn new(gpu: &Arc<Gpu>, bytes: usize) -> Result<Arc<Self>, GpuError> {
        let bytes = Self::round(bytes);
        let buf = DevBuf::alloc(gpu, bytes)?;
        Ok(Arc::new(Arena { buf, free: Mutex::new(FreeList::new(bytes)) }))
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn ptr(&self, off: usize) -> u64 {
        self.buf.ptr(off)
    }

    /// An aligned range of at least `bytes`, if one is free: `(offset, len)`.
    pub(crate) fn take(&self, bytes: usize) -> Option<(usize, usize)> {
        let len = Self::round(bytes);
        let off = self.free.lock().unwrap_or_else(|p| p.into_inner()).take(len)?;
        Some((off, len))
    }

    pub(crate) fn give_back(&self, off: usize, len: usize) {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).give_back(off, len);
    }

    /// Bytes handed out and not given back.
    pub fn in_use(&self) -> usize {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).used
    }
}

#[cfg(test)]
mod tests {
    use super::FreeList;

    #[test]
    fn free_list_first_fit_and_coalescing() {
        let mut f = FreeList::new(1024);
        let a = f.take(256).expect("a");
        let b = f.take(512).expect("b");
        let c = f.take(256).expect("c");
        assert_eq!((a, b, c), (0, 256, 768));
        assert_eq!(f.take(256), None, "full");
        f.give_back(b, 512);
        assert_eq!(f.take(256), Some(256), "first fit reuses the hole");
        f.give_back(256, 256);
        f.give_back(a, 256);
        f.give_back(c, 256);
        assert_eq!(f.ranges, vec![(0, 1024)], "everything coalesced");
        assert_eq!(f.used, 0);
    }
}
