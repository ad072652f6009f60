//! Portable scalar kernel (any architecture): one dot product per output, 8 partial sums along
//! k (vectorizable without reassociation), weights widened element by element.

// Register arrays are indexed by const loop counters on purpose (they unroll into registers).
#![allow(clippy::needless_range_loop)]

use super::Elem;

/// # Safety
/// `x` valid for `m * k` reads; `y` for writes of `w.len() / k` columns in `m` rows of
/// stride `ys`.
pub unsafe fn block<T: Elem>(
    x: *const f32,
    m: usize,
    k: usize,
    w: &[T],
    nrows: usize,
    y: *mut f32,
    ys: usize,
) {
    // SAFETY: see the contract.
    let x = unsafe { std::slice::from_raw_parts(x, m * k) };
    for j in 0..nrows {
        let wr = &w[j * k..(j + 1) * k];
        for i in 0..m {
            let xr = &x[i * k..(i + 1) * k];
            let mut acc = [0f32; 8];
            let (cx, cw) = (xr.chunks_exact(8), wr.chunks_exact(8));
            let (rx, rw) = (cx.remainder(), cw.remainder());
            for (a, b) in cx.zip(cw) {
                for l in 0..8 {
                    acc[l] += a[l] * b[l].widen();
                }
            }
            let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
            for (a, b) in rx.iter().zip(rw) {
                s += a * b.widen();
            }
            // SAFETY: (i, j) is inside the output block.
            unsafe { *y.add(i * ys + j) = s };
        }
    }
}
